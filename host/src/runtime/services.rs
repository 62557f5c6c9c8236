//! What the runtime needs from the host around it, as traits it defines: the connection an event belongs to, the
//! services a handler's imports reach (live connections, new outbound clients), and the project's key-value store and
//! configuration. The connection layer and the store implement them; the runtime imports neither.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use wasmsock_wire::channel::MembersPage;
use wasmsock_wire::history::{HistoryPage, Published, Recovery, StreamPosition};
use wasmsock_wire::kv::{Alarm, ConfigSnapshot, Entry, KeysPage, KvError, PutOptions, Usage};
use wasmsock_wire::{ClientInfo, ClientOptions, ConnError, ConnLimits, EventKind, Frame};

/// A live connection as a handler's imports see it: who it is, its limits, and sending to it and closing it.
pub trait Connection: Send + Sync + std::fmt::Debug + 'static {
    /// The connection's host-wide id.
    fn id(&self) -> &str;
    /// What the host knows about it now (the WIT `client-info`).
    fn info(&self) -> ClientInfo;
    /// The limits it runs with (a handler call's deadline, memory and fuel come from here).
    fn limits(&self) -> &ConnLimits;
    /// Queues a data frame without waiting.
    fn send(&self, frame: Frame) -> Result<(), ConnError>;
    /// Starts the closing handshake with a close a handler asked for (checked here).
    fn close(&self, code: Option<u16>, reason: Option<String>) -> Result<(), ConnError>;
    /// What a handler keeps with this connection between events, if anything.
    fn attachment(&self) -> Option<Vec<u8>>;
    /// Keeps `data` with this connection (none removes it); too large is `limit`.
    fn set_attachment(&self, data: Option<Vec<u8>>) -> Result<(), ConnError>;
}

/// A connection being looked up on another host: it resolves to the connection, or none.
pub type Lookup = Pin<Box<dyn Future<Output = Option<Arc<dyn Connection>>> + Send + 'static>>;

/// An answer gathered from the hosts of a cluster: what arrived in time, and the hosts that did not answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Gathered<T> {
    /// What the hosts that answered said.
    pub answer: T,
    /// The hosts that did not answer in time; empty when the answer is whole (and always on a host alone).
    pub missing_hosts: Vec<String>,
}

/// The other hosts' connections being gathered: they resolve to what arrived in time.
pub type Survey = Pin<Box<dyn Future<Output = Gathered<Vec<ClientInfo>>> + Send + 'static>>;

/// A page of a channel's members being gathered over the cluster.
pub type MembersSurvey = Pin<Box<dyn Future<Output = Result<Gathered<MembersPage>, ConnError>> + Send + 'static>>;

/// A history call under way (on a host alone it is ready at once; in a cluster it may wait for the broker).
pub type HistoryFuture<T> = Pin<Box<dyn Future<Output = Result<T, ConnError>> + Send + 'static>>;

/// One event for one connection's handler.
#[derive(Debug, Clone)]
pub struct Event {
    /// The connection the event belongs to (still readable after it ended, for onclose).
    pub conn: Arc<dyn Connection>,
    /// What happened.
    pub kind: EventKind,
    /// When the host began it: its wait for an execution slot counts from here (the dispatch's clock reading, shared
    /// so an event reads the clock fewer times).
    pub started: Instant,
}

