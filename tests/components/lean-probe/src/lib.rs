//! Test handler built for `wasm32-unknown-unknown`, the SDK's path without WASI: `log TEXT` writes TEXT to the host's
//! log through the SDK's `eprintln!` and answers `logged`; `panic` panics; `alloc N` fills N bytes, keeps them while
//! it fills N more, and answers `N SUM` (the sum of both, so a block handed out twice would show); anything else is
//! echoed, and an onerror is sent back as `error: <text>`.

use wasmsock_sdk::{eprintln, websockets};

/// The bytes of a block of `len` bytes filled by [`fill`]: byte `i` is `(i + seed) % 251`.
fn fill(len: usize, seed: usize) -> Vec<u8> {
    (0..len).map(|i| ((i + seed) % 251) as u8).collect()
}

fn on_event() {
    if websockets::is_on_error() {
        let _ = websockets::send(&format!("error: {}", websockets::get_error().unwrap_or_default()));
        return;
    }
    let Some(text) = websockets::get_message() else {
        return;
    };
    if let Some(line) = text.strip_prefix("log ") {
        eprintln!("lean probe says {line}");
        let _ = websockets::send("logged");
    } else if text == "panic" {
        panic!("lean probe asked to panic");
    } else if let Some(len) = text.strip_prefix("alloc ").and_then(|n| n.parse::<usize>().ok()) {
        let first = fill(len, 0);
        let second = fill(len, 7);
        let sum: u64 = first.iter().chain(&second).map(|b| u64::from(*b)).sum();
        let _ = websockets::send(&format!("{len} {sum}"));
    } else {
        let _ = websockets::send(&text);
    }
}

wasmsock_sdk::handler!(on_event);
