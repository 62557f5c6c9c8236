//! `wasmsock deploy PATH…`: push components and descriptors to a running host through its admin API.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use clap::Args;
use serde_json::json;

use super::remote::{Body, Remote};
use wasmsock_wire::descriptor::{DESCRIPTOR_EXTENSION, Descriptor};

/// Arguments of `wasmsock deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// `.wasm` components, `.websocket` descriptors, or project directories holding both. A component is deployed
    /// as the handler a descriptor beside it names, or else as `<directory>/<file stem>`.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The handler name for a single `.wasm` (`project/name`).
    #[arg(long)]
    pub name: Option<String>,
    /// The admin API.
    #[command(flatten)]
    pub remote: Remote,
}

impl DeployArgs {
    /// Deploys every component first, then every descriptor (so a descriptor finds its handler).
    pub async fn run(self) -> anyhow::Result<()> {
        let mut components = Vec::new();
        let mut descriptors = Vec::new();
        for path in &self.paths {
            collect(path, &mut components, &mut descriptors)?;
        }
        if self.name.is_some() && components.len() != 1 {
            bail!("--name names one component, but {} were given", components.len());
        }
        let parsed: Vec<(PathBuf, String, Descriptor)> = descriptors
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                let descriptor = Descriptor::parse(&text).with_context(|| path.display().to_string())?;
                Ok((path, text, descriptor))
            })
            .collect::<anyhow::Result<_>>()?;
        let mut results = Vec::new();
        for component in &components {
            let name = match &self.name {
                Some(name) => name.clone(),
                None => handler_name(component, &parsed)?,
            };
            let bytes = std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
            let what = format!("{name} ({:.1} MB)", bytes.len() as f64 / 1e6);
            let route = format!("handlers/{name}");
            let call = self.remote.call(reqwest::Method::PUT, &route, Body::Bytes(bytes));
            let answer = with_progress(&what, call).await?;
            let version = answer["handler"]["version"].as_str().unwrap_or("-").to_owned();
            let cluster = &answer["cluster"];
            results.push(json!({"handler": name, "version": version, "from": component, "cluster": cluster}));
        }
        for (path, text, descriptor) in parsed {
            let route = format!("endpoints/{}", descriptor.endpoint);
            let answer = self.remote.call(reqwest::Method::PUT, &route, Body::Text(text)).await?;
            let cluster = &answer["cluster"];
            results.push(
                json!({"endpoint": descriptor.endpoint, "handler": descriptor.handler, "from": path, "cluster": cluster}),
            );
        }
        let value = json!({ "deployed": results });
        self.remote.print(&value, |value| {
            let mut lines = Vec::new();
            for item in value["deployed"].as_array().into_iter().flatten() {
                let mut line = if let Some(endpoint) = item["endpoint"].as_str() {
                    format!("endpoint {endpoint} -> {}", item["handler"].as_str().unwrap_or("-"))
                } else {
                    format!(
                        "handler {} version {}",
                        item["handler"].as_str().unwrap_or("-"),
                        item["version"].as_str().unwrap_or("-")
                    )
                };
                // In a cluster: whether the other hosts got it too.
                if let Some(cluster) = item["cluster"].as_str() {
                    line.push_str(&format!(" ({cluster})"));
                }
                lines.push(line);
            }
            lines.join("\n")
        });
        Ok(())
    }
}

/// How often the progress line is redrawn.
const PROGRESS_TICK: std::time::Duration = std::time::Duration::from_millis(250);

/// Awaits `step` (an upload that the host compiles before it answers: seconds for a large component), showing on a
/// terminal's stderr what is under way and for how long; nothing when stderr is not a terminal (a script's log).
async fn with_progress<T>(what: &str, step: impl std::future::Future<Output = T>) -> T {
    use std::io::{IsTerminal as _, Write as _};
    if !std::io::stderr().is_terminal() {
        return step.await;
    }
    let started = std::time::Instant::now();
    let mut step = std::pin::pin!(step);
    let mut ticks = tokio::time::interval(PROGRESS_TICK);
    let result = loop {
        tokio::select! {
            result = &mut step => break result,
            _ = ticks.tick() => {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\rdeploying {what}: uploading and compiling, {:.1} s", started.elapsed().as_secs_f64());
                let _ = err.flush();
            }
        }
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "\rdeploying {what}: done in {:.1} s{:20}", started.elapsed().as_secs_f64(), "");
    result
}

fn collect(path: &Path, components: &mut Vec<PathBuf>, descriptors: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if path.is_dir() {
        let mut found = false;
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for entry in entries {
            if entry.extension().is_some_and(|ext| ext == "wasm" || ext == DESCRIPTOR_EXTENSION) {
                collect(&entry, components, descriptors)?;
                found = true;
            }
        }
        if !found {
            bail!("{} holds no .wasm or .{DESCRIPTOR_EXTENSION} file", path.display());
        }
        return Ok(());
    }
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("wasm") => components.push(path.to_path_buf()),
        Some(DESCRIPTOR_EXTENSION) => descriptors.push(path.to_path_buf()),
        _ if !path.exists() => bail!("{} does not exist", path.display()),
        _ => bail!(
            "{}: deploy takes .wasm components, .{DESCRIPTOR_EXTENSION} descriptors or directories",
            path.display()
        ),
    }
    Ok(())
}

/// The handler a component is deployed as: the one a descriptor in the same directory names whose last segment is
/// the file's stem, or else `<directory name>/<file stem>`.
fn handler_name(component: &Path, descriptors: &[(PathBuf, String, Descriptor)]) -> anyhow::Result<String> {
    let stem = component.file_stem().and_then(|s| s.to_str()).context("a component file needs a name")?;
    let dir = component.parent().unwrap_or(Path::new("."));
    for (path, _, descriptor) in descriptors {
        let same_dir = path.parent().unwrap_or(Path::new(".")) == dir;
        if same_dir && descriptor.handler.rsplit('/').next() == Some(stem) {
            return Ok(descriptor.handler.clone());
        }
    }
    let project = std::fs::canonicalize(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "default".into());
    Ok(format!("{project}/{stem}"))
}
