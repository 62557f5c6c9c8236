//! Timers on the current connection and alarms of the project, over the WIT `timers` interface. A handler that arms
//! either asks [`event`] first: `websockets::get_method()` predates them and calls their events `Onmessage`.
//!
//! ```ignore
//! use wasmsock_sdk::timers::{self, EventKind};
//!
//! fn on_event() {
//!     match timers::event() {
//!         EventKind::Onopen => { let _ = timers::set_timer(1000, b"1"); }
//!         EventKind::Ontimer => { /* timers::get_timer(): the id and payload it was armed with */ }
//!         EventKind::Onalarm => { /* timers::get_alarm(): no current connection; publish to a room */ }
//!         _ => {}
//!     }
//! }
//! ```

use crate::bindings::wasmsock::websockets::timers as wit;

pub use wit::{Alarm, EventKind, FiredAlarm, FiredTimer, Lifecycle};

/// An error of the store the alarms are kept in (`invalid`, `limit`, `conflict`, `unavailable`).
pub use crate::bindings::wasmsock::websockets::kv::Error as AlarmError;
/// An error arming a timer (`closed`, `invalid`, `limit`).
pub use crate::bindings::wasmsock::websockets::websockets::Error as TimerError;

/// What the current event is, the kinds `get_method()` cannot name (`Ontimer`, `Onalarm`) included.
pub fn event() -> EventKind {
    wit::get_event()
}

/// How long the instance running the current event lives: whether what it keeps in memory is there at a later
/// event (`PerConnection`: this connection's; `Shared`: every connection's; `PerEvent`: never).
pub fn lifecycle() -> Lifecycle {
    wit::get_lifecycle()
}

/// Whether the current event is a timer of the current connection firing.
pub fn is_on_timer() -> bool {
    matches!(event(), EventKind::Ontimer)
}

/// Whether the current event is an alarm of the project firing (there is no current connection).
pub fn is_on_alarm() -> bool {
    matches!(event(), EventKind::Onalarm)
}

/// Arms a timer on the current connection: an `Ontimer` event with `payload` (at most 4 KiB) after `delay_ms` (1 ms
/// to a day), in order with the connection's other events and never after its close. Fires once; arm the next one
/// from its event for a periodic tick. Returns its id.
pub fn set_timer(delay_ms: u32, payload: &[u8]) -> Result<u64, TimerError> {
    wit::set_timer(delay_ms, payload)
}

/// Cancels timer `id` of the current connection; whether it was still armed.
pub fn cancel_timer(id: u64) -> bool {
    wit::cancel_timer(id)
}

/// The timer the current `Ontimer` event is for.
pub fn get_timer() -> Option<FiredTimer> {
    wit::get_timer()
}

/// Sets the project's alarm `name`: an `Onalarm` event of this handler with `payload` after `delay_ms` (1 ms to 366
/// days), kept in the project's store across restarts and deploys, fired once on one host. Setting a name again
/// replaces its alarm.
pub fn set_alarm(name: &str, delay_ms: u64, payload: &[u8]) -> Result<(), AlarmError> {
    wit::set_alarm(name, delay_ms, payload)
}

/// Cancels the project's alarm `name`; whether it was set.
pub fn cancel_alarm(name: &str) -> Result<bool, AlarmError> {
    wit::cancel_alarm(name)
}

/// The project's alarms, soonest first.
pub fn list_alarms() -> Result<Vec<Alarm>, AlarmError> {
    wit::list_alarms()
}

/// The alarm the current `Onalarm` event is for.
pub fn get_alarm() -> Option<FiredAlarm> {
    wit::get_alarm()
}
