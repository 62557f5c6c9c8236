//! Channels and attachments through real sessions and the real recorder component: join, leave, publish and
//! skip-self; server-side subscribe by id; pages of members; leaving at close; the scope between projects; the name and
//! per-connection caps; order per publisher under load; a slow member closed by its own policy while the others get
//! every message; attachments kept across per-event calls; the admin API and metrics; `wasmsock publish` and
//! `wasmsock channels` against the real binary; and a component built against the 0.1.0 contract still running.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use wasmsock::Limits;
use wasmsock_tests::*;

/// The recorder in project `a` on three endpoints (one with a tiny outbound queue, one with a large one), and in
/// project `b`.
fn plugins() -> Plugins {
    Plugins::new()
        .handler("a/recorder", "recorder")
        .endpoint("a-rec", "a/recorder")
        .endpoint_with("a-slow", "a/recorder", json!({"limits": {"outbound-queue": 4, "outbound-queue-bytes": 65536}}))
        // Members that may fall far behind a burst without being cut off (the tests' readers share one thread).
        .endpoint_with(
            "a-big",
            "a/recorder",
            json!({"limits": {"outbound-queue": 4096, "outbound-queue-bytes": 67108864}}),
        )
        .handler("b/recorder", "recorder")
        .endpoint("b-rec", "b/recorder")
}

fn limits() -> Limits {
    Limits { close_timeout: Duration::from_secs(1), max_channels_per_connection: 3, ..Limits::default() }
}

/// Sends a command on a recorder session and returns the reply.
async fn command(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    text(ws).await
}

/// A session of `endpoint` and its id.
async fn session(host: &TestHost, endpoint: &str, who: &str) -> (Ws, String) {
    let mut ws = host.connect(&format!("{endpoint}?who={who}")).await;
    let id = own_id(&mut ws, &format!("who={who}")).await;
    (ws, id)
}

#[tokio::test]
async fn join_publish_skip_self_leave_and_members() {
    let host = TestHost::start_with(plugins(), limits()).await;
    let (mut one, one_id) = session(&host, "a-rec", "one").await;
    let (mut two, two_id) = session(&host, "a-rec", "two").await;
    let (mut three, three_id) = session(&host, "a-rec", "three").await;

    assert_eq!(command(&mut one, "join lobby").await, "ok");
    assert_eq!(command(&mut one, "join lobby").await, "ok", "joining twice is not an error");
    assert_eq!(command(&mut two, "join lobby").await, "ok");
    // Server-side subscribe: one puts three into the lobby by id.
    assert_eq!(command(&mut one, &format!("client-join {three_id} lobby")).await, "ok");
    assert_eq!(command(&mut one, &format!("client-channels {three_id}")).await, "channels lobby");
    assert_eq!(command(&mut one, "channels").await, "channels lobby");

    // The sender is a member: it gets its own message first, then the reply to its command.
    assert_eq!(command(&mut one, "publish lobby hello all").await, "hello all");
    assert_eq!(text(&mut one).await, "queued 3");
    assert_eq!(text(&mut two).await, "hello all");
    assert_eq!(text(&mut three).await, "hello all");
    // skip-self: everyone but the sender.
    assert_eq!(command(&mut one, "publish-skip lobby not for one").await, "queued 2");
    assert_eq!(text(&mut two).await, "not for one");
    assert_eq!(text(&mut three).await, "not for one");
    // Binary stays binary.
    send(&mut two, "publish-binary lobby bytes").await;
    for ws in [&mut one, &mut two, &mut three] {
        assert_eq!(binary_message(ws).await, b"bytes");
    }
    assert_eq!(text(&mut two).await, "queued 3");

    // Members, oldest first, in pages.
    assert_eq!(command(&mut one, "members lobby 2 -").await, format!("members {one_id},{two_id} next {two_id}"));
    assert_eq!(command(&mut one, &format!("members lobby 2 {two_id}")).await, format!("members {three_id} next -"));
    assert!(command(&mut one, "members lobby 0 -").await.starts_with("error invalid: "));
    assert_eq!(command(&mut one, "members nobody 10 -").await, "members - next -");

    // Leaving: own channel and another connection's.
    assert_eq!(command(&mut two, "leave lobby").await, "left true");
    assert_eq!(command(&mut two, "leave lobby").await, "left false");
    assert_eq!(command(&mut one, &format!("client-leave {three_id} lobby")).await, "left true");
    assert_eq!(command(&mut one, "publish-skip lobby anyone").await, "queued 0");
    assert_eq!(command(&mut one, "publish nowhere x").await, "queued 0", "a channel nobody is in is 0, not an error");
    assert_eq!(command(&mut two, "channels").await, "channels -");
    host.stop().await;
}

