//! permessage-deflate (issue 33) through real sockets: a compressing endpoint (`"compression": true`) and a plain one
//! side by side, negotiated by Python `websockets`, by headless Chromium and by a raw client whose frames the test reads
//! byte by byte; a compressed message that inflates past `max-message-size` closed with 1009 by the real binary with
//! its peak memory measured; a peer's close without a code answered without one on both; and the host default
//! `serve --compression`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wasmsock_tests::*;

/// The echo example on `zip` (compressing), `plain` (no compression), `small` (compressing, 1 MiB messages at most)
/// and `framed` (compressing, frames of 1 KiB at most).
fn plugins() -> Plugins {
    Plugins::new()
        .handler("examples/echo", "echo")
        .endpoint_with("zip", "examples/echo", serde_json::json!({ "compression": true }))
        .endpoint("plain", "examples/echo")
        .endpoint_with(
            "small",
            "examples/echo",
            serde_json::json!({ "compression": { "level": 6 }, "limits": { "max-message-size": 1 << 20 } }),
        )
        .endpoint_with(
            "framed",
            "examples/echo",
            serde_json::json!({ "compression": true, "limits": { "max-frame-size": 1024 } }),
        )
}

/// A chat message of exactly 1,024 bytes of JSON, as the benchmarks use: ids and a text of words drawn
/// pseudo-randomly from a small vocabulary (so it compresses as chat does, not as a repeated pattern would).
fn chat_json() -> String {
    const WORDS: [&str; 48] = [
        "the", "a", "meeting", "tomorrow", "lunch", "deploy", "is", "was", "fixed", "broken", "why", "how", "server",
        "client", "message", "room", "we", "you", "they", "can", "should", "not", "maybe", "later", "today", "build",
        "test", "green", "red", "review", "merge", "branch", "ok", "thanks", "please", "look", "at", "this", "that",
        "issue", "error", "log", "again", "still", "works", "for", "me", "now",
    ];
    let head = r#"{"type":"chat","room":"general","user":"ada.lovelace","id":"9b2f4c1e-77aa-4d3b","ts":1765000000123,"text":""#;
    let tail = r#""}"#;
    let (mut text, mut seed) = (String::new(), 0x2545_f491_u64);
    while head.len() + text.len() + tail.len() < 1024 {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        text.push_str(WORDS[(seed >> 33) as usize % WORDS.len()]);
        text.push(' ');
    }
    text.truncate(1024 - head.len() - tail.len());
    format!("{head}{text}{tail}")
}

/// The host's answer to a raw upgrade offering `extensions` (none: no header), and the socket after it.
async fn raw_upgrade(addr: impl std::fmt::Display, endpoint: &str, extensions: Option<&str>) -> (String, TcpStream) {
    let mut socket = TcpStream::connect(addr.to_string()).await.unwrap();
    let offer = extensions.map(|e| format!("Sec-WebSocket-Extensions: {e}\r\n")).unwrap_or_default();
    let request = format!(
        "GET /websockets/service/{endpoint} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n"
    );
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0];
        tokio::time::timeout(WAIT, socket.read_exact(&mut byte)).await.expect("answer in time").unwrap();
        head.push(byte[0]);
    }
    (String::from_utf8(head).unwrap(), socket)
}

