//! `wasmsock bench`: a load generator for a WebSocket server on loopback (echo throughput and latency, handshakes
//! per second, memory per idle connection, fan-out to a room, a fresh connection's round trip, and noise: connections
//! that send one message over and over), any server, not only this host.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use futures_util::{FutureExt as _, SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore, watch};
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
/// Room members in `fanout` mode by default (`--connections`): the room of a thousand of the channels issue.
const DEFAULT_MEMBERS: &str = "1000";
/// Publishes in flight in `fanout` mode by default (`--in-flight`): enough that the server always has the next
/// message waiting, few enough that no member falls far behind (the host's outbound queue holds 1,024 frames, and a
/// member whose queue is full is closed with 1013).
const DEFAULT_FANOUT_IN_FLIGHT: &str = "8";
/// How long `fanout` keeps sending warm-up messages until every member has received one (a server may add a member to
/// the room only after the handshake, in its open handler).
const WARM_UP: Duration = Duration::from_secs(10);
/// How often `fanout` sends a warm-up message while members are still missing.
const WARM_UP_EVERY: Duration = Duration::from_millis(100);
/// The first byte of a measured `fanout` message; the next [`STAMP_DIGITS`] are its send time.
const MEASURED: u8 = b'm';
/// The first byte of a `fanout` warm-up message (not counted).
const WARM: u8 = b'w';
/// Decimal digits of the send time (microseconds since the run began) in a measured message: 11 days.
const STAMP_DIGITS: usize = 12;
/// How long a `roundtrip` sample may take by default, in milliseconds (`--timeout-ms`), from the start of its
/// handshake to its echo; a sample that takes longer is a failure. Ten seconds: the round trip the fairness issue
/// reported as failed.
const DEFAULT_TIMEOUT_MS: u64 = 10_000;
/// Samples in flight at once in `roundtrip` mode by default (`--connections`): one, a single user's round trips one
/// after the other.
const DEFAULT_ROUND_TRIP_CONNECTIONS: &str = "1";
/// How long a `spin` connection waits before it reconnects after a failed handshake, so a server that refuses
/// connections is not hammered.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);
/// How long closing a finished `roundtrip` sample or `spin` connection may take (it is not measured).
const CLOSE_BOUND: Duration = Duration::from_secs(1);
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
    /// Fan-out to a room: `--connections` members (default 1000) and one publisher open the URL; once every member has
    /// received a warm-up message, the publisher sends messages that each member should receive once, keeping at most
    /// `--in-flight` (default 8) not yet delivered to every member; the members count what they receive. For servers
    /// that send every message to every connection on the URL, sender included (the host's chat example).
    Fanout,
    /// A fresh connection's round trip: each sample opens a connection, sends one text message (`--message`, or
    /// `--size` bytes), waits for the same text back and closes; the time is from the start of the handshake to the
    /// echo. Up to `--connections` samples (default 1) are in flight at once, one started every `--interval-ms` (0:
    /// each as soon as one ends); a sample that takes longer than `--timeout-ms`, fails to connect, is closed or gets
    /// another reply is a failure. Reports the samples, the failures by kind and the percentiles of the ones that
    /// succeeded.
    Roundtrip,
    /// Noise for another measurement: `--connections` connections each send `--message` (or `--size` bytes) and wait
    /// for a reply, over and over, reconnecting when the server closes them, until `--duration-secs` or `--count`
    /// messages in all; with `--once`, each sends it once and holds the connection until the time is up. Reports the
    /// messages sent, the replies (and those starting with `error`), the closes by code and the handshakes.
    Spin,
}

/// Arguments of `wasmsock bench` (Run with `wasmsock bench ws://127.0.0.1:8080/websockets/service/echo`).
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The WebSocket URL to load; its host must be a loopback address or `localhost`.
    pub url: String,
    /// What to measure.
    #[arg(long, value_enum, default_value_t = Mode::Echo)]
    pub mode: Mode,
    /// Connections (echo, idle, spin), concurrent handshakes (connect), room members besides the publisher (fanout,
    /// default 1000), or samples in flight at once (roundtrip, default 1).
    #[arg(
        long,
        short = 'c',
        default_value_t = DEFAULT_CONNECTIONS,
        default_value_ifs([("mode", "fanout", DEFAULT_MEMBERS), ("mode", "roundtrip", DEFAULT_ROUND_TRIP_CONNECTIONS)])
    )]
    pub connections: usize,
    /// Messages each echo or spin connection keeps in flight, or (fanout, default 8) messages published and not yet
    /// delivered to every member.
    #[arg(long, short = 'w', default_value_t = 1, default_value_if("mode", "fanout", DEFAULT_FANOUT_IN_FLIGHT))]
    pub in_flight: usize,
    /// Message size in bytes (echo, fanout; roundtrip and spin without `--message`).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// The text each message carries (roundtrip, spin), instead of `--size` bytes of `x`: e.g. `loop` for the
    /// misbehaving test handler.
    #[arg(long)]
    pub message: Option<String>,
    /// Each connection sends its message once and then holds the connection until the time is up (spin).
    #[arg(long)]
    pub once: bool,
    /// Milliseconds between the starts of two samples (roundtrip); 0: each starts as soon as a sample ends.
    #[arg(long, default_value_t = 0)]
    pub interval_ms: u64,
    /// How long one sample may take, in milliseconds, handshake included (roundtrip); longer is a failure.
    #[arg(long, default_value_t = DEFAULT_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// Messages (echo, spin), handshakes (connect), messages published (fanout) or samples (roundtrip) to complete;
    /// the run stops at this or at `--duration-secs`.
    #[arg(long, short = 'n', default_value_t = DEFAULT_COUNT)]
    pub count: u64,
    /// The time bound, in seconds.
    #[arg(long, default_value_t = DEFAULT_DURATION_SECS)]
    pub duration_secs: u64,
    /// How long to hold the idle connections before reading the server's memory, in seconds (idle).
    #[arg(long, default_value_t = DEFAULT_HOLD_SECS)]
    pub hold_secs: u64,
    /// The server's process id: adds its CPU time per message or handshake (from /proc/PID/stat), its memory and its
    /// threads' context switches, voluntary (it waited) and involuntary (preempted).
    /// Repeat it for a server of several processes (the hosts of a cluster): their figures are added up.
    #[arg(long)]
    pub server_pid: Vec<u32>,
    /// The URL the publisher opens instead of the members' (fanout): another host of the same cluster, so that every
    /// delivery crosses the broker.
    #[arg(long)]
    pub publisher_url: Option<String>,
    /// Echo: write the message that replaces a reply without flushing while more replies are already read, then
    /// flush once, as a load generator that feeds its window does (fewer system calls per message than one write
    /// each, which shows a server's own cost per message more plainly).
    #[arg(long)]
    pub pipeline: bool,
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
    /// Context switches of its threads living now: voluntary (it waited) and involuntary (the kernel preempted it).
    switches: Switches,
}

