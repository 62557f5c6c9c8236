//! Endpoints end to end: echo on both URL forms, 404s, the chat example's rooms, and descriptors or components the host
//! refuses.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;
use wasmsock_tests::*;

fn echo_plugins() -> Plugins {
    Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo")
}

#[tokio::test]
async fn echo_returns_text_and_binary_on_both_url_forms() {
    let host = TestHost::start(echo_plugins()).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    for url in [host.url("echo"), format!("ws://{}/websockets/v4/service/echo", host.addr)] {
        let mut ws = connect(&url).await;
        send(&mut ws, "hello, wasm").await;
        assert_eq!(text(&mut ws).await, "hello, wasm");
        ws.send(Message::binary(vec![0u8, 1, 2, 255])).await.unwrap();
        assert_eq!(next(&mut ws).await, Some(Message::binary(vec![0u8, 1, 2, 255])));
        let big = "x".repeat(100_000);
        send(&mut ws, &big).await;
        assert_eq!(text(&mut ws).await, big);
        ws.close(None).await.unwrap();
    }
    host.stop().await;
}

#[tokio::test]
async fn unknown_endpoints_are_404_before_the_upgrade() {
    let host = TestHost::start(echo_plugins()).await;
    let url = host.url("nope");
    match tokio_tungstenite::connect_async(&url).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 404)
        }
        other => panic!("expected 404, got {:?}", other.map(|(_, r)| r.status())),
    }
    // A plain GET on a real endpoint is told it needs an upgrade, not served.
    let mut stream = tokio::net::TcpStream::connect(host.addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(b"GET /websockets/service/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let status_line = response.lines().next().unwrap_or_default().to_owned();
    assert!(status_line.contains(" 400 ") || status_line.contains(" 426 "), "{status_line}");
    host.stop().await;
}

#[tokio::test]
async fn chat_fans_every_message_out_to_every_member_of_its_room() {
    let plugins = Plugins::new()
        .handler("examples/chat", "chat")
        .endpoint("chat", "examples/chat")
        .handler("examples/echo", "echo")
        .endpoint("echo", "examples/echo");
    let host = TestHost::start(plugins).await;
    // Three in the lobby (one by default, two by name), two in another room.
    let mut lobby = vec![host.connect("chat").await, host.connect("chat?room=lobby").await];
    lobby.push(host.connect("chat?x=1&room=lobby").await);
    let mut kitchen = [host.connect("chat?room=k%C3%BCche").await, host.connect("chat?room=k%C3%BCche").await];
    // A session on another endpoint must not receive the rooms' messages.
    let mut outsider = host.connect("echo").await;
    eventually("everyone joined", || {
        let rooms = host.app.channels.list(Some("examples"));
        rooms.iter().map(|c| (c.channel.as_str(), c.members)).collect::<Vec<_>>() == [("küche", 2), ("lobby", 3)]
    })
    .await;
    for (i, sender) in [0usize, 2, 1].into_iter().enumerate() {
        send(&mut lobby[sender], &format!("message {i} from {sender}")).await;
        for member in lobby.iter_mut() {
            assert_eq!(text(member).await, format!("message {i} from {sender}"), "the sender included");
        }
    }
    send(&mut kitchen[1], "in the kitchen").await;
    for member in kitchen.iter_mut() {
        assert_eq!(text(member).await, "in the kitchen");
    }
    // Nothing from the kitchen reached the lobby: the next lobby message is the next one read there.
    send(&mut lobby[0], "lobby again").await;
    for member in lobby.iter_mut() {
        assert_eq!(text(member).await, "lobby again");
    }
    send(&mut outsider, "ping").await;
    assert_eq!(text(&mut outsider).await, "ping", "the outsider saw only its own echo");
    // A room name the host refuses: the peer is told why and the session ends with 1008.
    let mut bad = host.connect("chat?room=two%20words").await;
    let why = text(&mut bad).await;
    assert!(why.contains("cannot join room \"two words\"") && why.contains("whitespace"), "{why}");
    let close = close_frame(&mut bad).await.unwrap();
    assert_eq!(u16::from(close.code), 1008);
    host.stop().await;
}

#[tokio::test]
async fn malformed_duplicate_and_dangling_descriptors_are_refused_by_file() {
    let plugins = echo_plugins()
        .file("bad/broken.websocket", "{ \"handler\": ")
        .file("bad/unknown-field.websocket", r#"{"handler": "examples/echo", "endpoint": "x", "colour": "red"}"#)
        .file("bad/dangling.websocket", r#"{"handler": "nowhere/nothing", "endpoint": "dangling"}"#)
        .file("dup/one.websocket", r#"{"handler": "examples/echo", "endpoint": "twice"}"#)
        .file("dup/two.websocket", r#"{"handler": "examples/echo", "endpoint": "twice"}"#)
        .file("corrupt/handler.wasm", b"\0asm\x0d\0\x01\0this is not a component")
        .file("corrupt/c.websocket", r#"{"handler": "corrupt/handler", "endpoint": "corrupt"}"#)
        .file("core/module.wasm", b"\0asm\x01\0\0\0")
        .file("core/m.websocket", r#"{"handler": "core/module", "endpoint": "core"}"#);
    let host = TestHost::start(plugins).await;
    let errors = &host.load_errors;
    let find = |needles: &[&str]| {
        assert!(
            errors.iter().any(|e| needles.iter().all(|n| e.contains(n))),
            "no error mentions all of {needles:?}: {errors:#?}"
        )
    };
    find(&["broken.websocket", "not a valid descriptor"]);
    find(&["unknown-field.websocket", "unknown field `colour`"]);
    find(&["dangling.websocket", "field `handler`", "nowhere/nothing.wasm"]);
    find(&["one.websocket", "two.websocket", "\"twice\""]);
    find(&["c.websocket", "corrupt/handler.wasm", "not a valid WebAssembly component"]);
    find(&["m.websocket", "core/module.wasm"]);
    assert_eq!(errors.len(), 6, "{errors:#?}");
    // Everything that was fine is served; nothing that was refused is.
    let served: Vec<String> = host.app.registry.endpoints().iter().map(|e| e.name.clone()).collect();
    assert_eq!(served, ["echo"]);
    let mut ws = host.connect("echo").await;
    send(&mut ws, "still up").await;
    assert_eq!(text(&mut ws).await, "still up");
    host.stop().await;
}

#[tokio::test]
async fn an_oversized_message_is_closed_with_1009_and_the_host_keeps_serving() {
    let limits = wasmsock::Limits {
        max_message_size: 1024,
        max_frame_size: 1024,
        close_timeout: std::time::Duration::from_secs(1),
        ..wasmsock::Limits::default()
    };
    let host = TestHost::start_with(echo_plugins(), limits).await;
    let mut ws = host.connect("echo").await;
    send(&mut ws, &"x".repeat(1024)).await;
    assert_eq!(text(&mut ws).await.len(), 1024, "a message at the limit is fine");
    send(&mut ws, &"x".repeat(4096)).await;
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1009);
    let mut other = host.connect("echo").await;
    send(&mut other, "fine").await;
    assert_eq!(text(&mut other).await, "fine");
    host.stop().await;
}