/// A client frame: FIN, `rsv1` for a compressed message, masked with a zero mask (the payload as it is).
fn client_frame(opcode: u8, rsv1: bool, payload: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
    match payload.len() {
        n @ 0..=125 => frame.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(payload);
    frame
}

/// The next server frame: its first byte (FIN, RSV1, opcode) and payload.
async fn server_frame(socket: &mut TcpStream) -> (u8, Vec<u8>) {
    tokio::time::timeout(WAIT, async {
        let mut head = [0; 2];
        socket.read_exact(&mut head).await.unwrap();
        let len = match head[1] & 0x7f {
            126 => u64::from(socket.read_u16().await.unwrap()),
            127 => socket.read_u64().await.unwrap(),
            n => u64::from(n),
        };
        let mut payload = vec![0; len as usize];
        socket.read_exact(&mut payload).await.unwrap();
        (head[0], payload)
    })
    .await
    .expect("a frame in time")
}

/// Raw deflate of `chunks` as one message, as RFC 7692 7.2.1 has a sender do it: compressed, flushed with a sync
/// flush, its final four bytes (`00 00 ff ff`) taken off.
fn deflate_chunks<'a>(chunks: impl IntoIterator<Item = &'a [u8]>, level: u32) -> Vec<u8> {
    use flate2::{Compress, Compression, FlushCompress};
    let mut compress = Compress::new(Compression::new(level), false);
    let mut out = Vec::new();
    for mut input in chunks {
        while !input.is_empty() {
            out.reserve(1 << 16);
            let before = compress.total_in();
            compress.compress_vec(input, &mut out, FlushCompress::None).unwrap();
            input = &input[(compress.total_in() - before) as usize..];
        }
    }
    loop {
        out.reserve(1 << 16);
        compress.compress_vec(&[], &mut out, FlushCompress::Sync).unwrap();
        if out.len() < out.capacity() {
            break;
        }
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

fn deflate(data: &[u8]) -> Vec<u8> {
    deflate_chunks([data], 1)
}

/// A compressed message's payload inflated (the four bytes put back).
fn inflate(payload: &[u8]) -> Vec<u8> {
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut decompress = flate2::Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    decompress.decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync).unwrap();
    out
}

#[tokio::test]
async fn a_compressing_endpoint_sends_compressed_frames_and_a_plain_one_does_not() {
    let host = TestHost::start(plugins()).await;
    let json = chat_json();
    let browser_offer = "permessage-deflate; client_max_window_bits";

    let (answer, mut socket) = raw_upgrade(host.addr, "zip", Some(browser_offer)).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    let extensions = answer.lines().find(|l| l.to_ascii_lowercase().starts_with("sec-websocket-extensions:"));
    assert_eq!(
        extensions.map(|l| l.split_once(':').unwrap().1.trim()),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15"),
        "{answer}"
    );
    // Uncompressed in (a client may), compressed back: RSV1 set and fewer bytes than the message.
    socket.write_all(&client_frame(1, false, json.as_bytes())).await.unwrap();
    let (first, payload) = server_frame(&mut socket).await;
    assert_eq!(first, 0x80 | 0x40 | 1, "FIN, RSV1, text");
    assert_eq!(json.len(), 1024);
    assert!(payload.len() < json.len() * 9 / 10, "{} bytes for {}", payload.len(), json.len());
    assert_eq!(String::from_utf8_lossy(&inflate(&payload)), json);
    // Compressed in: echoed; a message under the threshold goes back uncompressed.
    socket.write_all(&client_frame(1, true, &deflate(json.as_bytes()))).await.unwrap();
    let (first, again) = server_frame(&mut socket).await;
    assert_eq!((first, again), (0xc1, payload), "the same message compresses the same way without context");
    socket.write_all(&client_frame(1, true, &deflate(b"hi"))).await.unwrap();
    assert_eq!(server_frame(&mut socket).await, (0x81, b"hi".to_vec()), "2 bytes: under the threshold");

    // The plain endpoint ignores the offer and answers uncompressed.
    let (answer, mut socket) = raw_upgrade(host.addr, "plain", Some(browser_offer)).await;
    assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
    assert!(!answer.to_ascii_lowercase().contains("sec-websocket-extensions"), "{answer}");
    socket.write_all(&client_frame(1, false, json.as_bytes())).await.unwrap();
    assert_eq!(server_frame(&mut socket).await, (0x81, json.clone().into_bytes()));

    // A compressing endpoint without an offer: uncompressed; a list whose first offer cannot be honoured: the next.
    let (answer, mut socket) = raw_upgrade(host.addr, "zip", None).await;
    assert!(!answer.to_ascii_lowercase().contains("sec-websocket-extensions"), "{answer}");
    socket.write_all(&client_frame(1, false, json.as_bytes())).await.unwrap();
    assert_eq!(server_frame(&mut socket).await.0, 0x81);
    let list = "permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10";
    let (answer, _socket) = raw_upgrade(host.addr, "zip", Some(list)).await;
    assert!(answer.contains("server_max_window_bits=10"), "{answer}");
    host.stop().await;
}

/// A recorder endpoint compressing, as a chat room would be: `join room` and `publish room <text>`.
fn room_plugins() -> Plugins {
    Plugins::new().handler("a/recorder", "recorder").endpoint_with(
        "room",
        "a/recorder",
        serde_json::json!({ "compression": true }),
    )
}

#[tokio::test]
async fn a_publish_to_a_compressing_room_is_compressed_once_for_every_member_with_the_same_window() {
    const WIDE: usize = 30;
    const NARROW: usize = 10;
    const PLAIN: usize = 5;
    let host = TestHost::start(room_plugins()).await;
    let mut members = Vec::new();
    for i in 0..WIDE + NARROW + PLAIN {
        let offer = match i {
            _ if i < WIDE => Some("permessage-deflate; client_max_window_bits"),
            _ if i < WIDE + NARROW => Some("permessage-deflate; server_max_window_bits=10"),
            _ => None,
        };
        let (answer, mut socket) = raw_upgrade(host.addr, "room", offer).await;
        assert!(answer.starts_with("HTTP/1.1 101"), "{answer}");
        socket.write_all(&client_frame(1, false, b"join room")).await.unwrap();
        assert_eq!(server_frame(&mut socket).await, (0x81, b"ok".to_vec()), "member {i}");
        members.push(socket);
    }
    // Four chat messages in one (4 KiB): a 15-bit window finds the repeats 1 KiB back, a 10-bit one cannot.
    let json = chat_json();
    let message = format!("[{json},{json},{json},{json}]");
    let scrape = || Scrape::parse(&host.app.metrics.encode().unwrap());
    let (compressed, reused) =
        (scrape().get("wasmsock_deflate_compressed_total"), scrape().get("wasmsock_deflate_reused_total"));
    let (_, mut publisher) = raw_upgrade(host.addr, "room", None).await;
    publisher.write_all(&client_frame(1, false, format!("publish room {message}").as_bytes())).await.unwrap();
    assert_eq!(server_frame(&mut publisher).await.1, format!("queued {}", members.len()).into_bytes());
    let mut payloads = [Vec::new(), Vec::new()];
    for (i, socket) in members.iter_mut().enumerate() {
        let (first, payload) = server_frame(socket).await;
        if i < WIDE + NARROW {
            assert_eq!(first, 0xc1, "member {i}: FIN, RSV1, text");
            assert_eq!(inflate(&payload), message.as_bytes(), "member {i}");
            let window = usize::from(i >= WIDE);
            if payloads[window].is_empty() {
                payloads[window] = payload;
            } else {
                assert_eq!(payload, payloads[window], "member {i}: the same frame as the others with its window");
            }
        } else {
            assert_eq!((first, payload), (0x81, message.clone().into_bytes()), "member {i}: did not offer deflate");
        }
    }
    // The wide window takes each repeat as a few back-references 1 KiB away; the narrow one cannot reach them.
    let [wide, narrow] = payloads;
    assert!(wide.len() < json.len(), "{} bytes for {}: less than one of its four parts", wide.len(), message.len());
    assert!(narrow.len() > wide.len() * 2, "a 10-bit window's {} bytes against {}", narrow.len(), wide.len());
    // One compression per window for the room; every other compressing member's frame reused one of them. Other tests
    // in this process may compress at the same time, but never reuse this message's buffer.
    let compressed = scrape().get("wasmsock_deflate_compressed_total") - compressed;
    let reused = scrape().get("wasmsock_deflate_reused_total") - reused;
    assert!(compressed >= 2.0, "{compressed}");
    assert!(reused >= (WIDE + NARROW - 2) as f64, "reused {reused} of {} compressing members' sends", WIDE + NARROW);
    host.stop().await;
}

#[tokio::test]
async fn protocol_errors_on_a_compressing_endpoint_close_with_the_rfc_codes() {
    let host = TestHost::start(plugins()).await;
    // Autobahn 7.3.6: a close whose reason makes it 126 bytes is answered 1002, not echoed.
    let (_, mut socket) = raw_upgrade(host.addr, "zip", Some("permessage-deflate")).await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[b'a'; 124]);
    socket.write_all(&client_frame(8, false, &payload)).await.unwrap();
    let (first, close) = server_frame(&mut socket).await;
    assert_eq!((first, &close[..2]), (0x88, &1002u16.to_be_bytes()[..]), "{close:?}");
    // Invalid UTF-8 in a compressed text message: 1007.
    let (_, mut socket) = raw_upgrade(host.addr, "zip", Some("permessage-deflate")).await;
    socket.write_all(&client_frame(1, true, &deflate(&[0xff, 0xfe, 0xfd]))).await.unwrap();
    let (first, close) = server_frame(&mut socket).await;
    assert_eq!((first, &close[..2]), (0x88, &1007u16.to_be_bytes()[..]), "{close:?}");
    // RSV1 where nothing was negotiated: 1002.
    let (_, mut socket) = raw_upgrade(host.addr, "zip", None).await;
    socket.write_all(&client_frame(1, true, &deflate(b"hello"))).await.unwrap();
    let (first, close) = server_frame(&mut socket).await;
    assert_eq!((first, &close[..2]), (0x88, &1002u16.to_be_bytes()[..]), "{close:?}");
    host.stop().await;
}

