//! The engine room of the runtime: one Engine and one Linker, a pre-instantiated component per handler (compiled
//! through an on-disk cache), and a call per event under a deadline, a memory cap and optional fuel.

use std::hash::{Hash as _, Hasher as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmsock_wire::descriptor::{Lifecycle, project_of};
use wasmsock_wire::{EventKind, Method};
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi_http::WasiHttpCtx;

use wasmsock_wire::limits::{EPOCH_TICK, EndpointLimits, Limits};

use super::bindings;
use super::guest_log;
use super::host_http::{HttpHooks, NetworkClock};
use super::host_poll;
use super::services::{Event, HostServices};
use super::state::{LazyWasi, MemoryCap, State, Stop};
use crate::budget::{Budget, Holding, Kind as BudgetKind, Scope};
use crate::fair::{self, Observer, Pause, ProjectId, QuotaRefused, Scheduler, Turn};

/// A compiled handler component, checked against the `handler` world and ready to instantiate.
pub struct Handler {
    /// Shared with each instance's store and log, so an event copies no string.
    name: Arc<str>,
    /// Unique per compiled handler in this process: a kept instance of another id is of another version.
    id: u64,
    pre: bindings::HandlerPre<State>,
    /// Its project, as the scheduler knows it.
    project: ProjectId,
    /// Whether it is paused for running out its deadline (a new version starts unpaused).
    pause: Arc<Pause>,
    /// The share of the memory budget its instances charge (its project's), found once rather than per instance.
    budget: Scope,
}

/// How much of a freed linear memory or table the pooling allocator keeps mapped and resets in place, rather than
/// returning to the kernel. With `pagemap_scan` only the dirtied pages are reset, so the next per-event instance in
/// the slot takes no page faults: measured here with the Rust echo per event (100 connections × 10 in flight, one
/// pinned core) it halved the server CPU per message, 41 → 21 µs. Without `pagemap_scan` the same setting made it
/// worse (57 µs: it memsets the whole megabyte), which is what a kernel older than 6.7 gets. The cost: up to 1 MiB
/// stays resident per used pool slot.
const KEEP_RESIDENT: usize = 1 << 20;

/// Hands out [`Handler::id`]s.
static NEXT_HANDLER_ID: AtomicU64 = AtomicU64::new(1);

impl Handler {
    /// The handler's name, `project/name`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the pause of this handler ends, while it is paused for running out its deadline.
    pub fn paused_until(&self) -> Option<std::time::SystemTime> {
        self.pause.paused_until()
    }
}

impl std::fmt::Debug for Handler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handler").field("name", &self.name).finish_non_exhaustive()
    }
}

