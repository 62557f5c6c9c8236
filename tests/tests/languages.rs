//! Handlers in JavaScript and Python next to Rust, through one shared in-process host: one table of echo cases run
//! against the Rust, JavaScript and Python echo plugins; all four events through the recorder in each language; the
//! JavaScript chat's fan-out; outbound clients made by JavaScript and Python handlers, with and without a reconnect
//! policy; a thrown exception reported in the host log and costing only its own event; and (ignored) the per-event
//! cost of each language.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::OnceLock;
use std::time::Instant;

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wasmsock::wire::Direction;
use wasmsock_tests::*;

/// The echo plugins: (language, endpoint, component).
const ECHOES: [(&str, &str, &str); 3] =
    [("Rust", "echo", "echo"), ("JavaScript", "js-echo", "js-echo"), ("Python", "py-echo", "py-echo")];

/// The recorder test components: (language, endpoint, handler).
const RECORDERS: [(&str, &str, &str); 3] = [
    ("Rust", "rec", "tests/recorder"),
    ("JavaScript", "js-rec", "tests/js-recorder"),
    ("Python", "py-rec", "tests/py-recorder"),
];

/// The recorders written with the JavaScript and Python SDKs.
const SCRIPT_RECORDERS: [(&str, &str, &str); 2] = [RECORDERS[1], RECORDERS[2]];

/// The host every test of this file uses: compiling the JavaScript and Python components takes seconds each.
fn host() -> &'static SharedHost {
    static HOST: OnceLock<SharedHost> = OnceLock::new();
    HOST.get_or_init(|| {
        host_log();
        let mut plugins = Plugins::new().handler("examples/js-chat", "js-chat").endpoint("js-chat", "examples/js-chat");
        for (_, endpoint, component) in ECHOES {
            let handler = format!("examples/{component}");
            plugins = plugins.handler(&handler, component).endpoint(endpoint, &handler);
        }
        for (_, endpoint, handler) in RECORDERS {
            let component = handler.trim_start_matches("tests/");
            plugins = plugins.handler(handler, component).endpoint_granted(endpoint, handler, &[LOOPBACK]);
        }
        SharedHost::start(plugins)
    })
}