/// Context switches, summed over a process's threads.
#[derive(Debug, Clone, Copy, Default)]
struct Switches {
    voluntary: u64,
    involuntary: u64,
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
        if let Some(url) = &self.publisher_url {
            if self.mode != Mode::Fanout {
                bail!("--publisher-url is for --mode fanout only");
            }
            check_loopback(url).context("--publisher-url")?;
        }
        if self.connections == 0 || self.in_flight == 0 {
            bail!("--connections and --in-flight must be at least 1");
        }
        if self.once && self.mode != Mode::Spin {
            bail!("--once is for --mode spin only");
        }
        let mut report = match self.mode {
            Mode::Echo => self.echo().await?,
            Mode::Connect => self.connect().await?,
            Mode::Idle => self.idle().await?,
            Mode::Fanout => self.fanout().await?,
            Mode::Roundtrip => self.round_trips().await?,
            Mode::Spin => self.spin().await?,
        };
        report["url"] = json!(self.url);
        if let Some(url) = &self.publisher_url {
            report["publisher_url"] = json!(url);
        }
        Ok(report)
    }

    /// The server's CPU and memory now, every process of it added up; none without `--server-pid`.
    fn sample(&self) -> anyhow::Result<Option<ProcSample>> {
        let mut total: Option<ProcSample> = None;
        for &pid in &self.server_pid {
            let one = proc_sample(pid)?;
            let sum = total.get_or_insert(ProcSample { cpu_ticks: 0, rss_kib: 0, switches: Switches::default() });
            sum.cpu_ticks += one.cpu_ticks;
            sum.rss_kib += one.rss_kib;
            sum.switches.voluntary += one.switches.voluntary;
            sum.switches.involuntary += one.switches.involuntary;
        }
        Ok(total)
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
                let window = Window { in_flight, pipeline: self.pipeline };
                tokio::spawn(echo_connection(ws, shared, payload, count, window, until))
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
        report["pipeline"] = json!(self.pipeline);
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

    async fn fanout(&self) -> anyhow::Result<Value> {
        if self.size < 1 + STAMP_DIGITS {
            bail!("--size must be at least {} bytes in fanout mode (a marker and the send time)", 1 + STAMP_DIGITS);
        }
        let members = self.connections;
        let epoch = Instant::now();
        let mut clients = Vec::with_capacity(members);
        while clients.len() < members {
            // A batch at a time, as in `idle`.
            let batch = (members - clients.len()).min(100);
            for ws in futures_util::future::join_all((0..batch).map(|_| open(&self.url))).await {
                clients.push(ws.context("opening a room member")?);
            }
        }
        let publisher_url = self.publisher_url.as_deref().unwrap_or(&self.url);
        let mut publisher = Publisher { ws: open(publisher_url).await.context("opening the publisher")?, own: 0 };
        let room = Arc::new(Room::default());
        let (stop, stopped) = watch::channel(false);
        let tasks: Vec<_> = clients
            .into_iter()
            .map(|ws| tokio::spawn(member(ws, room.clone(), self.size, epoch, stopped.clone())))
            .collect();
        let run = self.publish(&mut publisher, &room, epoch).await;
        // Whatever happened, the members and the publisher close (bounded) before the report or the error.
        let _ = stop.send(true);
        let _ = tokio::time::timeout(SETTLE, async {
            let _ = publisher.ws.send(Message::Close(None)).await;
            while let Some(Ok(_)) = publisher.ws.next().await {}
        })
        .await;
        let mut seen = Vec::with_capacity(tasks.len());
        for task in tasks {
            seen.push(task.await.context("a room member's task failed")?);
        }
        let run = run?;

        let delivered: u64 = seen.iter().map(|m| m.received).sum();
        let missed: u64 = seen.iter().map(|m| run.published.saturating_sub(m.received)).sum();
        let unexpected: u64 = seen.iter().map(|m| m.unexpected).sum();
        let closed: Vec<String> = seen.iter().filter_map(|m| m.closed.clone()).collect();
        let behind = seen.iter().filter(|m| m.closed.is_none() && m.received < run.published).count();
        let latencies = seen.into_iter().flat_map(|m| m.latencies).collect();
        let mut report = summary("fanout", delivered, missed + unexpected, run.elapsed, latencies);
        report["members"] = json!(members);
        report["in_flight"] = json!(self.in_flight);
        report["size"] = json!(self.size);
        report["published"] = json!(run.published);
        report["published_per_second"] = json!(run.published as f64 / run.elapsed.as_secs_f64().max(f64::EPSILON));
        report["delivered"] = json!(delivered);
        report["publisher_received"] = json!(publisher.own);
        report["missed_deliveries"] = json!(missed);
        report["unexpected_messages"] = json!(unexpected);
        report["members_closed"] = json!(closed.len());
        report["members_behind"] = json!(behind);
        report["first_close"] = json!(closed.first());
        report["stalled"] = json!(run.stalled);
        add_server(&mut report, run.before, run.after, delivered, "server_cpu_us_per_delivery");
        Ok(report)
    }

    /// The publisher's side of `fanout`: warms the room up until every member has received a message, then publishes
    /// within the window until the count or the time is used up and waits (bounded) for the last deliveries.
    async fn publish(&self, publisher: &mut Publisher, room: &Room, epoch: Instant) -> anyhow::Result<Published> {
        let members = self.connections as u64;
        let warm = Message::text(char::from(WARM).to_string().repeat(self.size));
        let warm_until = Instant::now() + WARM_UP;
        loop {
            publisher.ws.send(warm.clone()).await.context("the publisher's connection failed")?;
            let next = Instant::now() + WARM_UP_EVERY;
            while room.ready.load(Ordering::SeqCst) < members && Instant::now() < next {
                publisher.wait(room, next.saturating_duration_since(Instant::now())).await?;
            }
            let ready = room.ready.load(Ordering::SeqCst);
            if ready >= members {
                break;
            }
            if Instant::now() >= warm_until {
                bail!("only {ready} of {members} members received a warm-up message within {WARM_UP:?}");
            }
        }

        let window = self.in_flight as u64;
        let before = self.sample()?;
        let started = Instant::now();
        let until = started + Duration::from_secs(self.duration_secs);
        let mut published = 0u64;
        let mut stalled = false;
        loop {
            // Publish while, with the next one, at most `window` messages are owed to the members still in the room
            // (on average): the next may go once `published + 1 - window` have been delivered to every member.
            let mut fed = false;
            while published < self.count
                && Instant::now() < until
                && room.delivered.load(Ordering::SeqCst) >= room.target((published + 1).saturating_sub(window), members)
            {
                publisher.ws.feed(stamped(epoch, self.size)).await.context("the publisher's connection failed")?;
                published += 1;
                fed = true;
            }
            if fed {
                publisher.ws.flush().await.context("the publisher's connection failed")?;
            }
            if published >= self.count || Instant::now() >= until {
                break;
            }
            if !publisher.wait_for(room, (published + 1).saturating_sub(window), members).await? {
                stalled = true;
                break;
            }
        }
        // The last deliveries: bounded, a member that lost messages does not hold the run.
        if !stalled {
            stalled = !publisher.wait_for(room, published, members).await?;
        }
        let elapsed = started.elapsed();
        let after = self.sample()?;
        Ok(Published { published, stalled, elapsed, before, after })
    }
}

