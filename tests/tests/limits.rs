//! Limits and policies against a real host and real clients: message and frame sizes, idle timeout and keepalive,
//! connection caps, the slow-consumer policy, origins, subprotocols, refusing a connection in onopen, the handler
//! failure policy and fuel. Each test checks the close code and reason (or the HTTP status) and that the host and
//! other connections keep working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use wasmsock::Limits;
use wasmsock_tests::*;

const RECORDER: &str = "tests/recorder";
const MISBEHAVE: &str = "tests/misbehave";

fn plugins() -> Plugins {
    Plugins::new().handler(RECORDER, "recorder").handler(MISBEHAVE, "misbehave").endpoint_granted(
        "control",
        RECORDER,
        &[LOOPBACK],
    )
}

/// The control endpoint still answers: the host is up and unaffected.
async fn control_answers(host: &TestHost) {
    let mut ws = host.connect("control").await;
    send(&mut ws, "echo still here").await;
    assert_eq!(text(&mut ws).await, "still here");
}

async fn expect_close(ws: &mut Ws, code: u16, reason_part: &str) {
    let frame = close_frame(ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), code, "close reason: {}", frame.reason);
    assert!(frame.reason.contains(reason_part), "reason {:?} lacks {reason_part:?}", frame.reason);
}

/// The HTTP status a handshake is refused with, or none when it succeeds.
async fn handshake_status(url: &str, headers: &[(&str, &str)]) -> Option<u16> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(HeaderName::from_bytes(name.as_bytes()).unwrap(), HeaderValue::from_str(value).unwrap());
    }
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request)).await.expect("handshake in time") {
        Ok((mut ws, _)) => {
            let _ = ws.close(None).await;
            None
        }
        Err(WsError::Http(response)) => Some(response.status().as_u16()),
        Err(other) => panic!("handshake failed without an HTTP status: {other}"),
    }
}

#[tokio::test]
async fn messages_and_frames_over_the_endpoint_limits_close_with_1009() {
    let limits = json!({"limits": {"max-message-size": 1000, "max-frame-size": 300}});
    let host = TestHost::start(plugins().endpoint_with("small", RECORDER, limits)).await;
    let mut ws = host.connect("small").await;
    send(&mut ws, &format!("echo {}", "m".repeat(200))).await;
    assert_eq!(text(&mut ws).await, "m".repeat(200), "below both limits: served");
    send(&mut ws, &"x".repeat(400)).await;
    expect_close(&mut ws, 1009, "message too big").await;

    // Fragments of 250 bytes each are under the frame limit; three make a message of 750 bytes (served), four one
    // of 1000 + 250 (over the message limit).
    for (fragments, served) in [(3, true), (5, false)] {
        let mut ws = host.connect("small").await;
        for i in 0..fragments {
            let opcode = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
            let payload = if i == 0 { format!("echo {}", "f".repeat(245)) } else { "f".repeat(250) };
            let frame = Frame::message(payload.into_bytes(), opcode, i == fragments - 1);
            ws.send(Message::Frame(frame)).await.unwrap();
        }
        if served {
            assert_eq!(text(&mut ws).await.len(), 750 - 5);
        } else {
            expect_close(&mut ws, 1009, "message too big").await;
        }
    }
    control_answers(&host).await;
    host.stop().await;
}