/// The messages every echo plugin must send back unchanged, text as text and binary as binary.
fn echo_cases() -> Vec<(&'static str, Message)> {
    vec![
        ("short text", Message::text("hello")),
        ("empty text", Message::text("")),
        ("text outside ASCII", Message::text("héllo, wörld ✓ 🦀 日本語")),
        ("text that is JSON", Message::text(r#"{"a":[1,2,3],"b":null}"#)),
        ("text with a newline and a NUL", Message::text("line one\nline two\0end")),
        ("large text (256 KiB)", Message::text("x".repeat(256 << 10))),
        ("short binary", Message::binary(vec![0u8, 1, 2, 255])),
        ("empty binary", Message::binary(Vec::<u8>::new())),
        ("every byte value", Message::binary((0..=255u8).collect::<Vec<_>>())),
        ("binary that is valid UTF-8", Message::binary(b"hello".to_vec())),
        ("large binary (1 MiB)", Message::binary((0..1u32 << 20).map(|i| (i % 251) as u8).collect::<Vec<_>>())),
    ]
}

#[tokio::test]
async fn every_echo_case_behaves_the_same_in_rust_javascript_and_python() {
    let host = host();
    for (language, endpoint, _) in ECHOES {
        let mut ws = host.connect(endpoint).await;
        for (case, message) in echo_cases() {
            ws.send(message.clone()).await.unwrap();
            let reply = next(&mut ws).await;
            assert!(
                reply.as_ref() == Some(&message),
                "{language} echo, {case}: sent {} got {:?}",
                describe(&message),
                reply.as_ref().map(describe)
            );
        }
        // Many in flight at once come back complete and in order.
        for i in 0..50 {
            send(&mut ws, &format!("burst {i}")).await;
        }
        for i in 0..50 {
            assert_eq!(text(&mut ws).await, format!("burst {i}"), "{language} echo");
        }
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language} echo answers the close");
    }
}

/// A normal close with a reason (the host answers with the same code; `close_frame` then returns it).
fn bye() -> CloseFrame {
    CloseFrame { code: CloseCode::Normal, reason: "bye".into() }
}

/// A message, shortened for an assertion message.
fn describe(message: &Message) -> String {
    match message {
        Message::Text(text) if text.len() > 40 => format!("text of {} bytes", text.len()),
        Message::Binary(data) if data.len() > 40 => format!("binary of {} bytes", data.len()),
        other => format!("{other:?}"),
    }
}

#[tokio::test]
async fn all_four_events_reach_the_recorder_in_every_language() {
    let host = host();
    for (language, endpoint, _) in RECORDERS {
        let mut observer = Observer::open(host, endpoint).await;
        // A clean close: onopen, the messages, onclose.
        let marker = format!("who={language}-clean");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        let id = own_id(&mut ws, &marker).await;
        send(&mut ws, "echo hi").await;
        assert_eq!(text(&mut ws).await, "hi", "{language}");
        ws.send(Message::binary(vec![7u8; 3])).await.unwrap();
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language}");
        assert_eq!(
            observer.events_until_close(&id).await,
            ["onopen", "onmessage clients", "onmessage echo hi", "onmessage <3 bytes>", "onclose"],
            "{language}"
        );

        // A client that vanishes without a close frame: onerror, then onclose.
        let marker = format!("who={language}-vanish");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        let id = own_id(&mut ws, &marker).await;
        let tokio_tungstenite::MaybeTlsStream::Plain(tcp) = ws.get_mut() else { unreachable!("plain ws") };
        tcp.shutdown().await.unwrap();
        drop(ws);
        let events = observer.events_until_close(&id).await;
        assert_eq!(events.len(), 4, "{language}: {events:?}");
        assert_eq!(events[..2], ["onopen", "onmessage clients"], "{language}");
        assert!(
            events[2].starts_with("onerror ") && events[2].contains("without a closing handshake"),
            "{language}: {events:?}"
        );
        assert_eq!(events[3], "onclose", "{language}");

        // A close the handler starts carries its code and reason; a code it may not send is refused.
        let marker = format!("who={language}-closer");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        send(&mut ws, "close 1006 nope").await;
        let refused = text(&mut ws).await;
        assert!(refused.starts_with("error") && refused.to_lowercase().contains("invalid"), "{language}: {refused}");
        assert!(refused.contains("1006"), "{language}: {refused}");
        send(&mut ws, "close 4001 go away").await;
        let frame = close_frame(&mut ws).await.expect("a close frame");
        assert_eq!(u16::from(frame.code), 4001, "{language}");
        assert_eq!(frame.reason.as_str(), "go away", "{language}");
    }
}

#[tokio::test]
async fn the_javascript_chat_fans_every_message_out_to_every_open_session() {
    let host = host();
    let members_online =
        |n: usize| move || host.app.hub.list().iter().filter(|c| c.endpoint.as_deref() == Some("js-chat")).count() == n;
    let mut members = Vec::new();
    for _ in 0..3 {
        members.push(host.connect("js-chat").await);
    }
    eventually("three chat sessions are registered", members_online(3)).await;
    for (i, sender) in [0usize, 2, 1].into_iter().enumerate() {
        send(&mut members[sender], &format!("message {i} from {sender}")).await;
        for member in members.iter_mut() {
            assert_eq!(text(member).await, format!("message {i} from {sender}"));
        }
    }
    // Binary stays binary.
    members[1].send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    for member in members.iter_mut() {
        assert_eq!(binary_message(member).await, [1, 2, 3]);
    }
    // A session that joins later gets what is said from then on, not what was said before.
    members.push(host.connect("js-chat").await);
    eventually("four chat sessions are registered", members_online(4)).await;
    send(&mut members[2], "welcome").await;
    for member in members.iter_mut() {
        assert_eq!(text(member).await, "welcome");
    }
}

