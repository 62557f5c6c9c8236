//! The operator's dashboard on the admin listener: behind the admin token (a sign-in form that sets a cookie good for
//! reading only), and an end-to-end run in headless Chromium (`tests/browser/dashboard.mjs`) against two hosts of a
//! cluster on a real `nats-server`: both listed, the connection count rising as sessions open, and a host killed with
//! `kill -9` shown leaving.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt as _;
use wasmsock_tests::*;

const TOKEN: &str = "dashboard-t0ken";

fn echo_plugins() -> Plugins {
    Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo")
}

/// A client that keeps no cookies and follows no redirects: each request says what it carries.
fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

#[tokio::test]
async fn the_dashboard_is_behind_the_token_and_its_cookie_is_good_for_reading_only() {
    let host = BinaryHost::start(&echo_plugins(), &["--admin-token", TOKEN]).await;
    let admin = format!("http://{}", host.admin);
    let client = client();

    let refused = client.get(format!("{admin}/dashboard")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    let form = refused.text().await.unwrap();
    assert!(form.contains("name=\"token\"") && !form.contains("id=\"hosts\""), "the sign-in form only: {form}");

    let page = client.get(format!("{admin}/dashboard")).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("default-src 'none'") && policy.contains("connect-src 'self'"), "{policy}");
    let body = page.text().await.unwrap();
    assert!(
        body.contains("<title>wasmsock dashboard</title>") && !body.contains("http://") && !body.contains("https://")
    );

    let wrong = client
        .post(format!("{admin}/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("token=guess")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get("set-cookie").is_none());
    assert!(wrong.text().await.unwrap().contains("not the admin token"));

    let signed = client
        .post(format!("{admin}/dashboard/login"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303);
    assert_eq!(signed.headers()["location"], "/dashboard");
    let cookie = signed.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"), "{cookie}");
    let pair = cookie.split(';').next().unwrap().to_owned();

    for path in ["/dashboard", "/admin/v1/endpoints", "/metrics"] {
        let read = client.get(format!("{admin}{path}")).header("cookie", &pair).send().await.unwrap();
        assert_eq!(read.status(), 200, "{path} with the cookie");
    }
    // Changing anything needs the bearer token: the cookie does not do.
    let mut ws = connect(&host.url("echo")).await;
    send(&mut ws, "still open").await;
    assert_eq!(text(&mut ws).await, "still open");
    let clients: serde_json::Value = client
        .get(format!("{admin}/admin/v1/connections"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = clients["connections"][0]["id"].as_str().unwrap().to_owned();
    let close =
        client.delete(format!("{admin}/admin/v1/connections/{id}")).header("cookie", &pair).send().await.unwrap();
    assert_eq!(close.status(), 401, "a write with only the cookie");
    send(&mut ws, "not closed").await;
    assert_eq!(text(&mut ws).await, "not closed");
    let forged = client.get(format!("{admin}/metrics")).header("cookie", "wasmsock_admin=guess").send().await.unwrap();
    assert_eq!(forged.status(), 401);
}

#[tokio::test]
async fn a_browser_sees_the_hosts_the_connections_rise_and_a_killed_host_leave() {
    let Some((chromium, dir)) = browser("the dashboard's browser test") else { return };
    let Some(nats) = NatsServer::start().await else { return };
    let plugins = echo_plugins();
    let cluster = format!("dash-{}", nats.port);
    let mut hosts = Vec::new();
    for id in ["h0", "h1"] {
        let flags = ["--nats", &nats.url(), "--cluster-name", &cluster, "--host-id", id, "--admin-token", TOKEN];
        hosts.push(BinaryHost::start(&plugins, &flags).await);
    }
    let started = Instant::now();
    let mut child = tokio::process::Command::new("node")
        .arg("dashboard.mjs")
        .arg(format!("http://{}", hosts[0].admin))
        .arg(hosts[0].url("echo"))
        .args([TOKEN, "h0", "h1"])
        .env("CHROMIUM", &chromium)
        .current_dir(&dir)
        .kill_on_drop(true)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let err = tokio::spawn(async move {
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut text).await.map(|_| text)
    });
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut out = String::new();
    let reading = async {
        while let Some(line) = lines.next_line().await.unwrap() {
            out.push_str(&line);
            out.push('\n');
            if line == "step: sessions open" {
                // The page saw the sessions: now h1 dies without a word.
                let pid = hosts[1].pid().to_string();
                assert!(Command::new("kill").args(["-9", &pid]).status().unwrap().success());
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(150), reading).await.expect("the browser run ends within 150 s");
    let status = child.wait().await.unwrap();
    let err = err.await.unwrap().unwrap();
    eprintln!("browser run took {:?}:\n{out}{err}", started.elapsed());
    assert!(status.success() && out.trim_end().ends_with("ok"), "{status}\n{out}\n{err}");
    for step in ["a wrong token is refused", "hosts h0, h1 listed", "connections rose", "h1 shown gone"] {
        assert!(out.contains(step), "{step}: {out}");
    }
}
