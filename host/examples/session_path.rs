//! Measures what the host's connection path costs per message with no socket under it: sessions of the real app (the
//! reader, the dispatch to a compiled handler, the outbound queue and the writer, in one task per connection) fed
//! text frames from memory, ten at a time as a socket hands over a pipelined window, each next window once the replies
//! to the last were written. The frames written are counted and dropped. Prints the process's CPU time per message
//! for each round; asserts nothing. With no kernel and no load generator on the core, a change of a few percent in
//! the path shows here where the side-by-side runs cannot resolve it.
//!
//! Run with `cargo run --release -p wasmsock --example session_path -- [MESSAGES] [ROUNDS] [COMPONENT.wasm]` (by
//! default 1,000,000 messages per round over 100 connections, 5 rounds, the echo example `plugins/examples/echo.wasm`
//! that `cargo xtask guests` builds, in a `shared` instance; `LIFECYCLE=per-connection` or `per-event` for the others). For a
//! before and after, run two builds of it in turn.

#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};

use anyhow::Context as _;
use futures_util::task::AtomicWaker;
use futures_util::{Sink, Stream};
use wasmsock::App;
use wasmsock::conn::{ConnSpec, session};
use wasmsock::wire::{ConnState, Direction, Frame, Limits, PeerError, Utf8Bytes};

/// Connections at once, as the side-by-side echo runs (`-c 100`).
const CONNECTIONS: usize = 100;
/// Messages in flight per connection (`-w 10`), handed over together as one read of a socket would.
const WINDOW: usize = 10;

/// One connection's closed loop: the reader gets a window of messages, the next once every reply to it was written.
#[derive(Default)]
struct Loop {
    /// Messages still to hand over on this connection.
    left: AtomicUsize,
    /// Replies of the window handed over last not written yet.
    awaited: AtomicUsize,
    reader: AtomicWaker,
    /// Replies written by every connection.
    written: Arc<AtomicU64>,
}

/// The messages a peer sends: windows of [`WINDOW`] text frames; it ends when `left` is spent.
struct Peer {
    state: Arc<Loop>,
    /// Frames of the current window still to hand over.
    window: usize,
    message: Utf8Bytes,
}

impl Stream for Peer {
    type Item = Result<Frame, PeerError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.window == 0 {
            // Registered before looking, so a reply written in between wakes the reader.
            self.state.reader.register(cx.waker());
            if self.state.awaited.load(Ordering::Acquire) != 0 {
                return Poll::Pending;
            }
            let left = self.state.left.load(Ordering::Acquire);
            if left == 0 {
                return Poll::Ready(None);
            }
            let window = left.min(WINDOW);
            self.state.left.fetch_sub(window, Ordering::AcqRel);
            self.state.awaited.store(window, Ordering::Release);
            self.window = window;
        }
        self.window -= 1;
        Poll::Ready(Some(Ok(Frame::Text(self.message.clone()))))
    }
}

/// Where the session writes: text frames count as replies, the rest is dropped.
struct Counter {
    state: Arc<Loop>,
}

impl Sink<Frame> for Counter {
    type Error = Infallible;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, frame: Frame) -> Result<(), Infallible> {
        if matches!(frame, Frame::Text(_)) {
            self.state.written.fetch_add(1, Ordering::Relaxed);
            if self.state.awaited.fetch_sub(1, Ordering::AcqRel) == 1 {
                self.state.reader.wake();
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn poll_close(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }
}

/// The process's CPU time so far (user and system), in microseconds, from `/proc/self/stat`.
fn cpu_us() -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").context("reading /proc/self/stat")?;
    // The fields after the command's closing parenthesis; utime and stime are the 14th and 15th of the line.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).context("no command in /proc/self/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let mut ticks = 0.0;
    for field in fields.get(11..13).context("short /proc/self/stat")? {
        ticks += field.parse::<f64>().with_context(|| format!("utime or stime in /proc/self/stat: {field}"))?;
    }
    // Clock ticks are 1/100 s on Linux.
    Ok(ticks * 10_000.0)
}

/// Runs `messages` messages over [`CONNECTIONS`] sessions of `endpoint` and returns the CPU and wall time per message
/// in microseconds.
async fn round(app: &Arc<App>, endpoint: &str, handler: &str, messages: usize) -> anyhow::Result<(f64, f64)> {
    let written = Arc::new(AtomicU64::new(0));
    let message = Utf8Bytes::from("x".repeat(64));
    let (cpu, wall) = (cpu_us()?, std::time::Instant::now());
    let mut sessions = Vec::with_capacity(CONNECTIONS);
    for i in 0..CONNECTIONS {
        let share = messages / CONNECTIONS + usize::from(i < messages % CONNECTIONS);
        let state = Arc::new(Loop { left: AtomicUsize::new(share), written: written.clone(), ..Loop::default() });
        let spec = ConnSpec {
            uri: format!("/websockets/service/{endpoint}"),
            handler: handler.to_owned(),
            endpoint: Some(endpoint.to_owned()),
            direction: Direction::Inbound,
            remote: None,
            protocol: None,
            limits: app.limits.for_conn(None),
        };
        let (conn, outbox) = app.hub.register(spec, ConnState::Open);
        let peer = Peer { state: state.clone(), window: 0, message: message.clone() };
        sessions.push(tokio::spawn(session::run(app.clone(), conn, outbox, peer, Counter { state })));
    }
    for session in sessions {
        session.await.context("a session panicked")?;
    }
    let (cpu, wall) = (cpu_us()? - cpu, wall.elapsed().as_secs_f64() * 1e6);
    let done = written.load(Ordering::Relaxed);
    anyhow::ensure!(done == messages as u64, "{done} replies written for {messages} messages");
    Ok((cpu / messages as f64, wall / messages as f64))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let messages: usize = args.next().map(|a| a.parse()).transpose().context("MESSAGES")?.unwrap_or(1_000_000);
    let rounds: usize = args.next().map(|a| a.parse()).transpose().context("ROUNDS")?.unwrap_or(5);
    let component = args
        .next()
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/examples/echo.wasm"), PathBuf::from);
    let lifecycle = std::env::var("LIFECYCLE").unwrap_or_else(|_| "shared".into());
    let root = std::env::temp_dir().join(format!("wasmsock-session-path-{}", std::process::id()));
    std::fs::create_dir_all(root.join("bench")).with_context(|| format!("creating {}", root.display()))?;
    std::fs::copy(&component, root.join("bench/echo.wasm"))
        .with_context(|| format!("copying {}", component.display()))?;
    std::fs::write(
        root.join("bench/echo.websocket"),
        format!(r#"{{"handler": "bench/echo", "endpoint": "echo", "instance": "{lifecycle}"}}"#),
    )?;
    // One worker, as the side-by-side runs pin the host to one core.
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let result = runtime.block_on(async {
        let mut limits = Limits::default();
        limits.project.resident_instances = 256;
        let (app, errors) = App::start(&root, None, limits).await?;
        anyhow::ensure!(errors.is_empty(), "loading {}: {errors:?}", component.display());
        // A first round unmeasured: the instances start and the allocator warms.
        round(&app, "echo", "bench/echo", messages / 10).await?;
        println!(
            "{} messages per round over {CONNECTIONS} connections, {lifecycle}, {}",
            messages,
            component.display()
        );
        for n in 1..=rounds {
            let (cpu, wall) = round(&app, "echo", "bench/echo", messages).await?;
            println!("round {n}: {cpu:.3} us of CPU per message ({wall:.3} us wall)");
        }
        Ok(())
    });
    let _ = std::fs::remove_dir_all(&root);
    result
}
