//! The WebAssembly runtime, the host's only contact with wasmtime: one Engine, one Linker, the one `bindgen!`, a
//! pre-instantiated component per handler, and a call per event under a deadline and a memory cap.

mod convert;
mod guest_log;
mod host;

use std::hash::{Hash as _, Hasher as _};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::Semaphore;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::client::ClientOptions;
use crate::event::Event;
use crate::hub::{ClientInfo, Conn, ConnError};
use crate::limits::{EPOCH_TICK, Limits};

pub use host::ClientRef;

/// The host side of the WIT contract, generated from `wit/` (the host's only `bindgen!`).
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "handler",
        exports: { default: async },
        imports: { default: trappable },
        with: {
            "wasmsock:websockets/websockets.websocket-client": crate::runtime::ClientRef,
        },
    });
}

/// What a handler's imports reach outside the runtime: the live connections and the way to open new ones.
pub trait HostServices: Send + Sync + 'static {
    /// The live connection with this id.
    fn connection(&self, id: &str) -> Option<Arc<Conn>>;
    /// Every live connection, oldest first.
    fn connections(&self) -> Vec<ClientInfo>;
    /// The oldest live outbound client whose events go to `handler`.
    fn client_by_handler(&self, handler: &str) -> Option<Arc<Conn>>;
    /// Starts an outbound client; returns at once with the client still connecting.
    fn create_websocket(&self, uri: &str, handler: &str, options: ClientOptions) -> Result<Arc<Conn>, ConnError>;
}

/// A compiled handler component, checked against the `handler` world and ready to instantiate.
pub struct Handler {
    name: String,
    pre: bindings::HandlerPre<State>,
}

impl Handler {
    /// The handler's name, `project/name`.
    pub fn name(&self) -> &str {
        &self.name
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
    /// The instance could not be created.
    #[error("handler {handler} could not be instantiated: {message}")]
    Instantiate {
        /// The handler.
        handler: String,
        /// Why.
        message: String,
    },
}

/// The store data of one handler instance: WASI, the event it handles and the connections it can reach.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    memory: MemoryCap,
    event: Event,
    handler: String,
    services: Arc<dyn HostServices>,
    deadline: Instant,
    /// Nanoseconds the call has spent yielded to other tasks; the deadline moves out by as much, so it bounds the
    /// handler's own running time, not how busy the rest of the host is.
    yielded: Arc<AtomicU64>,
    handles: usize,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

/// Refuses memory growth past the cap, and remembers that it did so a trap can be told apart from others.
struct MemoryCap {
    cap: usize,
    hit: bool,
}

impl wasmtime::ResourceLimiter for MemoryCap {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.hit = true;
            return Err(wasmtime::Error::msg(format!("memory cap of {} bytes reached (wanted {desired})", self.cap)));
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, _desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        // The pooling allocator's table size bounds tables.
        Ok(true)
    }
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
    linker: Linker<State>,
    deadline: Duration,
    fuel: Option<u64>,
    memory_cap: usize,
    guest_log_bytes: usize,
    slots: Semaphore,
    _ticker: EpochTicker,
}

impl Runtime {
    /// A runtime with these limits: pooling allocator sized for `max_instances`, epoch interruption, WASI p2 without
    /// files or network, and the `websockets` imports.
    pub fn new(limits: &Limits) -> anyhow::Result<Self> {
        let mut pool = PoolingAllocationConfig::default();
        let instances = limits.max_instances.max(1);
        pool.total_component_instances(instances)
            .total_core_instances(instances.saturating_mul(4))
            .total_memories(instances.saturating_mul(2))
            .total_tables(instances.saturating_mul(4))
            .total_stacks(instances)
            .max_memory_size(limits.handler_memory);
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .consume_fuel(limits.fuel.is_some())
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(anyhow::Error::from).context("creating the wasmtime engine")?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(anyhow::Error::from).context("linking WASI")?;
        bindings::Handler::add_to_linker::<State, wasmtime::component::HasSelf<State>>(&mut linker, |state| state)
            .map_err(anyhow::Error::from)
            .context("linking the websockets interface")?;
        let ticker = EpochTicker::start(engine.clone())?;
        Ok(Self {
            engine,
            linker,
            deadline: limits.handler_deadline,
            fuel: limits.fuel,
            memory_cap: limits.handler_memory,
            guest_log_bytes: limits.guest_log_bytes,
            slots: Semaphore::new(instances as usize),
            _ticker: ticker,
        })
    }

    /// Compiles a component and checks it against the `handler` world: its imports must be satisfiable and it must
    /// export `on-event`. The error says which.
    pub fn compile(&self, name: &str, bytes: &[u8]) -> anyhow::Result<Handler> {
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")?;
        self.check(name, &component)
    }

