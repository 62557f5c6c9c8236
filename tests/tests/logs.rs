//! The real binary's log with `--log-format json`: one JSON object per line; a guest's stderr line names its handler
//! connection and event method, and sits in the connection's span (endpoint, direction).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use wasmsock_tests::*;

#[tokio::test]
async fn json_log_attributes_guest_lines_to_handler_and_connection() {
    let plugins = Plugins::new().handler("tests/misbehave", "misbehave").endpoint("misbehave", "tests/misbehave");
    let host = BinaryHost::start(&plugins, &["--log-format", "json"]).await;
    let mut ws = connect(&host.url("misbehave")).await;
    send(&mut ws, "trap").await;
    let error = text(&mut ws).await;
    assert!(error.contains("asked to trap"), "{error}");

    // The panic message is what the guest wrote to stderr.
    let line = host
        .log_line("from the guest's stderr", |line| line.contains("wasmsock::guest") && line.contains("asked to trap"))
        .await;
    let entry: Value = serde_json::from_str(&line).unwrap_or_else(|err| panic!("{err}: {line}"));
    let fields = &entry["fields"];
    assert_eq!(fields["handler"], "tests/misbehave", "{line}");
    assert_eq!(fields["stream"], "stderr", "{line}");
    assert_eq!(fields["method"], "onmessage", "{line}");
    // At warn, so a guest's errors survive RUST_LOG=warn.
    assert_eq!(entry["level"], "WARN", "{line}");
    let conn = fields["conn"].as_str().unwrap_or_else(|| panic!("no conn in {line}"));
    assert!(conn.starts_with('s'), "{line}");
    let spans = entry["spans"].as_array().unwrap_or_else(|| panic!("no spans in {line}"));
    let connection = spans.iter().find(|s| s["name"] == "connection").unwrap_or_else(|| panic!("{line}"));
    assert_eq!(connection["conn"], conn, "{line}");
    assert_eq!(connection["endpoint"], "misbehave", "{line}");
    assert_eq!(connection["handler"], "tests/misbehave", "{line}");
    assert_eq!(connection["direction"], "inbound", "{line}");

    // The host's own warning about the trap carries the same connection, and every line is JSON.
    host.log_line("about the trap", |line| line.contains("\"level\":\"WARN\"") && line.contains("trapped")).await;
    for line in &host.log() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "not JSON: {line}");
    }
}