impl BenchArgs {
    /// The text of a `roundtrip` or `spin` message: `--message`, or `--size` bytes of `x`.
    fn text(&self) -> Arc<str> {
        match &self.message {
            Some(text) => text.as_str().into(),
            None => "x".repeat(self.size).into(),
        }
    }

    async fn round_trips(&self) -> anyhow::Result<Value> {
        let text = self.text();
        let timeout = Duration::from_millis(self.timeout_ms);
        let interval = Duration::from_millis(self.interval_ms);
        let slots = Arc::new(Semaphore::new(self.connections));
        let before = self.sample()?;
        let started = Instant::now();
        let until = started + Duration::from_secs(self.duration_secs);
        let mut next = started;
        let mut tasks = Vec::new();
        let mut max_in_flight = 0;
        while (tasks.len() as u64) < self.count && Instant::now() < until {
            if !interval.is_zero() {
                tokio::time::sleep_until(next.into()).await;
            }
            let slot = slots.clone().acquire_owned().await.context("the sample slots closed")?;
            max_in_flight = max_in_flight.max(self.connections - slots.available_permits());
            if Instant::now() >= until {
                break;
            }
            // A sample that waited for a slot starts now; the next keeps the interval after it rather than catching
            // up with a burst.
            next = (next + interval).max(Instant::now());
            let (url, text) = (self.url.clone(), text.clone());
            tasks.push(tokio::spawn(async move {
                let outcome = round_trip(&url, &text, timeout).await;
                drop(slot);
                outcome
            }));
        }
        let samples = tasks.len() as u64;
        let mut latencies = Vec::with_capacity(tasks.len());
        let mut failures: BTreeMap<&'static str, u64> =
            RoundTripFailure::ALL.iter().map(|failure| (failure.name(), 0)).collect();
        for task in tasks {
            match task.await.context("a round trip's task failed")? {
                Ok(micros) => latencies.push(micros),
                Err(failure) => *failures.entry(failure.name()).or_default() += 1,
            }
        }
        let elapsed = started.elapsed();
        let after = self.sample()?;
        let done = latencies.len() as u64;
        let mut report = summary("roundtrip", done, samples - done, elapsed, latencies);
        report["samples"] = json!(samples);
        report["failures"] = json!(failures);
        report["concurrency"] = json!(self.connections);
        report["max_in_flight"] = json!(max_in_flight);
        report["interval_ms"] = json!(self.interval_ms);
        report["timeout_ms"] = json!(self.timeout_ms);
        report["size"] = json!(text.len());
        add_server(&mut report, before, after, samples, "server_cpu_us_per_round_trip");
        Ok(report)
    }

