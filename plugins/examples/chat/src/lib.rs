//! The chat handler: every message goes to every open session of the endpoint it arrived on, sender included.

// A guest logs through stderr: the host tags each line with the handler and connection.
#![allow(clippy::print_stderr)]

use wasmsock_sdk::websockets::{self, ConnectionState, Direction};

fn on_event() {
    if !websockets::is_on_message() {
        return;
    }
    let Some(endpoint) = websockets::current_client().info().endpoint else {
        return;
    };
    let text = websockets::get_message();
    let data = websockets::get_binary_message();
    for info in websockets::get_clients() {
        let member = info.direction == Direction::Inbound
            && info.state == ConnectionState::Open
            && info.endpoint.as_deref() == Some(endpoint.as_str());
        if !member {
            continue;
        }
        let Some(client) = websockets::get_client(&info.id) else {
            continue;
        };
        let sent = match (&text, &data) {
            (Some(text), _) => client.send(text),
            (None, Some(data)) => client.send_binary(data),
            (None, None) => Ok(()),
        };
        // A member that left or fell behind misses this message; the others still get it.
        if let Err(err) = sent {
            eprintln!("chat: not delivered to {}: {err}", info.id);
        }
    }
}

wasmsock_sdk::handler!(on_event);
