//! Where an event crosses into wasm: the app runs one event of a connection through its endpoint's handler in the
//! instance its lifecycle asks for, applies the failure policy, and serves the handler's imports ([`HostServices`]).

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use wasmsock_wire::descriptor::project_of;
use wasmsock_wire::frame::MAX_CLOSE_REASON;
use wasmsock_wire::{ClientInfo, ClientOptions, Close, ConnError, EventKind, Frame, Limits, Method};

use super::App;
use crate::conn::{Conn, ConnHost, Hub, Resolved};
use crate::control::metrics::Metrics;
use crate::runtime::{
    CallError, Connection, Event, Gathered, HistoryFuture, HostServices, HttpFuture, HttpRequestBody, Lookup,
    MembersSurvey, Survey,
};
use wasmsock_wire::history::{HistoryPage, Published, Recovery, StreamPosition};

impl App {
    /// Runs one event of `conn` through its handler. A failed onopen or onmessage is followed by an onerror that says
    /// why; every failure is logged with the handler and connection, and costs only this event. When the handler has
    /// failed `max-handler-failures` calls in a row on this connection, the connection is closed with 1011. Returns
    /// when the handler was done with it (the clock reading that timed it; the session counts the peer heard then).
    pub async fn dispatch(&self, conn: &Arc<Conn>, kind: EventKind) -> Instant {
        let method = kind.method();
        let Some(services) = self.services() else {
            return Instant::now();
        };
        let Some(resolved) = self.resolve(conn, method).await else {
            return Instant::now();
        };
        // One clock reading for the metric's start and the scheduler's (see `Event::started`).
        let started = Instant::now();
        let event = Event { conn: conn.clone(), kind, started };
        // At debug level: at the default level a span per event was a measurable part of an event's cost.
        let span = tracing::debug_span!("event", method = method.as_str());
        let (cell, lifecycle) = (resolved.cell.as_ref(), resolved.lifecycle);
        let call =
            self.instances.call_in(&self.runtime, cell, lifecycle, &resolved.handler.handler, event, services.clone());
        let result = tracing::Instrument::instrument(call, span).await;
        let ended = Instant::now();
        let elapsed = ended.saturating_duration_since(started);
        conn.handler_events(&self.metrics).handled(method, elapsed);
        tracing::trace!(conn = conn.id(), method = method.as_str(), ?elapsed, "event handled");
        if method == Method::OnClose {
            self.instances.forget_connection(conn.id());
            conn.set_resolved(None);
        }
        let Err(err) = result else {
            conn.count_success();
            return ended;
        };
        // Boxed: inline, the follow-up onerror call would make every event's future (and what is copied with it)
        // twice as large.
        Box::pin(self.failed(conn, method, err, &resolved, services)).await;
        Instant::now()
    }

    /// After a failed call of a `method` event of `conn`: logs it, closes the connection when no instance could take
    /// it or the handler failed too many events in a row, and runs onerror (saying why) after a failed onopen,
    /// onmessage or ontimer.
    async fn failed(
        &self,
        conn: &Arc<Conn>,
        method: Method,
        err: CallError,
        resolved: &Resolved,
        services: Arc<dyn HostServices>,
    ) {
        let Resolved { handler: loaded, lifecycle, cell, .. } = resolved;
        self.metrics.handler_failed(conn.handler(), &err);
        tracing::warn!(conn = conn.id(), handler = conn.handler(), method = method.as_str(), "{err}");
        if matches!(err, CallError::NoResidentSlot { .. }) {
            // No instance can take this connection's events: tell the peer to come back later.
            let _ = conn.request_close(Close::new(1013, "no handler instance free; try again later"));
            return;
        }
        if let CallError::Quota { refused, .. } = &err {
            // Its project has all the instances its quota allows: the same, naming the quota.
            let reason = format!(
                "quota {} ({}) of project {} reached; try again later",
                refused.quota, refused.limit, refused.project
            );
            let _ = conn.request_close(Close::new(1013, truncate(&reason, MAX_CLOSE_REASON)));
            return;
        }
        if method != Method::OnClose {
            self.count_failure(conn, &err.to_string());
        }
        if matches!(method, Method::OnOpen | Method::OnMessage | Method::OnTimer) {
            let started = Instant::now();
            let event = Event { conn: conn.clone(), kind: EventKind::Error(err.to_string()), started };
            let span = tracing::debug_span!("event", method = "onerror");
            let call =
                self.instances.call_in(&self.runtime, cell.as_ref(), *lifecycle, &loaded.handler, event, services);
            let result = tracing::Instrument::instrument(call, span).await;
            self.metrics.event_handled(conn.handler(), Method::OnError, started.elapsed(), result.as_ref().err());
            if let Err(err) = result {
                tracing::warn!(conn = conn.id(), handler = conn.handler(), method = "onerror", "{err}");
            }
        }
    }

