//! Measures what the runtime alone costs per event, with no socket or connection around it: a fresh instance of a
//! handler, one event and the instance dropped (`per-event`), and an event in an instance kept between events
//! (`shared`, `per-connection`). Prints figures; asserts nothing.
//!
//! Run with `cargo run --release -p wasmsock --example per_event -- [CALLS] [COMPONENT.wasm ...]` (by default 10,000
//! calls per round to `target/wasm32-wasip2/guest/echo.wasm`, built by `cargo xtask guests`). Several components take
//! turns, for comparing two builds of a guest in one run. `PER_EVENT_CASES=kept` runs only the cases whose name has
//! that text in it (for a profile of one).

#![allow(clippy::print_stdout)]

use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use wasmsock::runtime::{
    Connection, Event, Gathered, HostServices, KvFuture, KvService, Lookup, MembersSurvey, Runtime, Survey,
};
use wasmsock::wire::channel::MembersPage;
use wasmsock::wire::descriptor::Lifecycle;
use wasmsock::wire::kv::{Alarm, ConfigSnapshot, Entry, KeysPage, KvError, PutOptions, Usage};
use wasmsock::wire::{
    ClientInfo, ClientOptions, ConnError, ConnLimits, ConnState, Direction, EventKind, Frame, Payload,
};

/// A connection that only counts what is sent to it.
#[derive(Debug, Default)]
struct Sink {
    limits: ConnLimits,
    sent: Mutex<u64>,
}

impl Connection for Sink {
    fn id(&self) -> &str {
        "c1"
    }
    fn info(&self) -> ClientInfo {
        ClientInfo {
            id: "c1".into(),
            uri: "/websockets/service/echo".into(),
            handler: "bench/echo".into(),
            endpoint: Some("echo".into()),
            direction: Direction::Inbound,
            state: ConnState::Open,
            protocol: None,
        }
    }
    fn limits(&self) -> &ConnLimits {
        &self.limits
    }
    fn send(&self, _frame: Frame) -> Result<(), ConnError> {
        *self.sent.lock().unwrap_or_else(|e| e.into_inner()) += 1;
        Ok(())
    }
    fn close(&self, _code: Option<u16>, _reason: Option<String>) -> Result<(), ConnError> {
        Ok(())
    }
    fn attachment(&self) -> Option<Vec<u8>> {
        None
    }
    fn set_attachment(&self, _data: Option<Vec<u8>>) -> Result<(), ConnError> {
        Ok(())
    }
}

/// Services with nothing behind them.
struct Nothing;

impl HostServices for Nothing {
    fn connection(&self, _project: &str, _id: &str) -> Option<Arc<dyn Connection>> {
        None
    }
    fn remote_connection(&self, _project: &str, _id: &str) -> Lookup {
        Box::pin(async { None })
    }
    fn connections(&self, _project: &str) -> Vec<ClientInfo> {
        Vec::new()
    }
    fn remote_connections(&self, _project: &str) -> Survey {
        Box::pin(async { Gathered::default() })
    }
    fn client_by_handler(&self, _project: &str, _handler: &str) -> Lookup {
        Box::pin(async { None })
    }
    fn create_websocket(
        &self,
        _project: &str,
        _uri: &str,
        _handler: &str,
        _options: ClientOptions,
    ) -> Result<Arc<dyn Connection>, ConnError> {
        Err(ConnError::Invalid("not in this benchmark".into()))
    }
    fn join(&self, _project: &str, _conn: &dyn Connection, _channel: &str) -> Result<(), ConnError> {
        Ok(())
    }
    fn leave(&self, _project: &str, _conn: &dyn Connection, _channel: &str) -> Result<bool, ConnError> {
        Ok(false)
    }
    fn channels_of(&self, _project: &str, _conn: &dyn Connection) -> Vec<String> {
        Vec::new()
    }
    fn publish(&self, _project: &str, _channel: &str, _frame: Frame, _skip: Option<&str>) -> Result<u32, ConnError> {
        Ok(0)
    }
    fn members(&self, _project: &str, _channel: &str, _after: Option<&str>, _limit: u32) -> MembersSurvey {
        Box::pin(async {
            Ok(Gathered { answer: MembersPage { members: Vec::new(), next: None }, missing_hosts: Vec::new() })
        })
    }
    fn set_timer(&self, _: &str, _: &dyn Connection, _: std::time::Duration, _: Vec<u8>) -> Result<u64, ConnError> {
        Err(ConnError::Invalid("no timers in this example".to_owned()))
    }
    fn cancel_timer(&self, _: &str, _: &dyn Connection, _: u64) -> bool {
        false
    }
    fn kv(&self) -> &dyn KvService {
        self
    }
    fn config(&self, _project: &str) -> Arc<ConfigSnapshot> {
        Arc::default()
    }
}

/// No store: every call is `unavailable` (the echo handler never calls it).
fn no_store<T: Send + 'static>() -> KvFuture<T> {
    Box::pin(async { Err(KvError::Unavailable("no store in this example".to_owned())) })
}

