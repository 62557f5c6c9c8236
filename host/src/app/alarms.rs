//! The alarm loop: takes the projects' due alarms off the store and runs each as an `onalarm` event of the handler
//! that set it, in a fresh instance, through the fair share like any event. An alarm event has no connection: the
//! stand-in current connection answers every call on it with `invalid`.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use wasmsock_wire::descriptor::{Lifecycle, project_of};
use wasmsock_wire::kv::Alarm;
use wasmsock_wire::kv::now_ms;
use wasmsock_wire::limits::{DEFAULT_ALARM_POLL, DEFAULT_ALARMS_PER_PASS};
use wasmsock_wire::{ClientInfo, ConnError, ConnLimits, ConnState, Direction, EventKind, Method};

use super::App;
use crate::runtime::{Connection, Event, HostServices};

/// What an alarm event's current connection answers: there is none.
const NO_CONNECTION: &str = "an onalarm event has no current connection";

/// The current connection of an alarm event: none. Its calls answer `invalid`, its state is `closed`.
#[derive(Debug)]
struct NoConnection {
    handler: String,
    limits: ConnLimits,
}

impl Connection for NoConnection {
    fn id(&self) -> &str {
        ""
    }

    fn info(&self) -> ClientInfo {
        ClientInfo {
            id: String::new(),
            uri: String::new(),
            handler: self.handler.clone(),
            endpoint: None,
            direction: Direction::Inbound,
            state: ConnState::Closed,
            protocol: None,
        }
    }

    fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    fn send(&self, _frame: wasmsock_wire::Frame) -> Result<(), ConnError> {
        Err(ConnError::Invalid(NO_CONNECTION.to_owned()))
    }

    fn close(&self, _code: Option<u16>, _reason: Option<String>) -> Result<(), ConnError> {
        Err(ConnError::Invalid(NO_CONNECTION.to_owned()))
    }

    fn attachment(&self) -> Option<Vec<u8>> {
        None
    }

    fn set_attachment(&self, _data: Option<Vec<u8>>) -> Result<(), ConnError> {
        Err(ConnError::Invalid(NO_CONNECTION.to_owned()))
    }
}

impl App {
    /// Starts the alarm loop: due alarms fire at once; then it sleeps until the soonest one, an alarm being set, or
    /// [`DEFAULT_ALARM_POLL`] (alarms set on another host of a cluster), whichever comes first. Ends with the app or
    /// its drain.
    pub fn watch_alarms(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let app = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut failing = false;
            loop {
                let Some(current) = app.upgrade() else { return };
                if current.is_shutting_down() {
                    return;
                }
                let wait = match current.fire_due_alarms().await {
                    Ok(Some(wait)) => wait,
                    Ok(None) => continue,
                    Err(err) => {
                        if !failing {
                            tracing::warn!("alarms cannot be read from the store: {err}");
                        }
                        failing = true;
                        DEFAULT_ALARM_POLL
                    }
                };
                if failing && wait != DEFAULT_ALARM_POLL {
                    failing = false;
                }
                let set = async { current.store.alarm_set().await };
                tokio::select! {
                    () = tokio::time::sleep(wait) => {}
                    () = set => {}
                }
                drop(current);
            }
        })
    }

    /// Fires the alarms due now (each in a task of its own); how long until the next pass, or none when a full pass
    /// was taken and the next should come at once.
    async fn fire_due_alarms(self: &Arc<Self>) -> Result<Option<Duration>, wasmsock_wire::kv::KvError> {
        let due = self.store.take_due_alarms(now_ms(), DEFAULT_ALARMS_PER_PASS).await?;
        let full = due.len() == DEFAULT_ALARMS_PER_PASS;
        for (project, alarm) in due {
            let app = Arc::downgrade(self);
            tokio::spawn(async move { fire(app, project, alarm).await });
        }
        if full {
            return Ok(None);
        }
        let next = self.store.next_alarm().await?;
        let poll = DEFAULT_ALARM_POLL;
        Ok(Some(match next {
            Some(due) => Duration::from_millis(u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0)).min(poll),
            None => poll,
        }))
    }
}

/// Runs one alarm's event in a fresh instance of its handler.
async fn fire(app: Weak<App>, project: String, alarm: Alarm) {
    let Some(app) = app.upgrade() else { return };
    let Alarm { name, handler, payload, .. } = alarm;
    if project_of(&handler) != project {
        tracing::error!(project, handler, alarm = name, "an alarm of another project's handler was dropped");
        return;
    }
    let loaded = match app.registry.handler(&app.runtime, &handler).await {
        Ok(loaded) => loaded,
        Err(err) => {
            tracing::warn!(project, handler, alarm = name, "the alarm was dropped: its handler is gone: {err:#}");
            return;
        }
    };
    let conn = Arc::new(NoConnection { handler: handler.clone(), limits: app.limits.for_conn(None) });
    let started = Instant::now();
    let event = Event { conn, kind: EventKind::Alarm { name: name.clone(), payload: payload.into() }, started };
    let services: Arc<dyn HostServices> = app.clone();
    let result = app.instances.call(&app.runtime, Lifecycle::PerEvent, &loaded.handler, event, services).await;
    app.metrics.event_handled(&handler, Method::OnAlarm, started.elapsed(), result.as_ref().err());
    if let Err(err) = result {
        tracing::warn!(project, handler, alarm = name, method = "onalarm", "{err}");
    }
}
