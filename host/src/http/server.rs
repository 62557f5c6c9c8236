//! The HTTP side: the router serving endpoints at `/websockets/service/{endpoint}` (and the seed's `/websockets/v4/…`),
//! the checks before an upgrade (origin, connection limits), and serving the main listener (`listener.rs`: handshake
//! deadline, TLS) and the admin listener until shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::{OriginalUri, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio_tungstenite::tungstenite::Error as WsError;
use tracing::Instrument as _;

use wasmsock_wire::frame::{self, Frame, PeerError};
use wasmsock_wire::{ConnLimits, ConnState, Direction};

use super::listener::{GuardedListener, Peer};
use super::upgrade;
use crate::app::App;
use crate::budget::{Kind, Receiving};
use crate::conn::{Admission, ConnSpec, NotAdmitted, connection_span, session};
use crate::control::registry::Endpoint;
use wasmsock_wire::descriptor::project_of;

/// The router for one host. Bind it with [`serve`], or with `axum::serve` on a listener of your own.
pub fn app(state: Arc<App>) -> Router {
    Router::new()
        .route("/websockets/service/{endpoint}", get(upgrade))
        .route("/websockets/v4/service/{endpoint}", get(upgrade))
        .merge(super::console::router())
        .with_state(state)
}

/// An HTTP error a person can act on.
#[derive(Debug)]
pub struct HttpError {
    status: StatusCode,
    message: String,
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        (self.status, self.message).into_response()
    }
}

async fn upgrade(
    State(app): State<Arc<App>>,
    Path(endpoint): Path<String>,
    OriginalUri(uri): OriginalUri,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, HttpError> {
    let refuse = |status, message: String| HttpError { status, message: message + "\n" };
    let Some(endpoint) = app.registry.endpoint(&endpoint) else {
        return Err(refuse(StatusCode::NOT_FOUND, format!("no endpoint {endpoint:?}")));
    };
    if app.is_shutting_down() {
        return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "the host is shutting down".into()));
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let allowed = endpoint.origins.as_deref().unwrap_or(&app.limits.origins);
    if !origin_allowed(origin, host, allowed) {
        tracing::info!(endpoint = %endpoint.name, origin, remote = %peer.addr, "refused a handshake from a foreign origin");
        let origin = origin.unwrap_or_default();
        return Err(refuse(StatusCode::FORBIDDEN, format!("origin {origin:?} may not connect to {}", endpoint.name)));
    }
    // Every upgrade is the host's own (`upgrade.rs`): a compressing endpoint's socket is yawc's, the others' tungstenite's.
    let compression = endpoint.compression(app.limits.compression);
    let (mut parts, _body) = request.into_parts();
    let handshake = upgrade::handshake(&mut parts, &endpoint.protocols)
        .map_err(|(status, message)| HttpError { status, message: message + "\n" })?;
    let endpoint_max = endpoint.limits.max_connections.unwrap_or(app.limits.max_endpoint_connections);
    let project = project_of(&endpoint.handler);
    let project_max = app.runtime.scheduler().quotas(project).connections;
    let admission = app
        .hub
        .admit(&endpoint.name, endpoint_max, app.limits.max_connections, project, project_max)
        .map_err(|why| {
            if let NotAdmitted::Quota(refused) = &why {
                app.metrics.quota_refused(project, refused.quota);
            }
            refuse(StatusCode::SERVICE_UNAVAILABLE, why.to_string())
        })?;
    let limits = app.limits.for_conn(Some(&endpoint.limits));
    let project = endpoint.handler.split('/').next().unwrap_or_default();
    let budget = app.hub.budget();
    peer.receiving.start(budget.connection_holding(Kind::Receiving, budget.scope(project, Some(&endpoint.name))));
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_else(|| uri.path().to_owned());
    peer.finish_handshake();
    let protocol = handshake.protocol.clone();
    let name = endpoint.name.clone();
    let start = SessionStart { endpoint, path, remote: peer.addr, limits, admission, receiving: peer.receiving };
    let response = match compression {
        Some(compression) => {
            let (response, socket) = handshake.accept(compression, &start.limits, app.limits.read_buffer);
            tokio::spawn(async move {
                match socket.await {
                    Ok(socket) => {
                        let (sink, stream) = socket.split();
                        serve_session(app, start, protocol, stream, sink).await;
                    }
                    Err(err) => tracing::debug!(endpoint = %name, "{err:#}"),
                }
            });
            response
        }
        None => {
            let (response, socket) = handshake.accept_plain(&start.limits, app.limits.read_buffer);
            tokio::spawn(async move {
                match socket.await {
                    Ok(socket) => {
                        let (sink, stream) = socket.split();
                        let sink = sink.with(|frame: Frame| std::future::ready(Ok::<_, WsError>(frame.into())));
                        let stream = frame::frames(stream, frame::from_tungstenite, frame::tungstenite_error);
                        serve_session(app, start, protocol, stream, sink).await;
                    }
                    Err(err) => tracing::debug!(endpoint = %name, "{err:#}"),
                }
            });
            response
        }
    };
    Ok(response)
}

