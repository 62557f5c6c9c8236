//! Every metric the host exports (Prometheus/OpenMetrics text at `/metrics` on the admin listener), defined in one
//! place behind a small API the rest of the host calls: connections, messages and bytes, events and their durations,
//! handler failures, queue-full closes, deploys and channels.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use wasmsock_wire::{Direction, Method};

use crate::budget::{Budget, Kind};
use crate::fair::{Meter, Observer};
use crate::runtime::CallError;

/// The content type of [`Metrics::encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A connection's endpoint (empty for an outbound client) and direction (`inbound` or `outbound`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnLabels {
    endpoint: String,
    direction: String,
}

impl ConnLabels {
    fn of(endpoint: Option<&str>, direction: Direction) -> Self {
        let direction = match direction {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        };
        Self { endpoint: endpoint.unwrap_or_default().to_owned(), direction: direction.to_owned() }
    }
}

/// One connection's handles on its message and byte counters (see [`Metrics::traffic`]).
#[derive(Debug, Clone)]
pub struct Traffic {
    messages_received: Counter,
    bytes_received: Counter,
    messages_sent: Counter,
    bytes_sent: Counter,
}

impl Traffic {
    /// A data message of `bytes` payload bytes arrived.
    pub fn received(&self, bytes: usize) {
        self.messages_received.inc();
        self.bytes_received.inc_by(bytes as u64);
    }

    /// `messages` data messages of `bytes` payload bytes in all were written.
    pub fn sent(&self, messages: u64, bytes: usize) {
        if messages > 0 {
            self.messages_sent.inc_by(messages);
            self.bytes_sent.inc_by(bytes as u64);
        }
    }
}

/// A handler and the event method it ran.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    handler: String,
    method: String,
}

/// A handler and how one of its calls failed (`trap`, `timeout`, `out_of_memory`, `out_of_fuel`, `instantiate`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    handler: String,
    kind: String,
}

/// An endpoint.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

/// How a deploy came (`admin`: the admin API; `watch`: files changed under the plugins root), what it was (`handler`,
/// `descriptor`; `file` for a refused file of the watch) and whether it was accepted (`ok` or `failed`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeployLabels {
    source: String,
    kind: String,
    outcome: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The buckets of the handler duration histogram, in seconds: 50 µs (a warm Rust call) to about 3.3 s (past the
/// default 1 s deadline), each four times the last.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 4.0, 9))
}

/// The event metrics of one handler (see [`Metrics::handler_events`]).
#[derive(Debug, Clone)]
pub struct HandlerEvents {
    events: [Counter; 6],
    durations: [Histogram; 6],
}

impl HandlerEvents {
    /// A `method` event ran for `elapsed`.
    pub fn handled(&self, method: Method, elapsed: Duration) {
        let i = match method {
            Method::OnOpen => 0,
            Method::OnMessage => 1,
            Method::OnError => 2,
            Method::OnClose => 3,
            Method::OnTimer => 4,
            Method::OnAlarm => 5,
        };
        self.events[i].inc();
        self.durations[i].observe(elapsed.as_secs_f64());
    }
}

