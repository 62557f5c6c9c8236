//! The echo handler: every text and binary message goes back to the connection it came from.

// A guest logs through stderr: the host tags each line with the handler and connection.
#![allow(clippy::print_stderr)]

use wasmsock_sdk::websockets::{self, EventData};

fn on_event() {
    // The event and its message in one host call, then the send.
    let sent = match websockets::current_event().data {
        EventData::Text(text) => websockets::send(&text),
        EventData::Binary(data) => websockets::send_binary(&data),
        _ => return,
    };
    if let Err(err) = sent {
        eprintln!("echo failed: {err}");
    }
}

wasmsock_sdk::handler!(on_event);
