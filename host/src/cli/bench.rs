//! `wasmsock bench`: a load generator for a WebSocket server on loopback (echo throughput and latency, handshakes
//! per second, memory per idle connection), any server, not only this host.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::Uri;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::remote::output;

// The bench's own defaults (a client's, not limits of the host, so they live here rather than in limits.rs).

/// Connections opened by default: enough to keep a server's event loop busy, few enough for any `ulimit -n`.
const DEFAULT_CONNECTIONS: usize = 100;
/// Messages (echo) or handshakes (connect) by default.
const DEFAULT_COUNT: u64 = 100_000;
/// The time bound by default, in seconds: a run ends at its count or at this, whichever comes first.
const DEFAULT_DURATION_SECS: u64 = 10;
/// How long the `idle` mode holds its connections before reading the server's memory, in seconds.
const DEFAULT_HOLD_SECS: u64 = 2;
/// How long to wait for the replies still in flight when the time is up, and for one handshake.
const SETTLE: Duration = Duration::from_secs(5);
/// The client's socket read buffer: small, so 10,000 idle clients do not cost the machine gigabytes.
const CLIENT_READ_BUFFER: usize = 4 << 10;
/// Linux's `USER_HZ`: the unit of utime and stime in `/proc/PID/stat` on every architecture Linux supports today.
const CLOCK_TICKS_PER_SEC: u64 = 100;

/// What to measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Messages echoed: each connection keeps `--in-flight` messages outstanding and sends one per reply.
    Echo,
    /// Handshakes: `--connections` clients at a time open a connection and close it again.
    Connect,
    /// Idle connections: open `--connections`, hold them, and read the server's memory (with `--server-pid`).
    Idle,
}

/// Arguments of `wasmsock bench` (Run with `wasmsock bench ws://127.0.0.1:8080/websockets/service/echo`).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The WebSocket URL to load; its host must be a loopback address or `localhost`.
    pub url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Connections (echo, idle), or concurrent handshakes (connect).
    #[arg(long, short = 'c', default_value_t = DEFAULT_CONNECTIONS)]
    pub connections: usize,
    /// Messages each echo connection keeps in flight.
    #[arg(long, short = 'w', default_value_t = 1)]
    pub in_flight: usize,
    /// Message size in bytes (echo).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Messages (echo) or handshakes (connect) to complete; the run stops at this or at `--duration-secs`.
    #[arg(long, short = 'n', default_value_t = DEFAULT_COUNT)]
    pub count: u64,
    /// The time bound, in seconds.
    #[arg(long, default_value_t = DEFAULT_DURATION_SECS)]
    pub duration_secs: u64,
    /// How long to hold the idle connections before reading the server's memory, in seconds (idle).
    #[arg(long, default_value_t = DEFAULT_HOLD_SECS)]
    pub hold_secs: u64,
    /// The server's process id: adds its CPU time per message or handshake (from /proc/PID/stat) and its memory.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Print one JSON object instead of text for people.
    #[arg(long)]
    pub json: bool,
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Counters the connections share.
#[derive(Debug, Default)]
struct Shared {
    /// Messages or handshakes started (claimed against `--count`).
    started: AtomicU64,
    /// Completed.
    done: AtomicU64,
    /// Failed: a connection error, a wrong reply, or a reply that did not come.
    errors: AtomicU64,
}

impl Shared {
    /// Claims one more unit of work, if the count and the time allow it.
    fn claim(&self, count: u64, until: Instant) -> bool {
        Instant::now() < until && self.started.fetch_add(1, Ordering::Relaxed) < count
    }
}

/// What the server process used, from /proc.
#[derive(Debug, Clone, Copy)]
struct ProcSample {
    cpu_ticks: u64,
    rss_kib: u64,
}

impl BenchArgs {
    /// Runs the benchmark and prints its report.
    pub async fn run(self) -> anyhow::Result<()> {
        let report = self.measure().await?;
        let text = if self.json { report.to_string() } else { human(&report) };
        output(&text);
        Ok(())
    }

    /// Runs the benchmark and returns its report as JSON (the `--json` output).
    pub async fn measure(&self) -> anyhow::Result<Value> {
        check_loopback(&self.url)?;
        if self.connections == 0 || self.in_flight == 0 {
            bail!("--connections and --in-flight must be at least 1");
        }
        let mut report = match self.mode {
            Mode::Echo => self.echo().await?,
            Mode::Connect => self.connect().await?,
            Mode::Idle => self.idle().await?,
        };
        report["url"] = json!(self.url);
        Ok(report)
    }

