//! Test handler built twice, as `tagged-v1` and `tagged-v2` (the crate name is the tag): it answers every text
//! message with `<tag>:<message>`, so a test can tell which version of a handler served each message.

use wasmsock_sdk::websockets;

/// `v1` or `v2`: the end of the crate name.
const TAG: &str = match env!("CARGO_PKG_NAME").as_bytes() {
    [.., b'v', b'1'] => "v1",
    [.., b'v', b'2'] => "v2",
    _ => "v?",
};

fn on_event() {
    if let Some(text) = websockets::get_message() {
        let _ = websockets::send(&format!("{TAG}:{text}"));
    }
}

wasmsock_sdk::handler!(on_event);