    /// What the events of `conn` run in: kept with the connection while the registry does not change, else looked up
    /// (loading the handler at its first use). `None` after logging why when its handler cannot be loaded.
    async fn resolve(&self, conn: &Arc<Conn>, method: Method) -> Option<Resolved> {
        let generation = self.registry.generation();
        if let Some(resolved) = conn.resolved(generation) {
            return Some(resolved);
        }
        let handler = match self.registry.handler(&self.runtime, conn.handler()).await {
            Ok(loaded) => loaded,
            Err(err) => {
                tracing::error!(conn = conn.id(), handler = conn.handler(), method = method.as_str(), "{err:#}");
                return None;
            }
        };
        // Outbound clients have no endpoint: their events run per event.
        let lifecycle = conn.endpoint().and_then(|name| self.registry.endpoint(name)).map(|e| e.instance);
        let lifecycle = lifecycle.unwrap_or_default();
        let cell = self.instances.cell(lifecycle, handler.handler.name(), conn.id());
        let resolved = Resolved { generation, handler, lifecycle, cell };
        // Kept only where an instance is: a per-event connection's events cost far more than the lookups, and it
        // keeps no box for them.
        if resolved.cell.is_some() && method != Method::OnClose {
            conn.set_resolved(Some(resolved.clone()));
        }
        Some(resolved)
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
}

impl ConnHost for App {
    fn hub(&self) -> &Hub {
        &self.hub
    }

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn quotas(&self, project: &str) -> wasmsock_wire::ProjectQuotas {
        self.runtime.scheduler().quotas(project)
    }

    fn outbound_tls(&self) -> Arc<rustls::ClientConfig> {
        self.outbound_tls.clone()
    }

    fn dispatch(&self, conn: &Arc<Conn>, kind: EventKind) -> impl Future<Output = Instant> + Send {
        // Boxed: a session's future reserves room for everything it awaits, for its whole life. Inline, a handler
        // call (about 2 KB of state) made every idle connection 2 KB larger; boxed, it costs one allocation per event
        // and only while the event runs.
        Box::pin(App::dispatch(self, conn, kind))
    }

    fn may_connect(&self, project: &str, uri: &str) -> Result<(), ConnError> {
        self.registry
            .grants(project)
            .authorize(uri)
            .map(|_| ())
            .map_err(|err| ConnError::Invalid(format!("project {project:?} may not connect there: {err}")))
    }

    fn ended(&self, conn: &Arc<Conn>) {
        self.channels.leave_all(conn, &self.metrics);
    }
}

/// A handler's imports, scoped to its project: another project's connections are indistinguishable from none, and it
/// can create clients only for handlers of its own project, and only to destinations its project is granted. The operator (admin API, CLI) goes around this, through
/// the hub and [`App::create_client`].
impl HostServices for App {
    fn connection(&self, project: &str, id: &str) -> Option<Arc<dyn Connection>> {
        let conn = self.hub.get(id).filter(|conn| project_of(conn.handler()) == project)?;
        Some(conn)
    }

    fn remote_connection(&self, project: &str, id: &str) -> Lookup {
        let cluster = self.cluster().cloned();
        let (project, id) = (project.to_owned(), id.to_owned());
        Box::pin(async move { cluster?.lookup(&project, &id).await })
    }

    fn remote_connections(&self, project: &str) -> Survey {
        let cluster = self.cluster().cloned();
        let project = project.to_owned();
        Box::pin(async move {
            let Some(cluster) = cluster else { return Gathered::default() };
            let gathered = cluster.survey_clients(&project).await;
            if !gathered.missing_hosts.is_empty() {
                let missing = &gathered.missing_hosts;
                tracing::warn!(project, ?missing, "get-clients is partial: these hosts did not answer in time");
            }
            gathered
        })
    }

    fn connections(&self, project: &str) -> Vec<ClientInfo> {
        self.hub.all().iter().filter(|conn| project_of(conn.handler()) == project).map(|conn| conn.info()).collect()
    }

    fn client_by_handler(&self, project: &str, handler: &str) -> Lookup {
        if project_of(handler) != project {
            return Box::pin(std::future::ready(None));
        }
        if let Some(conn) = self.hub.by_handler(handler) {
            return Box::pin(std::future::ready(Some(conn as Arc<dyn Connection>)));
        }
        let cluster = self.cluster().cloned();
        let (project, handler) = (project.to_owned(), handler.to_owned());
        Box::pin(async move { cluster?.lookup_by_handler(&project, &handler).await })
    }