#[tokio::test]
async fn a_peers_close_without_a_code_is_answered_without_one_on_compressing_and_plain_endpoints_alike() {
    let host = TestHost::start(plugins()).await;
    for (endpoint, offer) in [("zip", Some("permessage-deflate")), ("plain", None)] {
        let (head, mut socket) = raw_upgrade(host.addr, endpoint, offer).await;
        assert_eq!(head.contains("permessage-deflate"), offer.is_some(), "{endpoint}: {head}");
        socket.write_all(&client_frame(8, false, b"")).await.unwrap();
        let (first, close) = server_frame(&mut socket).await;
        assert_eq!((first, close), (0x88, Vec::new()), "{endpoint}: the answer to an empty close is empty");
    }
    host.stop().await;
}

#[tokio::test]
async fn a_compressing_endpoint_keeps_its_frame_limit_apart_from_the_message_limit() {
    let host = TestHost::start(plugins()).await;
    let (_, mut socket) = raw_upgrade(host.addr, "framed", Some("permessage-deflate")).await;
    // A frame of exactly `max-frame-size`: echoed (compressed back, over the threshold).
    socket.write_all(&client_frame(1, false, &[b'a'; 1024])).await.unwrap();
    let (first, payload) = server_frame(&mut socket).await;
    assert_eq!((first, inflate(&payload)), (0xc1, vec![b'a'; 1024]));
    // A message of 2,000 bytes in two frames under the limit: echoed whole.
    let mut start = client_frame(1, false, &[b'b'; 1000]);
    start[0] &= 0x7f;
    socket.write_all(&start).await.unwrap();
    socket.write_all(&client_frame(0, false, &[b'b'; 1000])).await.unwrap();
    let (first, payload) = server_frame(&mut socket).await;
    assert_eq!((first, inflate(&payload)), (0xc1, vec![b'b'; 2000]));
    // One frame a byte over: 1009.
    socket.write_all(&client_frame(1, false, &[b'c'; 1025])).await.unwrap();
    let (first, close) = server_frame(&mut socket).await;
    assert_eq!((first, &close[..2]), (0x88, &1009u16.to_be_bytes()[..]), "{}", String::from_utf8_lossy(&close));
    host.stop().await;
}

