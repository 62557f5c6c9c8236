//! The browser console: `GET /` and the endpoint list it reads on the main listener (on by default on loopback, off
//! with `--console off`), and an end-to-end run in headless Chromium driven by `tests/browser/console.mjs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::time::{Duration, Instant};

use serde_json::Value;
use wasmsock_tests::*;

fn echo_plugins() -> Plugins {
    Plugins::new().handler("examples/echo", "echo").file(
        "echo.websocket",
        r#"{"handler": "examples/echo", "endpoint": "echo", "description": "Echoes every message"}"#,
    )
}

#[tokio::test]
async fn the_page_and_the_endpoint_list_are_served_on_loopback() {
    let plugins = echo_plugins();
    let host = BinaryHost::start(&plugins, &[]).await;
    let page = reqwest::get(format!("http://{}/", host.addr)).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    assert!(page.text().await.unwrap().contains("<title>wasmsock console</title>"));
    let list: Value =
        reqwest::get(format!("http://{}/websockets/endpoints", host.addr)).await.unwrap().json().await.unwrap();
    let echo = &list["endpoints"][0];
    assert_eq!(echo["name"], "echo", "{list}");
    assert_eq!(echo["description"], "Echoes every message", "{list}");
    assert_eq!(echo["path"], "/websockets/service/echo", "{list}");
}

#[tokio::test]
async fn console_off_serves_neither() {
    let plugins = echo_plugins();
    let host = BinaryHost::start(&plugins, &["--console", "off"]).await;
    for path in ["/", "/websockets/endpoints"] {
        let response = reqwest::get(format!("http://{}{path}", host.addr)).await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
    }
    // The endpoints themselves still work.
    let mut ws = connect(&host.url("echo")).await;
    send(&mut ws, "still here").await;
    assert_eq!(text(&mut ws).await, "still here");
}

#[tokio::test]
async fn a_browser_gets_an_echo_through_the_console() {
    let Some((chromium, dir)) = browser("a_browser_gets_an_echo_through_the_console") else { return };
    let plugins = echo_plugins();
    let host = BinaryHost::start(&plugins, &[]).await;
    let url = format!("http://{}/", host.addr);
    let started = Instant::now();
    let mut child = tokio::process::Command::new("node")
        .arg("console.mjs")
        .arg(&url)
        .arg("echo")
        .env("CHROMIUM", &chromium)
        .env("DESCRIPTION", "Echoes every message")
        .current_dir(&dir)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (out, err) = (
        tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stdout, &mut text).await.map(|_| text)
        }),
        tokio::spawn(async move {
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await.map(|_| text)
        }),
    );
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the browser run ends within 120 s")
        .unwrap();
    let (out, err) = (out.await.unwrap().unwrap(), err.await.unwrap().unwrap());
    eprintln!("browser run took {:?}:\n{out}{err}", started.elapsed());
    assert!(status.success() && out.trim_end().ends_with("ok"), "{status}\n{out}\n{err}");
    assert!(out.contains("step: echoed"), "{out}");
}
