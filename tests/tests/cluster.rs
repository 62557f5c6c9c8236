//! The cluster with a real `nats-server` and real host processes (`wasmsock serve --nats`): a room spread over three
//! hosts gets every message of a publisher on each host once and in order; `wasmsock publish` to one host reaches the
//! members on all of them; and when the broker is killed and restarted on the same port, the hosts report it down then
//! up and delivery across hosts resumes without a restart, delivering nothing twice; `wasmsock cluster` lists the
//! hosts and drops a killed one in time; `/healthz` follows the broker.

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