    async fn spin(&self) -> anyhow::Result<Value> {
        let text = self.text();
        let shared = Arc::new(Shared::default());
        let started = Instant::now();
        let until = started + Duration::from_secs(self.duration_secs);
        let (count, in_flight, once) = (self.count, self.in_flight, self.once);
        let tasks: Vec<_> = (0..self.connections)
            .map(|_| {
                let (url, text, shared) = (self.url.clone(), text.clone(), shared.clone());
                tokio::spawn(async move { spin_connection(&url, &text, once, in_flight, &shared, count, until).await })
            })
            .collect();
        let mut total = Spun::default();
        for task in tasks {
            total.add(task.await.context("a spinning connection's task failed")?);
        }
        let elapsed = started.elapsed();
        Ok(json!({
            "mode": "spin",
            "connections": self.connections,
            "once": once,
            "in_flight": in_flight,
            "size": text.len(),
            "seconds": elapsed.as_secs_f64(),
            "sent": total.sent,
            "replies": total.replies,
            "error_replies": total.error_replies,
            "handshakes": total.handshakes,
            "handshake_failures": total.handshake_failures,
            "closes": total.closes.values().sum::<u64>(),
            "close_codes": total.closes,
            "connection_errors": total.connection_errors,
        }))
    }
}

/// Why a `roundtrip` sample failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RoundTripFailure {
    /// It was not done within `--timeout-ms`.
    TimedOut,
    /// The handshake failed.
    Connect,
    /// The server closed the connection, or it ended, before the echo.
    Closed,
    /// A reply that was not the message sent.
    WrongReply,
}

impl RoundTripFailure {
    /// Every kind, for a report that names each even when it did not happen.
    const ALL: [Self; 4] = [Self::TimedOut, Self::Connect, Self::Closed, Self::WrongReply];

    /// Its key in the report's `failures`.
    fn name(self) -> &'static str {
        match self {
            Self::TimedOut => "timed_out",
            Self::Connect => "connect",
            Self::Closed => "closed",
            Self::WrongReply => "wrong_reply",
        }
    }
}