    fn sample(&self) -> anyhow::Result<Option<ProcSample>> {
        self.server_pid.map(proc_sample).transpose()
    }

    async fn echo(&self) -> anyhow::Result<Value> {
        let mut clients = Vec::with_capacity(self.connections);
        for _ in 0..self.connections {
            clients.push(open(&self.url).await?);
        }
        let shared = Arc::new(Shared::default());
        let payload: Arc<str> = "x".repeat(self.size).into();
        let before = self.sample()?;
        let started = Instant::now();
        let until = started + Duration::from_secs(self.duration_secs);
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|ws| {
                let (shared, payload, count, in_flight) = (shared.clone(), payload.clone(), self.count, self.in_flight);
                tokio::spawn(echo_connection(ws, shared, payload, count, in_flight, until))
            })
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.context("an echo connection's task failed")?);
        }
        let elapsed = started.elapsed();
        let after = self.sample()?;
        let done = shared.done.load(Ordering::Relaxed);
        let mut report = summary("echo", done, shared.errors.load(Ordering::Relaxed), elapsed, latencies);
        report["connections"] = json!(self.connections);
        report["in_flight"] = json!(self.in_flight);
        report["size"] = json!(self.size);
        add_server(&mut report, before, after, done, "server_cpu_us_per_message");
        Ok(report)
    }

    async fn connect(&self) -> anyhow::Result<Value> {
        let shared = Arc::new(Shared::default());
        let before = self.sample()?;
        let started = Instant::now();
        let until = started + Duration::from_secs(self.duration_secs);
        let tasks: Vec<_> = (0..self.connections)
            .map(|_| tokio::spawn(connect_loop(self.url.clone(), shared.clone(), self.count, until)))
            .collect();
        let mut latencies = Vec::new();
        for task in tasks {
            latencies.extend(task.await.context("a connecting task failed")?);
        }
        let elapsed = started.elapsed();
        let after = self.sample()?;
        let done = shared.done.load(Ordering::Relaxed);
        let mut report = summary("connect", done, shared.errors.load(Ordering::Relaxed), elapsed, latencies);
        report["concurrency"] = json!(self.connections);
        add_server(&mut report, before, after, done, "server_cpu_us_per_handshake");
        Ok(report)
    }

    async fn idle(&self) -> anyhow::Result<Value> {
        let before = self.sample()?;
        let started = Instant::now();
        let until = started + Duration::from_secs(self.duration_secs.max(1));
        let mut clients = Vec::with_capacity(self.connections);
        let mut errors = 0u64;
        while clients.len() < self.connections && Instant::now() < until {
            // Open them a batch at a time: fast, without a thundering herd on the server's accept queue.
            let batch = (self.connections - clients.len()).min(100);
            let opened = futures_util::future::join_all((0..batch).map(|_| open(&self.url))).await;
            for ws in opened {
                match ws {
                    Ok(ws) => clients.push(ws),
                    Err(err) => {
                        errors += 1;
                        tracing::debug!("{err:#}");
                    }
                }
            }
            if errors > 0 {
                break; // Usually `ulimit -n`: report what was opened rather than hammer on.
            }
        }
        let opened_in = started.elapsed();
        tokio::time::sleep(Duration::from_secs(self.hold_secs)).await;
        let after = self.sample()?;
        let open_now = clients.len();
        let mut report = json!({
            "mode": "idle",
            "connections": open_now,
            "errors": errors,
            "seconds_to_open": opened_in.as_secs_f64(),
        });
        if let (Some(before), Some(after)) = (before, after) {
            report["server_rss_kib_before"] = json!(before.rss_kib);
            report["server_rss_kib_after"] = json!(after.rss_kib);
            if open_now > 0 {
                let per = (after.rss_kib.saturating_sub(before.rss_kib) as f64) * 1024.0 / open_now as f64;
                report["server_rss_bytes_per_connection"] = json!(per.round());
            }
        }
        // Close them all, bounded: a server that does not answer does not hold the bench.
        let closing = clients.into_iter().map(|mut ws| async move {
            let _ = tokio::time::timeout(SETTLE, async {
                let _ = ws.send(Message::Close(None)).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
        });
        futures_util::future::join_all(closing).await;
        Ok(report)
    }
}

/// Refuses anything but loopback: this is a tool for measuring one's own server, not for loading someone else's.
fn check_loopback(url: &str) -> anyhow::Result<()> {
    let uri: Uri = url.parse().with_context(|| format!("{url:?} is not a URL"))?;
    if uri.scheme_str() != Some("ws") {
        bail!("{url}: only ws:// URLs can be benchmarked");
    }
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        bail!("{url}: wasmsock bench only loads servers on this machine's loopback (127.0.0.1, ::1, localhost)");
    }
    Ok(())
}

