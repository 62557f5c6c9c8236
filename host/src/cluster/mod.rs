//! The cluster: hosts that share one NATS broker (`serve --nats URL`) act as one for channels. A publish on any host is
//! delivered to the members on that host at once and sent to the broker on the channel's subject; every other host
//! that has members in that channel listens to the subject (only while it has members there) and delivers it to them.
//! Core NATS is at-most-once and keeps the order of one connection's messages per subject, so a member anywhere gets
//! each message at most once, and one host's publishes in the order they were made. Without `--nats` none of this
//! runs: a single host is the embedded default.

mod broker;
mod deploys;
mod remote;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use wasmsock_wire::channel::MembersPage;
use wasmsock_wire::cluster::{
    EPOCH_HEADER, KIND_HEADER, OFFSET_HEADER, SKIP_HEADER, channel_subject, check_token, heartbeat_subject,
};
use wasmsock_wire::history::StreamPosition;
use wasmsock_wire::{Bytes, ClientInfo, ConnError, Frame, Utf8Bytes};

pub use broker::{BrokerAuth, BrokerState, DEFAULT_BROKER_RETRY, DEFAULT_BROKER_RETRY_MAX, Secret};
pub use deploys::{Deploys, Shared};

use crate::channels::ChannelWatch;
use crate::control::metrics::Metrics;

/// Channel messages waiting to be handed to the broker; past it a publish still reaches this host's members, but not
/// the other hosts' (counted in `wasmsock_broker_messages_dropped_total`). About a second of a busy host's publishes,
/// so a broker that is briefly slow costs nothing and one that is gone costs bounded memory.
pub const DEFAULT_BROKER_QUEUE: usize = 65_536;

/// How long a starting host waits for its broker before it serves without the cluster's deploys (it catches up
/// when the broker comes).
pub const DEFAULT_BROKER_WAIT_AT_START: Duration = Duration::from_secs(2);

/// How often a host that could not open the cluster's store of deploys (its broker was down, or has no JetStream)
/// tries again.
pub const DEFAULT_DEPLOYS_RETRY: Duration = Duration::from_secs(2);

/// How often a host tells the others it is alive, with its connection and channel counts.
pub const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A host not heard from for this long is taken out of the cluster listing (three missed heartbeats).
pub const DEFAULT_PEER_TIMEOUT: Duration = Duration::from_secs(3);

/// The headers naming the project and connection a message sent to one connection on another host is for.
const PROJECT_HEADER: &str = "Wasmsock-Project";
const CONN_HEADER: &str = "Wasmsock-Conn";

/// A message for the broker: to a channel's subject, or to one connection on another host (`to`: project and id).
#[derive(Debug)]
struct Outgoing {
    subject: String,
    to: Option<(String, String)>,
    frame: Frame,
}

/// The header naming the host a message came from (for logs and for reading the traffic on the broker).
const HOST_HEADER: &str = "Wasmsock-Host";

/// What the cluster needs from the host it runs in: its members, to deliver messages from other hosts, and its
/// metrics.
pub trait Local: Send + Sync + 'static {
    /// Queues a message from another host on this host's members of `channel` of `project`.
    fn deliver(&self, project: &str, channel: &str, frame: &Frame);
    /// Delivers a publication kept in the cluster's history at `position` (republished by the broker's JetStream) to
    /// this host's members of `channel` of `project`; the next message of the channel waits for it.
    fn deliver_at<'a>(
        &'a self,
        project: &'a str,
        channel: &'a str,
        frame: Frame,
        position: StreamPosition,
        skip: Option<String>,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>>;
    /// The host's metrics.
    fn metrics(&self) -> &Metrics;
    /// How many connections and channels this host has now (for its heartbeat).
    fn counts(&self) -> (usize, usize);
    /// Every live connection of `project` on this host, oldest first (for another host's `get-clients`).
    fn clients(&self, project: &str) -> Vec<ClientInfo>;
    /// The live connection `id` of `project` on this host, with its attachment (for another host's `get-client`).
    fn lookup(&self, project: &str, id: &str) -> Option<(ClientInfo, Option<Vec<u8>>)>;
    /// The oldest live outbound client of `handler` (in `project`) on this host, with its attachment (for another
    /// host's `get-client-by-handler`).
    fn client_by_handler(&self, project: &str, handler: &str) -> Option<(ClientInfo, Option<Vec<u8>>)>;
    /// One page of this host's members of `channel` of `project` (for another host's `get-members`).
    fn members(&self, project: &str, channel: &str, after: Option<&str>, limit: u32) -> Result<MembersPage, ConnError>;
    /// Queues `frame` on this host's connection `id` of `project` (another host's handler sent it).
    fn send_to(&self, project: &str, id: &str, frame: Frame) -> Result<(), ConnError>;
    /// Closes this host's connection `id` of `project` (another host's handler asked).
    fn close_of(&self, project: &str, id: &str, code: Option<u16>, reason: Option<String>) -> Result<(), ConnError>;
}