/// One `roundtrip` sample: connect, send `text`, wait for it back, all within `timeout`; then close (bounded, not
/// measured). Returns the time from the start of the handshake to the echo, in microseconds.
async fn round_trip(url: &str, text: &str, timeout: Duration) -> Result<u32, RoundTripFailure> {
    let started = Instant::now();
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let outcome = tokio::time::timeout(timeout, async {
        let (mut ws, _) =
            tokio_tungstenite::connect_async_with_config(url, Some(config), true).await.map_err(|err| {
                tracing::debug!("{err:#}");
                RoundTripFailure::Connect
            })?;
        let echoed = async {
            ws.send(Message::text(text)).await.map_err(|_| RoundTripFailure::Closed)?;
            loop {
                match ws.next().await {
                    Some(Ok(Message::Text(reply))) if reply.as_str() == text => return Ok(()),
                    Some(Ok(Message::Text(_) | Message::Binary(_))) => return Err(RoundTripFailure::WrongReply),
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => return Err(RoundTripFailure::Closed),
                }
            }
        }
        .await;
        Ok::<_, RoundTripFailure>((ws, echoed))
    })
    .await;
    let (mut ws, echoed) = outcome.map_err(|_| RoundTripFailure::TimedOut)??;
    let micros = started.elapsed().as_micros().min(u32::MAX as u128) as u32;
    let _ = tokio::time::timeout(CLOSE_BOUND, async {
        let _ = ws.send(Message::Close(None)).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    echoed.map(|()| micros)
}

/// What the connections of a `spin` run saw, added up.
#[derive(Debug, Default)]
struct Spun {
    /// Messages sent.
    sent: u64,
    /// Text or binary replies received.
    replies: u64,
    /// Text replies that start with `error` (the misbehaving test handler's answer to a failed call).
    error_replies: u64,
    /// Handshakes that succeeded (the first connection and every reconnection).
    handshakes: u64,
    /// Handshakes that failed.
    handshake_failures: u64,
    /// Close frames from the server, by code (`none` for a close without a code).
    closes: BTreeMap<String, u64>,
    /// Connections that failed or ended without a close frame.
    connection_errors: u64,
}

impl Spun {
    fn add(&mut self, other: Spun) {
        self.sent += other.sent;
        self.replies += other.replies;
        self.error_replies += other.error_replies;
        self.handshakes += other.handshakes;
        self.handshake_failures += other.handshake_failures;
        self.connection_errors += other.connection_errors;
        for (code, n) in other.closes {
            *self.closes.entry(code).or_default() += n;
        }
    }
}

/// One `spin` connection: sends `text` and waits for a reply, keeping `in_flight` outstanding, until `until` or the
/// shared count is used up; reconnects when the server closes it (with `once`: sends one message in all and does not
/// reconnect). Closes (bounded) at the end.
async fn spin_connection(
    url: &str,
    text: &str,
    once: bool,
    in_flight: usize,
    shared: &Shared,
    count: u64,
    until: Instant,
) -> Spun {
    let mut seen = Spun::default();
    let deadline = tokio::time::Instant::from(until);
    while Instant::now() < until {
        let mut ws = match tokio::time::timeout_at(deadline, open(url)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(err)) => {
                tracing::debug!("{err:#}");
                seen.handshake_failures += 1;
                tokio::time::sleep(RECONNECT_PAUSE.min(until.saturating_duration_since(Instant::now()))).await;
                continue;
            }
            Err(_) => break,
        };
        seen.handshakes += 1;
        let mut outstanding = 0;
        let ended = loop {
            let may_send = if once { seen.sent == 0 } else { outstanding < in_flight };
            if may_send && shared.claim(count, until) {
                if ws.send(Message::text(text)).await.is_err() {
                    seen.connection_errors += 1;
                    break true;
                }
                seen.sent += 1;
                outstanding += 1;
                continue;
            }
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Err(_) => break false,
                Ok(Some(Ok(Message::Text(reply)))) => {
                    seen.replies += 1;
                    seen.error_replies += u64::from(reply.as_str().starts_with("error"));
                    outstanding = outstanding.saturating_sub(1);
                }
                Ok(Some(Ok(Message::Binary(_)))) => {
                    seen.replies += 1;
                    outstanding = outstanding.saturating_sub(1);
                }
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)))) => {}
                Ok(Some(Ok(Message::Close(frame)))) => {
                    let code = frame.map_or_else(|| "none".to_owned(), |f| u16::from(f.code).to_string());
                    *seen.closes.entry(code).or_default() += 1;
                    break true;
                }
                Ok(Some(Err(_)) | None) => {
                    seen.connection_errors += 1;
                    break true;
                }
            }
            if !once && shared.started.load(Ordering::Relaxed) >= count && outstanding == 0 {
                break false;
            }
        };
        if !ended {
            let _ = tokio::time::timeout(CLOSE_BOUND, async {
                let _ = ws.send(Message::Close(None)).await;
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            break;
        }
        if once || shared.started.load(Ordering::Relaxed) >= count {
            break;
        }
    }
    seen
}

/// What the publisher of a `fanout` run did.
#[derive(Debug)]
struct Published {
    /// Measured messages published.
    published: u64,
    /// The members stopped receiving for [`SETTLE`]: the run ended early or without every delivery.
    stalled: bool,
    /// From the first measured publish until the last delivery (or the stall).
    elapsed: Duration,
    before: Option<ProcSample>,
    after: Option<ProcSample>,
}

/// Counters of a `fanout` run that the members update and the publisher reads.
#[derive(Debug)]
struct Room {
    /// Members that have received a warm-up message.
    ready: AtomicU64,
    /// Measured messages received, all members together.
    delivered: AtomicU64,
    /// Members whose connection ended before the run did.
    gone: AtomicU64,
    /// Measured messages those members had received.
    gone_delivered: AtomicU64,
    /// The publisher waits until `delivered` reaches this (`u64::MAX`: it does not wait).
    wake_at: AtomicU64,
    /// Wakes the publisher: a member became ready or left, or `delivered` reached `wake_at`.
    progress: Notify,
}

impl Default for Room {
    fn default() -> Self {
        Self {
            ready: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            gone: AtomicU64::new(0),
            gone_delivered: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            progress: Notify::new(),
        }
    }
}

impl Room {
    /// One measured message reached a member.
    fn delivered(&self) {
        let delivered = self.delivered.fetch_add(1, Ordering::SeqCst) + 1;
        if delivered >= self.wake_at.load(Ordering::SeqCst) {
            self.progress.notify_one();
        }
    }

    /// A member's connection ended after it had received `received` measured messages.
    fn gone(&self, received: u64) {
        self.gone_delivered.fetch_add(received, Ordering::SeqCst);
        self.gone.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_one();
    }

    /// The value of `delivered` at which the members still in the room have received `published` messages each, on
    /// average, besides what the members that left had received.
    fn target(&self, published: u64, members: u64) -> u64 {
        let live = members.saturating_sub(self.gone.load(Ordering::SeqCst));
        self.gone_delivered.load(Ordering::SeqCst) + published * live
    }
}

/// The publishing connection of `fanout`; it is in the room too and gets its own messages back.
struct Publisher {
    ws: Ws,
    /// Measured messages it got back.
    own: u64,
}

impl Publisher {
    /// Waits until the members still in the room have received `published` messages each (on average); false when
    /// nothing moved for [`SETTLE`].
    async fn wait_for(&mut self, room: &Room, published: u64, members: u64) -> anyhow::Result<bool> {
        loop {
            let target = room.target(published, members);
            room.wake_at.store(target, Ordering::SeqCst);
            // Checked after publishing the target, so a delivery cannot slip between the check and the wait.
            if room.delivered.load(Ordering::SeqCst) >= target {
                room.wake_at.store(u64::MAX, Ordering::SeqCst);
                return Ok(true);
            }
            if !self.wait(room, SETTLE).await? {
                return Ok(false);
            }
        }
    }