#[tokio::test]
async fn an_idle_session_is_closed_with_1001_and_traffic_keeps_one_open() {
    let limits = json!({"limits": {"idle-timeout-ms": 400}});
    let host = TestHost::start(plugins().endpoint_with("idle", RECORDER, limits)).await;
    let mut busy = host.connect("idle").await;
    let mut idle = host.connect("idle").await;
    for i in 0..8 {
        send(&mut busy, &format!("echo {i}")).await;
        assert_eq!(text(&mut busy).await, i.to_string());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // 800 ms later the busy session is still open; the idle one was closed.
    expect_close(&mut idle, 1001, "idle").await;
    send(&mut busy, "echo alive").await;
    assert_eq!(text(&mut busy).await, "alive");
    control_answers(&host).await;
    host.stop().await;
}

#[tokio::test]
async fn keepalive_pings_keep_a_reading_peer_and_close_a_silent_one() {
    let limits = json!({"limits": {"ping-interval-ms": 150}});
    let host = TestHost::start(plugins().endpoint_with("keepalive", RECORDER, limits)).await;
    let mut reader = host.connect("keepalive").await;
    let mut silent = host.connect("keepalive").await;
    // The reader reads (and so answers pings) for a second: well past 2 × 150 ms.
    let mut pings = 0;
    let until = tokio::time::Instant::now() + Duration::from_millis(1000);
    while let Ok(message) = tokio::time::timeout_at(until, reader.next()).await {
        match message {
            Some(Ok(Message::Ping(_))) => pings += 1,
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    assert!(pings >= 2, "the host pinged a quiet peer ({pings} pings in 1 s)");
    send(&mut reader, "echo still open").await;
    assert_eq!(text(&mut reader).await, "still open");
    // The silent peer read nothing, so it answered no ping.
    expect_close(&mut silent, 1001, "no answer to a ping").await;
    control_answers(&host).await;
    host.stop().await;
}

#[tokio::test]
async fn sessions_over_the_endpoint_or_host_limit_get_503_before_the_upgrade() {
    let plugins =
        plugins().endpoint_with("two", RECORDER, json!({"limits": {"max-connections": 2}})).endpoint("other", RECORDER);
    let limits = Limits { max_connections: 4, close_timeout: Duration::from_secs(1), ..Limits::default() };
    let host = TestHost::start_with(plugins, limits).await;
    let first = host.connect("two").await;
    let _second = host.connect("two").await;
    assert_eq!(handshake_status(&host.url("two"), &[]).await, Some(503), "the endpoint's third session");
    let _third = host.connect("other").await;
    let _fourth = host.connect("other").await;
    assert_eq!(handshake_status(&host.url("other"), &[]).await, Some(503), "the host's fifth session");
    drop(first);
    eventually("the closed session frees its place", || host.app.hub.admitted("two") == 1).await;
    let mut again = host.connect("two").await;
    send(&mut again, "echo in").await;
    assert_eq!(text(&mut again).await, "in");
    host.stop().await;
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_1013_and_the_error_policy_only_fails_the_send() {
    let plugins = plugins().endpoint_with("close", RECORDER, json!({"limits": {"outbound-queue": 4}})).endpoint_with(
        "error",
        RECORDER,
        json!({"limits": {"outbound-queue": 4, "slow-consumer": "error"}}),
    );
    let host = TestHost::start(plugins).await;

    // One event sends 500 messages: the writer cannot keep up within the call (it runs beside it on another worker,
    // and at the call's epoch ticks, so on a slow machine it drained 50 in time), a send finds the queue full.
    let mut ws = host.connect("close").await;
    send(&mut ws, "burst 500").await;
    expect_close(&mut ws, 1013, "slow consumer").await;

    // Under the error policy the sends past the queue fail (the reply too) and the session stays open. The echo's
    // reply is a send too: when it runs before the writer has drained the queue it fails like the burst's, so the
    // echo is asked again (a bounded number of times) until the queue has room.
    let mut ws = host.connect("error").await;
    send(&mut ws, "burst 500").await;
    let mut burst = Vec::new();
    let mut asked = 0;
    'echo: loop {
        asked += 1;
        assert!(asked <= 20, "the session never answered again after the burst: {burst:?}");
        send(&mut ws, "echo still open").await;
        while let Ok(reply) = tokio::time::timeout(Duration::from_millis(500), text(&mut ws)).await {
            if reply == "still open" {
                break 'echo;
            }
            burst.push(reply);
        }
    }
    // The writer drains the queue beside the call, so a send past a full queue fails and a later one may go out
    // again: what arrives is the first four, then an ordered subset of the rest, and the count of refused sends (when
    // that reply found room) is the rest.
    let done = burst.iter().position(|reply| reply.starts_with("burst done, "));
    let refused = done.map(|at| burst.remove(at));
    let sent: Vec<usize> = burst
        .iter()
        .map(|reply| reply.strip_prefix("burst ").and_then(|n| n.parse().ok()).expect("a burst message"))
        .collect();
    assert_eq!(sent.get(..4), Some(&[0, 1, 2, 3][..]), "the first four filled the queue: {burst:?}");
    assert!(sent.windows(2).all(|w| w[0] < w[1]), "in order, none twice: {burst:?}");
    assert!(sent.len() < 500, "{} of 500 went out with a queue of 4: none failed", sent.len());
    if let Some(refused) = refused {
        assert_eq!(refused, format!("burst done, {} refused", 500 - sent.len()), "{burst:?}");
    }
    control_answers(&host).await;
    host.stop().await;
}

#[tokio::test]
async fn origins_are_checked_per_endpoint_and_host_wide_with_403() {
    let plugins = plugins()
        .endpoint_with("listed", RECORDER, json!({"origins": ["https://good.example"]}))
        .endpoint_with("anyone", RECORDER, json!({"origins": ["*"]}))
        .endpoint("default", RECORDER);
    let host = TestHost::start(plugins).await;
    let same_origin = format!("http://{}", host.addr);
    let cases: &[(&str, Option<&str>, Option<u16>)] = &[
        ("listed", Some("https://good.example"), None),
        ("listed", Some("https://evil.example"), Some(403)),
        ("listed", None, None),
        ("anyone", Some("https://evil.example"), None),
        ("default", Some("https://evil.example"), Some(403)),
        ("default", Some(same_origin.as_str()), None),
        ("default", None, None),
    ];
    for (endpoint, origin, expected) in cases {
        let headers: Vec<(&str, &str)> = origin.iter().map(|o| ("origin", *o)).collect();
        assert_eq!(handshake_status(&host.url(endpoint), &headers).await, *expected, "{endpoint} from {origin:?}");
    }
    control_answers(&host).await;
    host.stop().await;

    let limits = Limits { origins: vec!["https://evil.example".into()], ..Limits::default() };
    let host = TestHost::start_with(plugins_with_default(), limits).await;
    let headers = [("origin", "https://evil.example")];
    assert_eq!(handshake_status(&host.url("default"), &headers).await, None, "the host-wide list admits it");
    host.stop().await;
}

fn plugins_with_default() -> Plugins {
    plugins().endpoint("default", RECORDER)
}

#[tokio::test]
async fn the_subprotocol_is_chosen_from_the_descriptor_and_shown_in_client_info() {
    let plugins = plugins()
        .endpoint_with("proto", RECORDER, json!({"protocols": ["chat.v2", "chat.v1"]}))
        .endpoint_with("proto-deflate", RECORDER, json!({"protocols": ["chat.v2", "chat.v1"], "compression": true}));
    let host = TestHost::start(plugins).await;
    // A compressing endpoint's socket is yawc's, a plain one's tungstenite's: both answer with the endpoint's preference.
    for endpoint in ["proto", "proto-deflate"] {
        let mut request = host.url(endpoint).into_client_request().unwrap();
        request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("chat.v1, chat.v2"));
        let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
        let chosen = response.headers().get("sec-websocket-protocol").unwrap();
        assert_eq!(chosen, "chat.v2", "{endpoint}: the endpoint's preference");
        send(&mut ws, "protocol").await;
        assert_eq!(text(&mut ws).await, "protocol chat.v2", "{endpoint}");
        let mut plain = host.connect(endpoint).await;
        send(&mut plain, "protocol").await;
        assert_eq!(text(&mut plain).await, "protocol -", "{endpoint}: a client offering none gets none");
    }
    host.stop().await;
}

#[tokio::test]
async fn a_handler_refuses_a_connection_in_onopen_with_a_4xxx_close() {
    let plugins = plugins().handler("examples/auth", "auth").endpoint("auth", "examples/auth");
    let host = TestHost::start(plugins).await;
    let mut none = connect(&host.url("auth")).await;
    expect_close(&mut none, 4401, "missing token").await;

    // The refused client sends at once; its message never reaches onmessage (the echo would answer it).
    let mut wrong = connect(&format!("{}?token=guess", host.url("auth"))).await;
    let _ = wrong.send(Message::text("hello?")).await;
    let frame = close_frame(&mut wrong).await.expect("a close frame");
    assert_eq!((u16::from(frame.code), frame.reason.as_str()), (4403, "invalid token"));

    let mut good = connect(&format!("{}?token=let-me-in", host.url("auth"))).await;
    send(&mut good, "hello").await;
    assert_eq!(text(&mut good).await, "hello");
    host.stop().await;
}

#[tokio::test]
async fn a_handler_failing_three_events_in_a_row_has_its_connection_closed_with_1011() {
    let host = TestHost::start(plugins().endpoint("bad", MISBEHAVE)).await;
    // Failures with a success between them do not add up.
    let mut ws = host.connect("bad").await;
    for message in ["trap", "trap", "fine", "trap", "trap", "still fine"] {
        send(&mut ws, message).await;
        let reply = text(&mut ws).await;
        if message == "trap" {
            assert!(reply.starts_with("error: ") && reply.contains("asked to trap"), "{reply}");
        } else {
            assert_eq!(reply, message);
        }
    }
    // Three in a row close it.
    let mut ws = host.connect("bad").await;
    for _ in 0..3 {
        send(&mut ws, "trap").await;
    }
    expect_close(&mut ws, 1011, "handler failed 3 events in a row").await;
    let endpoints: serde_json::Value =
        reqwest::get(format!("http://{}/admin/v1/endpoints", host.admin)).await.unwrap().json().await.unwrap();
    let bad = endpoints["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == "bad").unwrap().clone();
    assert_eq!(bad["closed_for_handler_failures"], 1, "{bad}");
    let mut again = host.connect("bad").await;
    send(&mut again, "fresh").await;
    assert_eq!(text(&mut again).await, "fresh");
    control_answers(&host).await;
    host.stop().await;
}

#[tokio::test]
async fn fuel_stops_a_looping_handler_and_leaves_normal_ones_running() {
    let limits = Limits { fuel: Some(50_000_000), ..Limits::default() };
    let host = TestHost::start_with(plugins().endpoint("bad", MISBEHAVE), limits).await;
    let mut ws = host.connect("bad").await;
    send(&mut ws, "loop").await;
    let reply = text(&mut ws).await;
    assert!(reply.contains("fuel of 50000000 units"), "{reply}");
    send(&mut ws, "after").await;
    assert_eq!(text(&mut ws).await, "after");
    control_answers(&host).await;
    host.stop().await;
}

#[tokio::test]
async fn the_handler_deadline_memory_cap_and_fuel_can_be_set_per_endpoint() {
    let metered = plugins()
        .endpoint_with("short", MISBEHAVE, json!({"limits": {"handler-deadline-ms": 100}}))
        .endpoint_with("small", MISBEHAVE, json!({"limits": {"handler-memory-mib": 8}}))
        .endpoint_with("frugal", MISBEHAVE, json!({"limits": {"fuel": 1_000_000}}))
        .endpoint_with("greedy", MISBEHAVE, json!({"limits": {"handler-memory-mib": 4096}}));
    let limits = Limits { fuel: Some(u64::MAX / 4), ..Limits::default() };
    let host = TestHost::start_with(metered, limits).await;
    let refused = host.load_errors.join("\n");
    assert!(refused.contains("greedy.websocket") && refused.contains("limits.handler-memory-mib"), "{refused}");
    assert_eq!(handshake_status(&host.url("greedy"), &[]).await, Some(404), "a refused endpoint is not served");
    for (endpoint, message, expected) in [
        ("short", "loop", "deadline of 100ms"),
        ("small", "alloc", &format!("cap of {} bytes", 8 << 20)),
        ("frugal", "loop", "fuel of 1000000 units"),
    ] {
        let mut ws = host.connect(endpoint).await;
        send(&mut ws, message).await;
        let reply = text(&mut ws).await;
        assert!(reply.contains(expected), "{endpoint}: {reply}");
        send(&mut ws, "then an echo").await;
        assert_eq!(text(&mut ws).await, "then an echo");
    }
    control_answers(&host).await;
    host.stop().await;

    // Fuel per endpoint needs a host that meters fuel.
    let unmetered = plugins().endpoint_with("frugal", MISBEHAVE, json!({"limits": {"fuel": 1000}}));
    let host = TestHost::start(unmetered).await;
    assert!(host.load_errors.join("\n").contains("limits.fuel"), "{:?}", host.load_errors);
    host.stop().await;
}

#[tokio::test]
async fn outbound_clients_past_the_host_limit_are_a_limit_error() {
    let limits = Limits { max_clients: 2, close_timeout: Duration::from_secs(1), ..Limits::default() };
    let host = TestHost::start_with(plugins(), limits).await;
    let mut driver = host.connect("control").await;
    let target = host.url("control");
    for _ in 0..2 {
        send(&mut driver, &format!("connect {target}")).await;
        assert!(text(&mut driver).await.starts_with("created "));
    }
    send(&mut driver, &format!("connect {target}")).await;
    let refused = text(&mut driver).await;
    assert!(refused.starts_with("error Error::Limit") && refused.contains("2 outbound clients"), "{refused}");
    // Closing one frees its place.
    send(&mut driver, "clients").await;
    let listing = text(&mut driver).await;
    let first = listing.split(';').find(|c| c.contains("|outbound|")).and_then(|c| c.split('|').next()).unwrap();
    let first = first.trim_start_matches("clients ").to_owned();
    send(&mut driver, &format!("client-close {first}")).await;
    assert_eq!(text(&mut driver).await, "ok");
    eventually("the closed client is gone", || host.app.hub.outbound() == 1).await;
    send(&mut driver, &format!("connect {target}")).await;
    assert!(text(&mut driver).await.starts_with("created "));
    host.stop().await;
}
