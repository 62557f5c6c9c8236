//! The echo handler: every text and binary message goes back to the connection it came from.

// A guest logs through the SDK's `eprintln!`: the host tags each line with the handler and connection.
use wasmsock_sdk::{eprintln, websockets};

fn on_event() {
    // `get-message` has text only for a text message, so asking it first saves asking for the method: two host calls
    // per text message (this and `send`) rather than three.
    let sent = match websockets::get_message() {
        Some(text) => websockets::send(&text),
        // The binary payload is asked for only when the event is a message that is not text.
        None if websockets::is_on_message() => {
            websockets::get_binary_message().map_or(Ok(()), |data| websockets::send_binary(&data))
        }
        None => Ok(()),
    };
    if let Err(err) = sent {
        eprintln!("echo failed: {err}");
    }
}

wasmsock_sdk::handler!(on_event);