/// `VmHWM` (peak RSS) of process `pid`, in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap();
    line.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

#[tokio::test]
async fn a_compressed_message_inflating_past_the_limit_closes_1009_without_inflating_it() {
    let plugins = plugins();
    let host = BinaryHost::start(&plugins, &[]).await;
    // 200 MiB of zeros compress to about 200 KB: the zip bomb, against `small`'s limit of 1 MiB.
    let zeros = vec![0u8; 1 << 20];
    let bomb = deflate_chunks(std::iter::repeat_n(&zeros[..], 200), 9);
    assert!(bomb.len() < 1 << 20, "{} bytes compressed", bomb.len());
    // Just over the limit: refused as well; at the limit: echoed.
    let at_limit = deflate(&vec![b'a'; 1 << 20]);
    let over_limit = deflate(&vec![b'a'; (1 << 20) + 1]);
    let (_, mut socket) = raw_upgrade(&host.addr, "small", Some("permessage-deflate")).await;
    socket.write_all(&client_frame(2, true, &at_limit)).await.unwrap();
    let (first, echoed) = server_frame(&mut socket).await;
    assert_eq!(first, 0xc2, "a 1 MiB message on a 1 MiB endpoint comes back, compressed");
    assert!(echoed.len() < 1 << 16, "{} bytes", echoed.len());
    socket.write_all(&client_frame(2, true, &over_limit)).await.unwrap();
    let (first, close) = server_frame(&mut socket).await;
    assert_eq!((first, &close[..2]), (0x88, &1009u16.to_be_bytes()[..]), "{}", String::from_utf8_lossy(&close));

    let before = peak_rss(host.pid());
    let (_, mut socket) = raw_upgrade(&host.addr, "small", Some("permessage-deflate")).await;
    socket.write_all(&client_frame(2, true, &bomb)).await.unwrap_or_default();
    let (first, close) = server_frame(&mut socket).await;
    assert_eq!((first, &close[..2]), (0x88, &1009u16.to_be_bytes()[..]), "{}", String::from_utf8_lossy(&close));
    let grew = peak_rss(host.pid()).saturating_sub(before);
    eprintln!(
        "deflate: a 200 MiB bomb ({} bytes compressed) raised the host's peak RSS by {} KiB",
        bomb.len(),
        grew >> 10
    );
    assert!(grew < 16 << 20, "the host's peak memory grew {grew} bytes: it inflated past the limit");
    // The host goes on serving.
    let mut ws = connect(&host.url("plain")).await;
    send(&mut ws, "still here").await;
    assert_eq!(text(&mut ws).await, "still here");
}