#[tokio::test]
async fn members_leave_every_channel_when_they_close() {
    let host = TestHost::start_with(plugins(), limits()).await;
    let (mut one, _) = session(&host, "a-rec", "one").await;
    let (mut two, two_id) = session(&host, "a-rec", "two").await;
    assert_eq!(command(&mut one, "join lobby").await, "ok");
    assert_eq!(command(&mut two, "join lobby").await, "ok");
    assert_eq!(command(&mut two, "join side").await, "ok");
    assert_eq!(host.app.channels.len(), 2);
    two.close(None).await.unwrap();
    drop(two);
    eventually("two leaves its channels", || host.app.channels.list(Some("a")).iter().all(|c| c.channel != "side"))
        .await;
    assert_eq!(command(&mut one, "publish-skip lobby after").await, "queued 0");
    assert_eq!(command(&mut one, &format!("client-channels {two_id}")).await, "none");
    assert_eq!(host.app.channels.len(), 1, "{:?}", host.app.channels.list(None));
    host.stop().await;
}

#[tokio::test]
async fn channels_of_one_project_are_not_another_projects() {
    let host = TestHost::start_with(plugins(), limits()).await;
    let (mut a, _) = session(&host, "a-rec", "a").await;
    let (mut b, b_id) = session(&host, "b-rec", "b").await;
    assert_eq!(command(&mut a, "join lobby").await, "ok");
    assert_eq!(command(&mut b, "join lobby").await, "ok");
    // a's publish reaches a's lobby only; b's reaches b's only.
    assert_eq!(command(&mut a, "publish-skip lobby from a").await, "queued 0");
    assert_eq!(command(&mut b, "publish-skip lobby from b").await, "queued 0");
    assert_eq!(command(&mut a, "members lobby 10 -").await.matches(',').count(), 0);
    assert!(!command(&mut a, "members lobby 10 -").await.contains(&b_id));
    // a cannot subscribe b's connection: it does not exist for a.
    assert_eq!(command(&mut a, &format!("client-join {b_id} lobby")).await, "none");
    let listed = host.app.channels.list(None);
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(listed.iter().all(|c| c.channel == "lobby" && c.members == 1));
    // The admin API publishes to one project's channel.
    let answer = admin_publish(&host, "b", "lobby", "operator").await;
    assert_eq!(answer["queued"], 1);
    assert_eq!(text(&mut b).await, "operator");
    assert_eq!(command(&mut a, "echo nothing arrived before this").await, "nothing arrived before this");
    host.stop().await;
}

#[tokio::test]
async fn bad_names_are_invalid_and_joins_past_the_cap_are_limit() {
    let host = TestHost::start_with(plugins(), limits()).await;
    let (mut ws, _) = session(&host, "a-rec", "one").await;
    let long = "x".repeat(256);
    let reply = command(&mut ws, &format!("join {long}")).await;
    assert!(reply.starts_with("error invalid: ") && reply.contains("256 bytes"), "{reply}");
    assert!(command(&mut ws, &format!("join {}", "x".repeat(255))).await == "ok");
    let reply = command(&mut ws, "join tab\there").await;
    assert!(reply.starts_with("error invalid: ") && reply.contains("U+0009"), "{reply}");
    assert!(command(&mut ws, &format!("publish {long} x")).await.starts_with("error invalid: "));
    assert!(command(&mut ws, "members tab\there 1 -").await.starts_with("error invalid: "));
    // The cap is 3 in these tests' limits: one taken above.
    assert_eq!(command(&mut ws, "join two").await, "ok");
    assert_eq!(command(&mut ws, "join three").await, "ok");
    let reply = command(&mut ws, "join four").await;
    assert!(reply.starts_with("error limit: ") && reply.contains("max-channels-per-connection"), "{reply}");
    assert_eq!(command(&mut ws, "leave two").await, "left true");
    assert_eq!(command(&mut ws, "join four").await, "ok", "leaving makes room");
    host.stop().await;
}

/// Reads text messages until `count` arrived or the time runs out; returns them.
async fn read_texts(ws: &mut Ws, count: usize) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + WAIT * 3;
    while got.len() < count {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => got.push(text.to_string()),
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) | Err(_) => break,
        }
    }
    got
}

