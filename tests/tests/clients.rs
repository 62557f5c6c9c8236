//! Outbound clients end to end: the recorder handler creates clients by command against an independent server and the
//! host's own endpoint; an observer session watches their events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use wasmsock::Limits;
use wasmsock_tests::*;

fn plugins() -> Plugins {
    Plugins::new()
        .handler("tests/recorder", "recorder")
        .endpoint_granted("rec", "tests/recorder", &[LOOPBACK])
        // In the recorder's project: a handler reaches only its own project's connections.
        .handler("tests/echo", "echo")
        .endpoint("echo", "tests/echo")
}

/// Sends a command on the driver session and returns the reply.
async fn command(driver: &mut Ws, command: &str) -> String {
    send(driver, command).await;
    text(driver).await
}

#[tokio::test]
async fn a_client_sees_all_four_events_and_is_listed_only_while_it_lives() {
    let peer = PeerServer::start(PeerMode::Echo).await;
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let uri = peer.url("/feed");
    // Created and sent to in one event, before it can be open: the send is queued and flushed on open.
    let reply = command(&mut driver, &format!("connect-send {uri} first")).await;
    assert!(reply.starts_with("created ") && reply.ends_with("|outbound|connecting send ok"), "{reply}");
    assert!(reply.contains(&format!("|{uri}|tests/recorder|-|")), "{reply}");
    let id = client_id(&reply);
    assert_eq!(observer.expect(&id, "onopen").await, "");
    assert_eq!(observer.expect(&id, "onmessage").await, "first");
    let listing = command(&mut driver, "clients").await;
    assert!(listing.contains(&format!("{id}|{uri}|tests/recorder|-|outbound|open")), "{listing}");
    assert_eq!(
        command(&mut driver, "by-handler tests/recorder").await,
        format!("found {id}|{uri}|tests/recorder|-|outbound|open")
    );
    assert_eq!(command(&mut driver, &format!("client-send {id} second")).await, "ok");
    assert_eq!(observer.expect(&id, "onmessage").await, "second");
    assert_eq!(command(&mut driver, &format!("client-close {id}")).await, "ok");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    assert!(!command(&mut driver, "clients").await.contains(&id));
    assert_eq!(command(&mut driver, "by-handler tests/recorder").await, "none");
    assert_eq!(command(&mut driver, &format!("client-send {id} late")).await, "none");
    eventually("no outbound client is left", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
}

#[tokio::test]
async fn a_client_of_the_hosts_own_endpoint_gets_its_echo() {
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let reply = command(&mut driver, &format!("connect-send {} loopback", host.url("echo"))).await;
    let id = client_id(&reply);
    assert_eq!(observer.expect(&id, "onopen").await, "");
    assert_eq!(observer.expect(&id, "onmessage").await, "loopback");
    // Both ends are listed: the client (outbound) and the echo session it opened (inbound).
    let listing = command(&mut driver, "clients").await;
    assert!(listing.contains("|tests/echo|echo|inbound|open"), "{listing}");
    assert!(listing.contains(&format!("{id}|")), "{listing}");
    assert_eq!(command(&mut driver, &format!("client-close {id}")).await, "ok");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    eventually("the echo session ended too", || host.app.hub.len() == 2).await;
    host.stop().await;
}

#[tokio::test]
async fn a_refused_connect_is_onerror_naming_the_unsent_messages_then_onclose() {
    let (refusing, port) = refusing_port();
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let reply = command(&mut driver, &format!("connect-send ws://127.0.0.1:{port}/x never sent")).await;
    let id = client_id(&reply);
    let error = observer.expect(&id, "onerror").await;
    assert!(error.contains(&format!("connecting to ws://127.0.0.1:{port}/x failed")), "{error}");
    // Nothing is lost without a word: a message queued before the connect failed is named in the onerror. (The
    // client starts connecting while the creating event still runs, so on a slow machine the refusal can come first
    // when the event steps aside at an epoch tick; then the send itself is refused, and says so.)
    if reply.ends_with("send ok") {
        assert!(error.contains("1 queued message(s) were not sent: \"never sent\""), "{error}");
    } else {
        assert!(reply.contains("send error"), "{reply}");
        assert!(!error.contains("were not sent"), "{error}");
    }
    assert_eq!(observer.expect(&id, "onclose").await, "");
    eventually("the failed client left the list", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
    drop(refusing);
}

#[tokio::test]
async fn a_handshake_that_never_comes_times_out() {
    let peer = PeerServer::start(PeerMode::Silent).await;
    let limits = Limits { connect_timeout: Duration::from_millis(300), ..Limits::default() };
    let host = TestHost::start_with(plugins(), limits).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let id = client_id(&command(&mut driver, &format!("connect {}", peer.url("/"))).await);
    let error = observer.expect(&id, "onerror").await;
    assert!(error.contains("timed out after 300ms"), "{error}");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    eventually("the client left the list", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
}

#[tokio::test]
async fn a_server_closing_mid_stream_ends_in_onclose() {
    let peer = PeerServer::start(PeerMode::CloseAfterFirst).await;
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let id = client_id(&command(&mut driver, &format!("connect-send {} only", peer.url("/"))).await);
    let events = observer.events_until_close(&id).await;
    assert_eq!(events, ["onopen", "onmessage only", "onclose"]);
    eventually("the client left the list", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
}

#[tokio::test]
async fn a_server_vanishing_without_a_close_frame_is_onerror_then_onclose() {
    let peer = PeerServer::start(PeerMode::VanishAfterFirst).await;
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let id = client_id(&command(&mut driver, &format!("connect-send {} hello", peer.url("/"))).await);
    let events = observer.events_until_close(&id).await;
    assert_eq!(events.first().map(String::as_str), Some("onopen"));
    assert_eq!(events.last().map(String::as_str), Some("onclose"));
    assert!(events.iter().any(|e| e.starts_with("onerror") && e.contains("without a closing handshake")), "{events:?}");
    eventually("the client left the list", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
}

#[tokio::test]
async fn bad_arguments_are_invalid_errors_and_create_nothing() {
    let host = TestHost::start(plugins()).await;
    let mut driver = host.connect("rec").await;
    let reply = command(&mut driver, "connect http://127.0.0.1:1/").await;
    assert!(reply.starts_with("error Error::Invalid") && reply.contains("ws://"), "{reply}");
    let reply = command(&mut driver, "connect-with ws://127.0.0.1:1/ nowhere/nothing").await;
    assert!(reply.starts_with("error Error::Invalid") && reply.contains("nowhere/nothing"), "{reply}");
    let reply = command(&mut driver, "connect-engine ws://127.0.0.1:1/ nashorn").await;
    assert!(reply.starts_with("error Error::Invalid") && reply.contains("nashorn"), "{reply}");
    assert_eq!(outbound_clients(&host.app), 0);
    host.stop().await;
}

#[tokio::test]
async fn many_clients_open_exchange_and_close_without_leaks() {
    let peer = PeerServer::start(PeerMode::CloseAfterFirst).await;
    let host = TestHost::start(plugins()).await;
    let mut driver = host.connect("rec").await;
    for i in 0..100 {
        let reply = command(&mut driver, &format!("connect-send {} m{i}", peer.url("/"))).await;
        assert!(reply.starts_with("created "), "{reply}");
    }
    eventually("every client finished", || outbound_clients(&host.app) == 0).await;
    eventually("every client task ended", || host.app.sessions() == 1).await;
    host.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_opens_again_after_the_server_closes_and_closes_once() {
    let peer = PeerServer::start(PeerMode::CloseAfterFirst).await;
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let id = client_id(&command(&mut driver, &format!("connect-reconnect {} 0", peer.url("/"))).await);
    assert_eq!(observer.expect(&id, "onopen").await, "");
    assert_eq!(command(&mut driver, &format!("client-send {id} one")).await, "ok");
    assert_eq!(observer.expect(&id, "onmessage").await, "one");
    // The server closed after its echo; the client reconnects with the same id: a new onopen, no onclose.
    assert_eq!(observer.expect(&id, "onopen").await, "");
    assert_eq!(command(&mut driver, &format!("client-send {id} two")).await, "ok");
    assert_eq!(observer.expect(&id, "onmessage").await, "two");
    assert_eq!(observer.expect(&id, "onopen").await, "");
    // Closed by the handler: no more reconnects, one onclose.
    assert_eq!(command(&mut driver, &format!("client-close {id}")).await, "ok");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    eventually("the client left the list", || outbound_clients(&host.app) == 0).await;
    eventually("its task ended", || host.app.sessions() == 2).await;
    host.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_gives_up_after_its_attempts_and_closes() {
    let (refusing, port) = refusing_port();
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let id = client_id(&command(&mut driver, &format!("connect-reconnect ws://127.0.0.1:{port}/ 3")).await);
    for _ in 0..2 {
        let error = observer.expect(&id, "onerror").await;
        assert!(error.contains("failed") && error.contains("reconnecting in"), "{error}");
    }
    let error = observer.expect(&id, "onerror").await;
    assert!(error.contains("giving up after 3 attempt(s)"), "{error}");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    eventually("the client left the list", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
    drop(refusing);
}

#[tokio::test]
async fn the_relay_plugin_shares_one_upstream_between_its_sessions() {
    let peer = PeerServer::start(PeerMode::Echo).await;
    let plugins =
        Plugins::new().handler("examples/relay", "relay").endpoint_granted("relay", "examples/relay", &[LOOPBACK]);
    let host = TestHost::start(plugins).await;
    let upstream = peer.url("/feed").replace(':', "%3A").replace('/', "%2F");
    let relay = format!("{}?to={upstream}", host.url("relay"));
    let mut alice = connect(&relay).await;
    let mut bob = connect(&relay).await;
    eventually("one shared upstream client is open", || {
        host.app
            .hub
            .list()
            .iter()
            .any(|c| c.direction == wasmsock::wire::Direction::Outbound && c.state == wasmsock::wire::ConnState::Open)
    })
    .await;
    assert_eq!(outbound_clients(&host.app), 1);
    // Alice's message goes upstream; the upstream's echo comes back to every session on it.
    send(&mut alice, "hello upstream").await;
    assert_eq!(text(&mut alice).await, "hello upstream");
    assert_eq!(text(&mut bob).await, "hello upstream");
    // A session naming an upstream off loopback is refused with a reason.
    let mut stranger = connect(&format!("{}?to=ws%3A%2F%2Fexample.com%2F", host.url("relay"))).await;
    let frame = close_frame(&mut stranger).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4403);
    // When the last session leaves, the upstream client is closed.
    for mut session in [alice, bob] {
        session.close(None).await.unwrap();
        drop(session);
    }
    eventually("the upstream client was closed", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
}

#[tokio::test]
async fn a_reconnecting_client_stops_once_a_deploy_removes_its_grant() {
    let peer = PeerServer::start(PeerMode::CloseAfterFirst).await;
    let host = TestHost::start(plugins()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    let id = client_id(&command(&mut driver, &format!("connect-reconnect {} 0", peer.url("/"))).await);
    assert_eq!(observer.expect(&id, "onopen").await, "");
    // The grant goes: the descriptor is deployed again without `allowed-outbound-hosts`.
    host.app
        .registry
        .deploy_descriptor(&host.app.runtime, r#"{"handler": "tests/recorder", "endpoint": "rec"}"#)
        .await
        .unwrap();
    // The server closes after its echo; the next attempt is refused by the grants, and that is the end.
    assert_eq!(command(&mut driver, &format!("client-send {id} one")).await, "ok");
    assert_eq!(observer.expect(&id, "onmessage").await, "one");
    let error = observer.expect(&id, "onerror").await;
    assert!(error.contains("may not connect there"), "{error}");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    eventually("the client left the list", || outbound_clients(&host.app) == 0).await;
    host.stop().await;
}
