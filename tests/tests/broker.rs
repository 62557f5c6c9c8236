//! The broker connection as production NATS needs it, against real `nats-server` processes configured by the test and
//! real `wasmsock serve --nats` hosts: a user and password (in the URL, by flags, from the environment), a token (URL
//! and flag), an NKey (seed file and environment), a `.creds` file whose operator, account and user JWTs the test
//! signs, and TLS with a CA and certificates the test makes (a client certificate shown, and a host without the CA
//! refused with the reason); a wrong password is named once in the log over backed-off retries, with the reason in
//! `/healthz` (503) and the cluster listing; a refused host joins once the broker takes its password, and a broker
//! gone after that is named unreachable once; no secret is ever logged.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};
use wasmsock_tests::*;

/// Any endpoint will do: these tests are about joining the cluster.
fn plugins() -> Plugins {
    Plugins::new().handler("examples/chat", "chat").endpoint("chat", "examples/chat")
}

/// `/healthz` of a host: status and body.
async fn healthz(host: &BinaryHost) -> (u16, Value) {
    let answer = reqwest::get(format!("http://{}/healthz", host.admin)).await.unwrap();
    (answer.status().as_u16(), answer.json().await.unwrap())
}

/// `GET /admin/v1/cluster` of a host.
async fn listing(host: &BinaryHost) -> Value {
    reqwest::get(format!("http://{}/admin/v1/cluster", host.admin)).await.unwrap().json().await.unwrap()
}

/// Starts a host joining `url` as `id` of cluster `cluster`, with `flags` and the environment `env`.
async fn host(url: &str, id: &str, cluster: &str, flags: &[&str], env: &[(&str, &str)]) -> BinaryHost {
    let mut all = vec!["--nats", url, "--cluster-name", cluster, "--host-id", id, "--no-cache"];
    all.extend_from_slice(flags);
    BinaryHost::start_with_env(&plugins(), &all, "info", env).await
}

