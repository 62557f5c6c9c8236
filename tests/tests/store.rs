//! Handlers keep data: the key-value example (`plugins/examples/kv`) driven through real sessions. Values outlive the
//! host (a restart, and `kill -9` in the middle of a burst of acknowledged increments: none acknowledged is lost);
//! projects with the same key names stay apart; conditional writes, times to live and windowed counters; each quota
//! reaches the guest as a `limit` error naming it, a project's `project.json` raising its own; configuration and
//! secrets set by the operator are read by the project's handler, changes seen by the next event.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio_tungstenite::tungstenite::Message;
use wasmsock::wire::kv::ConfigValue;
use wasmsock::wire::{Limits, ProjectQuotas};
use wasmsock_tests::*;

/// Sends a command to the kv example and returns its reply.
async fn command(ws: &mut Ws, command: &str) -> String {
    send(ws, command).await;
    text(ws).await
}

fn plugins() -> Plugins {
    Plugins::new().handler("app/kv", "kv").endpoint("kv", "app/kv")
}

#[tokio::test]
async fn acknowledged_writes_survive_a_restart_and_kill_9() {
    let plugins = plugins();
    let data = tempfile::tempdir().unwrap();
    let data_arg = data.path().to_str().unwrap().to_owned();
    let mut host = BinaryHost::start(&plugins, &["--data", &data_arg]).await;
    let mut ws = connect(&host.url("kv")).await;
    assert_eq!(command(&mut ws, "set greeting hello world").await, "ok");
    for expected in 1..=3 {
        assert_eq!(command(&mut ws, "incr visits").await, expected.to_string());
    }
    drop(ws);
    host.child.kill().await.unwrap();

    // A restart keeps everything.
    let mut host = BinaryHost::start(&plugins, &["--data", &data_arg]).await;
    let mut ws = connect(&host.url("kv")).await;
    assert_eq!(command(&mut ws, "get greeting").await, "hello world");
    assert_eq!(command(&mut ws, "incr visits").await, "4");

    // A burst of increments, pipelined; the host is killed (SIGKILL) once 300 were acknowledged.
    const BURST: usize = 2_000;
    for _ in 0..BURST {
        ws.feed(Message::text("incr burst")).await.unwrap();
    }
    ws.flush().await.unwrap();
    let mut acknowledged = 0_i64;
    let mut killed = false;
    let reading = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(Ok(message)) = ws.next().await {
            let Message::Text(reply) = message else { continue };
            let value: i64 = reply.parse().unwrap_or_else(|_| panic!("a reply that is not a count: {reply}"));
            assert_eq!(value, acknowledged + 1, "increments are answered in order");
            acknowledged = value;
            if acknowledged == 300 && !killed {
                host.child.start_kill().unwrap();
                killed = true;
            }
        }
    })
    .await;
    reading.expect("the session ends once the host is killed");
    assert!(killed && acknowledged >= 300, "acknowledged {acknowledged}");
    let _ = host.child.wait().await;

    let host = BinaryHost::start(&plugins, &["--data", &data_arg]).await;
    let mut ws = connect(&host.url("kv")).await;
    let after: i64 = command(&mut ws, "get burst").await.parse().unwrap();
    assert!(after >= acknowledged, "{acknowledged} increments were acknowledged, {after} survived");
    assert!(after <= BURST as i64, "{after}");
    assert_eq!(command(&mut ws, "get greeting").await, "hello world");
    assert_eq!(command(&mut ws, "get visits").await, "4");
}

#[tokio::test]
async fn projects_with_the_same_keys_stay_apart() {
    let plugins =
        Plugins::new().handler("a/kv", "kv").endpoint("a-kv", "a/kv").handler("b/kv", "kv").endpoint("b-kv", "b/kv");
    let host = TestHost::start(plugins).await;
    let mut a = host.connect("a-kv").await;
    let mut b = host.connect("b-kv").await;
    assert_eq!(command(&mut a, "set room:1 from-a").await, "ok");
    assert_eq!(command(&mut a, "set room:2 from-a").await, "ok");
    assert_eq!(command(&mut b, "get room:1").await, "none");
    assert_eq!(command(&mut b, "set room:1 from-b").await, "ok");
    assert_eq!(command(&mut a, "get room:1").await, "from-a");
    assert_eq!(command(&mut b, "get room:1").await, "from-b");
    assert_eq!(command(&mut a, "list room:").await, "[room:1,room:2]");
    assert_eq!(command(&mut b, "list").await, "[room:1]");
    assert_eq!(command(&mut b, "incr room:2").await, "1", "b's room:2 is its own, absent until now");
    assert_eq!(command(&mut a, "del room:1").await, "ok");
    assert_eq!(command(&mut b, "get room:1").await, "from-b");
    assert!(command(&mut a, "usage").await.starts_with("keys 1/"));
    assert!(command(&mut b, "usage").await.starts_with("keys 2/"));
}

