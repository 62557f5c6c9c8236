//! `/metrics` on the admin listener: after known traffic (connections, messages, a trap, a timeout, an out-of-memory,
//! deploys) every counter moved by exactly that traffic and no other counter moved.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use std::time::Duration;

use wasmsock::Limits;
use wasmsock_tests::*;

const CONNECTIONS: usize = 3;
const MESSAGES: usize = 5;

#[tokio::test]
async fn counters_move_by_exactly_the_traffic() {
    let plugins = Plugins::new()
        .handler("examples/echo", "echo")
        .endpoint("echo", "examples/echo")
        .handler("tests/misbehave", "misbehave")
        .endpoint("misbehave", "tests/misbehave");
    // A short deadline keeps the `loop` case quick; echo calls take well under a millisecond.
    let limits = Limits {
        close_timeout: Duration::from_secs(1),
        handler_deadline: Duration::from_millis(300),
        ..Limits::default()
    };
    let host = TestHost::start_with(plugins, limits).await;
    let before = Scrape::fetch(host.admin).await;

    let mut bytes = 0;
    let mut sockets = Vec::new();
    for c in 0..CONNECTIONS {
        let mut ws = host.connect("echo").await;
        for m in 0..MESSAGES {
            let message = format!("conn {c} message {m}");
            send(&mut ws, &message).await;
            assert_eq!(text(&mut ws).await, message);
            bytes += message.len();
        }
        sockets.push(ws);
    }
    let during = Scrape::fetch(host.admin).await;
    assert_eq!(during.get(r#"wasmsock_connections_open{direction="inbound",endpoint="echo"}"#), CONNECTIONS as f64);

    // One connection misbehaves three ways; each failure is answered with an onerror the handler echoes as text, and
    // each is followed by an echo (a success, so the failures are not "in a row" and the connection stays open).
    let mut bad = host.connect("misbehave").await;
    let mut error_bytes = 0;
    for (request, says) in [("trap", "trapped"), ("loop", "deadline"), ("alloc", "memory")] {
        send(&mut bad, request).await;
        let error = text(&mut bad).await;
        assert!(error.starts_with("error: ") && error.contains(says), "{request}: {error}");
        error_bytes += error.len();
        send(&mut bad, "ok").await;
        assert_eq!(text(&mut bad).await, "ok");
    }
    sockets.push(bad);
    for mut ws in sockets {
        ws.close(None).await.unwrap();
        while next(&mut ws).await.is_some() {}
    }
    eventually("every session has seen onclose", || host.app.sessions() == 0).await;

    let admin = format!("http://{}/admin/v1", host.admin);
    let http = reqwest::Client::new();
    let echo = std::fs::read(component("echo")).unwrap();
    let ok = http.put(format!("{admin}/handlers/extra/echo")).body(echo).send().await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    let refused = http.put(format!("{admin}/handlers/extra/broken")).body("not wasm").send().await.unwrap();
    assert_eq!(refused.status(), 422);

    let after = Scrape::fetch(host.admin).await;
    let echo = r#"direction="inbound",endpoint="echo""#;
    let bad = r#"direction="inbound",endpoint="misbehave""#;
    let (n, m) = (CONNECTIONS as f64, (CONNECTIONS * MESSAGES) as f64);
    let bad_sent_bytes = (error_bytes + 3 * "ok".len()) as f64;
    let expected: BTreeMap<String, f64> = [
        (format!("wasmsock_connections_total{{{echo}}}"), n),
        (format!("wasmsock_messages_received_total{{{echo}}}"), m),
        (format!("wasmsock_messages_sent_total{{{echo}}}"), m),
        (format!("wasmsock_received_bytes_total{{{echo}}}"), bytes as f64),
        (format!("wasmsock_sent_bytes_total{{{echo}}}"), bytes as f64),
        (r#"wasmsock_events_total{handler="examples/echo",method="onopen"}"#.into(), n),
        (r#"wasmsock_events_total{handler="examples/echo",method="onmessage"}"#.into(), m),
        (r#"wasmsock_events_total{handler="examples/echo",method="onclose"}"#.into(), n),
        (r#"wasmsock_handler_duration_seconds_count{handler="examples/echo",method="onopen"}"#.into(), n),
        (r#"wasmsock_handler_duration_seconds_count{handler="examples/echo",method="onmessage"}"#.into(), m),
        (r#"wasmsock_handler_duration_seconds_count{handler="examples/echo",method="onclose"}"#.into(), n),
        (format!("wasmsock_connections_total{{{bad}}}"), 1.0),
        (format!("wasmsock_messages_received_total{{{bad}}}"), 6.0),
        (format!("wasmsock_messages_sent_total{{{bad}}}"), 6.0),
        (format!("wasmsock_received_bytes_total{{{bad}}}"), 19.0),
        (format!("wasmsock_sent_bytes_total{{{bad}}}"), bad_sent_bytes),
        (r#"wasmsock_events_total{handler="tests/misbehave",method="onopen"}"#.into(), 1.0),
        (r#"wasmsock_events_total{handler="tests/misbehave",method="onmessage"}"#.into(), 6.0),
        (r#"wasmsock_events_total{handler="tests/misbehave",method="onerror"}"#.into(), 3.0),
        (r#"wasmsock_events_total{handler="tests/misbehave",method="onclose"}"#.into(), 1.0),
        (r#"wasmsock_handler_duration_seconds_count{handler="tests/misbehave",method="onopen"}"#.into(), 1.0),
        (r#"wasmsock_handler_duration_seconds_count{handler="tests/misbehave",method="onmessage"}"#.into(), 6.0),
        (r#"wasmsock_handler_duration_seconds_count{handler="tests/misbehave",method="onerror"}"#.into(), 3.0),
        (r#"wasmsock_handler_duration_seconds_count{handler="tests/misbehave",method="onclose"}"#.into(), 1.0),
        (r#"wasmsock_handler_failures_total{handler="tests/misbehave",kind="trap"}"#.into(), 1.0),
        (r#"wasmsock_handler_failures_total{handler="tests/misbehave",kind="timeout"}"#.into(), 1.0),
        (r#"wasmsock_handler_failures_total{handler="tests/misbehave",kind="out_of_memory"}"#.into(), 1.0),
        // Every call by project: echo's onopen, onmessage and onclose; misbehave's eleven events.
        (r#"wasmsock_project_calls_total{project="examples"}"#.into(), n + m + n),
        (r#"wasmsock_project_slot_wait_seconds_count{project="examples"}"#.into(), n + m + n),
        (r#"wasmsock_project_calls_total{project="tests"}"#.into(), 11.0),
        (r#"wasmsock_project_slot_wait_seconds_count{project="tests"}"#.into(), 11.0),
        (r#"wasmsock_deploys_total{kind="handler",outcome="ok",source="admin"}"#.into(), 1.0),
        (r#"wasmsock_deploys_total{kind="handler",outcome="failed",source="admin"}"#.into(), 1.0),
    ]
    .into_iter()
    .collect();

    // Every counter (and every histogram's count) moved by exactly what is expected: the listed ones by their
    // amount, every other one not at all.
    let mut moved = BTreeMap::new();
    for (key, value) in &after.0 {
        let name = key.split('{').next().unwrap();
        if name.ends_with("_total") || name.ends_with("_count") {
            let delta = value - before.get(key);
            if delta != 0.0 {
                moved.insert(key.clone(), delta);
            }
        }
    }
    // Running time by project moved by some amount (not known in advance): the loop alone ran for its deadline.
    for (project, at_least) in [("examples", 0.0), ("tests", 0.25)] {
        let ran = moved.remove(&format!(r#"wasmsock_project_handler_seconds_total{{project="{project}"}}"#));
        assert!(ran.is_some_and(|ran| ran > at_least), "{project}: {ran:?}");
    }
    assert_eq!(moved, expected, "\nafter:\n{:#?}", after.0);
    // The gauge is back where it started, and nothing was closed for a full queue.
    assert_eq!(after.get(&format!("wasmsock_connections_open{{{echo}}}")), 0.0);
    assert_eq!(after.get(&format!("wasmsock_connections_open{{{bad}}}")), 0.0);
    host.stop().await;
}

#[tokio::test]
async fn metrics_need_the_admin_token_when_one_is_set() {
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo");
    let app = wasmsock::App::load(plugins.path(), wasmsock::Limits::default()).await.unwrap().0;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let admin = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = admin.local_addr().unwrap();
    let admin = wasmsock::http::AdminListener { listener: admin, token: Some("s3cret".into()) };
    let server = tokio::spawn(wasmsock::http::serve(app, listener, Some(admin), std::future::pending()));
    let url = format!("http://{addr}/metrics");
    let http = reqwest::Client::new();
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let with = http.get(&url).bearer_auth("s3cret").send().await.unwrap();
    assert!(with.status().is_success(), "{}", with.status());
    let scrape = Scrape::parse(&with.text().await.unwrap());
    assert_eq!(scrape.get(r#"wasmsock_connections_open{direction="inbound",endpoint="echo"}"#), 0.0);
    server.abort();
}

#[tokio::test]
async fn files_the_watch_applies_or_refuses_count_as_deploys() {
    let plugins = Plugins::new().handler("examples/echo", "echo");
    let host = TestHost::start(plugins).await;
    host.app.watch(Duration::from_millis(50));
    let before = Scrape::fetch(host.admin).await;
    let root = host.plugins.path();
    std::fs::write(root.join("late.websocket"), r#"{"handler": "examples/echo", "endpoint": "late"}"#).unwrap();
    std::fs::write(root.join("broken.websocket"), "{").unwrap();
    eventually("the watch serves the new endpoint", || host.app.registry.endpoint("late").is_some()).await;
    // The reload counts its deploys once it has applied them, a moment after the endpoint is served, and the two files
    // may land in two reloads: wait until both counters moved, then check they moved by exactly one each.
    let ok = r#"wasmsock_deploys_total{kind="descriptor",outcome="ok",source="watch"}"#;
    let failed = r#"wasmsock_deploys_total{kind="file",outcome="failed",source="watch"}"#;
    eventually_async("both deploys are counted", || async {
        let now = Scrape::fetch(host.admin).await;
        now.get(ok) > before.get(ok) && now.get(failed) > before.get(failed)
    })
    .await;
    // One more interval of the watch: a reload that counted twice would have done so by now.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = Scrape::fetch(host.admin).await;
    let delta = |key: &str| after.get(key) - before.get(key);
    assert_eq!(delta(ok), 1.0);
    assert_eq!(delta(failed), 1.0);
    host.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_closed_for_a_full_queue_is_counted() {
    let plugins = Plugins::new().handler("tests/recorder", "recorder").endpoint_with(
        "slow",
        "tests/recorder",
        serde_json::json!({"limits": {"outbound-queue": 4}}),
    );
    let host = TestHost::start(plugins).await;
    let before = Scrape::fetch(host.admin).await;
    let mut ws = host.connect("slow").await;
    send(&mut ws, "burst 50").await;
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1013, "{}", frame.reason);
    eventually("the session has seen onclose", || host.app.sessions() == 0).await;
    let after = Scrape::fetch(host.admin).await;
    let key = r#"wasmsock_queue_full_closes_total{endpoint="slow"}"#;
    assert_eq!(after.get(key) - before.get(key), 1.0);
    host.stop().await;
}

#[tokio::test]
async fn the_example_grafana_panels_query_metric_families_the_host_registers() {
    // The families the host registers or its collectors describe (a family without samples yet is not in a scrape, so
    // they are read from the code), checked against a live scrape so that the reading is right.
    let source = std::fs::read_to_string(repo_root().join("host/src/control/metrics.rs")).unwrap();
    let registered: std::collections::HashSet<String> = ["registry.register(", "encode_descriptor("]
        .iter()
        .flat_map(|marker| source.split(marker).skip(1))
        .filter_map(|rest| rest.split('"').nth(1))
        .map(|name| format!("wasmsock_{name}"))
        .collect();
    assert!(registered.len() > 20, "{registered:?}");
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo");
    let host = TestHost::start(plugins).await;
    let mut ws = host.connect("echo").await;
    send(&mut ws, "counted").await;
    assert_eq!(text(&mut ws).await, "counted");
    let scrape = reqwest::get(format!("http://{}/metrics", host.admin)).await.unwrap().text().await.unwrap();
    let live: Vec<&str> =
        scrape.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    assert!(live.contains(&"wasmsock_connections_open") && live.contains(&"wasmsock_handler_duration_seconds"));
    for family in &live {
        assert!(registered.contains(*family), "{family} is exported but was not read from the registry's code");
    }
    let path = repo_root().join("packaging/grafana-dashboard.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let words = expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
            for name in words.filter(|w| w.starts_with("wasmsock_")) {
                // A counter's samples end in `_total`, a histogram's in `_bucket`, `_sum`, `_count`.
                let family = ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| name.strip_suffix(suffix).filter(|base| registered.contains(*base)))
                    .unwrap_or(name);
                assert!(
                    registered.contains(family),
                    "panel {} queries {name}, which the host does not export",
                    panel["title"]
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 15, "{queried} metric references");
    host.stop().await;
}