    fn create_websocket(
        &self,
        project: &str,
        uri: &str,
        handler: &str,
        options: ClientOptions,
    ) -> Result<Arc<dyn Connection>, ConnError> {
        if project_of(handler) != project {
            return Err(ConnError::Invalid(format!(
                "handler {handler:?} is not in project {project:?}: a handler can create clients only for handlers \
                 of its own project"
            )));
        }
        // Checked on the URI as parsed by the parser the connector uses (never by string prefix): userinfo, odd
        // numeric hosts and anything no grant of the project names are refused, naming the grant that is missing.
        crate::conn::client::check_uri(uri)?;
        ConnHost::may_connect(self, project, uri)?;
        // A handler's clients offer permessage-deflate when the host compresses by default (`serve --compression`).
        let compression = self.limits.compression.then(wasmsock_wire::deflate::Compression::default);
        let conn = self.create_client(uri, handler, ClientOptions { grants: true, compression, ..options })?;
        Ok(conn)
    }

    fn send_http(&self, project: &str, request: http::Request<HttpRequestBody>) -> HttpFuture {
        // The grants as they are now: a deploy removing one stops the next request.
        self.fetcher.send(project, self.registry.grants(project), request)
    }

    fn join(&self, project: &str, conn: &dyn Connection, channel: &str) -> Result<(), ConnError> {
        let conn = self.hub.get(conn.id()).ok_or(ConnError::Closed)?;
        self.channels.join(project, &conn, channel, &self.metrics)
    }

    fn leave(&self, project: &str, conn: &dyn Connection, channel: &str) -> Result<bool, ConnError> {
        self.channels.leave(project, conn.id(), channel, &self.metrics)
    }

    fn channels_of(&self, project: &str, conn: &dyn Connection) -> Vec<String> {
        self.channels.of(project, conn.id())
    }

    fn publish(&self, project: &str, channel: &str, frame: Frame, skip: Option<&str>) -> Result<u32, ConnError> {
        App::publish(self, project, channel, &frame, skip)
    }

    fn publish_with(&self, project: &str, channel: &str, frame: Frame, skip: Option<&str>) -> HistoryFuture<Published> {
        // Answered once the publication is kept (journal or broker): an acknowledged one survives the host's death.
        self.publish_positioned(project, channel, &frame, skip)
    }

    fn history(
        &self,
        project: &str,
        channel: &str,
        since: Option<StreamPosition>,
        limit: u32,
    ) -> HistoryFuture<HistoryPage> {
        self.read_history(project, channel, since, limit)
    }

    fn join_from(
        &self,
        project: &str,
        conn: &dyn Connection,
        channel: &str,
        since: Option<StreamPosition>,
        envelope: bool,
    ) -> HistoryFuture<Recovery> {
        App::join_from(self, project, conn.id(), channel, since, envelope)
    }

    fn members(&self, project: &str, channel: &str, after: Option<&str>, limit: u32) -> MembersSurvey {
        let Some(cluster) = self.cluster().cloned() else {
            let page = self.channels.members(project, channel, after, limit);
            return Box::pin(std::future::ready(page.map(|answer| Gathered { answer, missing_hosts: Vec::new() })));
        };
        let (project, channel, after) = (project.to_owned(), channel.to_owned(), after.map(str::to_owned));
        Box::pin(async move {
            let gathered = cluster.survey_members(&project, &channel, after.as_deref(), limit).await?;
            if !gathered.missing_hosts.is_empty() {
                let missing = &gathered.missing_hosts;
                tracing::warn!(
                    project,
                    channel,
                    ?missing,
                    "get-members is partial: these hosts did not answer in time"
                );
            }
            Ok(gathered)
        })
    }

    fn set_timer(
        &self,
        project: &str,
        conn: &dyn Connection,
        delay: std::time::Duration,
        payload: Vec<u8>,
    ) -> Result<u64, ConnError> {
        let conn =
            self.hub.get(conn.id()).filter(|conn| project_of(conn.handler()) == project).ok_or(ConnError::Closed)?;
        let quota = self.runtime.scheduler().quotas(project).timers;
        self.hub.set_timer(&conn, delay, payload.into(), quota).inspect_err(|err| {
            // The project's quota, not the connection's own cap of timers.
            if matches!(err, ConnError::Limit(_)) && self.hub.timers_of(project) >= quota {
                self.metrics.quota_refused(project, "timers");
            }
        })
    }

    fn cancel_timer(&self, project: &str, conn: &dyn Connection, id: u64) -> bool {
        let conn = self.hub.get(conn.id()).filter(|conn| project_of(conn.handler()) == project);
        conn.is_some_and(|conn| self.hub.cancel_timer(&conn, id))
    }

    fn kv(&self) -> &dyn crate::runtime::KvService {
        &self.store
    }

    fn config(&self, project: &str) -> Arc<wasmsock_wire::kv::ConfigSnapshot> {
        self.store.config(project)
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
