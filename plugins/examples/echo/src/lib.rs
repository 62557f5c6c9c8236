//! The echo handler: every text and binary message goes back to the connection it came from.

// A guest logs through stderr: the host tags each line with the handler and connection.
#![allow(clippy::print_stderr)]

use wasmsock_sdk::websockets;

fn on_event() {
    if !websockets::is_on_message() {
        return;
    }
    let sent = match (websockets::get_message(), websockets::get_binary_message()) {
        (Some(text), _) => websockets::send(&text),
        (None, Some(data)) => websockets::send_binary(&data),
        (None, None) => Ok(()),
    };
    if let Err(err) = sent {
        eprintln!("echo failed: {err}");
    }
}

wasmsock_sdk::handler!(on_event);
