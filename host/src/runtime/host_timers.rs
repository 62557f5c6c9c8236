//! The `timers` imports: the kind of the current event (the kinds `get-method` cannot name included), and timers
//! armed on the current connection, which come back as `ontimer` events on it.

use std::time::Duration;

use wasmsock_wire::descriptor::project_of;
use wasmsock_wire::limits::{DEFAULT_MAX_TIMER_DELAY_MS, DEFAULT_MAX_TIMER_PAYLOAD};
use wasmsock_wire::{ConnError, EventKind};

use super::bindings::wasmsock::websockets::timers as wit;
use super::bindings::wasmsock::websockets::websockets::Error;
use super::state::State;

impl wit::Host for State {
    fn get_event(&mut self) -> wasmtime::Result<wit::EventKind> {
        Ok(match &self.event.kind {
            EventKind::Open => wit::EventKind::Onopen,
            EventKind::Message(_) => wit::EventKind::Onmessage,
            EventKind::Error(_) => wit::EventKind::Onerror,
            EventKind::Close => wit::EventKind::Onclose,
            EventKind::Timer { .. } => wit::EventKind::Ontimer,
        })
    }

    fn set_timer(&mut self, delay_ms: u32, payload: Vec<u8>) -> wasmtime::Result<Result<u64, Error>> {
        if delay_ms == 0 || delay_ms > DEFAULT_MAX_TIMER_DELAY_MS {
            return Ok(Err(Error::Invalid(format!(
                "a timer's delay is 1 to {DEFAULT_MAX_TIMER_DELAY_MS} ms, not {delay_ms}"
            ))));
        }
        if payload.len() > DEFAULT_MAX_TIMER_PAYLOAD {
            return Ok(Err(Error::Invalid(format!(
                "a timer's payload has at most {DEFAULT_MAX_TIMER_PAYLOAD} bytes, this one {}",
                payload.len()
            ))));
        }
        let delay = Duration::from_millis(u64::from(delay_ms));
        let armed = self.services.set_timer(project_of(&self.handler), self.event.conn.as_ref(), delay, payload);
        Ok(armed.map_err(|err: ConnError| err.into()))
    }

    fn cancel_timer(&mut self, id: u64) -> wasmtime::Result<bool> {
        Ok(self.services.cancel_timer(project_of(&self.handler), self.event.conn.as_ref(), id))
    }

    fn get_timer(&mut self) -> wasmtime::Result<Option<wit::FiredTimer>> {
        Ok(match &self.event.kind {
            EventKind::Timer { id, payload } => Some(wit::FiredTimer { id: *id, payload: payload.to_vec() }),
            _ => None,
        })
    }
}
