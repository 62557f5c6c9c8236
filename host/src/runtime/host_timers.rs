//! The `timers` imports: the kind of the current event (the kinds `get-method` cannot name included), timers armed on
//! the current connection, which come back as `ontimer` events on it, and the project's alarms, kept in its store.

use std::time::Duration;

use wasmsock_wire::descriptor::{Lifecycle, project_of};
use wasmsock_wire::kv::now_ms;
use wasmsock_wire::kv::{Alarm, KvError};
use wasmsock_wire::limits::{
    DEFAULT_MAX_ALARM_DELAY_MS, DEFAULT_MAX_ALARM_NAME, DEFAULT_MAX_TIMER_DELAY_MS, DEFAULT_MAX_TIMER_PAYLOAD,
};
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
            EventKind::Alarm { .. } => wit::EventKind::Onalarm,
        })
    }

    fn get_lifecycle(&mut self) -> wasmtime::Result<wit::Lifecycle> {
        Ok(match self.lifecycle {
            Lifecycle::PerEvent => wit::Lifecycle::PerEvent,
            Lifecycle::PerConnection => wit::Lifecycle::PerConnection,
            Lifecycle::Shared => wit::Lifecycle::Shared,
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

    async fn set_alarm(
        &mut self,
        name: String,
        delay_ms: u64,
        payload: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::StoreError>> {
        if let Err(err) = check_alarm(&name, delay_ms, &payload) {
            return Ok(Err(err.into()));
        }
        let due_ms = now_ms().saturating_add(i64::try_from(delay_ms).unwrap_or(i64::MAX));
        let alarm = Alarm { name, handler: self.handler.to_string(), due_ms, payload };
        let set = self.services.kv().set_alarm(project_of(&self.handler), alarm);
        Ok(self.off_the_clock(set).await.map_err(Into::into))
    }

    async fn cancel_alarm(&mut self, name: String) -> wasmtime::Result<Result<bool, wit::StoreError>> {
        let cancelled = self.services.kv().cancel_alarm(project_of(&self.handler), &name);
        Ok(self.off_the_clock(cancelled).await.map_err(Into::into))
    }

    async fn list_alarms(&mut self) -> wasmtime::Result<Result<Vec<wit::Alarm>, wit::StoreError>> {
        let listed = self.services.kv().list_alarms(project_of(&self.handler));
        let now = now_ms();
        Ok(self
            .off_the_clock(listed)
            .await
            .map(|alarms| {
                alarms
                    .into_iter()
                    .map(|alarm| wit::Alarm {
                        name: alarm.name,
                        handler: alarm.handler,
                        due_in_ms: u64::try_from(alarm.due_ms.saturating_sub(now)).unwrap_or(0),
                        payload: alarm.payload,
                    })
                    .collect()
            })
            .map_err(Into::into))
    }

    fn get_alarm(&mut self) -> wasmtime::Result<Option<wit::FiredAlarm>> {
        Ok(match &self.event.kind {
            EventKind::Alarm { name, payload } => {
                Some(wit::FiredAlarm { name: name.clone(), payload: payload.to_vec() })
            }
            _ => None,
        })
    }
}

/// Checks an alarm's name (1 to [`DEFAULT_MAX_ALARM_NAME`] bytes, no control character), delay and payload.
fn check_alarm(name: &str, delay_ms: u64, payload: &[u8]) -> Result<(), KvError> {
    if name.is_empty() || name.len() > DEFAULT_MAX_ALARM_NAME || name.chars().any(char::is_control) {
        return Err(KvError::Invalid(format!(
            "an alarm's name has 1 to {DEFAULT_MAX_ALARM_NAME} bytes and no control character"
        )));
    }
    if delay_ms == 0 || delay_ms > DEFAULT_MAX_ALARM_DELAY_MS {
        return Err(KvError::Invalid(format!(
            "an alarm's delay is 1 to {DEFAULT_MAX_ALARM_DELAY_MS} ms, not {delay_ms}"
        )));
    }
    if payload.len() > DEFAULT_MAX_TIMER_PAYLOAD {
        return Err(KvError::Invalid(format!(
            "an alarm's payload has at most {DEFAULT_MAX_TIMER_PAYLOAD} bytes, this one {}",
            payload.len()
        )));
    }
    Ok(())
}
