//! Test handler that misbehaves on request: `trap` panics, `loop` never returns, `alloc` grows memory without bound;
//! anything else is echoed, and an onerror is sent back as `error: <text>` so a test can see it.

use std::hint::black_box;

use wasmsock_sdk::websockets;

fn on_event() {
    if websockets::is_on_error() {
        let _ = websockets::send(&format!("error: {}", websockets::get_error().unwrap_or_default()));
        return;
    }
    let Some(text) = websockets::get_message() else {
        return;
    };
    match text.as_str() {
        "trap" => panic!("asked to trap"),
        "loop" => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        "alloc" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(black_box(vec![1u8; 1 << 20]));
            }
        }
        _ => {
            let _ = websockets::send(&text);
        }
    }
}

wasmsock_sdk::handler!(on_event);
