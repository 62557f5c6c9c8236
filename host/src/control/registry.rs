//! The plugins root: its `.websocket` descriptors, the endpoints they declare and the handler components they name.

use crate::FastMap;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockWriteGuard};

use anyhow::{Context as _, anyhow, bail};
use sha2::{Digest as _, Sha256};

use wasmsock_wire::deflate::{Compression, CompressionSetting};
use wasmsock_wire::descriptor::project_of;
use wasmsock_wire::descriptor::{DESCRIPTOR_EXTENSION, Descriptor, Lifecycle, check_handler_name, handler_path};
use wasmsock_wire::outbound::AllowList;
use wasmsock_wire::project::{MANIFEST_FILE, Manifest};
use wasmsock_wire::{EndpointLimits, QuotaOverrides};

use crate::runtime::{Handler, Runtime};

/// Directories under the plugins root that never hold plugins and can be large (build output, packages).
const SKIPPED_DIRS: &[&str] = &["target", "node_modules", "__pycache__"];

/// The directory, under the plugins root, of the compiled-component cache when no other is given.
pub const DEFAULT_CACHE_DIR: &str = ".wasmsock-cache";

/// How many compiled components the cache keeps besides the versions loaded now: the ones used most recently, so that
/// deploying a recent version again (a rollback) loads without compiling. Every change of the handlers trims the cache
/// to this; without a bound, a development loop of deploys filled the disk (a JavaScript or Python handler compiles to
/// 15-40 MB).
pub const DEFAULT_CACHE_SPARE: usize = 8;

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
    /// How long its handler instances live.
    pub instance: Lifecycle,
    /// Origins allowed to connect (none: the host's list).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub origins: Option<Vec<String>>,
    /// Subprotocols offered, most preferred first.
    pub protocols: Vec<String>,
    /// Limits that differ from the host's.
    pub limits: EndpointLimits,
    /// Its `"compression"`, if the descriptor has one (none: the host's default, `serve --compression`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<CompressionSetting>,
    /// Destinations its handler's project may open clients to (its share of the project's grant).
    #[serde(rename = "allowed-outbound-hosts", skip_serializing_if = "AllowList::is_empty")]
    pub allowed_outbound_hosts: AllowList,
}

impl Endpoint {
    /// How its sessions compress, given the host's default (`serve --compression`): none when they do not.
    pub fn compression(&self, host_default: bool) -> Option<Compression> {
        match self.compression {
            Some(setting) => setting.enabled(),
            None => host_default.then(Compression::default),
        }
    }

    fn new(descriptor: Descriptor, file: PathBuf) -> Self {
        // A descriptor is checked when parsed; should its list not parse here, nothing is granted.
        let allowed_outbound_hosts = descriptor.allow_list().unwrap_or_default();
        Endpoint {
            allowed_outbound_hosts,
            name: descriptor.endpoint,
            handler: descriptor.handler,
            description: descriptor.description,
            descriptor: file,
            origins: descriptor.origins,
            protocols: descriptor.protocols,
            limits: descriptor.limits,
            compression: descriptor.compression,
            instance: descriptor.instance,
        }
    }
}

/// A compiled handler and where it came from.
#[derive(Debug)]
pub struct LoadedHandler {
    /// The runnable handler.
    pub handler: Handler,
    /// The first 16 hex digits of the SHA-256 of the component: it changes exactly when the bytes do.
    pub version: String,
    /// The component file.
    pub path: PathBuf,
    /// The component's size in bytes.
    pub size: u64,
    /// Whether the compiled code came from the on-disk cache.
    pub from_cache: bool,
    stamp: Option<FileStamp>,
}

/// What a listing shows of a handler.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HandlerInfo {
    /// `project/name`.
    pub name: String,
    /// See [`LoadedHandler::version`].
    pub version: String,
    /// The component file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// While it is paused for running out its deadline: when the pause ends (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_until: Option<String>,
}

