//! The integration-test harness: plugins roots in temp dirs, a host on 127.0.0.1 port 0 (in process or the real
//! binary), and WebSocket clients with bounded waits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr, missing_docs)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wasmsock::{App, Limits};

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A built guest component: a test component (`tests/components/NAME.wasm`) or an example plugin
/// (`plugins/examples/NAME.wasm`).
pub fn component(name: &str) -> PathBuf {
    let candidates = [
        repo_root().join("tests/components").join(format!("{name}.wasm")),
        repo_root().join("plugins/examples").join(format!("{name}.wasm")),
    ];
    for path in &candidates {
        if path.is_file() {
            return path.clone();
        }
    }
    panic!("component {name} is not built: run `cargo xtask guests` (or `cargo xtask test`)");
}

/// A plugins root in a temp dir.
pub struct Plugins {
    dir: tempfile::TempDir,
}

impl Plugins {
    pub fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs component `name` as handler `handler` (`project/name`).
    pub fn handler(self, handler: &str, name: &str) -> Self {
        let dest = wasmsock::descriptor::handler_path(self.path(), handler);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(component(name), dest).unwrap();
        self
    }

    /// Writes a file (a descriptor, a broken component, …) at `rel`.
    pub fn file(self, rel: &str, contents: impl AsRef<[u8]>) -> Self {
        let dest = self.path().join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, contents).unwrap();
        self
    }

    /// Writes a descriptor for `endpoint` served by `handler`.
    pub fn endpoint(self, endpoint: &str, handler: &str) -> Self {
        let text = serde_json::json!({"handler": handler, "endpoint": endpoint, "description": "test"}).to_string();
        self.file(&format!("descriptors/{endpoint}.websocket"), text)
    }
}

impl Default for Plugins {
    fn default() -> Self {
        Self::new()
    }
}

/// A host serving in this process on 127.0.0.1, port 0.
pub struct TestHost {
    pub addr: SocketAddr,
    /// The admin API's address (no token).
    pub admin: SocketAddr,
    pub app: Arc<App>,
    pub load_errors: Vec<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub plugins: Plugins,
}

impl TestHost {
    /// A host with the default limits, except a 1 s close timeout: test clients that stop reading cost little.
    pub async fn start(plugins: Plugins) -> Self {
        Self::start_with(plugins, Limits { close_timeout: Duration::from_secs(1), ..Limits::default() }).await
    }

    pub async fn start_with(plugins: Plugins, limits: Limits) -> Self {
        let (app, errors) = App::load(plugins.path(), limits).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let admin_listener = wasmsock::server::AdminListener { listener: admin_listener, token: None };
        let task = tokio::spawn(wasmsock::server::serve(app.clone(), listener, Some(admin_listener), async move {
            let _ = stopped.await;
        }));
        let load_errors = errors.iter().map(|e| format!("{e:#}")).collect();
        Self { addr, admin, app, load_errors, stop: Some(stop), task, plugins }
    }

    pub fn url(&self, endpoint: &str) -> String {
        format!("ws://{}/websockets/service/{endpoint}", self.addr)
    }

    pub async fn connect(&self, endpoint: &str) -> Ws {
        connect(&self.url(endpoint)).await
    }

    /// Drains and stops the server.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(WAIT * 2, &mut self.task).await.expect("host stops in time").unwrap().unwrap();
    }
}

pub async fn connect(url: &str) -> Ws {
    let (ws, _) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .unwrap_or_else(|_| panic!("connecting to {url} timed out"))
        .unwrap_or_else(|err| panic!("connecting to {url}: {err}"));
    ws
}

/// The next data or close message (pings and pongs skipped); panics after [`WAIT`].
pub async fn next(ws: &mut Ws) -> Option<Message> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await.expect("a message in time") {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(message)) => return Some(message),
            Some(Err(_)) | None => return None,
        }
    }
}

/// The next text message; panics on anything else.
pub async fn text(ws: &mut Ws) -> String {
    match next(ws).await {
        Some(Message::Text(text)) => text.to_string(),
        other => panic!("expected a text message, got {other:?}"),
    }
}

pub async fn send(ws: &mut Ws, text: &str) {
    ws.send(Message::text(text)).await.unwrap();
}

/// Reads until the close frame and returns its code and reason, then reads on until the stream ends so that the
/// library's close reply is written (as a well-behaved client does).
pub async fn close_frame(ws: &mut Ws) -> Option<CloseFrame> {
    loop {
        match next(ws).await {
            Some(Message::Close(frame)) => {
                while let Ok(Some(Ok(_))) = tokio::time::timeout(WAIT, ws.next()).await {}
                return frame;
            }
            Some(_) => continue,
            None => return None,
        }
    }
}

/// An observer session of the recorder: collects `"<id> <method> <detail>"` lines.
pub struct Observer(pub Ws);

