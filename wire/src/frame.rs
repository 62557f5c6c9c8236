//! The frames the host deals in, their pure conversions to and from tungstenite's messages, and the turning of a
//! socket's message stream into frames and [`PeerError`]s.

use std::fmt::Display;

use futures_util::{Stream, StreamExt};
use tungstenite::Error as WsError;
use tungstenite::Message as TMessage;
use tungstenite::error::{CapacityError, ProtocolError};
use tungstenite::protocol::{CloseFrame as TCloseFrame, frame::coding::CloseCode};
pub use tungstenite::{Bytes, Utf8Bytes};

/// The largest close reason RFC 6455 allows: a control frame carries at most 125 bytes, two of them the code.
pub const MAX_CLOSE_REASON: usize = 123;

/// A close frame's code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Close {
    /// The close code (1000 normal, 1001 going away, 4000–4999 for applications, …).
    pub code: u16,
    /// Why, for a person; at most [`MAX_CLOSE_REASON`] bytes.
    pub reason: String,
}

impl Close {
    /// A close frame with this code and reason.
    pub fn new(code: u16, reason: impl Into<String>) -> Self {
        Self { code, reason: reason.into() }
    }

    /// Checks a close that a handler asked for: a code a peer may receive and a reason that fits the frame.
    pub fn validated(code: Option<u16>, reason: Option<String>) -> Result<Self, String> {
        let code = code.unwrap_or(1000);
        // 1004–1006 and 1015 are reserved for reporting and must not be sent; below 1000 and 1016–2999 are unassigned.
        let sendable = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
        if !sendable {
            return Err(format!("close code {code} may not be sent (use 1000–1003, 1007–1014 or 3000–4999)"));
        }
        let reason = reason.unwrap_or_default();
        if reason.len() > MAX_CLOSE_REASON {
            return Err(format!(
                "close reason is {} bytes; at most {MAX_CLOSE_REASON} fit in a close frame",
                reason.len()
            ));
        }
        Ok(Self { code, reason })
    }
}

/// One WebSocket frame as the host sees it: a data message, a close, or a ping or pong. The libraries answer pings
/// themselves; the host sends pings to keep connections alive and reads any frame as a sign of life.
///
/// Payloads are reference-counted bytes (the socket libraries' own types): a channel message queued on a thousand
/// members is one buffer, and a frame passes to and from the socket without a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A close frame, with its code and reason if it had them.
    Close(Option<Close>),
    /// A ping with its payload (at most 125 bytes).
    Ping(Bytes),
    /// A pong with its payload.
    Pong(Bytes),
}

impl Frame {
    /// Whether this is a close frame.
    pub fn is_close(&self) -> bool {
        matches!(self, Frame::Close(_))
    }

    /// Whether this is a data message (text or binary), the only frames handlers see and send.
    pub fn is_data(&self) -> bool {
        matches!(self, Frame::Text(_) | Frame::Binary(_))
    }

    /// The payload's length in bytes (a close frame's reason).
    pub fn len(&self) -> usize {
        match self {
            Frame::Text(text) => text.len(),
            Frame::Binary(data) | Frame::Ping(data) | Frame::Pong(data) => data.len(),
            Frame::Close(close) => close.as_ref().map_or(0, |c| c.reason.len() + 2),
        }
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A library message that is not a [`Frame`]: tungstenite's raw frame, which only appears when writing by hand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawFrame;

impl From<Frame> for TMessage {
    fn from(frame: Frame) -> Self {
        match frame {
            Frame::Text(text) => TMessage::Text(text),
            Frame::Binary(data) => TMessage::Binary(data),
            Frame::Close(close) => {
                TMessage::Close(close.map(|c| TCloseFrame { code: CloseCode::from(c.code), reason: c.reason.into() }))
            }
            Frame::Ping(data) => TMessage::Ping(data),
            Frame::Pong(data) => TMessage::Pong(data),
        }
    }
}

impl TryFrom<TMessage> for Frame {
    type Error = RawFrame;

    fn try_from(message: TMessage) -> Result<Self, RawFrame> {
        match message {
            TMessage::Text(text) => Ok(Frame::Text(text)),
            TMessage::Binary(data) => Ok(Frame::Binary(data)),
            TMessage::Close(close) => {
                Ok(Frame::Close(close.map(|c| Close { code: u16::from(c.code), reason: c.reason.as_str().to_owned() })))
            }
            TMessage::Ping(data) => Ok(Frame::Ping(data)),
            TMessage::Pong(data) => Ok(Frame::Pong(data)),
            TMessage::Frame(_) => Err(RawFrame),
        }
    }
}

/// A tungstenite message as a frame; none for a raw frame (see [`RawFrame`]). The `to_frame` of [`frames`] for
/// tungstenite streams.
pub fn from_tungstenite(message: TMessage) -> Option<Frame> {
    Frame::try_from(message).ok()
}

/// A tungstenite socket's error as the error [`frames`] reads (the socket's error is tungstenite's own).
pub fn tungstenite_error(err: &WsError) -> Option<&WsError> {
    Some(err)
}

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

/// Turns a socket's message stream into a stream of frames: `to_frame` converts a library message (none: not a frame,
/// skipped), the end-of-stream errors end the stream, and every other error becomes a [`PeerError`].
pub fn frames<S, M, E>(
    stream: S,
    to_frame: fn(M) -> Option<Frame>,
    to_ws_error: fn(&E) -> Option<&WsError>,
) -> impl Stream<Item = Result<Frame, PeerError>> + Unpin + Send
where
    S: Stream<Item = Result<M, E>> + Unpin + Send,
    M: Send,
    E: Display + Send,
{
    stream
        .take_while(move |item| {
            let more = !matches!(item, Err(err) if to_ws_error(err).is_some_and(is_end_of_stream));
            std::future::ready(more)
        })
        .filter_map(move |item| {
            std::future::ready(match item {
                Ok(message) => to_frame(message).map(Ok),
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

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Text("héllo".into()),
            Frame::Binary(vec![0, 1, 255].into()),
            Frame::Close(None),
            Frame::Close(Some(Close::new(4001, "bye"))),
            Frame::Ping(vec![7].into()),
            Frame::Pong(Bytes::new()),
        ]
    }

    #[test]
    fn frames_round_trip_through_tungstenite_messages() {
        for frame in samples() {
            let message = TMessage::from(frame.clone());
            assert_eq!(Frame::try_from(message), Ok(frame));
        }
    }

    #[test]
    fn pings_and_pongs_are_frames_and_raw_frames_are_not() {
        assert_eq!(Frame::try_from(TMessage::Ping(vec![1].into())), Ok(Frame::Ping(vec![1].into())));
        assert_eq!(Frame::try_from(TMessage::Pong(vec![2].into())), Ok(Frame::Pong(vec![2].into())));
        let raw = tungstenite::protocol::frame::Frame::ping(vec![1]);
        assert_eq!(Frame::try_from(TMessage::Frame(raw)), Err(RawFrame));
    }

    #[test]
    fn close_validation_rejects_reserved_codes_and_long_reasons() {
        assert_eq!(Close::validated(None, None), Ok(Close::new(1000, "")));
        assert_eq!(Close::validated(Some(4321), Some("x".into())), Ok(Close::new(4321, "x")));
        for code in [0, 999, 1004, 1005, 1006, 1015, 2000, 5000] {
            let err = Close::validated(Some(code), None).err().unwrap_or_default();
            assert!(err.contains(&code.to_string()), "{code}: {err}");
        }
        let err = Close::validated(None, Some("x".repeat(124))).err().unwrap_or_default();
        assert!(err.contains("124 bytes"), "{err}");
    }

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
