//! Installing the host like a service: the systemd unit (`packaging/wasmsock.service`: readiness, a draining stop, a
//! confined service; `systemd-analyze verify` when the machine has it), the real binary telling a service manager it is
//! ready and then stopping (`$NOTIFY_SOCKET`, as systemd's `Type=notify` listens), the container recipe
//! (`packaging/Containerfile`), whose settings must be flags `wasmsock serve` has, and the CLI's habits:
//! `--version` naming the WIT contract and `completions` scripts that the shell accepts.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::collections::HashMap;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wasmsock_tests::*;

fn packaging(file: &str) -> String {
    std::fs::read_to_string(repo_root().join("packaging").join(file)).unwrap()
}

/// The unit's `Key=Value` settings by section (comments and blank lines skipped; a repeated key keeps its last).
fn unit_settings(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut sections: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_owned();
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("not Key=Value: {line}"));
        sections.entry(section.clone()).or_default().insert(key.to_owned(), value.to_owned());
    }
    sections
}

/// `wasmsock serve --help`: the flags and variables the recipes may use.
fn serve_help() -> String {
    let output = Command::new(binary()).args(["serve", "--help"]).output().unwrap();
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

/// Whether `help` says that `serve` reads the variable `name` (a secret's value is not shown: `[env: NAME]`).
fn reads_variable(help: &str, name: &str) -> bool {
    help.contains(&format!("env: {name}=")) || help.contains(&format!("env: {name}]"))
}

/// The `--flags` in `words` must all be flags of `wasmsock serve`.
fn assert_serve_flags(words: &str, help: &str, what: &str) {
    for flag in words.split([' ', '"', ',', '[', ']']).filter(|w| w.starts_with("--")) {
        assert!(help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")), "{what}: {flag}");
    }
}

#[test]
fn the_unit_waits_for_readiness_stops_by_draining_and_confines_the_service() {
    let text = packaging("wasmsock.service");
    let unit = unit_settings(&text);
    let service = &unit["Service"];
    assert_eq!(service["Type"], "notify");
    assert_eq!(service["KillSignal"], "SIGTERM", "SIGTERM is what starts the drain");
    let stop: u64 = service["TimeoutStopSec"].parse().unwrap();
    assert!(stop >= 10, "the drain needs time: {stop} s");
    assert!(service["ExecStart"].starts_with("/usr/local/bin/wasmsock serve "));
    assert_serve_flags(&service["ExecStart"], &serve_help(), "ExecStart");
    for (key, value) in [("DynamicUser", "yes"), ("NoNewPrivileges", "yes"), ("ProtectSystem", "strict")] {
        assert_eq!(service[key], value, "{key}");
    }
    assert_eq!(unit["Install"]["WantedBy"], "multi-user.target");
    // Every WASMSOCK_* variable the unit or its comments name is one `serve` reads.
    let help = serve_help();
    for name in text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("WASMSOCK_")) {
        if name != "WASMSOCK_" {
            assert!(reads_variable(&help, name), "the unit names {name}, which serve does not read");
        }
    }
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("systemd-analyze is not installed: the unit was only parsed");
        return;
    };
    // Verified with ExecStart pointing at the binary built here (verify checks that it is executable).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wasmsock.service");
    std::fs::write(&path, text.replace("/usr/local/bin/wasmsock", &binary().display().to_string())).unwrap();
    let output = Command::new(analyze).args(["verify", "--man=no"]).arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "systemd-analyze verify: {stderr}");
}

fn which(name: &str) -> Result<std::path::PathBuf, ()> {
    let path = std::env::var_os("PATH").ok_or(())?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|p| p.is_file()).ok_or(())
}

/// The next datagram on `socket`, as text; panics after [`WAIT`].
fn next_state(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(WAIT)).unwrap();
    let mut buffer = [0u8; 4096];
    let n = socket.recv(&mut buffer).expect("a notification in time");
    String::from_utf8(buffer[..n].to_vec()).unwrap()
}

