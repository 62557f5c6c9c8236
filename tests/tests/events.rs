//! Events end to end through the recorder test handler: all four fire, in order, exactly once per connection, for a
//! clean close, a close the handler starts, and a client that vanishes without a close frame.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures_util::SinkExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wasmsock_tests::*;

fn recorder() -> Plugins {
    Plugins::new().handler("tests/recorder", "recorder").endpoint("rec", "tests/recorder")
}

#[tokio::test]
async fn all_four_events_fire_in_order_for_a_clean_close() {
    let host = TestHost::start(recorder()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut ws = connect(&format!("{}?who=alice", host.url("rec"))).await;
    let id = own_id(&mut ws, "who=alice").await;
    send(&mut ws, "echo hi").await;
    assert_eq!(text(&mut ws).await, "hi");
    ws.send(Message::binary(vec![7u8; 3])).await.unwrap();
    ws.close(Some(CloseFrame { code: CloseCode::Normal, reason: "bye".into() })).await.unwrap();
    assert!(close_frame(&mut ws).await.is_some(), "the host answers the close");
    let events = observer.events_until_close(&id).await;
    assert_eq!(events, ["onopen", "onmessage clients", "onmessage echo hi", "onmessage <3 bytes>", "onclose"]);
    eventually("the session leaves the hub", || host.app.hub.len() == 1).await;
    host.stop().await;
}

#[tokio::test]
async fn a_close_started_by_the_handler_carries_its_code_and_reason() {
    let host = TestHost::start(recorder()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut ws = connect(&format!("{}?who=bob", host.url("rec"))).await;
    let id = own_id(&mut ws, "who=bob").await;
    send(&mut ws, "close 4001 go away").await;
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 4001);
    assert_eq!(frame.reason.as_str(), "go away");
    let events = observer.events_until_close(&id).await;
    assert_eq!(events, ["onopen", "onmessage clients", "onmessage close 4001 go away", "onclose"]);
    // A code a handler may not send is refused with a reason, and the connection stays open.
    let mut ws = connect(&format!("{}?who=carol", host.url("rec"))).await;
    send(&mut ws, "close 1006 nope").await;
    let reply = text(&mut ws).await;
    assert!(reply.starts_with("error Error::Invalid") && reply.contains("1006"), "{reply}");
    send(&mut ws, "echo still open").await;
    assert_eq!(text(&mut ws).await, "still open");
    host.stop().await;
}

#[tokio::test]
async fn a_client_that_vanishes_without_a_close_frame_still_gets_onclose() {
    let host = TestHost::start(recorder()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut ws = connect(&format!("{}?who=dave", host.url("rec"))).await;
    let id = own_id(&mut ws, "who=dave").await;
    // Drop the TCP connection under the WebSocket: no close frame is ever sent.
    let tcp = match ws.get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp,
        _ => unreachable!("plain ws"),
    };
    tcp.shutdown().await.unwrap();
    drop(ws);
    let events = observer.events_until_close(&id).await;
    assert_eq!(events.first().map(String::as_str), Some("onopen"));
    assert_eq!(events.last().map(String::as_str), Some("onclose"));
    assert_eq!(events.iter().filter(|e| *e == "onclose").count(), 1);
    let error = events.iter().find(|e| e.starts_with("onerror")).expect("an onerror before the onclose");
    assert!(error.contains("without a closing handshake"), "{error}");
    eventually("the session leaves the hub", || host.app.hub.len() == 1).await;
    host.stop().await;
}

#[tokio::test]
async fn events_of_one_connection_stay_in_order_while_connections_run_concurrently() {
    let host = TestHost::start(recorder()).await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(connect(&format!("{}?who=c{i}", host.url("rec"))).await);
    }
    // Every client sends 50 numbered messages without waiting; every reply must come back in order.
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                for n in 0..50 {
                    send(&mut ws, &format!("echo {n}")).await;
                }
                for n in 0..50 {
                    assert_eq!(text(&mut ws).await, n.to_string());
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    host.stop().await;
}

#[tokio::test]
async fn shutdown_sends_1001_and_waits_for_every_session_to_finish() {
    let host = TestHost::start(recorder()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut ws = connect(&format!("{}?who=erin", host.url("rec"))).await;
    own_id(&mut ws, "who=erin").await;
    let app = host.app.clone();
    let stopping = tokio::spawn(host.stop());
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    let frame = close_frame(&mut observer.0).await.expect("the observer is closed too");
    assert_eq!(u16::from(frame.code), 1001);
    stopping.await.unwrap();
    assert!(app.hub.is_empty(), "every connection ended: {:?}", app.hub.list());
    assert_eq!(app.sessions(), 0, "every session ran its onclose and finished");
}
