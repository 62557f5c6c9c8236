//! Fair share between projects: one project's spinning handler (the misbehave component's `loop`) does not stop
//! another project's events (the real binary, real sockets), a handler that keeps running out its deadline is paused,
//! and each project's quotas of connections, kept instances and outbound clients refuse that project only, naming
//! the quota.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use wasmsock::wire::{Limits, ProjectQuotas};
use wasmsock_tests::*;

/// The two projects: `noisy` spins on request, `quiet` echoes.
fn two_projects() -> Plugins {
    Plugins::new()
        .handler("noisy/misbehave", "misbehave")
        .endpoint("noisy", "noisy/misbehave")
        .handler("quiet/echo", "echo")
        .endpoint("quiet", "quiet/echo")
}

/// One round trip of the quiet project: a fresh connection, one message and its echo. Panics when it does not answer
/// within [`WAIT`]; returns how long it took.
async fn round_trip(url: &str, n: usize) -> Duration {
    let started = Instant::now();
    let answered = tokio::time::timeout(WAIT, async {
        let mut ws = connect(url).await;
        let message = format!("round trip {n}");
        send(&mut ws, &message).await;
        assert_eq!(text(&mut ws).await, message);
        let _ = ws.close(None).await;
    })
    .await;
    assert!(answered.is_ok(), "round trip {n} of the quiet project did not answer within {WAIT:?}");
    started.elapsed()
}

/// `count` round trips one after another; prints their median and 99th percentile.
async fn round_trips(url: &str, what: &str, count: usize) {
    let mut took = Vec::with_capacity(count);
    for n in 0..count {
        took.push(round_trip(url, n).await);
    }
    took.sort();
    eprintln!(
        "fairness: {what}: {count} round trips answered, p50 {:?}, p99 {:?}, max {:?}",
        took[count / 2],
        took[(count * 99 / 100).min(count - 1)],
        took[count - 1]
    );
}