/// Why a handler call failed. Each costs only its own event.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The call ran past the deadline and was interrupted.
    #[error("handler {handler} was stopped after running longer than its deadline of {deadline:?}")]
    Timeout {
        /// The handler.
        handler: String,
        /// The deadline it ran into.
        deadline: Duration,
    },
    /// The instance tried to grow its memory past the cap.
    #[error("handler {handler} was stopped for growing its memory past the cap of {cap} bytes")]
    OutOfMemory {
        /// The handler.
        handler: String,
        /// The memory cap in bytes.
        cap: usize,
    },
    /// The call used up its fuel (`--fuel`).
    #[error("handler {handler} was stopped after using its fuel of {fuel} units")]
    OutOfFuel {
        /// The handler.
        handler: String,
        /// The fuel each call gets.
        fuel: u64,
    },
    /// The guest trapped (a panic, an unreachable, a bad memory access, …).
    #[error("handler {handler} trapped: {message}")]
    Trap {
        /// The handler.
        handler: String,
        /// The trap and its backtrace, as wasmtime tells it.
        message: String,
    },
    /// The call held its instance longer than its wall-clock bound (its deadline times `--handler-wall-factor`),
    /// waiting for the host's other work included.
    #[error(
        "handler {handler} was stopped after holding its instance for its wall-clock bound of {bound:?} (the host \
         was busy; its deadline of running time is {deadline:?})"
    )]
    WallTimeout {
        /// The handler.
        handler: String,
        /// The wall-clock bound it ran into.
        bound: Duration,
        /// Its deadline of running time.
        deadline: Duration,
    },
    /// The handler is paused: its calls kept running out their deadline, so this event was not run.
    #[error(
        "handler {handler} is paused until {until} (for {remaining:?} more) after {after} calls in a row ran out of \
         their deadline; this event was not run"
    )]
    Paused {
        /// The handler.
        handler: String,
        /// When the pause ends (RFC 3339, UTC).
        until: String,
        /// How long it still lasts.
        remaining: Duration,
        /// How many calls in a row ran out before it.
        after: u32,
    },
    /// A per-connection or shared instance was needed and the handler's project has its quota of them.
    #[error("handler {handler} needs a resident instance and {refused}")]
    Quota {
        /// The handler.
        handler: String,
        /// The quota that refused it.
        refused: QuotaRefused,
    },
    /// A per-connection or shared instance was needed and every resident slot is taken.
    #[error("handler {handler} needs a resident instance and all {limit} are in use (--max-resident-instances)")]
    NoResidentSlot {
        /// The handler.
        handler: String,
        /// The limit in force.
        limit: u32,
    },
    /// The instance could not be created.
    #[error("handler {handler} could not be instantiated: {message}")]
    Instantiate {
        /// The handler.
        handler: String,
        /// Why.
        message: String,
    },
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped; deadlines are counted in its ticks.
struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    fn start(engine: Engine) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wasmsock-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("starting the epoch ticker thread")?;
        Ok(Self { stop, thread: Some(thread) })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The runtime: compiles handlers and runs one event through a fresh instance of a handler.
pub struct Runtime {
    engine: Engine,
    /// The engine's settings without the pooling allocator: each compile runs in a throwaway engine made from it (see
    /// [`Runtime::precompile`]).
    compile_config: Config,
    linker: Linker<State>,
    deadline: Duration,
    fuel: Option<u64>,
    memory_cap: usize,
    guest_log_bytes: usize,
    scheduler: Arc<Scheduler>,
    pause_policy: (u32, Duration, Duration),
    resident: Arc<Semaphore>,
    max_resident: u32,
    /// The memory budget instances' memory is charged to.
    budget: Arc<Budget>,
    _ticker: EpochTicker,
}

/// A handler instance kept between events, for the `per-connection` and `shared` lifecycles: its store, its
/// instance and the resident slot it holds until dropped.
pub struct Resident {
    store: Store<State>,
    instance: bindings::Handler,
    handler_id: u64,
    log: guest_log::GuestLog,
    _slot: OwnedSemaphorePermit,
    _place: fair::ResidentPlace,
}