#[tokio::test]
async fn conditional_writes_times_to_live_and_counters() {
    let host = TestHost::start(plugins()).await;
    let mut ws = host.connect("kv").await;
    let created = command(&mut ws, "add doc first").await;
    let revision: u64 = created.strip_prefix("ok ").unwrap().parse().unwrap();
    assert_eq!(command(&mut ws, "add doc again").await, format!("error conflict: the revision is {revision}"));
    let swapped = command(&mut ws, &format!("swap doc {revision} second")).await;
    assert!(swapped.starts_with("ok "), "{swapped}");
    assert_eq!(
        command(&mut ws, &format!("swap doc {revision} third")).await,
        format!("error conflict: the revision is {}", &swapped[3..])
    );
    assert_eq!(
        command(&mut ws, &format!("del-if doc {revision}")).await,
        format!("error conflict: the revision is {}", &swapped[3..])
    );
    assert_eq!(command(&mut ws, "entry doc").await, format!("{} second", &swapped[3..]));
    assert_eq!(command(&mut ws, "swap nothing 1 x").await, "error conflict: the key is absent");

    let ttl = command(&mut ws, "ttl short 1 soon-gone").await;
    assert!(ttl.starts_with("ok "), "{ttl}");
    let entry = command(&mut ws, "entry short").await;
    assert!(entry.contains("soon-gone expires-in-ms="), "{entry}");
    assert_eq!(command(&mut ws, "count window 1").await, "1");
    assert_eq!(command(&mut ws, "count window 1").await, "2");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(command(&mut ws, "get short").await, "none");
    assert_eq!(command(&mut ws, "count window 1").await, "1", "a new window starts at 1");

    assert_eq!(command(&mut ws, "set word text").await, "ok");
    let refused = command(&mut ws, "incr word").await;
    assert!(refused.starts_with("error invalid:") && refused.contains("not a decimal number"), "{refused}");
    let refused = command(&mut ws, &format!("get {}", "k".repeat(513))).await;
    assert!(refused.starts_with("error invalid:") && refused.contains("513"), "{refused}");
}

