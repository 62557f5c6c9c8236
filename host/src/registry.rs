//! The plugins root: its `.websocket` descriptors, the endpoints they declare and the handler components they name.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context as _, anyhow};

use crate::descriptor::{DESCRIPTOR_EXTENSION, Descriptor, check_handler_name, handler_path};
use crate::runtime::{Handler, Runtime};

/// Directories under the plugins root that never hold plugins and can be large (build output, packages).
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", "__pycache__"];

/// A served endpoint, from its descriptor.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Endpoint {
    /// The endpoint name (`/websockets/service/{name}`).
    pub name: String,
    /// The handler receiving its sessions' events.
    pub handler: String,
    /// The descriptor's description.
    pub description: String,
    /// The descriptor file it came from.
    pub descriptor: PathBuf,
}

/// The endpoints and handlers a host serves.
#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
    endpoints: RwLock<HashMap<String, Arc<Endpoint>>>,
    handlers: RwLock<HashMap<String, Arc<Handler>>>,
}

impl Registry {
    /// Reads every descriptor under `root` and compiles the handlers they name. Returns the registry of everything that
    /// loaded and one error per descriptor or component that did not, each naming its file; those are not served.
    pub async fn load(root: &Path, runtime: &Arc<Runtime>) -> (Self, Vec<anyhow::Error>) {
        let registry = Self {
            root: root.to_path_buf(),
            endpoints: RwLock::default(),
            handlers: RwLock::default(),
        };
        let (endpoints, mut errors) = scan(root);
        let mut served = HashMap::new();
        for endpoint in endpoints {
            match registry.handler(runtime, &endpoint.handler).await {
                Ok(_) => {
                    tracing::info!(endpoint = %endpoint.name, handler = %endpoint.handler, "endpoint ready");
                    served.insert(endpoint.name.clone(), Arc::new(endpoint));
                }
                Err(err) => errors.push(err.context(format!(
                    "{}: endpoint {:?} is not served",
                    endpoint.descriptor.display(),
                    endpoint.name
                ))),
            }
        }
        if let Ok(mut endpoints) = registry.endpoints.write() {
            *endpoints = served;
        }
        (registry, errors)
    }

    /// The plugins root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The endpoint with this name.
    pub fn endpoint(&self, name: &str) -> Option<Arc<Endpoint>> {
        self.endpoints
            .read()
            .ok()
            .and_then(|endpoints| endpoints.get(name).cloned())
    }