#[tokio::test]
async fn each_publishers_messages_arrive_in_order_once_under_load() {
    const PUBLISHERS: usize = 3;
    const BURSTS: usize = 10;
    const PER_BURST: usize = 100;
    let host = TestHost::start_with(plugins(), limits()).await;
    let mut members = Vec::new();
    for i in 0..4 {
        let (mut ws, _) = session(&host, "a-big", &format!("m{i}")).await;
        assert_eq!(command(&mut ws, "join room").await, "ok");
        members.push(ws);
    }
    let readers: Vec<_> = members
        .into_iter()
        .map(|mut ws| tokio::spawn(async move { read_texts(&mut ws, PUBLISHERS * BURSTS * PER_BURST).await }))
        .collect();
    // Publishers are not members: they publish bursts concurrently, each waiting for its reply between bursts.
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (mut ws, _) = session(&host, "a-rec", &format!("p{p}")).await;
        publishers.push(tokio::spawn(async move {
            for _ in 0..BURSTS {
                let reply = command(&mut ws, &format!("publish-burst room {PER_BURST} p{p} 64")).await;
                assert_eq!(reply, format!("published {PER_BURST} queued {}", PER_BURST * 4));
            }
        }));
    }
    for publisher in publishers {
        publisher.await.unwrap();
    }
    for reader in readers {
        let got = reader.await.unwrap();
        assert_eq!(got.len(), PUBLISHERS * BURSTS * PER_BURST, "every message arrives");
        let mut next: HashMap<String, usize> = HashMap::new();
        for message in &got {
            let mut words = message.split(' ');
            let tag = words.next().unwrap().to_owned();
            let i: usize = words.next().unwrap().parse().unwrap();
            let expected = next.entry(tag.clone()).or_default();
            // A burst numbers from 0 again: i resets only at a burst boundary.
            let want = *expected % PER_BURST;
            assert_eq!(i, want, "{tag}: message {i} arrived where {want} was due (order per publisher, no repeats)");
            *expected += 1;
        }
        assert!(next.values().all(|n| *n == BURSTS * PER_BURST), "{next:?}");
    }
    host.stop().await;
}

#[tokio::test]
async fn a_slow_member_is_closed_by_its_policy_while_the_others_get_every_message() {
    const BURSTS: usize = 20;
    const PER_BURST: usize = 100;
    let host = TestHost::start_with(plugins(), limits()).await;
    // The slow member joins, then never reads again; its endpoint allows 4 queued frames.
    let (mut slow, slow_id) = session(&host, "a-slow", "slow").await;
    assert_eq!(command(&mut slow, "join room").await, "ok");
    let mut readers = Vec::new();
    for i in 0..2 {
        let (mut ws, _) = session(&host, "a-big", &format!("fast{i}")).await;
        assert_eq!(command(&mut ws, "join room").await, "ok");
        readers.push(tokio::spawn(async move { read_texts(&mut ws, BURSTS * PER_BURST).await }));
    }
    let (mut publisher, _) = session(&host, "a-rec", "publisher").await;
    let mut counts = Vec::new();
    for _ in 0..BURSTS {
        // 16 KiB messages: 32 MB in all, far more than the socket buffers hold for a reader that stopped.
        let reply = command(&mut publisher, &format!("publish-burst room {PER_BURST} pub 16384")).await;
        counts.push(reply);
    }
    for reader in readers {
        let got = reader.await.unwrap();
        assert_eq!(got.len(), BURSTS * PER_BURST, "a fast member got every message");
        for (n, message) in got.iter().enumerate() {
            assert!(message.starts_with(&format!("pub {} ", n % PER_BURST)), "message {n} out of order");
        }
    }
    eventually("the slow member is closed", || host.app.hub.get(&slow_id).is_none()).await;
    // The slow member is counted until it is cut off, within the first bursts; after that only the two fast ones.
    assert!(counts.iter().all(|reply| reply.starts_with(&format!("published {PER_BURST} queued "))), "{counts:?}");
    assert_eq!(counts.last().unwrap(), &format!("published {PER_BURST} queued {}", PER_BURST * 2), "{counts:?}");
    // It leaves the hub, then its onclose runs, then its memberships go: the room may list it a moment longer.
    eventually("the closed member left the room", || {
        let members = host.app.channels.members("a", "room", None, 10).unwrap();
        members.members.iter().all(|m| m.id != slow_id)
    })
    .await;
    drop(slow);
    host.stop().await;
}

