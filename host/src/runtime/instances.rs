//! Instance lifecycles: which handler instance runs an event (`per-event`, `per-connection` or `shared`) and where
//! the kept ones live between events.

use crate::FastMap;
use std::sync::{Arc, Mutex, PoisonError};

use wasmsock_wire::descriptor::Lifecycle;

use super::engine::{CallError, Handler, Resident, Runtime};
use super::services::{Event, HostServices};

/// One kept instance and the cell that runs its events one at a time.
type Kept = Arc<Cell>;

/// A kept instance and who may run it: one event at a time, but not first come, first served. A session that gives the
/// cell back may take it again at once (it barges), so it runs the messages it has buffered back to back and its
/// writer sends their replies in one write. With a fair (FIFO) lock the connections of a `shared` endpoint took turns
/// one event each once any had waited (a lock convoy): every session yielded after each message and its writer sent
/// one reply per write, 1.7-1.8x the CPU of `per-connection` (BENCHMARKS.md). The order between connections does not
/// matter here; each connection's own events are still one at a time, in order, because its session runs them so.
#[derive(Debug, Default)]
struct Cell {
    state: Mutex<CellState>,
    given_back: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct CellState {
    /// An event runs in the instance now.
    busy: bool,
    /// The instance, while no event runs in it (none before the first event and after a failed one).
    resident: Option<Resident>,
}

/// A cell taken for one event, with its instance; given back when dropped, also when the event's future is dropped
/// half-way (then the instance goes with it, as after a failed call).
struct Taken {
    cell: Kept,
    resident: Option<Resident>,
}

impl Cell {
    /// Takes the cell for one event, waiting while another event runs in it.
    async fn take(self: &Arc<Self>) -> Taken {
        loop {
            if let Some(taken) = self.try_take() {
                return taken;
            }
            // Registered before checking again, so a give-back between the check and the wait still wakes this one.
            let given_back = self.given_back.notified();
            tokio::pin!(given_back);
            given_back.as_mut().enable();
            if let Some(taken) = self.try_take() {
                return taken;
            }
            given_back.await;
        }
    }

    /// Takes the cell if no event runs in it.
    fn try_take(self: &Arc<Self>) -> Option<Taken> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.busy {
            return None;
        }
        state.busy = true;
        Some(Taken { cell: self.clone(), resident: state.resident.take() })
    }

    /// Whether the cell holds an instance (an event running in it counts as holding one).
    fn alive(&self) -> bool {
        let state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.busy || state.resident.is_some()
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        {
            let mut state = self.cell.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.resident = self.resident.take();
            state.busy = false;
        }
        self.cell.given_back.notify_one();
    }
}

/// The instances kept between events: one per connection of a `per-connection` endpoint (dropped after its onclose)
/// and one per handler for `shared` endpoints (dropped when it fails, and replaced at the next event when a deploy
/// brought a new version of the handler).
#[derive(Debug, Default)]
pub struct Instances {
    per_connection: Mutex<FastMap<String, Kept>>,
    shared: Mutex<FastMap<String, Kept>>,
}

/// Where the events of one connection run when its lifecycle keeps an instance: its handler's cell (`shared`) or its
/// own (`per-connection`). Found once and kept with the connection, so an event does not look it up by name.
#[derive(Debug, Clone)]
pub struct KeptCell(Kept);

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
        let cell = self.cell(lifecycle, handler.name(), event.conn.id());
        self.call_in(runtime, cell.as_ref(), lifecycle, handler, event, services).await
    }

    /// The cell the events of connection `conn` with `handler` run in under `lifecycle`; none for `per-event`. A
    /// handler's `shared` cell lives as long as the host; a `per-connection` one until [`Instances::forget_connection`].
    pub fn cell(&self, lifecycle: Lifecycle, handler: &str, conn: &str) -> Option<KeptCell> {
        match lifecycle {
            Lifecycle::PerEvent => None,
            Lifecycle::PerConnection => Some(KeptCell(kept(&self.per_connection, conn))),
            Lifecycle::Shared => Some(KeptCell(kept(&self.shared, handler))),
        }
    }

    /// Runs `event` in `cell` (from [`Instances::cell`] with the same lifecycle), or in a fresh instance without one.
    pub async fn call_in(
        &self,
        runtime: &Runtime,
        cell: Option<&KeptCell>,
        lifecycle: Lifecycle,
        handler: &Handler,
        event: Event,
        services: Arc<dyn HostServices>,
    ) -> Result<(), CallError> {
        let Some(KeptCell(kept)) = cell else {
            // Boxed: inline, its state (about 1.6 KB) would size every call's future, kept ones included, and be
            // copied with it at each event.
            return Box::pin(runtime.call(handler, event, services)).await;
        };
        let mut taken = kept.take().await;
        runtime.call_resident(&mut taken.resident, lifecycle, handler, event, services).await
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
fn count_alive(map: &Mutex<FastMap<String, Kept>>) -> usize {
    let Ok(map) = map.lock() else { return 0 };
    map.values().filter(|kept| kept.alive()).count()
}

/// The kept-instance cell under `key`, created empty the first time.
fn kept(map: &Mutex<FastMap<String, Kept>>, key: &str) -> Kept {
    let Ok(mut map) = map.lock() else {
        // A poisoned map (a panic while holding it) still runs the event, in a cell of its own.
        return Kept::default();
    };
    if let Some(kept) = map.get(key) {
        return kept.clone();
    }
    map.entry(key.to_owned()).or_default().clone()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;

    #[tokio::test]
    async fn a_cell_runs_one_event_at_a_time_and_the_one_giving_it_back_may_take_it_again_at_once() {
        let cell = Kept::default();
        let first = cell.take().await;
        assert!(cell.alive(), "a cell with an event running counts as alive");
        let waiter = tokio::spawn({
            let cell = cell.clone();
            async move { drop(cell.take().await) }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a second event waits while one runs");
        // Given back and taken again without waiting (barging), though another is waiting.
        drop(first);
        let again = cell.take().now_or_never().expect("taken again at once");
        assert!(!waiter.is_finished());
        drop(again);
        tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("the waiter was woken").unwrap();
        assert!(!cell.alive(), "no instance was ever put in it");
    }
}