/// What a handler's imports reach outside the runtime: the live connections and the way to open new ones. Every call
/// names the calling handler's `project` (the first segment of its name); an implementation answers within that
/// project only, so one tenant's handler never reaches another's connections.
pub trait HostServices: Send + Sync + 'static {
    /// The live connection with this id whose handler is in `project`.
    fn connection(&self, project: &str, id: &str) -> Option<Arc<dyn Connection>>;
    /// The live connection with this id whose handler is in `project`, held by another host of the cluster; none
    /// (quickly) when no host holds it, or this host is alone.
    fn remote_connection(&self, project: &str, id: &str) -> Lookup;
    /// Every live connection whose handler is in `project`, oldest first.
    fn connections(&self, project: &str) -> Vec<ClientInfo>;
    /// Every live connection of `project` on the other hosts of the cluster, as many as answered in time (none when
    /// this host is alone).
    fn remote_connections(&self, project: &str) -> Survey;
    /// The oldest live outbound client whose events go to `handler`, when `handler` is in `project`: this host's, or
    /// else one another host of the cluster holds (asked with a deadline).
    fn client_by_handler(&self, project: &str, handler: &str) -> Lookup;
    /// Starts an outbound client for `handler`, which must be in `project`; returns at once with the client still
    /// connecting.
    fn create_websocket(
        &self,
        project: &str,
        uri: &str,
        handler: &str,
        options: ClientOptions,
    ) -> Result<Arc<dyn Connection>, ConnError>;
    /// Adds the connection `conn` to `channel` of `project`.
    fn join(&self, project: &str, conn: &dyn Connection, channel: &str) -> Result<(), ConnError>;
    /// Removes `conn` from `channel` of `project`; whether it was a member.
    fn leave(&self, project: &str, conn: &dyn Connection, channel: &str) -> Result<bool, ConnError>;
    /// The channels of `project` that `conn` is in, in the order it joined them.
    fn channels_of(&self, project: &str, conn: &dyn Connection) -> Vec<String>;
    /// Queues `frame` on every member of `channel` of `project`, except the connection with the id `skip`; how many
    /// it was queued for.
    fn publish(&self, project: &str, channel: &str, frame: Frame, skip: Option<&str>) -> Result<u32, ConnError>;
    /// [`HostServices::publish`], answering the publication's position in the channel's history too (none when the
    /// project keeps no history). The default publishes without a position.
    fn publish_with(&self, project: &str, channel: &str, frame: Frame, skip: Option<&str>) -> HistoryFuture<Published> {
        let published = self.publish(project, channel, frame, skip).map(|queued| Published { queued, position: None });
        Box::pin(std::future::ready(published))
    }
    /// One page of the history of `channel` of `project`: at most `limit` publications after `since`. The default
    /// keeps no history.
    fn history(
        &self,
        project: &str,
        channel: &str,
        since: Option<StreamPosition>,
        limit: u32,
    ) -> HistoryFuture<HistoryPage> {
        let _ = (channel, since, limit);
        let refused = ConnError::Invalid(format!("project {project:?} keeps no channel history on this host"));
        Box::pin(std::future::ready(Err(refused)))
    }
    /// Adds `conn` to `channel` of `project` after queueing on it every publication kept after `since`, with no gap
    /// and no duplicate before the live ones; with the envelope when `envelope`. The default keeps no history: it
    /// joins, and says it recovered only when no position was asked for.
    fn join_from(
        &self,
        project: &str,
        conn: &dyn Connection,
        channel: &str,
        since: Option<StreamPosition>,
        envelope: bool,
    ) -> HistoryFuture<Recovery> {
        let _ = envelope;
        let joined =
            self.join(project, conn, channel).map(|()| Recovery { recovered: since.is_none(), ..Recovery::default() });
        Box::pin(std::future::ready(joined))
    }
    /// One page of the members of `channel` of `project`, over every live host of the cluster (this host's alone when
    /// it runs alone).
    fn members(&self, project: &str, channel: &str, after: Option<&str>, limit: u32) -> MembersSurvey;
    /// Arms a timer on `conn` (a connection of `project`): an `ontimer` event with `payload` after `delay`, counted
    /// against the project's quota of timers; its id.
    fn set_timer(
        &self,
        project: &str,
        conn: &dyn Connection,
        delay: std::time::Duration,
        payload: Vec<u8>,
    ) -> Result<u64, ConnError>;
    /// Cancels the timer `id` of `conn`; whether it was armed.
    fn cancel_timer(&self, project: &str, conn: &dyn Connection, id: u64) -> bool;
    /// The key-value store of every project (each call names the project).
    fn kv(&self) -> &dyn KvService;
    /// Sends a handler's outbound HTTP request for `project`, held to that project's grants and quotas; the whole
    /// response, or why there is none. A host that sends none refuses every request (the default).
    fn send_http(&self, project: &str, request: http::Request<HttpRequestBody>) -> HttpFuture {
        let _ = (project, request);
        Box::pin(std::future::ready(Err(HttpFailure::Denied("this host sends no outbound HTTP".into()))))
    }
    /// `project`'s configuration as it is now.
    fn config(&self, project: &str) -> Arc<ConfigSnapshot>;
}

/// A store call under way; it borrows nothing, so a handler's import can await it off the handler's clock.
pub type KvFuture<T> = Pin<Box<dyn Future<Output = Result<T, KvError>> + Send + 'static>>;