impl std::fmt::Debug for Resident {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resident").field("handler", &self.store.data().handler).finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime with these limits: pooling allocator sized for `max_instances` per-event calls plus
    /// `max_resident_instances` kept instances, epoch interruption, WASI p2 without files or network, and the
    /// `websockets` imports.
    pub fn new(limits: &Limits) -> anyhow::Result<Self> {
        fix_mmap_threshold();
        let mut pool = PoolingAllocationConfig::default();
        let per_event = limits.max_instances.max(1);
        let instances = per_event.saturating_add(limits.max_resident_instances);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_memory_size(limits.handler_memory);
        // Reset a freed slot by rewriting only the pages the instance dirtied (found with the PAGEMAP_SCAN ioctl on Linux
        // 6.7+) instead of unmapping them: see KEEP_RESIDENT. Older kernels memset the first KEEP_RESIDENT bytes.
        pool.linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(wasmtime::Enabled::Auto);
        let mut compile_config = Config::new();
        compile_config.epoch_interruption(true).consume_fuel(limits.fuel.is_some());
        let mut config = compile_config.clone();
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
        // wasi:io/poll again, over wasmtime-wasi's: a guest waiting gives its execution slot back meanwhile.
        linker.allow_shadowing(true);
        host_poll::add_to_linker(&mut linker).map_err(anyhow::Error::from).context("linking wasi:io/poll")?;
        linker.allow_shadowing(false);
        // Only the outgoing side of wasi:http (and its types): every request goes through `host_http`'s hook.
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
            .map_err(anyhow::Error::from)
            .context("linking wasi:http")?;
        bindings::Handler::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the websockets interface")?;
        let ticker = EpochTicker::start(engine.clone())?;
        let workers = tokio::runtime::Handle::try_current()
            .map(|h| h.metrics().num_workers())
            .unwrap_or_else(|_| std::thread::available_parallelism().map(std::num::NonZeroUsize::get).unwrap_or(1));
        let slots = limits.execution_slots.unwrap_or_else(|| Scheduler::default_slots(workers));
        let scheduler = Scheduler::new(slots, per_event as usize, limits.project);
        let kicked = engine.weak();
        scheduler.set_kick(move || {
            if let Some(engine) = kicked.upgrade() {
                engine.increment_epoch();
            }
        });
        Ok(Self {
            engine,
            compile_config,
            linker,
            deadline: limits.handler_deadline,
            fuel: limits.fuel,
            memory_cap: limits.handler_memory,
            guest_log_bytes: limits.guest_log_bytes,
            scheduler,
            pause_policy: (limits.pause_after, limits.pause, limits.max_pause),
            resident: Arc::new(Semaphore::new(limits.max_resident_instances as usize)),
            max_resident: limits.max_resident_instances,
            budget: Arc::new(Budget::new(limits)),
            _ticker: ticker,
        })
    }