    /// Like [`Runtime::compile`], through an on-disk cache of compiled code in `cache_dir` keyed by `version` (the
    /// content hash of `bytes`) and this engine's settings. Returns the handler and whether it came from the cache.
    ///
    /// The cache holds native code the host will run: it must be a directory only this host can write (it is
    /// created with mode 0700).
    pub fn compile_cached(
        &self,
        name: &str,
        bytes: &[u8],
        version: &str,
        cache_dir: &Path,
    ) -> anyhow::Result<(Handler, bool)> {
        let mut settings = std::hash::DefaultHasher::new();
        self.engine.precompile_compatibility_hash().hash(&mut settings);
        let file = cache_dir.join(format!("{version}-{:016x}.cwasm", settings.finish()));
        if file.is_file() {
            // SAFETY: the file was written by `Component::serialize` of this host into its private cache directory
            // (see above); `deserialize_file` also checks that it was compiled for this engine's settings.
            #[allow(unsafe_code)]
            let cached = unsafe { Component::deserialize_file(&self.engine, &file) };
            match cached {
                Ok(component) => return Ok((self.check(name, &component)?, true)),
                Err(err) => {
                    tracing::warn!(file = %file.display(), "ignoring an unusable cache entry: {err:#}")
                }
            }
        }
        let component = Component::new(&self.engine, bytes)
            .map_err(anyhow::Error::from)
            .context("not a valid WebAssembly component")?;
        let handler = self.check(name, &component)?;
        if let Err(err) = write_cache_entry(cache_dir, &file, &component) {
            tracing::warn!(dir = %cache_dir.display(), "cannot write the compile cache: {err:#}");
        }
        Ok((handler, false))
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
        Ok(Handler { name: name.to_owned(), pre })
    }

    /// Runs one event through a fresh instance of `handler`, then drops the instance.
    pub async fn call(
        &self,
        handler: &Handler,
        event: Event,
        services: Arc<dyn HostServices>,
    ) -> Result<(), CallError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|err| CallError::Instantiate { handler: handler.name.clone(), message: err.to_string() })?;
        let log = guest_log::GuestLog::new(&handler.name, event.conn.id(), self.guest_log_bytes);
        let wasi = WasiCtxBuilder::new().stdout(log.stream("stdout")).stderr(log.stream("stderr")).build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            memory: MemoryCap { cap: self.memory_cap, hit: false },
            event,
            handler: handler.name.clone(),
            services,
            deadline: Instant::now() + self.deadline,
            yielded: Arc::new(AtomicU64::new(0)),
            handles: 0,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.memory);
        if let Some(fuel) = self.fuel {
            store.set_fuel(fuel).map_err(|err| CallError::Instantiate {
                handler: handler.name.clone(),
                message: format!("setting fuel: {err}"),
            })?;
        }
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|ctx| {
            let state = ctx.data();
            let yielded = Duration::from_nanos(state.yielded.load(Ordering::Acquire));
            if Instant::now() >= state.deadline + yielded {
                return Ok(UpdateDeadline::Interrupt);
            }
            // Give the tokio worker back between ticks so a long call does not starve other connections. tokio's own
            // yield lets the I/O driver run first; wasmtime's plain `Yield` wakes at once and can starve it. The time
            // spent away does not count against the deadline: on a busy host a fan-out would otherwise be cut off
            // half-way for the others' work.
            let yielded = state.yielded.clone();
            Ok(UpdateDeadline::YieldCustom(
                1,
                Box::pin(async move {
                    let away = Instant::now();
                    tokio::task::yield_now().await;
                    let nanos = u64::try_from(away.elapsed().as_nanos()).unwrap_or(u64::MAX);
                    yielded.fetch_add(nanos, Ordering::AcqRel);
                }),
            ))
        });
        let result = match handler.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance.call_on_event(&mut store).await,
            Err(err) => {
                return Err(if store.data().memory.hit {
                    CallError::OutOfMemory { handler: handler.name.clone(), cap: self.memory_cap }
                } else {
                    CallError::Instantiate { handler: handler.name.clone(), message: format!("{err:#}") }
                });
            }
        };
        result.map_err(|err| match self.classify(&handler.name, &store, err) {
            // What the guest printed last is usually why it trapped (an exception, a traceback, a panic message).
            CallError::Trap { handler, message } => {
                let tail = log.stderr_tail();
                let message = if tail.is_empty() { message } else { format!("{tail}; {message}") };
                CallError::Trap { handler, message }
            }
            other => other,
        })
    }

    fn classify(&self, handler: &str, store: &Store<State>, err: wasmtime::Error) -> CallError {
        let handler = handler.to_owned();
        if store.data().memory.hit {
            CallError::OutOfMemory { handler, cap: self.memory_cap }
        } else if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            CallError::Timeout { handler, deadline: self.deadline }
        } else if let (Some(Trap::OutOfFuel), Some(fuel)) = (err.downcast_ref::<Trap>(), self.fuel) {
            CallError::OutOfFuel { handler, fuel }
        } else {
            CallError::Trap { handler, message: format!("{err:?}") }
        }
    }
}

/// Writes a compiled component into the cache atomically (a temp file renamed into place).
fn write_cache_entry(dir: &Path, file: &Path, component: &Component) -> anyhow::Result<()> {
    create_private_dir(dir)?;
    let serialized = component.serialize().map_err(anyhow::Error::from).context("serializing")?;
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