/// One host's metrics. Each host owns one, so hosts in one process (tests) count apart.
pub struct Metrics {
    registry: Registry,
    connections_open: Family<ConnLabels, Gauge>,
    connections: Family<ConnLabels, Counter>,
    messages_received: Family<ConnLabels, Counter>,
    messages_sent: Family<ConnLabels, Counter>,
    bytes_received: Family<ConnLabels, Counter>,
    bytes_sent: Family<ConnLabels, Counter>,
    events: Family<EventLabels, Counter>,
    handler_duration: HistogramFamily<EventLabels>,
    handler_failures: Family<FailureLabels, Counter>,
    queue_full_closes: Family<EndpointLabels, Counter>,
    deploys: Family<DeployLabels, Counter>,
    channels_open: Family<ProjectLabels, Gauge>,
    publishes: Family<ProjectLabels, Counter>,
    deliveries: Family<ProjectLabels, Counter>,
    broker_connected: Gauge,
    broker_reconnects: Counter,
    broker_sent: Counter,
    broker_received: Counter,
    broker_dropped: Counter,
    routed: Family<RoutedLabels, Counter>,
    project_calls: Family<ProjectLabels, Counter>,
    project_seconds: Family<ProjectLabels, Counter<f64, std::sync::atomic::AtomicU64>>,
    project_wait: HistogramFamily<ProjectLabels>,
    quota_refusals: Family<QuotaLabels, Counter>,
    history_resumes: Family<ResumeLabels, Counter>,
    pauses: Family<PauseLabels, Counter>,
    kv_calls: Family<KvLabels, Counter>,
    timer_lateness: Histogram,
    /// The handles of [`Metrics::handler_events`], made once per handler: a connection's first event then costs a
    /// map lookup, not twelve label lookups and their strings (a measurable part of a short connection).
    events_of: std::sync::Mutex<crate::FastMap<String, Arc<HandlerEvents>>>,
    /// The connection counters of an endpoint, inbound and outbound, made once for each (see [`Metrics::traffic`]).
    conns_of: std::sync::Mutex<[crate::FastMap<String, Arc<ConnCounters>>; 2]>,
}

/// The counters of the connections of one endpoint and direction.
#[derive(Debug)]
struct ConnCounters {
    opened: Counter,
    open: Gauge,
    traffic: Traffic,
}

/// What a handler on this host did to a connection on another host (`send`, `close`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoutedLabels {
    kind: &'static str,
}

/// A project and the quota that refused it (`calls`, `resident-instances`, `clients`, `connections`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QuotaLabels {
    project: String,
    quota: &'static str,
}

/// A project and how a join from a position went (`recovered`, or `incomplete`: another epoch, or trimmed).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResumeLabels {
    project: String,
    outcome: &'static str,
}

/// A call on a project's store and how it ended.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KvLabels {
    project: String,
    op: &'static str,
    outcome: &'static str,
}

/// A project and one of its handlers.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PauseLabels {
    project: String,
    handler: String,
}

/// The buckets of the slot wait histogram, in seconds: 10 µs to about 2.6 s, each four times the last.
fn wait_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
}