#[tokio::test]
async fn serve_compression_makes_endpoints_without_the_field_compress_and_false_still_opts_out() {
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint("default", "examples/echo").endpoint_with(
        "never",
        "examples/echo",
        serde_json::json!({ "compression": false }),
    );
    let limits = wasmsock::Limits { compression: true, close_timeout: Duration::from_secs(1), ..Default::default() };
    let host = TestHost::start_with(plugins, limits).await;
    let (answer, _) = raw_upgrade(host.addr, "default", Some("permessage-deflate")).await;
    assert!(answer.contains("permessage-deflate; server_no_context_takeover"), "{answer}");
    let (answer, _) = raw_upgrade(host.addr, "never", Some("permessage-deflate")).await;
    assert!(answer.starts_with("HTTP/1.1 101") && !answer.contains("permessage-deflate"), "{answer}");
    host.stop().await;
}

#[tokio::test]
async fn a_bad_compression_value_is_refused_naming_the_file_and_the_field() {
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint_with(
        "bad",
        "examples/echo",
        serde_json::json!({ "compression": { "level": 12 } }),
    );
    let host = TestHost::start(plugins).await;
    let errors = host.load_errors.join("\n");
    assert!(errors.contains("bad.websocket") && errors.contains("compression.level"), "{errors}");
    host.stop().await;
}

/// Runs a client program (`command`, bounded by `limit`) that prints one JSON line per URL, `zip`'s then `plain`'s,
/// and checks them: deflate agreed with `zip` as the host answers a bare `client_max_window_bits`, nothing agreed with
/// `plain` (`no_extension`: how the client says so), and both echoes unchanged.
async fn check_client(mut command: tokio::process::Command, limit: Duration, no_extension: serde_json::Value) {
    let out =
        tokio::time::timeout(limit, command.kill_on_drop(true).output()).await.expect("the client in time").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> = stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    let zip = lines[0]["extensions"].as_str().unwrap_or_default();
    assert!(zip.starts_with("permessage-deflate; server_no_context_takeover; client_no_context_takeover"), "{stdout}");
    assert!(zip.contains("client_max_window_bits=15"), "{stdout}");
    assert_eq!(lines[1]["extensions"], no_extension, "{stdout}");
    assert!(lines.iter().all(|l| l["echoed"] == true), "{stdout}");
}

/// A Python with `websockets`: `$WASMSOCK_PYTHON` (CI makes one, `.ci/run`), else `python3`; none: the test skips
/// loudly, unless `CI` is set.
fn python_with_websockets(test: &str) -> Option<PathBuf> {
    let python = std::env::var_os("WASMSOCK_PYTHON").map(PathBuf::from).unwrap_or_else(|| "python3".into());
    let found = std::process::Command::new(&python).args(["-c", "import websockets"]).output();
    if found.is_ok_and(|out| out.status.success()) {
        return Some(python);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but {} has no `websockets` ($WASMSOCK_PYTHON)",
        python.display()
    );
    eprintln!("\n!!! SKIPPED {test}: {} cannot import websockets (set $WASMSOCK_PYTHON) !!!\n", python.display());
    None
}

/// Python `websockets` (its default offer, `permessage-deflate; client_max_window_bits`) against each URL: one JSON
/// line per URL with the answer's extensions and whether a 1 KB message came back unchanged.
const PYTHON_CLIENT: &str = r#"
import json, sys
from websockets.sync.client import connect
message = sys.argv[1]
for url in sys.argv[2:]:
    with connect(url, open_timeout=10) as ws:
        extensions = ws.response.headers.get("Sec-WebSocket-Extensions")
        ws.send(message)
        back = ws.recv(timeout=10)
        print(json.dumps({"url": url, "extensions": extensions, "echoed": back == message}), flush=True)
"#;

#[tokio::test]
async fn python_websockets_negotiates_deflate_with_a_compressing_endpoint_only() {
    let Some(python) = python_with_websockets("python_websockets_negotiates_deflate_with_a_compressing_endpoint_only")
    else {
        return;
    };
    let host = TestHost::start(plugins()).await;
    let mut command = tokio::process::Command::new(python);
    command.args(["-c", PYTHON_CLIENT, &chat_json(), &host.url("zip"), &host.url("plain")]);
    check_client(command, Duration::from_secs(60), serde_json::Value::Null).await;
    host.stop().await;
}

