//! The frames the host deals in, and their pure conversions to and from the two WebSocket libraries' messages.

use axum::extract::ws as axum_ws;
use tokio_tungstenite::tungstenite::Message as TMessage;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame as TCloseFrame, frame::coding::CloseCode};

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

/// One WebSocket frame as the host sees it: a data message or a close. Pings and pongs are the library's business.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A text message.
    Text(String),
    /// A binary message.
    Binary(Vec<u8>),
    /// A close frame, with its code and reason if it had them.
    Close(Option<Close>),
}

impl Frame {
    /// Whether this is a close frame.
    pub fn is_close(&self) -> bool {
        matches!(self, Frame::Close(_))
    }
}

/// A message that is not a [`Frame`]: a ping or pong, answered by the library itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlFrame;

impl From<Frame> for axum_ws::Message {
    fn from(frame: Frame) -> Self {
        match frame {
            Frame::Text(text) => axum_ws::Message::Text(text.into()),
            Frame::Binary(data) => axum_ws::Message::Binary(data.into()),
            Frame::Close(close) => {
                axum_ws::Message::Close(close.map(|c| axum_ws::CloseFrame { code: c.code, reason: c.reason.into() }))
            }
        }
    }
}

impl TryFrom<axum_ws::Message> for Frame {
    type Error = ControlFrame;

    fn try_from(message: axum_ws::Message) -> Result<Self, ControlFrame> {
        match message {
            axum_ws::Message::Text(text) => Ok(Frame::Text(text.as_str().to_owned())),
            axum_ws::Message::Binary(data) => Ok(Frame::Binary(data.to_vec())),
            axum_ws::Message::Close(close) => {
                Ok(Frame::Close(close.map(|c| Close { code: c.code, reason: c.reason.as_str().to_owned() })))
            }
            axum_ws::Message::Ping(_) | axum_ws::Message::Pong(_) => Err(ControlFrame),
        }
    }
}

impl From<Frame> for TMessage {
    fn from(frame: Frame) -> Self {
        match frame {
            Frame::Text(text) => TMessage::Text(text.into()),
            Frame::Binary(data) => TMessage::Binary(data.into()),
            Frame::Close(close) => {
                TMessage::Close(close.map(|c| TCloseFrame { code: CloseCode::from(c.code), reason: c.reason.into() }))
            }
        }
    }
}

impl TryFrom<TMessage> for Frame {
    type Error = ControlFrame;

    fn try_from(message: TMessage) -> Result<Self, ControlFrame> {
        match message {
            TMessage::Text(text) => Ok(Frame::Text(text.as_str().to_owned())),
            TMessage::Binary(data) => Ok(Frame::Binary(data.to_vec())),
            TMessage::Close(close) => {
                Ok(Frame::Close(close.map(|c| Close { code: u16::from(c.code), reason: c.reason.as_str().to_owned() })))
            }
            TMessage::Ping(_) | TMessage::Pong(_) | TMessage::Frame(_) => Err(ControlFrame),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Frame> {
        vec![
            Frame::Text("héllo".into()),
            Frame::Binary(vec![0, 1, 255]),
            Frame::Close(None),
            Frame::Close(Some(Close::new(4001, "bye"))),
        ]
    }

    #[test]
    fn frames_round_trip_through_axum_messages() {
        for frame in samples() {
            let message = axum_ws::Message::from(frame.clone());
            assert_eq!(Frame::try_from(message), Ok(frame));
        }
    }

    #[test]
    fn frames_round_trip_through_tungstenite_messages() {
        for frame in samples() {
            let message = TMessage::from(frame.clone());
            assert_eq!(Frame::try_from(message), Ok(frame));
        }
    }

    #[test]
    fn pings_and_pongs_are_not_frames() {
        assert_eq!(Frame::try_from(axum_ws::Message::Ping(vec![1].into())), Err(ControlFrame));
        assert_eq!(Frame::try_from(TMessage::Pong(vec![1].into())), Err(ControlFrame));
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
}
