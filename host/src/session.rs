//! One connection's life, for inbound sessions and outbound clients alike: events to the handler in order, frames
//! from the outbound queue to the socket, the closing handshake, and onclose exactly once. Independent of the socket
//! type, so it can be driven by anything that yields and accepts [`Frame`]s.

use std::fmt::Display;
use std::sync::Arc;

use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};

use crate::app::App;
use crate::event::{EventKind, Payload};
use crate::frame::{Close, Frame};
use crate::hub::{Conn, ConnState, Outbox};

/// A failure of the connection itself, as the session reports it to the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerError {
    /// What happened, for the handler's `get-error` and the log.
    pub message: String,
    /// The close frame to send the peer, when the socket can still carry one.
    pub close: Option<Close>,
}

impl From<&WsError> for PeerError {
    fn from(err: &WsError) -> Self {
        let (close, message) = match err {
            WsError::Capacity(CapacityError::MessageTooLong { size, max_size }) => (
                Some(Close::new(1009, "message too big")),
                format!("the peer sent a message of {size} bytes, more than the limit of {max_size}"),
            ),
            WsError::Capacity(other) => {
                (Some(Close::new(1009, "message too big")), format!("the peer sent too much: {other}"))
            }
            WsError::Utf8(_) => (
                Some(Close::new(1007, "invalid UTF-8 in a text message")),
                "the peer sent invalid UTF-8 in a text message".into(),
            ),
            WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
                (None, "the peer went away without a closing handshake".into())
            }
            WsError::Protocol(protocol) => {
                (Some(Close::new(1002, "protocol error")), format!("the peer broke the WebSocket protocol: {protocol}"))
            }
            WsError::Io(io) => (None, format!("the connection failed: {io}")),
            other => (None, format!("the connection failed: {other}")),
        };
        PeerError { message, close }
    }
}

/// Whether this error only says the stream has ended, which is no error for the handler.
pub fn is_end_of_stream(err: &WsError) -> bool {
    matches!(err, WsError::ConnectionClosed | WsError::AlreadyClosed)
}

/// How an open connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// This host closed it (the handler, a limit, or shutdown).
    ByHost,
    /// The peer closed it, or it failed.
    ByPeer,
}

/// Runs an inbound session from open to onclose.
pub async fn run<St, Si>(app: Arc<App>, conn: Arc<Conn>, outbox: Outbox, stream: St, sink: Si)
where
    St: Stream<Item = Result<Frame, PeerError>> + Unpin + Send,
    Si: Sink<Frame> + Unpin + Send + 'static,
    Si::Error: Display,
{
    let _running = app.track();
    run_open(&app, &conn, outbox, stream, sink).await;
    finish(&app, &conn).await;
}

/// Runs a connection that is open: onopen, then onmessage per data message in order, and onerror for a failure,
/// until the stream ends (or the closing handshake times out). Returns the outbox (for a reconnect) and who ended it.
pub async fn run_open<St, Si>(
    app: &Arc<App>,
    conn: &Arc<Conn>,
    outbox: Outbox,
    mut stream: St,
    sink: Si,
) -> (Outbox, Ended)
where
    St: Stream<Item = Result<Frame, PeerError>> + Unpin + Send,
    Si: Sink<Frame> + Unpin + Send + 'static,
    Si::Error: Display,
{
    conn.advance(ConnState::Open);
    let conn_id = conn.id().to_owned();
    let (stop, stopped) = oneshot::channel();
    let mut writer = tokio::spawn(tracing::Instrument::in_current_span(write_frames(
        app.clone(),
        conn.clone(),
        outbox,
        sink,
        stopped,
    )));
    app.dispatch(conn, EventKind::Open).await;
    let mut failure = None;
    loop {
        let next = if conn.state() == ConnState::Open {
            tokio::select! {
                next = stream.next() => next,
                // The host asked to close: go round again, now bounded by the close timeout.
                () = conn.closing_requested() => continue,
            }
        } else {
            // Closing: wait a bounded time for the peer's close frame and the end of the stream.
            match tokio::time::timeout(app.limits.close_timeout, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::debug!(conn = %conn_id, "the peer did not finish the closing handshake in time");
                    break;
                }
            }
        };
        match next {
            None => break,
            Some(Ok(Frame::Text(text))) if conn.state() == ConnState::Open => {
                conn.count_in();
                app.metrics.message_received(conn, text.len());
                app.dispatch(conn, EventKind::Message(Payload::Text(text))).await;
            }
            Some(Ok(Frame::Binary(data))) if conn.state() == ConnState::Open => {
                conn.count_in();
                app.metrics.message_received(conn, data.len());
                app.dispatch(conn, EventKind::Message(Payload::Binary(data))).await;
            }
            // Data after a close frame is dropped: the handler already let the connection go.
            Some(Ok(Frame::Text(_) | Frame::Binary(_))) => {}
            // The library answers the peer's close; keep reading so the answer is written before the stream ends.
            Some(Ok(Frame::Close(_))) => conn.advance(ConnState::Closing),
            Some(Err(err)) => {
                failure = Some(err);
                break;
            }
        }
    }
    let mut written = None;
    if let Some(err) = &failure
        && let Some(close) = err.close.clone()
        && conn.request_close_for_peer(close).is_ok()
    {
        // Give the writer a moment to put the close frame on the wire before the socket is dropped.
        written = tokio::time::timeout(app.limits.close_timeout, &mut writer).await.ok();
    }
    let _ = stop.send(());
    let written = match written {
        Some(written) => written,
        None => writer.await,
    };
    let outbox = match written {
        Ok(outbox) => outbox,
        Err(err) => {
            // The writer cannot panic short of a bug; without its outbox the connection cannot go on.
            tracing::error!(conn = %conn_id, "the writer task failed: {err}");
            conn.advance(ConnState::Closing);
            return (Outbox::detached(conn.clone()), Ended::ByHost);
        }
    };
    if let Some(err) = failure {
        tracing::debug!(conn = %conn_id, "{}", err.message);
        app.dispatch(conn, EventKind::Error(err.message)).await;
    }
    let ended = if conn.closed_by_host() { Ended::ByHost } else { Ended::ByPeer };
    (outbox, ended)
}