#[tokio::test]
async fn chromium_negotiates_deflate_with_a_compressing_endpoint_only() {
    let Some((chromium, dir)) = browser("chromium_negotiates_deflate_with_a_compressing_endpoint_only") else { return };
    let host = TestHost::start(plugins()).await;
    let page = format!("http://{}/", host.addr);
    let mut command = tokio::process::Command::new("node");
    command
        .args(["deflate.mjs", &page, &host.url("zip"), &host.url("plain")])
        .env("CHROMIUM", &chromium)
        .current_dir(&dir);
    check_client(command, Duration::from_secs(120), serde_json::Value::from("")).await;
    host.stop().await;
}

/// A TCP proxy for one connection to `upstream`, keeping what each side sent: (client to server, server to client).
async fn recording_proxy(upstream: std::net::SocketAddr) -> (std::net::SocketAddr, Arc<Mutex<[Vec<u8>; 2]>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<[Vec<u8>; 2]>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        let (client, _) = listener.accept().await.unwrap();
        let server = TcpStream::connect(upstream).await.unwrap();
        let ((mut client_read, mut client_write), (mut server_read, mut server_write)) =
            (client.into_split(), server.into_split());
        let up = record.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; 64 << 10];
            while let Ok(n @ 1..) = client_read.read(&mut buf).await {
                up.lock().unwrap()[0].extend_from_slice(&buf[..n]);
                if server_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        });
        let mut buf = vec![0; 64 << 10];
        while let Ok(n @ 1..) = server_read.read(&mut buf).await {
            record.lock().unwrap()[1].extend_from_slice(&buf[..n]);
            if client_write.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    });
    (addr, seen)
}

/// The HTTP head of a recorded direction and the first byte of the first frame after it.
fn head_and_first_frame(bytes: &[u8]) -> (String, Option<u8>) {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n").map_or(bytes.len(), |at| at + 4);
    (String::from_utf8_lossy(&bytes[..end]).into_owned(), bytes.get(end).copied())
}

#[tokio::test]
async fn an_outbound_client_offers_deflate_and_compresses_to_the_hosts_own_compressing_endpoint() {
    let plugins = Plugins::new()
        .handler("tests/recorder", "recorder")
        .endpoint_granted("rec", "tests/recorder", &[LOOPBACK])
        .handler("tests/echo", "echo")
        .endpoint("zip", "tests/echo");
    // The host default: endpoints without the field compress, and handlers' clients offer it.
    let limits = wasmsock::Limits { compression: true, close_timeout: Duration::from_secs(1), ..Default::default() };
    let host = TestHost::start_with(plugins, limits).await;
    let (proxy, seen) = recording_proxy(host.addr).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let json = chat_json();
    send(&mut driver, &format!("connect-send ws://{proxy}/websockets/service/zip {json}")).await;
    let id = client_id(&text(&mut driver).await);
    assert_eq!(observer.expect(&id, "onopen").await, "");
    assert_eq!(observer.expect(&id, "onmessage").await, json, "the echo, inflated by the client");
    let [up, down] = seen.lock().unwrap().clone();
    let (request, first_up) = head_and_first_frame(&up);
    let (answer, first_down) = head_and_first_frame(&down);
    assert!(request.contains("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"), "{request}");
    assert!(
        answer.to_ascii_lowercase().contains(
            "sec-websocket-extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover; client_max_window_bits=15"
        ),
        "{answer}"
    );
    assert_eq!(first_up, Some(0xc1), "the client's message: FIN, RSV1 (compressed), text");
    assert_eq!(first_down, Some(0xc1), "the echo: compressed");
    assert!(up.len() < request.len() + json.len(), "{} bytes up for a {} byte message", up.len(), json.len());
    host.stop().await;
}

/// User and system CPU time of process `pid`, from `/proc/PID/stat` (in steps of 10 ms).
fn process_cpu_of(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// `VmRSS` of process `pid`, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).unwrap();
    line.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap() * 1024
}