/// Waits until `host` is healthy and lists exactly the hosts `ids` (so they reached each other through the broker).
async fn until_joined(host: &BinaryHost, ids: &[&str]) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = healthz(host).await;
        let listed = listing(host).await;
        let hosts: Vec<String> =
            listed["hosts"].as_array().into_iter().flatten().map(|h| h["host"].as_str().unwrap().to_owned()).collect();
        if status == 200 && listed["broker_connected"] == true && hosts == ids {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never joined with {ids:?}: /healthz {status} {body}, listing {listed}\nlog:\n{}",
            host.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `/healthz` of `host` is 503 with a reason containing `why`, and returns the reason.
async fn until_refused(host: &BinaryHost, why: &str) -> String {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (status, body) = healthz(host).await;
        let reason = body["reason"].as_str().unwrap_or_default().to_owned();
        if status == 503 && reason.contains(why) {
            assert_eq!(body["status"], "unhealthy", "{body}");
            return reason;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/healthz never said {why:?}: {status} {body}\nlog:\n{}",
            host.log().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Fails when any of `secrets` appears in the host's log.
fn assert_no_secret_logged(host: &BinaryHost, secrets: &[&str]) {
    for line in host.log() {
        for secret in secrets {
            assert!(!line.contains(secret), "a secret in the log: {line}");
        }
    }
}

/// Writes `text` to `name` in `dir`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn a_user_and_password_in_the_url_by_flags_and_from_the_environment() {
    let Some(nats) = NatsServer::start_with_config(r#"authorization { user: "alice", password: "s3cr3t/p@ss" }"#).await
    else {
        return;
    };
    let cluster = format!("users-{}", nats.port);
    // In the URL, percent-encoded as a URL needs `/` and `@` to be.
    let url = format!("nats://alice:s3cr3t%2Fp%40ss@127.0.0.1:{}", nats.port);
    let h0 = host(&url, "h0", &cluster, &[], &[]).await;
    let h1 = host(&nats.url(), "h1", &cluster, &["--nats-user", "alice", "--nats-password", "s3cr3t/p@ss"], &[]).await;
    let env = [("WASMSOCK_NATS_USER", "alice"), ("WASMSOCK_NATS_PASSWORD", "s3cr3t/p@ss")];
    let h2 = host(&nats.url(), "h2", &cluster, &[], &env).await;
    for h in [&h0, &h1, &h2] {
        until_joined(h, &["h0", "h1", "h2"]).await;
        assert_no_secret_logged(h, &["s3cr3t"]);
    }
    let listed = listing(&h0).await;
    assert_eq!(listed["broker"], format!("nats://alice:***@127.0.0.1:{}", nats.port), "{listed}");
    assert_eq!(listed["broker_error"], Value::Null);
}

#[tokio::test]
async fn a_wrong_password_is_named_once_and_health_is_red_with_the_reason() {
    // The broker's own log counts the host's attempts.
    let dir = tempfile::tempdir().unwrap();
    let broker_log = dir.path().join("nats.log");
    let config =
        format!("authorization {{ user: \"alice\", password: \"right\" }}\nlog_file: \"{}\"\n", broker_log.display());
    let Some(nats) = NatsServer::start_with_config(&config).await else { return };
    let cluster = format!("wrong-{}", nats.port);
    let h0 = host(&nats.url(), "h0", &cluster, &["--nats-user", "alice", "--nats-password", "wr0ng"], &[]).await;
    let reason = until_refused(&h0, "authorization violation").await;
    eprintln!("/healthz: {reason}");
    assert!(reason.contains(&format!("127.0.0.1:{}", nats.port)) && reason.contains("refused"), "{reason}");
    let listed = listing(&h0).await;
    assert_eq!(listed["broker_connected"], false);
    assert!(listed["broker_error"].as_str().unwrap().contains("authorization violation"), "{listed}");
    // Several retries later (back-off from 100 ms to 4 s: about eight attempts in 7 s), still one line.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let log = h0.log();
    let named: Vec<&String> = log.iter().filter(|line| line.contains("authorization violation")).collect();
    assert_eq!(named.len(), 1, "the refusal named once:\n{}", log.join("\n"));
    assert!(named[0].contains("refused this host"), "{}", named[0]);
    assert_no_secret_logged(&h0, &["wr0ng", "right"]);
    assert_eq!(healthz(&h0).await.0, 503);
    // It kept trying, with back-off: a handful of attempts in those seconds, not one per millisecond.
    let attempts = std::fs::read_to_string(&broker_log).unwrap().matches("authentication error").count();
    eprintln!("{attempts} attempts refused by the broker");
    assert!((4..=20).contains(&attempts), "{attempts} attempts");
}

#[tokio::test]
async fn a_token_in_the_url_and_by_flag() {
    let Some(nats) = NatsServer::start_with_config(r#"authorization { token: "t0k3n-for-the-test" }"#).await else {
        return;
    };
    let cluster = format!("token-{}", nats.port);
    let url = format!("nats://t0k3n-for-the-test@127.0.0.1:{}", nats.port);
    let h0 = host(&url, "h0", &cluster, &[], &[]).await;
    let h1 = host(&nats.url(), "h1", &cluster, &["--nats-token", "t0k3n-for-the-test"], &[]).await;
    for h in [&h0, &h1] {
        until_joined(h, &["h0", "h1"]).await;
        assert_no_secret_logged(h, &["t0k3n"]);
    }
    // Without it: refused, and said so.
    let h2 = host(&nats.url(), "h2", &cluster, &[], &[]).await;
    until_refused(&h2, "authorization violation").await;
}

#[tokio::test]
async fn an_nkey_from_a_seed_file_and_from_the_environment() {
    let user = nkeys::KeyPair::new_user();
    let seed = user.seed().unwrap();
    let config = format!(r#"authorization {{ users: [ {{ nkey: "{}" }} ] }}"#, user.public_key());
    let Some(nats) = NatsServer::start_with_config(&config).await else { return };
    let cluster = format!("nkey-{}", nats.port);
    let dir = tempfile::tempdir().unwrap();
    let seed_file = write(dir.path(), "user.nk", &format!("{seed}\n"));
    let h0 = host(&nats.url(), "h0", &cluster, &["--nats-nkey", seed_file.to_str().unwrap()], &[]).await;
    let h1 = host(&nats.url(), "h1", &cluster, &[], &[("WASMSOCK_NATS_NKEY", &seed)]).await;
    for h in [&h0, &h1] {
        until_joined(h, &["h0", "h1"]).await;
        assert_no_secret_logged(h, &[&seed]);
    }
    // Another user's key is refused.
    let other = nkeys::KeyPair::new_user().seed().unwrap();
    let h2 = host(&nats.url(), "h2", &cluster, &[], &[("WASMSOCK_NATS_NKEY", &other)]).await;
    until_refused(&h2, "authorization violation").await;
}

/// A NATS JWT: `claims` (with `iss`, `iat` and `jti` added) signed by `issuer` as the `ed25519-nkey` algorithm says
/// (the signature of `header.claims`, all base64url without padding).
fn jwt(issuer: &nkeys::KeyPair, mut claims: Value) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    claims["iss"] = json!(issuer.public_key());
    claims["iat"] = json!(now);
    claims["jti"] = json!(format!("T{now}{}", claims["sub"].as_str().unwrap_or_default()));
    let header = json!({"typ": "JWT", "alg": "ed25519-nkey"});
    let encode = |value: &Value| URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap());
    let signed = format!("{}.{}", encode(&header), encode(&claims));
    let signature = issuer.sign(signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// An operator, an account it signs and a user the account signs: the server's configuration (operator JWT in a
/// file, the account preloaded in a memory resolver) and the user's `.creds` file, as `nsc` would make them.
fn operator_setup(dir: &Path) -> (String, PathBuf) {
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let unlimited = json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1});
    let operator_jwt = jwt(
        &operator,
        json!({"sub": operator.public_key(), "name": "test-operator", "nats": {"type": "operator", "version": 2}}),
    );
    let account_jwt = jwt(
        &operator,
        json!({"sub": account.public_key(), "name": "test-account",
            "nats": {"type": "account", "version": 2, "limits": unlimited}}),
    );
    let user_jwt = jwt(
        &account,
        json!({"sub": user.public_key(), "name": "test-user",
            "nats": {"type": "user", "version": 2, "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1}}),
    );
    let operator_file = write(dir, "operator.jwt", &operator_jwt);
    let config = format!(
        "operator: \"{}\"\nresolver: MEMORY\nresolver_preload: {{\n  {}: \"{account_jwt}\"\n}}\n",
        operator_file.display(),
        account.public_key()
    );
    let creds = format!(
        "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n",
        user.seed().unwrap()
    );
    (config, write(dir, "user.creds", &creds))
}

#[tokio::test]
async fn a_creds_file_signed_by_an_operator_and_account_the_test_made() {
    let dir = tempfile::tempdir().unwrap();
    let (config, creds) = operator_setup(dir.path());
    let Some(nats) = NatsServer::start_with_config(&config).await else { return };
    let cluster = format!("creds-{}", nats.port);
    let h0 = host(&nats.url(), "h0", &cluster, &["--nats-creds", creds.to_str().unwrap()], &[]).await;
    let h1 = host(&nats.url(), "h1", &cluster, &[], &[("WASMSOCK_NATS_CREDS", creds.to_str().unwrap())]).await;
    for h in [&h0, &h1] {
        until_joined(h, &["h0", "h1"]).await;
    }
    // A user this account did not sign is refused.
    let elsewhere = tempfile::tempdir().unwrap();
    let (_, stranger) = operator_setup(elsewhere.path());
    let h2 = host(&nats.url(), "h2", &cluster, &["--nats-creds", stranger.to_str().unwrap()], &[]).await;
    eprintln!("/healthz: {}", until_refused(&h2, "refused this host").await);
}

/// A CA, the broker's certificate for 127.0.0.1 and a client certificate, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "wasmsock broker test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    server.distinguished_name.push(DnType::CommonName, "wasmsock test broker");
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client.distinguished_name.push(DnType::CommonName, "wasmsock test host");
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &issuer).unwrap();
    Pki {
        ca: write(dir, "ca.pem", &issuer.pem()),
        server_cert: write(dir, "server.pem", &server_cert.pem()),
        server_key: write(dir, "server.key", &server_key.serialize_pem()),
        client_cert: write(dir, "client.pem", &client_cert.pem()),
        client_key: write(dir, "client.key", &client_key.serialize_pem()),
    }
}

#[tokio::test]
async fn tls_to_a_broker_with_a_test_ca_and_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path());
    // The broker verifies clients: a host must show a certificate the CA signed.
    let config = format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: true\n  timeout: 2\n}}\n",
        pki.server_cert.display(),
        pki.server_key.display(),
        pki.ca.display()
    );
    let Some(nats) = NatsServer::start_with_config(&config).await else { return };
    let cluster = format!("tls-{}", nats.port);
    let tls_url = format!("tls://127.0.0.1:{}", nats.port);
    let (ca, cert, key) =
        (pki.ca.to_str().unwrap(), pki.client_cert.to_str().unwrap(), pki.client_key.to_str().unwrap());
    let h0 = host(&tls_url, "h0", &cluster, &["--nats-ca", ca, "--nats-cert", cert, "--nats-key", key], &[]).await;
    // `nats://` with the flags from the environment: --nats-ca alone asks for TLS.
    let env = [("WASMSOCK_NATS_CA", ca), ("WASMSOCK_NATS_CERT", cert), ("WASMSOCK_NATS_KEY", key)];
    let h1 = host(&nats.url(), "h1", &cluster, &[], &env).await;
    for h in [&h0, &h1] {
        until_joined(h, &["h0", "h1"]).await;
    }
    // Without the CA the broker's certificate is not trusted: refused, with the TLS reason.
    let h2 = host(&tls_url, "h2", &cluster, &[], &[]).await;
    let reason = until_refused(&h2, "TLS failed").await;
    eprintln!("/healthz: {reason}");
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    let named = h2.log().iter().filter(|line| line.contains("TLS failed")).count();
    assert_eq!(named, 1, "{}", h2.log().join("\n"));
}

