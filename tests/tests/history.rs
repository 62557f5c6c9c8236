//! Channel history and recovery through the chat example on one host: a member that drops while 100 messages are
//! published resumes with all of them once and in order while a publisher keeps sending through the resume; a
//! position older than the history or of another epoch is reported as not recovered with what the history has; another
//! project's channel of the same name is untouched; a project without history gets bare messages; the JavaScript chat
//! resumes the same way (through the JavaScript SDK's `joinFrom`); the Rust, JavaScript and Python recorders publish
//! with a position and read pages of history through their SDKs with the same answers; and against the real
//! binary, `serve --history-size` for every project, `wasmsock publish` answering offsets, `wasmsock channels` showing a
//! channel's top offset and epoch, and `wasmsock history` printing its messages in pages; the journal keeping the
//! history and its epoch over a clean restart, and every acknowledged publication over `kill -9` (under a new epoch,
//! so that a position from before is not recovered). Across a cluster (a real `nats-server`): a member resumes on
//! another host and `kill -9` of a host loses nothing acknowledged; trimmed positions, another project and a broker
//! restart; and a join from a position that fails (over the channel cap, or a bad name) leaves no subscription on the
//! broker. `history_cost` (ignored) prints what history costs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use wasmsock_tests::*;

/// The chat example in project `examples` (keeping `size` publications per channel) and in project `other` (keeping
/// 100), and in project `plain`, which keeps no history.
fn plugins(size: u32) -> Plugins {
    Plugins::new()
        .handler("examples/chat", "chat")
        .endpoint("chat", "examples/chat")
        .file("examples/project.json", format!(r#"{{"quotas": {{"history-size": {size}}}}}"#))
        .handler("other/chat", "chat")
        .endpoint("other-chat", "other/chat")
        .file("other/project.json", r#"{"quotas": {"history-size": 100}}"#)
        .handler("plain/chat", "chat")
        .endpoint("plain-chat", "plain/chat")
}

/// The next text message as JSON.
async fn json(ws: &mut Ws) -> Value {
    let text = text(ws).await;
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("not JSON ({err}): {text}"))
}

/// The status a `recover=1` session receives after joining: (recovered, epoch, top offset).
fn status(value: &Value) -> Option<(bool, String, u64)> {
    Some((value["recovered"].as_bool()?, value["epoch"].as_str()?.to_owned(), value["offset"].as_u64()?))
}

/// An envelope's (offset, epoch, data).
fn envelope(value: &Value) -> (u64, String, String) {
    let offset = value["offset"].as_u64().unwrap_or_else(|| panic!("no offset in {value}"));
    (offset, value["epoch"].as_str().unwrap().to_owned(), value["data"].as_str().unwrap().to_owned())
}

/// Reads a `recover=1` session until its status and `count` envelopes have arrived (in whatever order the status
/// falls among them): the status and the envelopes in arrival order.
async fn resume(ws: &mut Ws, count: usize) -> ((bool, String, u64), Vec<(u64, String, String)>) {
    let (mut found, mut envelopes) = (None, Vec::new());
    while found.is_none() || envelopes.len() < count {
        let value = json(ws).await;
        match status(&value) {
            Some(status) => {
                assert!(found.is_none(), "a second status: {value}");
                found = Some(status);
            }
            None => envelopes.push(envelope(&value)),
        }
    }
    (found.unwrap(), envelopes)
}

/// A chat session that publishes: every line sent to it is published to its room; what it receives (it is a member
/// too) is read and counted by a task, so its queue never fills.
struct Publisher {
    sink: futures_util::stream::SplitSink<Ws, Message>,
    received: Arc<AtomicUsize>,
}

impl Publisher {
    async fn open(url: &str) -> Self {
        let (sink, mut stream) = connect(url).await.split();
        let received = Arc::new(AtomicUsize::new(0));
        let counter = received.clone();
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                if message.is_text() {
                    counter.fetch_add(1, Ordering::AcqRel);
                }
            }
        });
        Self { sink, received }
    }

    async fn say(&mut self, text: &str) {
        self.sink.send(Message::text(text)).await.unwrap();
    }

    /// Waits until it has received `count` messages of its room (so that every one of them has an offset).
    async fn heard(&self, count: usize) {
        let received = self.received.clone();
        eventually(&format!("the publisher hears {count} messages"), move || received.load(Ordering::Acquire) >= count)
            .await;
    }
}