impl Observer {
    pub async fn open(host: &TestHost, endpoint: &str) -> Self {
        let url = format!("{}?observer", host.url(endpoint));
        Self(connect(&url).await)
    }

    /// Waits for the report line of `id` with `method` and returns its detail.
    pub async fn expect(&mut self, id: &str, method: &str) -> String {
        let prefix = format!("{id} {method}");
        loop {
            let line = text(&mut self.0).await;
            if line == prefix {
                return String::new();
            }
            if let Some(detail) = line.strip_prefix(&format!("{prefix} ")) {
                return detail.to_owned();
            }
            if line.starts_with(&format!("{id} ")) {
                panic!("expected {prefix}, got {line:?}");
            }
        }
    }

    /// Every report line of `id`, in order, until its onclose.
    pub async fn events_until_close(&mut self, id: &str) -> Vec<String> {
        let mut events = Vec::new();
        loop {
            let line = text(&mut self.0).await;
            if let Some(event) = line.strip_prefix(&format!("{id} ")) {
                events.push(event.to_owned());
                if event == "onclose" {
                    return events;
                }
            }
        }
    }
}

/// Polls `check` every 20 ms until it holds or [`WAIT`] passes.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The `wasmsock` binary built next to this test (`cargo build -p wasmsock`; `cargo xtask test` does it).
pub fn binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let path = dir.join(format!("wasmsock{}", std::env::consts::EXE_SUFFIX));
    assert!(path.is_file(), "{} is missing: run `cargo build -p wasmsock` (cargo xtask test does)", path.display());
    path
}

/// How a [`PeerServer`] treats each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerMode {
    /// Echo every data message.
    Echo,
    /// Echo the first message, then close with 1000 "done".
    CloseAfterFirst,
    /// Read the first message, then drop the TCP connection without a close frame.
    VanishAfterFirst,
    /// Accept TCP and never answer the handshake.
    Silent,
}

/// An independent WebSocket server (plain tokio-tungstenite, no wasmsock) on 127.0.0.1 port 0.
pub struct PeerServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl PeerServer {
    pub async fn start(mode: PeerMode) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((tcp, _)) = listener.accept().await {
                if mode == PeerMode::Silent {
                    held.push(tcp);
                    continue;
                }
                tokio::spawn(peer_connection(tcp, mode));
            }
        });
        Self { addr, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for PeerServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn peer_connection(tcp: TcpStream, mode: PeerMode) {
    let Ok(mut ws) = tokio_tungstenite::accept_async(tcp).await else {
        return;
    };
    while let Some(Ok(message)) = ws.next().await {
        if !(message.is_text() || message.is_binary()) {
            continue;
        }
        match mode {
            PeerMode::Echo => {
                if ws.send(message).await.is_err() {
                    return;
                }
            }
            PeerMode::CloseAfterFirst => {
                let _ = ws.send(message).await;
                let close = CloseFrame { code: 1000.into(), reason: "done".into() };
                let _ = ws.close(Some(close)).await;
                // Finish the handshake: read until the client's close reply ends the stream.
                while let Some(Ok(_)) = ws.next().await {}
                return;
            }
            PeerMode::VanishAfterFirst => {
                let mut tcp = ws.into_inner();
                let _ = tokio::io::AsyncWriteExt::shutdown(&mut tcp).await;
                return;
            }
            PeerMode::Silent => return,
        }
    }
}

/// The number of outbound clients the host holds.
pub fn outbound_clients(app: &App) -> usize {
    app.hub.list().iter().filter(|c| c.direction == wasmsock::hub::Direction::Outbound).count()
}

/// The real `wasmsock` binary serving a plugins root on 127.0.0.1 port 0 (and its admin API on port 0), killed when
/// dropped. Its log is drained in the background.
pub struct BinaryHost {
    pub child: tokio::process::Child,
    /// The WebSocket listener's address.
    pub addr: String,
    /// The admin API's address.
    pub admin: String,
}

impl BinaryHost {
    /// Starts `wasmsock serve` with `extra` flags and waits until it logs both addresses.
    pub async fn start(plugins: &Plugins, extra: &[&str]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--plugins"])
            .arg(plugins.path())
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut admin) = (None, None);
        tokio::time::timeout(WAIT, async {
            while addr.is_none() || admin.is_none() {
                let line = lines.next_line().await.unwrap().expect("the host logs its addresses");
                if let Some(rest) = line.split("listening on ws://").nth(1) {
                    addr = rest.split('/').next().map(str::to_owned);
                }
                if let Some(rest) = line.split("admin API on http://").nth(1) {
                    admin = rest.split('/').next().map(str::to_owned);
                }
            }
        })
        .await
        .expect("the host starts in time");
        // Keep draining the log so the host never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, addr: addr.unwrap(), admin: admin.unwrap() }
    }

    pub fn url(&self, endpoint: &str) -> String {
        format!("ws://{}/websockets/service/{endpoint}", self.addr)
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}
