//! TLS both ways, with certificates made by the test (a test CA, a server certificate it signs for `localhost` and
//! 127.0.0.1, and a self-signed one): a `wss://` session through the host (`serve --tls-cert/--tls-key`), and
//! outbound `wss://` clients that refuse a server signed by an unknown CA unless it is given (`serve --ca-file`) and
//! refuse a self-signed server either way, each refusal a clear `onerror`; and `https://` requests from a handler
//! (the fetch example), verified against the same roots.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message;
use wasmsock::Limits;
use wasmsock::conn::tls::{client_config, server_config};
use wasmsock_tests::http_server::{Mode, Server};
use wasmsock_tests::*;

/// The test's certificates and keys as PEM files in a temp dir.
struct Pki {
    _dir: tempfile::TempDir,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    bad_cert: PathBuf,
    bad_key: PathBuf,
}

impl Pki {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name.push(DnType::CommonName, "wasmsock test CA");
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();
        let server = |_: &KeyPair| {
            let mut params = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
            // Not CN=localhost: Debian's snakeoil certificate in /etc/ssl/certs has that subject.
            params.distinguished_name.push(DnType::CommonName, "wasmsock test server");
            params
        };
        let key = KeyPair::generate().unwrap();
        let cert = server(&key).signed_by(&key, &issuer).unwrap();
        let bad_key = KeyPair::generate().unwrap();
        let bad_cert = server(&bad_key).self_signed(&bad_key).unwrap();
        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        Self {
            ca: write("ca.pem", issuer.pem()),
            cert: write("server.pem", cert.pem()),
            key: write("server.key", key.serialize_pem()),
            bad_cert: write("bad.pem", bad_cert.pem()),
            bad_key: write("bad.key", bad_key.serialize_pem()),
            _dir: dir,
        }
    }
}

fn limits() -> Limits {
    Limits { close_timeout: Duration::from_secs(1), connect_timeout: Duration::from_secs(5), ..Limits::default() }
}

/// A host serving the echo example over TLS with `cert` and `key`.
async fn tls_echo_host(cert: &Path, key: &Path) -> TestHost {
    let plugins = Plugins::new().handler("examples/echo", "echo").endpoint("echo", "examples/echo");
    let tls = Some(server_config(cert, key).unwrap());
    TestHost::start_tls(plugins, limits(), tls, client_config(None).unwrap()).await
}

/// A plain host whose recorder may open `wss://` clients to loopback and whose clients trust `outbound`.
async fn recorder_host(outbound: Arc<rustls::ClientConfig>) -> TestHost {
    let grants = ["wss://localhost:*", "wss://127.0.0.1:*"];
    let plugins =
        Plugins::new().handler("tests/recorder", "recorder").endpoint_granted("rec", "tests/recorder", &grants);
    let host = TestHost::start_tls(plugins, limits(), None, outbound).await;
    assert!(host.load_errors.is_empty(), "{:?}", host.load_errors);
    host
}

fn wss_url(host: &TestHost, name: &str, endpoint: &str) -> String {
    format!("wss://{name}:{}/websockets/service/{endpoint}", host.addr.port())
}

#[tokio::test]
async fn a_wss_session_through_the_host_echoes() {
    let pki = Pki::new();
    let host = tls_echo_host(&pki.cert, &pki.key).await;
    let trust = Connector::Rustls(client_config(Some(&pki.ca)).unwrap());
    for name in ["localhost", "127.0.0.1"] {
        let url = wss_url(&host, name, "echo");
        let connecting = tokio_tungstenite::connect_async_tls_with_config(&url, None, false, Some(trust.clone()));
        let (mut ws, _) = tokio::time::timeout(WAIT, connecting).await.unwrap().unwrap();
        ws.send(Message::text("over tls")).await.unwrap();
        let reply = tokio::time::timeout(WAIT, ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(reply, Message::text("over tls"), "by {name}");
        ws.close(None).await.unwrap();
    }
    // A plain ws:// client gets no session from the TLS listener.
    let plain = format!("ws://127.0.0.1:{}/websockets/service/echo", host.addr.port());
    let refused = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(&plain)).await.unwrap();
    assert!(refused.is_err(), "a plain client was served on the TLS listener");
    host.stop().await;
}