/// A project (the first segment of a handler's name), for channel metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectLabels {
    project: String,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero, registered under the `wasmsock_` prefix.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("wasmsock");
        registry.register_collector(Box::new(DeflateCollector));
        let metrics = Self {
            registry: Registry::default(),
            connections_open: Family::default(),
            connections: Family::default(),
            messages_received: Family::default(),
            messages_sent: Family::default(),
            bytes_received: Family::default(),
            bytes_sent: Family::default(),
            events: Family::default(),
            handler_duration: Family::new_with_constructor(duration_histogram),
            handler_failures: Family::default(),
            queue_full_closes: Family::default(),
            deploys: Family::default(),
            channels_open: Family::default(),
            publishes: Family::default(),
            deliveries: Family::default(),
            broker_connected: Gauge::default(),
            broker_reconnects: Counter::default(),
            broker_sent: Counter::default(),
            routed: Family::default(),
            broker_received: Counter::default(),
            broker_dropped: Counter::default(),
            project_calls: Family::default(),
            project_seconds: Family::default(),
            project_wait: Family::new_with_constructor(wait_histogram),
            quota_refusals: Family::default(),
            history_resumes: Family::default(),
            kv_calls: Family::default(),
            timer_lateness: Histogram::new(exponential_buckets(0.000_1, 2.0, 16)),
            events_of: std::sync::Mutex::default(),
            conns_of: std::sync::Mutex::default(),
            pauses: Family::default(),
        };
        registry.register(
            "connections_open",
            "Live connections (inbound sessions and outbound clients, connecting ones included)",
            metrics.connections_open.clone(),
        );
        registry.register("connections", "Connections ever registered", metrics.connections.clone());
        registry.register("messages_received", "Data messages received from peers", metrics.messages_received.clone());
        registry.register("messages_sent", "Data messages written to peers", metrics.messages_sent.clone());
        registry.register(
            "received_bytes",
            "Payload bytes of the data messages received from peers",
            metrics.bytes_received.clone(),
        );
        registry.register(
            "sent_bytes",
            "Payload bytes of the data messages written to peers",
            metrics.bytes_sent.clone(),
        );
        registry.register("events", "Events handed to handlers, by handler and method", metrics.events.clone());
        registry.register(
            "handler_duration_seconds",
            "How long one event took in its handler (instantiation included)",
            metrics.handler_duration.clone(),
        );
        registry.register(
            "handler_failures",
            "Handler calls that failed, by kind: trap, timeout, out_of_memory, out_of_fuel, instantiate, no_resident_slot",
            metrics.handler_failures.clone(),
        );
        registry.register(
            "queue_full_closes",
            "Connections closed because their outbound queue was full (a slow reader)",
            metrics.queue_full_closes.clone(),
        );
        registry.register(
            "deploys",
            "Deploys by source (admin, watch, cluster), kind (handler, descriptor, file) and outcome (ok, failed)",
            metrics.deploys.clone(),
        );
        registry.register(
            "channels_open",
            "Channels with at least one member, by project",
            metrics.channels_open.clone(),
        );
        registry.register(
            "channel_publishes",
            "Messages published to channels (by handlers and the admin API), by project",
            metrics.publishes.clone(),
        );
        registry.register(
            "channel_deliveries",
            "Published messages queued on a member's outbound queue, by project",
            metrics.deliveries.clone(),
        );
        registry.register(
            "broker_connected",
            "1 while the cluster's NATS connection is up; 0 while it is down, or without --nats",
            metrics.broker_connected.clone(),
        );
        registry.register(
            "broker_reconnects",
            "Times the cluster's NATS connection came back after it was lost",
            metrics.broker_reconnects.clone(),
        );
        registry.register(
            "broker_messages_sent",
            "Channel messages this host published to the broker for the other hosts",
            metrics.broker_sent.clone(),
        );
        registry.register(
            "routed",
            "Sends and closes that handlers on this host made to connections on other hosts, through the broker",
            metrics.routed.clone(),
        );
        registry.register(
            "broker_messages_received",
            "Channel messages from other hosts delivered to this host's members",
            metrics.broker_received.clone(),
        );
        registry.register(
            "broker_messages_dropped",
            "Channel messages not sent to the broker (its queue was full or the broker refused them)",
            metrics.broker_dropped.clone(),
        );
        registry.register(
            "project_calls",
            "Handler calls that ended, by project (every lifecycle; failed ones included)",
            metrics.project_calls.clone(),
        );
        registry.register(
            "project_handler_seconds",
            "Time handler calls of a project held an execution slot (their running time), by project",
            metrics.project_seconds.clone(),
        );
        registry.register(
            "project_slot_wait_seconds",
            "How long a handler call waited for its first execution slot (the fair share's queueing), by project",
            metrics.project_wait.clone(),
        );
        registry.register(
            "timer_lateness_seconds",
            "How late timers fired: from when each was due to when its connection's session took it (0.1 ms to 3.3 s)",
            metrics.timer_lateness.clone(),
        );
        registry.register(
            "kv_calls",
            "Calls on projects' key-value stores by handlers and the admin API, by project, operation and outcome (ok, \
             invalid, limit, conflict, unavailable)",
            metrics.kv_calls.clone(),
        );
        registry.register(
            "quota_refusals",
            "Things a project's quota refused, by project and quota (resident-instances, clients, connections)",
            metrics.quota_refusals.clone(),
        );
        registry.register(
            "history_resumes",
            "Joins of a channel from a position, by project and outcome (recovered; incomplete: another epoch, or \
             trimmed, and what was kept was sent)",
            metrics.history_resumes.clone(),
        );
        registry.register(
            "handler_pauses",
            "Times a handler was paused for running out its deadline call after call, by project and handler",
            metrics.pauses.clone(),
        );
        Self { registry, ..metrics }
    }

    /// A timer fired `late` after it was due.
    pub fn timer_fired(&self, late: Duration) {
        self.timer_lateness.observe(late.as_secs_f64());
    }

    /// A project's quota `quota` refused something.
    pub fn quota_refused(&self, project: &str, quota: &'static str) {
        self.quota_refusals.get_or_create(&QuotaLabels { project: project.to_owned(), quota }).inc();
    }

    /// A connection of `project` joined a channel from a position: `recovered` whether the history covered it.
    pub fn resumed(&self, project: &str, recovered: bool) {
        let outcome = if recovered { "recovered" } else { "incomplete" };
        self.history_resumes.get_or_create(&ResumeLabels { project: project.to_owned(), outcome }).inc();
    }

    /// Exports what `budget` holds (by kind and by project) and its refusals and pauses, read at each scrape: the
    /// budget's own counters, so charging it costs the hot path nothing more.
    pub fn with_budget(mut self, budget: Arc<Budget>) -> Self {
        self.registry.register_collector(Box::new(BudgetCollector(budget)));
        self
    }

    /// A message from another host of the cluster was queued on `deliveries` members of a channel of `project`.
    pub fn delivered(&self, project: &str, deliveries: u64) {
        self.deliveries.get_or_create(&ProjectLabels { project: project.to_owned() }).inc_by(deliveries);
    }

    /// The broker connection went up (true) or down (false).
    pub fn broker_connected(&self, up: bool) {
        self.broker_connected.set(i64::from(up));
    }

    /// The broker connection came back after it was lost.
    pub fn broker_reconnected(&self) {
        self.broker_reconnects.inc();
    }

    /// A channel message went to the broker.
    pub fn broker_sent(&self) {
        self.broker_sent.inc();
    }

    /// A handler's send (`send`) or close (`close`) to a connection on another host went to the broker queue.
    pub fn routed(&self, kind: &'static str) {
        self.routed.get_or_create(&RoutedLabels { kind }).inc();
    }

    /// A channel message from another host arrived.
    pub fn broker_received(&self) {
        self.broker_received.inc();
    }

    /// A channel message could not be handed to the broker.
    pub fn broker_dropped(&self) {
        self.broker_dropped.inc();
    }

    /// A channel of `project` got its first member.
    pub fn channel_opened(&self, project: &str) {
        self.channels_open.get_or_create(&ProjectLabels { project: project.to_owned() }).inc();
    }

    /// A channel of `project` lost its last member.
    pub fn channel_closed(&self, project: &str) {
        self.channels_open.get_or_create(&ProjectLabels { project: project.to_owned() }).dec();
    }

    /// A message was published to a channel of `project` and queued on `deliveries` members.
    pub fn published(&self, project: &str, deliveries: u64) {
        let labels = ProjectLabels { project: project.to_owned() };
        self.publishes.get_or_create(&labels).inc();
        self.deliveries.get_or_create(&labels).inc_by(deliveries);
    }

    /// A connection was registered (an inbound session upgraded, or an outbound client started connecting).
    pub fn connection_opened(&self, endpoint: Option<&str>, direction: Direction) {
        let counters = self.conns_of(endpoint, direction);
        counters.opened.inc();
        counters.open.inc();
    }

    /// A connection ended for good (it left the hub).
    pub fn connection_closed(&self, endpoint: Option<&str>, direction: Direction) {
        self.conns_of(endpoint, direction).open.dec();
    }

    /// The traffic counters of connections on `endpoint` in `direction`, looked up once per connection so that each
    /// message costs two atomic adds, not a label lookup.
    pub fn traffic(&self, endpoint: Option<&str>, direction: Direction) -> Traffic {
        self.conns_of(endpoint, direction).traffic.clone()
    }

    /// The connection counters of `endpoint` in `direction`, looked up in the families the first time only.
    fn conns_of(&self, endpoint: Option<&str>, direction: Direction) -> Arc<ConnCounters> {
        let mut cache = self.conns_of.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let cache = &mut cache[usize::from(direction == Direction::Outbound)];
        let endpoint = endpoint.unwrap_or_default();
        if let Some(found) = cache.get(endpoint) {
            return found.clone();
        }
        let labels = ConnLabels::of(Some(endpoint), direction);
        let made = Arc::new(ConnCounters {
            opened: self.connections.get_or_create(&labels).clone(),
            open: self.connections_open.get_or_create(&labels).clone(),
            traffic: Traffic {
                messages_received: self.messages_received.get_or_create(&labels).clone(),
                bytes_received: self.bytes_received.get_or_create(&labels).clone(),
                messages_sent: self.messages_sent.get_or_create(&labels).clone(),
                bytes_sent: self.bytes_sent.get_or_create(&labels).clone(),
            },
        });
        cache.insert(endpoint.to_owned(), made.clone());
        made
    }

    /// `handler` ran a `method` event for `elapsed`, and failed with `error` if it did.
    pub fn event_handled(&self, handler: &str, method: Method, elapsed: Duration, error: Option<&CallError>) {
        self.handler_events(handler).handled(method, elapsed);
        if let Some(error) = error {
            self.handler_failed(handler, error);
        }
    }

    /// The event counters and durations of `handler`, one per method, looked up in the families once per handler and
    /// held by each of its connections, so that an event costs an atomic add and a histogram observation, not label
    /// lookups and their strings.
    pub fn handler_events(&self, handler: &str) -> Arc<HandlerEvents> {
        let mut cache = self.events_of.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(found) = cache.get(handler) {
            return found.clone();
        }
        let of = |method: Method| EventLabels { handler: handler.to_owned(), method: method.as_str().to_owned() };
        let methods =
            [Method::OnOpen, Method::OnMessage, Method::OnError, Method::OnClose, Method::OnTimer, Method::OnAlarm];
        let made = Arc::new(HandlerEvents {
            events: methods.map(|method| self.events.get_or_create(&of(method)).clone()),
            durations: methods.map(|method| self.handler_duration.get_or_create(&of(method)).clone()),
        });
        cache.insert(handler.to_owned(), made.clone());
        made
    }

    /// A call of `handler` failed with `error` (rare: looked up each time).
    pub fn handler_failed(&self, handler: &str, error: &CallError) {
        let kind = failure_kind(error);
        self.handler_failures
            .get_or_create(&FailureLabels { handler: handler.to_owned(), kind: kind.to_owned() })
            .inc();
    }

    /// A connection of `endpoint` (empty for an outbound client) was closed because its outbound queue was full.
    pub fn record_queue_full_close(&self, endpoint: &str) {
        self.queue_full_closes.get_or_create(&EndpointLabels { endpoint: endpoint.to_owned() }).inc();
    }

    /// A deploy through the admin API of `kind` (`handler` or `descriptor`) was accepted (`ok`) or refused.
    pub fn deploy(&self, kind: &str, ok: bool) {
        self.count_deploys("admin", kind, ok, 1);
    }

    /// A deploy of `kind` that another host of the cluster shared was applied here (`ok`) or refused.
    pub fn cluster_deploy(&self, kind: &str, ok: bool) {
        self.count_deploys("cluster", kind, ok, 1);
    }

    /// The watch of the plugins root applied `report`: each handler swapped and endpoint changed is a deploy, each
    /// refused file a failed one.
    pub fn reloaded(&self, report: &super::registry::Reload) {
        self.count_deploys("watch", "handler", true, report.swapped.len());
        self.count_deploys("watch", "descriptor", true, report.changed.len());
        self.count_deploys("watch", "file", false, report.errors.len());
    }

    fn count_deploys(&self, source: &str, kind: &str, ok: bool, n: usize) {
        if n == 0 {
            return;
        }
        let outcome = if ok { "ok" } else { "failed" };
        let labels = DeployLabels { source: source.to_owned(), kind: kind.to_owned(), outcome: outcome.to_owned() };
        self.deploys.get_or_create(&labels).inc_by(n as u64);
    }

    /// Every metric in the OpenMetrics text format (which Prometheus scrapes), ending with `# EOF`.
    pub fn encode(&self) -> anyhow::Result<String> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .map_err(|err| anyhow::anyhow!("encoding the metrics: {err}"))?;
        Ok(text)
    }
}