async fn open(url: &str) -> anyhow::Result<Ws> {
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let connect = tokio_tungstenite::connect_async_with_config(url, Some(config), true);
    let (ws, _) = tokio::time::timeout(SETTLE, connect)
        .await
        .with_context(|| format!("connecting to {url} timed out"))?
        .with_context(|| format!("connecting to {url}"))?;
    Ok(ws)
}

/// One echo connection: keeps `in_flight` messages outstanding until the count or the time is used up, then waits
/// (bounded) for the last replies. Returns the round-trip times in microseconds.
async fn echo_connection(
    mut ws: Ws,
    shared: Arc<Shared>,
    payload: Arc<str>,
    count: u64,
    in_flight: usize,
    until: Instant,
) -> Vec<u32> {
    let mut latencies = Vec::new();
    let mut sent: VecDeque<Instant> = VecDeque::with_capacity(in_flight);
    let message = || Message::text(payload.as_ref());
    while sent.len() < in_flight && shared.claim(count, until) {
        if ws.feed(message()).await.is_err() {
            shared.errors.fetch_add(1, Ordering::Relaxed);
            return latencies;
        }
        sent.push_back(Instant::now());
    }
    if ws.flush().await.is_err() {
        shared.errors.fetch_add(sent.len() as u64, Ordering::Relaxed);
        return latencies;
    }
    while let Some(&first) = sent.front() {
        let reply = match tokio::time::timeout_at((until.max(first) + SETTLE).into(), ws.next()).await {
            Ok(Some(Ok(reply))) => reply,
            _ => {
                // The connection failed, or the replies still owed did not come in time.
                shared.errors.fetch_add(sent.len() as u64, Ordering::Relaxed);
                return latencies;
            }
        };
        match reply {
            Message::Text(text) if text.len() == payload.len() => {
                sent.pop_front();
                latencies.push(first.elapsed().as_micros().min(u32::MAX as u128) as u32);
                shared.done.fetch_add(1, Ordering::Relaxed);
            }
            Message::Text(_) | Message::Binary(_) | Message::Close(_) => {
                sent.pop_front();
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
            Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
        }
        if shared.claim(count, until) {
            if ws.send(message()).await.is_err() {
                shared.errors.fetch_add(sent.len() as u64 + 1, Ordering::Relaxed);
                return latencies;
            }
            sent.push_back(Instant::now());
        }
    }
    let _ = tokio::time::timeout(SETTLE, async {
        let _ = ws.send(Message::Close(None)).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    latencies
}

/// Opens and closes connections one after another until the count or the time is used up; returns the handshake
/// times in microseconds.
async fn connect_loop(url: String, shared: Arc<Shared>, count: u64, until: Instant) -> Vec<u32> {
    let mut latencies = Vec::new();
    while shared.claim(count, until) {
        let started = Instant::now();
        match open(&url).await {
            Ok(mut ws) => {
                latencies.push(started.elapsed().as_micros().min(u32::MAX as u128) as u32);
                shared.done.fetch_add(1, Ordering::Relaxed);
                let _ = tokio::time::timeout(SETTLE, async {
                    let _ = ws.send(Message::Close(None)).await;
                    while let Some(Ok(_)) = ws.next().await {}
                })
                .await;
            }
            Err(err) => {
                tracing::debug!("{err:#}");
                shared.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    latencies
}

/// Throughput and latency percentiles of a run.
fn summary(mode: &str, done: u64, errors: u64, elapsed: Duration, mut latencies: Vec<u32>) -> Value {
    latencies.sort_unstable();
    // The nearest-rank percentile, in integers (per mille) so that p99.9 of 1000 values is the 999th.
    let percentile = |per_mille: usize| -> Option<u32> {
        let rank = (per_mille * latencies.len()).div_ceil(1000);
        latencies.get(rank.saturating_sub(1)).copied()
    };
    let seconds = elapsed.as_secs_f64();
    json!({
        "mode": mode,
        "completed": done,
        "errors": errors,
        "seconds": seconds,
        "per_second": if seconds > 0.0 { done as f64 / seconds } else { 0.0 },
        "latency_us": {
            "p50": percentile(500),
            "p99": percentile(990),
            "p999": percentile(999),
            "max": latencies.last(),
        },
    })
}

/// Adds the server's CPU per unit of work and its memory, when it was sampled.
fn add_server(report: &mut Value, before: Option<ProcSample>, after: Option<ProcSample>, units: u64, key: &str) {
    let (Some(before), Some(after)) = (before, after) else { return };
    let ticks = after.cpu_ticks.saturating_sub(before.cpu_ticks);
    let cpu_us = ticks * (1_000_000 / CLOCK_TICKS_PER_SEC);
    report["server_cpu_ms"] = json!(cpu_us / 1000);
    report["server_rss_kib"] = json!(after.rss_kib);
    if units > 0 {
        report[key] = json!(cpu_us as f64 / units as f64);
    }
}

/// The CPU time (utime + stime, in clock ticks, every thread included) and resident memory of process `pid`.
fn proc_sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).with_context(|| format!("reading /proc/{pid}/stat"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at indices 11 and 12.
    let number = |i: usize| -> anyhow::Result<u64> {
        fields.get(i).and_then(|f| f.parse().ok()).with_context(|| format!("/proc/{pid}/stat has no field {}", i + 3))
    };
    let cpu_ticks = number(11)? + number(12)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let rss_kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("/proc/{pid}/status has no VmRSS"))?;
    Ok(ProcSample { cpu_ticks, rss_kib })
}

/// The report as lines for people.
fn human(report: &Value) -> String {
    let get = |key: &str| super::remote::field(report, key);
    let mut lines = Vec::new();
    match report["mode"].as_str() {
        Some("idle") => {
            lines.push(format!("{} idle connections to {} ({} errors)", get("connections"), get("url"), get("errors")));
            lines.push(format!(
                "server RSS {} KiB before, {} KiB after: {} bytes per connection",
                get("server_rss_kib_before"),
                get("server_rss_kib_after"),
                get("server_rss_bytes_per_connection")
            ));
        }
        mode => {
            let latency = &report["latency_us"];
            lines.push(format!(
                "{} {}: {} completed in {:.2} s = {:.0}/s, {} errors",
                mode.unwrap_or_default(),
                get("url"),
                get("completed"),
                report["seconds"].as_f64().unwrap_or_default(),
                report["per_second"].as_f64().unwrap_or_default(),
                get("errors")
            ));
            lines.push(format!(
                "latency µs: p50 {} p99 {} p999 {} max {}",
                latency["p50"], latency["p99"], latency["p999"], latency["max"]
            ));
            for key in ["server_cpu_us_per_message", "server_cpu_us_per_handshake"] {
                if let Some(us) = report[key].as_f64() {
                    lines.push(format!("server CPU {us:.2} µs per unit ({} ms in all)", get("server_cpu_ms")));
                }
            }
        }
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_urls_are_accepted() {
        for url in ["ws://127.0.0.1:8080/x", "ws://localhost:1/", "ws://[::1]:9/e", "ws://127.0.0.2/"] {
            assert!(check_loopback(url).is_ok(), "{url}");
        }
        for url in ["ws://example.com/", "ws://10.0.0.1:80/", "wss://127.0.0.1/", "http://127.0.0.1/", "nope"] {
            assert!(check_loopback(url).is_err(), "{url}");
        }
    }

    #[test]
    fn percentiles_are_ranks_of_the_sorted_latencies() {
        let report = summary("echo", 1000, 0, Duration::from_secs(1), (1..=1000).rev().collect());
        assert_eq!(report["latency_us"]["p50"], 500);
        assert_eq!(report["latency_us"]["p99"], 990);
        assert_eq!(report["latency_us"]["p999"], 999);
        assert_eq!(report["latency_us"]["max"], 1000);
        assert_eq!(summary("echo", 0, 0, Duration::from_secs(1), Vec::new())["latency_us"]["p50"], Value::Null);
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = proc_sample(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
    }
}
