//! The cluster with a real `nats-server` and real host processes (`wasmsock serve --nats`): a room spread over three
//! hosts gets every message of a publisher on each host once and in order; `wasmsock publish` to one host reaches the
//! members on all of them; and when the broker is killed and restarted on the same port, the hosts report it down then
//! up and delivery across hosts resumes without a restart, delivering nothing twice; `wasmsock cluster` lists the
//! hosts and drops a killed one in time; `/healthz` follows the broker; a deploy through one host serves on every
//! host, a refused one on none, and a host started later catches up before it serves; a handler sends to and closes
//! a connection on another host, and one on a killed host is none at once; members page over every host,
//! `get-client-by-handler` finds another host's outbound client, and a host that is stopped (alive but not answering)
//! is named as missing from the answers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;
use wasmsock_tests::*;

/// The chat example, whose sessions join the room named by `?room=` and publish every message to it.
fn plugins() -> Plugins {
    Plugins::new().handler("examples/chat", "chat").endpoint("chat", "examples/chat")
}

/// `count` hosts of one cluster on `nats`, with ids `h0`, `h1`, ….
async fn hosts(plugins: &Plugins, nats: &NatsServer, count: usize) -> Vec<BinaryHost> {
    let cluster = format!("test-{}", nats.port);
    let mut hosts = Vec::new();
    for i in 0..count {
        let id = format!("h{i}");
        let flags = ["--nats", &nats.url(), "--cluster-name", &cluster, "--host-id", &id, "--no-cache"];
        hosts.push(BinaryHost::start(plugins, &flags).await);
    }
    hosts
}

/// A chat session in `room` whose text messages are collected as they arrive; the sink sends.
struct Member {
    sink: futures_util::stream::SplitSink<Ws, Message>,
    got: Arc<Mutex<Vec<String>>>,
}

impl Member {
    async fn join(host: &BinaryHost, room: &str) -> Self {
        let (sink, mut stream) = connect(&host.url(&format!("chat?room={room}"))).await.split();
        let got = Arc::new(Mutex::new(Vec::new()));
        let kept = got.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if let Message::Text(text) = message {
                    kept.lock().unwrap().push(text.to_string());
                }
            }
        });
        Self { sink, got }
    }

    async fn say(&mut self, text: &str) {
        futures_util::SinkExt::send(&mut self.sink, Message::text(text)).await.unwrap();
    }

    fn received(&self) -> Vec<String> {
        self.got.lock().unwrap().clone()
    }
}

