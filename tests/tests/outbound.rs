//! The outbound allow-list: a handler opens a client only to a destination its project's descriptors grant
//! (`allowed-outbound-hosts`), checked on the URI as the connector parses it. Nothing is granted by default; the
//! refusal is an `invalid` error naming the missing grant; userinfo, case, trailing dots, IPv6 and numeric or
//! percent-encoded spellings of a host neither slip past a grant nor miss one they match. The destinations are raw
//! TCP listeners on 127.0.0.1, so "reached" means a TCP connection arrived.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use tokio::net::TcpListener;
use wasmsock::Limits;
use wasmsock_tests::*;

/// How long a refused destination is watched for a connection that must not come (the refusal itself is synchronous:
/// no client exists to connect).
const QUIET: Duration = Duration::from_millis(300);

async fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

/// Whether a TCP connection arrives within `wait`.
async fn reached(listener: &TcpListener, wait: Duration) -> bool {
    tokio::time::timeout(wait, listener.accept()).await.is_ok()
}

async fn command(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    text(ws).await
}

/// A host whose clients give up connecting quickly (the listeners never answer the WebSocket handshake).
async fn host(plugins: Plugins) -> TestHost {
    let limits = Limits {
        connect_timeout: Duration::from_millis(500),
        close_timeout: Duration::from_secs(1),
        shutdown_grace: Duration::from_secs(2),
        ..Limits::default()
    };
    let host = TestHost::start_with(plugins, limits).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    host
}

fn assert_refused(reply: &str, naming: &str) {
    assert!(reply.starts_with("error Error::Invalid"), "{reply}");
    assert!(reply.contains(naming), "the refusal does not name {naming:?}: {reply}");
}

#[tokio::test]
async fn nothing_is_granted_by_default_and_the_refusal_names_the_missing_grant() {
    let (target, port) = listener().await;
    let host = host(Plugins::new().handler("deny/recorder", "recorder").endpoint("deny", "deny/recorder")).await;
    let mut driver = host.connect("deny").await;
    let reply = command(&mut driver, &format!("connect-with ws://127.0.0.1:{port}/feed deny/recorder")).await;
    assert_refused(&reply, &format!("no grant for ws://127.0.0.1:{port}"));
    assert_refused(&reply, "allowed-outbound-hosts");
    assert!(!reached(&target, QUIET).await, "a refused destination was reached");
    assert_eq!(host.app.hub.outbound(), 0);
    host.stop().await;
}

#[tokio::test]
async fn an_exact_grant_allows_that_scheme_host_and_port_only() {
    let (granted, port) = listener().await;
    let (other, other_port) = listener().await;
    let grant = format!("ws://127.0.0.1:{port}");
    let plugins =
        Plugins::new().handler("exact/recorder", "recorder").endpoint_granted("exact", "exact/recorder", &[&grant]);
    let host = host(plugins).await;
    let mut driver = host.connect("exact").await;
    let reply = command(&mut driver, &format!("connect-with ws://127.0.0.1:{port}/feed exact/recorder")).await;
    assert!(reply.starts_with("created "), "{reply}");
    assert!(reached(&granted, WAIT).await, "the granted destination was not reached");
    let reply = command(&mut driver, &format!("connect-with ws://127.0.0.1:{other_port}/ exact/recorder")).await;
    assert_refused(&reply, &format!("no grant for ws://127.0.0.1:{other_port}"));
    let reply = command(&mut driver, &format!("connect-with wss://127.0.0.1:{port}/ exact/recorder")).await;
    assert_refused(&reply, &format!("wss://127.0.0.1:{port}"));
    assert!(!reached(&other, QUIET).await, "an ungranted port was reached");
    host.stop().await;
}

