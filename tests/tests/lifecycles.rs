//! Instance lifecycles (the descriptor's `"instance"`): what each keeps between events and what it keeps apart, a
//! trap replacing a kept instance, a deploy replacing it, and the limit on kept instances. Uses the `counter` test
//! component, which answers every message with how many messages its instance has seen.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::SinkExt as _;
use wasmsock::Limits;
use wasmsock_tests::*;

/// A plugins root with the counter as `tests/counter` and one endpoint per lifecycle, named after it (`default` has
/// no `"instance"` field).
fn plugins() -> Plugins {
    let mut plugins = Plugins::new().handler("tests/counter", "counter").endpoint("default", "tests/counter");
    for instance in ["per-event", "per-connection", "shared"] {
        let text = serde_json::json!({"handler": "tests/counter", "endpoint": instance, "instance": instance});
        plugins = plugins.file(&format!("descriptors/{instance}.websocket"), text.to_string());
    }
    plugins
}

/// Sends each message in turn and returns the answers.
async fn exchange(ws: &mut Ws, messages: &[&str]) -> Vec<String> {
    let mut answers = Vec::new();
    for message in messages {
        send(ws, message).await;
        answers.push(text(ws).await);
    }
    answers
}

async fn close(mut ws: Ws) {
    ws.send(tokio_tungstenite::tungstenite::Message::Close(None)).await.unwrap();
    while next(&mut ws).await.is_some() {}
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_event_leaks_no_state_between_events() {
    let host = TestHost::start(plugins()).await;
    assert_eq!(host.load_errors, Vec::<String>::new());
    for endpoint in ["default", "per-event"] {
        let mut a = host.connect(endpoint).await;
        let mut b = host.connect(endpoint).await;
        assert_eq!(exchange(&mut a, &["x", "x", "x"]).await, ["1", "1", "1"], "{endpoint}");
        assert_eq!(exchange(&mut b, &["x", "x"]).await, ["1", "1"], "{endpoint}");
        assert_eq!(exchange(&mut a, &["x"]).await, ["1"], "{endpoint}");
    }
    assert_eq!(host.app.instances.resident(), (0, 0));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_connection_keeps_state_within_a_connection_and_not_across() {
    let host = TestHost::start(plugins()).await;
    let mut a = host.connect("per-connection").await;
    let mut b = host.connect("per-connection").await;
    assert_eq!(exchange(&mut a, &["x", "x", "x"]).await, ["1", "2", "3"]);
    assert_eq!(exchange(&mut b, &["x", "x"]).await, ["1", "2"]);
    assert_eq!(exchange(&mut a, &["x"]).await, ["4"]);
    assert_eq!(host.app.instances.resident(), (2, 0));
    close(a).await;
    close(b).await;
    // A new connection starts from nothing, and the closed ones' instances are gone after their onclose.
    let mut c = host.connect("per-connection").await;
    assert_eq!(exchange(&mut c, &["x"]).await, ["1"]);
    eventually("the closed connections' instances are dropped", || host.app.instances.resident() == (1, 0)).await;
    close(c).await;
    eventually("every per-connection instance is dropped", || host.app.instances.resident() == (0, 0)).await;
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_keeps_state_across_connections() {
    let host = TestHost::start(plugins()).await;
    let mut a = host.connect("shared").await;
    let mut b = host.connect("shared").await;
    assert_eq!(exchange(&mut a, &["x", "x"]).await, ["1", "2"]);
    assert_eq!(exchange(&mut b, &["x"]).await, ["3"]);
    assert_eq!(exchange(&mut a, &["x"]).await, ["4"]);
    close(a).await;
    close(b).await;
    let mut c = host.connect("shared").await;
    assert_eq!(exchange(&mut c, &["x"]).await, ["5"]);
    assert_eq!(host.app.instances.resident(), (0, 1));
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_a_shared_instance_replaces_it_and_the_next_event_works() {
    let host = TestHost::start(plugins()).await;
    let mut a = host.connect("shared").await;
    let mut b = host.connect("shared").await;
    assert_eq!(exchange(&mut a, &["x", "x"]).await, ["1", "2"]);
    // The trap costs its event; the onerror that follows runs in the replacement instance, which counts afresh.
    assert_eq!(exchange(&mut a, &["trap"]).await, ["error"]);
    assert_eq!(exchange(&mut b, &["x"]).await, ["1"]);
    assert_eq!(exchange(&mut a, &["x"]).await, ["2"]);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trap_in_a_per_connection_instance_replaces_only_that_connections() {
    let host = TestHost::start(plugins()).await;
    let mut a = host.connect("per-connection").await;
    let mut b = host.connect("per-connection").await;
    assert_eq!(exchange(&mut a, &["x", "x"]).await, ["1", "2"]);
    assert_eq!(exchange(&mut b, &["x"]).await, ["1"]);
    assert_eq!(exchange(&mut a, &["trap", "x"]).await, ["error", "1"]);
    assert_eq!(exchange(&mut b, &["x"]).await, ["2"]);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deploy_replaces_kept_instances_at_their_next_event() {
    let plugins = Plugins::new().handler("tests/tagged", "tagged-v1");
    let mut plugins = plugins;
    for instance in ["per-connection", "shared"] {
        let text = serde_json::json!({"handler": "tests/tagged", "endpoint": instance, "instance": instance});
        plugins = plugins.file(&format!("descriptors/{instance}.websocket"), text.to_string());
    }
    let host = TestHost::start(plugins).await;
    let mut per_connection = host.connect("per-connection").await;
    let mut shared = host.connect("shared").await;
    assert_eq!(exchange(&mut per_connection, &["a"]).await, ["v1:a"]);
    assert_eq!(exchange(&mut shared, &["a"]).await, ["v1:a"]);
    let bytes = std::fs::read(component("tagged-v2")).unwrap();
    let url = format!("http://{}/admin/v1/handlers/tests/tagged", host.admin);
    let response = reqwest::Client::new().put(url).body(bytes).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "{}", response.text().await.unwrap());
    assert_eq!(exchange(&mut per_connection, &["b"]).await, ["v2:b"]);
    assert_eq!(exchange(&mut shared, &["b"]).await, ["v2:b"]);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_per_connection_session_past_the_resident_limit_is_told_to_come_back_later() {
    let limits = Limits { max_resident_instances: 1, ..Limits::default() };
    let host = TestHost::start_with(plugins(), limits).await;
    let mut a = host.connect("per-connection").await;
    assert_eq!(exchange(&mut a, &["x"]).await, ["1"]);
    let mut b = host.connect("per-connection").await;
    let frame = close_frame(&mut b).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1013);
    // The session that has an instance carries on, and per-event endpoints need no resident slot.
    assert_eq!(exchange(&mut a, &["x"]).await, ["2"]);
    let mut c = host.connect("per-event").await;
    assert_eq!(exchange(&mut c, &["x"]).await, ["1"]);
    host.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_listing_shows_each_endpoints_lifecycle() {
    let host = TestHost::start(plugins()).await;
    let url = format!("http://{}/admin/v1/endpoints", host.admin);
    let listing: serde_json::Value = reqwest::get(url).await.unwrap().json().await.unwrap();
    let mut seen: Vec<(String, String)> = listing["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_owned(), e["instance"].as_str().unwrap().to_owned()))
        .collect();
    seen.sort();
    let expected = [
        ("default", "per-event"),
        ("per-connection", "per-connection"),
        ("per-event", "per-event"),
        ("shared", "shared"),
    ];
    assert_eq!(seen, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    host.stop().await;
}
