//! The host's shared state: runtime, registry and connections, and the dispatch of events to handlers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use crate::client::ClientOptions;
use crate::event::{Event, EventKind, Method};
use crate::frame::{Close, MAX_CLOSE_REASON};
use crate::hub::{ClientInfo, Conn, ConnError, Hub};
use crate::lifecycle::Instances;
use crate::limits::Limits;
use crate::registry::{DEFAULT_CACHE_DIR, Registry, Reload, fingerprint};
use crate::runtime::{CallError, HostServices, Runtime};

/// Everything one host shares between its connections.
#[derive(Debug)]
pub struct App {
    /// The WebAssembly runtime.
    pub runtime: Arc<Runtime>,
    /// Endpoints and handlers.
    pub registry: Registry,
    /// Live connections.
    pub hub: Hub,
    /// The limits in force.
    pub limits: Limits,
    /// The host's metrics (`/metrics` on the admin listener).
    pub metrics: crate::metrics::Metrics,
    /// Whether the browser console is served on the main listener.
    pub console: crate::console::Console,
    /// Handler instances kept between events (`per-connection` and `shared` endpoints).
    pub instances: Instances,
    shutting_down: AtomicBool,
    sessions: AtomicUsize,
    me: Weak<App>,
}

/// Counts a running session until dropped (after its onclose), so shutdown can wait for every one.
#[derive(Debug)]
pub struct SessionGuard(Arc<App>);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.0.sessions.fetch_sub(1, Ordering::AcqRel);
    }
}

impl App {
    /// Starts a runtime with `limits` and loads the plugins under `root`, caching compiled components in
    /// `root/.wasmsock-cache`. Returns the app and one error per descriptor or component that could not be loaded
    /// (those are left out; the rest is served).
    pub async fn load(root: &Path, limits: Limits) -> anyhow::Result<(Arc<Self>, Vec<anyhow::Error>)> {
        Self::start(root, Some(root.join(DEFAULT_CACHE_DIR)), limits).await
    }

    /// Like [`App::load`], with the compile cache in `cache_dir` (none: no cache).
    pub async fn start(
        root: &Path,
        cache_dir: Option<PathBuf>,
        limits: Limits,
    ) -> anyhow::Result<(Arc<Self>, Vec<anyhow::Error>)> {
        let runtime = Arc::new(Runtime::new(&limits)?);
        let registry = Registry::new(root, cache_dir);
        let errors = registry.reload(&runtime).await.errors;
        let hub = Hub::new();
        let app = Arc::new_cyclic(|me| App {
            runtime,
            registry,
            hub,
            limits,
            metrics: crate::metrics::Metrics::new(),
            console: crate::console::Console::default(),
            instances: Instances::default(),
            shutting_down: AtomicBool::new(false),
            sessions: AtomicUsize::new(0),
            me: me.clone(),
        });
        Ok((app, errors))
    }

