//! Echo servers for the deflate lab. Usage: echo-server STACK PORT
//! STACK: axum | sockudo | yawc. Env: DEFLATE=off|on (default off), SNCT=1 (server_no_context_takeover),
//! CNCT=1 (client_no_context_takeover), WBITS=9..15 (server and client max window bits), LEVEL (0-9),
//! FIRST_OFFER=1 (keep only the first permessage-deflate offer), SOCKUDO_SHARED=1 (sockudo Compression::Shared instead of a DeflateConfig), POOL=n (yawc DeflatePool capacity), WORKERS (tokio workers, default 1), MAXMSG (bytes, default 64 MiB).
use axum::{Router, routing::get, response::IntoResponse};
use futures::{FutureExt, SinkExt, StreamExt};
use std::env;

fn envv(k: &str) -> Option<String> { env::var(k).ok().filter(|v| !v.is_empty()) }
fn flag(k: &str) -> bool { envv(k).map(|v| v == "1").unwrap_or(false) }
fn deflate_on() -> bool { envv("DEFLATE").map(|v| v == "on").unwrap_or(false) }
fn max_msg() -> usize { envv("MAXMSG").and_then(|v| v.parse().ok()).unwrap_or(64 << 20) }

// ---------- axum 0.8.9 (tokio-tungstenite 0.29) baseline ----------
async fn axum_handler(ws: axum::extract::ws::WebSocketUpgrade) -> impl IntoResponse {
    ws.max_message_size(max_msg()).on_upgrade(|mut s| async move {
        use axum::extract::ws::Message;
        let mut errs = 0;
        loop {
            let item = match s.next().now_or_never() {
                Some(i) => i,
                None => {
                    if s.flush().await.is_err() { break; }
                    s.next().await
                }
            };
            match item {
                None => break,
                // after an error the library may still have a Close to write: flush and keep reading to the end
                Some(Err(_)) => { errs += 1; let _ = s.flush().await; if errs > 3 { break } }
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if s.feed(m).await.is_err() { break; }
                }
                Some(Ok(_)) => {} // ping/pong/close: the library answers; keep reading until the end
            }
        }
    })
}

// ---------- sockudo-ws 3.1 through its axum integration ----------
fn sockudo_config() -> sockudo_ws::Config {
    let mut c = sockudo_ws::Config::default();
    c.max_message_size = max_msg();
    c.max_frame_size = max_msg();
    c.idle_timeout = 0; // hold idle connections for the memory test
    c.auto_ping = false;
    if envv("SOCKUDO_SHARED").is_some() {
        // sockudo's own `Compression::Shared` mode (documented as a shared compressor pool), no explicit DeflateConfig
        c.compression = sockudo_ws::Compression::Shared;
    } else if deflate_on() {
        let mut d = sockudo_ws::DeflateConfig::default();
        d.server_no_context_takeover = flag("SNCT");
        d.client_no_context_takeover = flag("CNCT");
        if let Some(b) = envv("WBITS").and_then(|v| v.parse::<u8>().ok()) {
            let b = sockudo_ws::deflate::DeflateWindowBits::try_from(b).expect("bits");
            d.server_max_window_bits = b;
            d.client_max_window_bits = b;
        }
        if let Some(l) = envv("LEVEL").and_then(|v| v.parse().ok()) { d.compression_level = l; }
        if let Some(t) = envv("THRESHOLD").and_then(|v| v.parse().ok()) { d.compression_threshold = t; }
        c.deflate = Some(d);
    }
    c
}

async fn sockudo_handler(ws: sockudo_ws::axum_integration::WebSocketUpgrade) -> impl IntoResponse {
    ws.config(sockudo_config()).on_upgrade(|mut s| async move {
        use sockudo_ws::Message;
        let mut errs = 0;
        if envv("SOCKUDO_HOST_1009").is_some() {
            // What the host would do: answer a too-large message with its own Close 1009.
            while let Some(item) = s.recv().await {
                match item {
                    Ok(m @ (Message::Text(_) | Message::Binary(_))) => if s.send(m).await.is_err() { break },
                    Ok(_) => {}
                    Err(e) => {
                        if envv("DEBUG").is_some() { eprintln!("sockudo recv error: {e:?}"); }
                        if matches!(e, sockudo_ws::Error::MessageTooLarge | sockudo_ws::Error::FrameTooLarge) {
                            let r = s.send(Message::Close(Some(sockudo_ws::error::CloseReason { code: 1009, reason: "message too big".into() }))).await;
                            if envv("DEBUG").is_some() { eprintln!("sent 1009: {r:?}"); }
                        }
                        break;
                    }
                }
            }
            let _ = s.close(1000, "").await;
            return;
        }
        loop {
            let item = match s.next().now_or_never() {
                Some(i) => i,
                None => {
                    if s.flush().await.is_err() { break; }
                    s.next().await
                }
            };
            match item {
                None => break,
                // after an error the library may still have a Close to write: flush and keep reading to the end
                Some(Err(_)) => { errs += 1; let _ = s.flush().await; if errs > 3 { break } }
                Some(Ok(m @ (Message::Text(_) | Message::Binary(_)))) => {
                    if s.feed(m).await.is_err() { break; }
                }
                Some(Ok(_)) => {}
            }
        }
        let _ = s.flush().await;
    })
}