#[tokio::test]
async fn a_port_wildcard_allows_every_port_of_that_host_and_no_spelling_of_it_slips_through() {
    let (first, port) = listener().await;
    let (second, second_port) = listener().await;
    let plugins =
        Plugins::new().handler("any/recorder", "recorder").endpoint_granted("any", "any/recorder", &[LOOPBACK]);
    let host = host(plugins).await;
    let mut driver = host.connect("any").await;
    for (target, p) in [(&first, port), (&second, second_port)] {
        let reply = command(&mut driver, &format!("connect-with ws://127.0.0.1:{p}/ any/recorder")).await;
        assert!(reply.starts_with("created "), "{reply}");
        assert!(reached(target, WAIT).await, "port {p} was not reached");
    }
    // Spellings that either name another host or could be resolved to one no grant names: all refused before any
    // connection is attempted.
    let tricks = [
        // userinfo: the host is what follows the @, and the part before it must never be matched.
        format!("ws://127.0.0.1:{port}@localhost:{port}/x"),
        format!("ws://user:pass@127.0.0.1:{port}/x"),
        // a name, not the granted address
        format!("ws://localhost:{port}/"),
        // numeric spellings the resolver would turn into 127.0.0.1
        format!("ws://127.1:{port}/"),
        format!("ws://2130706433:{port}/"),
        format!("ws://0x7f.0.0.1:{port}/"),
        format!("ws://0177.0.0.1:{port}/"),
        // percent-encoding in the host
        format!("ws://127.0.0.1%2e:{port}/"),
        format!("ws://%31%32%37.0.0.1:{port}/"),
        // the IPv6 form of the address
        format!("ws://[::ffff:127.0.0.1]:{port}/"),
        format!("ws://[::1]:{port}/"),
    ];
    for uri in &tricks {
        let reply = command(&mut driver, &format!("connect-with {uri} any/recorder")).await;
        assert!(reply.starts_with("error Error::Invalid"), "{uri} was not refused: {reply}");
    }
    assert!(!reached(&first, QUIET).await, "a trick reached the listener");
    host.stop().await;
}

#[tokio::test]
async fn a_named_grant_matches_any_case_one_trailing_dot_and_the_canonical_ipv6_form() {
    let (_target, port) = listener().await;
    let grants = [format!("ws://localhost:{port}"), format!("ws://[0:0:0:0:0:0:0:1]:{port}")];
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    let plugins =
        Plugins::new().handler("named/recorder", "recorder").endpoint_granted("named", "named/recorder", &grants);
    let host = host(plugins).await;
    let mut driver = host.connect("named").await;
    for uri in [
        format!("ws://localhost:{port}/"),
        format!("ws://LocalHost:{port}/"),
        format!("ws://localhost.:{port}/"),
        format!("ws://[::1]:{port}/"),
    ] {
        let reply = command(&mut driver, &format!("connect-with {uri} named/recorder")).await;
        assert!(reply.starts_with("created "), "{uri} is granted but was refused: {reply}");
    }
    for uri in [
        format!("ws://localhost:{}/", port.wrapping_add(1).max(1)),
        format!("ws://localhost..:{port}/"),
        format!("ws://localhost.example:{port}/"),
        format!("ws://127.0.0.1:{port}/"),
        format!("wss://localhost:{port}/"),
    ] {
        let reply = command(&mut driver, &format!("connect-with {uri} named/recorder")).await;
        assert!(reply.starts_with("error Error::Invalid"), "{uri} was not refused: {reply}");
    }
    host.stop().await;
}

#[tokio::test]
async fn the_relay_example_refuses_an_upstream_hidden_behind_userinfo() {
    let (target, port) = listener().await;
    // The example's own descriptor, with its own grant (loopback).
    let descriptor = std::fs::read_to_string(repo_root().join("plugins/examples/relay/relay.websocket")).unwrap();
    let plugins = Plugins::new().handler("examples/relay", "relay").file("examples/relay.websocket", descriptor);
    let host = host(plugins).await;
    // ws://127.0.0.1:1@localhost:PORT/x: the old prefix check saw 127.0.0.1; the connector would go to localhost.
    let upstream = format!("ws%3A%2F%2F127.0.0.1%3A1%40localhost%3A{port}%2Fx");
    let mut session = connect(&format!("{}?to={upstream}", host.url("relay"))).await;
    let frame = close_frame(&mut session).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4403, "{frame:?}");
    assert!(!reached(&target, QUIET).await, "the relay connected to the host behind the userinfo");
    host.stop().await;
}