/// Sends a command on the driver session and returns the reply.
async fn command(driver: &mut Ws, command: &str) -> String {
    send(driver, command).await;
    text(driver).await
}

/// Whether a `connect-…` reply says the client was created and the message sent with it queued. The client may have
/// opened already by the time the handler reads its state: the connect runs on the host's other threads meanwhile.
fn created_and_queued(reply: &str) -> bool {
    reply.starts_with("created ")
        && (reply.ends_with("|outbound|connecting send ok") || reply.ends_with("|outbound|open send ok"))
}

#[tokio::test]
async fn javascript_and_python_handlers_open_outbound_clients_that_reconnect_or_give_up() {
    let peer = PeerServer::start(PeerMode::Echo).await;
    let closing = PeerServer::start(PeerMode::CloseAfterFirst).await;
    // A port nothing listens on: connecting is refused at once.
    let refused_addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let host = host();
    for (language, endpoint, handler) in SCRIPT_RECORDERS {
        let mut observer = Observer::open(host, endpoint).await;
        let mut driver = host.connect(endpoint).await;
        let uri = peer.url(&format!("/{language}"));
        // Dirigible's third argument: only "wasm" (or nothing) is an engine.
        let refused = command(&mut driver, &format!("connect-engine {uri} node")).await;
        assert!(refused.starts_with("error invalid: engine") && refused.contains("node"), "{language}: {refused}");
        // Created and sent to in one event, before it can be open: the send is queued and flushed on open.
        let reply = command(&mut driver, &format!("connect-send {uri} first")).await;
        assert!(created_and_queued(&reply), "{language}: {reply}");
        assert!(reply.contains(&format!("|{uri}|{handler}|-|")), "{language}: {reply}");
        let id = client_id(&reply);
        assert_eq!(observer.expect(&id, "onopen").await, "", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "first", "{language}");
        assert_eq!(
            command(&mut driver, &format!("by-handler {handler}")).await,
            format!("found {id}|{uri}|{handler}|-|outbound|open"),
            "{language}"
        );
        assert_eq!(command(&mut driver, &format!("client-send {id} second")).await, "ok", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "second", "{language}");
        assert_eq!(command(&mut driver, &format!("client-close {id}")).await, "ok", "{language}");
        assert_eq!(observer.expect(&id, "onclose").await, "", "{language}");
        assert_eq!(command(&mut driver, &format!("by-handler {handler}")).await, "none", "{language}");
        // The closed client is gone: sending to it is an unknown-client error, thrown and caught in the handler.
        let gone = command(&mut driver, &format!("client-send {id} third")).await;
        assert!(gone == "none" || gone.starts_with("error unknown-client"), "{language}: {gone}");

        // With a reconnect policy, a server that ends the connection gets a new onopen, not an onclose.
        let uri = closing.url(&format!("/{language}-reconnect"));
        let reply = command(&mut driver, &format!("connect-reconnect {uri} 10 50 -")).await;
        assert!(created_and_queued(&reply), "{language}: {reply}");
        let id = client_id(&reply);
        assert_eq!(observer.expect(&id, "onopen").await, "", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "first", "{language}");
        assert_eq!(observer.expect(&id, "onopen").await, "", "{language}: reconnected");
        assert_eq!(command(&mut driver, &format!("client-send {id} second")).await, "ok", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, "second", "{language}");
        assert_eq!(command(&mut driver, &format!("client-close {id}")).await, "ok", "{language}");
        observer.skip_to(&id, "onclose").await;

        // A policy with a limit gives up after that many failed attempts: onerror, onclose, never onopen.
        let refused_uri = format!("ws://{refused_addr}/{language}");
        let request = format!("connect-reconnect {refused_uri} 10 20 2");
        let reply = command(&mut driver, &request).await;
        let id = client_id(&reply);
        let events = observer.events_until_close(&id).await;
        assert!(events.iter().all(|e| e != "onopen"), "{language}: {events:?}");
        let last_error = events
            .iter()
            .rev()
            .find(|e| e.starts_with("onerror "))
            .unwrap_or_else(|| panic!("{language}: no onerror in {events:?}"));
        assert!(
            last_error.contains("giving up after 2 attempt(s)") && last_error.contains("\"first\""),
            "{language}: {last_error}"
        );
    }
    let outbound = host
        .app
        .hub
        .list()
        .iter()
        .filter(|c| c.direction == Direction::Outbound && c.uri.starts_with(&peer.url("/")))
        .count();
    assert_eq!(outbound, 0, "every client the test opened is gone");
}