// ---------- yawc 0.5 through its axum extractor ----------
fn yawc_options() -> yawc::Options {
    let mut o = yawc::Options::default()
        .with_utf8()
        .with_no_delay()
        .with_limits(max_msg(), 2 * max_msg());
    if deflate_on() {
        let mut d = yawc::DeflateOptions::default();
        if let Some(l) = envv("LEVEL").and_then(|v| v.parse().ok()) { d.level = yawc::CompressionLevel::new(l); }
        d.server_no_context_takeover = flag("SNCT");
        d.client_no_context_takeover = flag("CNCT");
        if let Some(b) = envv("WBITS").and_then(|v| v.parse::<u8>().ok()) {
            d.server_max_window_bits = Some(b);
            d.client_max_window_bits = Some(b);
        }
        if let Some(t) = envv("THRESHOLD").and_then(|v| v.parse().ok()) { d.compression_threshold = t; }
        if let Some(p) = envv("POOL").and_then(|v| v.parse::<usize>().ok()) {
            // one pool for the whole server, shared by every connection
            static POOL: std::sync::OnceLock<yawc::DeflatePool> = std::sync::OnceLock::new();
            d.pool = Some(POOL.get_or_init(|| yawc::DeflatePool::new(p)).clone());
        }
        o.compression = Some(d);
    } else {
        o = o.without_compression();
    }
    o
}

async fn yawc_handler(ws: yawc::IncomingUpgrade) -> impl IntoResponse {
    let (resp, fut) = match ws.upgrade(yawc_options()) {
        Ok(x) => x,
        Err(e) => return (axum::http::StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    tokio::spawn(async move {
        let Ok(mut s) = fut.await else { return };
        use yawc::frame::OpCode;
        if envv("YAWC_HOST_1009").is_some() {
            // What the host would do: read with next_frame() (errors are visible there, the Stream API ends with None),
            // and answer a too-large message with its own Close 1009.
            loop {
                match s.next_frame().await {
                    Ok(f) => if matches!(f.opcode(), OpCode::Text | OpCode::Binary) && s.send(f).await.is_err() { break },
                    Err(e) => {
                        if envv("DEBUG").is_some() { eprintln!("yawc next_frame error: {e:?}"); }
                        if matches!(e, yawc::WebSocketError::FrameTooLarge) {
                            let r = s.send(yawc::frame::Frame::close(yawc::close::CloseCode::Size, "message too big")).await;
                            if envv("DEBUG").is_some() { eprintln!("sent 1009: {r:?}"); }
                        }
                        let _ = s.close().await;
                        break;
                    }
                }
            }
            return;
        }
        loop {
            let item = match s.next().now_or_never() {
                Some(i) => i,
                None => {
                    if s.flush().await.is_err() { break; }
                    s.next().await
                }
            };
            match item {
                None => break,
                Some(f) => match f.opcode() {
                    OpCode::Text | OpCode::Binary => {
                        if s.feed(f).await.is_err() { break; }
                    }
                    _ => {}
                },
            }
        }
        if envv("YAWC_CLOSE_SINK").is_some() {
            // drive the sink's close: flushes a Close that yawc queued on a read error (e.g. 1009)
            let r = s.close().await;
            if envv("DEBUG").is_some() { eprintln!("yawc sink close: {r:?}"); }
        } else {
            let _ = s.flush().await;
        }
    });
    resp.into_response()
}

fn main() {
    let args: Vec<String> = env::args().collect();
    let stack = args.get(1).cloned().unwrap_or_else(|| "axum".into());
    let port: u16 = args.get(2).and_then(|p| p.parse().ok()).unwrap_or(9002);
    let workers: usize = envv("WORKERS").and_then(|v| v.parse().ok()).unwrap_or(1);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    rt.block_on(async move {
        let h = match stack.as_str() {
            "axum" => get(axum_handler),
            "sockudo" => get(sockudo_handler),
            "yawc" => get(yawc_handler),
            s => panic!("unknown stack {s}"),
        };
        let mut app = Router::new().fallback(h);
        if envv("FIRST_OFFER").is_some() {
            // Host-side workaround for yawc 0.5 declining a list of several permessage-deflate offers: keep only the
            // first offer before the extractor sees the request.
            app = app.layer(axum::middleware::map_request(|mut req: axum::extract::Request| async move {
                if let Some(v) = req.headers().get("sec-websocket-extensions").and_then(|v| v.to_str().ok()) {
                    let first = v.split(',').next().unwrap_or("").trim().to_string();
                    if let Ok(h) = axum::http::HeaderValue::from_str(&first) {
                        req.headers_mut().insert("sec-websocket-extensions", h);
                    }
                }
                req
            }));
        }
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.unwrap();
        eprintln!("{stack} listening on {port} deflate={} pid={}", deflate_on(), std::process::id());
        use axum::serve::ListenerExt;
        let l = l.tap_io(|t| { let _ = t.set_nodelay(true); });
        axum::serve(l, app).await.unwrap();
    });
}