/// One connection echoing `frame` with `window` in flight until `until`; counts (messages, bytes from the server)
/// after `from`.
async fn pipeline(
    mut socket: TcpStream,
    frame: Arc<Vec<u8>>,
    window: usize,
    from: tokio::time::Instant,
    until: tokio::time::Instant,
) -> (u64, u64) {
    let burst: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * window).collect();
    socket.write_all(&burst).await.unwrap();
    let (mut messages, mut bytes) = (0u64, 0u64);
    let mut buf = Vec::with_capacity(64 << 10);
    let mut chunk = vec![0; 64 << 10];
    while tokio::time::Instant::now() < until {
        let Ok(Ok(n @ 1..)) = tokio::time::timeout(WAIT, socket.read(&mut chunk)).await else { break };
        buf.extend_from_slice(&chunk[..n]);
        let mut at = 0;
        let mut echoed = 0;
        while buf.len() >= at + 2 {
            let (len, header) = match buf[at + 1] & 0x7f {
                126 if buf.len() >= at + 4 => (u64::from(u16::from_be_bytes([buf[at + 2], buf[at + 3]])), 4),
                127 if buf.len() >= at + 10 => (u64::from_be_bytes(buf[at + 2..at + 10].try_into().unwrap()), 10),
                126 | 127 => break,
                n => (u64::from(n), 2),
            };
            let end = at + header + len as usize;
            if buf.len() < end {
                break;
            }
            if tokio::time::Instant::now() >= from {
                messages += 1;
                bytes += (end - at) as u64;
            }
            echoed += 1;
            at = end;
        }
        buf.drain(..at);
        let more: Vec<u8> = frame.iter().copied().cycle().take(frame.len() * echoed).collect();
        socket.write_all(&more).await.unwrap();
    }
    (messages, bytes)
}

