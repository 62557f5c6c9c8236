//! Deploying to a running host: the admin API, the CLI on top of it, file drops under the plugins root, atomic swaps
//! under traffic, refusals that leave the old version serving, and the admin token.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::process::Command;
use std::time::Duration;

use wasmsock::Limits;
use wasmsock_tests::*;

fn admin_url(host: &TestHost, path: &str) -> String {
    format!("http://{}/admin/v1/{path}", host.admin)
}

async fn put_handler(host: &TestHost, name: &str, bytes: Vec<u8>) -> (u16, serde_json::Value) {
    let response =
        reqwest::Client::new().put(admin_url(host, &format!("handlers/{name}"))).body(bytes).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

async fn put_descriptor(host: &TestHost, endpoint: &str, text: &str) -> (u16, serde_json::Value) {
    let response = reqwest::Client::new()
        .put(admin_url(host, &format!("endpoints/{endpoint}")))
        .body(text.to_owned())
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(component(name)).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeploy_under_traffic_drops_nothing_and_later_messages_see_the_new_version() {
    const CONNECTIONS: usize = 50;
    let plugins = Plugins::new().handler("tests/tagged", "tagged-v1").endpoint("tagged", "tests/tagged");
    let host = TestHost::start(plugins).await;
    let url = host.url("tagged");
    let (swapped_tx, swapped_rx) = tokio::sync::watch::channel(false);
    let mut tasks = Vec::new();
    for c in 0..CONNECTIONS {
        let url = url.clone();
        let swapped = swapped_rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut ws = connect(&url).await;
            let (mut n, mut after_swap) = (0u32, 0u32);
            let mut versions = Vec::new();
            // Exchange until the swap is done and this connection has seen 5 answers after it (bounded by count).
            while after_swap < 5 && n < 10_000 {
                let done = *swapped.borrow();
                send(&mut ws, &format!("{c}-{n}")).await;
                let answer = text(&mut ws).await;
                let (version, echoed) = answer.split_once(':').unwrap();
                assert_eq!(echoed, format!("{c}-{n}"), "every message answered once, in order");
                versions.push(version.to_owned());
                if done {
                    after_swap += 1;
                    assert_eq!(version, "v2", "a message sent after the swap completed is served by the new version");
                }
                n += 1;
            }
            (n, versions, ws)
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, answer) = put_handler(&host, "tests/tagged", read("tagged-v2")).await;
    assert_eq!(status, 200, "{answer}");
    swapped_tx.send(true).unwrap();
    let mut total = 0;
    let mut open = Vec::new();
    for task in tasks {
        let (n, versions, ws) = task.await.unwrap();
        open.push(ws);
        total += n;
        // Versions only move forward: v1 answers, then v2 answers, never back.
        let first_v2 = versions.iter().position(|v| v == "v2").unwrap();
        assert!(versions[first_v2..].iter().all(|v| v == "v2"), "{versions:?}");
    }
    assert_eq!(host.app.hub.len(), CONNECTIONS, "no connection was dropped by the swap");
    eprintln!("deploy: {CONNECTIONS} connections exchanged {total} messages across the swap, none lost or repeated");
    host.stop().await;
}

#[tokio::test]
async fn refused_deploys_leave_the_old_version_serving() {
    let plugins = Plugins::new().handler("tests/tagged", "tagged-v1").endpoint("tagged", "tests/tagged");
    let host = TestHost::start(plugins).await;
    let mut ws = host.connect("tagged").await;
    let cases: [(&str, Vec<u8>, &[&str]); 3] = [
        ("corrupt", b"\0asm\x0d\0\x01\0garbage".to_vec(), &["not a valid WebAssembly component"]),
        ("truncated", read("tagged-v2")[..1000].to_vec(), &["not a valid WebAssembly component"]),
        ("wrong world", read("wrong-world"), &["on-event"]),
    ];
    for (what, bytes, expected) in cases {
        let (status, answer) = put_handler(&host, "tests/tagged", bytes).await;
        assert_eq!(status, 422, "{what}: {answer}");
        let error = answer["error"].as_str().unwrap();
        assert!(error.contains("tests/tagged"), "{what}: {error}");
        for needle in expected {
            assert!(error.contains(needle), "{what}: {error:?} lacks {needle:?}");
        }
        send(&mut ws, what).await;
        assert_eq!(text(&mut ws).await, format!("v1:{what}"), "the old version still serves after a refused {what}");
    }
    let bad_descriptors = [
        (r#"{"handler": "tests/tagged", "endpoint": "tagged", "extra": 1}"#, "unknown field `extra`"),
        (r#"{"handler": "tests/missing", "endpoint": "tagged"}"#, "tests/missing"),
        (r#"{"handler": "tests/tagged", "endpoint": "other"}"#, "declares endpoint \"other\""),
    ];
    for (text_, expected) in bad_descriptors {
        let (status, answer) = put_descriptor(&host, "tagged", text_).await;
        assert_eq!(status, 422, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(expected), "{answer}");
    }
    send(&mut ws, "still").await;
    assert_eq!(text(&mut ws).await, "v1:still");
    // The component file on disk is still the old one: a restart would serve v1 too.
    let on_disk = std::fs::read(host.plugins.path().join("tests/tagged.wasm")).unwrap();
    assert_eq!(on_disk, read("tagged-v1"));
    host.stop().await;
}

#[tokio::test]
async fn removing_an_endpoint_closes_its_sessions_with_1001_and_a_reason() {
    let plugins = Plugins::new().handler("tests/tagged", "tagged-v1").endpoint("tagged", "tests/tagged");
    let host = TestHost::start(plugins).await;
    let mut ws = host.connect("tagged").await;
    let response = reqwest::Client::new().delete(admin_url(&host, "endpoints/tagged")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    assert!(frame.reason.contains("tagged") && frame.reason.contains("removed"), "{}", frame.reason);
    assert!(tokio_tungstenite::connect_async(host.url("tagged")).await.is_err(), "the endpoint is gone");
    assert!(!host.plugins.path().join("descriptors/tagged.websocket").exists(), "its descriptor file is deleted");
    // A handler still serving an endpoint cannot be removed; one that serves none can.
    let plugins = Plugins::new().handler("tests/tagged", "tagged-v1").endpoint("tagged", "tests/tagged");
    let other = TestHost::start(plugins).await;
    let response = reqwest::Client::new().delete(admin_url(&other, "handlers/tests/tagged")).send().await.unwrap();
    assert_eq!(response.status(), 409);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("tagged"), "{body}");
    host.stop().await;
    other.stop().await;
}

#[tokio::test]
async fn files_dropped_into_the_plugins_root_go_live_without_a_restart() {
    let plugins = Plugins::new();
    let root = plugins.path().to_path_buf();
    let host = TestHost::start(plugins).await;
    host.app.watch(Duration::from_millis(100));
    // A half-written component first: it is refused (nothing serves it), and the host carries on.
    std::fs::create_dir_all(root.join("drop")).unwrap();
    std::fs::write(root.join("drop/tagged.wasm"), &read("tagged-v1")[..2000]).unwrap();
    std::fs::write(root.join("drop/tagged.websocket"), r#"{"handler": "drop/tagged", "endpoint": "dropped"}"#).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(host.app.registry.endpoint("dropped").is_none());
    // The whole file: the endpoint appears.
    std::fs::write(root.join("drop/tagged.wasm"), read("tagged-v1")).unwrap();
    eventually("the dropped endpoint is served", || host.app.registry.endpoint("dropped").is_some()).await;
    let mut ws = host.connect("dropped").await;
    send(&mut ws, "a").await;
    assert_eq!(text(&mut ws).await, "v1:a");
    // A new version replaces the file: the open connection's next message runs it.
    std::fs::write(root.join("drop/tagged.wasm"), read("tagged-v2")).unwrap();
    let mut answer = String::new();
    for n in 0..100 {
        send(&mut ws, &format!("b{n}")).await;
        answer = text(&mut ws).await;
        if answer.starts_with("v2:") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(answer.starts_with("v2:"), "{answer}");
    // Removing the descriptor removes the endpoint and closes its session.
    std::fs::remove_file(root.join("drop/tagged.websocket")).unwrap();
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1001);
    host.stop().await;
}

#[tokio::test]
async fn a_second_deploy_of_the_same_bytes_comes_from_the_compile_cache() {
    let host = TestHost::start(Plugins::new()).await;
    let (status, first) = put_handler(&host, "tests/tagged", read("tagged-v1")).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["from_cache"], false);
    let (_, second) = put_handler(&host, "tests/tagged", read("tagged-v1")).await;
    assert_eq!(second["from_cache"], true);
    assert_eq!(first["handler"]["version"], second["handler"]["version"]);
    let (_, third) = put_handler(&host, "tests/tagged", read("tagged-v2")).await;
    assert_ne!(first["handler"]["version"], third["handler"]["version"]);
    host.stop().await;
}

/// `tagged-v1` as a distinct version: the same component with a custom section naming `n` appended (a component may
/// end with custom sections), so its content hash, and with it its compile cache entry, is its own.
fn tagged_variant(n: usize) -> Vec<u8> {
    fn leb128(out: &mut Vec<u8>, mut value: usize) {
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"wasmsock-test";
    let mut section = Vec::new();
    leb128(&mut section, name.len());
    section.extend_from_slice(name);
    section.extend_from_slice(format!("variant {n}").as_bytes());
    let mut bytes = read("tagged-v1");
    bytes.push(0); // a custom section
    leb128(&mut bytes, section.len());
    bytes.extend_from_slice(&section);
    bytes
}

/// The compiled components in a test host's compile cache, by file name.
fn cache_entries(host: &TestHost) -> Vec<String> {
    let dir = host.plugins.path().join(wasmsock::control::registry::DEFAULT_CACHE_DIR);
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".cwasm"))
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn the_compile_cache_keeps_the_loaded_versions_and_the_most_recently_used_others() {
    use wasmsock::control::registry::DEFAULT_CACHE_SPARE as SPARE;
    let host = TestHost::start(Plugins::new()).await;
    let deploys = SPARE + 3;
    let mut versions = Vec::new();
    for n in 0..deploys {
        let (status, answer) = put_handler(&host, "tests/tagged", tagged_variant(n)).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["from_cache"], false, "variant {n} is new");
        versions.push(answer["handler"]["version"].as_str().unwrap().to_owned());
    }
    let cached = |version: &str, entries: &[String]| entries.iter().any(|entry| entry.starts_with(version));
    let entries = cache_entries(&host);
    assert_eq!(entries.len(), 1 + SPARE, "the loaded version and {SPARE} others: {entries:?}");
    let (evicted, kept) = versions.split_at(deploys - 1 - SPARE);
    assert!(kept.iter().all(|version| cached(version, &entries)), "{kept:?} in {entries:?}");
    assert!(evicted.iter().all(|version| !cached(version, &entries)), "{evicted:?} not in {entries:?}");
    // A recent version comes back from the cache; an evicted one is compiled again, and serves.
    let (_, answer) = put_handler(&host, "tests/tagged", tagged_variant(deploys - 2)).await;
    assert_eq!(answer["from_cache"], true, "{answer}");
    let (status, answer) = put_handler(&host, "tests/tagged", tagged_variant(0)).await;
    assert_eq!((status, &answer["from_cache"]), (200, &serde_json::Value::Bool(false)), "{answer}");
    let (status, answer) =
        put_descriptor(&host, "tagged", r#"{"handler": "tests/tagged", "endpoint": "tagged"}"#).await;
    assert_eq!(status, 200, "{answer}");
    let mut ws = host.connect("tagged").await;
    send(&mut ws, "hi").await;
    assert_eq!(text(&mut ws).await, "v1:hi");
    // The entry used longest ago made room for it; a component the host refuses leaves no entry behind.
    let entries = cache_entries(&host);
    assert_eq!(entries.len(), 1 + SPARE, "{entries:?}");
    assert!(cached(&versions[0], &entries) && !cached(&versions[deploys - 1 - SPARE], &entries), "{entries:?}");
    let (status, answer) = put_handler(&host, "tests/wrong", read("wrong-world")).await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(cache_entries(&host), entries);
    host.stop().await;
}

#[tokio::test]
async fn the_cli_deploys_lists_closes_and_undeploys_on_a_running_host() {
    let plugins = Plugins::new();
    let host = BinaryHost::start(&plugins, &[]).await;
    let admin = host.admin.clone();
    // A project directory holding a component and its descriptor.
    let project = tempfile::tempdir().unwrap();
    std::fs::copy(component("tagged-v1"), project.path().join("tagged.wasm")).unwrap();
    std::fs::write(
        project.path().join("tagged.websocket"),
        r#"{"handler": "shop/tagged", "endpoint": "shop", "description": "d"}"#,
    )
    .unwrap();
    let (ok, out, err) = cli(&admin, &["deploy", project.path().to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("handler shop/tagged version ") && out.contains("endpoint shop -> shop/tagged"), "{out}");
    assert!(!err.contains("deploying"), "no progress lines when stderr is not a terminal: {err}");
    // On a terminal (util-linux `script` gives it one, where installed): what is uploading and compiling, then done.
    if std::path::Path::new("/usr/bin/script").is_file() {
        let command = format!(
            "{} deploy {} --name shop/again --host http://{admin}",
            binary().display(),
            component("tagged-v1").display()
        );
        let out = Command::new("/usr/bin/script").args(["-qec", &command, "/dev/null"]).output().unwrap();
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{shown}");
        assert!(shown.contains("deploying shop/again (") && shown.contains(": done in "), "{shown}");
    }
    let mut ws = connect(&host.url("shop")).await;
    send(&mut ws, "hi").await;
    assert_eq!(text(&mut ws).await, "v1:hi");
    let (ok, out, _) = cli(&admin, &["list"]);
    assert!(ok && out.contains("shop") && out.contains("shop/tagged"), "{out}");
    let (ok, out, _) = cli(&admin, &["clients", "--json"]);
    assert!(ok, "{out}");
    let listing: serde_json::Value = serde_json::from_str(&out).unwrap();
    let session = &listing["connections"][0];
    assert_eq!(session["endpoint"], "shop");
    assert_eq!(session["messages_in"], 1);
    assert_eq!(session["messages_out"], 1);
    assert!(session["remote"].as_str().unwrap().starts_with("127.0.0.1:"), "{session}");
    let id = session["id"].as_str().unwrap().to_owned();
    let (ok, out, err) = cli(&admin, &["close", &id]);
    assert!(ok, "{out}{err}");
    let frame = close_frame(&mut ws).await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    // The deploy wrote into the plugins root, so a restart keeps it.
    assert!(plugins.path().join("shop/tagged.wasm").is_file());
    assert!(plugins.path().join("shop/shop.websocket").is_file());
    let (ok, out, err) = cli(&admin, &["undeploy", "shop"]);
    assert!(ok, "{out}{err}");
    let (ok, _, err) = cli(&admin, &["undeploy", "shop"]);
    assert!(!ok && err.contains("no endpoint \"shop\""), "{err}");
    // A refused deploy is a non-zero exit with the host's reason.
    let bad = project.path().join("bad.wasm");
    std::fs::write(&bad, b"nope").unwrap();
    let (ok, _, err) = cli(&admin, &["deploy", bad.to_str().unwrap(), "--name", "shop/bad"]);
    assert!(!ok && err.contains("422") && err.contains("not a valid WebAssembly component"), "{err}");
}

#[tokio::test]
async fn the_cli_opens_an_outbound_client_on_a_running_host() {
    let peer = PeerServer::start(PeerMode::Echo).await;
    let plugins = Plugins::new().handler("examples/echo", "echo");
    let host = BinaryHost::start(&plugins, &[]).await;
    let admin = host.admin.clone();
    let (ok, out, err) = cli(&admin, &["connect", &peer.url("/feed"), "--handler", "examples/echo"]);
    assert!(ok, "{out}{err}");
    assert!(out.starts_with("client c") && out.contains("-> examples/echo"), "{out}");
    let (ok, _, err) = cli(&admin, &["connect", "http://nope", "--handler", "examples/echo"]);
    assert!(!ok && err.contains("ws://"), "{err}");
}

#[tokio::test]
async fn the_admin_api_needs_its_token_and_a_token_off_loopback() {
    let plugins = Plugins::new();
    let out = Command::new(binary())
        .args(["serve", "--listen", "127.0.0.1:0", "--admin", "0.0.0.0:0", "--plugins"])
        .arg(plugins.path())
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && log.contains("off loopback") && log.contains("--admin-token"), "{log}");
    let host = BinaryHost::start(&plugins, &["--admin-token", "s3cret"]).await;
    let admin = host.admin.clone();
    let url = format!("http://{admin}/admin/v1/endpoints");
    let client = reqwest::Client::new();
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(client.get(&url).bearer_auth("wrong").send().await.unwrap().status(), 401);
    assert_eq!(client.get(&url).bearer_auth("s3cret").send().await.unwrap().status(), 200);
    let (ok, _, err) = cli(&admin, &["list"]);
    assert!(!ok && err.contains("401"), "{err}");
    let out = Command::new(binary())
        .args(["list", "--host", &format!("http://{admin}"), "--token", "s3cret"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[tokio::test]
async fn a_limits_struct_is_enough_to_start_a_host_without_a_cache() {
    // The cache is optional: a host started without one still compiles and serves.
    let plugins = Plugins::new().handler("tests/tagged", "tagged-v1").endpoint("tagged", "tests/tagged");
    let (app, errors) = wasmsock::App::start(plugins.path(), None, Limits::default()).await.unwrap();
    assert!(errors.is_empty());
    assert!(app.registry.handlers().iter().all(|h| !h.from_cache));
    assert!(!plugins.path().join(wasmsock::control::registry::DEFAULT_CACHE_DIR).exists());
}