impl LoadedHandler {
    /// What a listing shows of this handler.
    pub fn info(&self) -> HandlerInfo {
        HandlerInfo {
            name: self.handler.name().to_owned(),
            version: self.version.clone(),
            path: self.path.clone(),
            size: self.size,
            paused_until: self.handler.paused_until().map(crate::fair::rfc3339),
        }
    }
}

/// A file's modification time and length: when both are unchanged, so are its contents (for our purposes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
}

impl FileStamp {
    fn of(path: &Path) -> Option<Self> {
        let meta = std::fs::metadata(path).ok()?;
        Some(Self { modified: meta.modified().ok(), len: meta.len() })
    }
}

#[derive(Debug, Default)]
struct Loaded {
    endpoints: FastMap<String, Arc<Endpoint>>,
    handlers: FastMap<String, Arc<LoadedHandler>>,
}

/// What a reload changed and what it refused.
#[derive(Debug, Default)]
pub struct Reload {
    /// One error per descriptor or component refused, naming its file. What was serving before keeps serving.
    pub errors: Vec<anyhow::Error>,
    /// Endpoints that are gone (their sessions should be closed).
    pub removed: Vec<String>,
    /// Endpoints added or changed.
    pub changed: Vec<String>,
    /// Handlers compiled to a new version.
    pub swapped: Vec<String>,
}

/// The endpoints and handlers a host serves. Every change (reload, deploy, removal) is checked in full before it
/// replaces anything, so a refused change leaves the old version serving.
#[derive(Debug)]
pub struct Registry {
    root: PathBuf,
    cache_dir: Option<PathBuf>,
    state: RwLock<Loaded>,
    /// Moves on every change of `state`: what a connection resolved under an older one is looked up again.
    generation: AtomicU64,
    changes: tokio::sync::Mutex<()>,
    /// The quotas of each project with a `project.json`, as last applied.
    manifests: std::sync::Mutex<HashMap<String, QuotaOverrides>>,
}

impl Registry {
    /// An empty registry of `root`; compiled components are cached in `cache_dir` when given.
    pub fn new(root: &Path, cache_dir: Option<PathBuf>) -> Self {
        Self {
            root: root.to_path_buf(),
            cache_dir,
            state: RwLock::default(),
            generation: AtomicU64::new(0),
            changes: tokio::sync::Mutex::new(()),
            manifests: std::sync::Mutex::default(),
        }
    }

