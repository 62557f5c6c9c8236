//! `cargo xtask`: the project's build tasks, so that one command works on a fresh machine.
//!
//! - `cargo xtask serve [-- SERVE-ARGS]`: build the example plugins and run the host on them (release build).
//! - `cargo xtask test`: build every guest component, then run the workspace's tests.
//! - `cargo xtask guests`: build the guest components only (examples into `plugins/`, test components into
//!   `tests/components/`).
//! - `cargo xtask autobahn [AUTOBAHN-DIR]`: run the Autobahn|Testsuite fuzzing client against the host's echo endpoint.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

/// The target guests are built for.
const GUEST_TARGET: &str = "wasm32-wasip2";

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
            run(Command::new(cargo())
                .current_dir(&root)
                .args(["build", "-p", "wasmsock"]))?;
            run(Command::new(cargo())
                .current_dir(&root)
                .arg("test")
                .args(&rest))
        }
        "serve" => {
            guests(&root)?;
            let rest = rest.iter().skip_while(|a| *a == "--");
            run(Command::new(cargo())
                .current_dir(&root)
                .args([
                    "run",
                    "--release",
                    "-p",
                    "wasmsock",
                    "--",
                    "serve",
                    "--plugins",
                    "plugins",
                ])
                .args(rest))
        }
        "autobahn" => {
            let dir = rest
                .first()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/tmp/autobahn"));
            guests(&root)?;
            autobahn(&root, &dir)
        }
        _ => bail!(
            "usage: cargo xtask (serve [-- ARGS] | test [ARGS] | guests | autobahn [AUTOBAHN-DIR])"
        ),
    }
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn workspace_root() -> anyhow::Result<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask has no parent directory")
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let status = command
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// Makes sure the guest target is installed (a fresh machine has only the host's).
fn ensure_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    match installed {
        Ok(out)
            if String::from_utf8_lossy(&out.stdout)
                .lines()
                .any(|l| l.trim() == GUEST_TARGET) =>
        {
            Ok(())
        }
        Ok(_) => run(Command::new("rustup").args(["target", "add", GUEST_TARGET])),
        // Without rustup the toolchain must already have the target; cargo will say so if not.
        Err(_) => Ok(()),
    }
}

/// The guest crates: every directory with a Cargo.toml under the guest directories.
fn guest_crates(root: &Path) -> anyhow::Result<Vec<(String, PathBuf)>> {
    let mut crates = Vec::new();
    for dir in GUEST_DIRS {
        let dir = root.join(dir);
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let path = entry?.path();
            if path.join("Cargo.toml").is_file() {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                crates.push((name, dir.clone()));
            }
        }
    }
    crates.sort();
    Ok(crates)
}

/// Builds every guest crate for wasm32-wasip2 and puts `<name>.wasm` beside its crate directory.
fn guests(root: &Path) -> anyhow::Result<()> {
    ensure_target()?;
    let crates = guest_crates(root)?;
    let started = Instant::now();
    let mut build = Command::new(cargo());
    build
        .current_dir(root)
        .args(["build", "--profile", "guest", "--target", GUEST_TARGET]);
    for (name, _) in &crates {
        build.args(["-p", name]);
    }
    run(&mut build)?;
    let out = target_dir(root)?.join(GUEST_TARGET).join("guest");
    for (name, dir) in &crates {
        let built = out.join(format!("{}.wasm", name.replace('-', "_")));
        let dest = dir.join(format!("{name}.wasm"));
        std::fs::copy(&built, &dest)
            .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    }
    eprintln!(
        "xtask: built {} guest components in {:.1?}",
        crates.len(),
        started.elapsed()
    );
    Ok(())
}

fn target_dir(root: &Path) -> anyhow::Result<PathBuf> {
    let out = Command::new(cargo())
        .current_dir(root)
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .output()
        .context("running cargo metadata")?;
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("parsing cargo metadata")?;
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .context("cargo metadata has no target_directory")
}

/// Kills the host when dropped, so a failed run leaves no server behind.
struct Host(Child);

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Runs the Autobahn fuzzing client (all cases) against the echo endpoint and checks the report.
fn autobahn(root: &Path, dir: &Path) -> anyhow::Result<()> {
    let wstest = dir.join("wstest");
    if !wstest.is_file() {
        bail!(
            "{} is missing: install it with ../shared/tools/autobahn/setup.sh {}",
            wstest.display(),
            dir.display()
        );
    }
    run(Command::new(cargo())
        .current_dir(root)
        .args(["build", "-p", "wasmsock"]))?;
    let binary = target_dir(root)?.join("debug").join("wasmsock");
    let port = free_port()?;
    let work = target_dir(root)?.join("autobahn");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    let config = serde_json::json!({
        "outdir": "reports/servers",
        "servers": [{"agent": "wasmsock-echo", "url": format!("ws://127.0.0.1:{port}/websockets/service/echo")}],
        "cases": ["*"],
        "exclude-cases": [],
        "exclude-agent-cases": {},
    });
    std::fs::write(
        work.join("fuzzingclient.json"),
        serde_json::to_vec_pretty(&config)?,
    )?;
    let _host = Host(
        Command::new(&binary)
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--plugins",
            ])
            .arg(root.join("plugins"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("the host did not start listening on port {port}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let started = Instant::now();
    run(Command::new(&wstest).current_dir(&work).args([
        "-m",
        "fuzzingclient",
        "-s",
        "fuzzingclient.json",
    ]))?;
    eprintln!(
        "xtask: autobahn fuzzingclient ran in {:.1?}",
        started.elapsed()
    );
    let check = root.join("../shared/tools/autobahn/check.py");
    run(Command::new("python3")
        .arg(check)
        .arg(work.join("reports/servers/index.json")))
}