/// Messages compressed for connections on compressing endpoints, process-wide as the compressed messages the process
/// keeps are (`conn::precompressed` counts them).
pub static DEFLATE_COMPRESSED: AtomicU64 = AtomicU64::new(0);

/// Sends on compressing endpoints that reused a message compressed for another connection.
pub static DEFLATE_REUSED: AtomicU64 = AtomicU64::new(0);

/// How compressing connections' messages were compressed, read when scraped.
#[derive(Debug)]
struct DeflateCollector;

impl Collector for DeflateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (compressed, reused) = (DEFLATE_COMPRESSED.load(Ordering::Relaxed), DEFLATE_REUSED.load(Ordering::Relaxed));
        let compressed = ConstCounter::new(compressed);
        compressed.encode(encoder.encode_descriptor(
            "deflate_compressed",
            "Messages compressed for connections on compressing endpoints (at least the threshold long)",
            None,
            compressed.metric_type(),
        )?)?;
        let reused = ConstCounter::new(reused);
        reused.encode(encoder.encode_descriptor(
            "deflate_reused",
            "Sends on compressing endpoints that reused a message compressed for another connection (a channel's \
             publish is compressed once for its members)",
            None,
            reused.metric_type(),
        )?)?;
        Ok(())
    }
}

/// A kind of memory the budget counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// The memory budget's figures as metrics, read from the budget when scraped.
#[derive(Debug)]
struct BudgetCollector(Arc<Budget>);