#[tokio::test]
async fn a_host_refused_keeps_trying_and_joins_once_the_broker_takes_its_password() {
    let Some(mut nats) = NatsServer::start_with_config(r#"authorization { user: "alice", password: "old" }"#).await
    else {
        return;
    };
    let cluster = format!("rotate-{}", nats.port);
    let env = [("WASMSOCK_NATS_USER", "alice"), ("WASMSOCK_NATS_PASSWORD", "new")];
    let h0 = host(&nats.url(), "h0", &cluster, &[], &env).await;
    until_refused(&h0, "authorization violation").await;
    // The broker's password is rotated to the one the host has: it joins on its next attempt (within the 4 s cap).
    nats.restart_with_config(r#"authorization { user: "alice", password: "new" }"#).await;
    let started = std::time::Instant::now();
    until_joined(&h0, &["h0"]).await;
    eprintln!("joined {:?} after the broker took its password", started.elapsed());
    h0.log_line("connected", |line| line.contains("connected to the cluster's broker")).await;
    assert_eq!(listing(&h0).await["broker_error"], Value::Null);
    // And a broker that goes away after that is named as unreachable, once.
    nats.kill();
    let reason = until_refused(&h0, "is unreachable: ").await;
    eprintln!("/healthz: {reason}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let named = h0.log().iter().filter(|line| line.contains("is unreachable")).count();
    assert_eq!(named, 1, "{}", h0.log().join("\n"));
}
