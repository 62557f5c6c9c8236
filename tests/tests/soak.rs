//! The soak run (ignored by default; it takes minutes): 2,000 sessions on a chat endpoint whose handler traps on 1% of
//! the messages, exchanging messages for 5 minutes through the real binary. Every message that did not trap must reach
//! every session exactly once; the host's memory is sampled and printed along the way.
//!
//! `cargo test -p wasmsock-tests --test soak -- --ignored --nocapture` (`SOAK_SECS`, `SOAK_CONNECTIONS` and
//! `SOAK_RATE` — messages per second over all sessions — change the defaults of 300 s, 2,000 and 10/s).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use wasmsock_tests::*;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// User + system CPU seconds the process has used.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    let ticks: u64 = fields.get(11..13).map(|f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum()).unwrap_or(0);
    ticks as f64 / 100.0
}

/// Whether message `i` is one of the 1% that trap. Which sessions send the trapping messages shifts every round of
/// `connections` messages, so no session traps three times in a row (the failure policy would close it).
fn traps(i: usize, connections: usize) -> bool {
    (i + i / connections) % 100 == 99
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "soak run; takes minutes and prints figures"]
async fn two_thousand_chat_sessions_lose_nothing_but_trapped_messages() {
    let secs = setting("SOAK_SECS", 300);
    let connections = setting("SOAK_CONNECTIONS", 2000) as usize;
    let rate = setting("SOAK_RATE", 10).max(1);
    let total = (secs * rate) as usize;
    let plugins = Plugins::new().handler("tests/flaky-chat", "flaky-chat").endpoint("chat", "tests/flaky-chat");
    let host = BinaryHost::start(&plugins, &[]).await;
    let pid = host.pid();
    let url = host.url("chat");
    let sockets: Vec<Ws> = futures_util::stream::iter(0..connections)
        .map(|_| {
            let url = url.clone();
            async move { connect(&url).await }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    let mut sinks = Vec::new();
    let mut readers = Vec::new();
    let received = Arc::new(AtomicUsize::new(0));
    let ending = Arc::new(AtomicBool::new(false));
    for socket in sockets {
        let (sink, mut stream) = socket.split();
        sinks.push(sink);
        let received = received.clone();
        let ending = ending.clone();
        readers.push(tokio::spawn(async move {
            // seen[i]: how often message i arrived here.
            let mut seen = vec![0u8; total];
            let mut other = 0usize;
            let mut close = None;
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Text(text) => match text.strip_prefix("m ").and_then(|i| i.parse::<usize>().ok()) {
                        Some(i) if i < total => {
                            seen[i] = seen[i].saturating_add(1);
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => other += 1,
                    },
                    Message::Close(frame) if !ending.load(Ordering::Relaxed) => {
                        close = Some(frame.map(|f| format!("{} {}", u16::from(f.code), f.reason)).unwrap_or_default());
                        break;
                    }
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            (seen, other, close)
        }));
    }
    let rss_start = rss_kib(pid);
    let cpu_start = cpu_secs(pid);
    eprintln!("soak: {connections} sessions open, host RSS {rss_start} KiB; {total} messages at {rate}/s follow");
    let started = Instant::now();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut samples = vec![(0u64, rss_start)];
    let mut trapped = 0usize;
    for i in 0..total {
        ticker.tick().await;
        // 1% trap: the handler traps on these before it sends anything.
        let text = if traps(i, connections) {
            trapped += 1;
            format!("trap {i}")
        } else {
            format!("m {i}")
        };
        sinks[i % connections].send(Message::text(text)).await.unwrap();
        let elapsed = started.elapsed().as_secs();
        if elapsed >= samples.last().unwrap().0 + 30 {
            samples.push((elapsed, rss_kib(pid)));
            eprintln!("soak: {elapsed:>4} s: {i} sent, host RSS {} KiB", samples.last().unwrap().1);
        }
    }
    let sent_in = started.elapsed();
    // Let the last fan-outs arrive (at most a minute), then close every session.
    let expected = total - (0..total).filter(|&i| traps(i, connections)).count();
    let deliveries = expected * connections;
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < deliveries && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_in = started.elapsed() - sent_in;
    let cpu = cpu_secs(pid) - cpu_start;
    let rss_end = rss_kib(pid);
    ending.store(true, Ordering::Relaxed);
    for sink in &mut sinks {
        let _ = sink.send(Message::Close(None)).await;
    }
    let (mut lost, mut duplicated, mut strays) = (0usize, 0usize, 0usize);
    let mut lost_range = (usize::MAX, 0);
    let mut closed_early = Vec::new();
    for reader in readers {
        let (seen, other, close) = tokio::time::timeout(WAIT * 3, reader).await.expect("readers end").unwrap();
        strays += other;
        if let Some(close) = close {
            closed_early.push(close);
        }
        for (i, count) in seen.iter().enumerate() {
            let trap = traps(i, connections);
            match (trap, count) {
                (false, 0) => {
                    lost += 1;
                    lost_range = (lost_range.0.min(i), lost_range.1.max(i));
                }
                (false, 1) | (true, 0) => {}
                _ => duplicated += 1,
            }
        }
    }
    let log = host.log();
    let count = |what: &str| log.iter().filter(|line| line.contains(what)).count();
    eprintln!(
        "soak: handler failures in the host log: {} traps, {} deadlines, {} out of memory",
        count("trapped: "),
        count("longer than its deadline"),
        count("past the cap")
    );
    eprintln!(
        "soak: sent in {sent_in:.0?}, the last deliveries arrived {drained_in:.1?} later; sessions closed by the host \
         before the end: {closed_early:?}; lost message indices {lost_range:?}"
    );
    eprintln!(
        "soak: {total} messages ({trapped} trapped) × {connections} sessions in {:.0?}: {deliveries} deliveries \
         expected, {lost} lost, {duplicated} duplicated or trapped-but-delivered, {strays} unexpected",
        started.elapsed()
    );
    eprintln!(
        "soak: host CPU {cpu:.1} s ({:.1} µs per delivery); RSS {rss_start} KiB at the start, {rss_end} KiB at the \
         end ({:+} KiB); samples {samples:?}",
        cpu * 1e6 / deliveries.max(1) as f64,
        rss_end as i64 - rss_start as i64
    );
    assert_eq!((lost, duplicated, strays), (0, 0, 0), "every message that did not trap reached every session once");
    assert_eq!(trapped, total - expected);
}
