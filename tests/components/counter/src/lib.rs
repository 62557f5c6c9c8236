//! Test handler that counts its messages in a global, to tell instance lifecycles apart: every message but `trap`
//! adds one and is answered with the count so far in this instance; `trap` panics; an onerror is answered `error`.

use std::sync::atomic::{AtomicU64, Ordering};

use wasmsock_sdk::websockets;

/// Messages this instance has seen. A fresh instance starts at zero.
static COUNT: AtomicU64 = AtomicU64::new(0);

fn on_event() {
    if websockets::is_on_error() {
        let _ = websockets::send("error");
        return;
    }
    let Some(text) = websockets::get_message() else {
        return;
    };
    if text == "trap" {
        panic!("asked to trap");
    }
    let count = COUNT.fetch_add(1, Ordering::Relaxed) + 1;
    let _ = websockets::send(&count.to_string());
}

wasmsock_sdk::handler!(on_event);