    /// Whether the host is draining for shutdown (new connections are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Marks a session (inbound or outbound) as running until the guard is dropped.
    pub fn track(self: &Arc<Self>) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::AcqRel);
        SessionGuard(self.clone())
    }

    /// How many sessions are running, including ones whose connection ended but whose onclose is still running.
    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Acquire)
    }

    /// Runs one event of `conn` through its handler. A failed onopen or onmessage is followed by an onerror that says
    /// why; every failure is logged with the handler and connection, and costs only this event. When the handler has
    /// failed `max-handler-failures` calls in a row on this connection, the connection is closed with 1011.
    pub async fn dispatch(&self, conn: &Arc<Conn>, kind: EventKind) {
        let method = kind.method();
        let Some(services) = self.services() else {
            return;
        };
        let loaded = match self.registry.handler(&self.runtime, conn.handler()).await {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::error!(conn = conn.id(), handler = conn.handler(), method = method.as_str(), "{err:#}");
                return;
            }
        };
        // Outbound clients have no endpoint: their events run per event.
        let lifecycle = conn.endpoint().and_then(|name| self.registry.endpoint(name)).map(|e| e.instance);
        let lifecycle = lifecycle.unwrap_or_default();
        let started = Instant::now();
        let event = Event { conn: conn.clone(), kind };
        let span = tracing::info_span!("event", method = method.as_str());
        let call = self.instances.call(&self.runtime, lifecycle, &loaded.handler, event, services.clone());
        let result = tracing::Instrument::instrument(call, span).await;
        self.metrics.event_handled(conn.handler(), method, started.elapsed(), result.as_ref().err());
        tracing::trace!(conn = conn.id(), method = method.as_str(), elapsed = ?started.elapsed(), "event handled");
        if method == Method::OnClose {
            self.instances.forget_connection(conn.id());
        }
        let Err(err) = result else {
            conn.count_success();
            return;
        };
        tracing::warn!(conn = conn.id(), handler = conn.handler(), method = method.as_str(), "{err}");
        if matches!(err, CallError::NoResidentSlot { .. }) {
            // No instance can take this connection's events: tell the peer to come back later.
            let _ = conn.request_close(Close::new(1013, "no handler instance free; try again later"));
            return;
        }
        if method != Method::OnClose {
            self.count_failure(conn, &err.to_string());
        }
        if matches!(method, Method::OnOpen | Method::OnMessage) {
            let event = Event { conn: conn.clone(), kind: EventKind::Error(err.to_string()) };
            let started = Instant::now();
            let span = tracing::info_span!("event", method = "onerror");
            let call = self.instances.call(&self.runtime, lifecycle, &loaded.handler, event, services);
            let result = tracing::Instrument::instrument(call, span).await;
            self.metrics.event_handled(conn.handler(), Method::OnError, started.elapsed(), result.as_ref().err());
            if let Err(err) = result {
                tracing::warn!(conn = conn.id(), handler = conn.handler(), method = "onerror", "{err}");
            }
        }
    }

    /// Counts a failed call on `conn`; the last one allowed in a row closes the connection with 1011.
    fn count_failure(&self, conn: &Arc<Conn>, error: &str) {
        let in_a_row = conn.count_failure();
        let max = conn.limits().max_handler_failures;
        if in_a_row != max {
            return;
        }
        let reason = truncate(&format!("handler failed {max} events in a row: {error}"), MAX_CLOSE_REASON);
        if conn.request_close(Close::new(1011, reason)).is_ok() {
            tracing::warn!(
                conn = conn.id(),
                handler = conn.handler(),
                "closing with 1011: the handler failed {max} events in a row"
            );
            if let Some(endpoint) = conn.endpoint() {
                self.hub.count_failure_close(endpoint);
            }
        }
    }

    fn services(&self) -> Option<Arc<dyn HostServices>> {
        self.me.upgrade().map(|app| app as Arc<dyn HostServices>)
    }

    /// Reads the plugins root again and applies what changed; sessions of removed endpoints are closed with 1001.
    pub async fn reload(&self) -> Reload {
        let report = self.registry.reload(&self.runtime).await;
        self.metrics.reloaded(&report);
        for endpoint in &report.removed {
            self.close_endpoint_sessions(endpoint);
        }
        for err in &report.errors {
            tracing::error!("{err:#}");
        }
        if !(report.removed.is_empty() && report.changed.is_empty() && report.swapped.is_empty()) {
            tracing::info!(changed = ?report.changed, removed = ?report.removed, swapped = ?report.swapped, "reloaded");
        }
        report
    }

    /// Closes every session of `endpoint` with 1001: the endpoint was removed.
    pub fn close_endpoint_sessions(&self, endpoint: &str) {
        for conn in self.hub.all() {
            if conn.endpoint() == Some(endpoint) {
                let _ = conn.request_close(Close::new(1001, format!("endpoint {endpoint} was removed")));
            }
        }
    }

    /// Watches the plugins root and reloads when its descriptors or components change. A change is applied once the
    /// files have stayed the same for one more `interval`, so a file still being written is not loaded.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let app = Arc::downgrade(self);
        let root = self.registry.root().to_path_buf();
        tokio::spawn(async move {
            let mut applied = fingerprint(&root);
            let mut pending = applied.clone();
            loop {
                tokio::time::sleep(interval).await;
                let Some(app) = app.upgrade() else { return };
                if app.is_shutting_down() {
                    return;
                }
                let seen = {
                    let root = root.clone();
                    tokio::task::spawn_blocking(move || fingerprint(&root)).await.unwrap_or_default()
                };
                if seen != pending {
                    pending = seen; // Still changing: wait for it to settle.
                } else if seen != applied {
                    app.reload().await;
                    applied = seen;
                }
            }
        })
    }

    /// Stops accepting connections, sends 1001 to every live connection and waits (up to the shutdown grace) until
    /// every one has ended and its handler has seen onclose.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let conns = self.hub.all();
        tracing::info!(connections = conns.len(), "shutting down");
        for conn in &conns {
            let _ = conn.request_close(Close::new(1001, "host shutting down"));
        }
        let deadline = Instant::now() + self.limits.shutdown_grace;
        while self.sessions() > 0 && Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if self.sessions() > 0 {
            tracing::warn!(sessions = self.sessions(), "shutdown grace ran out with sessions still running");
        }
    }
}

impl HostServices for App {
    fn connection(&self, id: &str) -> Option<Arc<Conn>> {
        self.hub.get(id)
    }

    fn connections(&self) -> Vec<ClientInfo> {
        self.hub.list()
    }

    fn client_by_handler(&self, handler: &str) -> Option<Arc<Conn>> {
        self.hub.by_handler(handler)
    }

    fn create_websocket(&self, uri: &str, handler: &str, options: ClientOptions) -> Result<Arc<Conn>, ConnError> {
        let app = self.me.upgrade().ok_or(ConnError::Closed)?;
        crate::client::create(&app, uri, handler, options)
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}