    /// Waits for the room to wake the publisher, at most `wait`, reading its own copies meanwhile (so the server never
    /// has to queue them); false if the time ran out.
    async fn wait(&mut self, room: &Room, wait: Duration) -> anyhow::Result<bool> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::select! {
                _ = room.progress.notified() => return Ok(true),
                _ = tokio::time::sleep_until(deadline) => return Ok(false),
                message = self.ws.next() => message,
            };
            match message {
                Some(Ok(Message::Text(text))) if text.as_bytes().first() == Some(&MEASURED) => self.own += 1,
                Some(Ok(Message::Close(frame))) => bail!("the server closed the publisher's connection: {frame:?}"),
                Some(Ok(_)) => {}
                Some(Err(err)) => return Err(err).context("the publisher's connection failed"),
                None => bail!("the server closed the publisher's connection"),
            }
        }
    }
}

/// A measured `fanout` message of `size` bytes: the marker, the send time in microseconds since `epoch`, padding.
fn stamped(epoch: Instant, size: usize) -> Message {
    let micros = epoch.elapsed().as_micros() % 10u128.pow(STAMP_DIGITS as u32);
    let mut text = format!("{}{micros:0width$}", char::from(MEASURED), width = STAMP_DIGITS);
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    Message::text(text)
}

/// The send time in a measured `fanout` message, in microseconds since the run's epoch.
fn stamp_of(text: &str) -> Option<u64> {
    text.get(1..1 + STAMP_DIGITS)?.parse().ok()
}

/// What one room member of `fanout` saw.
#[derive(Debug, Default)]
struct Member {
    /// Measured messages received.
    received: u64,
    /// Messages that were neither measured nor warm-up messages of the right size.
    unexpected: u64,
    /// Why the connection ended before the run did, if it did.
    closed: Option<String>,
    /// From publish to receipt of each measured message, in microseconds.
    latencies: Vec<u32>,
}