#[tokio::test]
async fn each_quota_reaches_the_guest_as_a_limit_naming_it() {
    let limits = Limits {
        project: ProjectQuotas { kv_keys: 3, kv_bytes: 1_000, kv_value_bytes: 100, ..ProjectQuotas::default() },
        ..Limits::default()
    };
    let plugins = plugins()
        .handler("big/kv", "kv")
        .endpoint("big-kv", "big/kv")
        .file("big/project.json", r#"{"quotas": {"kv-keys": 5}}"#);
    let host = TestHost::start_with(plugins, limits).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    let mut ws = host.connect("kv").await;
    let refused = command(&mut ws, &format!("set big {}", "x".repeat(101))).await;
    assert_eq!(refused, "error limit: value-bytes (100): the value has 101");
    for key in ["a", "b", "c"] {
        assert_eq!(command(&mut ws, &format!("set {key} {}", "x".repeat(100))).await, "ok");
    }
    let refused = command(&mut ws, "set d x").await;
    assert!(refused.starts_with("error limit: keys (3)"), "{refused}");
    // Overwriting a key adds none; more bytes than the quota is refused, fewer pass.
    assert_eq!(command(&mut ws, "set a small").await, "ok");
    let refused = command(&mut ws, "add d x").await;
    assert!(refused.starts_with("error limit: keys (3)"), "{refused}");
    assert_eq!(command(&mut ws, "usage").await, "keys 3/3 bytes 208/1000");
    let metrics = host.app.metrics.encode().unwrap();
    assert!(metrics.contains(r#"wasmsock_kv_calls_total{project="app",op="put",outcome="limit"} 3"#), "{metrics}");
    assert!(metrics.contains(r#"wasmsock_kv_calls_total{project="app",op="put",outcome="ok"} 4"#), "{metrics}");

    // The project with its own quota in project.json gets five keys.
    let mut big = host.connect("big-kv").await;
    for key in ["a", "b", "c", "d", "e"] {
        assert_eq!(command(&mut big, &format!("set {key} x")).await, "ok");
    }
    assert!(command(&mut big, "set f x").await.starts_with("error limit: keys (5)"));
}

#[tokio::test]
async fn configuration_and_secrets_reach_the_projects_handler() {
    let plugins = plugins().handler("other/kv", "kv").endpoint("other-kv", "other/kv");
    let host = TestHost::start(plugins).await;
    let mut ws = host.connect("kv").await;
    assert_eq!(command(&mut ws, "config SIGNING_KEY").await, "none");
    host.app.store.set_config("app", "SIGNING_KEY", ConfigValue::new("s3cret-value".into(), true)).await.unwrap();
    host.app.store.set_config("app", "greeting", ConfigValue::new("hello".into(), false)).await.unwrap();
    assert_eq!(command(&mut ws, "config SIGNING_KEY").await, "s3cret-value");
    assert_eq!(command(&mut ws, "config greeting").await, "hello");
    let mut other = host.connect("other-kv").await;
    assert_eq!(command(&mut other, "config SIGNING_KEY").await, "none", "another project has its own configuration");
    host.app.store.set_config("app", "greeting", ConfigValue::new("hi".into(), false)).await.unwrap();
    assert_eq!(command(&mut ws, "config greeting").await, "hi", "the next event sees the change");
    assert!(host.app.store.unset_config("app", "greeting").await.unwrap());
    assert_eq!(command(&mut ws, "config greeting").await, "none");
}

/// Runs `wasmsock ARGS --host http://ADMIN` with `stdin` as its input; (success, stdout, stderr).
fn cli(admin: &str, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write as _;
    let mut child = std::process::Command::new(binary())
        .args(args)
        .args(["--host", &format!("http://{admin}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn the_operator_sets_configuration_and_repairs_keys_without_a_secret_ever_shown() {
    const SECRET: &str = "topsecret-4711";
    let plugins = plugins();
    let data = tempfile::tempdir().unwrap();
    let host = BinaryHost::start(&plugins, &["--data", data.path().to_str().unwrap()]).await;
    let admin = host.admin.clone();
    let run = |args: &'static [&'static str], stdin: &'static str| {
        let admin = admin.clone();
        async move { tokio::task::spawn_blocking(move || cli(&admin, args, stdin)).await.unwrap() }
    };

    let (ok, out, err) = run(&["config", "set", "app", "SIGNING_KEY", "-", "--secret"], "topsecret-4711\n").await;
    assert!(ok, "{err}");
    assert!(out.contains("set secret SIGNING_KEY") && !out.contains(SECRET), "{out}");
    assert!(run(&["config", "set", "app", "room", "lobby"], "").await.0);
    let (ok, out, err) = run(&["config", "list", "app"], "").await;
    assert!(ok, "{err}");
    assert!(out.contains("SIGNING_KEY  (secret)") && out.contains("room         lobby"), "{out}");
    let (_, json, _) = run(&["config", "list", "app", "--json"], "").await;
    assert!(json.contains("\"secret\":true") && !json.contains(SECRET), "{json}");
    let (ok, _, err) = run(&["config", "set", "app", "bad name", "x"], "").await;
    assert!(!ok && err.contains("configuration name"), "{err}");

    // The project's handler reads both.
    let mut ws = connect(&host.url("kv")).await;
    assert_eq!(command(&mut ws, "config SIGNING_KEY").await, SECRET);
    assert_eq!(command(&mut ws, "config room").await, "lobby");

    // Keys: written by the handler, read, listed, fixed and deleted by the operator.
    assert_eq!(command(&mut ws, "set room:1 first").await, "ok");
    assert_eq!(command(&mut ws, "set room:2 second").await, "ok");
    let (ok, out, err) = run(&["kv", "list", "app", "--prefix", "room:"], "").await;
    assert!(ok, "{err}");
    assert!(out.starts_with("room:1\nroom:2\n(2 keys of 10000"), "{out}");
    assert_eq!(run(&["kv", "get", "app", "room:1"], "").await.1, "first\n");
    assert!(run(&["kv", "set", "app", "room:1", "fixed"], "").await.0);
    assert_eq!(command(&mut ws, "get room:1").await, "fixed");
    assert!(run(&["kv", "delete", "app", "room:2"], "").await.0);
    assert_eq!(command(&mut ws, "get room:2").await, "none");
    let (ok, _, err) = run(&["kv", "get", "app", "room:2"], "").await;
    assert!(!ok && err.contains("404") && err.contains("no key"), "{err}");
    assert!(run(&["config", "unset", "app", "room"], "").await.1.contains("removed room"));
    assert_eq!(command(&mut ws, "config room").await, "none");

    // The secret's value is in no line of the host's log.
    let log = host.log().join("\n");
    assert!(log.contains("configuration set through the admin API"), "{log}");
    assert!(!log.contains(SECRET), "the secret leaked into the log:\n{log}");
}