    /// The plugins root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The version of the endpoints and handlers: it moves on every change (reload, deploy, removal, a handler loaded
    /// at its first use). Read it before looking something up; what was found is current while it has not moved.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The state, to change it: the generation moves first, so a reader that sees the new generation finds the new
    /// state behind the lock. Every write goes through here. `None` when a panic poisoned the lock.
    fn change(&self) -> Option<RwLockWriteGuard<'_, Loaded>> {
        let state = self.state.write().ok()?;
        self.generation.fetch_add(1, Ordering::AcqRel);
        Some(state)
    }

    /// The endpoint with this name.
    pub fn endpoint(&self, name: &str) -> Option<Arc<Endpoint>> {
        self.state.read().ok().and_then(|state| state.endpoints.get(name).cloned())
    }

    /// The destinations `project` may open clients to: the union of the `allowed-outbound-hosts` of the descriptors
    /// whose handler is in the project. Empty (nothing granted) for a project without any.
    pub fn grants(&self, project: &str) -> AllowList {
        let endpoints = self.endpoints();
        let lists = endpoints.iter().filter(|e| project_of(&e.handler) == project).map(|e| &e.allowed_outbound_hosts);
        AllowList::union(lists)
    }

    /// Every endpoint, by name.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        let mut all: Vec<_> =
            self.state.read().map(|state| state.endpoints.values().cloned().collect()).unwrap_or_default();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Every loaded handler, by name.
    pub fn handlers(&self) -> Vec<Arc<LoadedHandler>> {
        let mut all: Vec<_> =
            self.state.read().map(|state| state.handlers.values().cloned().collect()).unwrap_or_default();
        all.sort_by(|a, b| a.handler.name().cmp(b.handler.name()));
        all
    }

    fn loaded(&self, name: &str) -> Option<Arc<LoadedHandler>> {
        self.state.read().ok().and_then(|state| state.handlers.get(name).cloned())
    }

    /// Checks that `name` is a handler this host can run (loaded, or a component file under the root) without
    /// compiling it.
    pub fn check_handler(&self, name: &str) -> anyhow::Result<()> {
        check_handler_name(name)?;
        if self.loaded(name).is_some() {
            return Ok(());
        }
        let path = handler_path(&self.root, name);
        if path.is_file() { Ok(()) } else { Err(anyhow!("no handler {name:?}: {} does not exist", path.display())) }
    }

    /// The current version of the handler with this name, compiled from `<root>/<name>.wasm` the first time it is
    /// asked for (a handler only outbound clients use has no descriptor to load it).
    pub async fn handler(&self, runtime: &Arc<Runtime>, name: &str) -> anyhow::Result<Arc<LoadedHandler>> {
        if let Some(handler) = self.loaded(name) {
            return Ok(handler);
        }
        check_handler_name(name)?;
        let path = handler_path(&self.root, name);
        let stamp = FileStamp::of(&path);
        let bytes = tokio::fs::read(&path)
            .await
            .with_context(|| format!("handler {name:?}: cannot read its component {}", path.display()))?;
        let loaded = Arc::new(self.compile(runtime, name, &path, bytes, stamp).await?);
        if let Some(mut state) = self.change() {
            state.handlers.entry(name.to_owned()).or_insert_with(|| loaded.clone());
        }
        Ok(loaded)
    }

    /// Compiles (or loads from the cache) a component off the async threads; errors name the file.
    async fn compile(
        &self,
        runtime: &Arc<Runtime>,
        name: &str,
        path: &Path,
        bytes: Vec<u8>,
        stamp: Option<FileStamp>,
    ) -> anyhow::Result<LoadedHandler> {
        let version = content_version(&bytes);
        let size = bytes.len() as u64;
        let runtime = runtime.clone();
        let owned_name = name.to_owned();
        let cache_dir = self.cache_dir.clone();
        let key = version.clone();
        let started = std::time::Instant::now();
        let (handler, from_cache) = tokio::task::spawn_blocking(move || match cache_dir {
            Some(dir) => runtime.compile_cached(&owned_name, bytes, &key, &dir),
            None => runtime.compile(&owned_name, bytes).map(|handler| (handler, false)),
        })
        .await
        .context("the compile task failed")?
        .with_context(|| format!("handler {name:?}: {} was refused", path.display()))?;
        tracing::info!(handler = name, %version, from_cache, elapsed = ?started.elapsed(), "handler loaded");
        Ok(LoadedHandler { handler, version, path: path.to_path_buf(), size, from_cache, stamp })
    }

    /// Trims the compile cache to the versions loaded now and [`DEFAULT_CACHE_SPARE`] others; a failure is logged
    /// (the cache is an optimisation: nothing is refused for it).
    async fn trim_cache(&self, runtime: &Arc<Runtime>) {
        let Some(dir) = self.cache_dir.clone() else { return };
        let in_use: Vec<String> = self.handlers().iter().map(|loaded| loaded.version.clone()).collect();
        let runtime = runtime.clone();
        let trimmed = tokio::task::spawn_blocking(move || runtime.prune_cache(&dir, &in_use, DEFAULT_CACHE_SPARE));
        match trimmed.await {
            Ok(Ok(0)) => {}
            Ok(Ok(deleted)) => tracing::info!(deleted, "compile cache trimmed"),
            Ok(Err(err)) => tracing::warn!("cannot trim the compile cache: {err:#}"),
            Err(err) => tracing::warn!("the compile cache trim failed: {err}"),
        }
    }

    /// Reads the plugins root again and applies what changed: new, changed and removed descriptors and components.
    /// A descriptor or component that is refused leaves what it would have replaced serving.
    pub async fn reload(&self, runtime: &Arc<Runtime>) -> Reload {
        let _one_at_a_time = self.changes.lock().await;
        let mut report = Reload::default();
        let scanned = scan(&self.root);
        let (old_endpoints, old_handlers) = match self.state.read() {
            Ok(state) => (state.endpoints.clone(), state.handlers.clone()),
            Err(_) => return report,
        };
        // Handlers: every one a descriptor names, and every one loaded before whose file still exists.
        let mut wanted: Vec<String> = scanned.endpoints.iter().map(|e| e.handler.clone()).collect();
        wanted.extend(old_handlers.keys().cloned());
        wanted.sort();
        wanted.dedup();
        let mut handlers = FastMap::default();
        let mut failed: HashMap<String, (anyhow::Error, bool)> = HashMap::new();
        for name in wanted {
            let path = handler_path(&self.root, &name);
            let stamp = FileStamp::of(&path);
            let old = old_handlers.get(&name);
            if stamp.is_none() {
                continue; // The file is gone: so is the handler (a descriptor naming it is refused by the scan).
            }
            if let Some(old) = old
                && old.stamp == stamp
            {
                handlers.insert(name, old.clone());
                continue;
            }
            let loaded = match tokio::fs::read(&path).await {
                Ok(bytes) if old.is_some_and(|old| old.version == content_version(&bytes)) => old.cloned(),
                Ok(bytes) => match self.compile(runtime, &name, &path, bytes, stamp).await {
                    Ok(loaded) => {
                        report.swapped.push(name.clone());
                        Some(Arc::new(loaded))
                    }
                    Err(err) => {
                        failed.insert(name.clone(), (err, old.is_some()));
                        old.cloned()
                    }
                },
                Err(err) => {
                    failed.insert(name.clone(), (anyhow!("{}: cannot read: {err}", path.display()), old.is_some()));
                    old.cloned()
                }
            };
            if let Some(loaded) = loaded {
                handlers.insert(name, loaded);
            }
        }
        // Endpoints: the well-formed, unique ones whose handler loaded; a refused descriptor keeps its old endpoint.
        let mut endpoints = FastMap::default();
        for endpoint in scanned.endpoints {
            if let Err(err) = runtime.check_endpoint_limits(&endpoint.limits) {
                if let Some(old) = old_endpoints.get(&endpoint.name) {
                    endpoints.insert(old.name.clone(), old.clone());
                }
                report.errors.push(err.context(endpoint.descriptor.display().to_string()));
            } else if handlers.contains_key(&endpoint.handler) {
                endpoints.insert(endpoint.name.clone(), Arc::new(endpoint));
            } else if let Some(old) = old_endpoints.get(&endpoint.name) {
                endpoints.insert(old.name.clone(), old.clone());
            } else {
                let why = match failed.remove(&endpoint.handler) {
                    Some((err, _)) => format!("{err:#}"),
                    None => format!("its handler {:?} did not load", endpoint.handler),
                };
                report.errors.push(anyhow!(
                    "{}: endpoint {:?} is not served: {why}",
                    endpoint.descriptor.display(),
                    endpoint.name
                ));
            }
        }
        for (_, (err, kept_old)) in failed {
            report.errors.push(if kept_old { err.context("the previous version keeps serving") } else { err });
        }
        for (files, err) in scanned.errors {
            for old in old_endpoints.values() {
                if files.contains(&old.descriptor) && !endpoints.contains_key(&old.name) {
                    endpoints.insert(old.name.clone(), old.clone());
                }
            }
            report.errors.push(err);
        }
        for (name, endpoint) in &endpoints {
            if old_endpoints.get(name) != Some(endpoint) {
                report.changed.push(name.clone());
            }
        }
        report.removed = old_endpoints.keys().filter(|name| !endpoints.contains_key(*name)).cloned().collect();
        report.changed.sort();
        report.removed.sort();
        let versions = |handlers: &FastMap<String, Arc<LoadedHandler>>| {
            let mut versions: Vec<String> = handlers.values().map(|loaded| loaded.version.clone()).collect();
            versions.sort();
            versions
        };
        let handlers_changed = versions(&old_handlers) != versions(&handlers);
        if let Some(mut state) = self.change() {
            *state = Loaded { endpoints, handlers };
        }
        if handlers_changed {
            self.trim_cache(runtime).await;
        }
        self.apply_manifests(runtime, &mut report);
        report
    }

    /// Reads every project's `project.json` (`<root>/<project>/project.json`) and gives the scheduler its quotas; a
    /// project whose manifest is gone gets the host's again. A manifest that is refused (its error names the file and
    /// the field) leaves the project's quotas as they were.
    fn apply_manifests(&self, runtime: &Runtime, report: &mut Reload) {
        let Ok(mut applied) = self.manifests.lock() else { return };
        let mut now = HashMap::new();
        let entries = std::fs::read_dir(&self.root).into_iter().flatten().flatten();
        for entry in entries {
            let project = entry.file_name().to_string_lossy().into_owned();
            let file = entry.path().join(MANIFEST_FILE);
            if project.starts_with('.') || SKIPPED_DIRS.contains(&project.as_str()) || !file.is_file() {
                continue;
            }
            match Manifest::read(&file) {
                Ok(manifest) => {
                    now.insert(project, manifest.quotas);
                }
                Err(err) => {
                    report.errors.push(err.context("the project keeps the quotas it had"));
                    if let Some(old) = applied.get(&project) {
                        now.insert(project, *old);
                    }
                }
            }
        }
        for project in applied.keys().filter(|project| !now.contains_key(*project)) {
            runtime.scheduler().set_quotas(project, QuotaOverrides::default());
        }
        for (project, quotas) in &now {
            runtime.scheduler().set_quotas(project, *quotas);
        }
        *applied = now;
    }

    /// Deploys a handler: compiles and checks `bytes` first, then writes `<root>/<name>.wasm` and swaps it in. If
    /// anything fails, nothing is written and the old version keeps serving.
    pub async fn deploy_handler(
        &self,
        runtime: &Arc<Runtime>,
        name: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<Arc<LoadedHandler>> {
        let _one_at_a_time = self.changes.lock().await;
        check_handler_name(name)?;
        let path = handler_path(&self.root, name);
        let data = bytes.clone();
        let mut loaded = self.compile(runtime, name, &path, bytes, None).await?;
        write_atomically(&path, &data)?;
        loaded.stamp = FileStamp::of(&path);
        let loaded = Arc::new(loaded);
        if let Some(mut state) = self.change() {
            state.handlers.insert(name.to_owned(), loaded.clone());
        }
        self.trim_cache(runtime).await;
        Ok(loaded)
    }

    /// Deploys a descriptor: checks it (well-formed, its handler loaded or loadable, its endpoint not declared by
    /// another file), then writes it (over the file that declared the endpoint before, or as
    /// `<root>/<project>/<endpoint>.websocket`) and serves it.
    pub async fn deploy_descriptor(&self, runtime: &Arc<Runtime>, text: &str) -> anyhow::Result<Arc<Endpoint>> {
        let descriptor = Descriptor::parse(text)?;
        runtime.check_endpoint_limits(&descriptor.limits)?;
        self.handler(runtime, &descriptor.handler).await?;
        let _one_at_a_time = self.changes.lock().await;
        let existing = self.endpoint(&descriptor.endpoint).map(|e| e.descriptor.clone());
        let file = existing.clone().unwrap_or_else(|| {
            let project = descriptor.handler.split('/').next().unwrap_or_default();
            self.root.join(project).join(format!("{}.{DESCRIPTOR_EXTENSION}", descriptor.endpoint))
        });
        let others: Vec<PathBuf> = scan(&self.root)
            .endpoints
            .into_iter()
            .filter(|e| e.name == descriptor.endpoint && e.descriptor != file)
            .map(|e| e.descriptor)
            .collect();
        if !others.is_empty() {
            bail!(
                "endpoint {:?} is already declared by {}",
                descriptor.endpoint,
                others.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(" and ")
            );
        }
        write_atomically(&file, text.as_bytes())?;
        let endpoint = Arc::new(Endpoint::new(descriptor, file));
        if let Some(mut state) = self.change() {
            state.endpoints.insert(endpoint.name.clone(), endpoint.clone());
        }
        Ok(endpoint)
    }

    /// Removes an endpoint and deletes its descriptor file.
    pub async fn remove_endpoint(&self, name: &str) -> anyhow::Result<Arc<Endpoint>> {
        let _one_at_a_time = self.changes.lock().await;
        let endpoint = self.endpoint(name).ok_or_else(|| anyhow!("no endpoint {name:?}"))?;
        std::fs::remove_file(&endpoint.descriptor)
            .with_context(|| format!("deleting {}", endpoint.descriptor.display()))?;
        if let Some(mut state) = self.change() {
            state.endpoints.remove(name);
        }
        Ok(endpoint)
    }

    /// Removes a handler no endpoint uses, and deletes its component file. Its compiled code stays in the cache as
    /// one of the spare entries (see [`DEFAULT_CACHE_SPARE`]).
    pub async fn remove_handler(&self, name: &str) -> anyhow::Result<()> {
        let _one_at_a_time = self.changes.lock().await;
        check_handler_name(name)?;
        let users: Vec<String> =
            self.endpoints().iter().filter(|e| e.handler == name).map(|e| e.name.clone()).collect();
        if !users.is_empty() {
            bail!("handler {name:?} serves endpoint(s) {}: remove or redeploy those first", users.join(", "));
        }
        let path = handler_path(&self.root, name);
        if !path.is_file() && self.loaded(name).is_none() {
            bail!("no handler {name:?}");
        }
        if path.is_file() {
            std::fs::remove_file(&path).with_context(|| format!("deleting {}", path.display()))?;
        }
        if let Some(mut state) = self.change() {
            state.handlers.remove(name);
        }
        Ok(())
    }
}

