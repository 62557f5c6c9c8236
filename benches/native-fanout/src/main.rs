//! The native baseline of `benches/fanout.sh`: an axum WebSocket server on the address given as the first argument
//! (default 127.0.0.1:9000) that sends every data message it receives to every connected client, sender included,
//! through one `tokio::sync::broadcast` channel (the shape of axum's chat example), on one tokio worker thread.
//! Each client's writer puts every message already waiting into the socket with one flush, as the host's writer does;
//! with `flush-each` as the second argument it flushes every message on its own, as axum's chat example does.

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::response::Response;
use futures_util::{SinkExt as _, StreamExt as _};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};

/// The socket read buffer, as in benches/native-echo (see there why 4 KiB).
const READ_BUFFER: usize = 4 << 10;
/// Messages the channel keeps for a client that is behind: as many frames as the host's outbound queue holds
/// (`DEFAULT_OUTBOUND_QUEUE`). A client further behind misses the oldest (the host would close it with 1013).
const CAPACITY: usize = 1024;
/// The most messages written with one flush, as the host's writer (`MAX_WRITE_BATCH` in host/src/conn/session.rs).
const MAX_WRITE_BATCH: usize = 64;

#[derive(Clone)]
struct Room {
    channel: broadcast::Sender<Message>,
    /// Messages per flush at most: [`MAX_WRITE_BATCH`], or 1 with `flush-each`.
    batch: usize,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
    let batch = if std::env::args().nth(2).as_deref() == Some("flush-each") { 1 } else { MAX_WRITE_BATCH };
    let room = Room { channel: broadcast::channel(CAPACITY).0, batch };
    let app = Router::new().fallback(upgrade).with_state(room);
    let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("binding {addr}"))?;
    axum::serve(listener, app).await.context("serving")
}

async fn upgrade(ws: WebSocketUpgrade, State(room): State<Room>) -> Response {
    ws.read_buffer_size(READ_BUFFER).on_upgrade(move |socket| member(socket, room))
}

/// One client: a task writes what the channel brings, this one publishes what the client sends.
async fn member(socket: WebSocket, room: Room) {
    let (mut sink, mut stream) = socket.split();
    let mut inbox = room.channel.subscribe();
    let mut writer = tokio::spawn(async move {
        loop {
            let message = match inbox.recv().await {
                Ok(message) => message,
                // At most once, like the host: a client that fell behind skips what it missed.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            if sink.feed(message).await.is_err() {
                return;
            }
            let mut fed = 1;
            while fed < room.batch {
                match inbox.try_recv() {
                    Ok(message) => {
                        if sink.feed(message).await.is_err() {
                            return;
                        }
                        fed += 1;
                    }
                    Err(TryRecvError::Lagged(_)) => continue,
                    Err(TryRecvError::Empty | TryRecvError::Closed) => break,
                }
            }
            if sink.flush().await.is_err() {
                return;
            }
        }
    });
    let channel = room.channel;
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            if let Message::Text(_) | Message::Binary(_) = message {
                // The payload is reference-counted: every client's copy shares it.
                let _ = channel.send(message);
            }
        }
    });
    tokio::select! {
        _ = &mut writer => reader.abort(),
        _ = &mut reader => writer.abort(),
    }
}
