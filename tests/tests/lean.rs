//! A Rust handler built for `wasm32-unknown-unknown` (a component without WASI, the SDK's `lean` path): its panics
//! reach the connection's onerror and the host's log with their message, its `eprintln!` lines reach the log tagged
//! with the handler, and its allocations are right in every lifecycle, from its arena and past it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use wasmsock_tests::*;

/// The sum [`lean-probe`](../components/lean-probe) answers to `alloc len`: its two blocks, byte `i` of each being
/// `(i + seed) % 251` for seeds 0 and 7.
fn expected_sum(len: usize) -> u64 {
    [0, 7].iter().map(|seed| (0..len).map(|i| ((i + seed) % 251) as u64).sum::<u64>()).sum()
}

fn plugins() -> Plugins {
    let plugins = Plugins::new().handler("tests/lean-probe", "lean-probe");
    ["per-event", "per-connection", "shared"].iter().fold(plugins, |plugins, lifecycle| {
        plugins.endpoint_with(
            &format!("lean-{lifecycle}"),
            "tests/lean-probe",
            serde_json::json!({ "instance": lifecycle }),
        )
    })
}

#[tokio::test]
async fn a_panic_reaches_the_onerror_with_its_message_and_costs_only_its_event() {
    let host = TestHost::start(plugins()).await;
    for lifecycle in ["per-event", "shared"] {
        let mut ws = host.connect(&format!("lean-{lifecycle}")).await;
        send(&mut ws, "panic").await;
        let error = text(&mut ws).await;
        assert!(error.starts_with("error: "), "{lifecycle}: {error}");
        for needle in ["tests/lean-probe", "trapped", "panicked at", "lean probe asked to panic"] {
            assert!(error.contains(needle), "{lifecycle}: {error:?} lacks {needle:?}");
        }
        send(&mut ws, "after").await;
        assert_eq!(text(&mut ws).await, "after", "{lifecycle}: the connection still works");
    }
    host.stop().await;
}

#[tokio::test]
async fn allocations_past_the_arena_are_right_in_every_lifecycle() {
    let host = TestHost::start(plugins()).await;
    // Within the 64 KiB arena, across its end, and far past it (the standard library's allocator), three times over so
    // a kept instance reuses what it freed.
    let sizes = [10, 1_000, 20_000, 40_000, 100_000, 3 << 20];
    for lifecycle in ["per-event", "per-connection", "shared"] {
        let mut ws = host.connect(&format!("lean-{lifecycle}")).await;
        for _ in 0..3 {
            for len in sizes {
                send(&mut ws, &format!("alloc {len}")).await;
                assert_eq!(text(&mut ws).await, format!("{len} {}", expected_sum(len)), "{lifecycle}: alloc {len}");
            }
        }
    }
    host.stop().await;
}

#[tokio::test]
async fn an_eprintln_line_reaches_the_log_with_the_handler() {
    let plugins = plugins();
    let host = BinaryHost::start_logging(&plugins, &["--log-format", "json"], "info").await;
    let mut ws = connect(&host.url("lean-per-event")).await;
    send(&mut ws, "log hello from a lean guest").await;
    assert_eq!(text(&mut ws).await, "logged");
    let line = host
        .log_line("from the guest's eprintln", |line| line.contains("lean probe says hello from a lean guest"))
        .await;
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
    assert_eq!(entry["fields"]["handler"], "tests/lean-probe", "{line}");
    assert_eq!(entry["fields"]["stream"], "stderr", "{line}");
    assert_eq!(entry["fields"]["method"], "onmessage", "{line}");
}

/// The core module `cargo xtask guests` built for `lean-probe` before making it a component:
/// `<target>/wasm32-unknown-unknown/guest/lean_probe.wasm`, the target folder found from this test's own path.
fn lean_probe_core_module() -> Vec<u8> {
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).unwrap();
    let path = target.join("wasm32-unknown-unknown/guest/lean_probe.wasm");
    std::fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}: run `cargo xtask guests`", path.display()))
}

async fn put(host: &TestHost, path: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    let url = format!("http://{}/admin/v1/{path}", host.admin);
    let response = reqwest::Client::new().put(url).body(body).send().await.unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

#[tokio::test]
async fn a_core_module_built_with_the_sdk_deploys_as_it_is_and_one_without_a_world_is_refused() {
    let host = TestHost::start(plugins()).await;
    let module = lean_probe_core_module();
    assert!(module.starts_with(b"\0asm\x01\0\0\0"), "not a core module");
    let (status, answer) = put(&host, "handlers/tests/lean-core", module.clone()).await;
    assert_eq!(status, 200, "{answer}");
    let descriptor = r#"{"handler": "tests/lean-core", "endpoint": "lean-core"}"#;
    let (status, answer) = put(&host, "endpoints/lean-core", descriptor.into()).await;
    assert_eq!(status, 200, "{answer}");
    let mut ws = host.connect("lean-core").await;
    send(&mut ws, "alloc 100000").await;
    assert_eq!(text(&mut ws).await, format!("100000 {}", expected_sum(100_000)));
    send(&mut ws, "panic").await;
    let error = text(&mut ws).await;
    assert!(error.contains("tests/lean-core") && error.contains("lean probe asked to panic"), "{error}");
    // The same module again comes from the compile cache, keyed by the module's own bytes.
    let (status, again) = put(&host, "handlers/tests/lean-core", module).await;
    assert_eq!((status, &again["from_cache"]), (200, &serde_json::json!(true)), "{again}");

    // A core module without the world its bindings would carry (the smallest module there is) is refused, saying
    // what a handler is built as.
    let (status, answer) = put(&host, "handlers/tests/bare", b"\0asm\x01\0\0\0".to_vec()).await;
    assert_eq!(status, 422, "{answer}");
    let error = answer["error"].as_str().unwrap();
    for needle in ["tests/bare", "not a component", "wasm32-unknown-unknown", "no `component-type`"] {
        assert!(error.contains(needle), "{error:?} lacks {needle:?}");
    }
    host.stop().await;
}
