//! Timers on connections: the ticker example ticks in order with the session's messages and stops on `stop`; no timer
//! fires after the connection's onclose (its timers go with it, and the project's count with them); a timer's event
//! is `ontimer` to `get-event`, a message without one to `get-method` and `get-message`; the delay, payload, the
//! per-connection cap and the project's quota (host flag and `project.json`) each refused with a clear error.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use wasmsock::wire::{Limits, ProjectQuotas};
use wasmsock_tests::*;

async fn command(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    text(ws).await
}

fn plugins() -> Plugins {
    Plugins::new()
        .handler("app/ticker", "ticker")
        .endpoint("ticker", "app/ticker")
        .handler("app/probe", "timer-probe")
        .endpoint("probe", "app/probe")
}

/// The `ontimer` events `handler` has run, as the metrics count them.
fn timer_events(host: &TestHost, handler: &str) -> f64 {
    let scrape = Scrape::parse(&host.app.metrics.encode().unwrap());
    scrape.get(&format!(r#"wasmsock_events_total{{handler="{handler}",method="ontimer"}}"#))
}

#[tokio::test]
async fn ticks_come_in_order_between_the_sessions_messages_and_stop() {
    let host = TestHost::start(plugins()).await;
    let mut ws = host.connect("ticker?every=40").await;
    let mut seen = Vec::new();
    let mut sent = 0;
    while seen.iter().filter(|m: &&String| m.starts_with("tick")).count() < 6 {
        if sent < 5 {
            send(&mut ws, &format!("m{sent}")).await;
            sent += 1;
        }
        seen.push(text(&mut ws).await);
    }
    let ticks: Vec<&String> = seen.iter().filter(|m| m.starts_with("tick")).collect();
    assert_eq!(ticks, ["tick 1", "tick 2", "tick 3", "tick 4", "tick 5", "tick 6"], "{seen:?}");
    let echoes: Vec<&String> = seen.iter().filter(|m| m.starts_with("echo")).collect();
    assert_eq!(echoes, ["echo m0", "echo m1", "echo m2", "echo m3", "echo m4"], "{seen:?}");
    // `stop` cancels the armed timer: a tick may still be on its way, none after it.
    send(&mut ws, "stop").await;
    loop {
        let reply = text(&mut ws).await;
        if reply == "stopped" {
            break;
        }
        assert!(reply.starts_with("tick"), "{reply}");
    }
    let quiet = tokio::time::timeout(Duration::from_millis(300), next(&mut ws)).await;
    assert!(quiet.is_err(), "a tick after stop: {quiet:?}");
    assert_eq!(host.app.hub.timers_of("app"), 0);
    host.stop().await;
}

#[tokio::test]
async fn no_timer_fires_after_the_connection_closed() {
    let host = TestHost::start(plugins()).await;
    let mut ws = host.connect("ticker?every=20").await;
    assert_eq!(text(&mut ws).await, "tick 1");
    let mut probe = host.connect("probe").await;
    assert_eq!(command(&mut probe, "arm 150 late").await, "armed 1");
    assert_eq!(host.app.hub.timers_of("app"), 2);
    drop(ws);
    drop(probe);
    eventually("both sessions ended and their onclose ran", || host.app.sessions() == 0).await;
    assert_eq!(host.app.hub.timers_of("app"), 0, "the timers went with their connections");
    let ticker_events = timer_events(&host, "app/ticker");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(timer_events(&host, "app/ticker"), ticker_events, "a tick ran after onclose");
    assert_eq!(timer_events(&host, "app/probe"), 0.0, "the probe's timer ran after onclose");
    host.stop().await;
}

#[tokio::test]
async fn a_timer_event_is_ontimer_and_a_message_without_one_to_older_calls() {
    let host = TestHost::start(plugins()).await;
    let mut ws = host.connect("probe").await;
    assert_eq!(command(&mut ws, "arm 30 second").await, "armed 1");
    assert_eq!(command(&mut ws, "arm 10 first").await, "armed 2");
    assert_eq!(command(&mut ws, "arm 60 cancelled").await, "armed 3");
    assert_eq!(command(&mut ws, "cancel 3").await, "true");
    assert_eq!(command(&mut ws, "cancel 3").await, "false");
    assert_eq!(text(&mut ws).await, "fired 2 first method=Method::Onmessage message=none");
    assert_eq!(text(&mut ws).await, "fired 1 second method=Method::Onmessage message=none");
    let quiet = tokio::time::timeout(Duration::from_millis(200), next(&mut ws)).await;
    assert!(quiet.is_err(), "the cancelled timer fired: {quiet:?}");
    assert_eq!(timer_events(&host, "app/probe"), 2.0);
    host.stop().await;
}

#[tokio::test]
async fn bad_timers_and_quotas_are_refused_clearly() {
    let limits = Limits { project: ProjectQuotas { timers: 20, ..ProjectQuotas::default() }, ..Limits::default() };
    let plugins = plugins()
        .handler("small/probe", "timer-probe")
        .endpoint("small-probe", "small/probe")
        .file("small/project.json", r#"{"quotas": {"timers": 3}}"#);
    let host = TestHost::start_with(plugins, limits).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    let mut ws = host.connect("probe").await;
    let refused = command(&mut ws, "arm 0 x").await;
    assert!(refused.starts_with("error Error::Invalid") && refused.contains("1 to 86400000 ms"), "{refused}");
    let refused = command(&mut ws, "arm-big 1000").await;
    assert!(refused.starts_with("error Error::Invalid") && refused.contains("4096 bytes"), "{refused}");
    // Sixteen on one connection.
    let refused = command(&mut ws, "arm-many 17 60000").await;
    assert!(
        refused.starts_with("armed 16 then error Error::Limit") && refused.contains("at most 16 timers"),
        "{refused}"
    );
    // The project's quota of 20 over its connections.
    let mut other = host.connect("probe").await;
    let refused = command(&mut other, "arm-many 10 60000").await;
    assert!(refused.starts_with("armed 4 then error Error::Limit") && refused.contains("timers"), "{refused}");
    assert!(refused.contains("(20)") || refused.contains("20"), "{refused}");
    assert_eq!(host.app.hub.timers_of("app"), 20);
    // Another project has its own quota, from its project.json.
    let mut small = host.connect("small-probe").await;
    let refused = command(&mut small, "arm-many 5 60000").await;
    assert!(refused.starts_with("armed 3 then error Error::Limit"), "{refused}");
    let scrape = Scrape::parse(&host.app.metrics.encode().unwrap());
    assert_eq!(scrape.get(r#"wasmsock_quota_refusals_total{project="app",quota="timers"}"#), 1.0);
    // Cancelling gives room back.
    assert_eq!(command(&mut other, "cancel 1").await, "true");
    assert_eq!(command(&mut other, "arm 60000 again").await, "armed 5");
    host.stop().await;
}

/// The `onalarm` events `handler` has run.
fn alarm_events(host: &TestHost, handler: &str) -> f64 {
    let scrape = Scrape::parse(&host.app.metrics.encode().unwrap());
    scrape.get(&format!(r#"wasmsock_events_total{{handler="{handler}",method="onalarm"}}"#))
}

#[tokio::test]
async fn an_alarm_fires_once_with_no_connection_and_is_listed_replaced_and_cancelled() {
    let host = TestHost::start(plugins()).await;
    let _alarms = host.app.watch_alarms();
    let mut listener = host.connect("probe").await;
    assert_eq!(command(&mut listener, "listen").await, "listening");
    let mut ws = host.connect("probe").await;
    assert_eq!(command(&mut ws, "alarm tick 100 first").await, "ok");
    assert_eq!(command(&mut ws, "alarm gone 100 x").await, "ok");
    // Setting a name again replaces its alarm.
    assert_eq!(command(&mut ws, "alarm tick 150 second").await, "ok");
    assert_eq!(command(&mut ws, "alarms").await, "gone@app/probe,tick@app/probe");
    assert_eq!(command(&mut ws, "cancel-alarm gone").await, "true");
    assert_eq!(command(&mut ws, "cancel-alarm gone").await, "false");
    let fired = text(&mut listener).await;
    assert_eq!(fired, r#"alarm tick second send=Error::Invalid("an onalarm event has no current connection")"#);
    let quiet = tokio::time::timeout(Duration::from_millis(400), next(&mut listener)).await;
    assert!(quiet.is_err(), "another alarm event: {quiet:?}");
    assert_eq!(command(&mut ws, "alarms").await, "");
    assert_eq!(alarm_events(&host, "app/probe"), 1.0);
    host.stop().await;
}

#[tokio::test]
async fn bad_alarms_and_the_alarm_quota_are_refused_clearly() {
    let plugins = plugins()
        .handler("small/probe", "timer-probe")
        .endpoint("small-probe", "small/probe")
        .file("small/project.json", r#"{"quotas": {"alarms": 2}}"#);
    let host = TestHost::start(plugins).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    let mut ws = host.connect("small-probe").await;
    let refused = command(&mut ws, "alarm a 0 x").await;
    assert!(refused.starts_with("error Error::Invalid") && refused.contains("delay"), "{refused}");
    assert_eq!(command(&mut ws, "alarm a 60000 x").await, "ok");
    assert_eq!(command(&mut ws, "alarm b 60000 x").await, "ok");
    let refused = command(&mut ws, "alarm c 60000 x").await;
    assert!(refused.starts_with("error Error::Limit") && refused.contains("alarms (2)"), "{refused}");
    // Replacing one is not one more.
    assert_eq!(command(&mut ws, "alarm b 30000 y").await, "ok");
    // Another project's alarms are its own.
    let mut other = host.connect("probe").await;
    assert_eq!(command(&mut other, "alarms").await, "");
    assert_eq!(command(&mut other, "cancel-alarm a").await, "false");
    assert_eq!(command(&mut ws, "alarms").await, "b@small/probe,a@small/probe");
    host.stop().await;
}

#[tokio::test]
async fn an_alarm_outlives_the_host_that_set_it() {
    let plugins = plugins();
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_owned();
    let mut host = BinaryHost::start(&plugins, &["--data", &data_arg]).await;
    let mut ws = connect(&host.url("probe")).await;
    assert_eq!(command(&mut ws, "alarm later 1500 kept").await, "ok");
    host.child.kill().await.unwrap();
    // Started again: the alarm fires on the new host (at once if it fell due while none ran).
    let host = BinaryHost::start(&plugins, &["--data", &data_arg]).await;
    let mut listener = connect(&host.url("probe")).await;
    assert_eq!(command(&mut listener, "listen").await, "listening");
    let fired = tokio::time::timeout(Duration::from_secs(10), text(&mut listener)).await.expect("the alarm fired");
    assert!(fired.starts_with("alarm later kept"), "{fired}");
}
