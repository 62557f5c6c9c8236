//! The app: one host's rooms wired together (runtime, registry, hub, channels, metrics, kept instances) with its start, reload,
//! watch and drain. The dispatch of events to handlers is in `dispatch.rs`.

mod alarms;
mod dispatch;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use wasmsock_wire::history::{HistoryPage, Published, Recovery, StreamPosition};
use wasmsock_wire::{ClientOptions, Close, ConnError, Frame, Limits};

use crate::budget::Budget;
use crate::channels::Channels;
use crate::cluster::{Cluster, ClusterOptions, Local, Shared};
use crate::conn::{Conn, Hub};
use crate::control::metrics::Metrics;
use crate::control::registry::{DEFAULT_CACHE_DIR, Registry, Reload, fingerprint};
use crate::history::{Fanout, History};
use crate::runtime::{HistoryFuture, Instances, Runtime};
use crate::store::{DEFAULT_DATA_DIR, Store};

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
    pub metrics: Arc<Metrics>,
    /// Whether the browser console is served on the main listener.
    pub console: Console,
    /// Handler instances kept between events (`per-connection` and `shared` endpoints).
    pub instances: Instances,
    /// Channels of every project and their members.
    pub channels: Channels,
    /// Every project's key-value store and configuration.
    pub store: Store,
    /// The history of the channels of projects that keep one.
    pub history: History,
    /// This host's part in a cluster, once it has joined one (`serve --nats`).
    cluster: OnceLock<Arc<Cluster>>,
    /// What outbound `wss://` clients trust (the system's roots, plus `serve --ca-file`).
    outbound_tls: Arc<rustls::ClientConfig>,
    /// Handlers' outbound HTTP requests (`https` verified with `outbound_tls`).
    fetcher: crate::conn::fetch::Fetcher,
    me: Weak<App>,
}

/// Whether a host serves its browser console; off until [`Console::set`] turns it on (`wasmsock serve` does, per
/// its `--console` mode).
#[derive(Debug, Default)]
pub struct Console(AtomicBool);

impl Console {
    /// Turns the console on or off.
    pub fn set(&self, on: bool) {
        self.0.store(on, Ordering::Release);
    }

