//! The engine's baseline of `benches/baselines.sh`: what wasmtime alone costs for one echo event, with no host around
//! it, so that each run shows the least any host on this engine can add to a native server. It runs a component that
//! imports `get-message` and `send` of `wasmsock:websockets/websockets@0.1.4` (the floor echo of
//! `benches/floor/echo.wat`) on one thread, the imports answered by the cheapest host functions that can be written
//! (a 64-byte message copied out, the sent text dropped), and prints one JSON line per measure, each the thread's CPU
//! per event:
//!   - a kept instance's call as the host makes it (`call_async` on a fiber, epoch interruption armed to yield);
//!   - the same call made synchronously (no fiber), for reference: the host cannot make it so, since its fair share
//!     needs a call that yields;
//!   - a fresh instance per event as the host makes it (a pooled slot with the host's reset settings, the store made,
//!     the instance made from an `InstancePre`, the call, the store dropped).
//!
//! Run with: cargo run --release -p engine-floor -- COMPONENT [SECONDS]   (SECONDS per measure, default 1)
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use wasmtime::component::{Component, ComponentType, InstancePre, Lift, Linker, Lower};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store};

/// The message every event reads: the benchmarks' 64-byte text.
const MESSAGE_BYTES: usize = 64;
/// Events before a measure starts (caches, the pool's slots, the allocator warm).
const WARM_UP: u64 = 10_000;
/// Events between two looks at the clock.
const BATCH: u64 = 1_000;
/// Pooled slots: as few as a one-threaded loop needs.
const SLOTS: u32 = 16;
/// A freed memory's bytes kept resident and reset in place, as the host does (`KEEP_RESIDENT` in
/// host/src/runtime/engine.rs).
const KEEP_RESIDENT: usize = 1 << 20;
/// The interface the floor echo imports.
const INTERFACE: &str = "wasmsock:websockets/websockets@0.1.4";

/// `websockets.error` of the WIT, as `send` returns it.
#[derive(ComponentType, Lift, Lower)]
#[component(variant)]
enum WsError {
    #[component(name = "unknown-client")]
    UnknownClient(String),
    #[component(name = "closed")]
    Closed,
    #[component(name = "invalid")]
    Invalid(String),
    #[component(name = "limit")]
    Limit(String),
}

/// What the imports read and write.
struct State {
    message: String,
    sent: usize,
}

impl State {
    fn new() -> Self {
        Self { message: "x".repeat(MESSAGE_BYTES), sent: 0 }
    }
}

/// This thread's CPU time, from the scheduler's count in nanoseconds.
fn cpu() -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").context("reading /proc/thread-self/schedstat")?;
    let nanos = text.split_whitespace().next().and_then(|n| n.parse().ok());
    let Some(nanos) = nanos else { bail!("/proc/thread-self/schedstat has no CPU time: {text:?}") };
    Ok(Duration::from_nanos(nanos))
}

fn imports(engine: &Engine) -> anyhow::Result<Linker<State>> {
    let mut linker = Linker::<State>::new(engine);
    let mut ws = linker.instance(INTERFACE)?;
    ws.func_wrap("get-message", |store, (): ()| Ok((Some(store.data().message.clone()),)))?;
    ws.func_wrap("send", |mut store, (message,): (String,)| {
        store.data_mut().sent += message.len();
        Ok((Ok::<(), WsError>(()),))
    })?;
    Ok(linker)
}

/// A store armed as the host arms a kept or fresh instance's: yield at every epoch tick.
fn store(engine: &Engine) -> Store<State> {
    let mut store = Store::new(engine, State::new());
    store.set_epoch_deadline(1);
    store.epoch_deadline_async_yield_and_update(1);
    store
}

/// Runs `event` for `seconds` after a warm-up and returns the CPU per event in µs.
async fn measure(seconds: Duration, mut event: impl AsyncFnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    for _ in 0..WARM_UP {
        event().await?;
    }
    let (wall, start) = (Instant::now(), cpu()?);
    let mut events = 0u64;
    while wall.elapsed() < seconds {
        for _ in 0..BATCH {
            event().await?;
        }
        events += BATCH;
    }
    Ok((cpu()? - start).as_secs_f64() * 1e6 / events as f64)
}

fn print(server: &str, micros: f64) {
    println!(r#"{{"kind": "echo", "server": "{server}", "server_cpu_us_per_message": {micros:.4}}}"#);
}

async fn run(path: &str, seconds: Duration) -> anyhow::Result<()> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config)?;
    let component =
        Component::from_file(&engine, path).map_err(anyhow::Error::from).with_context(|| format!("loading {path}"))?;
    let linker = imports(&engine)?;

    let mut kept = store(&engine);
    let instance = linker.instantiate_async(&mut kept, &component).await?;
    let on_event = instance.get_typed_func::<(), ()>(&mut kept, "on-event")?;
    let kept_call = measure(seconds, async || {
        on_event.call_async(&mut kept, ()).await?;
        Ok(())
    })
    .await?;
    print("wasmtime alone: floor echo, kept instance", kept_call);

    let mut sync = Store::new(&engine, State::new());
    sync.set_epoch_deadline(u64::MAX);
    let instance = linker.instantiate(&mut sync, &component)?;
    let on_event = instance.get_typed_func::<(), ()>(&mut sync, "on-event")?;
    let sync_call = measure(seconds, async || Ok(on_event.call(&mut sync, ())?)).await?;
    print("wasmtime alone: floor echo, kept instance, sync call", sync_call);

    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(SLOTS)
        .total_core_instances(SLOTS * 4)
        .total_memories(SLOTS * 2)
        .total_tables(SLOTS * 4)
        .total_stacks(SLOTS)
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    let pooled = Engine::new(&config)?;
    let component =
        Component::from_file(&pooled, path).map_err(anyhow::Error::from).with_context(|| format!("loading {path}"))?;
    let pre: InstancePre<State> = imports(&pooled)?.instantiate_pre(&component)?;
    let fresh = measure(seconds, async || {
        let mut store = store(&pooled);
        let instance = pre.instantiate_async(&mut store).await?;
        let on_event = instance.get_typed_func::<(), ()>(&mut store, "on-event")?;
        on_event.call_async(&mut store, ()).await?;
        Ok(())
    })
    .await?;
    print("wasmtime alone: floor echo, fresh instance", fresh);
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else { bail!("usage: engine-floor COMPONENT [SECONDS]") };
    let seconds = match args.next() {
        Some(s) => s.parse::<f64>().with_context(|| format!("SECONDS {s:?} is not a number"))?,
        None => 1.0,
    };
    let seconds = Duration::try_from_secs_f64(seconds).with_context(|| format!("SECONDS {seconds} is out of range"))?;
    let runtime = tokio::runtime::Builder::new_current_thread().build().context("building the runtime")?;
    runtime.block_on(run(&path, seconds))
}
