//! The real `wasmsock` binary: `serve` on port 0 with a signal-driven drain, `check`, and `--help`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use wasmsock_tests::*;

#[tokio::test]
async fn serve_answers_on_its_port_and_drains_on_sigterm() {
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo");
    let mut host = BinaryHost::start(&plugins, &[]).await;
    // The open-file limit was raised to the hard limit (each connection is a file descriptor), and said so.
    let line = host.log_line("the open files limit", |line| line.contains("open files limit")).await;
    let value = |key: &str| line.split(&format!("{key}=")).nth(1).and_then(|rest| rest.split_whitespace().next());
    assert!(value("hard").is_some() && value("soft") == value("hard"), "{line}");
    let mut ws = connect(&host.url("echo")).await;
    send(&mut ws, "through the binary").await;
    assert_eq!(text(&mut ws).await, "through the binary");
    let pid = host.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let frame = close_frame(&mut ws).await.expect("a close frame on shutdown");
    assert_eq!(u16::from(frame.code), 1001);
    let status = tokio::time::timeout(WAIT, host.child.wait()).await.expect("the host exits in time").unwrap();
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn a_sigterm_drain_loses_nothing_queued_and_every_handler_sees_onclose() {
    let plugins =
        Plugins::new().handler("tests/recorder", "recorder").endpoint_granted("rec", "tests/recorder", &[LOOPBACK]);
    let mut host = BinaryHost::start(&plugins, &["--outbound-queue", "4096"]).await;
    // A reads nothing until after the signal: its handler's 1,000 messages wait in the host's queue and socket.
    let mut a = connect(&format!("{}?drain-a", host.url("rec"))).await;
    let mut b = connect(&format!("{}?drain-b", host.url("rec"))).await;
    send(&mut b, &format!("connect {}", host.url("rec"))).await;
    let client = client_id(&text(&mut b).await);
    let a_id = own_id(&mut a, "drain-a").await;
    let b_id = own_id(&mut b, "drain-b").await;
    send(&mut a, "burst 1000").await;
    let connections = format!("http://{}/admin/v1/connections", host.admin);
    eventually_async("the burst is queued", || async {
        let listing: serde_json::Value = reqwest::get(&connections).await.unwrap().json().await.unwrap();
        let a = listing["connections"].as_array().unwrap().iter().find(|c| c["id"] == a_id.as_str()).cloned();
        a.is_some_and(|a| a["messages_in"].as_u64() >= Some(2))
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pid = host.pid().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    for i in 0..1000 {
        assert_eq!(text(&mut a).await, format!("burst {i}"));
    }
    assert_eq!(text(&mut a).await, "burst done, 0 refused");
    assert_eq!(close_frame(&mut a).await.map(|f| u16::from(f.code)), Some(1001));
    assert_eq!(close_frame(&mut b).await.map(|f| u16::from(f.code)), Some(1001));
    let status = tokio::time::timeout(WAIT, host.child.wait()).await.expect("the host exits in time").unwrap();
    assert!(status.success(), "{status}");
    tokio::time::sleep(Duration::from_millis(100)).await; // The last log lines.
    let log = host.log().join("\n");
    for id in [&a_id, &b_id, &client] {
        assert!(log.contains(&format!("recorder saw onclose of {id}")), "no onclose for {id} in:\n{log}");
    }
}

#[test]
fn check_lists_every_problem_by_file_and_fails() {
    let plugins = Plugins::new()
        .handler("examples/echo", "echo")
        .endpoint("echo", "examples/echo")
        .file("x/broken.websocket", "{")
        .file("x/dangling.websocket", r#"{"handler": "x/none", "endpoint": "d"}"#);
    let out = Command::new(binary()).args(["check", "--plugins"]).arg(plugins.path()).output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{log}");
    assert!(log.contains("broken.websocket"), "{log}");
    assert!(log.contains("dangling.websocket") && log.contains("x/none.wasm"), "{log}");
    assert!(log.contains("2 problem(s)"), "{log}");
    let good = Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo");
    let out = Command::new(binary()).args(["check", "--plugins"]).arg(good.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_port_in_use_is_a_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let plugins = Plugins::new();
    let started = Instant::now();
    let out =
        Command::new(binary()).args(["serve", "--listen", &addr, "--plugins"]).arg(plugins.path()).output().unwrap();
    assert!(!out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains(&format!("cannot listen on {addr}")), "{log}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn help_documents_every_serve_flag() {
    let out = Command::new(binary()).args(["serve", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--listen",
        "--plugins",
        "--handler-deadline-ms",
        "--handler-memory-mib",
        "--outbound-queue",
        "--connect",
        "--console",
        "--log-format",
        "--nats-user",
        "--nats-password",
        "--nats-token",
        "--nats-nkey",
        "--nats-creds",
        "--nats-ca",
        "--nats-cert",
        "--nats-key",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn help_shows_no_broker_secret_given_in_the_environment() {
    let secrets = [
        ("WASMSOCK_NATS", "nats://alice:hunter2-url@127.0.0.1:4222"),
        ("WASMSOCK_NATS_PASSWORD", "hunter2-password"),
        ("WASMSOCK_NATS_TOKEN", "hunter2-token"),
        ("WASMSOCK_NATS_NKEY", "SUhunter2-seed"),
    ];
    let out = Command::new(binary()).args(["serve", "--help"]).envs(secrets).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("WASMSOCK_NATS_PASSWORD"), "{help}");
    assert!(!help.contains("hunter2"), "a secret in --help:\n{help}");
}

#[test]
fn new_refuses_a_bad_name_and_a_directory_in_use() {
    let work = tempfile::tempdir().unwrap();
    let out =
        Command::new(binary()).args(["new", "Bad Name", "--lang", "rust"]).current_dir(work.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("project name"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::create_dir(work.path().join("taken")).unwrap();
    std::fs::write(work.path().join("taken/keep.txt"), "mine").unwrap();
    let out = Command::new(binary()).args(["new", "taken", "--lang", "js"]).current_dir(work.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_to_string(work.path().join("taken/keep.txt")).unwrap(), "mine");
}