impl Collector for BudgetCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let budget = &self.0;
        let gauge = |bytes: usize| ConstGauge::new(i64::try_from(bytes).unwrap_or(i64::MAX));
        let limit = gauge(budget.limit());
        limit.encode(encoder.encode_descriptor(
            "memory_budget_bytes",
            "The memory budget (serve --memory-budget-mib)",
            None,
            limit.metric_type(),
        )?)?;
        let mut held = encoder.encode_descriptor(
            "memory_held_bytes",
            "Bytes held against the memory budget, by kind (receiving, queued, instances)",
            None,
            MetricType::Gauge,
        )?;
        for kind in Kind::ALL {
            gauge(budget.held_for(kind)).encode(held.encode_family(&KindLabels { kind: kind.as_str() })?)?;
        }
        let mut projects = encoder.encode_descriptor(
            "memory_project_held_bytes",
            "Bytes held against the memory budget, by project",
            None,
            MetricType::Gauge,
        )?;
        for (project, bytes) in budget.projects() {
            gauge(bytes).encode(projects.encode_family(&ProjectLabels { project })?)?;
        }
        let mut refusals = encoder.encode_descriptor(
            "memory_refusals",
            "Refusals for the memory budget: receiving (sessions and outbound clients closed with 1013 after waiting, \
             or 1009 for a message larger than their share could ever hold), queued (sends refused, the slow-consumer \
             policy applied), instances (memory growth refused)",
            None,
            MetricType::Counter,
        )?;
        for kind in Kind::ALL {
            ConstCounter::new(budget.refusals(kind))
                .encode(refusals.encode_family(&KindLabels { kind: kind.as_str() })?)?;
        }
        let pauses = ConstCounter::new(budget.pauses());
        pauses.encode(encoder.encode_descriptor(
            "memory_pauses",
            "Times a session's or outbound client's reading paused because the memory budget had no room",
            None,
            pauses.metric_type(),
        )?)?;
        Ok(())
    }
}