/// Ends a connection for good: it leaves the hub, then its handler sees onclose.
pub async fn finish(app: &Arc<App>, conn: &Arc<Conn>) {
    app.hub.remove(conn.id());
    app.metrics.connection_closed(conn);
    app.dispatch(conn, EventKind::Close).await;
}

/// Writes queued frames to the socket until the close frame has gone out, the socket fails, or `stop` fires; returns
/// the outbox so frames queued later are kept for a reconnect.
async fn write_frames<Si>(
    app: Arc<App>,
    conn: Arc<Conn>,
    mut outbox: Outbox,
    mut sink: Si,
    mut stop: oneshot::Receiver<()>,
) -> Outbox
where
    Si: Sink<Frame> + Unpin,
    Si::Error: Display,
{
    loop {
        let frame = tokio::select! {
            biased;
            _ = &mut stop => break,
            frame = outbox.next() => frame,
        };
        let Some(frame) = frame else { break };
        let is_close = frame.is_close();
        let bytes = match &frame {
            Frame::Text(text) => text.len(),
            Frame::Binary(data) => data.len(),
            Frame::Close(_) => 0,
        };
        let sent = tokio::select! {
            biased;
            _ = &mut stop => break,
            sent = sink.send(frame) => sent,
        };
        if let Err(err) = sent {
            tracing::debug!(conn = conn.id(), "writing to the socket failed: {err}");
            break;
        }
        if is_close {
            break;
        }
        conn.count_out();
        app.metrics.message_sent(&conn, bytes);
    }
    outbox
}

/// Turns a socket's message stream into a stream of frames: pings and pongs are skipped (the library answers them),
/// the end-of-stream errors end it, and every other error becomes a [`PeerError`].
pub fn frames<S, M, E>(
    stream: S,
    to_ws_error: fn(&E) -> Option<&WsError>,
) -> impl Stream<Item = Result<Frame, PeerError>> + Unpin + Send
where
    S: Stream<Item = Result<M, E>> + Unpin + Send,
    M: TryInto<Frame> + Send,
    E: Display + Send,
{
    stream
        .take_while(move |item| {
            let more = !matches!(item, Err(err) if to_ws_error(err).is_some_and(is_end_of_stream));
            std::future::ready(more)
        })
        .filter_map(move |item| {
            std::future::ready(match item {
                Ok(message) => message.try_into().ok().map(Ok),
                Err(err) => Some(Err(match to_ws_error(&err) {
                    Some(ws) => PeerError::from(ws),
                    None => PeerError { message: format!("the connection failed: {err}"), close: None },
                })),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_errors_carry_the_close_code_the_rfc_asks_for() {
        let too_big = WsError::Capacity(CapacityError::MessageTooLong { size: 10, max_size: 5 });
        assert_eq!(PeerError::from(&too_big).close.map(|c| c.code), Some(1009));
        assert_eq!(PeerError::from(&WsError::Utf8(String::new())).close.map(|c| c.code), Some(1007));
        let protocol = WsError::Protocol(ProtocolError::UnmaskedFrameFromClient);
        assert_eq!(PeerError::from(&protocol).close.map(|c| c.code), Some(1002));
        let reset = WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake);
        let err = PeerError::from(&reset);
        assert_eq!(err.close, None);
        assert!(err.message.contains("without a closing handshake"), "{}", err.message);
    }
}
