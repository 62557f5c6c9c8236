//! Outbound clients (`create-websocket`): connect without blocking the caller, queue sends until open, deliver the
//! same four events as inbound sessions to the handler named at creation, and optionally reconnect with backoff.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use wasmsock_wire::frame::{self, Frame};
use wasmsock_wire::{ClientOptions, ConnError, ConnState, Direction, EventKind, Limits};

use super::ConnHost;
use super::hub::{Conn, ConnSpec, Outbox};
use super::session::{self, Ended};

/// How often a client waiting to reconnect checks whether it was closed meanwhile.
const RECONNECT_POLL: Duration = Duration::from_millis(50);

/// Starts an outbound client to `uri` whose events go to `handler` (a handler the caller has checked exists). Returns at
/// once, with the client connecting.
pub fn create<H: ConnHost>(
    app: &Arc<H>,
    uri: &str,
    handler: &str,
    options: ClientOptions,
) -> Result<Arc<Conn>, ConnError> {
    if app.hub().is_shutting_down() {
        return Err(ConnError::Closed);
    }
    check_uri(uri)?;
    let max_clients = app.limits().max_clients;
    if app.hub().outbound() >= max_clients {
        return Err(ConnError::Limit(format!(
            "the host has its limit of {max_clients} outbound clients open (serve --max-clients)"
        )));
    }
    let project = wasmsock_wire::descriptor::project_of(handler);
    let quota = app.quotas(project).clients;
    if app.hub().outbound_of(project) >= quota {
        let refused = crate::fair::QuotaRefused {
            project: project.to_owned(),
            quota: "clients",
            what: "outbound clients",
            limit: quota as u64,
        };
        app.metrics().quota_refused(project, refused.quota);
        return Err(ConnError::Limit(refused.to_string()));
    }
    if let Some(reconnect) = &options.reconnect
        && reconnect.initial.is_zero()
    {
        return Err(ConnError::Invalid("reconnect initial-delay-ms must be at least 1".into()));
    }
    let spec = ConnSpec {
        uri: uri.to_owned(),
        handler: handler.to_owned(),
        endpoint: None,
        direction: Direction::Outbound,
        remote: None,
        protocol: None,
        limits: app.limits().for_conn(None),
    };
    let (conn, outbox) = app.hub().register(spec, ConnState::Connecting);
    app.metrics().connection_opened(conn.endpoint(), conn.direction());
    tracing::debug!(conn = conn.id(), %uri, handler, "client connecting");
    let span = super::connection_span(&conn);
    tokio::spawn(tracing::Instrument::instrument(run(app.clone(), conn.clone(), outbox, options), span));
    Ok(conn)
}

/// Checks that `uri` is one a client can connect to: `ws://` or `wss://`, and a request the connector accepts.
pub fn check_uri(uri: &str) -> Result<(), ConnError> {
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
        return Err(ConnError::Invalid(format!("uri {uri:?} must start with ws:// or wss://")));
    }
    uri.into_client_request().map_err(|err| ConnError::Invalid(format!("uri {uri:?}: {err}")))?;
    Ok(())
}

fn config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(wasmsock_wire::limits::DEFAULT_CLIENT_READ_BUFFER)
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_frame_size))
}

fn ws_error(err: &WsError) -> Option<&WsError> {
    Some(err)
}

/// Connects once; on success runs the connection until it ends.
async fn attempt<H: ConnHost>(
    app: &Arc<H>,
    conn: &Arc<Conn>,
    uri: &str,
    outbox: Outbox,
) -> Result<(Outbox, Ended), (Outbox, String)> {
    // wss:// is verified against the host's roots (the system's and `serve --ca-file`), never a process default.
    let tls = Some(tokio_tungstenite::Connector::Rustls(app.outbound_tls()));
    let connect = tokio_tungstenite::connect_async_tls_with_config(uri, Some(config(app.limits())), true, tls);
    let connect_timeout = app.limits().connect_timeout;
    match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok((socket, _response))) => {
            tracing::debug!(conn = conn.id(), %uri, "client open");
            let (sink, stream) = socket.split();
            let sink = sink.with(|frame: Frame| std::future::ready(Ok::<_, WsError>(frame.into())));
            let stream = frame::frames(stream, frame::from_tungstenite, ws_error);
            Ok(session::run_open(app.clone(), conn.clone(), outbox, stream, sink).await)
        }
        Ok(Err(err)) => Err((outbox, format!("connecting to {uri} failed: {err}"))),
        Err(_) => Err((outbox, format!("connecting to {uri} timed out after {connect_timeout:?}"))),
    }
}

async fn run<H: ConnHost>(app: Arc<H>, conn: Arc<Conn>, mut outbox: Outbox, options: ClientOptions) {
    let _running = app.hub().track();
    let uri = conn.info().uri;
    let random = RandomState::new();
    let mut failed_attempts = 0u32;
    loop {
        let failure = match attempt(&app, &conn, &uri, outbox).await {
            Ok((returned, ended)) => {
                outbox = returned;
                failed_attempts = 0;
                if ended == Ended::ByHost {
                    break;
                }
                None
            }
            Err((returned, failure)) => {
                outbox = returned;
                failed_attempts += 1;
                Some(failure)
            }
        };
        let Some(policy) = &options.reconnect else {
            if let Some(failure) = failure {
                report_unsent(&app, &conn, &mut outbox, failure).await;
            }
            break;
        };
        if policy.max_attempts.is_some_and(|max| failed_attempts >= max) {
            let failure = failure.unwrap_or_default();
            report_unsent(&app, &conn, &mut outbox, format!("{failure}; giving up after {failed_attempts} attempt(s)"))
                .await;
            break;
        }
        if !conn.reopen() {
            break;
        }
        let delay = policy.delay(failed_attempts + 1, random.hash_one((conn.id(), failed_attempts)));
        if let Some(failure) = failure {
            app.dispatch(&conn, EventKind::Error(format!("{failure}; reconnecting in {delay:?}"))).await;
        }
        tracing::debug!(conn = conn.id(), ?delay, "client reconnecting");
        if !wait_unless_closed(&conn, delay).await {
            break;
        }
    }
    session::finish(&app, &conn).await;
}

/// Sleeps for `delay` unless the host closes the client meanwhile; returns whether it is still wanted.
async fn wait_unless_closed(conn: &Conn, delay: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + delay;
    while tokio::time::Instant::now() < deadline {
        if conn.closed_by_host() {
            return false;
        }
        tokio::time::sleep(RECONNECT_POLL.min(deadline - tokio::time::Instant::now())).await;
    }
    !conn.closed_by_host()
}

/// Reports a final connect failure as onerror, naming the messages that were queued and will not be sent.
async fn report_unsent<H: ConnHost>(app: &Arc<H>, conn: &Arc<Conn>, outbox: &mut Outbox, failure: String) {
    conn.advance(ConnState::Closing);
    let unsent: Vec<String> = outbox.drain().iter().filter(|f| !f.is_close()).map(describe).collect();
    let message = if unsent.is_empty() {
        failure
    } else {
        format!("{failure}; {} queued message(s) were not sent: {}", unsent.len(), unsent.join(", "))
    };
    tracing::debug!(conn = conn.id(), "{message}");
    app.dispatch(conn, EventKind::Error(message)).await;
}

fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Text(text) => format!("{:?}", text.as_str()),
        Frame::Binary(data) => format!("<{} bytes>", data.len()),
        Frame::Close(_) | Frame::Ping(_) | Frame::Pong(_) => "<control frame>".into(),
    }
}