    /// Whether the console is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::Acquire)
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
        Self::start_with_tls(root, cache_dir, limits, crate::conn::tls::client_config(None)?).await
    }

    /// Like [`App::start`], with outbound `wss://` clients verifying servers with `outbound_tls` (see
    /// [`crate::conn::tls::client_config`]).
    pub async fn start_with_tls(
        root: &Path,
        cache_dir: Option<PathBuf>,
        limits: Limits,
        outbound_tls: Arc<rustls::ClientConfig>,
    ) -> anyhow::Result<(Arc<Self>, Vec<anyhow::Error>)> {
        let budget = Arc::new(Budget::new(&limits));
        let runtime = Arc::new(Runtime::new(&limits)?.with_budget(budget.clone()));
        let metrics = Arc::new(Metrics::new().with_budget(budget.clone()));
        runtime.observe(metrics.clone());
        let registry = Registry::new(root, cache_dir);
        let errors = registry.reload(&runtime).await.errors;
        let hub = Hub::with_budget(budget.clone());
        let scheduler = runtime.scheduler().clone();
        let quotas_of = scheduler.clone();
        let history = History::new(Arc::new(move |project: &str| quotas_of.quotas(project)));
        let store = Store::new(root.join(DEFAULT_DATA_DIR), Arc::new(move |project: &str| scheduler.quotas(project)));
        store.observe(metrics.clone());
        let app = Arc::new_cyclic(|me| App {
            runtime,
            registry,
            hub,
            channels: Channels::new(limits.max_channels_per_connection),
            fetcher: crate::conn::fetch::Fetcher::new(limits.http, outbound_tls.clone()),
            store,
            history,
            cluster: OnceLock::new(),
            limits,
            metrics,
            console: Console::default(),
            instances: Instances::default(),
            outbound_tls,
            me: me.clone(),
        });
        Ok((app, errors))
    }

    /// Joins a cluster: from now on this host's channels are listened to on the broker while they have members here,
    /// what is published here goes to the other hosts too, and handlers' keys and configuration are kept on the
    /// broker's JetStream KV (the store must not be open yet).
    pub async fn join_cluster(self: &Arc<Self>, options: ClusterOptions) -> anyhow::Result<Arc<Cluster>> {
        let local: Weak<dyn Local> = Arc::downgrade(self) as Weak<dyn Local>;
        let cluster = Cluster::start(options, local).await?;
        if !self.hub.set_host(cluster.host_id()) {
            anyhow::bail!("this host is in a cluster already");
        }
        // Handlers' data and configuration live on the broker, for every host: chosen before any handler runs.
        let nats = crate::store::Nats::start(cluster.client(), cluster.name()).await;
        self.store.use_backend(Arc::new(nats))?;
        // So does the history of channels, so that a member resumes on any host.
        self.history.use_broker(cluster.client(), cluster.name(), cluster.host_id())?;
        self.cluster.set(cluster.clone()).map_err(|_| anyhow::anyhow!("this host is in a cluster already"))?;
        if cluster.deploys().is_some() {
            // Catch up before serving: whatever the cluster serves, this host serves too.
            self.follow_deploys(&cluster).await?;
        } else {
            // The broker is not there yet: serve what this host has, and catch up once the store opens.
            let (app, cluster) = (Arc::downgrade(self), cluster.clone());
            tokio::spawn(async move {
                cluster.deploys_when_open().await;
                let Some(app) = app.upgrade() else { return };
                if let Err(err) = app.follow_deploys(&cluster).await {
                    tracing::error!("cannot follow the cluster's deploys: {err:#}");
                }
            });
        }
        for (project, channel) in self.channels.watch(cluster.clone())? {
            crate::channels::ChannelWatch::opened(cluster.as_ref(), &project, &channel);
        }
        Ok(cluster)
    }

    /// Applies every deploy in the cluster's store, then each one shared from now on (in a task of its own).
    async fn follow_deploys(self: &Arc<Self>, cluster: &Cluster) -> anyhow::Result<()> {
        let Some(deploys) = cluster.deploys() else { return Ok(()) };
        let (changes, mut incoming) = tokio::sync::mpsc::unbounded_channel();
        let now = deploys.catch_up_and_follow(changes).await?;
        tracing::info!(deploys = now.len(), "caught up with the cluster's deploys");
        for change in now {
            self.apply_shared(change).await;
        }
        let app = Arc::downgrade(self);
        tokio::spawn(async move {
            while let Some(change) = incoming.recv().await {
                let Some(app) = app.upgrade() else { return };
                app.apply_shared(change).await;
            }
        });
        Ok(())
    }

    /// Applies a deploy another host shared (or this one, coming back), unless this host serves exactly that already.
    /// A refusal is logged and counted; the host keeps what it had.
    async fn apply_shared(&self, change: Shared) {
        let what = change.describe();
        let (kind, result) = match change {
            Shared::Handler { name, bytes } => {
                let version = crate::control::registry::content_version(&bytes);
                if self.registry.handlers().iter().any(|h| h.handler.name() == name && h.version == version) {
                    return;
                }
                ("handler", self.registry.deploy_handler(&self.runtime, &name, bytes).await.map(|_| ()))
            }
            Shared::Descriptor { endpoint, text } => {
                let current =
                    self.registry.endpoint(&endpoint).and_then(|e| std::fs::read_to_string(&e.descriptor).ok());
                if current.as_deref() == Some(text.as_str()) {
                    return;
                }
                ("descriptor", self.registry.deploy_descriptor(&self.runtime, &text).await.map(|_| ()))
            }
            Shared::HandlerRemoved { name } => {
                if !self.registry.handlers().iter().any(|h| h.handler.name() == name) {
                    return;
                }
                ("handler", self.registry.remove_handler(&name).await)
            }
            Shared::EndpointRemoved { endpoint } => {
                if self.registry.endpoint(&endpoint).is_none() {
                    return;
                }
                let removed = self.registry.remove_endpoint(&endpoint).await.map(|_| ());
                if removed.is_ok() {
                    self.close_endpoint_sessions(&endpoint);
                }
                ("descriptor", removed)
            }
        };
        self.metrics.cluster_deploy(kind, result.is_ok());
        match result {
            Ok(()) => tracing::info!("applied the cluster's deploy of {what}"),
            Err(err) => tracing::error!("refused the cluster's deploy of {what}: {err:#}"),
        }
    }

    /// Shares a deploy this host accepted with the other hosts of its cluster; what to tell the operator: none
    /// without a cluster, else whether it was shared.
    pub async fn share(&self, change: Shared) -> Option<String> {
        let deploys = self.cluster.get()?.deploys()?;
        Some(match deploys.share(&change).await {
            Ok(()) => "shared with the cluster".to_owned(),
            Err(err) => {
                tracing::error!("{} was deployed here but not shared with the cluster: {err:#}", change.describe());
                format!("deployed on this host only: the cluster's store refused it: {err:#}")
            }
        })
    }

    /// The cluster this host is in, if any.
    pub fn cluster(&self) -> Option<&Arc<Cluster>> {
        self.cluster.get()
    }

    /// Publishes `frame` to `channel` of `project`: queued on this host's members at once (except the connection with
    /// the id `skip`), and sent to the other hosts of the cluster, if there is one. Returns how many of this host's
    /// connections it was queued for.
    pub fn publish(&self, project: &str, channel: &str, frame: &Frame, skip: Option<&str>) -> Result<u32, ConnError> {
        Ok(self.publish_with(project, channel, frame, skip)?.queued)
    }

    /// [`App::publish`], answering the publication's position in the channel's history (when the project keeps one).
    pub fn publish_with(
        &self,
        project: &str,
        channel: &str,
        frame: &Frame,
        skip: Option<&str>,
    ) -> Result<Published, ConnError> {
        if self.history.on_broker(project) {
            // Kept and delivered (here too) by the broker's history; the position comes later, if asked for
            // (`publish_positioned`).
            self.history.publish_shared(project, channel, frame, skip, false)?;
            self.metrics.published(project, 0);
            return Ok(Published { queued: self.channels.count(project, channel), position: None });
        }
        let published = self.history.publish(self.fanout(), project, channel, frame, skip)?;
        if let Some(cluster) = self.cluster.get()
            && !cluster.publish(project, channel, frame)
        {
            self.metrics.broker_dropped();
            tracing::warn!(project, channel, "the broker queue is full: this message reaches this host's members only");
        }
        Ok(published)
    }

    /// [`App::publish_with`], answering once the publication is kept: in the journal on a host alone, on the broker
    /// in a cluster (so that an acknowledged publication survives the host being killed).
    pub fn publish_positioned(
        &self,
        project: &str,
        channel: &str,
        frame: &Frame,
        skip: Option<&str>,
    ) -> HistoryFuture<Published> {
        if self.history.on_broker(project) {
            let queued = self.channels.count(project, channel);
            let answered = self.history.publish_shared(project, channel, frame, skip, true);
            if answered.is_ok() {
                self.metrics.published(project, 0);
            }
            return Box::pin(async move {
                let Some(answered) = answered? else { return Err(ConnError::Closed) };
                let position = answered.await.map_err(|_| ConnError::Closed)??;
                Ok(Published { queued, position: Some(position) })
            });
        }
        let published = self.publish_with(project, channel, frame, skip);
        let committed = published.as_ref().is_ok_and(|p| p.position.is_some()).then(|| self.history.committed());
        Box::pin(async move {
            if let Some(committed) = committed {
                committed.await;
            }
            published
        })
    }

    /// One page of the history of `channel` of `project` (see [`History::read`]), from the broker in a cluster.
    pub fn read_history(
        &self,
        project: &str,
        channel: &str,
        since: Option<StreamPosition>,
        limit: u32,
    ) -> HistoryFuture<HistoryPage> {
        let app = match self.me.upgrade() {
            Some(app) if self.history.on_broker(project) => app,
            _ => return Box::pin(std::future::ready(self.history.read(project, channel, since.as_ref(), limit))),
        };
        let (project, channel) = (project.to_owned(), channel.to_owned());
        Box::pin(async move { app.history.read_shared(&project, &channel, since.as_ref(), limit).await })
    }

    /// Adds the connection `conn` to `channel` of `project` after sending it what followed `since` in the channel's
    /// history (see [`History::join_from`]); in a cluster from the broker, once this host listens to the channel.
    pub fn join_from(
        &self,
        project: &str,
        conn: &str,
        channel: &str,
        since: Option<StreamPosition>,
        envelope: bool,
    ) -> HistoryFuture<Recovery> {
        let Some(conn) = self.hub.get(conn) else { return Box::pin(std::future::ready(Err(ConnError::Closed))) };
        // Before anything is listened to on the broker for it.
        if let Err(err) = wasmsock_wire::channel::check_channel(channel) {
            return Box::pin(std::future::ready(Err(ConnError::Invalid(err))));
        }
        let shared = match (self.me.upgrade(), self.cluster.get()) {
            (Some(app), Some(cluster)) if self.history.on_broker(project) => Some((app, cluster.clone())),
            _ => None,
        };
        let Some((app, cluster)) = shared else {
            let joined = self.history.join_from(self.fanout(), project, &conn, channel, since.as_ref(), envelope);
            return Box::pin(std::future::ready(joined));
        };
        let (project, channel) = (project.to_owned(), channel.to_owned());
        Box::pin(async move {
            // Held until the join ends: a join that fails leaves nothing listened to for it.
            let _listening = cluster.listening(&project, &channel).await?;
            app.history.join_from_shared(app.fanout(), &project, &conn, &channel, since.as_ref(), envelope).await
        })
    }

    /// This host's channels and metrics, as history fans publications out on them.
    pub fn fanout(&self) -> Fanout<'_> {
        Fanout { channels: &self.channels, metrics: &self.metrics }
    }

    /// Whether the host is draining for shutdown (new connections are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.hub.is_shutting_down()
    }

    /// How many sessions are running, including ones whose connection ended but whose onclose is still running.
    pub fn sessions(&self) -> usize {
        self.hub.running()
    }

    /// Starts an outbound client to `uri` for `handler`, which must be deployed; returns at once with the client
    /// connecting. What handlers, the admin API and `serve --connect` all go through.
    pub fn create_client(&self, uri: &str, handler: &str, options: ClientOptions) -> Result<Arc<Conn>, ConnError> {
        let app = self.me.upgrade().ok_or(ConnError::Closed)?;
        self.registry.check_handler(handler).map_err(|err| ConnError::Invalid(format!("{err:#}")))?;
        crate::conn::client::create(&app, uri, handler, options)
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
        self.hub.begin_shutdown();
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

impl Local for App {
    fn deliver(&self, project: &str, channel: &str, frame: &Frame) {
        match self.channels.fan_out(project, channel, frame, None) {
            Ok(queued) => self.metrics.delivered(project, u64::from(queued)),
            Err(err) => tracing::warn!(project, channel, "a message from another host was not delivered: {err}"),
        }
    }

    fn deliver_at<'a>(
        &'a self,
        project: &'a str,
        channel: &'a str,
        frame: Frame,
        position: StreamPosition,
        skip: Option<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let queued =
                self.history.deliver_shared(self.fanout(), project, channel, &frame, position, skip.as_deref()).await;
            self.metrics.delivered(project, u64::from(queued));
        })
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn counts(&self) -> (usize, usize) {
        (self.hub.len(), self.channels.len())
    }

    fn clients(&self, project: &str) -> Vec<wasmsock_wire::ClientInfo> {
        crate::runtime::HostServices::connections(self, project)
    }

    fn lookup(&self, project: &str, id: &str) -> Option<(wasmsock_wire::ClientInfo, Option<Vec<u8>>)> {
        let conn = self.hub.get(id).filter(|conn| wasmsock_wire::descriptor::project_of(conn.handler()) == project)?;
        Some((conn.info(), conn.attachment().map(|data| data.to_vec())))
    }

    fn client_by_handler(&self, project: &str, handler: &str) -> Option<(wasmsock_wire::ClientInfo, Option<Vec<u8>>)> {
        if wasmsock_wire::descriptor::project_of(handler) != project {
            return None;
        }
        let conn = self.hub.by_handler(handler)?;
        Some((conn.info(), conn.attachment().map(|data| data.to_vec())))
    }

    fn members(
        &self,
        project: &str,
        channel: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<wasmsock_wire::channel::MembersPage, ConnError> {
        self.channels.members(project, channel, after, limit)
    }

    fn send_to(&self, project: &str, id: &str, frame: Frame) -> Result<(), ConnError> {
        let conn = self.hub.get(id).filter(|conn| wasmsock_wire::descriptor::project_of(conn.handler()) == project);
        conn.ok_or_else(|| ConnError::UnknownClient(id.to_owned()))?.send(frame)
    }

    fn close_of(&self, project: &str, id: &str, code: Option<u16>, reason: Option<String>) -> Result<(), ConnError> {
        let conn = self.hub.get(id).filter(|conn| wasmsock_wire::descriptor::project_of(conn.handler()) == project);
        conn.ok_or_else(|| ConnError::UnknownClient(id.to_owned()))?.close(code, reason)
    }
}
