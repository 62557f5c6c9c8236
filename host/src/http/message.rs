//! Pure conversions between the host's frames and axum's WebSocket messages, for the inbound side (the outbound side
//! speaks tungstenite, whose conversions live with the frames in `wasmsock-wire`).

use axum::extract::ws::{CloseFrame, Message};
use wasmsock_wire::{Close, Frame};

/// A frame as axum's message.
pub fn to_axum(frame: Frame) -> Message {
    match frame {
        Frame::Text(text) => Message::Text(text.into()),
        Frame::Binary(data) => Message::Binary(data.into()),
        Frame::Close(close) => Message::Close(close.map(|c| CloseFrame { code: c.code, reason: c.reason.into() })),
        Frame::Ping(data) => Message::Ping(data.into()),
        Frame::Pong(data) => Message::Pong(data.into()),
    }
}

/// An axum message as a frame (every axum message is one; the option fits `wasmsock_wire::frame::frames`).
pub fn from_axum(message: Message) -> Option<Frame> {
    Some(match message {
        Message::Text(text) => Frame::Text(text.as_str().to_owned()),
        Message::Binary(data) => Frame::Binary(data.to_vec()),
        Message::Close(close) => {
            Frame::Close(close.map(|c| Close { code: c.code, reason: c.reason.as_str().to_owned() }))
        }
        Message::Ping(data) => Frame::Ping(data.to_vec()),
        Message::Pong(data) => Frame::Pong(data.to_vec()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_through_axum_messages() {
        let samples = [
            Frame::Text("héllo".into()),
            Frame::Binary(vec![0, 1, 255]),
            Frame::Close(None),
            Frame::Close(Some(Close::new(4001, "bye"))),
            Frame::Ping(vec![7]),
            Frame::Pong(vec![]),
        ];
        for frame in samples {
            assert_eq!(from_axum(to_axum(frame.clone())), Some(frame));
        }
        assert_eq!(from_axum(Message::Ping(vec![1].into())), Some(Frame::Ping(vec![1])));
    }
}
