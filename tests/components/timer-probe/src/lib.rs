//! A test handler for timers, driven by text commands: `arm MS PAYLOAD` answers `armed ID` (or `error KIND: …`),
//! `cancel ID` answers `true` or `false`, `arm-many N MS` arms N timers and answers how many were armed and the first
//! refusal; every `ontimer` event is reported as `fired ID PAYLOAD method=M message=none|some` (what `get-method` and
//! `get-message` say about it). Alarms: `listen` joins the channel `alarms`; `alarm NAME MS PAYLOAD` sets one
//! (`ok` or `error …`), `cancel-alarm NAME` answers `true` or `false`, `alarms` lists them as `NAME@HANDLER`
//! separated by `,`; an `onalarm` event publishes `alarm NAME PAYLOAD send=ERROR` to `alarms` (what a `send` on the
//! missing current connection answered).

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
        EventKind::Onalarm => {
            let Some(fired) = timers::get_alarm() else { return };
            let send = match websockets::send("to nobody") {
                Ok(()) => "ok".to_owned(),
                Err(err) => format!("{err:?}"),
            };
            let payload = String::from_utf8_lossy(&fired.payload).into_owned();
            let _ = websockets::publish("alarms", &format!("alarm {} {payload} send={send}", fired.name));
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
        ["listen"] => match websockets::join("alarms") {
            Ok(()) => "listening".to_owned(),
            Err(err) => format!("error {err:?}"),
        },
        ["alarm", name, rest] => {
            let (ms, payload) = rest.split_once(' ').unwrap_or((rest, ""));
            match timers::set_alarm(name, ms.parse().unwrap_or(0), payload.as_bytes()) {
                Ok(()) => "ok".to_owned(),
                Err(err) => format!("error {err:?}"),
            }
        }
        ["cancel-alarm", name] => match timers::cancel_alarm(name) {
            Ok(was) => was.to_string(),
            Err(err) => format!("error {err:?}"),
        },
        ["alarms"] => match timers::list_alarms() {
            Ok(alarms) => alarms.iter().map(|a| format!("{}@{}", a.name, a.handler)).collect::<Vec<_>>().join(","),
            Err(err) => format!("error {err:?}"),
        },
        _ => format!("echo {command}"),
    }
}

wasmsock_sdk::handler!(on_event);
