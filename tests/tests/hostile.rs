//! Hostile input against a real host: handshakes that are malformed, truncated or never finished (slowloris), frames
//! that break RFC 6455 written byte by byte on a raw socket, 10,000 connections opened and dropped at once, and bad
//! descriptors and components deployed to a running host. Every case gets a clear error or close code, and a control
//! connection opened before the first case keeps being served throughout.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmsock::Limits;
use wasmsock_tests::*;

const RECORDER: &str = "tests/recorder";

fn plugins() -> Plugins {
    Plugins::new().handler(RECORDER, "recorder").endpoint("control", RECORDER).endpoint("target", RECORDER)
}

async fn host() -> TestHost {
    let limits = Limits {
        handshake_timeout: Duration::from_millis(300),
        close_timeout: Duration::from_secs(1),
        ..Limits::default()
    };
    TestHost::start_with(plugins(), limits).await
}

/// A session opened before the abuse starts; `check` proves it is still served.
struct Control(Ws);

impl Control {
    async fn open(host: &TestHost) -> Self {
        Self(host.connect("control").await)
    }

    async fn check(&mut self, after: &str) {
        send(&mut self.0, &format!("echo after {after}")).await;
        assert_eq!(text(&mut self.0).await, format!("after {after}"), "the control session after {after}");
    }
}

/// Sends `request` on a fresh socket and returns what the host answered until it closed the socket (or `WAIT`).
async fn raw_exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, socket.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

/// Whether the host closes `socket` within `WAIT` (reads return end of stream or an error).
async fn closed_by_host(socket: &mut TcpStream) -> bool {
    let mut buf = [0u8; 256];
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn malformed_and_truncated_handshakes_get_http_errors_and_hurt_no_one() {
    let host = host().await;
    let mut control = Control::open(&host).await;
    let addr = host.addr;
    let upgrade = |path: &str, extra: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n{extra}\r\n",)
    };
    let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("garbage", "\u{1}\u{2}garbage\r\n\r\n".into(), "HTTP/1.1 400"),
        ("no key", upgrade("/websockets/service/target", "Sec-WebSocket-Version: 13\r\n"), "HTTP/1.1 400"),
        (
            "old version",
            upgrade("/websockets/service/target", &format!("{key}Sec-WebSocket-Version: 8\r\n")),
            "HTTP/1.1 4",
        ),
        (
            "unknown endpoint",
            upgrade("/websockets/service/nope", &format!("{key}Sec-WebSocket-Version: 13\r\n")),
            "HTTP/1.1 404",
        ),
        (
            "bad endpoint name",
            upgrade("/websockets/service/%00%ff", &format!("{key}Sec-WebSocket-Version: 13\r\n")),
            "HTTP/1.1 4",
        ),
        ("huge header", format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20)), "HTTP/1.1 431"),
    ];
    for (what, request, expected) in &cases {
        let answer = raw_exchange(addr, request.as_bytes()).await;
        assert!(status_line(&answer).starts_with(expected), "{what}: got {:?}", status_line(&answer));
        control.check(what).await;
    }
    // Truncated: half a request, then the client stops writing; the host drops it without an answer.
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket.write_all(b"GET /websockets/service/target HTTP/1.1\r\nHost: ").await.unwrap();
    socket.shutdown().await.unwrap();
    assert!(closed_by_host(&mut socket).await, "a truncated request is dropped");
    control.check("a truncated request").await;
    host.stop().await;
}