/// The version of a component: the first 16 hex digits of its SHA-256.
pub fn content_version(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

/// Writes a file so that no reader ever sees half of it: a temp file in the same directory, renamed into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().ok_or_else(|| anyhow!("{} has no directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    // A dot name: the watcher and the scanner skip it until the rename.
    let temp = dir.join(format!(".{name}.{}.partial", std::process::id()));
    std::fs::write(&temp, bytes).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("renaming {} into place", path.display()))
}

/// A fingerprint of every descriptor and component under the root (paths, sizes and times), for the watcher.
pub fn fingerprint(root: &Path) -> Vec<(PathBuf, u64, Option<std::time::SystemTime>)> {
    let mut files = Vec::new();
    collect(root, &mut files, &mut Vec::new(), &|path| {
        path.extension().is_some_and(|ext| ext == DESCRIPTOR_EXTENSION || ext == "wasm")
    });
    let mut prints: Vec<_> = files
        .into_iter()
        .filter_map(|path| FileStamp::of(&path).map(|stamp| (path, stamp.len, stamp.modified)))
        .collect();
    prints.sort();
    prints
}

/// Descriptors found under a root: the endpoints that are well-formed and unique, and the errors, each with the
/// files it concerns.
#[derive(Debug, Default)]
pub struct Scan {
    /// Well-formed, unique endpoints whose component file exists.
    pub endpoints: Vec<Endpoint>,
    /// Errors, each with the descriptor files it is about.
    pub errors: Vec<(Vec<PathBuf>, anyhow::Error)>,
}

