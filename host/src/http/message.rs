//! Pure conversions between the host's frames and axum's WebSocket messages, for the inbound side (the outbound side
//! speaks tungstenite, whose conversions live with the frames in `wasmsock-wire`).

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use wasmsock_wire::Bytes;
use wasmsock_wire::{Close, Frame};

/// A frame as axum's message.
pub fn to_axum(frame: Frame) -> Message {
    match frame {
        // axum wraps tungstenite's text type without a way in from it: through the bytes (checked, never copied).
        Frame::Text(text) => match Utf8Bytes::try_from(Bytes::from(text)) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(Bytes::new()),
        },
        Frame::Binary(data) => Message::Binary(data),
        Frame::Close(close) => Message::Close(close.map(|c| CloseFrame { code: c.code, reason: c.reason.into() })),
        Frame::Ping(data) => Message::Ping(data),
        Frame::Pong(data) => Message::Pong(data),
    }
}

/// An axum message as a frame (every axum message is one; the option fits `wasmsock_wire::frame::frames`).
pub fn from_axum(message: Message) -> Option<Frame> {
    Some(match message {
        Message::Text(text) => match wasmsock_wire::Utf8Bytes::try_from(Message::Text(text).into_data()) {
            Ok(text) => Frame::Text(text),
            Err(_) => return None,
        },
        Message::Binary(data) => Frame::Binary(data),
        Message::Close(close) => {
            Frame::Close(close.map(|c| Close { code: c.code, reason: c.reason.as_str().to_owned() }))
        }
        Message::Ping(data) => Frame::Ping(data),
        Message::Pong(data) => Frame::Pong(data),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_axum_messages() {
        let samples = [
            Frame::Text("héllo".into()),
            Frame::Binary(vec![0, 1, 255].into()),
            Frame::Close(None),
            Frame::Close(Some(Close::new(4001, "bye"))),
            Frame::Ping(vec![7].into()),
            Frame::Pong(vec![].into()),
        ];
        for frame in samples {
            assert_eq!(from_axum(to_axum(frame.clone())), Some(frame));
        }
        assert_eq!(from_axum(Message::Ping(vec![1].into())), Some(Frame::Ping(vec![1].into())));
    }
}