/// What a host says of itself in each heartbeat, and what the cluster listing shows of each host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    /// The host's id.
    pub host: String,
    /// Its live connections.
    pub connections: usize,
    /// Its channels with at least one member.
    pub channels: usize,
    /// Milliseconds since its last heartbeat arrived (0 for this host itself).
    #[serde(default)]
    pub last_heartbeat_ms: u64,
}

/// The cluster as this host sees it (`GET /admin/v1/cluster`, `wasmsock cluster`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClusterStatus {
    /// The cluster's name.
    pub cluster: String,
    /// This host's id.
    pub host: String,
    /// The broker's URL, without its password.
    pub broker: String,
    /// Whether the broker connection is up.
    pub broker_connected: bool,
    /// Why the broker cannot be joined (`refused this host: authorization violation`, `TLS failed: …`, `is
    /// unreachable: …`), while it is not connected and once this host found out.
    pub broker_error: Option<String>,
    /// This host and every other host heard from within [`DEFAULT_PEER_TIMEOUT`], by id.
    pub hosts: Vec<HostStatus>,
}

/// How a host joins a cluster.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// The NATS server, `nats://HOST:PORT` (or `tls://`, credentials allowed, several separated by commas).
    pub url: String,
    /// How this host signs in to the broker and checks it.
    pub auth: BrokerAuth,
    /// The name the hosts of one cluster share, so several clusters can use one broker.
    pub name: String,
    /// This host's id in the cluster.
    pub host_id: String,
}

/// Opening and closing of this host's channels, in order, for the task that subscribes and unsubscribes.
#[derive(Debug)]
enum Change {
    Opened(String, String),
    Closed(String, String),
    /// Listen to the channel now if this host does not yet, and answer once the broker has the subscription: a join
    /// from a position (its ticket) begins; the channel is listened to until that join ends ([`Change::Joined`]).
    Listen(String, String, u64, tokio::sync::oneshot::Sender<Result<(), ConnError>>),
    /// The join from a position with this ticket ended, with its member added or not (or it never listened).
    Joined(String, String, u64),
}

/// A join from a position between listening to its channel and its end (see [`Cluster::listening`]). Dropping it
/// tells the listening task, which stops listening to the channel when neither a member on this host nor another
/// such join needs it: a join that fails after listening (over the connection's channel cap, the connection gone, the
/// broker's history unreachable) leaves no subscription behind.
#[derive(Debug)]
pub struct Listening {
    changes: mpsc::UnboundedSender<Change>,
    project: String,
    channel: String,
    ticket: u64,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let (project, channel) = (std::mem::take(&mut self.project), std::mem::take(&mut self.channel));
        let _ = self.changes.send(Change::Joined(project, channel, self.ticket));
    }
}

/// This host's part in a cluster.
#[derive(Debug)]
pub struct Cluster {
    options: ClusterOptions,
    changes: mpsc::UnboundedSender<Change>,
    outgoing: mpsc::Sender<Outgoing>,
    client: async_nats::Client,
    broker: Arc<BrokerState>,
    peers: Arc<Mutex<HashMap<String, (HostStatus, Instant)>>>,
    local: Weak<dyn Local>,
    deploys: std::sync::OnceLock<Deploys>,
    /// Numbers the joins from a position (see [`Listening`]).
    tickets: std::sync::atomic::AtomicU64,
}

