//! The integration-test harness: plugins roots in temp dirs, a host on 127.0.0.1 port 0 (in process, shared by a
//! test file, or the real binary), the host's log captured in process, and WebSocket clients with bounded waits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr, missing_docs)]

pub mod http_server;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wasmsock::{App, Limits};

/// The grant of every `ws://` port on 127.0.0.1: what tests whose handlers open clients to loopback servers give their
/// project (nothing is granted by default).
pub const LOOPBACK: &str = "ws://127.0.0.1:*";

/// How long any single wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// A client connection.
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// Where the tests' plugins roots are made: `target/test-plugins`, each named after the process that made it. A
/// [`SharedHost`] lives in a `static` and is never dropped, so its root (about 100 MB with the JavaScript and Python
/// components) outlives the process; the first root a later process makes removes those of processes that have ended.
fn plugins_parent() -> &'static Path {
    static PARENT: OnceLock<PathBuf> = OnceLock::new();
    PARENT.get_or_init(|| {
        let target = std::env::current_exe().unwrap().ancestors().nth(3).unwrap().to_path_buf();
        let parent = target.join("test-plugins");
        std::fs::create_dir_all(&parent).unwrap();
        for entry in std::fs::read_dir(&parent).unwrap().flatten() {
            let name = entry.file_name();
            let pid = name.to_str().and_then(|name| name.split('-').next()).and_then(|pid| pid.parse::<u32>().ok());
            // A process that has ended has no /proc entry (Linux, where the tests run); an unparsable name is left.
            if pid.is_some_and(|pid| pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        parent
    })
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

/// A plugins root in a temp dir under the target folder (see [`plugins_parent`]).
pub struct Plugins {
    dir: tempfile::TempDir,
}

impl Plugins {
    pub fn new() -> Self {
        let parent = plugins_parent();
        let dir = tempfile::Builder::new().prefix(&format!("{}-", std::process::id())).tempdir_in(parent).unwrap();
        Self { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Installs component `name` as handler `handler` (`project/name`).
    pub fn handler(self, handler: &str, name: &str) -> Self {
        let dest = wasmsock::wire::descriptor::handler_path(self.path(), handler);
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
        self.endpoint_with(endpoint, handler, serde_json::json!({}))
    }

    /// Writes a descriptor for `endpoint` served by `handler`, with the fields of `extra` (origins, limits, …) added.
    /// An endpoint whose descriptor grants its handler's project outbound clients to `grants` (patterns of
    /// `allowed-outbound-hosts`, such as [`LOOPBACK`]).
    pub fn endpoint_granted(self, endpoint: &str, handler: &str, grants: &[&str]) -> Self {
        self.endpoint_with(endpoint, handler, serde_json::json!({ "allowed-outbound-hosts": grants }))
    }

    pub fn endpoint_with(self, endpoint: &str, handler: &str, extra: serde_json::Value) -> Self {
        let mut descriptor = serde_json::json!({"handler": handler, "endpoint": endpoint, "description": "test"});
        if let (Some(fields), Some(extra)) = (descriptor.as_object_mut(), extra.as_object()) {
            fields.extend(extra.clone());
        }
        self.file(&format!("descriptors/{endpoint}.websocket"), descriptor.to_string())
    }
}

impl Default for Plugins {
    fn default() -> Self {
        Self::new()
    }
}

/// A running host's endpoint URLs.
pub trait Endpoints {
    /// The URL of `endpoint`.
    fn url(&self, endpoint: &str) -> String;
}

impl Endpoints for TestHost {
    fn url(&self, endpoint: &str) -> String {
        TestHost::url(self, endpoint)
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
        let outbound = wasmsock::conn::tls::client_config(None).unwrap();
        Self::start_tls(plugins, limits, None, outbound).await
    }

    /// A host serving `wss://` when `tls` is given, whose outbound `wss://` clients trust `outbound`.
    pub async fn start_tls(
        plugins: Plugins,
        limits: Limits,
        tls: Option<Arc<rustls::ServerConfig>>,
        outbound: Arc<rustls::ClientConfig>,
    ) -> Self {
        let cache = Some(plugins.path().join(wasmsock::control::registry::DEFAULT_CACHE_DIR));
        let (app, errors) = App::start_with_tls(plugins.path(), cache, limits, outbound).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let admin_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let admin = admin_listener.local_addr().unwrap();
        let admin_listener = wasmsock::http::AdminListener { listener: admin_listener, token: None };
        let task =
            tokio::spawn(wasmsock::http::serve_tls(app.clone(), listener, tls, Some(admin_listener), async move {
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

/// This process's CPU time (user + system), from `/proc/self/stat`, in steps of 10 ms: measure many operations.
pub fn process_cpu() -> Duration {
    cpu_of("self")
}

/// The CPU time (user + system) of the process `pid` (a broker the test started), as [`process_cpu`].
pub fn process_cpu_of(pid: u32) -> Duration {
    cpu_of(&pid.to_string())
}

fn cpu_of(pid: &str) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10) // USER_HZ is 100 on Linux
}

/// Runs the real `wasmsock` with `args` against the admin API at `admin` (`host:port`): whether it succeeded, its
/// stdout and its stderr.
pub fn cli(admin: &str, args: &[&str]) -> (bool, String, String) {
    let out =
        std::process::Command::new(binary()).args(args).args(["--host", &format!("http://{admin}")]).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    /// Opens the observer and waits for its first report line (its own onopen, or an event of another session that
    /// came first). The handshake alone is not enough: the recorder reports to the sessions `get-clients` lists as
    /// open, and a session is listed a moment after its client sees the handshake's answer. A line received proves
    /// the observer is listed, so every event that starts after `open` returns reaches it.
    pub async fn open(host: &impl Endpoints, endpoint: &str) -> Self {
        let url = format!("{}?observer", host.url(endpoint));
        let mut ws = connect(&url).await;
        text(&mut ws).await;
        Self(ws)
    }

    /// Waits for the report line of `id` with `method` and returns its detail; another event of `id` first fails.
    pub async fn expect(&mut self, id: &str, method: &str) -> String {
        self.next_report(id, method, true).await
    }

    /// Waits for the next report line of `id` with `method`, passing over its other events, and returns its detail.
    pub async fn skip_to(&mut self, id: &str, method: &str) -> String {
        self.next_report(id, method, false).await
    }

    async fn next_report(&mut self, id: &str, method: &str, strict: bool) -> String {
        let prefix = format!("{id} {method}");
        loop {
            let line = text(&mut self.0).await;
            if line == prefix {
                return String::new();
            }
            if let Some(detail) = line.strip_prefix(&format!("{prefix} ")) {
                return detail.to_owned();
            }
            if strict && line.starts_with(&format!("{id} ")) {
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

/// The id the recorder gives a session: its `clients` listing names it as the one with `marker` in its URI.
pub async fn own_id(ws: &mut Ws, marker: &str) -> String {
    send(ws, "clients").await;
    let listing = text(ws).await;
    listing
        .trim_start_matches("clients ")
        .split(';')
        .find(|c| c.contains(marker))
        .and_then(|c| c.split('|').next())
        .unwrap_or_else(|| panic!("{marker} not in {listing}"))
        .to_owned()
}

/// A loopback port that refuses connections, held for as long as the returned socket lives: bound, never listening.
/// Unlike binding a listener and freeing it, no other socket (a host under test included) can take the port meanwhile.
pub fn refusing_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0))).expect("binding a loopback port");
    let port = socket.local_addr().expect("the bound address").port();
    (socket, port)
}

/// The client id in a recorder's `created …` or `found …` reply.
pub fn client_id(reply: &str) -> String {
    let fields = reply.split_once(' ').map(|(_, rest)| rest).unwrap_or_default();
    let id = fields.split('|').next().unwrap_or_default();
    assert!(id.starts_with('c'), "no client id in {reply:?}");
    id.to_owned()
}

/// Polls `check` every 20 ms until it holds or [`WAIT`] passes.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the async `check` holds; panics after [`WAIT`].
pub async fn eventually_async<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !check().await {
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
    app.hub.list().iter().filter(|c| c.direction == wasmsock::wire::Direction::Outbound).count()
}

/// The real `wasmsock` binary serving a plugins root on 127.0.0.1 port 0 (and its admin API on port 0), killed when
/// dropped. Its log is drained in the background.
pub struct BinaryHost {
    pub child: tokio::process::Child,
    /// The WebSocket listener's address.
    pub addr: String,
    /// The admin API's address.
    pub admin: String,
    log: Arc<std::sync::Mutex<Vec<String>>>,
}

impl BinaryHost {
    /// Starts `wasmsock serve` with `extra` flags and waits until it logs both addresses.
    pub async fn start(plugins: &Plugins, extra: &[&str]) -> Self {
        Self::start_logging(plugins, extra, "info").await
    }

    /// [`BinaryHost::start`] with `RUST_LOG` set to `filter`.
    pub async fn start_logging(plugins: &Plugins, extra: &[&str], filter: &str) -> Self {
        Self::start_with_env(plugins, extra, filter, &[]).await
    }

    /// [`BinaryHost::start_logging`] with environment variables `env` set too (the `WASMSOCK_*` fallbacks of flags).
    pub async fn start_with_env(plugins: &Plugins, extra: &[&str], filter: &str, env: &[(&str, &str)]) -> Self {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(binary())
            .args(["serve", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--plugins"])
            .arg(plugins.path())
            .args(extra)
            .env("RUST_LOG", filter)
            .envs(env.iter().copied())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut admin) = (None, None);
        let mut startup = Vec::new();
        // A JavaScript or Python component compiles for seconds before the host listens.
        tokio::time::timeout(WAIT * 6, async {
            while addr.is_none() || admin.is_none() {
                let line = lines.next_line().await.unwrap().expect("the host logs its addresses");
                startup.push(line.clone());
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
        // Keep draining the log (and keep it for `log`) so the host never blocks on a full pipe.
        let log = Arc::new(std::sync::Mutex::new(startup));
        let kept = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                kept.lock().unwrap().push(line);
            }
        });
        Self { child, addr: addr.unwrap(), admin: admin.unwrap(), log }
    }

    /// The host's log lines so far, its start-up lines included.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    pub fn url(&self, endpoint: &str) -> String {
        format!("ws://{}/websockets/service/{endpoint}", self.addr)
    }

    /// Waits until the host has logged a line that `matches`, and returns it.
    pub async fn log_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(line) = self.log.lock().unwrap().iter().find(|line| matches(line)) {
                return line.clone();
            }
            if tokio::time::Instant::now() > deadline {
                panic!("no log line {what} in:\n{}", self.log.lock().unwrap().join("\n"));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }
}

/// The next binary message; panics on anything else.
pub async fn binary_message(ws: &mut Ws) -> Vec<u8> {
    match next(ws).await {
        Some(Message::Binary(data)) => data.to_vec(),
        other => panic!("expected a binary message, got {other:?}"),
    }
}

/// How long a [`SharedHost`] may take to compile its components and start: JavaScript and Python components take
/// seconds each to compile, more on a busy machine. A bound so that a broken start fails instead of hanging.
pub const SHARED_START: Duration = Duration::from_secs(600);

/// The handler deadline of a [`SharedHost`]. Its tests run the JavaScript and Python handlers (interpreters inside
/// WebAssembly, SpiderMonkey the slowest) while the other test binaries run, and on a 2-core CI machine a call that
/// takes milliseconds alone was once stopped at the default 1 s. None of its tests is about the deadline: `limits`
/// and `handlers` test it, on hosts of their own.
pub const SHARED_HANDLER_DEADLINE: Duration = Duration::from_secs(10);

/// A host for a whole test file: started once on its own thread and tokio runtime, it lives as long as the test
/// process, so the tests of a file share the cost of compiling its components (seconds for JavaScript and Python).
///
/// Keep it in a `static OnceLock<SharedHost>`; tests running in parallel see each other's connections, so they must
/// tell theirs apart by id or endpoint.
pub struct SharedHost {
    pub addr: SocketAddr,
    pub app: Arc<App>,
}

impl SharedHost {
    /// Starts a host on `plugins` with the default limits but a 1 s close timeout (as [`TestHost`]) and a handler
    /// deadline of [`SHARED_HANDLER_DEADLINE`]; panics if any descriptor or component fails to load. Blocks until the
    /// host listens.
    pub fn start(plugins: Plugins) -> Self {
        let (ready, started) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("shared-host".into())
            .spawn(move || {
                let runtime =
                    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
                runtime.block_on(async move {
                    let limits = Limits {
                        close_timeout: Duration::from_secs(1),
                        handler_deadline: SHARED_HANDLER_DEADLINE,
                        ..Limits::default()
                    };
                    // A compile cache that outlives the run: the JavaScript and Python components take seconds each.
                    let cache = std::env::current_exe().unwrap().ancestors().nth(3).unwrap().join("test-compile-cache");
                    let (app, errors) = App::start(plugins.path(), Some(cache), limits).await.unwrap();
                    let errors: Vec<String> = errors.iter().map(|e| format!("{e:#}")).collect();
                    assert!(errors.is_empty(), "the shared host refused: {errors:#?}");
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    ready.send((listener.local_addr().unwrap(), app.clone())).unwrap();
                    let _keep = plugins;
                    wasmsock::http::serve(app, listener, None, std::future::pending::<()>()).await.unwrap();
                });
            })
            .unwrap();
        let (addr, app) = started
            .recv_timeout(SHARED_START)
            .expect("the shared host starts in time (see the panic above if it failed)");
        Self { addr, app }
    }

    pub fn url(&self, endpoint: &str) -> String {
        format!("ws://{}/websockets/service/{endpoint}", self.addr)
    }

    pub async fn connect(&self, endpoint: &str) -> Ws {
        connect(&self.url(endpoint)).await
    }
}

impl Endpoints for SharedHost {
    fn url(&self, endpoint: &str) -> String {
        SharedHost::url(self, endpoint)
    }
}

/// Everything logged (tracing, `info` and up, the host's guest output included) in this test process since the first
/// call to [`host_log`], as the `wasmsock` binary would print it without colours.
#[derive(Clone)]
pub struct HostLog(Arc<Mutex<Vec<u8>>>);

impl HostLog {
    /// The log so far.
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// Waits until a line of the log satisfies `matches` and returns it; panics after [`WAIT`].
    pub async fn line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let mut found = None;
        eventually(what, || {
            found = self.contents().lines().find(|l| matches(l)).map(str::to_owned);
            found.is_some()
        })
        .await;
        found.unwrap_or_default()
    }
}

impl std::io::Write for HostLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once per test process) a tracing subscriber that records the log into the returned [`HostLog`].
pub fn host_log() -> HostLog {
    static LOG: OnceLock<HostLog> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = HostLog(Arc::default());
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
    .clone()
}

/// One scrape of `/metrics`: every sample of the exposition, keyed by its name and its labels sorted by name
/// (`wasmsock_events_total{handler="examples/echo",method="onopen"}`).
#[derive(Debug, Clone, Default)]
pub struct Scrape(pub std::collections::BTreeMap<String, f64>);

impl Scrape {
    /// Fetches and parses `http://{admin}/metrics`.
    pub async fn fetch(admin: SocketAddr) -> Self {
        let response = tokio::time::timeout(WAIT, reqwest::get(format!("http://{admin}/metrics")))
            .await
            .expect("/metrics answers in time")
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(content_type.starts_with("application/openmetrics-text"), "{content_type}");
        Self::parse(&response.text().await.unwrap())
    }

    /// Parses the OpenMetrics text format: `# ` lines are metadata, the rest `name{label="value",…} value`, with
    /// `\\`, `\"` and `\n` escaped inside label values; it must end with `# EOF`.
    pub fn parse(text: &str) -> Self {
        assert_eq!(text.lines().last(), Some("# EOF"), "no # EOF at the end of:\n{text}");
        let mut samples = std::collections::BTreeMap::new();
        for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
            let (name, rest) = match line.find(['{', ' ']) {
                Some(at) => line.split_at(at),
                None => panic!("malformed sample {line:?}"),
            };
            let mut labels = Vec::new();
            let mut rest = rest;
            if let Some(mut body) = rest.strip_prefix('{') {
                loop {
                    if let Some(after) = body.strip_prefix('}') {
                        rest = after;
                        break;
                    }
                    body = body.trim_start_matches(',');
                    let (key, after) = body.split_once("=\"").unwrap_or_else(|| panic!("malformed labels in {line:?}"));
                    let mut value = String::new();
                    let mut chars = after.char_indices();
                    let end = loop {
                        match chars.next() {
                            Some((_, '\\')) => match chars.next() {
                                Some((_, 'n')) => value.push('\n'),
                                Some((_, c)) => value.push(c),
                                None => panic!("malformed escape in {line:?}"),
                            },
                            Some((at, '"')) => break at,
                            Some((_, c)) => value.push(c),
                            None => panic!("unterminated label value in {line:?}"),
                        }
                    };
                    labels.push((key.to_owned(), value));
                    body = &after[end + 1..];
                }
            }
            labels.sort();
            let value = rest.split_whitespace().next().unwrap_or_else(|| panic!("no value in {line:?}"));
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in {line:?}"));
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            let key = if labels.is_empty() { name.to_owned() } else { format!("{name}{{{}}}", labels.join(",")) };
            assert!(samples.insert(key.clone(), value).is_none(), "{key} twice");
        }
        Self(samples)
    }

    /// The value of sample `key` (0 if absent: a labelled counter appears at its first increment).
    pub fn get(&self, key: &str) -> f64 {
        self.0.get(key).copied().unwrap_or(0.0)
    }
}

/// A real `nats-server` on a free loopback port, killed when dropped. The binary is `$WASMSOCK_NATS_SERVER` (which
/// `cargo xtask test` sets, installing it when missing) or `nats-server` on the PATH; without one the cluster tests
/// are skipped with a loud message, except under CI, where they fail.
pub struct NatsServer {
    child: std::process::Child,
    pub port: u16,
    binary: PathBuf,
    /// JetStream's storage (the cluster's deploys), kept across a restart; the configuration file, when given one.
    store: tempfile::TempDir,
    /// The configuration file the server was started with (in `store`), if any.
    config: Option<PathBuf>,
}

impl NatsServer {
    /// Starts a server, or returns none (after saying why) when there is no binary outside CI.
    pub async fn start() -> Option<Self> {
        Self::start_configured(None).await
    }

    /// A server started with `config` (nats-server's configuration syntax: authorization, TLS, an operator…) written
    /// to a file; it listens on a free loopback port given on the command line, without JetStream unless `config`
    /// asks for it. None when there is no binary, as [`NatsServer::start`].
    pub async fn start_with_config(config: &str) -> Option<Self> {
        Self::start_configured(Some(config)).await
    }

    async fn start_configured(config: Option<&str>) -> Option<Self> {
        let binary = std::env::var_os("WASMSOCK_NATS_SERVER").map(PathBuf::from).or_else(|| {
            let found = std::process::Command::new("nats-server").arg("--version").output();
            found.ok().filter(|out| out.status.success()).map(|_| PathBuf::from("nats-server"))
        });
        let Some(binary) = binary else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but there is no nats-server: run the tests with `cargo xtask test` or set WASMSOCK_NATS_SERVER"
            );
            eprintln!("\n!!! no nats-server: the cluster tests are SKIPPED; `cargo xtask test` installs one !!!\n");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let store = tempfile::tempdir().unwrap();
        let config = config.map(|text| {
            let path = store.path().join("nats-server.conf");
            std::fs::write(&path, text).unwrap();
            path
        });
        let child = Self::spawn(&binary, port, store.path(), config.as_deref()).await;
        Some(Self { child, port, binary, store, config })
    }

    async fn spawn(binary: &Path, port: u16, store: &Path, config: Option<&Path>) -> std::process::Child {
        let mut command = std::process::Command::new(binary);
        command.args(["-a", "127.0.0.1", "-p", &port.to_string()]);
        match config {
            Some(config) => command.arg("-c").arg(config),
            None => command.args(["-js", "-sd"]).arg(store),
        };
        let child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|err| panic!("starting {}: {err}", binary.display()));
        let deadline = tokio::time::Instant::now() + WAIT;
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(tokio::time::Instant::now() < deadline, "nats-server did not listen on {port} in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        child
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts the server again on the same port with `config` instead of its configuration (started with one).
    pub async fn restart_with_config(&mut self, config: &str) {
        let path = self.config.as_ref().expect("a server started with a configuration");
        std::fs::write(path, config).unwrap();
        self.restart().await;
    }

    /// Starts the server again on the same port.
    pub async fn restart(&mut self) {
        self.kill();
        self.child = Self::spawn(&self.binary, self.port, self.store.path(), self.config.as_deref()).await;
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The headless Chromium and the `tests/browser` directory (its `node_modules` installed) for a browser test named
/// `test`; `None` (the test skips, loudly) where there is no Chromium at `$CHROMIUM` or `/usr/bin/chromium`, except
/// under CI, where that fails.
pub fn browser(test: &str) -> Option<(PathBuf, PathBuf)> {
    let chromium =
        std::env::var_os("CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if !chromium.is_file() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but there is no Chromium at {} ($CHROMIUM): `apt-get install -y chromium`",
            chromium.display()
        );
        eprintln!("\n!!! SKIPPED {test}: no {} !!!", chromium.display());
        eprintln!("!!! install it with `apt-get install -y chromium` (CI fails here instead of skipping)   !!!\n");
        return None;
    }
    let dir = repo_root().join("tests/browser");
    if !dir.join("node_modules/playwright-core").is_dir() {
        let status = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "npm ci in {} failed", dir.display());
    }
    Some((chromium, dir))
}
