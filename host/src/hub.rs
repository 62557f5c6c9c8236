//! The connection registry: every live inbound session and outbound client, its state and its outbound queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::{Notify, mpsc};

use crate::frame::{Close, Frame};

/// Which side opened a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// A peer connected to one of our endpoints.
    Inbound,
    /// We connected out with `create-websocket`.
    Outbound,
}

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnState {
    /// An outbound client still connecting; sends are queued.
    Connecting = 0,
    /// Open both ways.
    Open = 1,
    /// A close frame was sent or received; sends are refused.
    Closing = 2,
    /// Gone.
    Closed = 3,
}

impl ConnState {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => ConnState::Connecting,
            1 => ConnState::Open,
            2 => ConnState::Closing,
            _ => ConnState::Closed,
        }
    }
}

/// What the host knows about one connection (the WIT `client-info`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClientInfo {
    /// Host-wide unique id.
    pub id: String,
    /// Request path and query (inbound) or the URI connected to (outbound).
    pub uri: String,
    /// The handler receiving this connection's events.
    pub handler: String,
    /// The endpoint of an inbound session.
    pub endpoint: Option<String>,
    /// Inbound or outbound.
    pub direction: Direction,
    /// The state when this was read.
    pub state: ConnState,
}

/// Why an operation on a connection did not happen (the WIT `error`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// No live connection has this id.
    #[error("no connection has id {0}")]
    UnknownClient(String),
    /// The connection is closing or closed.
    #[error("the connection is closing or closed")]
    Closed,
    /// An argument was not acceptable.
    #[error("invalid argument: {0}")]
    Invalid(String),
    /// A limit was reached.
    #[error("limit reached: {0}")]
    Limit(String),
}

/// What a new connection is, before it has an id.
#[derive(Debug, Clone)]
pub struct ConnSpec {
    /// See [`ClientInfo::uri`].
    pub uri: String,
    /// See [`ClientInfo::handler`].
    pub handler: String,
    /// See [`ClientInfo::endpoint`].
    pub endpoint: Option<String>,
    /// See [`ClientInfo::direction`].
    pub direction: Direction,
    /// The peer's address, for an inbound session.
    pub remote: Option<std::net::SocketAddr>,
}

/// One live connection as the rest of the host sees it. The socket itself belongs to its session task.
#[derive(Debug)]
pub struct Conn {
    seq: u64,
    id: String,
    spec: ConnSpec,
    state: AtomicU8,
    queue: mpsc::Sender<Frame>,
    capacity: usize,
    close: Mutex<Option<Close>>,
    close_requested: Notify,
    closing: Notify,
    closed_by_host: AtomicBool,
    opened: std::time::SystemTime,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
}

/// What the admin API shows of a live connection: its `client-info` and its traffic.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnStats {
    /// The connection as handlers see it.
    #[serde(flatten)]
    pub info: ClientInfo,
    /// The peer's address (inbound sessions).
    pub remote: Option<std::net::SocketAddr>,
    /// When the connection was registered, in milliseconds since the Unix epoch.
    pub connected_at_ms: u64,
    /// Data messages received.
    pub messages_in: u64,
    /// Data messages written to the socket.
    pub messages_out: u64,
}

impl Conn {
    /// The connection's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The handler receiving this connection's events.
    pub fn handler(&self) -> &str {
        &self.spec.handler
    }

    /// The connection's current state.
    pub fn state(&self) -> ConnState {
        ConnState::from_u8(self.state.load(Ordering::Acquire))
    }

    /// Moves the connection to `state`; states only move forward.
    pub fn advance(&self, state: ConnState) {
        self.state.fetch_max(state as u8, Ordering::AcqRel);
    }

    /// What the host knows about this connection now.
    pub fn info(&self) -> ClientInfo {
        ClientInfo {
            id: self.id.clone(),
            uri: self.spec.uri.clone(),
            handler: self.spec.handler.clone(),
            endpoint: self.spec.endpoint.clone(),
            direction: self.spec.direction,
            state: self.state(),
        }
    }

    /// The connection's info and traffic counters.
    pub fn stats(&self) -> ConnStats {
        let since_epoch = self.opened.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        ConnStats {
            info: self.info(),
            remote: self.spec.remote,
            connected_at_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
            messages_in: self.messages_in.load(Ordering::Relaxed),
            messages_out: self.messages_out.load(Ordering::Relaxed),
        }
    }

