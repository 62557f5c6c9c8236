//! The connection layer: every live connection (the hub), one connection's life from open to onclose whatever its
//! socket (the session), and outbound clients. It hands events up through [`ConnHost`] and knows neither the app
//! that implements it nor the HTTP side that accepts inbound sessions.

pub mod client;
mod deflate_client;
pub mod deflated;
pub mod fetch;
pub mod hub;
pub mod precompressed;
mod queue;
pub mod session;
mod timers;
pub mod tls;

use std::future::Future;
use std::sync::Arc;

use wasmsock_wire::{ConnError, Direction, EventKind, Limits};

use crate::control::metrics::Metrics;
pub use hub::{Admission, Conn, ConnSpec, ConnStats, Hub, NotAdmitted, Outbox, Resolved};

/// What the connection layer needs from the host it runs in: the hub, the limits, the metrics, and where events go.
pub trait ConnHost: Send + Sync + 'static {
    /// Every live connection.
    fn hub(&self) -> &Hub;
    /// The limits in force.
    fn limits(&self) -> &Limits;
    /// The host's metrics.
    fn metrics(&self) -> &Metrics;
    /// The quotas `project` runs with (its manifest's, else the host's).
    fn quotas(&self, project: &str) -> wasmsock_wire::ProjectQuotas;
    /// The TLS config outbound `wss://` clients verify servers with.
    fn outbound_tls(&self) -> Arc<rustls::ClientConfig>;
    /// Runs one event of `conn` through its handler; resolves when the handler is done with it, to when that was.
    fn dispatch(&self, conn: &Arc<Conn>, kind: EventKind) -> impl Future<Output = std::time::Instant> + Send;
    /// Whether a client of `project` may connect to `uri` now, by the project's outbound grants (asked before every
    /// attempt of a handler's client, so a grant removed by a deploy stops its reconnects).
    fn may_connect(&self, project: &str, uri: &str) -> Result<(), ConnError>;
    /// `conn` has ended for good and its onclose has run: whatever the host keeps for it (channel memberships) goes.
    fn ended(&self, conn: &Arc<Conn>);
}

/// The span a connection's tasks run in: its id, endpoint (empty for an outbound client), handler and direction. A
/// debug span: at the default level it is not created, entered on every poll of the connection's tasks, nor kept in
/// the subscriber's registry for the connection's life; every line about a connection carries its `conn` (and a
/// handler's lines their `handler`) as fields instead.
pub fn connection_span(conn: &Conn) -> tracing::Span {
    let direction = match conn.direction() {
        Direction::Inbound => "inbound",
        Direction::Outbound => "outbound",
    };
    tracing::debug_span!(
        "connection",
        conn = conn.id(),
        endpoint = conn.endpoint().unwrap_or_default(),
        handler = conn.handler(),
        direction
    )
}
