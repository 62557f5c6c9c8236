//! `wasmsock new` per language: the real binary writes a project into a temp dir, the README's build command builds
//! it, `wasmsock deploy .` deploys it to a real host, and a client gets an echo through it. Slow (a Rust build from
//! scratch, `npm install`, componentize-py, and the host compiling a JavaScript or Python component), so each step is
//! bounded; the Rust build shares `target/templates` and the Python one the venv `cargo xtask guests` made (under
//! `$CARGO_TARGET_DIR` when it is set).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use wasmsock_tests::*;

/// How long building a generated project may take (a cold Rust build of wit-bindgen took 84 s on a busy 2-core box).
const BUILD: Duration = Duration::from_secs(900);
/// How long a deploy may take (the host compiles a JavaScript or Python component for tens of seconds).
const DEPLOY: Duration = Duration::from_secs(300);

/// The target directory `cargo xtask guests` used: `$CARGO_TARGET_DIR`, else the repository's `target/`.
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| repo_root().join("target"), Into::into)
}

/// The README's build command: the indented line under `## Build`.
fn readme_build(project: &Path) -> String {
    let readme = std::fs::read_to_string(project.join("README.md")).unwrap();
    let block = readme.split("## Build").nth(1).expect("a Build section");
    block.lines().find_map(|line| line.strip_prefix("    ")).expect("an indented build command").to_owned()
}

async fn run(what: &str, mut command: tokio::process::Command, limit: Duration) {
    let started = Instant::now();
    let output = command.stdin(Stdio::null()).kill_on_drop(true).output();
    let output = tokio::time::timeout(limit, output)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
        .unwrap_or_else(|err| panic!("{what}: {err}"));
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{what} failed ({}):\n{log}", output.status);
    eprintln!("{what}: {:.1?}", started.elapsed());
}

fn shell(script: &str, dir: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command.arg("-c").arg(script).current_dir(dir);
    command
}

fn missing(tool: &str) -> bool {
    let found = std::process::Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !found {
        assert!(std::env::var_os("CI").is_none(), "CI is set but {tool} is missing");
        eprintln!("\n!!! SKIPPED: {tool} is not installed !!!\n");
    }
    !found
}

/// Generates `name` in `lang`, builds it with `build` (the README's command, possibly adapted), deploys it with
/// `wasmsock deploy .` and checks the echo.
async fn new_build_deploy_echo(name: &str, lang: &str, adapt: impl FnOnce(String) -> String) {
    let work = tempfile::tempdir().unwrap();
    let project = work.path().join(name);
    let endpoint = format!("{name}-ep");
    let mut new = tokio::process::Command::new(binary());
    new.args(["new", name, "--lang", lang, "--endpoint", &endpoint, "--dir"]).arg(&project);
    run(&format!("wasmsock new {name} --lang {lang}"), new, WAIT).await;
    let build = adapt(readme_build(&project));
    let mut command = shell(&build, &project);
    command.env("CARGO_TARGET_DIR", target_dir().join("templates"));
    run(&format!("{lang} build: {build}"), command, BUILD).await;
    assert!(project.join("handler.wasm").is_file(), "the build wrote no handler.wasm");

    let plugins = Plugins::new();
    let host = BinaryHost::start(&plugins, &[]).await;
    let mut deploy = tokio::process::Command::new(binary());
    deploy.args(["deploy", ".", "--host", &format!("http://{}", host.admin)]).current_dir(&project);
    run(&format!("{lang} deploy"), deploy, DEPLOY).await;
    let mut ws = connect(&host.url(&endpoint)).await;
    let message = format!("hello, {name}");
    send(&mut ws, &message).await;
    assert_eq!(text(&mut ws).await, message);
}

#[tokio::test]
async fn rust_template_builds_deploys_and_echoes() {
    new_build_deploy_echo("tmpl-rust", "rust", |build| build).await;
}

#[tokio::test]
async fn js_template_builds_deploys_and_echoes() {
    if missing("node") || missing("npm") {
        return;
    }
    new_build_deploy_echo("tmpl-js", "js", |build| build).await;
}

#[tokio::test]
async fn python_template_builds_deploys_and_echoes() {
    if missing("python3") {
        return;
    }
    // Reuse the venv with componentize-py that `cargo xtask guests` made instead of making one per run.
    let shared = target_dir().join("python-guests/bin/python");
    new_build_deploy_echo("tmpl-py", "python", |build| {
        let venv = "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt && .venv/bin/python ";
        assert!(build.starts_with(venv), "{build}");
        if shared.is_file() { build.replacen(venv, &format!("{} ", shared.display()), 1) } else { build }
    })
    .await;
}
