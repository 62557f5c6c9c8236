//! Bounded load runs that print figures (ignored by default; run with
//! `cargo test -p wasmsock-tests --test load -- --ignored --nocapture`). They check what must hold (nothing lost,
//! nothing leaked) and print what is measured (memory, time); they never assert on time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use wasmsock_tests::*;

/// The resident set size of a process, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Counts outbound clients in a `clients` reply of the recorder.
fn outbound_in(listing: &str) -> usize {
    listing.split(';').filter(|c| c.contains("|outbound|")).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load run; prints figures"]
async fn a_thousand_outbound_clients_open_exchange_close_and_give_their_memory_back() {
    const CLIENTS: usize = 1000;
    let peer = PeerServer::start(PeerMode::CloseAfterFirst).await;
    let plugins = Plugins::new()
        .handler("tests/recorder", "recorder")
        .endpoint_granted("rec", "tests/recorder", &[LOOPBACK])
        .handler("tests/echo", "echo");
    let host = BinaryHost::start(&plugins, &[]).await;
    let pid = host.pid();
    let mut driver = connect(&host.url("rec")).await;
    let idle = rss_kib(pid);
    // Warm up: one round of 50 so the runtime's pools and the allocator reach their working size.
    send(&mut driver, &format!("connect-many 50 {} tests/echo warm", peer.url("/"))).await;
    assert_eq!(text(&mut driver).await, "created 50, 0 failed");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if outbound_count(&mut driver).await == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the warm-up clients did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!("load: host RSS {idle} KiB idle, {} KiB after a warm-up of 50 clients", rss_kib(pid));
    // Three rounds: the first shows the cost of a round, the later ones that nothing stays behind (the allocator keeps
    // freed memory for reuse, so a leak shows as growth from round to round, not as a gap after the first).
    let start = rss_kib(pid);
    let mut after_rounds = Vec::new();
    for round in 1..=3 {
        let before = rss_kib(pid);
        let started = Instant::now();
        send(&mut driver, &format!("connect-many {CLIENTS} {} tests/echo hello", peer.url("/"))).await;
        assert_eq!(text(&mut driver).await, format!("created {CLIENTS}, 0 failed"));
        let mut peak = before;
        let mut most_open = 0;
        let round_deadline = Instant::now() + Duration::from_secs(120);
        loop {
            peak = peak.max(rss_kib(pid));
            let open = outbound_count(&mut driver).await;
            most_open = most_open.max(open);
            if open == 0 {
                break;
            }
            assert!(Instant::now() < round_deadline, "round {round}: {open} clients still open");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib(pid);
        after_rounds.push(after);
        eprintln!(
            "load: round {round}: {CLIENTS} outbound clients opened, exchanged a message and closed in {elapsed:.2?} \
             (at most {most_open} open at once); host RSS {before} KiB before, {peak} KiB peak, {after} KiB after \
             ({:.1} KiB per client at the peak)",
            (peak - before) as f64 / CLIENTS as f64
        );
        assert_eq!(outbound_count(&mut driver).await, 0, "the client list is empty after round {round}");
    }
    eprintln!(
        "load: host RSS {start} KiB before the first round, {} KiB after the last ({:+} KiB over rounds 2 and 3)",
        after_rounds[2],
        after_rounds[2] as i64 - after_rounds[0] as i64
    );
    drop(host);
}

async fn outbound_count(driver: &mut Ws) -> usize {
    send(driver, "clients").await;
    outbound_in(&text(driver).await)
}

/// Sends `probe` until an answer satisfies `done`; bounded by [`WAIT`] (a JavaScript compile takes seconds, so
/// thrice that).
async fn until_answer(ws: &mut Ws, done: impl Fn(&str) -> bool) {
    let deadline = Instant::now() + WAIT * 3;
    loop {
        send(ws, "probe").await;
        if done(&text(ws).await) {
            return;
        }
        assert!(Instant::now() < deadline, "no expected answer in time");
    }
}

async fn put(admin: &str, name: &str, bytes: &[u8]) -> serde_json::Value {
    let url = format!("http://{admin}/admin/v1/handlers/{name}");
    let response = reqwest::Client::new().put(url).body(bytes.to_vec()).send().await.unwrap();
    assert!(response.status().is_success());
    response.json().await.unwrap()
}

/// How to tell two versions of a handler apart by their answer to `probe`.
struct Versions {
    language: &'static str,
    first: &'static str,
    second: &'static str,
    is_first: fn(&str) -> bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; prints figures"]
async fn deploy_to_first_event_and_restart_times() {
    let cases = [
        Versions { language: "Rust", first: "tagged-v1", second: "tagged-v2", is_first: |a| a.starts_with("v1:") },
        // The JavaScript echo answers "probe"; the JavaScript recorder answers anything else.
        Versions { language: "JavaScript", first: "js-echo", second: "js-recorder", is_first: |a| a == "probe" },
    ];
    for case in cases {
        let first = std::fs::read(component(case.first)).unwrap();
        let second = std::fs::read(component(case.second)).unwrap();
        let plugins = Plugins::new().handler("bench/h", case.first).endpoint("h", "bench/h");
        let started = Instant::now();
        let host = BinaryHost::start(&plugins, &[]).await;
        let mut ws = connect(&host.url("h")).await;
        until_answer(&mut ws, case.is_first).await;
        let cold_start = started.elapsed();
        let admin = host.admin.clone();
        let started = Instant::now();
        let answer = put(&admin, "bench/h", &second).await;
        until_answer(&mut ws, |a| !(case.is_first)(a)).await;
        let cold = started.elapsed();
        assert_eq!(answer["from_cache"], false);
        let started = Instant::now();
        let answer = put(&admin, "bench/h", &first).await;
        until_answer(&mut ws, case.is_first).await;
        let cached = started.elapsed();
        assert_eq!(answer["from_cache"], true);
        drop(ws);
        drop(host);
        let started = Instant::now();
        let host = BinaryHost::start(&plugins, &[]).await;
        let mut ws = connect(&host.url("h")).await;
        until_answer(&mut ws, case.is_first).await;
        let restart = started.elapsed();
        eprintln!(
            "deploy: {} handler ({} KB): deploy request to first event on the new version {cold:.1?} compiling, \
             {cached:.1?} from the cache; host start to first answer {cold_start:.1?} with an empty cache, \
             {restart:.1?} with the cache warm",
            case.language,
            second.len() / 1024
        );
    }
}