#[tokio::test]
async fn a_member_that_drops_resumes_with_every_missed_message_once_and_in_order_while_others_publish() {
    const BEFORE: u64 = 10;
    const MISSED: u64 = 100;
    const DURING: u64 = 200;
    let host = TestHost::start(plugins(1_000)).await;
    let mut member = host.connect("chat?room=r&recover=1").await;
    let (recovered, epoch, top) = status(&json(&mut member).await).unwrap();
    assert_eq!((recovered, top), (true, 0), "a new room is at offset 0");
    let mut publisher = Publisher::open(&host.url("chat?room=r")).await;
    for i in 1..=BEFORE {
        publisher.say(&format!("before {i}")).await;
    }
    for i in 1..=BEFORE {
        assert_eq!(envelope(&json(&mut member).await), (i, epoch.clone(), format!("before {i}")));
    }
    member.close(None).await.unwrap();
    drop(member);

    for i in 1..=MISSED {
        publisher.say(&format!("missed {i}")).await;
    }
    publisher.heard((BEFORE + MISSED) as usize).await;
    // Keeps publishing, paced, through the resume.
    let publishing = tokio::spawn(async move {
        for i in 1..=DURING {
            publisher.say(&format!("during {i}")).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        publisher
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut resumed = host.connect(&format!("chat?room=r&recover=1&since={BEFORE}&epoch={epoch}")).await;
    let ((recovered, same_epoch, top_at_join), envelopes) = resume(&mut resumed, (MISSED + DURING) as usize).await;
    let publisher = publishing.await.unwrap();
    assert!(recovered, "the position was in the history");
    assert_eq!(same_epoch, epoch);
    assert!(
        top_at_join > BEFORE + MISSED && top_at_join < BEFORE + MISSED + DURING,
        "the resume happened while the publisher was sending (top {top_at_join})"
    );
    // Every offset after the position exactly once, in order, each with the message published at it.
    let offsets: Vec<u64> = envelopes.iter().map(|(offset, _, _)| *offset).collect();
    let expected: Vec<u64> = (BEFORE + 1..=BEFORE + MISSED + DURING).collect();
    assert_eq!(offsets, expected);
    for (offset, at_epoch, data) in &envelopes {
        assert_eq!(at_epoch, &epoch);
        let want = if *offset <= BEFORE + MISSED {
            format!("missed {}", offset - BEFORE)
        } else {
            format!("during {}", offset - BEFORE - MISSED)
        };
        assert_eq!(data, &want, "offset {offset}");
    }
    // And nothing more: the next message is the next offset.
    drop(publisher);
    let mut late = Publisher::open(&host.url("chat?room=r")).await;
    late.say("after").await;
    let next = envelope(&json(&mut resumed).await);
    assert_eq!(next, (BEFORE + MISSED + DURING + 1, epoch, "after".to_owned()));
}

#[tokio::test]
async fn a_position_older_than_the_history_or_of_another_epoch_is_not_recovered_and_gets_what_is_kept() {
    let host = TestHost::start(plugins(5)).await;
    let mut first = host.connect("chat?room=small&recover=1").await;
    let (_, epoch, _) = status(&json(&mut first).await).unwrap();
    let mut publisher = Publisher::open(&host.url("chat?room=small")).await;
    for i in 1..=10 {
        publisher.say(&format!("m{i}")).await;
    }
    publisher.heard(10).await;

    for since in [format!("since=2&epoch={epoch}"), "since=8&epoch=another".to_owned()] {
        let mut late = host.connect(&format!("chat?room=small&recover=1&{since}")).await;
        let ((recovered, at_epoch, top), envelopes) = resume(&mut late, 5).await;
        assert!(!recovered, "{since}: not complete");
        assert_eq!((at_epoch.as_str(), top), (epoch.as_str(), 10));
        let kept: Vec<(u64, String)> = envelopes.into_iter().map(|(offset, _, data)| (offset, data)).collect();
        assert_eq!(kept, (6..=10).map(|i| (i, format!("m{i}"))).collect::<Vec<_>>(), "{since}: what is kept");
    }
    // A position at the top is complete and sends nothing before the live messages.
    let mut current = host.connect(&format!("chat?room=small&recover=1&since=10&epoch={epoch}")).await;
    assert_eq!(status(&json(&mut current).await), Some((true, epoch.clone(), 10)));
    publisher.say("m11").await;
    assert_eq!(envelope(&json(&mut current).await), (11, epoch, "m11".to_owned()));
    // Counted: two incomplete resumes and one recovered (the first member joined without a position).
    let scrape = Scrape::fetch(host.admin).await;
    assert_eq!(scrape.get(r#"wasmsock_history_resumes_total{outcome="incomplete",project="examples"}"#), 2.0);
    assert_eq!(scrape.get(r#"wasmsock_history_resumes_total{outcome="recovered",project="examples"}"#), 1.0);
}

#[tokio::test]
async fn another_projects_channel_of_the_same_name_is_untouched_and_a_project_without_history_gets_bare_messages() {
    let host = TestHost::start(plugins(100)).await;
    let mut ours = Publisher::open(&host.url("chat?room=same")).await;
    for i in 1..=3 {
        ours.say(&format!("ours {i}")).await;
    }
    ours.heard(3).await;
    let mut theirs = host.connect("other-chat?room=same&recover=1&since=0&epoch=x").await;
    let (recovered, their_epoch, top) = status(&json(&mut theirs).await).unwrap();
    assert_eq!((recovered, top), (false, 0), "project other's `same` has no publications (and another epoch)");
    let mut them = Publisher::open(&host.url("other-chat?room=same")).await;
    them.say("theirs").await;
    assert_eq!(envelope(&json(&mut theirs).await), (1, their_epoch.clone(), "theirs".to_owned()));
    let mut ours_late = host.connect("chat?room=same&recover=1&since=0&epoch=x").await;
    let ((_, our_epoch, top), envelopes) = resume(&mut ours_late, 3).await;
    assert_eq!(top, 3);
    assert_ne!(our_epoch, their_epoch, "each stream has its own epoch");
    assert_eq!(envelopes.iter().map(|(_, _, data)| data.as_str()).collect::<Vec<_>>(), ["ours 1", "ours 2", "ours 3"]);

    // Without history: the messages are bare, and a position cannot be recovered.
    let mut plain = host.connect("plain-chat?room=same&recover=1&since=3&epoch=x").await;
    assert_eq!(status(&json(&mut plain).await), Some((false, String::new(), 0)));
    let mut plain_publisher = Publisher::open(&host.url("plain-chat?room=same")).await;
    plain_publisher.say("bare").await;
    assert_eq!(text(&mut plain).await, "bare");
}

#[tokio::test]
async fn the_cli_publishes_with_offsets_lists_top_and_epoch_and_prints_a_channels_history() {
    // History for every project from the host's flag; `plain` turns it off in its project.json.
    let plugins = Plugins::new()
        .handler("examples/chat", "chat")
        .endpoint("chat", "examples/chat")
        .handler("plain/chat", "chat")
        .endpoint("plain-chat", "plain/chat")
        .file("plain/project.json", r#"{"quotas": {"history-size": 0}}"#);
    let host = BinaryHost::start(&plugins, &["--history-size", "50"]).await;
    let admin = host.admin.clone();
    let mut member = connect(&host.url("chat?room=lobby&recover=1")).await;
    let (_, epoch, _) = status(&json(&mut member).await).unwrap();
    for i in 1..=3 {
        let (ok, out, err) = cli(&admin, &["publish", "examples/lobby", &format!("line {i}"), "--json"]);
        assert!(ok, "{err}");
        let answer: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(answer["offset"], i, "{answer}");
        assert_eq!(answer["epoch"], epoch.as_str());
        assert_eq!(envelope(&json(&mut member).await), (i, epoch.clone(), format!("line {i}")));
    }
    let (ok, out, _) = cli(&admin, &["publish", "examples/lobby", "line 4"]);
    assert!(ok && out.contains(&format!("at offset 4 of epoch {epoch}")), "{out}");
    let (ok, out, _) = cli(&admin, &["publish", "plain/lobby", "no history", "--json"]);
    assert!(ok && !out.contains("offset"), "{out}");

    let (ok, out, err) = cli(&admin, &["channels", "--json"]);
    assert!(ok, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let lobby = listed["channels"].as_array().unwrap().iter().find(|c| c["project"] == "examples").unwrap().clone();
    assert_eq!(lobby["top"], 4, "{listed}");
    assert_eq!(lobby["epoch"], epoch.as_str());
    assert_eq!(lobby["members"], 1);
    let (ok, out, _) = cli(&admin, &["channels"]);
    assert!(ok && out.contains("TOP") && out.contains(&epoch), "{out}");

    let (ok, out, err) = cli(&admin, &["history", "examples/lobby", "--limit", "3", "--json"]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let texts: Vec<&str> =
        page["publications"].as_array().unwrap().iter().map(|p| p["text"].as_str().unwrap()).collect();
    assert_eq!(texts, ["line 1", "line 2", "line 3"]);
    assert_eq!((page["next"].as_u64(), page["complete"].as_bool()), (Some(3), Some(true)));
    let (ok, out, _) = cli(&admin, &["history", "examples/lobby", "--since", "3", "--epoch", &epoch]);
    assert!(ok && out.contains("line 4") && !out.contains("line 3") && !out.contains("more:"), "{out}");
    let (ok, out, _) = cli(&admin, &["history", "examples/lobby", "--limit", "2"]);
    assert!(ok && out.contains(&format!("more: wasmsock history examples/lobby --since 2 --epoch {epoch}")), "{out}");
    let (ok, out, _) = cli(&admin, &["history", "examples/lobby", "--since", "1", "--epoch", "old"]);
    assert!(ok && out.contains("not complete"), "{out}");
    let (ok, _, err) = cli(&admin, &["history", "plain/lobby"]);
    assert!(!ok && err.contains("keeps no channel history"), "{err}");
}

/// The publications `wasmsock history` prints for `channel` as JSON: (epoch, texts by offset).
fn history_of(admin: &str, channel: &str) -> (String, Vec<(u64, String)>) {
    let (ok, out, err) = cli(admin, &["history", channel, "--json"]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let kept = page["publications"].as_array().unwrap().iter();
    let kept = kept.map(|p| (p["offset"].as_u64().unwrap(), p["text"].as_str().unwrap().to_owned())).collect();
    (page["epoch"].as_str().unwrap().to_owned(), kept)
}

#[tokio::test]
async fn the_journal_keeps_history_and_epoch_over_a_clean_restart_and_every_acknowledged_publication_over_kill_9() {
    let plugins = Plugins::new().handler("examples/chat", "chat").endpoint("chat", "examples/chat");
    let data = tempfile::tempdir().unwrap();
    let args = ["--history-size", "100", "--data", data.path().to_str().unwrap()];
    let mut host = BinaryHost::start(&plugins, &args).await;
    for i in 1..=5 {
        let (ok, _, err) = cli(&host.admin, &["publish", "examples/lobby", &format!("m{i}")]);
        assert!(ok, "{err}");
    }
    let (epoch, kept) = history_of(&host.admin, "examples/lobby");
    assert_eq!(kept.len(), 5);
    // A clean stop (SIGTERM drains and closes the journal).
    let pid = host.pid().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    tokio::time::timeout(WAIT, host.child.wait()).await.expect("the host stops on SIGTERM").unwrap();

    let mut host = BinaryHost::start(&plugins, &args).await;
    assert_eq!(history_of(&host.admin, "examples/lobby"), (epoch.clone(), kept.clone()), "kept with its epoch");
    let mut resumed = connect(&host.url(&format!("chat?room=lobby&recover=1&since=2&epoch={epoch}"))).await;
    let ((recovered, _, top), envelopes) = resume(&mut resumed, 3).await;
    assert!(recovered && top == 5, "a position from before a clean restart is recovered");
    assert_eq!(envelopes.iter().map(|(offset, _, _)| *offset).collect::<Vec<_>>(), [3, 4, 5]);
    drop(resumed);

    // Acknowledged publications (the CLI's publish returns once the journal has them), then SIGKILL.
    for i in 6..=8 {
        let (ok, _, err) = cli(&host.admin, &["publish", "examples/lobby", &format!("m{i}")]);
        assert!(ok, "{err}");
    }
    host.child.kill().await.unwrap();
    let host = BinaryHost::start(&plugins, &args).await;
    let (new_epoch, after_kill) = history_of(&host.admin, "examples/lobby");
    assert_eq!(after_kill, (1..=8).map(|i| (i, format!("m{i}"))).collect::<Vec<_>>(), "none acknowledged is lost");
    assert_ne!(new_epoch, epoch, "after a crash the stream has a new epoch");
    let mut late = connect(&host.url(&format!("chat?room=lobby&recover=1&since=8&epoch={epoch}"))).await;
    let ((recovered, at_epoch, _), envelopes) = resume(&mut late, 8).await;
    assert!(!recovered, "a position from before the crash is not claimed as recovered");
    assert_eq!(at_epoch, new_epoch);
    assert_eq!(envelopes.len(), 8, "what the history keeps is sent");
    let (ok, out, _) = cli(&host.admin, &["publish", "examples/lobby", "m9", "--json"]);
    assert!(ok && out.contains(r#""offset":9"#), "offsets go on from the top: {out}");
}

/// `count` hosts of one cluster on `nats` (ids `h0`, `h1`, …) serving [`plugins`] with `size` kept per channel, from
/// one plugins folder (a cluster serves one set of deploys).
async fn cluster_hosts(nats: &NatsServer, size: u32, count: usize) -> (Plugins, Vec<BinaryHost>) {
    let cluster = format!("test-{}", nats.port);
    let plugins = plugins(size);
    let mut hosts = Vec::new();
    for i in 0..count {
        let id = format!("h{i}");
        let flags = ["--nats", &nats.url(), "--cluster-name", &cluster, "--host-id", &id, "--no-cache"];
        hosts.push(BinaryHost::start(&plugins, &flags).await);
    }
    (plugins, hosts)
}

/// Reads `count` envelopes (and no status) from a `recover=1` session.
async fn envelopes(ws: &mut Ws, count: usize) -> Vec<(u64, String, String)> {
    let mut got = Vec::new();
    while got.len() < count {
        let value = json(ws).await;
        assert!(status(&value).is_none(), "a status where envelopes were expected: {value}");
        got.push(envelope(&value));
    }
    got
}

/// The texts of `envelopes` that start with `prefix`, in arrival order.
fn said(envelopes: &[(u64, String, String)], prefix: &str) -> Vec<String> {
    envelopes.iter().filter(|(_, _, data)| data.starts_with(prefix)).map(|(_, _, data)| data.clone()).collect()
}

fn numbered(prefix: &str, count: u64) -> Vec<String> {
    (1..=count).map(|i| format!("{prefix} {i}")).collect()
}

#[tokio::test]
async fn across_two_hosts_a_member_resumes_on_the_other_host_and_kill_9_of_its_host_loses_nothing_acknowledged() {
    const BEFORE: u64 = 10;
    const MISSED: u64 = 50;
    const DURING: u64 = 150;
    const ACKED: u64 = 20;
    let Some(nats) = NatsServer::start().await else { return };
    let (_plugins, mut hosts) = cluster_hosts(&nats, 1_000, 2).await;
    let h1 = hosts.pop().unwrap();
    let mut h0 = hosts.pop().unwrap();

    let mut member = connect(&h0.url("chat?room=r&recover=1")).await;
    let (recovered, _, top) = status(&json(&mut member).await).unwrap();
    assert_eq!((recovered, top), (true, 0), "a new room is at offset 0");
    // Publishers that join from a position (`recover=1`) hear every publication after their join (a plain join is
    // at most once while its host starts listening to the room); each also receives its status, counted in `heard`.
    let mut far = Publisher::open(&h1.url("chat?room=r&recover=1")).await;
    let mut near = Publisher::open(&h0.url("chat?room=r&recover=1")).await;
    // Until h0 hears h1 (h1 listens to the room once its publisher joined): the first offsets are 1..BEFORE.
    for i in 1..=BEFORE {
        far.say(&format!("before {i}")).await;
    }
    let before = envelopes(&mut member, BEFORE as usize).await;
    let epoch = before[0].1.clone();
    assert!(!epoch.is_empty());
    assert_eq!(before, (1..=BEFORE).map(|i| (i, epoch.clone(), format!("before {i}"))).collect::<Vec<_>>());
    member.close(None).await.unwrap();
    drop(member);

    // Both hosts publish while the member is away: every host takes offsets from the one stream.
    for i in 1..=MISSED {
        far.say(&format!("far {i}")).await;
        near.say(&format!("near {i}")).await;
    }
    far.heard((BEFORE + 2 * MISSED + 1) as usize).await;
    near.heard((BEFORE + 2 * MISSED + 1) as usize).await;
    let publishing = tokio::spawn(async move {
        for i in 1..=DURING {
            far.say(&format!("during {i}")).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        far
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The member comes back on the other host.
    let mut resumed = connect(&h1.url(&format!("chat?room=r&recover=1&since={BEFORE}&epoch={epoch}"))).await;
    let total = 2 * MISSED + DURING;
    let ((recovered, same_epoch, top_at_join), got) = resume(&mut resumed, total as usize).await;
    let far = publishing.await.unwrap();
    assert!(recovered, "the position was in the broker's history");
    assert_eq!(same_epoch, epoch);
    assert!(top_at_join > BEFORE + 2 * MISSED && top_at_join < BEFORE + total, "resumed mid-publishing: {top_at_join}");
    let offsets: Vec<u64> = got.iter().map(|(offset, _, _)| *offset).collect();
    assert_eq!(offsets, (BEFORE + 1..=BEFORE + total).collect::<Vec<_>>(), "every offset once, in order");
    assert!(got.iter().all(|(_, at, _)| *at == epoch));
    assert_eq!(said(&got, "far "), numbered("far", MISSED), "each host's publishes in its order");
    assert_eq!(said(&got, "near "), numbered("near", MISSED));
    assert_eq!(said(&got, "during "), numbered("during", DURING));

    // A member on h0 follows the room; h0 publishes, every publish heard back (kept by the broker), then dies.
    // Joining with no position, it is first sent everything kept.
    let mut watcher = connect(&h0.url("chat?room=r&recover=1")).await;
    let ((_, _, top), kept) = resume(&mut watcher, (BEFORE + total) as usize).await;
    assert_eq!(top, BEFORE + total);
    assert_eq!(kept.iter().map(|(offset, _, _)| *offset).collect::<Vec<_>>(), (1..=top).collect::<Vec<_>>());
    for i in 1..=ACKED {
        near.say(&format!("acked {i}")).await;
    }
    near.heard((BEFORE + 2 * MISSED + DURING + ACKED + 1) as usize).await;
    let seen = envelopes(&mut watcher, 5).await;
    let last_seen = seen.last().unwrap().0;
    h0.child.kill().await.unwrap();
    drop(watcher);
    // It comes back on h1 from the last position it saw: the rest of what h0 had acknowledged, once, in order.
    let mut back = connect(&h1.url(&format!("chat?room=r&recover=1&since={last_seen}&epoch={epoch}"))).await;
    let rest = (BEFORE + total + ACKED - last_seen) as usize;
    let ((recovered, _, top), got) = resume(&mut back, rest).await;
    assert!(recovered);
    assert_eq!(top, BEFORE + total + ACKED, "every publication h0 acknowledged is kept");
    assert_eq!(got.iter().map(|(offset, _, _)| *offset).collect::<Vec<_>>(), (last_seen + 1..=top).collect::<Vec<_>>());
    assert_eq!(
        said(&seen, "acked ").into_iter().chain(said(&got, "acked ")).collect::<Vec<_>>(),
        numbered("acked", ACKED)
    );
    // The member that resumed on h1 got them live too, and the next publish continues the offsets.
    let live = envelopes(&mut resumed, ACKED as usize).await;
    assert_eq!(said(&live, "acked "), numbered("acked", ACKED));
    drop(far);
    let mut late = Publisher::open(&h1.url("chat?room=r")).await;
    late.say("after").await;
    assert_eq!(envelope(&json(&mut back).await), (top + 1, epoch.clone(), "after".to_owned()));

    // The broker's history read through h1's admin API, in pages, from a position in the middle.
    let (ok, out, err) = cli(&h1.admin, &["history", "examples/r", "--since", "100", "--limit", "7", "--json"]);
    assert!(ok, "{err}");
    let page: Value = serde_json::from_str(&out).unwrap();
    let offsets: Vec<u64> =
        page["publications"].as_array().unwrap().iter().map(|p| p["offset"].as_u64().unwrap()).collect();
    assert_eq!(offsets, (101..=107).collect::<Vec<_>>(), "{page}");
    assert_eq!(
        (page["epoch"].as_str(), page["top"].as_u64(), page["next"].as_u64()),
        (Some(epoch.as_str()), Some(top + 1), Some(107))
    );
}

/// How many subscriptions the broker has, from its monitoring port.
async fn subscriptions(monitor: u16) -> u64 {
    let url = format!("http://127.0.0.1:{monitor}/subsz");
    let read = async { reqwest::get(&url).await.unwrap().json::<Value>().await.unwrap() };
    let subsz = tokio::time::timeout(WAIT, read).await.expect("/subsz answers in time");
    subsz["num_subscriptions"].as_u64().unwrap_or_else(|| panic!("no num_subscriptions in {subsz}"))
}

/// Waits until the broker's subscriptions are `expected`.
async fn subscriptions_become(monitor: u16, expected: u64, what: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = subscriptions(monitor).await;
        if now == expected {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: the broker has {now} subscriptions, not {expected}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn across_hosts_a_join_from_a_position_that_fails_leaves_nothing_listened_to_on_the_broker() {
    let store = tempfile::tempdir().unwrap();
    let monitor = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = format!("jetstream {{ store_dir: {:?} }}\nhttp: \"127.0.0.1:{monitor}\"\n", store.path().display());
    let Some(nats) = NatsServer::start_with_config(&config).await else { return };
    let cluster = format!("test-{}", nats.port);
    let plugins = Plugins::new()
        .handler("t/recorder", "recorder")
        .endpoint("rec", "t/recorder")
        .file("t/project.json", r#"{"quotas": {"history-size": 10}}"#);
    let url = nats.url();
    let flags = ["--nats", &url, "--cluster-name", &cluster, "--host-id", "h0", "--no-cache"];
    let host = BinaryHost::start(&plugins, &[&flags[..], &["--max-channels-per-connection", "1"]].concat()).await;
    let mut ws = connect(&host.url("rec")).await;
    // A first join and leave, so that what the host's client keeps once it has used JetStream's history (its inbox)
    // is counted in the base with the host's own subscriptions (requests, heartbeats, the deploys' watch).
    let warm = ask(&mut ws, "hjoin zero").await;
    assert!(warm.starts_with("joined at"), "{warm}");
    assert_eq!(ask(&mut ws, "leave zero").await, "left true");
    let mut base = subscriptions(monitor).await;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = subscriptions(monitor).await;
        if now == base {
            break;
        }
        base = now;
    }
    let joined = ask(&mut ws, "hjoin one").await;
    assert!(joined.starts_with("joined at"), "{joined}");
    subscriptions_become(monitor, base + 1, "a member's channel is listened to").await;
    // Over the connection's cap of one channel: refused after the host listened to the channel for it.
    let refused = ask(&mut ws, "hjoin two").await;
    assert!(refused.starts_with("error limit:"), "{refused}");
    subscriptions_become(monitor, base + 1, "a join over the cap leaves no subscription").await;
    // A name that is not a channel's is refused before anything is listened to (so at once, not eventually).
    let invalid = ask(&mut ws, "hjoin a b").await;
    assert!(invalid.starts_with("error invalid:"), "{invalid}");
    assert_eq!(subscriptions(monitor).await, base + 1, "an invalid name subscribed to nothing");
    assert_eq!(ask(&mut ws, "leave one").await, "left true");
    subscriptions_become(monitor, base, "the last member's leave unsubscribes").await;
}

#[tokio::test]
async fn across_hosts_a_trimmed_position_is_not_recovered_another_project_is_untouched_and_a_broker_restart_keeps_offsets()
 {
    let Some(nats) = NatsServer::start().await else { return };
    let (_plugins, hosts) = cluster_hosts(&nats, 5, 2).await;
    let mut first = connect(&hosts[0].url("chat?room=small&recover=1")).await;
    status(&json(&mut first).await).unwrap();
    let mut publisher = Publisher::open(&hosts[1].url("chat?room=small")).await;
    for i in 1..=12 {
        publisher.say(&format!("m{i}")).await;
    }
    let got = envelopes(&mut first, 12).await;
    let epoch = got[0].1.clone();
    // Size 5: offsets 8 to 12 are kept; a position at 2 is not covered, and what is kept is sent.
    let mut late = connect(&hosts[1].url(&format!("chat?room=small&recover=1&since=2&epoch={epoch}"))).await;
    let ((recovered, _, top), kept) = resume(&mut late, 5).await;
    assert!(!recovered);
    assert_eq!(top, 12);
    assert_eq!(kept.iter().map(|(offset, _, _)| *offset).collect::<Vec<_>>(), [8, 9, 10, 11, 12]);
    // Another epoch is not covered either.
    let mut other_epoch = connect(&hosts[0].url("chat?room=small&recover=1&since=11&epoch=elsewhere")).await;
    let ((recovered, at_epoch, _), _) = resume(&mut other_epoch, 5).await;
    assert!(!recovered);
    assert_eq!(at_epoch, epoch);
    // Project `other`'s room of the same name has its own offsets and none of these messages.
    let mut other = connect(&hosts[0].url("other-chat?room=small&recover=1")).await;
    let (recovered, _, top) = status(&json(&mut other).await).unwrap();
    assert_eq!((recovered, top), (true, 0), "another project's channel of the same name is untouched");
    let mut other_publisher = Publisher::open(&hosts[1].url("other-chat?room=small")).await;
    other_publisher.say("theirs").await;
    let (offset, other_epoch, data) = envelope(&json(&mut other).await);
    assert_eq!((offset, data.as_str()), (1, "theirs"));
    assert_ne!(other_epoch, epoch);

    // Every host lists both channels with their top offset, epoch and what the broker keeps.
    for host in &hosts {
        let (ok, out, err) = cli(&host.admin, &["channels", "--json"]);
        assert!(ok, "{err}");
        let listed: Value = serde_json::from_str(&out).unwrap();
        let of = |project: &str| {
            let found = listed["channels"].as_array().unwrap().iter().find(|c| c["project"] == project);
            let found = found.unwrap_or_else(|| panic!("{project} not listed: {listed}"));
            (found["channel"].clone(), found["top"].clone(), found["epoch"].clone(), found["kept"].clone())
        };
        assert_eq!(of("examples"), ("small".into(), 12.into(), epoch.as_str().into(), 5.into()));
        assert_eq!(of("other"), ("small".into(), 1.into(), other_epoch.as_str().into(), 1.into()));
    }

    // Without the broker a publish with a position is refused at once, naming it; once the broker is back (its
    // JetStream kept on disk), offsets go on in the same epoch.
    let mut nats = nats;
    nats.kill();
    let admin = hosts[0].admin.clone();
    let started = std::time::Instant::now();
    let refused = tokio::task::spawn_blocking({
        let admin = admin.clone();
        move || {
            // The host learns the connection is gone within its ping; until then a call may wait for its timeout.
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            loop {
                let (ok, out, err) = cli(&admin, &["publish", "examples/small", "while away", "--json"]);
                if !ok && err.contains("not connected") || std::time::Instant::now() > deadline {
                    return (ok, out, err);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    })
    .await
    .unwrap();
    assert!(!refused.0 && refused.2.contains("broker is not connected"), "{refused:?} after {:?}", started.elapsed());
    nats.restart().await;
    let published = tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let (ok, out, err) = cli(&admin, &["publish", "examples/small", "back", "--json"]);
            if ok || std::time::Instant::now() > deadline {
                return (ok, out, err);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    assert!(published.0, "{published:?}");
    let answer: Value = serde_json::from_str(&published.1).unwrap();
    assert_eq!((answer["offset"].as_u64(), answer["epoch"].as_str()), (Some(13), Some(epoch.as_str())), "{answer}");
}

#[tokio::test]
async fn the_javascript_chat_resumes_from_a_position_in_the_same_rooms() {
    let plugins = plugins(100).handler("examples/js-chat", "js-chat").endpoint("js-chat", "examples/js-chat");
    let host = TestHost::start(plugins).await;
    let mut member = host.connect("js-chat?room=js&recover=1").await;
    let (recovered, epoch, top) = status(&json(&mut member).await).unwrap();
    assert_eq!((recovered, top), (true, 0));
    // The Rust chat publishes into the same room of the same project.
    let mut publisher = Publisher::open(&host.url("chat?room=js")).await;
    for i in 1..=3 {
        publisher.say(&format!("m{i}")).await;
        assert_eq!(envelope(&json(&mut member).await), (i, epoch.clone(), format!("m{i}")));
    }
    drop(member);
    for i in 4..=8 {
        publisher.say(&format!("m{i}")).await;
    }
    publisher.heard(8).await;
    let mut resumed = host.connect(&format!("js-chat?room=js&recover=1&since=3&epoch={epoch}")).await;
    let ((recovered, _, top), envelopes) = resume(&mut resumed, 5).await;
    assert!(recovered && top == 8, "top {top}");
    let got: Vec<(u64, String)> = envelopes.into_iter().map(|(offset, _, data)| (offset, data)).collect();
    assert_eq!(got, (4..=8).map(|i| (i, format!("m{i}"))).collect::<Vec<_>>());
    // A position of another epoch: not recovered, and what is kept is sent.
    let mut other = host.connect("js-chat?room=js&recover=1&since=3&epoch=nope").await;
    let ((recovered, _, _), envelopes) = resume(&mut other, 8).await;
    assert!(!recovered);
    assert_eq!(envelopes.len(), 8);
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Run with `cargo test -p wasmsock-tests --test history -- --ignored --nocapture history_cost` (add `--release` for
/// figures of an optimised build). Prints, in interleaved rounds, the CPU of this whole process (host and clients) per
/// publish (4,000 of them, history kept: 1,000) and per delivery through the chat example, one publisher and 10
/// members, with history off and on (the
/// journal open in a temp dir, as `serve` runs it), and the wall time for a member to resume 1,000 missed messages
/// (connect with `since`, until the 1,000th envelope). Asserts nothing about time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn history_cost() {
    const N: usize = 1_000;
    // Publishes per cost round: four times the history kept, so trimming is part of what is measured.
    const PUBLISHES: usize = 4 * N;
    const MEMBERS: usize = 10;
    const ROUNDS: usize = 5;
    let host = TestHost::start(plugins(N as u32)).await;
    let data = tempfile::tempdir().unwrap();
    host.app.history.open_journal(data.path(), wasmsock::store::Durability::Normal).unwrap();
    // `plain` keeps no history, `examples` does; the same chat handler serves both.
    // (endpoint, what the members add to the URI, how many status lines they get first, label)
    let cases =
        [("plain-chat", "", 0, "off"), ("chat", "", 0, "on"), ("chat", "&recover=1", 1, "on, members in the envelope")];
    let mut figures: Vec<[Vec<f64>; 2]> = vec![[Vec::new(), Vec::new()]; cases.len()];
    let mut resumes = Vec::new();
    for round in 0..=ROUNDS {
        for (c, (endpoint, extra, statuses, _)) in cases.iter().enumerate() {
            let room = format!("cost{round}-{c}");
            let mut members = Vec::new();
            for _ in 0..MEMBERS {
                let mut member = host.connect(&format!("{endpoint}?room={room}{extra}")).await;
                for _ in 0..*statuses {
                    text(&mut member).await;
                }
                members.push(member);
            }
            let mut publisher = Publisher::open(&host.url(&format!("{endpoint}?room={room}"))).await;
            let start = process_cpu();
            for i in 0..PUBLISHES {
                publisher.say(&format!("message {i:04} of the cost round")).await;
            }
            for member in &mut members {
                for _ in 0..PUBLISHES {
                    text(member).await;
                }
            }
            publisher.heard(PUBLISHES).await;
            let spent = (process_cpu() - start).as_secs_f64() * 1e6;
            if round > 0 {
                figures[c][0].push(spent / PUBLISHES as f64);
                figures[c][1].push(spent / (PUBLISHES * (MEMBERS + 1)) as f64);
            }
        }
        // Resuming 1,000 missed messages: the member left at offset 0 of this round's room.
        let room = format!("resume{round}");
        let mut first = host.connect(&format!("chat?room={room}&recover=1")).await;
        let (_, epoch, _) = status(&json(&mut first).await).unwrap();
        drop(first);
        let mut publisher = Publisher::open(&host.url(&format!("chat?room={room}"))).await;
        for i in 0..N {
            publisher.say(&format!("missed {i}")).await;
        }
        publisher.heard(N).await;
        let started = std::time::Instant::now();
        let mut resumed = host.connect(&format!("chat?room={room}&recover=1&since=0&epoch={epoch}")).await;
        let ((recovered, _, _), envelopes) = resume(&mut resumed, N).await;
        let took = started.elapsed();
        assert!(recovered && envelopes.len() == N);
        if round > 0 {
            resumes.push(took.as_secs_f64() * 1e3);
        }
        println!("round {round}: resume of {N} took {:.1} ms", took.as_secs_f64() * 1e3);
    }
    for (c, (_, _, _, history)) in cases.iter().enumerate() {
        let [publish, delivery] = &mut figures[c];
        println!(
            "history {history}: CPU per publish {:.1} µs (rounds {:?}), per delivery {:.1} µs",
            median(publish),
            publish.iter().map(|v| v.round()).collect::<Vec<_>>(),
            median(delivery)
        );
    }
    println!("resume of {N} missed messages: median {:.1} ms (rounds {resumes:.1?})", median(&mut resumes));
}

/// Sends a command to a recorder session and returns its reply.
/// What history costs in a cluster: one in-process host joined to a real nats-server, the chat example with history
/// off (the core NATS relay), on (JetStream) and on with members in the envelope; CPU per publish and per delivery of
/// the test process (host and clients) and of the broker, and the time to resume 1,000 missed messages.
#[tokio::test]
#[ignore = "prints figures; run with --ignored --nocapture"]
async fn cluster_history_cost() {
    const N: usize = 1_000;
    const PUBLISHES: usize = 2 * N;
    const MEMBERS: usize = 10;
    const ROUNDS: usize = 3;
    let Some(nats) = NatsServer::start().await else { return };
    let host = TestHost::start(plugins(N as u32)).await;
    let options = wasmsock::cluster::ClusterOptions {
        url: nats.url(),
        auth: wasmsock::cluster::BrokerAuth::default(),
        name: format!("cost-{}", nats.port),
        host_id: "h0".into(),
    };
    host.app.join_cluster(options).await.unwrap();
    let cases = [
        ("plain-chat", "", 0, "off (core NATS relay)"),
        ("chat", "", 0, "on (JetStream)"),
        ("chat", "&recover=1", 1, "on (JetStream), members in the envelope"),
    ];
    let mut figures: Vec<[Vec<f64>; 3]> = vec![[Vec::new(), Vec::new(), Vec::new()]; cases.len()];
    let mut resumes = Vec::new();
    for round in 0..=ROUNDS {
        for (c, (endpoint, extra, statuses, _)) in cases.iter().enumerate() {
            let room = format!("cost{round}-{c}");
            let mut members = Vec::new();
            for _ in 0..MEMBERS {
                let mut member = host.connect(&format!("{endpoint}?room={room}{extra}")).await;
                for _ in 0..*statuses {
                    text(&mut member).await;
                }
                members.push(member);
            }
            let mut publisher = Publisher::open(&host.url(&format!("{endpoint}?room={room}"))).await;
            // The host listens to the room's subject once its first member joined, in the background.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let (start, broker_start) = (process_cpu(), process_cpu_of(nats.pid()));
            for i in 0..PUBLISHES {
                publisher.say(&format!("message {i:04} of the cost round")).await;
            }
            for member in &mut members {
                for _ in 0..PUBLISHES {
                    text(member).await;
                }
            }
            publisher.heard(PUBLISHES).await;
            let spent = (process_cpu() - start).as_secs_f64() * 1e6;
            let broker = (process_cpu_of(nats.pid()) - broker_start).as_secs_f64() * 1e6;
            if round > 0 {
                figures[c][0].push(spent / PUBLISHES as f64);
                figures[c][1].push(spent / (PUBLISHES * (MEMBERS + 1)) as f64);
                figures[c][2].push(broker / PUBLISHES as f64);
            }
        }
        let room = format!("resume{round}");
        let mut first = host.connect(&format!("chat?room={room}&recover=1")).await;
        status(&json(&mut first).await).unwrap();
        let mut publisher = Publisher::open(&host.url(&format!("chat?room={room}&recover=1"))).await;
        for i in 0..N {
            publisher.say(&format!("missed {i}")).await;
        }
        publisher.heard(N + 1).await;
        let epoch = envelope(&json(&mut first).await).1;
        drop(first);
        let started = std::time::Instant::now();
        let mut resumed = host.connect(&format!("chat?room={room}&recover=1&since=0&epoch={epoch}")).await;
        let ((recovered, _, _), envelopes) = resume(&mut resumed, N).await;
        let took = started.elapsed();
        assert!(recovered && envelopes.len() == N);
        if round > 0 {
            resumes.push(took.as_secs_f64() * 1e3);
        }
        println!("round {round}: resume of {N} took {:.1} ms", took.as_secs_f64() * 1e3);
    }
    for (c, (_, _, _, history)) in cases.iter().enumerate() {
        let [publish, delivery, broker] = &mut figures[c];
        println!(
            "history {history}: host CPU per publish {:.1} µs (rounds {:?}), per delivery {:.1} µs; broker CPU per \
             publish {:.1} µs",
            median(publish),
            publish.iter().map(|v| v.round()).collect::<Vec<_>>(),
            median(delivery),
            median(broker)
        );
    }
    println!(
        "resume of {N} missed messages from JetStream: median {:.1} ms (rounds {resumes:.1?})",
        median(&mut resumes)
    );
}

async fn ask(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    text(ws).await
}

#[tokio::test]
async fn the_three_sdks_publish_with_a_position_and_read_the_same_pages_of_history() {
    let plugins = Plugins::new()
        .handler("t/recorder", "recorder")
        .endpoint("rust", "t/recorder")
        .handler("t/js-recorder", "js-recorder")
        .endpoint("js", "t/js-recorder")
        .handler("t/py-recorder", "py-recorder")
        .endpoint("py", "t/py-recorder")
        .file("t/project.json", r#"{"quotas": {"history-size": 3}}"#)
        .handler("u/recorder", "recorder")
        .endpoint("none", "u/recorder");
    let host = TestHost::start(plugins).await;
    let mut sessions = Vec::new();
    for endpoint in ["rust", "js", "py"] {
        sessions.push((endpoint, host.connect(endpoint).await));
    }
    // Each SDK publishes in turn: the offsets go on across them (nobody is a member: queued 0).
    let words = ["one", "two", "three", "four", "five", "six"];
    for (i, word) in words.iter().enumerate() {
        let (endpoint, ws) = &mut sessions[i % 3];
        assert_eq!(ask(ws, &format!("hpublish room {word}")).await, format!("published 0 at {}", i + 1), "{endpoint}");
    }
    let (_, rust) = &mut sessions[0];
    let first = ask(rust, "history room 2").await;
    let epoch = first.split(" epoch ").nth(1).unwrap().split(' ').next().unwrap().to_owned();
    assert_eq!(first, format!("history top 6 complete true next 5 epoch {epoch} items 4:four,5:five"));
    let cases = [
        ("history room 2".to_owned(), first.clone()),
        (format!("history room 10 5 {epoch}"), format!("history top 6 complete true next - epoch {epoch} items 6:six")),
        (
            format!("history room 10 1 {epoch}"),
            format!("history top 6 complete false next - epoch {epoch} items 4:four,5:five,6:six"),
        ),
        (
            "history room 10 5 another".to_owned(),
            format!("history top 6 complete false next - epoch {epoch} items 4:four,5:five,6:six"),
        ),
        (
            "history room 0".to_owned(),
            "error invalid: a page of history is 1 to 1000 publications; 0 was asked for".into(),
        ),
    ];
    for (endpoint, ws) in sessions.iter_mut() {
        for (command, want) in &cases {
            assert_eq!(&ask(ws, command).await, want, "{endpoint}: {command}");
        }
    }
    // A project without history: no position, and no history to read.
    let mut none = host.connect("none").await;
    assert_eq!(ask(&mut none, "hpublish room x").await, "published 0 at -");
    let refused = ask(&mut none, "history room 10").await;
    assert!(refused.starts_with("error invalid: project \"u\" keeps no channel history"), "{refused}");
}
