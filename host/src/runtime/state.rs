//! What one handler instance's store holds: WASI, the event it handles, the services its imports reach, its memory
//! cap and deadline, and the host side of the connection handles it holds.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use wasmsock_wire::descriptor::Lifecycle;
use wasmsock_wire::kv::Entry;

use super::guest_log::GuestLog;
use super::host_http::HttpHooks;
use super::services::{Connection, Event, HostServices};
use crate::budget::{Holding, Kind as BudgetKind};
use crate::fair::{Pause, Turn};

/// The host side of a guest's `websocket-client` handle: the connection it names. Holding the connection (not its
/// id) keeps `info` true after the connection ended: its state says `closed`.
#[derive(Debug)]
pub struct ClientRef {
    pub(super) conn: Arc<dyn Connection>,
}

/// The host side of a guest's `bucket`: its project's store (the project is the handler's, so nothing is kept here).
#[derive(Debug)]
pub struct BucketRef;

/// The host side of a guest's `cas`: a key and what it held (with its revision) when the handle was made.
#[derive(Debug)]
pub struct CasRef {
    pub(super) key: String,
    pub(super) read: Option<Entry>,
}

/// The store data of one handler instance: WASI, the event it handles and the connections it can reach.
pub struct State {
    pub(super) wasi: LazyWasi,
    pub(super) table: ResourceTable,
    pub(super) memory: MemoryCap,
    pub(super) event: Event,
    /// How long this instance lives (what `get-lifecycle` answers).
    pub(super) lifecycle: Lifecycle,
    pub(super) handler: Arc<str>,
    pub(super) services: Arc<dyn HostServices>,
    pub(super) deadline: Instant,
    /// The call's deadline and fuel (the connection's limits), for telling why it was stopped.
    pub(super) call_deadline: Duration,
    pub(super) call_fuel: Option<u64>,
    /// Nanoseconds the call has spent yielded to other tasks or waiting for the other hosts of the cluster; the
    /// deadline moves out by as much, so it bounds the handler's own running time, not how busy the rest of the host
    /// is or how long another host takes to answer (that wait has its own bound).
    pub(super) yielded: Arc<AtomicU64>,
    /// Nanoseconds the call has spent waiting for outbound HTTP requests (bounded by their own timeouts): added to
    /// `yielded` and to the wall-clock bound.
    pub(super) network: Arc<AtomicU64>,
    /// `wasi:http`'s state and the hooks that send its requests through the host.
    pub(super) http: WasiHttpCtx,
    pub(super) http_hooks: HttpHooks,
    pub(super) handles: usize,
    /// The store handles (buckets, CAS handles) the call holds.
    pub(super) store_handles: usize,
    /// The project's configuration as the current event first read it (see `host_kv`).
    pub(super) config: Option<Arc<wasmsock_wire::kv::ConfigSnapshot>>,
    /// The wall-clock bound of the call (see `DEFAULT_HANDLER_WALL_FACTOR`), and when it runs out.
    pub(super) call_wall: Duration,
    pub(super) wall_deadline: Instant,
    /// The call's place with the scheduler (none between the calls of a kept instance).
    pub(super) turn: Option<Arc<Turn>>,
    /// The handler's pause: a call running when it starts is stopped.
    pub(super) pause: Arc<Pause>,
    /// Why the host interrupted the call, when not for its deadline.
    pub(super) stop: Option<Stop>,
}

/// Why the host interrupted a call other than for its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// It ran past its wall-clock bound.
    Wall,
    /// Its handler was paused meanwhile.
    Paused,
}

/// An instance's WASI context, made at its first WASI call. Making one seeds its random generators, a few percent of a
/// `per-event` call, and a handler that makes no WASI call in an event (an echo) needs none.
pub(super) struct LazyWasi {
    ctx: Option<WasiCtx>,
    /// Where the guest's stdout and stderr go.
    log: GuestLog,
}

impl LazyWasi {
    pub(super) fn new(log: GuestLog) -> Self {
        Self { ctx: None, log }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let log = &self.wasi.log;
        let ctx = self.wasi.ctx.get_or_insert_with(|| {
            WasiCtxBuilder::new().stdout(log.stream("stdout")).stderr(log.stream("stderr")).build()
        });
        WasiCtxView { ctx, table: &mut self.table }
    }
}

// Here rather than in `host_http` (which owns the hooks), so that the state file is not imported back by it.
impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView { ctx: &mut self.http, table: &mut self.table, hooks: &mut self.http_hooks }
    }
}

/// Refuses memory growth past the cap or past what the memory budget has room for, and remembers that it did so a
/// trap can be told apart from others. What the instance's memories hold is charged to the budget until the store
/// (and this with it) is dropped.
pub(super) struct MemoryCap {
    pub(super) cap: usize,
    pub(super) hit: bool,
    /// The bytes its memories hold, over all of them.
    held: usize,
    budget: Holding,
}

impl MemoryCap {
    pub(super) fn new(cap: usize, budget: Holding) -> Self {
        Self { cap, hit: false, held: 0, budget }
    }
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!("memory cap of {} bytes reached (wanted {desired})", self.cap)));
        }
        let held = self.held.saturating_add(desired.saturating_sub(current));
        if let Err(refusal) = self.budget.cover(held) {
            self.hit = true;
            self.budget.budget().count_refusal(BudgetKind::Instances);
            return Err(wasmtime::Error::msg(format!("memory growth to {desired} bytes refused: {refusal}")));
        }
        self.held = held;
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // The pooling allocator's table size bounds tables.
        Ok(true)
    }
}
