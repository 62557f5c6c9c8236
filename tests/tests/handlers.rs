//! Misbehaving handlers: a trap, an endless loop and a runaway allocation each cost only their own event; the host, the
//! same connection and every other connection keep working.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use wasmsock::Limits;
use wasmsock_tests::*;

async fn host() -> TestHost {
    let plugins = Plugins::new()
        .handler("tests/misbehave", "misbehave")
        .endpoint("bad", "tests/misbehave")
        .handler("examples/echo", "echo")
        .endpoint("echo", "examples/echo");
    let limits = Limits { handler_deadline: Duration::from_millis(300), handler_memory: 32 << 20, ..Limits::default() };
    TestHost::start_with(plugins, limits).await
}

async fn survives(ws: &mut Ws, other: &mut Ws, request: &str, expected: &[&str]) {
    send(ws, request).await;
    let error = text(ws).await;
    assert!(error.starts_with("error: "), "{request}: {error}");
    for needle in expected {
        assert!(error.contains(needle), "{request}: {error:?} lacks {needle:?}");
    }
    send(ws, "after").await;
    assert_eq!(text(ws).await, "after", "the same connection still works after {request}");
    send(other, "other").await;
    assert_eq!(text(other).await, "other", "another connection still works after {request}");
}

#[tokio::test]
async fn a_trap_costs_only_its_own_event() {
    let host = host().await;
    let mut ws = host.connect("bad").await;
    let mut other = host.connect("echo").await;
    survives(&mut ws, &mut other, "trap", &["tests/misbehave", "trapped", "asked to trap"]).await;
    host.stop().await;
}

#[tokio::test]
async fn an_endless_loop_is_stopped_by_the_deadline() {
    let host = host().await;
    let mut ws = host.connect("bad").await;
    let mut other = host.connect("echo").await;
    let started = Instant::now();
    survives(&mut ws, &mut other, "loop", &["tests/misbehave", "deadline of 300ms"]).await;
    // Bounded, not timed: the loop must not have held the connection for anywhere near the test's wait.
    assert!(started.elapsed() < WAIT, "{:?}", started.elapsed());
    host.stop().await;
}

#[tokio::test]
async fn a_loop_does_not_stall_other_connections_while_it_runs() {
    // A single-threaded test runtime: only the epoch yields let anything else run while the guest spins.
    let plugins = Plugins::new()
        .handler("tests/misbehave", "misbehave")
        .endpoint("bad", "tests/misbehave")
        .handler("examples/echo", "echo")
        .endpoint("echo", "examples/echo");
    let limits = Limits { handler_deadline: Duration::from_secs(5), ..Limits::default() };
    let host = TestHost::start_with(plugins, limits).await;
    let mut ws = host.connect("bad").await;
    let mut other = host.connect("echo").await;
    send(&mut ws, "loop").await;
    for n in 0..5 {
        send(&mut other, &format!("n{n}")).await;
        assert_eq!(text(&mut other).await, format!("n{n}"));
    }
    // The other connection was served while the loop was still running: its error has not arrived yet.
    let pending = tokio::time::timeout(Duration::from_millis(1), futures_util::StreamExt::next(&mut ws)).await;
    assert!(pending.is_err(), "the loop ended before the other connection was served: {pending:?}");
    assert!(text(&mut ws).await.starts_with("error: "));
    host.stop().await;
}

#[tokio::test]
async fn a_runaway_allocation_hits_the_memory_cap() {
    let host = host().await;
    let mut ws = host.connect("bad").await;
    let mut other = host.connect("echo").await;
    survives(&mut ws, &mut other, "alloc", &["tests/misbehave", "memory", &(32u32 << 20).to_string()]).await;
    host.stop().await;
}

#[tokio::test]
async fn many_concurrent_traps_leave_the_host_serving() {
    let host = host().await;
    let mut sessions = Vec::new();
    for _ in 0..20 {
        sessions.push(host.connect("bad").await);
    }
    for ws in sessions.iter_mut() {
        send(ws, "trap").await;
    }
    for ws in sessions.iter_mut() {
        assert!(text(ws).await.starts_with("error: "));
    }
    let mut other = host.connect("echo").await;
    send(&mut other, "fine").await;
    assert_eq!(text(&mut other).await, "fine");
    host.stop().await;
}
