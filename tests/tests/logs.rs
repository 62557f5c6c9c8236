//! The real binary's log with `--log-format json`: one JSON object per line; a guest's stderr line names its handler,
//! connection and event method as fields; with `wasmsock=debug` it also sits in the connection's span (endpoint,
//! direction), which the default `info` level does not create.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::Value;
use wasmsock_tests::*;

/// The guest's stderr line of a `trap` message to the `misbehave` endpoint of a host logging at `filter`, parsed,
/// with the host (whose every line must be JSON).
async fn guest_stderr_line(filter: &str) -> (Value, String, BinaryHost) {
    let plugins = Plugins::new().handler("tests/misbehave", "misbehave").endpoint("misbehave", "tests/misbehave");
    let host = BinaryHost::start_logging(&plugins, &["--log-format", "json"], filter).await;
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
    let conn = fields["conn"].as_str().unwrap_or_else(|| panic!("no conn in {line}")).to_owned();
    assert!(conn.starts_with('s'), "{line}");

    // The host's own warning about the trap names the same connection and handler, and every line is JSON.
    let warning =
        host.log_line("about the trap", |line| line.contains("\"level\":\"WARN\"") && line.contains("trapped")).await;
    let warning: Value = serde_json::from_str(&warning).unwrap_or_else(|err| panic!("{err}: {warning}"));
    assert_eq!(warning["fields"]["conn"], conn.as_str(), "{warning}");
    assert_eq!(warning["fields"]["handler"], "tests/misbehave", "{warning}");
    for line in &host.log() {
        assert!(serde_json::from_str::<Value>(line).is_ok(), "not JSON: {line}");
    }
    (entry, conn, host)
}

/// The spans a line sits in, by name.
fn span_names(entry: &Value) -> Vec<String> {
    let spans = entry["spans"].as_array().cloned().unwrap_or_default();
    spans.iter().filter_map(|span| span["name"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn json_log_attributes_guest_lines_to_handler_and_connection() {
    let (entry, _conn, _host) = guest_stderr_line("info").await;
    // The connection span is a debug span: at the default level no connection's work is in a span.
    assert!(!span_names(&entry).iter().any(|name| name == "connection"), "{entry}");
}

#[tokio::test]
async fn at_debug_guest_lines_sit_in_the_connection_span() {
    let (entry, conn, _host) = guest_stderr_line("info,wasmsock=debug").await;
    let spans = entry["spans"].as_array().unwrap_or_else(|| panic!("no spans in {entry}"));
    let connection = spans.iter().find(|s| s["name"] == "connection").unwrap_or_else(|| panic!("{entry}"));
    assert_eq!(connection["conn"], conn.as_str(), "{entry}");
    assert_eq!(connection["endpoint"], "misbehave", "{entry}");
    assert_eq!(connection["handler"], "tests/misbehave", "{entry}");
    assert_eq!(connection["direction"], "inbound", "{entry}");
    assert!(span_names(&entry).iter().any(|name| name == "event"), "{entry}");
}