/// Figures, not assertions (BENCHMARKS.md "permessage-deflate in the host"): against the real binary, 100
/// connections × 10 in flight echoing a 1 KB chat JSON for 5 s after 1 s of warm-up, plain and compressed (the client
/// sends it compressed, as browsers do), the host's CPU and the server's bytes on the wire per message; then 1,000
/// idle connections, each after one echo, and the host's RSS per connection. Run in release:
/// `cargo build --release -p wasmsock && cargo test --release -p wasmsock-tests --test deflate -- --ignored --nocapture deflate_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures, asserts none: run with --release -- --ignored --nocapture deflate_cost"]
async fn deflate_cost() {
    let json = chat_json();
    let offer = "permessage-deflate; client_max_window_bits";
    let cases = [
        ("plain endpoint", "plain", None, client_frame(1, false, json.as_bytes())),
        ("compressing endpoint, client offers nothing", "zip", None, client_frame(1, false, json.as_bytes())),
        (
            "compressing endpoint, deflate negotiated",
            "zip",
            Some(offer),
            client_frame(1, true, &deflate(json.as_bytes())),
        ),
    ];
    // One kept instance per endpoint (`shared`), the cheapest handler call, so the socket's share shows.
    let shared = || {
        Plugins::new()
            .handler("examples/echo", "echo")
            .endpoint_with("zip", "examples/echo", serde_json::json!({ "compression": true, "instance": "shared" }))
            .endpoint_with("plain", "examples/echo", serde_json::json!({ "instance": "shared" }))
    };
    for (label, endpoint, offer, frame) in cases.iter().chain(cases.iter()).cloned() {
        let plugins = shared();
        let host = BinaryHost::start(&plugins, &[]).await;
        let frame = Arc::new(frame);
        let mut sockets = Vec::new();
        for _ in 0..100 {
            sockets.push(raw_upgrade(&host.addr, endpoint, offer).await.1);
        }
        let start = tokio::time::Instant::now();
        let (from, until) = (start + Duration::from_secs(1), start + Duration::from_secs(6));
        let tasks: Vec<_> =
            sockets.into_iter().map(|s| tokio::spawn(pipeline(s, frame.clone(), 10, from, until))).collect();
        tokio::time::sleep_until(from).await;
        let cpu_before = process_cpu_of(host.pid());
        tokio::time::sleep_until(until).await;
        let cpu = process_cpu_of(host.pid()) - cpu_before;
        let (mut messages, mut bytes) = (0, 0);
        for task in tasks {
            let (m, b) = task.await.unwrap();
            messages += m;
            bytes += b;
        }
        eprintln!(
            "deflate_cost: echo 1 KB JSON, {label}: {messages} messages in 5 s, host CPU {:.2} µs/msg, \
             server→client {:.1} B/msg on the wire (frame header included), client→server {} B/msg",
            cpu.as_secs_f64() * 1e6 / messages as f64,
            bytes as f64 / messages as f64,
            frame.len()
        );
    }
    for (label, endpoint, offer, frame) in [
        ("plain", "plain", None, client_frame(1, false, json.as_bytes())),
        ("compressed", "zip", Some(offer), client_frame(1, true, &deflate(json.as_bytes()))),
    ] {
        let plugins = shared();
        let host = BinaryHost::start(&plugins, &[]).await;
        // A few connections first, so what the process allocates for good (a compressor per worker thread, the pool's
        // states) is not counted per connection.
        let mut warm = Vec::new();
        for _ in 0..16 {
            let (_, mut socket) = raw_upgrade(&host.addr, endpoint, offer).await;
            socket.write_all(&frame).await.unwrap();
            warm.push(socket);
        }
        for socket in &mut warm {
            server_frame(socket).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss(host.pid());
        let mut idle = Vec::new();
        for _ in 0..1000 {
            let (_, mut socket) = raw_upgrade(&host.addr, endpoint, offer).await;
            socket.write_all(&frame).await.unwrap();
            server_frame(&mut socket).await;
            idle.push(socket);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let after = rss(host.pid());
        eprintln!(
            "deflate_cost: 1,000 idle connections, {label}, each after one 1 KB echo: {:.1} KiB per connection (RSS {} -> {} KiB)",
            after.saturating_sub(before) as f64 / 1024.0 / 1000.0,
            before >> 10,
            after >> 10
        );
        drop(idle);
    }
}

/// Figures, not assertions (BENCHMARKS.md "permessage-deflate in the host"): against the real binary, a room of 1,000
/// members on one endpoint and a publisher sending a 1 KB chat JSON one publish after another for 5 s after 1 s of
/// warm-up; the host's CPU and the bytes on the wire per delivery, members that do not offer deflate on a plain
/// endpoint against members that negotiate it on a compressing one, in interleaved rounds. Run in release:
/// `cargo build --release -p wasmsock && cargo test --release -p wasmsock-tests --test deflate -- --ignored --nocapture deflate_fanout_cost`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "prints figures, asserts none: run with --release -- --ignored --nocapture deflate_fanout_cost"]
async fn deflate_fanout_cost() {
    const MEMBERS: usize = 1000;
    let json = chat_json();
    let plugins = Plugins::new()
        .handler("a/recorder", "recorder")
        .endpoint_with("zip", "a/recorder", serde_json::json!({ "compression": true, "instance": "shared" }))
        .endpoint_with("plain", "a/recorder", serde_json::json!({ "instance": "shared" }));
    let offer = "permessage-deflate; client_max_window_bits";
    let cases = [("plain", "plain", None), ("compressed", "zip", Some(offer))];
    for (label, endpoint, offer) in cases.iter().chain(cases.iter()).cloned() {
        let host = BinaryHost::start(&plugins, &[]).await;
        let mut members = Vec::new();
        for _ in 0..MEMBERS {
            let (_, mut socket) = raw_upgrade(&host.addr, endpoint, offer).await;
            socket.write_all(&client_frame(1, false, b"join room")).await.unwrap();
            assert_eq!(server_frame(&mut socket).await, (0x81, b"ok".to_vec()));
            members.push(socket);
        }
        let start = tokio::time::Instant::now();
        let (from, until) = (start + Duration::from_secs(1), start + Duration::from_secs(6));
        let readers: Vec<_> = members
            .into_iter()
            .map(|mut socket| {
                tokio::spawn(async move {
                    let (mut buf, mut bytes) = (vec![0; 16 << 10], 0);
                    while let Ok(Ok(n @ 1..)) = tokio::time::timeout_at(until, socket.read(&mut buf)).await {
                        if tokio::time::Instant::now() >= from {
                            bytes += n;
                        }
                    }
                    bytes
                })
            })
            .collect();
        let (_, mut publisher) = raw_upgrade(&host.addr, endpoint, None).await;
        let command = client_frame(1, false, format!("publish room {json}").as_bytes());
        let (mut publishes, mut cpu_before) = (0, None);
        while tokio::time::Instant::now() < until {
            if cpu_before.is_none() && tokio::time::Instant::now() >= from {
                cpu_before = Some(process_cpu_of(host.pid()));
            }
            publisher.write_all(&command).await.unwrap();
            assert_eq!(server_frame(&mut publisher).await.1, format!("queued {MEMBERS}").into_bytes());
            publishes += u64::from(cpu_before.is_some());
        }
        let cpu = process_cpu_of(host.pid()) - cpu_before.unwrap_or_default();
        let mut bytes = 0;
        for reader in readers {
            bytes += reader.await.unwrap();
        }
        let deliveries = publishes as f64 * MEMBERS as f64;
        let scrape = Scrape::fetch(host.admin.parse().unwrap()).await;
        let count = |name: &str| scrape.0.get(name).map_or("-".to_owned(), |n| n.to_string());
        eprintln!(
            "deflate_fanout_cost: 1 KB JSON to {MEMBERS} members, {label}: {publishes} publishes in 5 s, host CPU \
             {:.2} µs per delivery, {:.1} B per delivery on the wire; deflate compressed {}, reused {}",
            cpu.as_secs_f64() * 1e6 / deliveries,
            bytes as f64 / deliveries,
            count("wasmsock_deflate_compressed_total"),
            count("wasmsock_deflate_reused_total"),
        );
    }
}