/// Finds and parses every descriptor under `root`. An error names its file (a duplicate endpoint names every file
/// that declares it, and none of them is in `endpoints`).
pub fn scan(root: &Path) -> Scan {
    let mut scan = Scan::default();
    let mut files = Vec::new();
    let mut dir_errors = Vec::new();
    collect(root, &mut files, &mut dir_errors, &|path| path.extension().is_some_and(|ext| ext == DESCRIPTOR_EXTENSION));
    scan.errors.extend(dir_errors.into_iter().map(|err| (Vec::new(), err)));
    files.sort();
    let mut by_endpoint: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for file in files {
        match Descriptor::read(&file) {
            Ok(descriptor) => {
                let component = handler_path(root, &descriptor.handler);
                if !component.is_file() {
                    let err = anyhow!(
                        "{}: field `handler`: handler {:?} has no component at {}",
                        file.display(),
                        descriptor.handler,
                        component.display()
                    );
                    scan.errors.push((vec![file], err));
                    continue;
                }
                by_endpoint.entry(descriptor.endpoint.clone()).or_default().push(Endpoint::new(descriptor, file));
            }
            Err(err) => scan.errors.push((vec![file], err)),
        }
    }
    for (name, mut declared) in by_endpoint {
        if declared.len() == 1 {
            scan.endpoints.extend(declared.pop());
        } else {
            let files: Vec<PathBuf> = declared.iter().map(|e| e.descriptor.clone()).collect();
            let listed: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
            let err = anyhow!(
                "endpoint {name:?} is declared by more than one descriptor ({}); none of them is served until only one \
                 declares it",
                listed.join(" and ")
            );
            scan.errors.push((files, err));
        }
    }
    scan
}