impl KvService for Nothing {
    fn get(&self, _: &str, _: &str) -> KvFuture<Option<Entry>> {
        no_store()
    }
    fn put(&self, _: &str, _: &str, _: Vec<u8>, _: PutOptions) -> KvFuture<u64> {
        no_store()
    }
    fn delete(&self, _: &str, _: &str, _: Option<u64>) -> KvFuture<()> {
        no_store()
    }
    fn increment(&self, _: &str, _: &str, _: i64, _: Option<u32>) -> KvFuture<i64> {
        no_store()
    }
    fn list(&self, _: &str, _: &str, _: Option<&str>, _: u32) -> KvFuture<KeysPage> {
        no_store()
    }
    fn get_many(&self, _: &str, _: Vec<String>) -> KvFuture<Vec<Option<Vec<u8>>>> {
        no_store()
    }
    fn set_many(&self, _: &str, _: Vec<(String, Vec<u8>)>) -> KvFuture<()> {
        no_store()
    }
    fn delete_many(&self, _: &str, _: Vec<String>) -> KvFuture<()> {
        no_store()
    }
    fn usage(&self, _: &str) -> KvFuture<Usage> {
        no_store()
    }
    fn set_alarm(&self, _: &str, _: Alarm) -> KvFuture<()> {
        no_store()
    }
    fn cancel_alarm(&self, _: &str, _: &str) -> KvFuture<bool> {
        no_store()
    }
    fn list_alarms(&self, _: &str) -> KvFuture<Vec<Alarm>> {
        no_store()
    }
}

/// Rounds per handler and event; the median is printed.
const ROUNDS: usize = 5;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let calls: u32 = match args.first().map(|first| first.parse()) {
        Some(Ok(calls)) => {
            args.remove(0);
            calls
        }
        _ => 10_000,
    };
    if args.is_empty() {
        args.push("target/wasm32-wasip2/guest/echo.wasm".into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(async {
        let rt = Runtime::new(&wasmsock::Limits::default())?;
        let mut handlers = Vec::new();
        for path in &args {
            let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
            handlers.push((path, rt.compile("bench/echo", bytes)?));
        }
        let conn = Arc::new(Sink::default());
        let services: Arc<dyn HostServices> = Arc::new(Nothing);
        // 64 bytes of text, as the echo benchmarks send.
        let message = EventKind::Message(Payload::Text("m".repeat(64).into()));
        // (what is measured, the event, whether the instance is kept between events as `shared` keeps it).
        let cases = [
            ("onopen, fresh instance", EventKind::Open, false),
            ("onmessage, fresh instance", message.clone(), false),
            ("onclose, fresh instance", EventKind::Close, false),
            ("onmessage, kept instance", message, true),
        ];
        // `PER_EVENT_CASES=kept` (a part of a case's name) runs only the cases that match: for profiling one of them.
        let only = std::env::var("PER_EVENT_CASES").unwrap_or_default();
        let cases: Vec<_> = cases.into_iter().filter(|(name, _, _)| name.contains(only.as_str())).collect();
        // CPU µs per call, per handler and case, one entry per round. The handlers take turns in every round, so a
        // change of the machine's speed (it moves from minute to minute) touches them alike.
        let mut figures = vec![vec![Vec::new(); cases.len()]; handlers.len()];
        for round in 0..=ROUNDS {
            for (h, (_, handler)) in handlers.iter().enumerate() {
                for (c, (_, kind, keep)) in cases.iter().enumerate() {
                    let mut kept = None;
                    // A kept instance costs a small part of a fresh one: ten times the calls for as long a round.
                    let n = if *keep { calls.saturating_mul(10) } else { calls };
                    let cpu = cpu_time();
                    for _ in 0..n {
                        let event =
                            Event { conn: conn.clone(), kind: kind.clone(), started: std::time::Instant::now() };
                        if *keep {
                            rt.call_resident(&mut kept, Lifecycle::Shared, handler, event, services.clone()).await?;
                        } else {
                            rt.call(handler, event, services.clone()).await?;
                        }
                    }
                    if round > 0 {
                        // Round 0 warms the pool's slots and the allocator up.
                        figures[h][c].push((cpu_time() - cpu) * 1e6 / f64::from(n));
                    }
                }
            }
        }
        println!("CPU µs per event (median of {ROUNDS} rounds of {calls} calls, 10 times as many kept; min-max):");
        for ((path, _), per_case) in handlers.iter().zip(&mut figures) {
            println!("{path}");
            for ((name, _, _), runs) in cases.iter().zip(per_case) {
                runs.sort_by(f64::total_cmp);
                let (median, low, high) = (runs[runs.len() / 2], runs[0], runs[runs.len() - 1]);
                println!("  {name:<26} {median:>8.2}  ({low:.2}-{high:.2})");
            }
        }
        println!("messages sent by the handlers: {}", conn.sent.lock().unwrap_or_else(|e| e.into_inner()));
        anyhow::Ok(())
    })
}

/// The process's user + system CPU time in seconds.
fn cpu_time() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    #[allow(unsafe_code)]
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
