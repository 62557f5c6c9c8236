//! The echo handler: every text and binary message goes back to the connection it came from.

// A guest logs through stderr: the host tags each line with the handler and connection.
#![allow(clippy::print_stderr)]

use wasmsock_sdk::websockets;

fn on_event() {
    if !websockets::is_on_message() {
        return;
    }
    // The binary payload is asked for only when the message is not text: one host call fewer per text message.
    let sent = match websockets::get_message() {
        Some(text) => websockets::send(&text),
        None => websockets::get_binary_message().map_or(Ok(()), |data| websockets::send_binary(&data)),
    };
    if let Err(err) = sent {
        eprintln!("echo failed: {err}");
    }
}

wasmsock_sdk::handler!(on_event);
