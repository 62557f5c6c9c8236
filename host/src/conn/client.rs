//! Outbound clients (`create-websocket`): connect without blocking the caller, queue sends until open, deliver the
//! same four events as inbound sessions to the handler named at creation, and optionally reconnect with backoff. What a
//! client holds being received counts against the memory budget as an inbound session's does, in its project's share.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::{IntoClientRequest, uri_mode};
use tokio_tungstenite::tungstenite::error::{TlsError, UrlError};
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::stream::Mode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use wasmsock_wire::deflate::Compression;
use wasmsock_wire::frame::{self, Frame};
use wasmsock_wire::limits::DEFAULT_CLIENT_READ_BUFFER;
use wasmsock_wire::{ClientOptions, ConnError, ConnState, Direction, EventKind, Limits};

use super::ConnHost;
use super::deflate_client;
use super::deflated::Deflated;
use super::hub::{Conn, ConnSpec, Outbox};
use super::session::{self, Ended};
use crate::budget::{Budgeted, Kind, Receiving};

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
        .read_buffer_size(DEFAULT_CLIENT_READ_BUFFER)
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_frame_size))
}

/// A client's socket: its reads (of plaintext, under TLS for `wss://`) go through the memory budget's gate.
type Socket = WebSocketStream<Budgeted<MaybeTlsStream<TcpStream>>>;

/// What an attempt connected: a plain socket, or one offering permessage-deflate (yawc). Held only until it is split
/// (the halves share one allocation), so the sizes of the two need not match.
#[allow(clippy::large_enum_variant)]
enum Opened {
    Plain(Socket),
    Deflated(Deflated<Budgeted<MaybeTlsStream<TcpStream>>>),
}

/// Connects to `uri` (see [`connect`]); with `compression`, offering permessage-deflate.
async fn open(
    uri: &str,
    limits: &Limits,
    compression: Option<Compression>,
    tls: Arc<rustls::ClientConfig>,
    receiving: Arc<Receiving>,
) -> Result<Opened, String> {
    let Some(compression) = compression else {
        return connect(uri, config(limits), tls, receiving).await.map(Opened::Plain).map_err(|err| err.to_string());
    };
    let (request, stream) = stream(uri, tls, receiving).await.map_err(|err| err.to_string())?;
    let conn_limits = limits.for_conn(None);
    deflate_client::handshake(stream, &request, compression, &conn_limits, DEFAULT_CLIENT_READ_BUFFER)
        .await
        .map(Opened::Deflated)
        .map_err(|err| format!("{err:#}"))
}

/// Connects to `uri` as tokio-tungstenite's `connect_async_tls_with_config` does (the same request and its host, the
/// scheme's default port, Nagle off, rustls with `tls` for `wss://`), except that what is read from the connection
/// (after TLS, so what it holds) is counted into `receiving` and waits for the memory budget.
async fn connect(
    uri: &str,
    config: WebSocketConfig,
    tls: Arc<rustls::ClientConfig>,
    receiving: Arc<Receiving>,
) -> Result<Socket, WsError> {
    let (request, stream) = stream(uri, tls, receiving).await?;
    let (socket, _response) = tokio_tungstenite::client_async_with_config(request, stream, Some(config)).await?;
    Ok(socket)
}

/// The request for `uri` and its connection, not yet upgraded: TCP (Nagle off), rustls with `tls` for `wss://`, and
/// the budget's gate over what is read.
async fn stream(
    uri: &str,
    tls: Arc<rustls::ClientConfig>,
    receiving: Arc<Receiving>,
) -> Result<(Request, Budgeted<MaybeTlsStream<TcpStream>>), WsError> {
    let request = uri.into_client_request()?;
    let mode = uri_mode(request.uri())?;
    let host = request.uri().host().ok_or(WsError::Url(UrlError::NoHostName))?;
    // An IPv6 literal without its brackets, as rustls and the resolver want it.
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host).to_owned();
    let port = request.uri().port_u16().unwrap_or(match mode {
        Mode::Tls => 443,
        Mode::Plain => 80,
    });
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(WsError::Io)?;
    tcp.set_nodelay(true).map_err(WsError::Io)?;
    let stream = match mode {
        Mode::Plain => MaybeTlsStream::Plain(tcp),
        Mode::Tls => {
            let name = ServerName::try_from(host).map_err(|_| WsError::Tls(TlsError::InvalidDnsName))?;
            let tls = tokio_rustls::TlsConnector::from(tls).connect(name, tcp).await.map_err(WsError::Io)?;
            MaybeTlsStream::Rustls(tls)
        }
    };
    Ok((request, Budgeted::new(stream, receiving)))
}

/// Connects once; on success runs the connection until it ends.
async fn attempt<H: ConnHost>(
    app: &Arc<H>,
    conn: &Arc<Conn>,
    uri: &str,
    outbox: Outbox,
    receiving: &Arc<Receiving>,
    compression: Option<Compression>,
) -> Result<(Outbox, Ended), (Outbox, String)> {
    // A fresh socket: nothing held or refused yet.
    receiving.restart();
    // wss:// is verified against the host's roots (the system's and `serve --ca-file`), never a process default.
    let connect = open(uri, app.limits(), compression, app.outbound_tls(), Arc::clone(receiving));
    let connect_timeout = app.limits().connect_timeout;
    match tokio::time::timeout(connect_timeout, connect).await {
        Ok(Ok(socket)) => {
            tracing::debug!(conn = conn.id(), %uri, "client open");
            let ended = match socket {
                Opened::Plain(socket) => {
                    let (sink, stream) = socket.split();
                    let sink = sink.with(|frame: Frame| std::future::ready(Ok::<_, WsError>(frame.into())));
                    let stream = frame::frames(stream, frame::from_tungstenite, frame::tungstenite_error);
                    session::run_open(app.clone(), conn.clone(), outbox, stream, sink).await
                }
                Opened::Deflated(socket) => {
                    let (sink, stream) = socket.split();
                    session::run_open(app.clone(), conn.clone(), outbox, stream, sink).await
                }
            };
            // The socket is gone, and with it what it held.
            receiving.delivered();
            Ok(ended)
        }
        Ok(Err(err)) => Err((outbox, format!("connecting to {uri} failed: {err}"))),
        Err(_) => Err((outbox, format!("connecting to {uri} timed out after {connect_timeout:?}"))),
    }
}

async fn run<H: ConnHost>(app: Arc<H>, conn: Arc<Conn>, mut outbox: Outbox, options: ClientOptions) {
    let _running = app.hub().track();
    let uri = conn.info().uri;
    // What it holds being received, in its project's share (a client has no endpoint).
    let receiving = Arc::new(Receiving::default());
    let budget = app.hub().budget();
    let project = wasmsock_wire::descriptor::project_of(conn.handler());
    receiving.start(budget.connection_holding(Kind::Receiving, budget.scope(project, None)));
    conn.set_receiving(Arc::clone(&receiving));
    let random = RandomState::new();
    let mut failed_attempts = 0u32;
    loop {
        if options.grants
            && let Err(refused) = app.may_connect(project, &uri)
        {
            // No grant any more (a deploy removed it): the end, however the client was to reconnect.
            tracing::warn!(conn = conn.id(), handler = conn.handler(), "client not connected: {refused}");
            report_unsent(&app, &conn, &mut outbox, refused.to_string()).await;
            break;
        }
        let failure = match attempt(&app, &conn, &uri, outbox, &receiving, options.compression).await {
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
                tracing::warn!(conn = conn.id(), handler = conn.handler(), attempt = failed_attempts, "{failure}");
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
