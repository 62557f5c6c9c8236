//! Outbound clients (`create-websocket`): connect without blocking the caller, queue sends until open, deliver the
//! same four events as inbound sessions to the handler named at creation, and optionally reconnect with backoff.

use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Error as WsError;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::app::App;
use crate::event::EventKind;
use crate::frame::{self, Frame};
use crate::hub::{Conn, ConnError, ConnSpec, ConnState, Direction, Outbox};
use crate::session::{self, Ended};

/// How often a client waiting to reconnect checks whether it was closed meanwhile.
const RECONNECT_POLL: Duration = Duration::from_millis(50);

/// Options of an outbound client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientOptions {
    /// Reconnect when the connection fails or the server ends it; none: the first end is final.
    pub reconnect: Option<Reconnect>,
}

/// An exponential backoff with jitter between reconnect attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconnect {
    /// The delay before the first attempt; doubled after each failed one.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
    /// Attempts in a row without an open connection before giving up; none: never.
    pub max_attempts: Option<u32>,
}

impl Reconnect {
    /// The delay before attempt `attempt` (1-based): `initial × 2^(attempt-1)`, capped at `max`, then scaled by a
    /// random factor in [0.5, 1] so that many clients of one server do not reconnect in lockstep.
    pub fn delay(&self, attempt: u32, random: u64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(30);
        let base = self.initial.saturating_mul(1 << exponent).min(self.max);
        let factor = 0.5 + (random % 1000) as f64 / 2000.0;
        base.mul_f64(factor)
    }
}

/// Starts an outbound client to `uri` whose events go to `handler`. Returns at once, with the client connecting.
pub fn create(app: &Arc<App>, uri: &str, handler: &str, options: ClientOptions) -> Result<Arc<Conn>, ConnError> {
    if app.is_shutting_down() {
        return Err(ConnError::Closed);
    }
    let lower = uri.to_ascii_lowercase();
    if !(lower.starts_with("ws://") || lower.starts_with("wss://")) {
        return Err(ConnError::Invalid(format!("uri {uri:?} must start with ws:// or wss://")));
    }
    uri.into_client_request().map_err(|err| ConnError::Invalid(format!("uri {uri:?}: {err}")))?;
    app.registry.check_handler(handler).map_err(|err| ConnError::Invalid(format!("{err:#}")))?;
    if app.hub.outbound() >= app.limits.max_clients {
        return Err(ConnError::Limit(format!(
            "the host has its limit of {} outbound clients open (serve --max-clients)",
            app.limits.max_clients
        )));
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
        limits: app.limits.for_conn(None),
    };
    let (conn, outbox) = app.hub.register(spec, ConnState::Connecting);
    app.metrics.connection_opened(&conn);
    tracing::debug!(conn = conn.id(), %uri, handler, "client connecting");
    let span = crate::logging::connection_span(&conn);
    tokio::spawn(tracing::Instrument::instrument(run(app.clone(), conn.clone(), outbox, options), span));
    Ok(conn)
}

fn config(app: &App) -> WebSocketConfig {
    let limits = &app.limits;
    WebSocketConfig::default()
        .read_buffer_size(limits.read_buffer)
        .max_message_size(Some(limits.max_message_size))
        .max_frame_size(Some(limits.max_frame_size))
}

fn ws_error(err: &WsError) -> Option<&WsError> {
    Some(err)
}

/// Connects once; on success runs the connection until it ends.
async fn attempt(
    app: &Arc<App>,
    conn: &Arc<Conn>,
    uri: &str,
    outbox: Outbox,
) -> Result<(Outbox, Ended), (Outbox, String)> {
    let connect = tokio_tungstenite::connect_async_with_config(uri, Some(config(app)), false);
    match tokio::time::timeout(app.limits.connect_timeout, connect).await {
        Ok(Ok((socket, _response))) => {
            tracing::debug!(conn = conn.id(), %uri, "client open");
            let (sink, stream) = socket.split();
            let sink = sink.with(|frame: Frame| std::future::ready(Ok::<_, WsError>(frame.into())));
            Ok(session::run_open(app, conn, outbox, frame::frames(stream, ws_error), sink).await)
        }
        Ok(Err(err)) => Err((outbox, format!("connecting to {uri} failed: {err}"))),
        Err(_) => Err((outbox, format!("connecting to {uri} timed out after {:?}", app.limits.connect_timeout))),
    }
}

async fn run(app: Arc<App>, conn: Arc<Conn>, mut outbox: Outbox, options: ClientOptions) {
    let _running = app.track();
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
async fn report_unsent(app: &Arc<App>, conn: &Arc<Conn>, outbox: &mut Outbox, failure: String) {
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
        Frame::Text(text) => format!("{text:?}"),
        Frame::Binary(data) => format!("<{} bytes>", data.len()),
        Frame::Close(_) | Frame::Ping(_) | Frame::Pong(_) => "<control frame>".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter_in_the_upper_half() {
        let policy = Reconnect { initial: Duration::from_millis(100), max: Duration::from_secs(1), max_attempts: None };
        for (attempt, base_ms) in [(1, 100u64), (2, 200), (3, 400), (4, 800), (5, 1000), (40, 1000)] {
            for random in [0, 499, 999, 123_456_789] {
                let delay = policy.delay(attempt, random);
                assert!(delay >= Duration::from_millis(base_ms / 2), "attempt {attempt}: {delay:?}");
                assert!(delay <= Duration::from_millis(base_ms), "attempt {attempt}: {delay:?}");
            }
        }
    }
}