    /// This runtime with its instances' memory charged to `budget` (the host's, shared with its connections).
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.budget = budget;
        self
    }

    /// Compiles a component and checks it against the `handler` world: its imports must be satisfiable and it must
    /// export `on-event`. The error says which.
    pub fn compile(&self, name: &str, bytes: Vec<u8>) -> anyhow::Result<Handler> {
        let component = self.compile_and_load(bytes, None)?;
        self.check(name, &component)
    }

    /// Compiles a component to this engine's serialized form in an engine made for it and dropped at once: wasmtime
    /// keeps its compiler's working state (Cranelift contexts as large as the largest function compiled, about 90
    /// MB after the JavaScript and Python examples) for as long as the engine lives, and the serving engine lives as
    /// long as the host.
    /// The component's bytes are dropped here, before the memory is handed back (see [`release_compiler_memory`]).
    fn precompile(&self, bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
        let bytes = super::componentize::component_of(bytes)?;
        let compiler =
            Engine::new(&self.compile_config).map_err(anyhow::Error::from).context("creating the compiling engine")?;
        let compiled = compiler
            .precompile_component(&bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component");
        drop(compiler);
        drop(bytes);
        if compiled.is_err() {
            release_compiler_memory();
        }
        compiled
    }

    /// Like [`Runtime::compile`], through an on-disk cache of compiled code in `cache_dir` keyed by `version` (the
    /// content hash of `bytes`) and this engine's settings. Returns the handler and whether it came from the cache. A
    /// component refused by [`Runtime::check`] leaves no entry behind.
    ///
    /// The cache holds native code the host will run: it must be a directory only this host can write (it is
    /// created with mode 0700).
    pub fn compile_cached(
        &self,
        name: &str,
        bytes: Vec<u8>,
        version: &str,
        cache_dir: &Path,
    ) -> anyhow::Result<(Handler, bool)> {
        let file = cache_dir.join(self.cache_entry_name(version));
        if file.is_file() {
            // SAFETY: the file was written by `Component::serialize` of this host into its private cache directory
            // (see above); `deserialize_file` also checks that it was compiled for this engine's settings.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize_file(&self.engine, &file) };
            match cached {
                Ok(component) => {
                    mark_used(&file);
                    let checked = self.check(name, &component);
                    if checked.is_err() {
                        let _ = std::fs::remove_file(&file); // Refused: kept, it would only be refused again.
                    }
                    return Ok((checked?, true));
                }
                Err(err) => {
                    tracing::warn!(file = %file.display(), "ignoring an unusable cache entry: {err:#}")
                }
            }
        }
        let checked = self.compile_and_load(bytes, Some(&file)).and_then(|component| self.check(name, &component));
        if checked.is_err() && file.is_file() {
            // Refused after it was written (it loads but is not a handler): a second try would be refused again.
            let _ = std::fs::remove_file(&file);
        }
        Ok((checked?, false))
    }

    /// The file name of the cache entry of the component whose content version is `version`, compiled for this
    /// engine's settings: `{version}-{settings}.cwasm`.
    fn cache_entry_name(&self, version: &str) -> String {
        let mut settings = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut settings);
        format!("{version}-{:016x}.{CACHE_EXTENSION}", settings.finish())
    }

    /// Deletes the entries of the compile cache in `cache_dir` that none of the content versions `in_use` names, except
    /// the `spare` used most recently (written or loaded: a version deployed again, or rolled back to, then loads
    /// without compiling). Only `.cwasm` files are touched. Returns how many were deleted; one that cannot be deleted
    /// is logged and left. A compiled component still running is mapped from its file, which outlives the deletion.
    pub fn prune_cache(&self, cache_dir: &Path, in_use: &[String], spare: usize) -> anyhow::Result<usize> {
        let keep: std::collections::HashSet<String> = in_use.iter().map(|v| self.cache_entry_name(v)).collect();
        let listing = match std::fs::read_dir(cache_dir) {
            Ok(listing) => listing,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(err) => return Err(err).with_context(|| format!("reading {}", cache_dir.display())),
        };
        let mut others = Vec::new();
        for entry in listing {
            let entry = entry.with_context(|| format!("reading {}", cache_dir.display()))?;
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if path.extension().is_none_or(|ext| ext != CACHE_EXTENSION) || keep.contains(&name) {
                continue;
            }
            let used = entry.metadata().and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::UNIX_EPOCH);
            others.push((used, path));
        }
        others.sort_by_key(|(used, _)| std::cmp::Reverse(*used));
        let mut deleted = 0;
        for (_, path) in others.into_iter().skip(spare) {
            match std::fs::remove_file(&path) {
                Ok(()) => deleted += 1,
                Err(err) => tracing::warn!(file = %path.display(), "cannot delete a compile cache entry: {err}"),
            }
        }
        Ok(deleted)
    }

    /// Compiles `bytes` (see [`Runtime::precompile`]) and loads the result into the serving engine, then hands the
    /// compiler's memory back. With a `cache_file`, the compiled code is written there first and served from the file,
    /// as a later start would be: its code is mapped from the file (pages the kernel can drop and read again) rather
    /// than copied into anonymous memory. A cache that cannot be written is logged and the code loaded from memory.
    fn compile_and_load(&self, bytes: Vec<u8>, cache_file: Option<&Path>) -> anyhow::Result<Component> {
        let compiled = self.precompile(bytes)?;
        let written = cache_file.filter(|file| match write_cache_entry(file, &compiled) {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(file = %file.display(), "cannot write the compile cache: {err:#}");
                false
            }
        });
        let component = match written {
            // SAFETY: the file was written just now by `write_cache_entry` into the host's private cache directory
            // from `precompile`'s output; `deserialize_file` also checks the engine settings.
            #[allow(unsafe_code)]
            Some(file) => unsafe { Component::deserialize_file(&self.engine, file) },
            // SAFETY: made just now by `precompile` with this engine's settings; `deserialize` checks them.
            #[allow(unsafe_code)]
            None => unsafe { Component::deserialize(&self.engine, &compiled) },
        };
        drop(compiled);
        release_compiler_memory();
        component.map_err(anyhow::Error::from).context("loading the compiled component")
    }

    fn check(&self, name: &str, component: &Component) -> anyhow::Result<Handler> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(anyhow::Error::from)
            .context("its imports are not ones this host provides (wasmsock:websockets and WASI 0.2)")?;
        let pre = bindings::HandlerPre::new(pre)
            .map_err(anyhow::Error::from)
            .context("it does not export `on-event` of world wasmsock:websockets/handler")?;
        let (after, first, longest) = self.pause_policy;
        Ok(Handler {
            name: name.into(),
            id: NEXT_HANDLER_ID.fetch_add(1, Ordering::Relaxed),
            pre,
            project: self.scheduler.project(project_of(name)),
            pause: Arc::new(Pause::new(after, first, longest)),
            budget: self.budget.scope(project_of(name), None),
        })
    }

    /// Sends what the scheduler sees (calls, quota refusals, pauses) to `observer`; the first one set stays.
    pub fn observe(&self, observer: Arc<dyn Observer>) {
        self.scheduler.set_observer(observer);
    }

    /// The scheduler of handler calls: execution slots, per-project queues and quotas.
    pub fn scheduler(&self) -> &Arc<Scheduler> {
        &self.scheduler
    }

    /// Fails fast when `handler` is paused and the event is one a pause holds back (onopen, onmessage: onerror and
    /// onclose still run, so every connection still ends with its onclose).
    fn check_pause(handler: &Handler, event: &Event) -> Result<(), CallError> {
        if matches!(event.kind, EventKind::Error(_) | EventKind::Close) {
            return Ok(());
        }
        handler.pause.check().map_err(|paused| CallError::Paused {
            handler: handler.name.to_string(),
            until: fair::rfc3339(paused.until),
            remaining: paused.remaining,
            after: paused.after,
        })
    }

    /// Counts how a call ended towards its handler's pause; logs and reports a pause it starts. Only the events a
    /// pause holds back (onopen, onmessage) count as successes: an onerror that answers a timeout does not clear it.
    fn settle<T>(&self, handler: &Handler, method: Method, result: &Result<T, CallError>) {
        let counts = matches!(method, Method::OnOpen | Method::OnMessage | Method::OnTimer);
        let ran_out = match result {
            Ok(_) if counts => Some(false),
            Ok(_) => None,
            Err(CallError::Timeout { .. } | CallError::WallTimeout { .. } | CallError::OutOfFuel { .. }) => Some(true),
            Err(_) => None,
        };
        if let Some(paused) = handler.pause.record(ran_out) {
            tracing::warn!(
                handler = %handler.name,
                until = %fair::rfc3339(paused.until),
                "pausing the handler for {:?}: {} calls in a row ran out of their deadline",
                paused.remaining,
                paused.after
            );
            self.scheduler.paused(&handler.name);
        }
    }

    /// Checks that this runtime can honour an endpoint's handler limits (see [`Limits::check_endpoint`]).
    pub fn check_endpoint_limits(&self, over: &EndpointLimits) -> anyhow::Result<()> {
        Limits { handler_memory: self.memory_cap, fuel: self.fuel, ..Limits::default() }.check_endpoint(over)
    }

    /// Runs one event through a fresh instance of `handler`, then drops the instance.
    pub async fn call(
        &self,
        handler: &Handler,
        event: Event,
        services: Arc<dyn HostServices>,
    ) -> Result<(), CallError> {
        Self::check_pause(handler, &event)?;
        let method = event.kind.method();
        let turn = Arc::new(self.scheduler.begin(handler.project, true, event.started).await);
        // Paused while it waited for its turn: it goes at once rather than start and be stopped.
        if !turn.waited().is_zero() {
            Self::check_pause(handler, &event)?;
        }
        let result = async {
            let (mut store, log) = self.store(handler, Lifecycle::PerEvent, event, services, turn)?;
            let instance = self.instantiate(handler, &mut store).await?;
            let result = instance.call_on_event(&mut store).await;
            result.map_err(|err| self.call_error(&handler.name, &store, &log, err))
        }
        .await;
        self.settle(handler, method, &result);
        result
    }

    /// Runs one event through the instance kept in `kept`, first creating it (taking a resident slot) when there is
    /// none or it is of another version of the handler. A failed call drops the instance: the next event gets a
    /// fresh one. The deadline and memory cap apply to each call as to a per-event one. `lifecycle` is what the guest
    /// is told (`get-lifecycle`): `per-connection` or `shared`.
    pub async fn call_resident(
        &self,
        kept: &mut Option<Resident>,
        lifecycle: Lifecycle,
        handler: &Handler,
        event: Event,
        services: Arc<dyn HostServices>,
    ) -> Result<(), CallError> {
        if kept.as_ref().is_some_and(|resident| resident.handler_id != handler.id) {
            *kept = None; // A deploy replaced the handler: its old instance goes at this event.
        }
        Self::check_pause(handler, &event)?;
        let method = event.kind.method();
        let result = self.run_resident(kept, lifecycle, handler, event, services).await;
        self.settle(handler, method, &result);
        result
    }

    async fn run_resident(
        &self,
        kept: &mut Option<Resident>,
        lifecycle: Lifecycle,
        handler: &Handler,
        event: Event,
        services: Arc<dyn HostServices>,
    ) -> Result<(), CallError> {
        let resident = match kept {
            Some(resident) => {
                let turn = Arc::new(self.scheduler.begin(handler.project, false, event.started).await);
                if !turn.waited().is_zero() {
                    Self::check_pause(handler, &event)?; // Paused while it waited for its turn.
                }
                resident.log.begin(&event.conn, event.kind.method().as_str());
                let state = resident.store.data_mut();
                let limits = event.conn.limits().clone();
                let now = turn.started();
                state.deadline = now + limits.handler_deadline;
                state.call_deadline = limits.handler_deadline;
                state.wall_deadline = now + limits.handler_wall;
                state.call_wall = limits.handler_wall;
                state.stop = None;
                state.call_fuel = self.fuel.and(limits.fuel);
                state.memory.cap = limits.handler_memory.min(self.memory_cap);
                state.event = event;
                state.config = None;
                state.yielded.store(0, Ordering::Release);
                state.network.store(0, Ordering::Release);
                state.memory.hit = false;
                if let Some(fuel) = state.call_fuel {
                    resident.store.set_fuel(fuel).map_err(|err| CallError::Instantiate {
                        handler: handler.name.to_string(),
                        message: format!("setting fuel: {err}"),
                    })?;
                }
                resident.store.set_epoch_deadline(1);
                // Last, so no early return leaves the turn (its execution slot) with the kept instance.
                resident.store.data_mut().turn = Some(turn);
                resident
            }
            None => {
                let place = self
                    .scheduler
                    .take_resident(handler.project)
                    .map_err(|refused| CallError::Quota { handler: handler.name.to_string(), refused })?;
                let slot = self.resident.clone().try_acquire_owned().map_err(|_| CallError::NoResidentSlot {
                    handler: handler.name.to_string(),
                    limit: self.max_resident,
                })?;
                let turn = Arc::new(self.scheduler.begin(handler.project, false, event.started).await);
                let (mut store, log) = self.store(handler, lifecycle, event, services, turn)?;
                // Boxed: once per kept instance, and inline its state would size (and be copied with) every call.
                let instance = Box::pin(self.instantiate(handler, &mut store)).await?;
                kept.insert(Resident { store, instance, handler_id: handler.id, log, _slot: slot, _place: place })
            }
        };
        let result = resident.instance.call_on_event(&mut resident.store).await;
        // The call's place goes with the call, not with the kept instance.
        resident.store.data_mut().turn = None;
        match result {
            Ok(()) => Ok(()),
            Err(err) => {
                let err = self.call_error(&handler.name, &resident.store, &resident.log, err);
                *kept = None;
                Err(err)
            }
        }
    }

    /// What an instance of `handler` charges its memory to: its project's share of the budget.
    fn instance_budget(&self, handler: &Handler) -> Holding {
        self.budget.holding(BudgetKind::Instances, handler.budget.clone(), 0)
    }

    /// A store for one instance of `handler` living as `lifecycle` says, with its limits set, handling `event`.
    fn store(
        &self,
        handler: &Handler,
        lifecycle: Lifecycle,
        event: Event,
        services: Arc<dyn HostServices>,
        turn: Arc<Turn>,
    ) -> Result<(Store<State>, guest_log::GuestLog), CallError> {
        let log = guest_log::GuestLog::new(
            handler.name.clone(),
            Arc::clone(&event.conn),
            event.kind.method().as_str(),
            self.guest_log_bytes,
        );
        let wasi = LazyWasi::new(log.clone());
        let limits = event.conn.limits();
        let (call_deadline, call_fuel) = (limits.handler_deadline, self.fuel.and(limits.fuel));
        // The deadlines count from when the call got its execution slot.
        let (call_wall, now) = (limits.handler_wall, turn.started());
        let (yielded, network) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let http_hooks = HttpHooks {
            handler: Arc::clone(&handler.name),
            services: services.clone(),
            clock: NetworkClock::new(yielded.clone(), network.clone()),
        };
        let state = State {
            wasi,
            http: WasiHttpCtx::new(),
            http_hooks,
            network,
            table: ResourceTable::new(),
            memory: MemoryCap::new(limits.handler_memory.min(self.memory_cap), self.instance_budget(handler)),
            event,
            lifecycle,
            handler: Arc::clone(&handler.name),
            services,
            deadline: now + call_deadline,
            call_deadline,
            wall_deadline: now + call_wall,
            call_wall,
            call_fuel,
            turn: Some(turn),
            pause: handler.pause.clone(),
            stop: None,
            yielded,
            handles: 0,
            store_handles: 0,
            config: None,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        if let Some(fuel) = call_fuel {
            store.set_fuel(fuel).map_err(|err| CallError::Instantiate {
                handler: handler.name.to_string(),
                message: format!("setting fuel: {err}"),
            })?;
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|mut ctx| {
            let state = ctx.data_mut();
            let yielded = Duration::from_nanos(state.yielded.load(Ordering::Acquire));
            let now = Instant::now();
            if now >= state.deadline + yielded {
                return Ok(UpdateDeadline::Interrupt);
            }
            if now >= state.wall_deadline + Duration::from_nanos(state.network.load(Ordering::Acquire)) {
                state.stop = Some(Stop::Wall);
                return Ok(UpdateDeadline::Interrupt);
            }
            if state.pause.is_paused() && !matches!(state.event.kind, EventKind::Error(_) | EventKind::Close) {
                // Paused meanwhile (its other calls ran out): this one goes too rather than run out as well.
                state.stop = Some(Stop::Paused);
                return Ok(UpdateDeadline::Interrupt);
            }
            // Step aside between ticks: the execution slot goes to a waiting call when there is one (see `fair`),
            // and the tokio worker runs its other tasks and its I/O driver first either way (tokio's own yield;
            // wasmtime's plain `Yield` wakes at once and can starve it). The time away does not count against the
            // deadline: on a busy host a fan-out would otherwise be cut off half-way for the others' work; the
            // wall-clock bound above counts it.
            let yielded = state.yielded.clone();
            let turn = state.turn.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    let away = Instant::now();
                    match turn {
                        Some(turn) => turn.step_aside().await,
                        None => tokio::task::yield_now().await,
                    }
                    let nanos = u64::try_from(away.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    yielded.fetch_add(nanos, Ordering::AcqRel);
                }),
            ))
        });
        Ok((store, log))
    }

    async fn instantiate(&self, handler: &Handler, store: &mut Store<State>) -> Result<bindings::Handler, CallError> {
        handler.pre.instantiate_async(&mut *store).await.map_err(|err| {
            if store.data().memory.hit {
                CallError::OutOfMemory { handler: handler.name.to_string(), cap: store.data().memory.cap }
            } else {
                CallError::Instantiate { handler: handler.name.to_string(), message: format!("{err:#}") }
            }
        })
    }

    fn call_error(
        &self,
        handler: &str,
        store: &Store<State>,
        log: &guest_log::GuestLog,
        err: wasmtime::Error,
    ) -> CallError {
        match self.classify(handler, store, err) {
            // What the guest printed last is usually why it trapped (an exception, a traceback, a panic message).
            CallError::Trap { handler, message } => {
                let tail = log.stderr_tail();
                let message = if tail.is_empty() { message } else { format!("{tail}; {message}") };
                CallError::Trap { handler, message }
            }
            other => other,
        }
    }

    fn classify(&self, handler: &str, store: &Store<State>, err: wasmtime::Error) -> CallError {
        let handler = handler.to_owned();
        let state = store.data();
        let interrupted = matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt));
        if state.memory.hit {
            CallError::OutOfMemory { handler, cap: store.data().memory.cap }
        } else if interrupted && state.stop == Some(Stop::Wall) {
            CallError::WallTimeout { handler, bound: state.call_wall, deadline: state.call_deadline }
        } else if interrupted
            && state.stop == Some(Stop::Paused)
            && let Err(paused) = state.pause.check()
        {
            CallError::Paused {
                handler,
                until: fair::rfc3339(paused.until),
                remaining: paused.remaining,
                after: paused.after,
            }
        } else if interrupted {
            CallError::Timeout { handler, deadline: store.data().call_deadline }
        } else if let (Some(Trap::OutOfFuel), Some(fuel)) = (err.downcast_ref::<Trap>(), store.data().call_fuel) {
            CallError::OutOfFuel { handler, fuel }
        } else {
            CallError::Trap { handler, message: format!("{err:?}") }
        }
    }
}