#[tokio::test]
async fn handshakes_never_finished_are_cut_after_the_handshake_timeout() {
    let host = host().await;
    let mut control = Control::open(&host).await;
    // Silent: connects and sends nothing.
    let mut silent = TcpStream::connect(host.addr).await.unwrap();
    // Slowloris: a header line every 100 ms, never the blank line that ends the request.
    let mut slow = TcpStream::connect(host.addr).await.unwrap();
    slow.write_all(b"GET /websockets/service/target HTTP/1.1\r\n").await.unwrap();
    let trickle = async {
        for i in 0..100 {
            if slow.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await.is_err() {
                return i;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        100
    };
    let lines = tokio::time::timeout(WAIT, trickle).await.expect("the trickle ends");
    assert!(lines < 100, "the host cut the slow request off while it was still trickling");
    assert!(closed_by_host(&mut silent).await, "a silent connection is cut too");
    control.check("slowloris").await;
    // A connection that finished its handshake is not subject to the timeout.
    tokio::time::sleep(Duration::from_millis(500)).await;
    control.check("the handshake timeout passed").await;
    host.stop().await;
}

/// Opens a WebSocket on a raw socket and returns the socket positioned after the 101 response.
async fn raw_websocket(addr: SocketAddr, endpoint: &str) -> TcpStream {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /websockets/service/{endpoint} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let byte = tokio::time::timeout(WAIT, socket.read_u8()).await.expect("a 101 in time").unwrap();
        head.push(byte);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    socket
}

/// A client frame: `first` is the FIN/RSV/opcode byte; `len` overrides the length field (for lies about it).
fn frame(first: u8, payload: &[u8], masked: bool, len: Option<u64>) -> Vec<u8> {
    let mut out = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match len.unwrap_or(payload.len() as u64) {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
    let key = [0x12, 0x34, 0x56, 0x78];
    if masked {
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads server frames until a close frame and returns its code.
async fn close_code(socket: &mut TcpStream) -> Option<u16> {
    loop {
        let mut head = [0u8; 2];
        tokio::time::timeout(WAIT, socket.read_exact(&mut head)).await.ok()?.ok()?;
        assert_eq!(head[1] & 0x80, 0, "server frames are not masked");
        let len = match head[1] & 0x7f {
            126 => u64::from(socket.read_u16().await.ok()?),
            127 => socket.read_u64().await.ok()?,
            n => u64::from(n),
        };
        let mut payload = vec![0u8; usize::try_from(len).ok()?];
        socket.read_exact(&mut payload).await.ok()?;
        if head[0] & 0x0f == 0x8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
}

#[tokio::test]
async fn frames_that_break_the_protocol_get_the_close_code_the_rfc_asks_for() {
    let host = host().await;
    let mut control = Control::open(&host).await;
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("reserved opcode 0x3", frame(0x83, b"x", true, None), 1002),
        ("reserved control opcode 0xB", frame(0x8b, b"x", true, None), 1002),
        ("RSV1 without an extension", frame(0xc1, b"x", true, None), 1002),
        ("RSV3", frame(0x91, b"x", true, None), 1002),
        ("unmasked client frame", frame(0x81, b"hello", false, None), 1002),
        ("invalid UTF-8 text", frame(0x81, &[0xff, 0xfe, 0xfd], true, None), 1007),
        ("ping over 125 bytes", frame(0x89, &[0u8; 126], true, None), 1002),
        ("fragmented ping", frame(0x09, b"x", true, None), 1002),
        ("continuation without a start", frame(0x80, b"x", true, None), 1002),
        ("2^62-byte frame announced", frame(0x82, b"", true, Some(1 << 62)), 1009),
        ("16 MiB + 1 frame announced", frame(0x82, b"", true, Some((16 << 20) + 1)), 1009),
    ];
    for (what, bytes, expected) in cases {
        let mut socket = raw_websocket(host.addr, "target").await;
        socket.write_all(&bytes).await.unwrap();
        assert_eq!(close_code(&mut socket).await, Some(expected), "{what}");
        control.check(what).await;
    }
    // A well-formed masked text frame on the same kind of raw socket is served (the harness is not the problem).
    let mut socket = raw_websocket(host.addr, "target").await;
    socket.write_all(&frame(0x81, b"echo raw", true, None)).await.unwrap();
    let mut head = [0u8; 2];
    socket.read_exact(&mut head).await.unwrap();
    let mut body = vec![0u8; usize::from(head[1] & 0x7f)];
    socket.read_exact(&mut body).await.unwrap();
    assert_eq!((head[0], body.as_slice()), (0x81, b"raw".as_slice()));
    host.stop().await;
}

#[tokio::test]
async fn ten_thousand_connections_opened_and_dropped_at_once_leave_the_host_serving() {
    const CONNECTIONS: usize = 10_000;
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo");
    let host = BinaryHost::start(
        &plugins,
        &["--max-connections", "20000", "--max-endpoint-connections", "20000", "--project-connections", "20000"],
    )
    .await;
    let mut control = connect(&host.url("echo")).await;
    let url = host.url("echo");
    let opened: Vec<Ws> = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::stream::iter(0..CONNECTIONS)
            .map(|_| {
                let url = url.clone();
                async move { tokio_tungstenite::connect_async(url).await.map(|(ws, _)| ws) }
            })
            .buffer_unordered(200)
            .collect::<Vec<_>>(),
    )
    .await
    .expect("10,000 handshakes within 2 minutes")
    .into_iter()
    .collect::<Result<_, _>>()
    .expect("every handshake succeeds");
    assert_eq!(opened.len(), CONNECTIONS);
    send(&mut control, "with 10,000 open").await;
    assert_eq!(text(&mut control).await, "with 10,000 open");
    drop(opened); // All at once, without closing handshakes.
    let admin = format!("http://{}/admin/v1/connections", host.admin);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let remaining = loop {
        let listing: serde_json::Value = reqwest::get(&admin).await.unwrap().json().await.unwrap();
        let count = listing["connections"].as_array().map_or(usize::MAX, Vec::len);
        if count == 1 || tokio::time::Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(remaining, 1, "only the control session is left");
    send(&mut control, "after the drop").await;
    assert_eq!(text(&mut control).await, "after the drop");
}

#[tokio::test]
async fn bad_descriptors_and_components_deployed_to_a_running_host_are_refused_with_reasons() {
    let host = host().await;
    let mut control = Control::open(&host).await;
    let http = reqwest::Client::new();
    let admin = format!("http://{}/admin/v1", host.admin);
    let nested = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let huge =
        format!(r#"{{"handler": "tests/recorder", "endpoint": "huge", "description": "{}"}}"#, "d".repeat(1 << 20));
    let descriptors: Vec<(&str, String, &str)> = vec![
        ("malformed", "{\"handler\": ".into(), "not a valid descriptor"),
        ("deeply nested", nested, "not a valid descriptor"),
        ("huge", huge, "too large"),
        ("wrong types", r#"{"handler": 7, "endpoint": "x"}"#.into(), "invalid type"),
        (
            "bad limits",
            r#"{"handler": "tests/recorder", "endpoint": "x", "limits": {"outbound-queue": 0}}"#.into(),
            "limits.outbound-queue",
        ),
    ];
    for (what, body, reason) in descriptors {
        let response = http.put(format!("{admin}/endpoints/x")).body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert!((400..500).contains(&status), "{what}: {status} {text}");
        assert!(text.contains(reason), "{what}: {text}");
        control.check(what).await;
    }
    let echo = std::fs::read(component("recorder")).unwrap();
    let components: Vec<(&str, Vec<u8>)> = vec![
        ("random bytes", (0..4096u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect()),
        ("truncated component", echo[..echo.len() / 2].to_vec()),
        ("wasm header only", b"\0asm\x0d\0\x01\0".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, body) in components {
        let response = http.put(format!("{admin}/handlers/tests/recorder")).body(body).send().await.unwrap();
        let status = response.status().as_u16();
        let text = response.text().await.unwrap();
        assert_eq!(status, 422, "{what}: {text}");
        control.check(what).await;
    }
    host.stop().await;
}

#[tokio::test]
async fn the_admin_api_cuts_a_request_head_that_never_ends_but_not_a_slow_upload() {
    let limits = Limits { handshake_timeout: Duration::from_millis(300), ..Limits::default() };
    let host = TestHost::start_with(Plugins::new().handler("examples/echo", "echo"), limits).await;
    // Slowloris on the admin listener: the head is never finished, so the connection is cut at the deadline.
    let mut slow = TcpStream::connect(host.admin).await.unwrap();
    slow.write_all(b"GET /admin/v1/endpoints HTTP/1.1\r\nHost: admin\r\n").await.unwrap();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(WAIT, slow.read(&mut buf)).await.expect("the unfinished head was never cut");
    assert!(matches!(read, Ok(0) | Err(_)), "the unfinished head got an answer: {read:?}");
    // A complete head, then a body slower than the deadline (a large component on a slow link): served.
    let body = r#"{"handler": "examples/echo", "endpoint": "late"}"#;
    let mut upload = TcpStream::connect(host.admin).await.unwrap();
    let head = format!(
        "PUT /admin/v1/endpoints/late HTTP/1.1\r\nHost: admin\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(10);
    upload.write_all(first.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(900)).await;
    upload.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, upload.read_to_string(&mut response)).await.unwrap().unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(host.app.registry.endpoint("late").is_some(), "the slowly uploaded descriptor was deployed");
    host.stop().await;
}