/// Collects the files under `dir` that `wanted` accepts, skipping hidden directories and build output.
fn collect(dir: &Path, files: &mut Vec<PathBuf>, errors: &mut Vec<anyhow::Error>, wanted: &dyn Fn(&Path) -> bool) {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => {
            errors.push(anyhow!("{}: cannot read the directory: {err}", dir.display()));
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
        if name.starts_with('.') {
            continue;
        }
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                collect(&path, files, errors, wanted);
            }
        } else if wanted(&path) {
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
        let root = std::env::temp_dir().join(format!("wasmsock-registry-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        root
    }

    #[test]
    fn scan_reports_each_bad_descriptor_by_file_and_keeps_the_good_ones() {
        let root = temp_root("scan");
        write(&root, "p/h.wasm", "not checked by scan");
        write(&root, "p/good.websocket", r#"{"handler": "p/h", "endpoint": "good"}"#);
        write(&root, "p/broken.websocket", "{ nope");
        write(&root, "p/dangling.websocket", r#"{"handler": "p/missing", "endpoint": "d"}"#);
        write(&root, "a/one.websocket", r#"{"handler": "p/h", "endpoint": "twice"}"#);
        write(&root, "b/two.websocket", r#"{"handler": "p/h", "endpoint": "twice"}"#);
        write(&root, "target/ignored.websocket", "{ never read");
        let scanned = scan(&root);
        let names: Vec<_> = scanned.endpoints.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["good"]);
        let errors: Vec<String> = scanned.errors.iter().map(|(_, e)| format!("{e:#}")).collect();
        assert_eq!(errors.len(), 3, "{errors:#?}");
        assert!(errors.iter().any(|e| e.contains("broken.websocket") && e.contains("not a valid descriptor")));
        assert!(errors.iter().any(|e| e.contains("dangling.websocket") && e.contains("p/missing.wasm")));
        assert!(errors.iter().any(|e| e.contains("a/one.websocket") && e.contains("b/two.websocket")));
        let _ = std::fs::remove_dir_all(&root);
    }
}