#[tokio::test]
async fn an_outbound_wss_client_trusts_a_private_ca_only_when_given() {
    let pki = Pki::new();
    let server = tls_echo_host(&pki.cert, &pki.key).await;
    let uri = wss_url(&server, "localhost", "echo");

    // Without --ca-file: the system roots do not know the test CA.
    let host = recorder_host(client_config(None).unwrap()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    send(&mut driver, &format!("connect-send {uri} hello")).await;
    let id = client_id(&text(&mut driver).await);
    let error = observer.expect(&id, "onerror").await;
    assert!(error.contains("invalid peer certificate: UnknownIssuer"), "{error}");
    assert!(error.contains(&uri) && error.contains("\"hello\""), "names the server and the unsent message: {error}");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    host.stop().await;

    // With --ca-file: the same server is trusted and echoes.
    let host = recorder_host(client_config(Some(&pki.ca)).unwrap()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    send(&mut driver, &format!("connect-send {uri} hello")).await;
    let id = client_id(&text(&mut driver).await);
    assert_eq!(observer.expect(&id, "onopen").await, "");
    assert_eq!(observer.expect(&id, "onmessage").await, "hello");
    host.stop().await;
    server.stop().await;
}

#[tokio::test]
async fn a_self_signed_server_is_refused_even_with_the_ca_file() {
    let pki = Pki::new();
    let server = tls_echo_host(&pki.bad_cert, &pki.bad_key).await;
    let uri = wss_url(&server, "127.0.0.1", "echo");
    let host = recorder_host(client_config(Some(&pki.ca)).unwrap()).await;
    let mut observer = Observer::open(&host, "rec").await;
    let mut driver = host.connect("rec").await;
    send(&mut driver, &format!("connect {uri}")).await;
    let id = client_id(&text(&mut driver).await);
    let error = observer.expect(&id, "onerror").await;
    assert!(error.contains(&format!("connecting to {uri} failed")), "{error}");
    assert!(error.contains("invalid peer certificate: UnknownIssuer"), "{error}");
    assert_eq!(observer.expect(&id, "onclose").await, "");
    host.stop().await;
    server.stop().await;
}

#[test]
fn bad_certificate_files_are_errors_that_name_the_file() {
    let pki = Pki::new();
    let err = server_config(&pki.cert, &pki.cert).unwrap_err().to_string();
    assert!(err.starts_with(&format!("no private key in {}", pki.cert.display())), "{err}");
    let err = server_config(&pki.key, &pki.key).unwrap_err().to_string();
    assert!(err.starts_with(&format!("no certificate in {}", pki.key.display())), "{err}");
    let err = server_config(&pki.cert, &pki.bad_key).unwrap_err().to_string();
    assert!(err.contains("does not match the certificate"), "{err}");
    let err = client_config(Some(&pki.key)).unwrap_err().to_string();
    assert!(err.starts_with(&format!("no certificate in {}", pki.key.display())), "{err}");
}

#[tokio::test]
async fn https_requests_trust_the_same_roots_as_wss_clients() {
    let pki = Pki::new();
    let server = Server::start_tls(Mode::Echo, server_config(&pki.cert, &pki.key).unwrap()).await;
    let url = format!("https://127.0.0.1:{}/over-tls", server.port);
    let grant = format!("https://127.0.0.1:{}", server.port);
    let fetch_host = |outbound| {
        let plugins = Plugins::new().handler("p/fetch", "fetch").endpoint_granted("fetch", "p/fetch", &[&grant]);
        TestHost::start_tls(plugins, limits(), None, outbound)
    };
    // Without --ca-file the test CA is unknown: refused as a certificate error, no request made.
    let host = fetch_host(client_config(None).unwrap()).await;
    let mut ws = host.connect("fetch").await;
    send(&mut ws, &format!("GET {url}")).await;
    let refused = text(&mut ws).await;
    assert!(refused.starts_with("error TlsCertificateError"), "{refused}");
    // A plain http:// request to the same address is not what was granted.
    send(&mut ws, &format!("GET http://127.0.0.1:{}/", server.port)).await;
    assert_eq!(text(&mut ws).await, "error HttpRequestDenied");
    host.stop().await;
    // With --ca-file: the same server answers over TLS.
    let host = fetch_host(client_config(Some(&pki.ca)).unwrap()).await;
    let mut ws = host.connect("fetch").await;
    send(&mut ws, &format!("POST {url} sealed")).await;
    assert_eq!(text(&mut ws).await, "200 POST /over-tls sealed");
    host.stop().await;
}