    /// Every endpoint, by name.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        let mut all: Vec<_> = self
            .endpoints
            .read()
            .map(|endpoints| endpoints.values().cloned().collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Checks that `name` is a handler this host can run (loaded, or a component file under the root) without
    /// compiling it.
    pub fn check_handler(&self, name: &str) -> anyhow::Result<()> {
        check_handler_name(name)?;
        if self
            .handlers
            .read()
            .is_ok_and(|handlers| handlers.contains_key(name))
        {
            return Ok(());
        }
        let path = handler_path(&self.root, name);
        if path.is_file() {
            Ok(())
        } else {
            Err(anyhow!(
                "no handler {name:?}: {} does not exist",
                path.display()
            ))
        }
    }

    /// The handler with this name, compiled from `<root>/<name>.wasm` the first time it is asked for.
    pub async fn handler(
        &self,
        runtime: &Arc<Runtime>,
        name: &str,
    ) -> anyhow::Result<Arc<Handler>> {
        if let Some(handler) = self
            .handlers
            .read()
            .ok()
            .and_then(|handlers| handlers.get(name).cloned())
        {
            return Ok(handler);
        }
        check_handler_name(name)?;
        let path = handler_path(&self.root, name);
        let handler = Arc::new(compile_file(runtime, name, &path).await?);
        if let Ok(mut handlers) = self.handlers.write() {
            handlers.insert(name.to_owned(), handler.clone());
        }
        Ok(handler)
    }
}

/// Reads a component file and compiles it off the async threads; errors name the file.
async fn compile_file(runtime: &Arc<Runtime>, name: &str, path: &Path) -> anyhow::Result<Handler> {
    let bytes = tokio::fs::read(path).await.with_context(|| {
        format!(
            "handler {name:?}: cannot read its component {}",
            path.display()
        )
    })?;
    let runtime = runtime.clone();
    let owned_name = name.to_owned();
    let started = std::time::Instant::now();
    let handler = tokio::task::spawn_blocking(move || runtime.compile(&owned_name, &bytes))
        .await
        .context("the compile task failed")?
        .with_context(|| format!("handler {name:?}: {} was refused", path.display()))?;
    tracing::debug!(handler = name, elapsed = ?started.elapsed(), "compiled");
    Ok(handler)
}

/// Finds and parses every descriptor under `root`. Returns the endpoints that are well-formed and unique, and an error
/// for every descriptor that is not, naming its file (a duplicate endpoint names every file that declares it).
pub fn scan(root: &Path) -> (Vec<Endpoint>, Vec<anyhow::Error>) {
    let mut errors = Vec::new();
    let mut files = Vec::new();
    collect_descriptors(root, &mut files, &mut errors);
    files.sort();
    let mut by_endpoint: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for file in files {
        match Descriptor::read(&file) {
            Ok(descriptor) => {
                let component = handler_path(root, &descriptor.handler);
                if !component.is_file() {
                    errors.push(anyhow!(
                        "{}: field `handler`: handler {:?} has no component at {}",
                        file.display(),
                        descriptor.handler,
                        component.display()
                    ));
                    continue;
                }
                by_endpoint
                    .entry(descriptor.endpoint.clone())
                    .or_default()
                    .push(Endpoint {
                        name: descriptor.endpoint,
                        handler: descriptor.handler,
                        description: descriptor.description,
                        descriptor: file,
                    });
            }
            Err(err) => errors.push(err),
        }
    }
    let mut endpoints = Vec::new();
    for (name, mut declared) in by_endpoint {
        if declared.len() == 1 {
            endpoints.extend(declared.pop());
        } else {
            let files: Vec<String> = declared
                .iter()
                .map(|e| e.descriptor.display().to_string())
                .collect();
            errors.push(anyhow!(
                "endpoint {name:?} is declared by more than one descriptor ({}); none of them is served until only one \
                 declares it",
                files.join(" and ")
            ));
        }
    }
    (endpoints, errors)
}

fn collect_descriptors(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<anyhow::Error>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            errors.push(anyhow!(
                "{}: cannot read the directory: {err}",
                dir.display()
            ));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if kind.is_dir() {
            if !name.starts_with('.') && !SKIPPED_DIRS.contains(&name.as_ref()) {
                collect_descriptors(&path, files, errors);
            }
        } else if path
            .extension()
            .is_some_and(|ext| ext == DESCRIPTOR_EXTENSION)
        {
            files.push(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn temp_root(name: &str) -> PathBuf {
        let root =
            std::env::temp_dir().join(format!("wasmsock-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn scan_reports_each_bad_descriptor_by_file_and_keeps_the_good_ones() {
        let root = temp_root("scan");
        write(&root, "p/h.wasm", "not checked by scan");
        write(
            &root,
            "p/good.websocket",
            r#"{"handler": "p/h", "endpoint": "good"}"#,
        );
        write(&root, "p/broken.websocket", "{ nope");
        write(
            &root,
            "p/dangling.websocket",
            r#"{"handler": "p/missing", "endpoint": "d"}"#,
        );
        write(
            &root,
            "a/one.websocket",
            r#"{"handler": "p/h", "endpoint": "twice"}"#,
        );
        write(
            &root,
            "b/two.websocket",
            r#"{"handler": "p/h", "endpoint": "twice"}"#,
        );
        write(&root, "target/ignored.websocket", "{ never read");
        let (endpoints, errors) = scan(&root);
        let names: Vec<_> = endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        let errors: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains("broken.websocket") && e.contains("not a valid descriptor"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("dangling.websocket") && e.contains("p/missing.wasm"))
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("a/one.websocket") && e.contains("b/two.websocket"))
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