/// A noisy connection: sends `loop`, waits for the answer (the onerror the handler sends back, or the close after
/// three failures), reconnects when closed, while `running` and at most `rounds` times.
async fn spin(url: String, running: Arc<AtomicBool>, rounds: usize, sent: Arc<AtomicU64>) {
    let mut ws = None;
    for _ in 0..rounds {
        if !running.load(Ordering::Acquire) {
            break;
        }
        if ws.is_none() {
            ws = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str()))
                .await
                .ok()
                .and_then(Result::ok)
                .map(|(ws, _)| ws);
        }
        let Some(socket) = ws.as_mut() else { continue };
        if socket.send(Message::text("loop")).await.is_err() {
            ws = None;
            continue;
        }
        sent.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(Duration::from_secs(30), socket.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => {}
            _ => ws = None,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_spinning_project_does_not_stop_another_projects_events() {
    let plugins = two_projects();
    // Pauses off: this is the scheduler alone.
    let host = BinaryHost::start(&plugins, &["--pause-after", "1000000"]).await;
    let (noisy, quiet) = (host.url("noisy"), host.url("quiet"));
    round_trips(&quiet, "alone", 20).await;

    // 16 connections send `loop` over and over.
    let running = Arc::new(AtomicBool::new(true));
    let sent = Arc::new(AtomicU64::new(0));
    let spinners: Vec<_> =
        (0..16).map(|_| tokio::spawn(spin(noisy.clone(), running.clone(), 1000, sent.clone()))).collect();
    eventually("the spinners have sent", || sent.load(Ordering::Relaxed) >= 16).await;
    round_trips(&quiet, "16 connections spinning over and over", 30).await;
    running.store(false, Ordering::Release);
    for spinner in spinners {
        spinner.abort();
    }

    // 300 connections each send `loop` once, at the same moment.
    let mut loud = Vec::new();
    for _ in 0..300 {
        let mut ws = connect(&noisy).await;
        ws.send(Message::text("loop")).await.unwrap();
        loud.push(ws);
    }
    round_trips(&quiet, "300 connections sent `loop` once", 30).await;

    // The network side stayed live meanwhile: the admin API answers.
    let health = reqwest::get(format!("http://{}/healthz", host.admin)).await.unwrap();
    assert!(health.status().is_success());
    let metrics = reqwest::get(format!("http://{}/metrics", host.admin)).await.unwrap().text().await.unwrap();
    let scrape = Scrape::parse(&metrics);
    assert!(scrape.get(r#"wasmsock_project_calls_total{project="quiet"}"#) >= 200.0, "{metrics}");
    // The spinners held the slot for much of the run; how long depends on how soon the quiet round trips were done
    // (0.47 s on a loaded 2-core machine), so only a fraction of it is asked for.
    assert!(scrape.get(r#"wasmsock_project_handler_seconds_total{project="noisy"}"#) > 0.2, "{metrics}");
    assert!(metrics.contains(r#"wasmsock_project_slot_wait_seconds_bucket{le="#), "{metrics}");
    drop(loud);
}

#[tokio::test]
async fn a_handler_that_keeps_running_out_its_deadline_is_paused_then_runs_again() {
    let plugins = two_projects();
    let host = BinaryHost::start(
        &plugins,
        &["--handler-deadline-ms", "100", "--pause-after", "2", "--pause-ms", "1500", "--max-handler-failures", "10"],
    )
    .await;
    let mut ws = connect(&host.url("noisy")).await;
    for _ in 0..2 {
        send(&mut ws, "loop").await;
        let error = text(&mut ws).await;
        assert!(error.contains("deadline"), "{error}");
    }
    // Paused: the next event is not run; the onerror says why and until when.
    send(&mut ws, "hello").await;
    let error = text(&mut ws).await;
    assert!(error.contains("is paused until 20") && error.contains("2 calls in a row ran out"), "{error}");
    let line = host.log_line("about the pause", |line| line.contains("pausing the handler")).await;
    assert!(line.contains("noisy/misbehave"), "{line}");
    // Listed as paused.
    let handlers: serde_json::Value =
        reqwest::get(format!("http://{}/admin/v1/handlers", host.admin)).await.unwrap().json().await.unwrap();
    let misbehave = handlers["handlers"].as_array().unwrap().iter().find(|h| h["name"] == "noisy/misbehave").unwrap();
    assert!(misbehave["paused_until"].as_str().is_some_and(|t| t.ends_with('Z')), "{handlers}");
    let metrics = reqwest::get(format!("http://{}/metrics", host.admin)).await.unwrap().text().await.unwrap();
    let pauses = Scrape::parse(&metrics);
    assert_eq!(pauses.get(r#"wasmsock_handler_pauses_total{handler="noisy/misbehave",project="noisy"}"#), 1.0);
    // Another project is not paused.
    round_trip(&host.url("quiet"), 0).await;
    // After the pause the handler runs again.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    send(&mut ws, "back").await;
    assert_eq!(text(&mut ws).await, "back");
}

#[tokio::test]
async fn a_project_at_its_quotas_is_refused_naming_them_and_another_project_is_not() {
    let peer = PeerServer::start(PeerMode::Echo).await;
    let plugins = Plugins::new()
        .handler("a/echo", "echo")
        .endpoint("a-echo", "a/echo")
        .handler("a/counter", "counter")
        .endpoint_with("a-kept", "a/counter", serde_json::json!({"instance": "per-connection"}))
        .handler("a/recorder", "recorder")
        .endpoint_granted("a-rec", "a/recorder", &[LOOPBACK])
        .handler("b/echo", "echo")
        .endpoint("b-echo", "b/echo")
        .handler("b/counter", "counter")
        .endpoint_with("b-kept", "b/counter", serde_json::json!({"instance": "per-connection"}))
        .handler("b/recorder", "recorder")
        .endpoint_granted("b-rec", "b/recorder", &[LOOPBACK])
        // Project a's own quotas; b has the host's.
        .file("a/project.json", r#"{"quotas": {"connections": 3, "resident-instances": 1, "clients": 1}}"#);
    let limits = Limits {
        close_timeout: Duration::from_secs(1),
        project: ProjectQuotas {
            connections: 100,
            resident_instances: 100,
            clients: 100,
            calls: 64,
            ..ProjectQuotas::default()
        },
        ..Limits::default()
    };
    let host = TestHost::start_with(plugins, limits).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    let mut open = Vec::new();

    // Resident instances: a's first per-connection session keeps one; the second is closed with 1013 naming the quota.
    let mut kept = host.connect("a-kept").await;
    send(&mut kept, "x").await;
    assert_eq!(text(&mut kept).await, "1");
    let mut second = host.connect("a-kept").await;
    send(&mut second, "x").await;
    let close = close_frame(&mut second).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1013);
    assert!(close.reason.contains("quota resident-instances (1) of project a"), "{}", close.reason);
    let mut b_kept = host.connect("b-kept").await;
    send(&mut b_kept, "x").await;
    assert_eq!(text(&mut b_kept).await, "1");
    open.extend([kept, b_kept]);

    // Outbound clients: a's recorder opens one; the second is a limit error naming the quota; b's still opens.
    let mut a_rec = host.connect("a-rec").await;
    send(&mut a_rec, &format!("connect-with {} a/recorder", peer.url("/one"))).await;
    assert!(text(&mut a_rec).await.starts_with("created "));
    send(&mut a_rec, &format!("connect-with {} a/recorder", peer.url("/two"))).await;
    let refused = text(&mut a_rec).await;
    assert!(refused.contains("Limit") && refused.contains("quota of 1 outbound clients"), "{refused}");
    assert!(refused.contains("quotas.clients"), "{refused}");
    let mut b_rec = host.connect("b-rec").await;
    send(&mut b_rec, &format!("connect-with {} b/recorder", peer.url("/three"))).await;
    assert!(text(&mut b_rec).await.starts_with("created "));
    open.extend([a_rec, b_rec]);

    // Connections: a has two sessions now (a-kept and a-rec; the refused one is gone); a third, then 503.
    eventually("the refused session of a is gone", || host.app.hub.admitted("a-kept") == 1).await;
    open.push(host.connect("a-echo").await);
    let refused = tokio_tungstenite::connect_async(host.url("a-echo")).await.expect_err("past the quota");
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else { panic!("not HTTP: {refused}") };
    assert_eq!(response.status(), 503);
    let body = String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned();
    assert!(body.contains("quota of 3 inbound sessions") && body.contains("quotas.connections"), "{body}");
    let mut b = host.connect("b-echo").await;
    send(&mut b, "still here").await;
    assert_eq!(text(&mut b).await, "still here");

    let scrape = Scrape::fetch(host.admin).await;
    // The refused per-connection session was refused at its onopen, and again at any event after it.
    assert!(scrape.get(r#"wasmsock_quota_refusals_total{project="a",quota="resident-instances"}"#) >= 1.0);
    for quota in ["clients", "connections"] {
        let key = format!(r#"wasmsock_quota_refusals_total{{project="a",quota="{quota}"}}"#);
        assert_eq!(scrape.get(&key), 1.0, "{key}");
    }
    assert_eq!(scrape.get(r#"wasmsock_quota_refusals_total{project="b",quota="connections"}"#), 0.0);
    drop(open);
    host.stop().await;
}

#[tokio::test]
async fn a_bad_project_manifest_is_an_error_naming_the_file_and_the_field() {
    let plugins = Plugins::new()
        .handler("a/echo", "echo")
        .endpoint("a-echo", "a/echo")
        .file("a/project.json", r#"{"quotas": {"calls": 0}}"#);
    let host = TestHost::start(plugins).await;
    let errors = host.load_errors.join("\n");
    assert!(errors.contains("a/project.json") && errors.contains("quotas.calls"), "{errors}");
    // The rest is served.
    let mut ws = host.connect("a-echo").await;
    send(&mut ws, "hi").await;
    assert_eq!(text(&mut ws).await, "hi");
    host.stop().await;
}