/// The `kind` label of a failed call.
pub fn failure_kind(error: &CallError) -> &'static str {
    match error {
        CallError::Trap { .. } => "trap",
        CallError::Timeout { .. } => "timeout",
        CallError::OutOfMemory { .. } => "out_of_memory",
        CallError::OutOfFuel { .. } => "out_of_fuel",
        CallError::Instantiate { .. } => "instantiate",
        CallError::NoResidentSlot { .. } => "no_resident_slot",
        CallError::WallTimeout { .. } => "wall_timeout",
        CallError::Paused { .. } => "paused",
        CallError::Quota { .. } => "quota",
    }
}

/// One project's call metrics, looked up once (see [`Observer::meter`]).
struct ProjectMeter {
    calls: Counter,
    seconds: Counter<f64, std::sync::atomic::AtomicU64>,
    wait: Histogram,
}

impl Meter for ProjectMeter {
    fn ran(&self, ran: Duration) {
        self.seconds.inc_by(ran.as_secs_f64());
    }

    fn call_ended(&self, waited: Duration) {
        self.calls.inc();
        self.wait.observe(waited.as_secs_f64());
    }
}

impl Observer for Metrics {
    fn meter(&self, project: &str) -> std::sync::Arc<dyn Meter> {
        let labels = ProjectLabels { project: project.to_owned() };
        std::sync::Arc::new(ProjectMeter {
            calls: self.project_calls.get_or_create(&labels).clone(),
            seconds: self.project_seconds.get_or_create(&labels).clone(),
            wait: self.project_wait.get_or_create(&labels).clone(),
        })
    }

