//! Instance lifecycles: which handler instance runs an event (`per-event`, `per-connection` or `shared`) and where
//! the kept ones live between events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use wasmsock_wire::descriptor::Lifecycle;

use super::engine::{CallError, Handler, Resident, Runtime};
use super::services::{Event, HostServices};

/// One kept instance and the lock that runs its events one at a time.
type Kept = Arc<tokio::sync::Mutex<Option<Resident>>>;

/// The instances kept between events: one per connection of a `per-connection` endpoint (dropped after its onclose)
/// and one per handler for `shared` endpoints (dropped when it fails, and replaced at the next event when a deploy
/// brought a new version of the handler).
#[derive(Debug, Default)]
pub struct Instances {
    per_connection: Mutex<HashMap<String, Kept>>,
    shared: Mutex<HashMap<String, Kept>>,
}

impl Instances {
    /// Runs `event` through the instance `lifecycle` asks for.
    pub async fn call(
        &self,
        runtime: &Runtime,
        lifecycle: Lifecycle,
        handler: &Handler,
        event: Event,
        services: Arc<dyn HostServices>,
    ) -> Result<(), CallError> {
        let kept = match lifecycle {
            Lifecycle::PerEvent => return runtime.call(handler, event, services).await,
            Lifecycle::PerConnection => kept(&self.per_connection, event.conn.id()),
            Lifecycle::Shared => kept(&self.shared, handler.name()),
        };
        let mut kept = kept.lock().await;
        runtime.call_resident(&mut kept, handler, event, services).await
    }

    /// Drops the per-connection instance of connection `id` (its onclose has run).
    pub fn forget_connection(&self, id: &str) {
        if let Ok(mut map) = self.per_connection.lock() {
            map.remove(id);
        }
    }

    /// How many per-connection and shared instances are alive.
    pub fn resident(&self) -> (usize, usize) {
        (count_alive(&self.per_connection), count_alive(&self.shared))
    }
}

/// How many cells of `map` hold an instance (a cell busy with an event counts as holding one).
fn count_alive(map: &Mutex<HashMap<String, Kept>>) -> usize {
    let Ok(map) = map.lock() else { return 0 };
    map.values().filter(|kept| kept.try_lock().map_or(true, |kept| kept.is_some())).count()
}

/// The kept-instance cell under `key`, created empty the first time.
fn kept(map: &Mutex<HashMap<String, Kept>>, key: &str) -> Kept {
    let Ok(mut map) = map.lock() else {
        // A poisoned map (a panic while holding it) still runs the event, in a cell of its own.
        return Kept::default();
    };
    if let Some(kept) = map.get(key) {
        return kept.clone();
    }
    map.entry(key.to_owned()).or_default().clone()
}
