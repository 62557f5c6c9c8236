//! Fuzz target: any bytes as what a client sends after the handshake, read by the host's frame path (tungstenite in
//! the server role with the host's limits, then `wasmsock_wire::frame::frames`). Every item must be a frame or a
//! `PeerError`, never a panic; a frame must round-trip through the library's message type; an error's close code must
//! be one a peer may receive and its reason must fit a close frame.

#![no_main]

use futures_util::StreamExt;
use libfuzzer_sys::fuzz_target;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use wasmsock_wire::frame::{Close, Frame, frames, from_tungstenite};

fn identity(err: &WsError) -> Option<&WsError> {
    Some(err)
}

fuzz_target!(|data: &[u8]| {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    runtime.block_on(async {
        // The host's side reads from `server`; the fuzz input is written into `client` and its end closed. Replies
        // (pongs, the close) go back into the pipe's buffer, which is large enough never to block.
        let (mut client, server) = tokio::io::duplex(data.len() * 2 + (1 << 16));
        client.write_all(data).await.expect("the pipe takes the input");
        client.shutdown().await.expect("the pipe closes");
        let config = WebSocketConfig::default().max_message_size(Some(1 << 16)).max_frame_size(Some(1 << 15));
        let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(server, Role::Server, Some(config)).await;
        let items: Vec<_> = frames(socket, from_tungstenite, identity).collect().await;
        for item in items {
            match item {
                Ok(frame) => assert_eq!(Frame::try_from(Message::from(frame.clone())), Ok(frame)),
                Err(err) => {
                    if let Some(close) = err.close {
                        let checked = Close::validated(Some(close.code), Some(close.reason.clone()));
                        assert_eq!(checked, Ok(close), "the host would send an invalid close");
                    }
                    assert!(!err.message.is_empty());
                }
            }
        }
        drop(client);
    });
});