#[tokio::test]
async fn serve_tells_the_service_manager_when_it_listens_and_when_it_drains() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo");
    let mut child = tokio::process::Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--plugins"])
        .arg(plugins.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let ready = tokio::task::spawn_blocking({
        let socket = socket.try_clone().unwrap();
        move || next_state(&socket)
    })
    .await
    .unwrap();
    assert!(ready.starts_with("READY=1\n"), "{ready}");
    // The status names the address: it is serving when it says it is ready.
    let addr = ready.split("ws://").nth(1).unwrap().trim();
    let mut ws = connect(&format!("ws://{addr}/websockets/service/echo")).await;
    send(&mut ws, "ready").await;
    assert_eq!(text(&mut ws).await, "ready");
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let stopping = tokio::task::spawn_blocking(move || next_state(&socket)).await.unwrap();
    assert!(stopping.starts_with("STOPPING=1\n"), "{stopping}");
    let started = Instant::now();
    let status = tokio::time::timeout(Duration::from_secs(15), child.wait()).await.expect("exits after its drain");
    assert!(status.unwrap().success(), "a drained stop is a clean exit");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn the_container_recipe_builds_the_release_binary_into_a_small_image_run_unprivileged() {
    let recipe = packaging("Containerfile");
    let lines: Vec<&str> = recipe.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
    let stages: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert_eq!(stages.len(), 2, "a build stage and the image: {stages:?}");
    assert!(stages[0].ends_with(" AS build"), "{}", stages[0]);
    assert!(stages[1].contains("-slim"), "a small base: {}", stages[1]);
    assert!(recipe.contains("cargo build --release --locked -p wasmsock"));
    assert!(recipe.contains("COPY --from=build /src/target/release/wasmsock /usr/local/bin/wasmsock"));
    let user = lines.iter().find_map(|l| l.strip_prefix("USER ")).expect("a USER");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(lines.contains(&"STOPSIGNAL SIGTERM"));
    assert!(lines.contains(&"ENTRYPOINT [\"/usr/local/bin/wasmsock\"]"));
    // Its settings are flags and variables `serve` has.
    let help = serve_help();
    let cmd = lines.iter().find(|l| l.starts_with("CMD ")).expect("a CMD");
    assert!(cmd.contains("\"serve\""), "{cmd}");
    assert_serve_flags(cmd, &help, "CMD");
    for name in recipe.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("WASMSOCK_"))
    {
        assert!(reads_variable(&help, name), "the recipe names {name}, which serve does not read");
    }
}

#[test]
fn the_version_names_the_contract_and_completions_are_scripts_the_shell_accepts() {
    let output = Command::new(binary()).arg("--version").output().unwrap();
    let version = String::from_utf8(output.stdout).unwrap();
    let wit = std::fs::read_to_string(repo_root().join("wit/websockets.wit")).unwrap();
    let package = wit.lines().find_map(|l| l.strip_prefix("package ")).unwrap().trim_end_matches(';');
    assert!(version.starts_with("wasmsock ") && version.contains(package), "{version}");
    for shell in ["bash", "zsh", "fish"] {
        let output = Command::new(binary()).args(["completions", shell]).output().unwrap();
        assert!(output.status.success(), "{shell}");
        let script = String::from_utf8(output.stdout).unwrap();
        for word in ["serve", "deploy", "completions", "--plugins"] {
            assert!(script.contains(word), "{shell}: {word} missing");
        }
        // Checked for syntax by the shell itself where it is installed.
        if let Ok(path) = which(shell) {
            let dir = tempfile::tempdir().unwrap();
            let file = dir.path().join("wasmsock.completion");
            std::fs::write(&file, &script).unwrap();
            let checked = Command::new(path).arg("-n").arg(&file).output().unwrap();
            assert!(checked.status.success(), "{shell} -n: {}", String::from_utf8_lossy(&checked.stderr));
        }
    }
    let refused = Command::new(binary()).args(["completions", "tcsh"]).output().unwrap();
    assert!(!refused.status.success(), "an unknown shell is an error");
}
