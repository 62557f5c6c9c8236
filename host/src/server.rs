//! The HTTP side: the router serving endpoints at `/websockets/service/{endpoint}` (and the seed's `/websockets/v4/…`),
//! the upgrade, and serving the main and admin listeners until shutdown.

use std::error::Error as _;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::extract::connect_info::ConnectInfo;
use axum::extract::ws::{WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, Path, State};
use axum::http::{Extensions, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Error as WsError;
use tracing::Instrument as _;

use crate::app::App;
use crate::frame::Frame;
use crate::hub::{ConnSpec, ConnState, Direction};
use crate::registry::Endpoint;
use crate::session;

/// The router for one host. Bind it with [`serve`], or with `axum::serve` on a listener of your own.
pub fn app(state: Arc<App>) -> Router {
    Router::new()
        .route("/websockets/service/{endpoint}", get(upgrade))
        .route("/websockets/v4/service/{endpoint}", get(upgrade))
        .merge(crate::console::router())
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
    extensions: Extensions,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, HttpError> {
    let Some(endpoint) = app.registry.endpoint(&endpoint) else {
        return Err(HttpError { status: StatusCode::NOT_FOUND, message: format!("no endpoint {endpoint:?}\n") });
    };
    if app.is_shutting_down() {
        return Err(HttpError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the host is shutting down\n".into(),
        });
    }
    let ws = ws.map_err(|rejection| HttpError { status: rejection.status(), message: rejection.body_text() })?;
    let limits = &app.limits;
    let ws = ws
        .read_buffer_size(limits.read_buffer)
        .max_message_size(limits.max_message_size)
        .max_frame_size(limits.max_frame_size);
    let path = uri.path_and_query().map(|p| p.to_string()).unwrap_or_else(|| uri.path().to_owned());
    let remote = extensions.get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
    Ok(ws.on_upgrade(move |socket| serve_session(app, endpoint, path, remote, socket)))
}

fn ws_error(err: &axum::Error) -> Option<&WsError> {
    err.source().and_then(|source| source.downcast_ref::<WsError>())
}

async fn serve_session(
    app: Arc<App>,
    endpoint: Arc<Endpoint>,
    uri: String,
    remote: Option<SocketAddr>,
    socket: WebSocket,
) {
    let spec = ConnSpec {
        uri,
        handler: endpoint.handler.clone(),
        endpoint: Some(endpoint.name.clone()),
        direction: Direction::Inbound,
        remote,
    };
    let (conn, outbox) = app.hub.register(spec, ConnState::Open);
    app.metrics.connection_opened(&conn);
    tracing::debug!(conn = conn.id(), endpoint = %endpoint.name, "session opened");
    let (sink, stream) = socket.split();
    let sink = sink.with(|frame: Frame| std::future::ready(Ok::<_, axum::Error>(frame.into())));
    let span = crate::logging::connection_span(&conn);
    session::run(app, conn, outbox, session::frames(stream, ws_error), sink).instrument(span).await;
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
        let router = crate::admin::router(app.clone(), admin.token);
        let stop = stopped(stop_rx.clone());
        tokio::spawn(async move {
            axum::serve(admin.listener, router.into_make_service_with_connect_info::<SocketAddr>())
                .with_graceful_shutdown(stop)
                .await
        })
    });
    let served = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(stopped(stop_rx))
        .await
        .context("serving WebSockets");
    if let Some(task) = admin_task {
        task.await.context("the admin task failed")?.context("serving the admin API")?;
    }
    served
}