impl Cluster {
    /// Connects to the broker (in the background: a host whose broker is not up yet still starts, and joins when it
    /// comes) and starts the tasks that listen to channels and send publishes.
    pub async fn start(options: ClusterOptions, local: Weak<dyn Local>) -> anyhow::Result<Arc<Self>> {
        check_token("cluster name", &options.name).map_err(anyhow::Error::msg).context("--cluster-name")?;
        check_token("host id", &options.host_id).map_err(anyhow::Error::msg).context("--host-id")?;
        let shown = wasmsock_wire::cluster::redacted(&options.url);
        let broker::Broker { addrs, options: signed_in } =
            broker::Broker::new(&options.url, &options.auth, format!("wasmsock host {}", options.host_id)).await?;
        // This host delivers its own publishes itself, at once; the broker need not send them back.
        let signed_in = signed_in.no_echo();
        let state = Arc::new(BrokerState::default());
        let events = {
            let (local, state, shown) = (local.clone(), state.clone(), shown.clone());
            let (diagnosis, addrs) = (signed_in.clone(), addrs.clone());
            move |event: async_nats::Event| {
                let (local, state, shown) = (local.clone(), state.clone(), shown.clone());
                let (diagnosis, addrs) = (diagnosis.clone(), addrs.clone());
                async move { on_event(&event, &local, &state, &shown, diagnosis, addrs) }
            }
        };
        let client = signed_in
            .retry_on_initial_connect()
            .reconnect_delay_callback(broker::retry_delay)
            .event_callback(events)
            .connect(addrs)
            .await
            .with_context(|| format!("--nats {shown}: not a broker address"))?;
        let (changes, changes_rx) = mpsc::unbounded_channel();
        let (outgoing, outgoing_rx) = mpsc::channel(DEFAULT_BROKER_QUEUE);
        tokio::spawn(listen(client.clone(), options.name.clone(), changes_rx, local.clone()));
        tokio::spawn(send(client.clone(), options.host_id.clone(), outgoing_rx, local.clone()));
        let requests = client
            .subscribe(wasmsock_wire::cluster::host_subject(&options.name, &options.host_id, "*"))
            .await
            .context("listening for requests from other hosts")?;
        tokio::spawn(remote::serve(client.clone(), requests, local.clone()));
        let peers = Arc::new(Mutex::new(HashMap::new()));
        let heartbeats = client
            .subscribe(heartbeat_subject(&options.name))
            .await
            .context("listening to the cluster's heartbeats")?;
        let newcomer = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(hear(heartbeats, peers.clone(), options.host_id.clone(), newcomer.clone()));
        tokio::spawn(beat(client.clone(), options.clone(), local.clone(), newcomer));
        // Catching up with the cluster's deploys before serving needs the broker: wait for it a little, and when it
        // is not there, serve now and catch up when it comes (a host starts whether its broker is up or not).
        let deploys = std::sync::OnceLock::new();
        let waited = tokio::time::timeout(DEFAULT_BROKER_WAIT_AT_START, async {
            while client.connection_state() != async_nats::connection::State::Connected {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        if waited.await.is_err() {
            tracing::warn!(
                "the broker is not connected after {DEFAULT_BROKER_WAIT_AT_START:?}: serving without the cluster's \
                 deploys until it is"
            );
        } else {
            match Deploys::open(client.clone(), &options.name).await {
                Ok(opened) => {
                    let _ = deploys.set(opened);
                }
                Err(err) => tracing::warn!("deploys are not shared with the cluster yet (retrying): {err:#}"),
            }
        }
        let broker = wasmsock_wire::cluster::redacted(&options.url);
        tracing::info!(host = %options.host_id, cluster = %options.name, %broker, "joining the cluster");
        let tickets = std::sync::atomic::AtomicU64::new(0);
        Ok(Arc::new(Self { options, changes, outgoing, client, broker: state, peers, local, deploys, tickets }))
    }

    /// The cluster's store of deploys; none while it could not be opened (the broker is down, or has no JetStream).
    pub fn deploys(&self) -> Option<&Deploys> {
        self.deploys.get()
    }

    /// The cluster's store of deploys, opened now if it was not at start: tried every [`DEFAULT_DEPLOYS_RETRY`] until
    /// the broker lets it open (so a host started while its broker was down still joins the cluster's deploys).
    pub async fn deploys_when_open(&self) -> &Deploys {
        loop {
            if let Some(deploys) = self.deploys.get() {
                return deploys;
            }
            tokio::time::sleep(DEFAULT_DEPLOYS_RETRY).await;
            match Deploys::open(self.client.clone(), &self.options.name).await {
                Ok(opened) => {
                    if self.deploys.set(opened).is_ok() {
                        tracing::info!("the cluster's deploys are shared with this host now");
                    }
                }
                Err(err) => tracing::debug!("the cluster's deploys still cannot be opened: {err:#}"),
            }
        }
    }

    /// This host and the hosts heard from lately, by id.
    pub fn status(&self) -> ClusterStatus {
        let (connections, channels) = self.local.upgrade().map(|local| local.counts()).unwrap_or_default();
        let me = HostStatus { host: self.options.host_id.clone(), connections, channels, last_heartbeat_ms: 0 };
        let mut hosts = vec![me];
        if let Ok(mut peers) = self.peers.lock() {
            peers.retain(|_, (_, heard)| heard.elapsed() < DEFAULT_PEER_TIMEOUT);
            hosts.extend(peers.values().map(|(status, heard)| HostStatus {
                last_heartbeat_ms: u64::try_from(heard.elapsed().as_millis()).unwrap_or(u64::MAX),
                ..status.clone()
            }));
        }
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        ClusterStatus {
            cluster: self.options.name.clone(),
            host: self.options.host_id.clone(),
            broker: wasmsock_wire::cluster::redacted(&self.options.url),
            broker_connected: self.is_connected(),
            broker_error: self.broker_failure(),
            hosts,
        }
    }

    /// This host's id in the cluster.
    pub fn host_id(&self) -> &str {
        &self.options.host_id
    }

    /// The broker's URL as given (with its credentials: redact it before showing it).
    pub fn url(&self) -> &str {
        &self.options.url
    }

    /// The cluster's name.
    pub fn name(&self) -> &str {
        &self.options.name
    }

    /// The broker connection (connected or still trying), for the rooms that keep data on the broker (the store).
    pub fn client(&self) -> async_nats::Client {
        self.client.clone()
    }

    /// Whether `host` is this host or one heard from within [`DEFAULT_PEER_TIMEOUT`].
    pub fn is_alive(&self, host: &str) -> bool {
        host == self.options.host_id
            || self
                .peers
                .lock()
                .is_ok_and(|peers| peers.get(host).is_some_and(|(_, heard)| heard.elapsed() < DEFAULT_PEER_TIMEOUT))
    }

    /// Whether the broker connection is up now.
    pub fn is_connected(&self) -> bool {
        self.broker.is_connected()
    }

    /// Why the broker cannot be joined, while it is not connected and once this host found out (`refused this host:
    /// authorization violation`, `TLS failed: …`, `is unreachable: …`).
    pub fn broker_failure(&self) -> Option<String> {
        self.broker.failure()
    }

    /// Sends a message published on this host to the other hosts' members of `channel` of `project`; without
    /// waiting. Whether it was handed on: false when the broker queue is full (the message reaches this host only).
    pub fn publish(&self, project: &str, channel: &str, frame: &Frame) -> bool {
        let subject = channel_subject(&self.options.name, project, channel);
        self.outgoing.try_send(Outgoing { subject, to: None, frame: frame.clone() }).is_ok()
    }

    /// Resolves once this host listens to `channel` of `project` on the broker and the broker has the subscription,
    /// so that every message published to it from then on reaches this host: what a join from a position waits for
    /// before it reads where the channel's history ends. The channel stays listened to while the [`Listening`] lives:
    /// keep it until the member is added (or the join failed).
    pub async fn listening(&self, project: &str, channel: &str) -> Result<Listening, ConnError> {
        let ticket = self.tickets.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Made before asking, so that whenever this join ends (failed, refused, or its future dropped while it
        // waits) the listening task hears of it after the request.
        let listening = Listening {
            changes: self.changes.clone(),
            project: project.to_owned(),
            channel: channel.to_owned(),
            ticket,
        };
        let (answer, answered) = tokio::sync::oneshot::channel();
        let listen = Change::Listen(project.to_owned(), channel.to_owned(), ticket, answer);
        let gone = || ConnError::Limit("the cluster's broker connection is closed".into());
        self.changes.send(listen).map_err(|_| gone())?;
        answered.await.map_err(|_| gone())??;
        Ok(listening)
    }
}

impl ChannelWatch for Cluster {
    fn opened(&self, project: &str, channel: &str) {
        let _ = self.changes.send(Change::Opened(project.to_owned(), channel.to_owned()));
    }

    fn closed(&self, project: &str, channel: &str) {
        let _ = self.changes.send(Change::Closed(project.to_owned(), channel.to_owned()));
    }
}

/// Follows the broker connection: its state for `/healthz` and the metrics, and a log line per change (not per
/// attempt): connected, lost, or why it cannot be joined, found out once by [`broker::diagnose`].
fn on_event(
    event: &async_nats::Event,
    local: &Weak<dyn Local>,
    state: &Arc<BrokerState>,
    shown: &str,
    diagnosis: async_nats::ConnectOptions,
    addrs: Vec<async_nats::ServerAddr>,
) {
    let Some(local) = local.upgrade() else { return };
    match event {
        async_nats::Event::Connected => {
            let had_failed = state.failure().is_some();
            let changed = state.set_connected(true);
            local.metrics().broker_connected(true);
            if changed || had_failed {
                tracing::info!(broker = %shown, "connected to the cluster's broker");
            }
        }
        async_nats::Event::Disconnected => {
            if state.set_connected(false) {
                local.metrics().broker_reconnected();
            }
            local.metrics().broker_connected(false);
            tracing::warn!("lost the cluster's broker: publishes reach this host's members only until it is back");
        }
        async_nats::Event::ClientError(async_nats::ClientError::Other(report)) => {
            // One report per failed attempt, naming only the kind of failure: look into a new kind once.
            if state.failed_attempt(report) {
                let (state, shown) = (state.clone(), shown.to_owned());
                tokio::spawn(async move {
                    let failure = broker::diagnose(diagnosis, addrs).await;
                    if state.diagnosed(failure.clone())
                        && let Some(failure) = failure
                    {
                        let every = broker::DEFAULT_BROKER_RETRY_MAX;
                        let said = format!(
                            "the cluster's broker {failure}; retrying with back-off (at most every \
                                            {every:?}); logged again only if the reason changes"
                        );
                        // A broker that is down comes back by itself; one that refuses this host needs a person.
                        if failure.starts_with("is unreachable") {
                            tracing::warn!(broker = %shown, "{said}");
                        } else {
                            tracing::error!(broker = %shown, "{said}");
                        }
                    }
                });
            } else {
                tracing::debug!(broker = %shown, "the cluster's broker: {report}");
            }
        }
        other => tracing::warn!("cluster broker: {other}"),
    }
}

/// A channel this host listens to on the broker: the task that delivers what arrives on it, whether the channel has
/// members on this host, and the tickets of the joins from a position between listening and their end.
struct Listened {
    reader: JoinHandle<()>,
    members: bool,
    joining: Vec<u64>,
}

impl Listened {
    /// Whether nothing on this host needs the channel's messages any more.
    fn unneeded(&self) -> bool {
        !self.members && self.joining.is_empty()
    }
}

/// Subscribes to a channel's subject while the channel has members on this host or a join from a position is under
/// way, and delivers what arrives on it.
async fn listen(
    client: async_nats::Client,
    cluster: String,
    mut changes: mpsc::UnboundedReceiver<Change>,
    local: Weak<dyn Local>,
) {
    let mut listened: HashMap<(String, String), Listened> = HashMap::new();
    while let Some(change) = changes.recv().await {
        match change {
            Change::Opened(project, channel) => {
                let key = (project, channel);
                if let Some(found) = listened.get_mut(&key) {
                    // Listened to already (a join from a position asked first): it keeps its subscription.
                    found.members = true;
                    continue;
                }
                match subscribe(&client, &cluster, &key, &local).await {
                    Ok(reader) => {
                        listened.insert(key, Listened { reader, members: true, joining: Vec::new() });
                    }
                    Err(err) => {
                        let (project, channel) = key;
                        tracing::warn!(project, channel, "cannot listen to the channel on the broker: {err}");
                    }
                }
            }
            Change::Listen(project, channel, ticket, answer) => {
                let key = (project, channel);
                // The join's ticket is held until its end comes ([`Change::Joined`], always after this).
                let subscribed = match listened.get_mut(&key) {
                    Some(found) => {
                        found.joining.push(ticket);
                        Ok(())
                    }
                    None => subscribe(&client, &cluster, &key, &local).await.map(|reader| {
                        listened.insert(key, Listened { reader, members: false, joining: vec![ticket] });
                    }),
                };
                // The broker has the subscription once it answers a ping sent after it.
                let ready = match subscribed {
                    Ok(()) => client.flush().await.map_err(|err| err.to_string()),
                    Err(err) => Err(err),
                };
                let _ = answer.send(ready.map_err(|err| {
                    ConnError::Limit(format!("cannot listen to the channel on the cluster's broker: {err}"))
                }));
            }
            Change::Joined(project, channel, ticket) => end_join(&mut listened, (project, channel), ticket),
            Change::Closed(project, channel) => {
                let key = (project, channel);
                if let Some(found) = listened.get_mut(&key) {
                    found.members = false;
                    forget_if_unneeded(&mut listened, &key);
                }
            }
        }
    }
    for gone in listened.into_values() {
        gone.reader.abort();
    }
}

/// The join from a position on `key` with `ticket` ended: the channel stops being listened to if nothing else needs
/// it. A ticket it does not hold (the join never listened) changes nothing.
fn end_join(listened: &mut HashMap<(String, String), Listened>, key: (String, String), ticket: u64) {
    let Some(found) = listened.get_mut(&key) else { return };
    found.joining.retain(|held| *held != ticket);
    forget_if_unneeded(listened, &key);
}

/// Stops listening to `key` when nothing on this host needs it any more.
fn forget_if_unneeded(listened: &mut HashMap<(String, String), Listened>, key: &(String, String)) {
    if listened.get(key).is_some_and(Listened::unneeded)
        && let Some(gone) = listened.remove(key)
    {
        // Dropping the subscriber (with its task) unsubscribes.
        gone.reader.abort();
    }
}

/// Subscribes to a channel's subject and starts the task that delivers what arrives on it.
async fn subscribe(
    client: &async_nats::Client,
    cluster: &str,
    (project, channel): &(String, String),
    local: &Weak<dyn Local>,
) -> Result<JoinHandle<()>, String> {
    let subject = channel_subject(cluster, project, channel);
    let subscriber = client.subscribe(subject).await.map_err(|err| err.to_string())?;
    Ok(tokio::spawn(read(subscriber, project.clone(), channel.clone(), local.clone())))
}

/// Delivers the messages of one channel's subject to this host's members: those another host published, and the
/// publications the broker's history stream republishes with their positions, one after the other.
async fn read(mut subscriber: async_nats::Subscriber, project: String, channel: String, local: Weak<dyn Local>) {
    while let Some(message) = subscriber.next().await {
        let Some(local) = local.upgrade() else { return };
        let binary = message
            .headers
            .as_ref()
            .and_then(|headers| headers.get(KIND_HEADER))
            .is_some_and(|kind| kind.as_str() == "binary");
        let frame = if binary {
            Frame::Binary(message.payload)
        } else {
            match Utf8Bytes::try_from(message.payload) {
                Ok(text) => Frame::Text(text),
                Err(_) => {
                    tracing::warn!(project, channel, "dropped a text message from the broker that is not UTF-8");
                    continue;
                }
            }
        };
        local.metrics().broker_received();
        let header = |name: &str| message.headers.as_ref().and_then(|headers| headers.get(name)).map(|v| v.as_str());
        let position = match (header(OFFSET_HEADER).and_then(|offset| offset.parse().ok()), header(EPOCH_HEADER)) {
            (Some(offset), Some(epoch)) => Some(StreamPosition { offset, epoch: epoch.to_owned() }),
            _ => None,
        };
        match position {
            Some(position) => {
                let skip = header(SKIP_HEADER).map(str::to_owned);
                local.deliver_at(&project, &channel, frame, position, skip).await;
            }
            None => local.deliver(&project, &channel, &frame),
        }
    }
}

/// Hands this host's publishes to the broker, in the order they were made.
async fn send(
    client: async_nats::Client,
    host_id: String,
    mut outgoing: mpsc::Receiver<Outgoing>,
    local: Weak<dyn Local>,
) {
    while let Some(Outgoing { subject, to, frame }) = outgoing.recv().await {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert(HOST_HEADER, host_id.as_str());
        if let Some((project, conn)) = &to {
            headers.insert(PROJECT_HEADER, project.as_str());
            headers.insert(CONN_HEADER, conn.as_str());
        }
        let payload = match frame {
            Frame::Text(text) => Bytes::from(text),
            Frame::Binary(data) => {
                headers.insert(KIND_HEADER, "binary");
                data
            }
            _ => continue,
        };
        let sent = client.publish_with_headers(subject, headers, payload).await;
        let Some(local) = local.upgrade() else { return };
        match sent {
            Ok(()) => local.metrics().broker_sent(),
            Err(err) => {
                local.metrics().broker_dropped();
                tracing::warn!("a channel message did not reach the broker: {err}");
            }
        }
    }
}

/// Says every [`DEFAULT_HEARTBEAT_INTERVAL`] that this host is alive, with its counts; and at once when a host it had
/// not heard from appears, so a new host knows the whole cluster after one round trip rather than one interval.
async fn beat(
    client: async_nats::Client,
    options: ClusterOptions,
    local: Weak<dyn Local>,
    newcomer: Arc<tokio::sync::Notify>,
) {
    let subject = heartbeat_subject(&options.name);
    let mut every = tokio::time::interval(DEFAULT_HEARTBEAT_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = newcomer.notified() => {}
        }
        let Some((connections, channels)) = local.upgrade().map(|local| local.counts()) else { return };
        let status = HostStatus { host: options.host_id.clone(), connections, channels, last_heartbeat_ms: 0 };
        let Ok(body) = serde_json::to_vec(&status) else { continue };
        // A heartbeat lost while the broker is gone is simply not heard; the next one will be.
        let _ = client.publish(subject.clone(), body.into()).await;
    }
}

/// Keeps the table of other hosts from their heartbeats; a host not in it (new, or back after a timeout) gets this
/// host's heartbeat at once.
async fn hear(
    mut heartbeats: async_nats::Subscriber,
    peers: Arc<Mutex<HashMap<String, (HostStatus, Instant)>>>,
    me: String,
    newcomer: Arc<tokio::sync::Notify>,
) {
    while let Some(message) = heartbeats.next().await {
        let Ok(status) = serde_json::from_slice::<HostStatus>(&message.payload) else {
            tracing::debug!("ignored a heartbeat that is not a host status");
            continue;
        };
        if status.host == me {
            continue;
        }
        let Ok(mut peers) = peers.lock() else { continue };
        let new = peers.get(&status.host).is_none_or(|(_, heard)| heard.elapsed() >= DEFAULT_PEER_TIMEOUT);
        peers.insert(status.host.clone(), (status, Instant::now()));
        drop(peers);
        if new {
            newcomer.notify_one();
        }
    }
}

/// A host id for a host that was not given one: 12 hex digits, different for every start.
pub fn generated_host_id() -> String {
    use std::hash::BuildHasher;
    let seed = (std::process::id(), std::time::SystemTime::now());
    let hash = std::collections::hash_map::RandomState::new().hash_one(seed);
    format!("{:012x}", hash & 0xffff_ffff_ffff)
}
