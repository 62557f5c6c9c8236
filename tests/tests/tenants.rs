//! Tenants stay apart: a handler of project `b` tries every WIT call against project `a`'s connections (list, get by
//! id, get by handler, send, send-binary, close, create a client for `a`'s handler) and is refused each time, while
//! `a`'s own handler still reaches its own connections and the operator's admin API still lists both projects.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use wasmsock_tests::*;

/// The same recorder component deployed under two projects, each with an endpoint.
fn plugins() -> Plugins {
    Plugins::new()
        .handler("a/recorder", "recorder")
        .endpoint_granted("a-rec", "a/recorder", &[LOOPBACK])
        .handler("b/recorder", "recorder")
        .endpoint("b-rec", "b/recorder")
}

/// Sends a command on a recorder session and returns the reply.
async fn command(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    text(ws).await
}

#[tokio::test]
async fn a_handler_of_another_project_reaches_none_of_its_connections() {
    let peer = PeerServer::start(PeerMode::Echo).await;
    let host = TestHost::start(plugins()).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);

    // Project a: a driver session, a second session, and an outbound client of a/recorder.
    let mut a_driver = host.connect("a-rec?who=a-driver").await;
    let mut a_other = host.connect("a-rec?who=a-other").await;
    let a_driver_id = own_id(&mut a_driver, "who=a-driver").await;
    let a_other_id = own_id(&mut a_driver, "who=a-other").await;
    let created = command(&mut a_driver, &format!("connect-with {} a/recorder", peer.url("/a-feed"))).await;
    let a_client_id = client_id(&created);
    eventually("a's client is open", || {
        host.app.hub.get(&a_client_id).is_some_and(|c| c.state() == wasmsock::wire::ConnState::Open)
    })
    .await;

    // Project b's handler, driven from its own session.
    let mut b_driver = host.connect("b-rec?who=b-driver").await;
    let b_driver_id = own_id(&mut b_driver, "who=b-driver").await;

    // get-clients: only b's own session.
    let listing = command(&mut b_driver, "clients").await;
    assert!(listing.contains(&b_driver_id), "{listing}");
    for id in [&a_driver_id, &a_other_id, &a_client_id] {
        assert!(!listing.contains(&format!("{id}|")), "b lists a's connection {id}: {listing}");
    }
    assert!(!listing.contains("a/recorder") && !listing.contains("a-rec"), "{listing}");

    // get-client(id) then send, send-binary, close: none, as if the connection did not exist.
    for id in [&a_driver_id, &a_other_id, &a_client_id] {
        assert_eq!(command(&mut b_driver, &format!("client-send {id} from-b")).await, "none", "send to {id}");
        assert_eq!(command(&mut b_driver, &format!("client-send-binary {id} from-b")).await, "none", "{id}");
        assert_eq!(command(&mut b_driver, &format!("client-close {id}")).await, "none", "close {id}");
    }
    // An id that exists nowhere answers the same: b cannot tell a's ids from unused ones.
    assert_eq!(command(&mut b_driver, "client-send s999999 x").await, "none");

    // get-client-by-handler: none for a's handler, although a has a live client of it.
    assert_eq!(command(&mut b_driver, "by-handler a/recorder").await, "none");

    // create-websocket naming a's handler: invalid, and no client was created.
    let clients_before = host.app.hub.outbound();
    let refused = command(&mut b_driver, &format!("connect-with {} a/recorder", peer.url("/b-feed"))).await;
    assert!(refused.starts_with("error Error::Invalid"), "{refused}");
    assert!(refused.contains("not in project \\\"b\\\""), "{refused}");
    assert_eq!(host.app.hub.outbound(), clients_before, "a refused create-websocket opened nothing");

    // a's connections are untouched: nothing was sent to them and none was closed.
    assert_eq!(command(&mut a_driver, "echo still-here").await, "still-here");
    assert_eq!(command(&mut a_other, "echo still-here").await, "still-here");
    assert!(host.app.hub.get(&a_client_id).is_some(), "a's client is still live");

    // a's own handler still reaches its own connections.
    let a_listing = command(&mut a_driver, "clients").await;
    for id in [&a_driver_id, &a_other_id, &a_client_id] {
        assert!(a_listing.contains(&format!("{id}|")), "a does not list its own {id}: {a_listing}");
    }
    assert!(!a_listing.contains(&format!("{b_driver_id}|")), "a lists b's session: {a_listing}");
    assert_eq!(command(&mut a_driver, &format!("client-send {a_other_id} from-a")).await, "ok");
    assert_eq!(text(&mut a_other).await, "from-a");
    assert!(command(&mut a_driver, "by-handler a/recorder").await.starts_with(&format!("found {a_client_id}|")));

    // The operator sees both projects.
    let body: serde_json::Value =
        reqwest::get(format!("http://{}/admin/v1/connections", host.admin)).await.unwrap().json().await.unwrap();
    let listed = body.to_string();
    for id in [&a_driver_id, &a_other_id, &a_client_id, &b_driver_id] {
        assert!(listed.contains(&format!("\"{id}\"")), "the admin API does not list {id}: {listed}");
    }
    host.stop().await;
}