/// Whether a handshake with this `Origin` may go on: requests without one (not from a browser) and same-origin ones
/// always may; others when `allowed` lists their origin or `*`.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else { return true };
    if allowed.iter().any(|a| a == "*" || a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin.split_once("://").map(|(_, rest)| rest);
    matches!((authority, host), (Some(authority), Some(host)) if authority.eq_ignore_ascii_case(host))
}

/// What an accepted handshake hands to its session.
struct SessionStart {
    endpoint: Arc<Endpoint>,
    path: String,
    remote: SocketAddr,
    limits: ConnLimits,
    admission: Admission,
    receiving: Arc<Receiving>,
}

/// Registers an upgraded connection and returns its session, which holds the admission until it ends. Not an `async
/// fn`: its future would keep its arguments (this start and the socket's halves, already moved into the session) for
/// the connection's whole life.
fn serve_session<St, Si>(
    app: Arc<App>,
    start: SessionStart,
    protocol: Option<String>,
    stream: St,
    sink: Si,
) -> impl Future<Output = ()> + Send + 'static
where
    St: Stream<Item = Result<Frame, PeerError>> + Unpin + Send + 'static,
    Si: Sink<Frame> + Unpin + Send + 'static,
    Si::Error: std::fmt::Display,
{
    let SessionStart { endpoint, path, remote, limits, admission, receiving } = start;
    let spec = ConnSpec {
        uri: path,
        handler: endpoint.handler.clone(),
        endpoint: Some(endpoint.name.clone()),
        direction: Direction::Inbound,
        remote: Some(remote),
        protocol,
        limits,
    };
    let (conn, outbox) = app.hub.register(spec, ConnState::Open);
    conn.set_receiving(receiving);
    app.metrics.connection_opened(conn.endpoint(), conn.direction());
    tracing::debug!(conn = conn.id(), endpoint = %endpoint.name, "session opened");
    let span = connection_span(&conn);
    let session = session::run(app, conn, outbox, stream, sink).instrument(span);
    FutureExt::map(session, move |()| drop(admission))
}

/// The admin API's listener and the token its requests must carry, if any.
#[derive(Debug)]
pub struct AdminListener {
    /// The bound listener.
    pub listener: tokio::net::TcpListener,
    /// The bearer token; required off loopback.
    pub token: Option<String>,
}

/// Serves `app` on `listener` (and the admin API on `admin`) until `shutdown` resolves; then drains the live
/// connections (every handler sees onclose) and stops both listeners.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    admin: Option<AdminListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    serve_tls(app, listener, None, admin, shutdown).await
}

/// Like [`serve`], with `wss://` on the main listener when `tls` is given (see `crate::conn::tls::server_config`).
pub async fn serve_tls(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    admin: Option<AdminListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let router = self::app(app.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let drain = app.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Close every session first so their handlers see onclose while the server still runs.
        drain.shutdown().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin_task = admin.map(|admin| {
        let router = super::admin::router(app.clone(), admin.token);
        let stop = stopped(stop_rx.clone());
        let listener = GuardedListener::new(admin.listener, app.limits.handshake_timeout, None);
        tokio::spawn(async move {
            axum::serve(listener, router.into_make_service_with_connect_info::<Peer>())
                .with_graceful_shutdown(stop)
                .await
        })
    });
    let listener = GuardedListener::new(listener, app.limits.handshake_timeout, tls);
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<Peer>())
        .with_graceful_shutdown(stopped(stop_rx))
        .await
        .context("serving WebSockets");
    if let Some(task) = admin_task {
        task.await.context("the admin task failed")?.context("serving the admin API")?;
    }
    served
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_checked_against_the_list_and_the_host() {
        let none: Vec<String> = Vec::new();
        let list = vec!["https://app.example".to_owned()];
        let any = vec!["*".to_owned()];
        assert!(origin_allowed(None, Some("h:1"), &none), "no Origin: not a browser");
        assert!(origin_allowed(Some("http://h:1"), Some("h:1"), &none), "same origin");
        assert!(!origin_allowed(Some("http://evil.example"), Some("h:1"), &none));
        assert!(origin_allowed(Some("https://APP.example"), Some("h:1"), &list));
        assert!(!origin_allowed(Some("https://app.example.evil"), Some("h:1"), &list));
        assert!(origin_allowed(Some("http://h:1"), Some("h:1"), &list), "same origin is always allowed");
        assert!(origin_allowed(Some("null"), Some("h:1"), &any));
        assert!(!origin_allowed(Some("null"), Some("h:1"), &list));
    }
}
