//! Echo clients for Autobahn's fuzzingserver. Usage: autobahn-client STACK [BASE_URL] [AGENT]
//! STACK: sockudo | yawc. Offers permessage-deflate (with client_max_window_bits) and echoes every data message.
use futures::{FutureExt, SinkExt, StreamExt};
use std::time::Duration;

const MAXMSG: usize = 64 << 20;

async fn echo_loop<S, M, E>(s: &mut S, is_data: impl Fn(&M) -> bool)
where S: futures::Stream<Item = Result<M, E>> + futures::Sink<M> + Unpin {
    loop {
        let item = match s.next().now_or_never() {
            Some(i) => i,
            None => { if s.flush().await.is_err() { break; } s.next().await }
        };
        match item {
            None | Some(Err(_)) => break,
            Some(Ok(m)) => if is_data(&m) && s.feed(m).await.is_err() { break },
        }
    }
    let _ = s.flush().await;
}

// ---------- sockudo-ws: the Http1 client does not offer deflate, so the upgrade is done with its public
// handshake helpers and the negotiated DeflateConfig is handed to CompressedWebSocketStream::client. ----------
async fn sockudo_case(url: &str) -> Result<Option<String>, String> {
    use sockudo_ws::handshake::{build_request_with_headers, generate_key, parse_response, validate_accept_key};
    use sockudo_ws::{CompressedWebSocketStream, Config, DeflateConfig, Message, WebSocketStream, Role};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let u = url::Url::parse(url).map_err(|e| e.to_string())?;
    let host = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
    let path = match u.query() { Some(q) => format!("{}?{}", u.path(), q), None => u.path().to_string() };
    let mut tcp = tokio::net::TcpStream::connect(&host).await.map_err(|e| e.to_string())?;
    tcp.set_nodelay(true).ok();
    let key = generate_key();
    let req = build_request_with_headers(&host, &path, &key, None, Some("permessage-deflate; client_max_window_bits"), None).map_err(|e| e.to_string())?;
    tcp.write_all(&req).await.map_err(|e| e.to_string())?;
    let mut buf = bytes::BytesMut::with_capacity(4096);
    let (ext, leftover) = loop {
        if tcp.read_buf(&mut buf).await.map_err(|e| e.to_string())? == 0 { return Err("closed".into()); }
        if let Some((res, used)) = parse_response(&buf).map_err(|e| e.to_string())? {
            if res.status != 101 || !validate_accept_key(&key, res.accept.unwrap_or("")) { return Err("bad handshake".into()); }
            let ext = res.extensions.map(str::to_string);
            let left = buf.split_off(used).freeze();
            break (ext, if left.is_empty() { None } else { Some(left) });
        }
    };
    let mut config = Config::default();
    config.max_message_size = MAXMSG; config.max_frame_size = MAXMSG; config.auto_ping = false; config.idle_timeout = 0;
    let is_data = |m: &Message| matches!(m, Message::Text(_) | Message::Binary(_));
    let deflate = ext.as_deref().and_then(sockudo_ws::deflate::parse_deflate_offer)
        .map(|p| DeflateConfig::from_params(&p)).transpose().map_err(|e| e.to_string())?;
    match deflate {
        Some(d) => { let mut s = CompressedWebSocketStream::client_with_leftover(tcp, config, d, leftover); echo_loop(&mut s, is_data).await; }
        None => { let mut s = WebSocketStream::from_raw_with_leftover(tcp, Role::Client, config, leftover); echo_loop(&mut s, is_data).await; }
    }
    Ok(ext)
}

async fn yawc_case(url: &str) -> Result<Option<String>, String> {
    use yawc::frame::OpCode;
    let opts = yawc::Options::default().with_utf8().with_no_delay().with_limits(MAXMSG, 2 * MAXMSG)
        .with_compression_level(yawc::CompressionLevel::default());
    // Offer client_max_window_bits (as browsers do): without it a server cannot choose the client's window, and
    // Autobahn's 13.3-13.6 (which need it) are UNIMPLEMENTED. CMWB=0 keeps yawc's default offer.
    let opts = if std::env::var("CMWB").map(|v| v == "0").unwrap_or(false) { opts } else { opts.with_client_max_window_bits(15) };
    let mut ws = yawc::WebSocket::connect(url.parse().map_err(|e: url::ParseError| e.to_string())?)
        .with_options(opts).await.map_err(|e| e.to_string())?;
    loop {
        let item = match ws.next().now_or_never() {
            Some(i) => i,
            None => { if ws.flush().await.is_err() { break; } ws.next().await }
        };
        match item {
            None => break,
            Some(f) => if matches!(f.opcode(), OpCode::Text | OpCode::Binary) && ws.feed(f).await.is_err() { break },
        }
    }
    let _ = ws.flush().await;
    Ok(None)
}

async fn case_count(base: &str) -> usize {
    // getCaseCount answers with one text message; use yawc without compression for it
    let mut ws = yawc::WebSocket::connect(format!("{base}/getCaseCount").parse().unwrap()).await.unwrap();
    let f = ws.next().await.unwrap();
    f.as_str().parse().unwrap()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let a: Vec<String> = std::env::args().collect();
    let stack = a.get(1).cloned().unwrap_or("sockudo".into());
    let base = a.get(2).cloned().unwrap_or("ws://127.0.0.1:9001".into());
    let agent = a.get(3).cloned().unwrap_or(format!("{stack}-client"));
    let n = case_count(&base).await;
    eprintln!("{n} cases");
    for i in 1..=n {
        let url = format!("{base}/runCase?case={i}&agent={agent}");
        let r = tokio::time::timeout(Duration::from_secs(120), async {
            if stack == "sockudo" { sockudo_case(&url).await } else { yawc_case(&url).await }
        }).await;
        match r {
            Ok(Ok(ext)) => if i == 1 || i % 100 == 0 { eprintln!("case {i} ok ext={ext:?}") },
            Ok(Err(e)) => eprintln!("case {i}: {e}"),
            Err(_) => eprintln!("case {i}: timeout"),
        }
    }
    let mut ws = yawc::WebSocket::connect(format!("{base}/updateReports?agent={agent}").parse().unwrap()).await.unwrap();
    while let Some(_) = ws.next().await {}
    eprintln!("reports updated");
}