/// Hands the compiler's freed working memory back to the system. Cranelift's allocations while compiling a large
/// component (hundreds of MB for the 12-18 MB JavaScript and Python ones, on several threads) are freed when it ends,
/// but glibc's malloc keeps the pages in its per-thread arenas, so a host that compiled in process stayed at ~450 MB
/// idle instead of ~25 MB (BENCHMARKS.md, "Memory"). `malloc_trim` releases the free pages of every arena.
/// The mmap threshold was fixed when the runtime was made (see [`fix_mmap_threshold`]).
fn release_compiler_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointer and only returns glibc's own free pages to the system; it is safe to call
    // from any thread at any time.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps glibc's threshold for giving an allocation a mapping of its own at its default, 128 KiB. glibc raises it (up
/// to 32 MB) each time such a mapping is freed, so after the first large free the compiler's large buffers come from
/// the arenas and leave them fragmented past what `malloc_trim` can release: a host that compiled the JavaScript
/// (SpiderMonkey) and Python examples idled at 72 MB with the threshold moving and at 34 MB with it fixed (a start
/// from the warm cache: 24 MB). An A/B of the Rust echo at saturation showed no CPU difference in `per-event` or
/// `shared` (BENCHMARKS.md, "Memory").
fn fix_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static FIXED: std::sync::Once = std::sync::Once::new();
        FIXED.call_once(|| {
            // SAFETY: mallopt takes two integers and changes only glibc's own allocation policy; any thread may call it.
            #[allow(unsafe_code)]
            unsafe {
                libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
            }
        });
    }
}

/// The extension of a compile cache entry.
const CACHE_EXTENSION: &str = "cwasm";

/// Marks a cache entry as used now (its modification time), for [`Runtime::prune_cache`]'s order. Best effort.
fn mark_used(file: &Path) {
    let touched = std::fs::File::open(file).and_then(|opened| opened.set_modified(std::time::SystemTime::now()));
    if let Err(err) = touched {
        tracing::debug!(file = %file.display(), "cannot mark a compile cache entry as used: {err}");
    }
}

/// Writes a compiled component into the cache atomically (a temp file renamed into place), creating the cache
/// directory if need be.
fn write_cache_entry(file: &Path, serialized: &[u8]) -> anyhow::Result<()> {
    if let Some(dir) = file.parent() {
        create_private_dir(dir)?;
    }
    let temp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&temp, serialized).with_context(|| format!("writing {}", temp.display()))?;
    std::fs::rename(&temp, file).with_context(|| format!("renaming into {}", file.display()))?;
    Ok(())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).with_context(|| format!("creating {}", dir.display()))
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("deadline", &self.deadline)
            .field("memory_cap", &self.memory_cap)
            .finish_non_exhaustive()
    }
}