    fn quota_refused(&self, project: &str, quota: &'static str) {
        Metrics::quota_refused(self, project, quota);
    }

    fn paused(&self, project: &str, handler: &str) {
        self.pauses.get_or_create(&PauseLabels { project: project.to_owned(), handler: handler.to_owned() }).inc();
    }
}

impl crate::store::StoreObserver for Metrics {
    fn called(&self, project: &str, op: &'static str, outcome: &'static str) {
        self.kv_calls.get_or_create(&KvLabels { project: project.to_owned(), op, outcome }).inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_is_exported_by_kind_and_project() {
        let budget = Arc::new(Budget::default());
        let holding = budget.holding(Kind::Queued, budget.scope("p", Some("e")), 0);
        holding.cover(1).unwrap();
        budget.count_pause();
        let text = Metrics::new().with_budget(budget.clone()).encode().unwrap();
        let chunk = wasmsock_wire::limits::MEMORY_CHUNK;
        assert!(text.contains(&format!("wasmsock_memory_held_bytes{{kind=\"queued\"}} {chunk}")), "{text}");
        assert!(text.contains(&format!("wasmsock_memory_project_held_bytes{{project=\"p\"}} {chunk}")), "{text}");
        assert!(text.contains(r#"wasmsock_memory_refusals_total{kind="receiving"} 0"#), "{text}");
        assert!(text.contains("wasmsock_memory_pauses_total 1"), "{text}");
        assert!(text.contains(&format!("wasmsock_memory_budget_bytes {}", budget.limit())), "{text}");
    }

    #[test]
    fn every_metric_is_described_and_failures_are_classified() {
        let metrics = Metrics::new();
        let trap = CallError::Trap { handler: "p/h".into(), message: "unreachable".into() };
        metrics.event_handled("p/h", Method::OnMessage, Duration::from_millis(2), Some(&trap));
        metrics.record_queue_full_close("echo");
        metrics.deploy("handler", false);
        let text = metrics.encode().unwrap();
        // A family appears once one of its label sets has been used.
        for name in [
            "wasmsock_events",
            "wasmsock_handler_duration_seconds",
            "wasmsock_handler_failures",
            "wasmsock_queue_full_closes",
            "wasmsock_deploys",
        ] {
            assert!(text.contains(&format!("# HELP {name} ")), "{name} missing from:\n{text}");
        }
        assert!(text.contains(r#"wasmsock_handler_failures_total{handler="p/h",kind="trap"} 1"#), "{text}");
        assert!(text.contains(r#"wasmsock_events_total{handler="p/h",method="onmessage"} 1"#), "{text}");
        assert!(text.contains(r#"wasmsock_queue_full_closes_total{endpoint="echo"} 1"#), "{text}");
        assert!(text.contains(r#"wasmsock_deploys_total{source="admin",kind="handler",outcome="failed"} 1"#), "{text}");
        assert!(text.trim_end().ends_with("# EOF"), "{text}");
    }
}
