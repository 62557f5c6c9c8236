//! Test handler for the soak run: chat (every message to every open session of its endpoint), except that a message
//! starting with `trap` traps before anything is sent, so a run knows exactly which messages are lost to traps.

use wasmsock_sdk::websockets::{self, ConnectionState, Direction};

fn on_event() {
    if !websockets::is_on_message() {
        return;
    }
    let Some(text) = websockets::get_message() else {
        return;
    };
    assert!(!text.starts_with("trap"), "asked to trap: {text}");
    let Some(endpoint) = websockets::current_client().info().endpoint else {
        return;
    };
    for info in websockets::get_clients() {
        let member = info.direction == Direction::Inbound
            && info.state == ConnectionState::Open
            && info.endpoint.as_deref() == Some(endpoint.as_str());
        if member && let Some(client) = websockets::get_client(&info.id) {
            let _ = client.send(&text);
        }
    }
}

wasmsock_sdk::handler!(on_event);
