//! A test handler for timers, driven by text commands: `arm MS PAYLOAD` answers `armed ID` (or `error KIND: …`),
//! `cancel ID` answers `true` or `false`, `arm-many N MS` arms N timers and answers how many were armed and the first
//! refusal; every `ontimer` event is reported as `fired ID PAYLOAD method=M message=none|some` (what `get-method` and
//! `get-message` say about it).

use wasmsock_sdk::bindings::wasmsock::websockets::timers::{self, EventKind};
use wasmsock_sdk::websockets;

fn on_event() {
    match timers::get_event() {
        EventKind::Ontimer => {
            let Some(fired) = timers::get_timer() else { return };
            let method = websockets::get_method();
            let message = if websockets::get_message().is_some() { "some" } else { "none" };
            let payload = String::from_utf8_lossy(&fired.payload).into_owned();
            let _ = websockets::send(&format!("fired {} {payload} method={method:?} message={message}", fired.id));
        }
        EventKind::Onmessage => {
            let Some(text) = websockets::get_message() else { return };
            let _ = websockets::send(&run(&text));
        }
        EventKind::Onopen | EventKind::Onerror | EventKind::Onclose => {}
    }
}

fn run(command: &str) -> String {
    let words: Vec<&str> = command.splitn(3, ' ').collect();
    match words.as_slice() {
        ["arm", ms, payload] => match timers::set_timer(ms.parse().unwrap_or(0), payload.as_bytes()) {
            Ok(id) => format!("armed {id}"),
            Err(err) => format!("error {err:?}"),
        },
        ["arm-big", ms] => match timers::set_timer(ms.parse().unwrap_or(0), &[0; 4097]) {
            Ok(id) => format!("armed {id}"),
            Err(err) => format!("error {err:?}"),
        },
        ["arm-many", n, ms] => {
            let n: u32 = n.parse().unwrap_or(0);
            let mut armed = 0;
            for _ in 0..n {
                match timers::set_timer(ms.parse().unwrap_or(0), b"many") {
                    Ok(_) => armed += 1,
                    Err(err) => return format!("armed {armed} then error {err:?}"),
                }
            }
            format!("armed {armed}")
        }
        ["cancel", id] => timers::cancel_timer(id.parse().unwrap_or(0)).to_string(),
        _ => format!("echo {command}"),
    }
}

wasmsock_sdk::handler!(on_event);
