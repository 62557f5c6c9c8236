//! The ticker example: `ws://HOST:PORT/websockets/service/ticker?every=MS` gets `tick 1`, `tick 2`, … every `MS`
//! milliseconds (default 1000, at least 10) until the session closes. Each tick is a timer armed on the session that
//! arms the next one when it fires; the tick number rides in the timer's payload, so the handler keeps no state of
//! its own (it runs per event). `stop` cancels the armed timer (its id is kept in the session's attachment); any
//! other text is answered `echo TEXT`, in order with the ticks.

use wasmsock_sdk::timers::{self, EventKind};
use wasmsock_sdk::websockets;

/// The interval when the URI does not give one, and the shortest allowed.
const DEFAULT_EVERY_MS: u32 = 1000;
const MIN_EVERY_MS: u32 = 10;

fn on_event() {
    match timers::event() {
        EventKind::Onopen => arm(every(), 1),
        EventKind::Ontimer => {
            let Some(fired) = timers::get_timer() else { return };
            let n: u64 = std::str::from_utf8(&fired.payload).ok().and_then(|n| n.parse().ok()).unwrap_or(1);
            if websockets::send(&format!("tick {n}")).is_ok() {
                arm(every(), n + 1);
            }
        }
        EventKind::Onmessage => match websockets::get_message().as_deref() {
            Some("stop") => {
                let armed = websockets::get_attachment().and_then(|id| Some(u64::from_le_bytes(id.try_into().ok()?)));
                let stopped = armed.is_some_and(timers::cancel_timer);
                let _ = websockets::send(if stopped { "stopped" } else { "not ticking" });
            }
            Some(text) => {
                let _ = websockets::send(&format!("echo {text}"));
            }
            None => {}
        },
        EventKind::Onerror | EventKind::Onclose | EventKind::Onalarm => {}
    }
}

/// Arms the timer of tick `n`, keeping its id in the session's attachment (for `stop`).
fn arm(every_ms: u32, n: u64) {
    match timers::set_timer(every_ms, n.to_string().as_bytes()) {
        Ok(id) => {
            let _ = websockets::set_attachment(&id.to_le_bytes());
        }
        Err(err) => {
            let _ = websockets::send(&format!("error {err}"));
        }
    }
}

/// The `every` query parameter of the session's URI, within bounds.
fn every() -> u32 {
    let uri = websockets::current_client().info().uri;
    let query = uri.split_once('?').map_or("", |(_, query)| query);
    let every = query.split('&').find_map(|pair| pair.strip_prefix("every=")).and_then(|ms| ms.parse().ok());
    every.unwrap_or(DEFAULT_EVERY_MS).max(MIN_EVERY_MS)
}

wasmsock_sdk::handler!(on_event);
