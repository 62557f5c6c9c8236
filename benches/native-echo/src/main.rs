//! The native baseline of `benches/run.sh`: an axum WebSocket echo server on the address given as the first argument
//! (default 127.0.0.1:9000), with a 4 KiB read buffer, answering every data message on any path.

use anyhow::Context as _;
use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;

/// The socket read buffer: the host's until it read ahead per thread (it now reads its sockets in pieces of up to
/// 64 KiB and keeps 1 KiB per session, `DEFAULT_READ_BUFFER` and `READ_AHEAD` in wire/src/limits.rs). Without a read-ahead
/// beneath it, a smaller buffer here would cost a system call per kilobyte of a large message.
const READ_BUFFER: usize = 4 << 10;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
    let app = Router::new().fallback(upgrade);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app).await.context("serving")
}

async fn upgrade(ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(READ_BUFFER).on_upgrade(echo)
}

async fn echo(mut socket: WebSocket) {
    // Keep receiving after a close so the library's close reply is written before the socket is dropped.
    while let Some(Ok(message)) = socket.recv().await {
        let reply = match message {
            Message::Text(_) | Message::Binary(_) => message,
            Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
        };
        if socket.send(reply).await.is_err() {
            return;
        }
    }
}