    /// Counts a data message received.
    pub fn count_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a data message written.
    pub fn count_out(&self) {
        self.messages_out.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether this is an inbound session or an outbound client.
    pub fn direction(&self) -> Direction {
        self.spec.direction
    }

    /// The endpoint of an inbound session.
    pub fn endpoint(&self) -> Option<&str> {
        self.spec.endpoint.as_deref()
    }

    /// Queues a data frame without waiting: a full queue is a `limit` error, a closing connection a `closed` one.
    pub fn send(&self, frame: Frame) -> Result<(), ConnError> {
        if frame.is_close() {
            return Err(ConnError::Invalid("send a close through close()".into()));
        }
        if !matches!(self.state(), ConnState::Connecting | ConnState::Open) {
            return Err(ConnError::Closed);
        }
        self.queue.try_send(frame).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => ConnError::Limit(format!(
                "the outbound queue of connection {} is full ({} frames waiting for a slow reader)",
                self.id, self.capacity
            )),
            mpsc::error::TrySendError::Closed(_) => ConnError::Closed,
        })
    }

    /// Starts the closing handshake: the close frame goes out after every frame already queued.
    pub fn close(&self, code: Option<u16>, reason: Option<String>) -> Result<(), ConnError> {
        let close = Close::validated(code, reason).map_err(ConnError::Invalid)?;
        self.request_close(close)
    }

    /// Starts the closing handshake with a close the host chose (no validation of the code): the connection is
    /// over for good, with no reconnect.
    pub fn request_close(&self, close: Close) -> Result<(), ConnError> {
        self.closed_by_host.store(true, Ordering::Release);
        self.queue_close(close)
    }

    /// Answers a peer that broke the protocol with a close frame; a client with a reconnect policy still reconnects.
    pub fn request_close_for_peer(&self, close: Close) -> Result<(), ConnError> {
        self.queue_close(close)
    }

    /// Whether this host (the handler, a limit or shutdown) closed the connection, rather than the peer.
    pub fn closed_by_host(&self) -> bool {
        self.closed_by_host.load(Ordering::Acquire)
    }

    /// Makes a client that lost its connection `connecting` again, unless the host closed it. Frames queued in the
    /// meantime stay queued for the new connection.
    pub fn reopen(&self) -> bool {
        if self.closed_by_host() {
            return false;
        }
        if let Ok(mut slot) = self.close.lock() {
            *slot = None;
        }
        self.state.store(ConnState::Connecting as u8, Ordering::Release);
        true
    }

    fn queue_close(&self, close: Close) -> Result<(), ConnError> {
        let previous = self.state.fetch_max(ConnState::Closing as u8, Ordering::AcqRel);
        if previous >= ConnState::Closing as u8 {
            return Err(ConnError::Closed);
        }
        if let Ok(mut slot) = self.close.lock() {
            *slot = Some(close);
        }
        self.close_requested.notify_one();
        self.closing.notify_one();
        Ok(())
    }

    /// Resolves once this host has asked to close the connection (the reader then bounds its wait for the peer).
    pub async fn closing_requested(&self) {
        self.closing.notified().await;
    }

    /// The close frame requested so far, if any.
    fn take_close(&self) -> Option<Close> {
        self.close.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The receiving end of a connection's outbound queue, owned by the task that writes to its socket.
#[derive(Debug)]
pub struct Outbox {
    conn: Arc<Conn>,
    queue: mpsc::Receiver<Frame>,
}

impl Outbox {
    /// The next frame to write: queued data in order, then the close frame once one is requested (and nothing after it).
    pub async fn next(&mut self) -> Option<Frame> {
        loop {
            tokio::select! {
                biased;
                frame = self.queue.recv() => return frame,
                () = self.conn.close_requested.notified() => {
                    // Every data frame queued before the close still goes out first.
                    if let Ok(frame) = self.queue.try_recv() {
                        self.conn.close_requested.notify_one();
                        return Some(frame);
                    }
                    if let Some(close) = self.conn.take_close() {
                        return Some(Frame::Close(Some(close)));
                    }
                    // A stale wake-up: a reconnect took the close back. Wait again.
                }
            }
        }
    }

    /// An outbox whose queue is already closed, for a connection that cannot go on.
    pub fn detached(conn: Arc<Conn>) -> Self {
        let (_, queue) = mpsc::channel(1);
        Self { conn, queue }
    }

    /// Every frame still queued, without waiting (used to report what a failed connect could not send).
    pub fn drain(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        while let Ok(frame) = self.queue.try_recv() {
            frames.push(frame);
        }
        frames
    }
}

/// Every live connection, by id.
#[derive(Debug)]
pub struct Hub {
    conns: RwLock<HashMap<String, Arc<Conn>>>,
    next: AtomicU64,
    queue_depth: usize,
}

impl Hub {
    /// An empty hub whose connections queue at most `queue_depth` outbound frames each.
    pub fn new(queue_depth: usize) -> Self {
        Self { conns: RwLock::new(HashMap::new()), next: AtomicU64::new(1), queue_depth: queue_depth.max(1) }
    }

    /// Adds a connection and returns it with the receiving end of its queue.
    pub fn register(&self, spec: ConnSpec, state: ConnState) -> (Arc<Conn>, Outbox) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let prefix = match spec.direction {
            Direction::Inbound => "s",
            Direction::Outbound => "c",
        };
        let (queue, rx) = mpsc::channel(self.queue_depth);
        let conn = Arc::new(Conn {
            seq,
            id: format!("{prefix}{seq}"),
            spec,
            state: AtomicU8::new(state as u8),
            queue,
            capacity: self.queue_depth,
            close: Mutex::new(None),
            close_requested: Notify::new(),
            closing: Notify::new(),
            closed_by_host: AtomicBool::new(false),
            opened: std::time::SystemTime::now(),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
        });
        if let Ok(mut conns) = self.conns.write() {
            conns.insert(conn.id.clone(), conn.clone());
        }
        let outbox = Outbox { conn: conn.clone(), queue: rx };
        (conn, outbox)
    }

    /// Removes a connection (it is closed).
    pub fn remove(&self, id: &str) {
        if let Ok(mut conns) = self.conns.write()
            && let Some(conn) = conns.remove(id)
        {
            conn.advance(ConnState::Closed);
        }
    }

    /// The live connection with this id.
    pub fn get(&self, id: &str) -> Option<Arc<Conn>> {
        self.conns.read().ok().and_then(|conns| conns.get(id).cloned())
    }

    /// Every live connection, oldest first.
    pub fn all(&self) -> Vec<Arc<Conn>> {
        let mut all: Vec<Arc<Conn>> =
            self.conns.read().map(|conns| conns.values().cloned().collect()).unwrap_or_default();
        all.sort_by_key(|conn| conn.seq);
        all
    }

    /// What the host knows about every live connection, oldest first.
    pub fn list(&self) -> Vec<ClientInfo> {
        self.all().iter().map(|conn| conn.info()).collect()
    }

    /// The oldest live outbound client whose events go to `handler`.
    pub fn by_handler(&self, handler: &str) -> Option<Arc<Conn>> {
        self.all().into_iter().find(|conn| conn.spec.direction == Direction::Outbound && conn.spec.handler == handler)
    }

    /// How many connections are live.
    pub fn len(&self) -> usize {
        self.conns.read().map(|conns| conns.len()).unwrap_or(0)
    }

    /// Whether no connection is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(direction: Direction, handler: &str) -> ConnSpec {
        ConnSpec { uri: "/x".into(), handler: handler.into(), endpoint: None, direction, remote: None }
    }

    #[tokio::test]
    async fn queued_frames_go_out_before_the_close_and_nothing_after_it() {
        let hub = Hub::new(8);
        let (conn, mut outbox) = hub.register(spec(Direction::Inbound, "p/h"), ConnState::Open);
        conn.send(Frame::Text("a".into())).unwrap();
        conn.send(Frame::Text("b".into())).unwrap();
        conn.close(Some(4000), Some("done".into())).unwrap();
        assert_eq!(conn.send(Frame::Text("late".into())), Err(ConnError::Closed));
        assert_eq!(conn.close(None, None), Err(ConnError::Closed));
        assert_eq!(outbox.next().await, Some(Frame::Text("a".into())));
        assert_eq!(outbox.next().await, Some(Frame::Text("b".into())));
        assert_eq!(outbox.next().await, Some(Frame::Close(Some(Close::new(4000, "done")))));
    }

    #[test]
    fn a_full_queue_is_a_limit_error_that_names_the_connection() {
        let hub = Hub::new(2);
        let (conn, _outbox) = hub.register(spec(Direction::Inbound, "p/h"), ConnState::Open);
        conn.send(Frame::Binary(vec![1])).unwrap();
        conn.send(Frame::Binary(vec![2])).unwrap();
        match conn.send(Frame::Binary(vec![3])) {
            Err(ConnError::Limit(text)) => assert!(text.contains(conn.id()), "{text}"),
            other => panic!("expected a limit error, got {other:?}"),
        }
    }

    #[test]
    fn lookups_find_live_connections_only() {
        let hub = Hub::new(4);
        let (inbound, _a) = hub.register(spec(Direction::Inbound, "p/h"), ConnState::Open);
        let (first, _b) = hub.register(spec(Direction::Outbound, "p/h"), ConnState::Connecting);
        let (_second, _c) = hub.register(spec(Direction::Outbound, "p/h"), ConnState::Connecting);
        assert_eq!(hub.by_handler("p/h").map(|c| c.id().to_owned()), Some(first.id().to_owned()));
        assert_eq!(hub.list().len(), 3);
        assert!(hub.get(inbound.id()).is_some());
        hub.remove(first.id());
        assert_eq!(first.state(), ConnState::Closed);
        assert!(hub.get(first.id()).is_none());
        assert_eq!(hub.list().iter().map(|i| i.id.as_str()).collect::<Vec<_>>().len(), 2);
        assert!(hub.by_handler("p/h").is_some_and(|c| c.id() != first.id()));
        assert!(hub.by_handler("other/h").is_none());
    }
}