#[tokio::test]
async fn an_exception_is_logged_with_its_message_and_costs_only_its_own_event() {
    let host = host();
    let log = host_log();
    for (language, endpoint, handler) in SCRIPT_RECORDERS {
        let mut observer = Observer::open(host, endpoint).await;
        let marker = format!("who={language}-thrower");
        let mut ws = connect(&format!("{}?{marker}", host.url(endpoint))).await;
        let id = own_id(&mut ws, &marker).await;
        let message = format!("{language} handler failed on purpose {id}");
        send(&mut ws, &format!("throw {message}")).await;
        assert_eq!(observer.skip_to(&id, "onmessage").await, "clients", "{language}");
        assert_eq!(observer.expect(&id, "onmessage").await, format!("throw {message}"), "{language}");
        // The host tells the handler, on the same connection, that its previous call failed.
        let error = observer.expect(&id, "onerror").await;
        assert!(error.contains(handler) && error.contains("trapped"), "{language}: {error}");
        // The exception's own message is in the host log, tagged with the handler.
        let line = log
            .line(&format!("the log names {message:?}"), |line| {
                line.contains(&message) && line.contains(&format!("handler={handler}"))
            })
            .await;
        assert!(line.contains("stderr"), "{language}: {line}");
        // The same connection and the other connections carry on.
        send(&mut ws, "echo after").await;
        assert_eq!(text(&mut ws).await, "after", "{language}");
        let mut other = host.connect(endpoint).await;
        send(&mut other, "echo other").await;
        assert_eq!(text(&mut other).await, "other", "{language}");
        ws.close(Some(bye())).await.unwrap();
        assert!(close_frame(&mut ws).await.is_some(), "{language}");
    }
}

/// Prints, for each language's echo plugin, the component's size, the time the host takes to compile it, and the mean
/// time of a round trip through the host (one event: a fresh instance, the call, the send, plus the client's own
/// WebSocket work). Figures only, never asserted.
///
/// Run with `cargo test -p wasmsock-tests --release --test languages -- --ignored --nocapture per_event_cost`.
#[tokio::test]
#[ignore = "a measurement, not a check; run it on purpose"]
async fn per_event_cost() {
    const ROUND_TRIPS: u32 = 500;
    let host = host();
    let runtime = wasmsock::runtime::Runtime::new(&wasmsock::Limits::default()).unwrap();
    for (language, endpoint, component_name) in ECHOES {
        let bytes = std::fs::read(component(component_name)).unwrap();
        let compiling = Instant::now();
        runtime.compile(component_name, &bytes).unwrap();
        let compile = compiling.elapsed();
        let mut ws = host.connect(endpoint).await;
        for _ in 0..20 {
            send(&mut ws, "warm up").await;
            text(&mut ws).await;
        }
        let started = Instant::now();
        for i in 0..ROUND_TRIPS {
            send(&mut ws, &format!("round trip {i}")).await;
            assert_eq!(text(&mut ws).await, format!("round trip {i}"));
        }
        let per_event = started.elapsed() / ROUND_TRIPS;
        eprintln!(
            "{language:<10} component {:>8.0} KB, compiled by the host in {compile:>8.1?}; \
             {ROUND_TRIPS} sequential echo round trips: {per_event:>8.1?} each",
            bytes.len() as f64 / 1e3
        );
    }
}