#[tokio::test]
async fn attachments_last_across_per_event_calls_and_are_capped() {
    let host = TestHost::start_with(plugins(), limits()).await;
    let (mut one, one_id) = session(&host, "a-rec", "one").await;
    let (mut two, _) = session(&host, "a-rec", "two").await;
    assert_eq!(command(&mut one, "attachment").await, "attachment -");
    assert_eq!(command(&mut one, "set-attachment user=ada role=admin").await, "ok");
    // Each command is its own per-event instance: the value lives with the connection, not the instance.
    assert_eq!(command(&mut one, "attachment").await, "attachment user=ada role=admin");
    assert_eq!(command(&mut two, "attachment").await, "attachment -");
    assert_eq!(command(&mut two, &format!("client-attachment {one_id}")).await, "attachment user=ada role=admin");
    assert_eq!(command(&mut one, "set-attachment-size 4096").await, "ok");
    let reply = command(&mut one, "set-attachment-size 4097").await;
    assert!(reply.starts_with("error limit: ") && reply.contains("4096"), "{reply}");
    // The admin listing shows its size.
    let listing = reqwest::get(format!("http://{}/admin/v1/connections", host.admin)).await.unwrap();
    let listing: serde_json::Value = listing.json().await.unwrap();
    let row = listing["connections"].as_array().unwrap().iter().find(|c| c["id"] == one_id.as_str()).unwrap();
    assert_eq!(row["attachment_bytes"], 4096, "{row}");
    assert_eq!(command(&mut one, "clear-attachment").await, "ok");
    assert_eq!(command(&mut one, "attachment").await, "attachment -");
    host.stop().await;
}

async fn admin_publish(host: &TestHost, project: &str, channel: &str, message: &str) -> serde_json::Value {
    let answer = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/publish", host.admin))
        .json(&json!({"project": project, "channel": channel, "message": message}))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    answer.json().await.unwrap()
}

