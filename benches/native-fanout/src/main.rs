//! The native baseline of `benches/fanout.sh`: an axum WebSocket server on the address given as the first argument
//! (default 127.0.0.1:9000) that sends every data message it receives to every connected client, sender included,
//! through one `tokio::sync::broadcast` channel (the shape of axum's chat example), on one tokio worker thread.

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::broadcast::{self, error::RecvError};

/// The socket read buffer, as in the host (`DEFAULT_READ_BUFFER` in wire/src/limits.rs) and benches/native-echo.
const READ_BUFFER: usize = 4 << 10;
/// Messages the channel keeps for a client that is behind: as many frames as the host's outbound queue holds
/// (`DEFAULT_OUTBOUND_QUEUE`). A client further behind misses the oldest (the host would close it with 1013).
const CAPACITY: usize = 1024;

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
    let (room, _) = broadcast::channel::<Message>(CAPACITY);
    let app = Router::new().fallback(upgrade).with_state(room);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app).await.context("serving")
}

async fn upgrade(ws: WebSocketUpgrade, State(room): State<broadcast::Sender<Message>>) -> Response {
    ws.read_buffer_size(READ_BUFFER).on_upgrade(move |socket| member(socket, room))
}

/// One client: a task writes what the channel brings, this one publishes what the client sends.
async fn member(socket: WebSocket, room: broadcast::Sender<Message>) {
    let (mut sink, mut stream) = socket.split();
    let mut inbox = room.subscribe();
    let mut writer = tokio::spawn(async move {
        loop {
            match inbox.recv().await {
                Ok(message) => {
                    if sink.send(message).await.is_err() {
                        return;
                    }
                }
                // At most once, like the host: a client that fell behind skips what it missed.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            }
        }
    });
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Text(_) | Message::Binary(_) = message {
                // The payload is reference-counted: every client's copy shares it.
                let _ = room.send(message);
            }
        }
    });
    tokio::select! {
        _ = &mut writer => reader.abort(),
        _ = &mut reader => writer.abort(),
    }
}