/// The key-value store of every project. Every call names the `project` whose keys it touches, always the calling
/// handler's (the runtime takes it from the handler's name, never from the guest); an implementation keeps each
/// project's keys apart and enforces its quotas.
pub trait KvService: Send + Sync + 'static {
    /// The value of `key` with its revision and expiry; none when absent or expired.
    fn get(&self, project: &str, key: &str) -> KvFuture<Option<Entry>>;
    /// Writes `value` at `key` under `options`; the new revision.
    fn put(&self, project: &str, key: &str, value: Vec<u8>, options: PutOptions) -> KvFuture<u64>;
    /// Removes `key` (when `revision` is given, only if it is the key's revision); removing an absent key
    /// unconditionally is not an error.
    fn delete(&self, project: &str, key: &str, revision: Option<u64>) -> KvFuture<()>;
    /// Adds `delta` to the decimal number at `key` (0 when absent), giving a key it creates `ttl_seconds`; the sum.
    fn increment(&self, project: &str, key: &str, delta: i64, ttl_seconds: Option<u32>) -> KvFuture<i64>;
    /// Up to `limit` keys starting with `prefix`, in byte order, after `after` when given.
    fn list(&self, project: &str, prefix: &str, after: Option<&str>, limit: u32) -> KvFuture<KeysPage>;
    /// The values of `keys`, in their order; none for an absent key.
    fn get_many(&self, project: &str, keys: Vec<String>) -> KvFuture<Vec<Option<Vec<u8>>>>;
    /// Sets every key to its value.
    fn set_many(&self, project: &str, entries: Vec<(String, Vec<u8>)>) -> KvFuture<()>;
    /// Removes every key.
    fn delete_many(&self, project: &str, keys: Vec<String>) -> KvFuture<()>;
    /// The project's use of its store against its quotas.
    fn usage(&self, project: &str) -> KvFuture<Usage>;
    /// Sets (replaces) the project's alarm `alarm.name`, within the project's quota of alarms.
    fn set_alarm(&self, project: &str, alarm: Alarm) -> KvFuture<()>;
    /// Cancels the project's alarm `name`; whether it was set.
    fn cancel_alarm(&self, project: &str, name: &str) -> KvFuture<bool>;
    /// The project's alarms, soonest first.
    fn list_alarms(&self, project: &str) -> KvFuture<Vec<Alarm>>;
}

/// The body of a handler's outbound HTTP request, streamed from the guest as it writes it.
pub type HttpRequestBody = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, HttpBodyError>;

/// The guest's request body failed (it was aborted or broke its declared length).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the request body failed: {0}")]
pub struct HttpBodyError(pub String);

/// A handler's outbound HTTP request under way: the response with its whole body (at most the host's cap), or why
/// there is none. It borrows nothing, so the runtime can await it off the handler's clock.
pub type HttpFuture = Pin<Box<dyn Future<Output = Result<http::Response<bytes::Bytes>, HttpFailure>> + Send + 'static>>;

/// Why a handler's outbound HTTP request got no response. Each maps to a `wasi:http` error code; the text is logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HttpFailure {
    /// No grant admits the destination, or the URI is refused outright (userinfo, odd host, scheme...).
    #[error("request denied: {0}")]
    Denied(String),
    /// The name resolves only to inside addresses (loopback, private, link-local...) that no grant names.
    #[error("destination address prohibited: {0}")]
    AddressProhibited(String),
    /// The name does not resolve.
    #[error("DNS lookup failed: {0}")]
    Dns(String),
    /// Resolving and connecting took longer than the connect timeout.
    #[error("connecting took longer than {0:?}")]
    ConnectTimeout(std::time::Duration),
    /// The server refused the connection.
    #[error("connection refused: {0}")]
    ConnectionRefused(String),
    /// The TLS handshake failed (an untrusted certificate, a wrong name...).
    #[error("TLS failed: {0}")]
    Tls(String),
    /// The whole exchange took longer than the total timeout.
    #[error("no complete response within {0:?}")]
    Timeout(std::time::Duration),
    /// The response body is larger than the cap (in bytes).
    #[error("the response body is larger than {0} bytes")]
    ResponseTooLarge(u64),
    /// The project has as many requests in flight as its quota allows.
    #[error("{0}")]
    Quota(String),
    /// The connection broke, or the server spoke something other than HTTP/1.1.
    #[error("HTTP exchange failed: {0}")]
    Protocol(String),
}