/// Until every member has seen a `ready` line from every publisher: a host listens to a channel's subject only once
/// its first member joined, so this is how a test knows the room spans every host. Each round, publisher `i` says
/// `ready i`.
async fn until_every_host_hears_every_other(members: &mut [Member], publishers: &[usize]) {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        for &p in publishers {
            members[p].say(&format!("ready {p}")).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let heard_all = members.iter().all(|m| {
            let got = m.received();
            publishers.iter().all(|p| got.iter().any(|line| *line == format!("ready {p}")))
        });
        if heard_all {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the room never spanned every host");
    }
}

/// Waits until every member has `count` lines starting with `prefix`, then returns each member's lines.
async fn lines_with(members: &[Member], prefix: &str, count: usize) -> Vec<Vec<String>> {
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let lines: Vec<Vec<String>> = members
            .iter()
            .map(|m| m.received().into_iter().filter(|line| line.starts_with(prefix)).collect())
            .collect();
        if lines.iter().all(|l| l.len() >= count) || tokio::time::Instant::now() >= deadline {
            // A little longer, so that a message delivered twice would show.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return members
                .iter()
                .map(|m| m.received().into_iter().filter(|line| line.starts_with(prefix)).collect())
                .collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of a metric on a binary host's admin API (0 when absent).
async fn metric(host: &BinaryHost, key: &str) -> f64 {
    Scrape::fetch(host.admin.parse().unwrap()).await.get(key)
}

#[tokio::test]
async fn a_room_over_three_hosts_gets_every_publishers_messages_once_and_in_order() {
    const PER_PUBLISHER: usize = 50;
    let Some(nats) = NatsServer::start().await else { return };
    let plugins = plugins();
    let hosts = hosts(&plugins, &nats, 3).await;
    // Two members on each host; the first on each is also a publisher.
    let mut members = Vec::new();
    for host in &hosts {
        members.push(Member::join(host, "lobby").await);
        members.push(Member::join(host, "lobby").await);
    }
    let publishers = [0, 2, 4];
    until_every_host_hears_every_other(&mut members, &publishers).await;
    for k in 0..PER_PUBLISHER {
        for &p in &publishers {
            members[p].say(&format!("m {p} {k}")).await;
        }
    }
    let all = lines_with(&members, "m ", PER_PUBLISHER * publishers.len()).await;
    for (m, lines) in all.iter().enumerate() {
        assert_eq!(lines.len(), PER_PUBLISHER * publishers.len(), "member {m} got each message once: {lines:?}");
        for &p in &publishers {
            let from_p: Vec<usize> = lines
                .iter()
                .filter_map(|line| line.strip_prefix(&format!("m {p} ")))
                .map(|k| k.parse().unwrap())
                .collect();
            assert_eq!(from_p, (0..PER_PUBLISHER).collect::<Vec<_>>(), "member {m}: publisher {p} in order, once");
        }
    }
    // Each host sent its own publishes to the broker and received the other two hosts'.
    for host in &hosts {
        assert!(metric(host, "wasmsock_broker_messages_sent_total").await >= PER_PUBLISHER as f64);
        assert!(metric(host, "wasmsock_broker_messages_received_total").await >= (2 * PER_PUBLISHER) as f64);
        assert_eq!(metric(host, "wasmsock_broker_connected").await, 1.0);
    }
}

#[tokio::test]
async fn wasmsock_publish_to_one_host_reaches_the_room_on_every_host() {
    let Some(nats) = NatsServer::start().await else { return };
    let plugins = plugins();
    let hosts = hosts(&plugins, &nats, 3).await;
    let mut members = Vec::new();
    for host in &hosts {
        members.push(Member::join(host, "news").await);
    }
    until_every_host_hears_every_other(&mut members, &[0, 1, 2]).await;
    let out = std::process::Command::new(binary())
        .args(["publish", "examples/news", "from the operator", "--json", "--host"])
        .arg(format!("http://{}", hosts[1].admin))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["queued"], 1, "queued counts this host's members: {answer}");
    let all = lines_with(&members, "from the operator", 1).await;
    assert!(all.iter().all(|lines| lines.len() == 1), "every host's member got it once: {all:?}");
}

#[tokio::test]
async fn a_broker_restart_is_reported_and_delivery_resumes_without_duplicates() {
    let Some(mut nats) = NatsServer::start().await else { return };
    let plugins = plugins();
    let hosts = hosts(&plugins, &nats, 2).await;
    let mut members = vec![Member::join(&hosts[0], "r").await, Member::join(&hosts[1], "r").await];
    until_every_host_hears_every_other(&mut members, &[0, 1]).await;
    members[0].say("before").await;
    lines_with(&members, "before", 1).await;

    nats.kill();
    for host in &hosts {
        eventually_async("the host reports the broker down", || async {
            metric(host, "wasmsock_broker_connected").await == 0.0
        })
        .await;
    }
    // While the broker is gone a publish still reaches its own host's members.
    members[0].say("during").await;
    let during = lines_with(&members[..1], "during", 1).await;
    assert_eq!(during[0], ["during"]);

    nats.restart().await;
    for host in &hosts {
        let deadline = tokio::time::Instant::now() + WAIT * 2;
        while metric(host, "wasmsock_broker_connected").await != 1.0 {
            assert!(tokio::time::Instant::now() < deadline, "the host never reported the broker back");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(metric(host, "wasmsock_broker_reconnects_total").await >= 1.0);
    }
    // The subscriptions came back by themselves: a message from host 1 reaches host 0 again.
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    let mut k = 0;
    loop {
        members[1].say(&format!("after {k}")).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        if members[0].received().iter().any(|line| line.starts_with("after ")) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "delivery across hosts did not resume");
        k += 1;
    }
    for member in &members {
        let got = member.received();
        for line in ["before", "during"] {
            assert!(got.iter().filter(|l| *l == line).count() <= 1, "{line} delivered twice: {got:?}");
        }
        let mut after: Vec<&String> = got.iter().filter(|l| l.starts_with("after ")).collect();
        let total = after.len();
        after.dedup();
        assert_eq!(after.len(), total, "no message delivered twice: {got:?}");
    }
}

/// `wasmsock cluster --json` against `host`.
fn cluster_listing(host: &BinaryHost) -> serde_json::Value {
    let out = std::process::Command::new(binary())
        .args(["cluster", "--json", "--host"])
        .arg(format!("http://{}", host.admin))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The (host, connections) pairs of a listing.
fn hosts_of(listing: &serde_json::Value) -> Vec<(String, u64)> {
    let hosts = listing["hosts"].as_array().unwrap();
    hosts.iter().map(|h| (h["host"].as_str().unwrap().to_owned(), h["connections"].as_u64().unwrap())).collect()
}

async fn healthz(host: &BinaryHost) -> (u16, serde_json::Value) {
    let answer = reqwest::get(format!("http://{}/healthz", host.admin)).await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

#[tokio::test]
async fn the_listing_drops_a_killed_host_in_time_and_health_follows_the_broker() {
    let Some(mut nats) = NatsServer::start().await else { return };
    let plugins = plugins();
    let mut hosts = hosts(&plugins, &nats, 3).await;
    let mut members = vec![Member::join(&hosts[0], "k").await, Member::join(&hosts[1], "k").await];
    let _second = Member::join(&hosts[1], "k").await;
    let want = vec![("h0".to_owned(), 1), ("h1".to_owned(), 2), ("h2".to_owned(), 0)];
    let deadline = tokio::time::Instant::now() + WAIT;
    while hosts_of(&cluster_listing(&hosts[0])) != want {
        assert!(tokio::time::Instant::now() < deadline, "{}", cluster_listing(&hosts[0]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listing = cluster_listing(&hosts[0]);
    assert_eq!(listing["host"], "h0");
    assert_eq!(listing["broker_connected"], true);

    // kill -9 one host: the others drop it within the peer timeout (3 s) plus a heartbeat, and keep delivering.
    let killed = hosts.pop().unwrap();
    let pid = killed.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-9", &pid]).status().unwrap().success());
    let started = std::time::Instant::now();
    let gone = want[..2].to_vec();
    while hosts_of(&cluster_listing(&hosts[0])) != gone {
        assert!(started.elapsed() < Duration::from_secs(6), "h2 still listed: {}", cluster_listing(&hosts[0]));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("a killed host left the listing after {:?}", started.elapsed());
    until_every_host_hears_every_other(&mut members, &[0, 1]).await;

    // Health: ok with the broker, 503 naming it without, ok again when it is back.
    assert_eq!(healthz(&hosts[0]).await.0, 200);
    nats.kill();
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = healthz(&hosts[0]).await;
        if status == 503 {
            assert!(body["reason"].as_str().unwrap().contains("unreachable"), "{body}");
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "health stayed {status} without a broker");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(cluster_listing(&hosts[0])["broker_connected"], false);
    nats.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while healthz(&hosts[0]).await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "health never came back with the broker");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `wasmsock ARGS --host http://ADMIN`: (success, stdout, stderr).
fn cli(host: &BinaryHost, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(binary())
        .args(args)
        .args(["--host", &format!("http://{}", host.admin)])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether `host` serves `endpoint` with a chat: a session there gets its own message back.
async fn serves_chat(host: &BinaryHost, endpoint: &str) -> bool {
    let Ok(Ok((mut ws, _))) =
        tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(host.url(&format!("{endpoint}?room=probe")))).await
    else {
        return false;
    };
    send(&mut ws, "probe").await;
    matches!(next(&mut ws).await, Some(Message::Text(text)) if text.as_str() == "probe")
}

#[tokio::test]
async fn a_deploy_through_one_host_serves_on_every_host_and_a_late_host_catches_up() {
    let Some(mut nats) = NatsServer::start().await else { return };
    // Three hosts, each with its own empty plugins root.
    let roots: Vec<Plugins> = (0..5).map(|_| Plugins::new()).collect();
    let cluster = format!("test-{}", nats.port);
    let mut hosts = Vec::new();
    for (i, root) in roots.iter().take(3).enumerate() {
        let id = format!("h{i}");
        hosts.push(
            BinaryHost::start(root, &["--nats", &nats.url(), "--cluster-name", &cluster, "--host-id", &id]).await,
        );
    }
    // A project directory with the chat component and its descriptor.
    let project = tempfile::tempdir().unwrap();
    let dir = project.path().join("examples");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(component("chat"), dir.join("chat.wasm")).unwrap();
    std::fs::write(dir.join("rooms.websocket"), r#"{"handler": "examples/chat", "endpoint": "rooms"}"#).unwrap();

    // A refused deploy (a descriptor whose handler exists nowhere) changes no host.
    let bad = project.path().join("bad.websocket");
    std::fs::write(&bad, r#"{"handler": "examples/nowhere", "endpoint": "bad"}"#).unwrap();
    let (ok, _, err) = cli(&hosts[0], &["deploy", bad.to_str().unwrap()]);
    assert!(!ok && err.contains("examples/nowhere"), "{err}");

    let (ok, out, err) = cli(&hosts[0], &["deploy", dir.to_str().unwrap(), "--json"]);
    assert!(ok, "{err}");
    assert!(out.contains("shared with the cluster"), "{out}");
    for host in &hosts {
        eventually_async("every host serves the deployed endpoint", || serves_chat(host, "rooms")).await;
        let (_, listing, _) = cli(host, &["list", "--json"]);
        assert!(!listing.contains("\"bad\""), "the refused deploy reached {}: {listing}", host.addr);
    }

    // A host that starts afterwards catches up before it serves: its first session is already served.
    let late =
        BinaryHost::start(&roots[3], &["--nats", &nats.url(), "--cluster-name", &cluster, "--host-id", "late"]).await;
    assert!(serves_chat(&late, "rooms").await, "the late host serves the endpoint from its start");
    assert!(late.log().iter().any(|line| line.contains("caught up with the cluster's deploys")), "{:?}", late.log());

    // Removing the endpoint through another host removes it everywhere.
    let (ok, _, err) = cli(&hosts[1], &["undeploy", "rooms"]);
    assert!(ok, "{err}");
    for host in hosts.iter().chain([&late]) {
        eventually_async("the endpoint is gone everywhere", || async { !serves_chat(host, "rooms").await }).await;
    }

    // A host started while the broker is down serves what it has, and catches up once the broker is back.
    let (ok, _, err) = cli(&hosts[2], &["deploy", dir.to_str().unwrap()]);
    assert!(ok, "{err}");
    nats.kill();
    let cold_flags = ["--nats", &nats.url(), "--cluster-name", &cluster, "--host-id", "cold"];
    // It serves after waiting 2 s for the broker (DEFAULT_BROKER_WAIT_AT_START); the broker comes back later.
    let started = std::time::Instant::now();
    let cold = BinaryHost::start(&roots[4], &cold_flags).await;
    eprintln!("the host without its broker started serving after {:?}", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(6), "it waited {:?} for its broker", started.elapsed());
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(started.elapsed())).await;
    nats.restart().await;
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    while !serves_chat(&cold, "rooms").await {
        assert!(tokio::time::Instant::now() < deadline, "the host started without its broker never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let said: Vec<String> = cold.log().into_iter().filter(|line| line.contains("deploys")).collect();
    assert!(said.iter().any(|line| line.contains("serving without the cluster's deploys")), "{said:#?}");
    assert!(said.iter().any(|line| line.contains("deploys are shared with this host now")), "{said:#?}");
}

/// Sends a command on a recorder session and returns the reply.
async fn command(ws: &mut Ws, text_: &str) -> String {
    send(ws, text_).await;
    text(ws).await
}

#[tokio::test]
async fn a_handler_sends_to_and_closes_a_connection_on_another_host_and_a_dead_host_fails_fast() {
    let Some(nats) = NatsServer::start().await else { return };
    let plugins = Plugins::new()
        .handler("a/recorder", "recorder")
        .endpoint("a-rec", "a/recorder")
        .handler("b/recorder", "recorder")
        .endpoint("b-rec", "b/recorder");
    let mut hosts = hosts(&plugins, &nats, 2).await;
    let mut target = connect(&hosts[1].url("a-rec?who=target")).await;
    let target_id = own_id(&mut target, "who=target").await;
    assert!(target_id.ends_with("@h1"), "ids name their host in a cluster: {target_id}");
    let mut driver = connect(&hosts[0].url("a-rec?who=driver")).await;
    let mut other_project = connect(&hosts[0].url("b-rec?who=b")).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while hosts_of(&cluster_listing(&hosts[0])).len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "h0 never heard h1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Project a's handler on h0 reaches a's session on h1: text, binary, in order.
    assert_eq!(command(&mut driver, &format!("client-send {target_id} hello")).await, "ok");
    assert_eq!(command(&mut driver, &format!("client-send-binary {target_id} bytes")).await, "ok");
    assert_eq!(text(&mut target).await, "hello");
    assert_eq!(binary_message(&mut target).await, b"bytes");
    // Project b's handler does not: the connection does not exist for it, on any host.
    assert_eq!(command(&mut other_project, &format!("client-send {target_id} from-b")).await, "none");
    // get-clients answers for the whole cluster, within the project.
    let listing = command(&mut driver, "clients").await;
    assert!(listing.contains(&format!("{target_id}|")) && listing.contains("who=driver"), "{listing}");
    let listing = command(&mut other_project, "clients").await;
    assert!(!listing.contains(&target_id), "{listing}");
    let admin =
        reqwest::get(format!("http://{}/admin/v1/connections?cluster_project=a", hosts[0].admin)).await.unwrap();
    let admin: serde_json::Value = admin.json().await.unwrap();
    assert_eq!(admin["partial"], false, "{admin}");
    assert!(admin["remote"].as_array().unwrap().iter().any(|c| c["id"] == target_id.as_str()), "{admin}");
    // Each is counted as routed on the sending host.
    let routed = Scrape::fetch(hosts[0].admin.parse().unwrap()).await;
    assert_eq!(routed.get(r#"wasmsock_routed_total{kind="send"}"#), 2.0);
    // A close through the broker, with the handler's code and reason.
    assert_eq!(command(&mut driver, &format!("client-close {target_id}")).await, "ok");
    let close = close_frame(&mut target).await.unwrap();
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1000, "done"));
    let deadline = tokio::time::Instant::now() + WAIT;
    while command(&mut driver, &format!("client-send {target_id} late")).await != "none" {
        assert!(tokio::time::Instant::now() < deadline, "the closed connection still reachable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // kill -9 the host holding a connection: get-client answers none at once, not after a timeout.
    let mut second = connect(&hosts[1].url("a-rec?who=second")).await;
    let second_id = own_id(&mut second, "who=second").await;
    assert_eq!(command(&mut driver, &format!("client-send {second_id} before")).await, "ok");
    assert_eq!(text(&mut second).await, "before");
    let killed = hosts.pop().unwrap();
    assert!(std::process::Command::new("kill").args(["-9", &killed.pid().to_string()]).status().unwrap().success());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let asked = std::time::Instant::now();
    assert_eq!(command(&mut driver, &format!("client-send {second_id} after")).await, "none");
    eprintln!("get-client of a connection on a killed host answered none after {:?}", asked.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(1), "it waited {:?}", asked.elapsed());
    // Its connections are out of the cluster-wide listing at once too (the broker has nobody to ask).
    let listing = command(&mut driver, "clients").await;
    assert!(!listing.contains(&second_id) && listing.contains("who=driver"), "{listing}");
}

/// Waits until `host` lists `count` hosts in the cluster.
async fn until_hosts(host: &BinaryHost, count: usize) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while hosts_of(&cluster_listing(host)).len() < count {
        assert!(tokio::time::Instant::now() < deadline, "{} never heard {count} hosts", host.addr);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until every host of `hosts` heard `peer`'s heartbeat less than 300 ms ago.
async fn until_fresh_heartbeat(hosts: &[BinaryHost], peer: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    let age = |host: &BinaryHost| {
        let listing = cluster_listing(host);
        let entry = listing["hosts"].as_array().unwrap().iter().find(|h| h["host"] == peer).cloned();
        entry.and_then(|h| h["last_heartbeat_ms"].as_u64()).unwrap_or(u64::MAX)
    };
    while !hosts.iter().all(|host| age(host) < 300) {
        assert!(tokio::time::Instant::now() < deadline, "never a fresh heartbeat of {peer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn members_page_over_every_host_and_a_stuck_host_is_named_missing() {
    let Some(nats) = NatsServer::start().await else { return };
    let plugins = Plugins::new().handler("a/recorder", "recorder").endpoint_granted("a-rec", "a/recorder", &[LOOPBACK]);
    let hosts = hosts(&plugins, &nats, 3).await;
    for host in &hosts {
        until_hosts(host, 3).await;
    }
    // Two members on h0, one on h1, one on h2; the driver and the watcher on h0 are not members.
    let mut members = Vec::new();
    for (i, host) in [0, 0, 1, 2].into_iter().enumerate() {
        let mut ws = connect(&hosts[host].url(&format!("a-rec?who=m{i}"))).await;
        let id = own_id(&mut ws, &format!("who=m{i}")).await;
        assert_eq!(command(&mut ws, "join room").await, "ok");
        members.push((ws, id));
    }
    let ids: Vec<String> = members.iter().map(|(_, id)| id.clone()).collect();
    assert!(ids[0].ends_with("@h0") && ids[2].ends_with("@h1") && ids[3].ends_with("@h2"), "{ids:?}");
    let mut driver = connect(&hosts[1].url("a-rec?who=driver")).await;
    let mut watcher = connect(&hosts[1].url("a-rec?who=watcher")).await;

    // Every host's members, host by host in the order of their ids, oldest first on each.
    let all = ids.join(",");
    assert_eq!(command(&mut driver, "survey-members room 10 -").await, format!("members {all} next - missing -"));
    assert_eq!(command(&mut driver, "members room 10 -").await, format!("members {all} next -"));
    // Pages resume after any id, across hosts.
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);
    assert_eq!(command(&mut driver, "members room 2 -").await, format!("members {a},{b} next {b}"));
    assert_eq!(command(&mut driver, &format!("members room 2 {b}")).await, format!("members {c},{d} next -"));
    assert_eq!(command(&mut driver, &format!("members room 1 {a}")).await, format!("members {b} next {b}"));
    assert_eq!(command(&mut driver, &format!("members room 1 {c}")).await, format!("members {d} next -"));
    assert!(command(&mut driver, "members room 1 s1").await.starts_with("error invalid: "), "an id names its host");
    let clients = command(&mut driver, "survey-clients").await;
    assert!(ids.iter().all(|id| clients.contains(id.as_str())) && clients.ends_with(" missing -"), "{clients}");
    let admin = format!("http://{}/admin/v1/channels/a/room?cluster=true", hosts[0].admin);
    let page: serde_json::Value = reqwest::get(&admin).await.unwrap().json().await.unwrap();
    let listed: Vec<String> =
        page["members"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!((listed, &page["partial"]), (ids.clone(), &serde_json::Value::Bool(false)), "{page}");
    // get-client-by-handler finds an outbound client that another host holds.
    assert_eq!(command(&mut driver, "by-handler a/recorder").await, "none");
    let outbound = hosts[0].url("a-rec?who=outbound");
    let created = command(&mut members[0].0, &format!("connect-with {outbound} a/recorder")).await;
    let client = client_id(&created);
    assert!(client.ends_with("@h0"), "{created}");
    let found = command(&mut driver, "by-handler a/recorder").await;
    assert_eq!(client_id(&found), client, "{found}");

    // h2 stops answering but is still within its heartbeat timeout: each survey waits out its deadline, answers
    // with what came, and names h2 as missing. It stops just after both surveying hosts heard it, so the surveys
    // (one deadline each) run well inside the peer timeout even on a loaded machine.
    until_fresh_heartbeat(&hosts[..2], "h2").await;
    let stopped = hosts[2].pid().to_string();
    assert!(std::process::Command::new("kill").args(["-STOP", &stopped]).status().unwrap().success());
    let asked = std::time::Instant::now();
    let (page, clients, admin_page) = tokio::join!(
        command(&mut driver, "survey-members room 10 -"),
        command(&mut watcher, "survey-clients"),
        async { reqwest::get(&admin).await.unwrap().json::<serde_json::Value>().await.unwrap() },
    );
    eprintln!("the surveys with a stopped host answered after {:?}", asked.elapsed());
    assert!(std::process::Command::new("kill").args(["-CONT", &stopped]).status().unwrap().success());
    assert_eq!(page, format!("members {a},{b},{c} next - missing h2"));
    assert!(
        clients.ends_with(" missing h2") && !clients.contains(d.as_str()) && clients.contains(c.as_str()),
        "{clients}"
    );
    assert_eq!(
        (&admin_page["partial"], &admin_page["missing_hosts"]),
        (&true.into(), &serde_json::json!(["h2"])),
        "{admin_page}\n{}",
        cluster_listing(&hosts[0])
    );
    // Back, it answers again.
    let deadline = tokio::time::Instant::now() + WAIT;
    while command(&mut driver, "survey-members room 10 -").await != format!("members {all} next - missing -") {
        assert!(tokio::time::Instant::now() < deadline, "h2 never answered again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