/// One room member: counts what it receives until `stop`, then closes (bounded).
async fn member(mut ws: Ws, room: Arc<Room>, size: usize, epoch: Instant, mut stop: watch::Receiver<bool>) -> Member {
    let mut seen = Member::default();
    let mut ready = false;
    loop {
        let message = tokio::select! {
            _ = stop.changed() => break,
            message = ws.next() => message,
        };
        let text = match message {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => {
                seen.closed =
                    Some(frame.map_or_else(|| "closed without a code".into(), |f| format!("{} {}", f.code, f.reason)));
                break;
            }
            Some(Ok(_)) => continue,
            Some(Err(err)) => {
                seen.closed = Some(err.to_string());
                break;
            }
            None => {
                seen.closed = Some("the connection ended".into());
                break;
            }
        };
        match text.as_bytes().first() {
            Some(&MEASURED) if text.len() == size => {
                let now = epoch.elapsed().as_micros() as u64;
                if let Some(sent) = stamp_of(text.as_str()) {
                    seen.latencies.push(now.saturating_sub(sent).min(u32::MAX as u64) as u32);
                }
                seen.received += 1;
                room.delivered();
            }
            Some(&WARM) if text.len() == size => {
                if !ready {
                    ready = true;
                    room.ready.fetch_add(1, Ordering::SeqCst);
                    room.progress.notify_one();
                }
            }
            _ => seen.unexpected += 1,
        }
    }
    if seen.closed.is_some() {
        room.gone(seen.received);
    }
    let _ = tokio::time::timeout(SETTLE, async {
        let _ = ws.send(Message::Close(None)).await;
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
    seen
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

/// How an echo connection keeps its messages in flight.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Messages outstanding.
    in_flight: usize,
    /// Flush once for the replacements of every reply already read, rather than once per message.
    pipeline: bool,
}

/// One echo connection: keeps `in_flight` messages outstanding until the count or the time is used up, then waits
/// (bounded) for the last replies. Returns the round-trip times in microseconds.
async fn echo_connection(
    mut ws: Ws,
    shared: Arc<Shared>,
    payload: Arc<str>,
    count: u64,
    window: Window,
    until: Instant,
) -> Vec<u32> {
    let Window { in_flight, pipeline } = window;
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
    // Replacements fed but not yet flushed (pipelining).
    let mut unflushed = false;
    while let Some(&first) = sent.front() {
        // Pipelining: a reply already read is taken without flushing; the replacements go out together when the
        // connection has nothing more to read at once.
        let ready = if unflushed { ws.next().now_or_never() } else { None };
        let next = match ready {
            Some(next) => Ok(next),
            None => {
                if unflushed {
                    unflushed = false;
                    if ws.flush().await.is_err() {
                        shared.errors.fetch_add(sent.len() as u64, Ordering::Relaxed);
                        return latencies;
                    }
                }
                tokio::time::timeout_at((until.max(first) + SETTLE).into(), ws.next()).await
            }
        };
        let reply = match next {
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
            let written = if pipeline { ws.feed(message()).await } else { ws.send(message()).await };
            if written.is_err() {
                shared.errors.fetch_add(sent.len() as u64 + 1, Ordering::Relaxed);
                return latencies;
            }
            unflushed = pipeline;
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
    // A thread that ended between the samples takes its switches with it: a count, not a bound.
    report["server_switches_voluntary"] = json!(after.switches.voluntary.saturating_sub(before.switches.voluntary));
    report["server_switches_involuntary"] =
        json!(after.switches.involuntary.saturating_sub(before.switches.involuntary));
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
    Ok(ProcSample { cpu_ticks, rss_kib, switches: thread_switches(pid)? })
}

/// The context switches of process `pid`'s threads, from each one's `/proc/PID/task/TID/status` (the process's own
/// status counts its main thread only). A thread that ends while they are read is skipped.
fn thread_switches(pid: u32) -> anyhow::Result<Switches> {
    let tasks = format!("/proc/{pid}/task");
    let mut sum = Switches::default();
    for task in std::fs::read_dir(&tasks).with_context(|| format!("reading {tasks}"))? {
        let Ok(status) = task.and_then(|task| std::fs::read_to_string(task.path().join("status"))) else { continue };
        for line in status.lines() {
            let count = |value: &str| -> anyhow::Result<u64> {
                value.trim().parse().with_context(|| format!("{tasks}: a thread's status says {line:?}"))
            };
            if let Some(value) = line.strip_prefix("voluntary_ctxt_switches:") {
                sum.voluntary += count(value)?;
            } else if let Some(value) = line.strip_prefix("nonvoluntary_ctxt_switches:") {
                sum.involuntary += count(value)?;
            }
        }
    }
    Ok(sum)
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
        Some("spin") => {
            lines.push(format!(
                "spin {}: {} connections{} for {:.2} s: {} sent, {} replies ({} starting with `error`)",
                get("url"),
                get("connections"),
                if report["once"] == true { ", once each" } else { "" },
                report["seconds"].as_f64().unwrap_or_default(),
                get("sent"),
                get("replies"),
                get("error_replies")
            ));
            lines.push(format!(
                "{} handshakes ({} failed), {} closes by the server {}, {} connection errors",
                get("handshakes"),
                get("handshake_failures"),
                get("closes"),
                report["close_codes"],
                get("connection_errors")
            ));
        }
        Some("roundtrip") => {
            let latency = &report["latency_us"];
            lines.push(format!(
                "roundtrip {}: {} samples in {:.2} s, {} failed {}",
                get("url"),
                get("samples"),
                report["seconds"].as_f64().unwrap_or_default(),
                get("errors"),
                report["failures"]
            ));
            lines.push(format!(
                "round trip µs (handshake and echo): p50 {} p99 {} p999 {} max {}",
                latency["p50"], latency["p99"], latency["p999"], latency["max"]
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
            if mode == Some("fanout") {
                lines.push(format!(
                    "{} members, {} published, {} missed deliveries, {} members closed, {} behind",
                    get("members"),
                    get("published"),
                    get("missed_deliveries"),
                    get("members_closed"),
                    get("members_behind")
                ));
            }
            for key in ["server_cpu_us_per_message", "server_cpu_us_per_handshake", "server_cpu_us_per_delivery"] {
                if let Some(us) = report[key].as_f64() {
                    lines.push(format!("server CPU {us:.2} µs per unit ({} ms in all)", get("server_cpu_ms")));
                    lines.push(format!(
                        "server context switches: {} voluntary, {} involuntary (preempted)",
                        get("server_switches_voluntary"),
                        get("server_switches_involuntary")
                    ));
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
    fn fanout_defaults_to_a_room_of_a_thousand_and_eight_in_flight() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let parse = |args: &[&str]| Cli::parse_from([&["wasmsock", "ws://127.0.0.1:1/"], args].concat()).bench;
        let fanout = parse(&["--mode", "fanout"]);
        assert_eq!((fanout.connections, fanout.in_flight), (1000, 8));
        let echo = parse(&[]);
        assert_eq!((echo.connections, echo.in_flight), (DEFAULT_CONNECTIONS, 1));
        let chosen = parse(&["--mode=fanout", "-c", "5", "-w", "2"]);
        assert_eq!((chosen.connections, chosen.in_flight), (5, 2));
        let round_trips = parse(&["--mode", "roundtrip"]);
        assert_eq!((round_trips.connections, round_trips.timeout_ms, round_trips.interval_ms), (1, 10_000, 0));
        assert_eq!(parse(&["--mode", "roundtrip", "-c", "7"]).connections, 7);
        assert_eq!(parse(&["--mode", "spin"]).connections, DEFAULT_CONNECTIONS);
    }

    /// A server on port 0 in this process that accepts WebSockets and never answers a message.
    async fn silent_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        format!("ws://{addr}/silent")
    }

    fn args(url: String, mode: Mode) -> BenchArgs {
        BenchArgs {
            url,
            mode,
            connections: 2,
            in_flight: 1,
            size: 64,
            count: 4,
            duration_secs: 30,
            hold_secs: 0,
            server_pid: Vec::new(),
            publisher_url: None,
            message: None,
            once: false,
            interval_ms: 0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            pipeline: false,
            json: true,
        }
    }

    #[tokio::test]
    async fn a_round_trip_without_an_echo_is_a_failure_of_its_kind() {
        let silent = BenchArgs { timeout_ms: 50, ..args(silent_server().await, Mode::Roundtrip) };
        let report = silent.measure().await.unwrap();
        assert_eq!(report["samples"], 4, "{report}");
        assert_eq!(report["completed"], 0, "{report}");
        assert_eq!(report["errors"], 4, "{report}");
        assert_eq!(report["failures"]["timed_out"], 4, "{report}");
        assert_eq!(report["latency_us"]["p50"], Value::Null, "{report}");
        // Nothing listens on the port of a listener just dropped: every sample fails to connect.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let report = args(format!("ws://{closed}/gone"), Mode::Roundtrip).measure().await.unwrap();
        assert_eq!(report["failures"]["connect"], 4, "{report}");
        assert_eq!(report["failures"]["timed_out"], 0, "{report}");
    }

    #[tokio::test]
    async fn once_is_refused_outside_spin() {
        let err = BenchArgs { once: true, ..args("ws://127.0.0.1:1/".into(), Mode::Roundtrip) }.measure().await;
        assert!(format!("{:#}", err.unwrap_err()).contains("--once"));
    }

    #[tokio::test]
    async fn spin_sends_up_to_the_count_and_counts_what_it_got_back() {
        let report = BenchArgs { duration_secs: 1, ..args(silent_server().await, Mode::Spin) }.measure().await.unwrap();
        // One in flight per connection and no reply: each of the two sent one and waited until the time was up.
        assert_eq!(report["sent"], 2, "{report}");
        assert_eq!(report["replies"], 0, "{report}");
        assert_eq!(report["handshakes"], 2, "{report}");
        assert_eq!(report["closes"], 0, "{report}");
    }

    #[test]
    fn a_measured_message_carries_its_send_time_and_has_the_size_asked_for() {
        let epoch = Instant::now() - Duration::from_secs(3);
        let Message::Text(text) = stamped(epoch, 64) else { panic!("not text") };
        assert_eq!(text.len(), 64);
        assert_eq!(text.as_bytes()[0], MEASURED);
        let sent = stamp_of(text.as_str()).unwrap();
        assert!((3_000_000..4_000_000).contains(&sent), "{sent}");
        assert_eq!(stamp_of("m12"), None);
    }

    #[test]
    fn the_delivery_target_leaves_out_members_that_left() {
        let room = Room::default();
        assert_eq!(room.target(5, 10), 50);
        room.gone(3);
        assert_eq!(room.target(5, 10), 3 + 5 * 9);
    }

    /// A broadcast server on port 0 in this process: every text message to every connection, sender included.
    async fn broadcast_server() -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (room, _) = tokio::sync::broadcast::channel::<Message>(1024);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let room = room.clone();
                tokio::spawn(async move {
                    let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else { return };
                    let (mut sink, mut stream) = ws.split();
                    let mut inbox = room.subscribe();
                    tokio::spawn(async move {
                        while let Ok(message) = inbox.recv().await {
                            if sink.send(message).await.is_err() {
                                return;
                            }
                        }
                    });
                    while let Some(Ok(message)) = stream.next().await {
                        if message.is_text() {
                            let _ = room.send(message);
                        }
                    }
                });
            }
        });
        format!("ws://{addr}/room")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn fanout_counts_every_delivery_to_every_member_once() {
        let args = BenchArgs {
            url: broadcast_server().await,
            mode: Mode::Fanout,
            connections: 20,
            in_flight: 4,
            size: 64,
            count: 300,
            duration_secs: 30,
            hold_secs: 0,
            server_pid: vec![std::process::id()],
            publisher_url: None,
            message: None,
            once: false,
            interval_ms: 0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            pipeline: false,
            json: true,
        };
        let report = args.measure().await.unwrap();
        assert_eq!(report["mode"], "fanout");
        assert_eq!(report["published"], 300, "{report}");
        assert_eq!(report["delivered"], 20 * 300, "{report}");
        assert_eq!(report["completed"], 20 * 300, "{report}");
        assert!(report["publisher_received"].as_u64().unwrap() <= 300, "{report}");
        for key in ["missed_deliveries", "unexpected_messages", "members_closed", "members_behind", "errors"] {
            assert_eq!(report[key], 0, "{key}: {report}");
        }
        assert_eq!(report["stalled"], false, "{report}");
        assert!(report["latency_us"]["p50"].is_u64(), "{report}");
        assert!(report["server_cpu_us_per_delivery"].is_f64(), "{report}");
    }

    #[tokio::test]
    async fn fanout_refuses_messages_too_small_for_the_send_time() {
        let mut args = BenchArgs {
            url: "ws://127.0.0.1:1/".into(),
            mode: Mode::Fanout,
            connections: 1,
            in_flight: 1,
            size: STAMP_DIGITS,
            count: 1,
            duration_secs: 1,
            hold_secs: 0,
            server_pid: Vec::new(),
            publisher_url: None,
            message: None,
            once: false,
            interval_ms: 0,
            timeout_ms: DEFAULT_TIMEOUT_MS,
            pipeline: false,
            json: true,
        };
        assert!(format!("{:#}", args.measure().await.unwrap_err()).contains("--size"));
        args.size = STAMP_DIGITS + 1;
        assert!(!format!("{:#}", args.measure().await.unwrap_err()).contains("--size"));
    }

    #[test]
    fn this_process_can_be_sampled() {
        let sample = proc_sample(std::process::id()).unwrap();
        assert!(sample.rss_kib > 0);
        // This thread waits on another one, which is a voluntary switch of this process.
        let before = sample.switches.voluntary;
        std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(20))).join().unwrap();
        assert!(proc_sample(std::process::id()).unwrap().switches.voluntary > before);
    }
}
