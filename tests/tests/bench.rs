//! `wasmsock bench` against a host in process (fan-out through the chat example's rooms, round trips to the echo,
//! noise from the misbehaving handler): each mode completes what it was asked for and reports it; no timing is
//! asserted (the figures are for BENCHMARKS.md, not for tests).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use wasmsock::Limits;
use wasmsock::cli::bench::{BenchArgs, Mode};
use wasmsock_tests::*;

fn args(url: String, mode: Mode) -> BenchArgs {
    BenchArgs {
        url,
        mode,
        connections: 4,
        in_flight: 3,
        size: 64,
        count: 200,
        duration_secs: 30,
        hold_secs: 0,
        server_pid: vec![std::process::id()],
        publisher_url: None,
        message: None,
        once: false,
        interval_ms: 0,
        timeout_ms: 10_000,
        pipeline: false,
        json: true,
    }
}

fn echo_plugins() -> Plugins {
    Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_pipelining_its_window_counts_every_message_once() {
    let host = TestHost::start(echo_plugins()).await;
    let report = BenchArgs { pipeline: true, in_flight: 8, count: 400, ..args(host.url("echo"), Mode::Echo) }
        .measure()
        .await
        .unwrap();
    assert_eq!(report["pipeline"], true, "{report}");
    assert_eq!(report["completed"], 400, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_mode_counts_every_message_once_and_reports_latency_and_server_cpu() {
    let host = TestHost::start(echo_plugins()).await;
    let report = args(host.url("echo"), Mode::Echo).measure().await.unwrap();
    assert_eq!(report["mode"], "echo");
    assert_eq!(report["completed"], 200, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["connections"], 4);
    assert_eq!(report["in_flight"], 3);
    assert_eq!(report["size"], 64);
    for key in ["p50", "p99", "p999", "max"] {
        assert!(report["latency_us"][key].is_u64(), "{key}: {report}");
    }
    assert!(report["server_cpu_us_per_message"].is_f64(), "{report}");
    assert!(report["server_rss_kib"].as_u64().unwrap() > 0);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_mode_counts_handshakes() {
    let host = TestHost::start(echo_plugins()).await;
    let report = args(host.url("echo"), Mode::Connect).measure().await.unwrap();
    assert_eq!(report["mode"], "connect");
    assert_eq!(report["completed"], 200, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["concurrency"], 4);
    assert!(report["server_cpu_us_per_handshake"].is_f64(), "{report}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_mode_holds_its_connections_and_reads_the_servers_memory() {
    let host = TestHost::start(echo_plugins()).await;
    let report = args(host.url("echo"), Mode::Idle).measure().await.unwrap();
    assert_eq!(report["mode"], "idle");
    assert_eq!(report["connections"], 4, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(report["server_rss_kib_after"].as_u64().unwrap() > 0);
    assert!(report.get("server_rss_bytes_per_connection").is_some(), "{report}");
    host.stop().await;
}

#[tokio::test]
async fn a_server_off_loopback_is_refused() {
    let err = args("ws://192.0.2.1:80/x".into(), Mode::Echo).measure().await.unwrap_err();
    assert!(format!("{err:#}").contains("loopback"), "{err:#}");
    let err = args("wss://127.0.0.1:80/x".into(), Mode::Echo).measure().await.unwrap_err();
    assert!(format!("{err:#}").contains("ws://"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_mode_through_the_chat_examples_rooms_delivers_every_publish_to_every_member() {
    let plugins = Plugins::new().handler("examples/chat", "chat").endpoint("chat", "examples/chat");
    let host = TestHost::start(plugins).await;
    let url = format!("{}?room=bench", host.url("chat"));
    let report = BenchArgs { connections: 20, count: 100, ..args(url, Mode::Fanout) }.measure().await.unwrap();
    assert_eq!(report["mode"], "fanout");
    assert_eq!(report["published"], 100, "{report}");
    assert_eq!(report["delivered"], 20 * 100, "every member got every publish: {report}");
    assert_eq!(report["missed_deliveries"], 0, "{report}");
    assert_eq!(report["members_closed"], 0, "{report}");
    assert!(report["server_cpu_us_per_delivery"].is_f64(), "{report}");
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roundtrip_mode_opens_a_connection_per_sample_and_counts_every_echo() {
    let host = TestHost::start(echo_plugins()).await;
    let report = BenchArgs { count: 30, connections: 3, interval_ms: 1, ..args(host.url("echo"), Mode::Roundtrip) }
        .measure()
        .await
        .unwrap();
    assert_eq!(report["mode"], "roundtrip");
    assert_eq!(report["samples"], 30, "{report}");
    assert_eq!(report["completed"], 30, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    for kind in ["timed_out", "connect", "closed", "wrong_reply"] {
        assert_eq!(report["failures"][kind], 0, "{kind}: {report}");
    }
    assert_eq!(report["concurrency"], 3);
    assert!(report["max_in_flight"].as_u64().unwrap() <= 3, "{report}");
    for key in ["p50", "p99", "max"] {
        assert!(report["latency_us"][key].is_u64(), "{key}: {report}");
    }
    assert!(report["server_cpu_us_per_round_trip"].is_f64(), "{report}");
    let connections = r#"wasmsock_connections_total{direction="inbound",endpoint="echo"}"#;
    assert_eq!(Scrape::fetch(host.admin).await.get(connections), 30.0, "a fresh connection per sample");
    host.stop().await;
}

/// The misbehaving handler with a short deadline, so a `loop` fails fast, and never paused for it, so every `loop`
/// runs out its deadline and the counts below do not depend on the pause's timing.
async fn misbehave_host() -> TestHost {
    let plugins = Plugins::new().handler("tests/misbehave", "misbehave").endpoint("misbehave", "tests/misbehave");
    TestHost::start_with(
        plugins,
        Limits {
            handler_deadline: Duration::from_millis(20),
            pause_after: u32::MAX,
            close_timeout: Duration::from_secs(1),
            ..Limits::default()
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_mode_sends_over_and_over_and_reconnects_when_closed_for_failing() {
    let host = misbehave_host().await;
    // One connection, seven `loop`s: three failures in a row close it with 1011, so it takes three connections.
    let spin = BenchArgs {
        connections: 1,
        in_flight: 1,
        count: 7,
        message: Some("loop".into()),
        ..args(host.url("misbehave"), Mode::Spin)
    };
    let report = spin.measure().await.unwrap();
    assert_eq!(report["mode"], "spin");
    assert_eq!(report["sent"], 7, "{report}");
    assert_eq!(report["error_replies"], report["replies"], "every reply is an onerror's: {report}");
    assert!(report["replies"].as_u64().unwrap() >= 5, "{report}");
    assert_eq!(report["close_codes"]["1011"], 2, "{report}");
    assert_eq!(report["closes"], 2, "{report}");
    assert_eq!(report["handshakes"], 3, "{report}");
    assert_eq!(report["handshake_failures"], 0, "{report}");
    assert_eq!(report["once"], false);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spin_once_sends_one_message_per_connection_and_holds_it() {
    let host = misbehave_host().await;
    let once = BenchArgs {
        connections: 5,
        once: true,
        duration_secs: 2,
        message: Some("loop".into()),
        ..args(host.url("misbehave"), Mode::Spin)
    };
    let report = once.measure().await.unwrap();
    assert_eq!(report["sent"], 5, "{report}");
    assert_eq!(report["replies"], 5, "{report}");
    assert_eq!(report["error_replies"], 5, "{report}");
    assert_eq!(report["handshakes"], 5, "{report}");
    assert_eq!(report["closes"], 0, "one failure does not close a connection: {report}");
    assert_eq!(report["once"], true);
    host.stop().await;
}