#[tokio::test]
async fn the_admin_api_lists_channels_and_members_and_counts_publishes() {
    let host = TestHost::start_with(plugins(), limits()).await;
    let (mut one, one_id) = session(&host, "a-rec", "one").await;
    let (mut two, _) = session(&host, "a-rec", "two").await;
    assert_eq!(command(&mut one, "join a/b?c").await, "ok");
    assert_eq!(command(&mut two, "join a/b?c").await, "ok");
    assert_eq!(command(&mut two, "join other").await, "ok");
    let get = |path: String| async move {
        let answer = reqwest::get(format!("http://{}/admin/v1/{path}", host.admin)).await.unwrap();
        (answer.status().as_u16(), answer.json::<serde_json::Value>().await.unwrap())
    };
    let (_, all) = get("channels?project=a".into()).await;
    assert_eq!(
        all["channels"],
        json!([{"project": "a", "channel": "a/b?c", "members": 2}, {"project": "a", "channel": "other", "members": 1}])
    );
    let (_, page) = get("channels/a/a%2Fb%3Fc?limit=1".into()).await;
    assert_eq!(page["members"][0]["id"], one_id.as_str(), "{page}");
    assert_eq!(page["next"], one_id.as_str());
    let (status, refused) = get("channels/a/lobby?limit=5000".into()).await;
    assert_eq!(status, 422, "{refused}");
    let bad = reqwest::Client::new()
        .post(format!("http://{}/admin/v1/publish", host.admin))
        .json(&json!({"project": "a", "channel": "has space", "message": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    assert!(bad.text().await.unwrap().contains("whitespace"));
    assert_eq!(admin_publish(&host, "a", "a/b?c", "hi").await["queued"], 2);
    assert_eq!(text(&mut one).await, "hi");
    assert_eq!(text(&mut two).await, "hi");
    let scrape = Scrape::fetch(host.admin).await;
    assert_eq!(scrape.get(r#"wasmsock_channels_open{project="a"}"#), 2.0);
    assert_eq!(scrape.get(r#"wasmsock_channel_publishes_total{project="a"}"#), 1.0);
    assert_eq!(scrape.get(r#"wasmsock_channel_deliveries_total{project="a"}"#), 2.0);
    host.stop().await;
}

/// The recorder as built against contract 0.1.0 (before channels), kept as a binary so no rebuild can change it.
fn old_recorder() -> Vec<u8> {
    std::fs::read(repo_root().join("tests/fixtures/contract-0.1.0/recorder.wasm")).unwrap()
}

#[tokio::test]
async fn a_component_built_against_the_0_1_0_contract_still_runs() {
    let component = old_recorder();
    let needle = b"wasmsock:websockets/websockets@0.1.0";
    assert!(component.windows(needle.len()).any(|w| w == needle), "the fixture imports the 0.1.0 interface");
    let handler_file = wasmsock::wire::descriptor::handler_path(std::path::Path::new(""), "old/recorder");
    let plugins = plugins().file(handler_file.to_str().unwrap(), component).endpoint_granted(
        "old-rec",
        "old/recorder",
        &[LOOPBACK],
    );
    let host = TestHost::start_with(plugins, limits()).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    let mut observer = Observer::open(&host, "old-rec").await;
    let (mut ws, id) = session(&host, "old-rec", "old").await;
    observer.skip_to(&id, "onmessage").await;
    assert_eq!(command(&mut ws, "echo still here").await, "still here");
    let listing = command(&mut ws, "clients").await;
    assert!(listing.contains(&format!("{id}|")) && listing.contains("old/recorder"), "{listing}");
    // An outbound client from the old component, to a real peer.
    let peer = PeerServer::start(PeerMode::Echo).await;
    let created = command(&mut ws, &format!("connect-with {} old/recorder", peer.url("/old"))).await;
    let client = client_id(&created);
    observer.skip_to(&client, "onopen").await;
    assert_eq!(command(&mut ws, &format!("client-send {client} ping")).await, "ok");
    let echoed = observer.skip_to(&client, "onmessage").await;
    assert!(echoed.ends_with("ping"), "{echoed}");
    // Channel commands are unknown to it: it was built before them.
    assert_eq!(command(&mut ws, "join lobby").await, "unknown command \"join\"");
    send(&mut ws, "close 4001 bye").await;
    let close = close_frame(&mut ws).await.unwrap();
    assert_eq!(u16::from(close.code), 4001);
    observer.skip_to(&id, "onclose").await;
    host.stop().await;
}

#[tokio::test]
async fn wasmsock_publish_and_channels_against_the_real_binary() {
    let plugins = Plugins::new().handler("examples/chat", "chat").endpoint("chat", "examples/chat");
    let host = BinaryHost::start(&plugins, &[]).await;
    let admin = host.admin.clone();
    let mut lobby = [connect(&host.url("chat")).await, connect(&host.url("chat?room=lobby")).await];
    let mut other = connect(&host.url("chat?room=other")).await;
    // Wait until every session has joined its room, through the CLI itself.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (ok, out, err) = cli(&admin, &["channels", "--json"]);
        assert!(ok, "{err}");
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        let want = json!([
            {"project": "examples", "channel": "lobby", "members": 2},
            {"project": "examples", "channel": "other", "members": 1}
        ]);
        if value["channels"] == want {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the rooms never filled: {value}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (ok, out, err) = cli(&admin, &["publish", "examples/lobby", "hello from the operator", "--json"]);
    assert!(ok, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(answer, json!({"project": "examples", "channel": "lobby", "queued": 2}));
    for ws in lobby.iter_mut() {
        assert_eq!(text(ws).await, "hello from the operator");
    }
    let (ok, out, _) = cli(&admin, &["publish", "examples/other", "second"]);
    assert!(ok && out.contains("queued for 1 connections in examples/other"), "{out}");
    assert_eq!(text(&mut other).await, "second", "the other room got only its own message");
    // People's tables: every channel, and one channel's members in pages.
    let (ok, out, _) = cli(&admin, &["channels"]);
    assert!(ok && out.lines().next().unwrap().starts_with("PROJECT") && out.contains("lobby"), "{out}");
    let (ok, out, _) = cli(&admin, &["channels", "examples/lobby", "--limit", "1"]);
    assert!(ok && out.lines().count() == 3 && out.contains("more: wasmsock channels examples/lobby --after"), "{out}");
    // Bad input: a clear error, a failed exit, and the host stays up.
    let (ok, _, err) = cli(&admin, &["publish", "lobby", "x"]);
    assert!(!ok && err.contains("PROJECT/CHANNEL"), "{err}");
    let (ok, _, err) = cli(&admin, &["channels", "examples/lobby", "--limit", "0"]);
    assert!(!ok && err.contains("422") && err.contains("1 to 1000"), "{err}");
    let (ok, out, _) = cli(&admin, &["publish", "examples/nobody", "x", "--json"]);
    assert!(ok && out.contains(r#""queued":0"#), "{out}");
}
