//! The `wasi:io/poll` import: wasmtime-wasi's own implementation, run without the call's execution slot while the
//! guest waits (for an outbound HTTP response, a clock, a stream), so a handler blocked on the network does not hold
//! off the other handlers of the host (the slots are few: one fewer than the worker threads by default).

use std::sync::Arc;

use wasmtime::component::{HasData, Linker, Resource, ResourceTable};
use wasmtime_wasi_io::bindings::wasi::io::poll;
use wasmtime_wasi_io::poll::DynPollable;

use super::state::State;
use crate::fair::Turn;

/// What a poll sees of the call: the resource table and the call's turn (none outside the scheduler, e.g. in tests).
pub(super) struct Waiting<'a> {
    table: &'a mut ResourceTable,
    turn: Option<Arc<Turn>>,
}

impl Waiting<'_> {
    /// Awaits `wait` without the execution slot. The time is not given back to the deadline here: an HTTP request's
    /// is (`host_http::NetworkClock`), a guest's own sleep is not.
    async fn away<T>(turn: Option<Arc<Turn>>, wait: impl Future<Output = T>) -> T {
        match turn {
            Some(turn) => turn.away(wait).await,
            None => wait.await,
        }
    }
}

impl poll::Host for Waiting<'_> {
    async fn poll(&mut self, pollables: Vec<Resource<DynPollable>>) -> wasmtime::Result<Vec<u32>> {
        Self::away(self.turn.clone(), poll::Host::poll(&mut *self.table, pollables)).await
    }
}

impl poll::HostPollable for Waiting<'_> {
    async fn block(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        Self::away(self.turn.clone(), poll::HostPollable::block(&mut *self.table, pollable)).await
    }

    async fn ready(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<bool> {
        poll::HostPollable::ready(&mut *self.table, pollable).await
    }

    fn drop(&mut self, pollable: Resource<DynPollable>) -> wasmtime::Result<()> {
        poll::HostPollable::drop(&mut *self.table, pollable)
    }
}

struct HasWaiting;

impl HasData for HasWaiting {
    type Data<'a> = Waiting<'a>;
}

/// Links `wasi:io/poll` (the linker must allow shadowing wasmtime-wasi's).
pub(super) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    poll::add_to_linker::<State, HasWaiting>(linker, |state| Waiting {
        turn: state.turn.clone(),
        table: &mut state.table,
    })
}
