//! The connection registry: every live inbound session and outbound client, its state and its outbound queue, and the
//! count of running sessions that shutdown drains.

use crate::FastMap;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use wasmsock_wire::descriptor::project_of;
use wasmsock_wire::limits::DEFAULT_MAX_TIMERS_PER_CONNECTION;
use wasmsock_wire::{Bytes, ClientInfo, Close, ConnError, ConnLimits, ConnState, Direction, Frame, SlowConsumer};

use super::queue::{FrameQueue, Refused};
use super::timers::Timers;
use crate::budget::{Budget, Holding, Kind, Receiving};
use crate::control::metrics::{HandlerEvents, Metrics};
use crate::control::registry::LoadedHandler;
use crate::fair::QuotaRefused;
use crate::runtime::{Connection, KeptCell};

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
    /// See [`ClientInfo::protocol`].
    pub protocol: Option<String>,
    /// The limits this connection runs with.
    pub limits: ConnLimits,
}

/// One live connection as the rest of the host sees it. The socket itself belongs to its session task.
#[derive(Debug)]
pub struct Conn {
    seq: u64,
    id: String,
    spec: ConnSpec,
    state: AtomicU8,
    queue: FrameQueue,
    queued_bytes: AtomicUsize,
    /// What its queue takes from the memory budget.
    queued_budget: Holding,
    /// What the connection holds being received (its socket's reader counts it).
    receiving: std::sync::OnceLock<Arc<Receiving>>,
    /// Set when a slow consumer is cut off: what is still queued is dropped and the close goes out next.
    discard_queue: AtomicBool,
    failures_in_a_row: AtomicU32,
    handler_failures: AtomicU64,
    close: Mutex<Option<Close>>,
    closing: Notify,
    closed_by_host: AtomicBool,
    opened: std::time::SystemTime,
    messages_in: AtomicU64,
    messages_out: AtomicU64,
    /// What a handler keeps with this connection between events (`set-attachment`).
    attachment: Mutex<Option<Arc<[u8]>>>,
    /// Its handler's event metrics, looked up at its first event.
    handler_events: std::sync::OnceLock<Arc<HandlerEvents>>,
    /// What its events run in, found at its first event and again after the registry changed (boxed: 16 bytes here
    /// for every connection, the rest only for those of endpoints that keep instances).
    resolved: Mutex<Option<Box<Resolved>>>,
    /// The timers armed on it (boxed: most connections never arm one).
    timers: Mutex<Option<Box<Timers>>>,
    /// Whether it ever armed one: its session asks for the soonest timer at every frame, and a connection that never
    /// armed one answers without taking the lock.
    timers_used: AtomicBool,
}

/// What a connection's events run in: its handler as loaded, its endpoint's lifecycle and the cell of its kept
/// instance, as found under one generation of the registry. Kept with the connection, it saves two lookups by name
/// (the handler and the endpoint, each a lock and a hash) and the cell's on every event.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The registry's generation it was found under.
    pub generation: u64,
    /// The handler.
    pub handler: Arc<LoadedHandler>,
    /// The lifecycle of its instances (`per-event` for outbound clients, which have no endpoint).
    pub lifecycle: wasmsock_wire::descriptor::Lifecycle,
    /// Where its events run, for the lifecycles that keep an instance.
    pub cell: Option<KeptCell>,
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
    /// Handler calls for this connection that failed (trapped, timed out, ran out of memory).
    pub handler_failures: u64,
    /// The size of its attachment in bytes (0: none).
    pub attachment_bytes: usize,
}

impl Conn {
    /// The connection's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Its handler's event metrics in `metrics`, looked up once per connection (its handler never changes).
    pub fn handler_events(&self, metrics: &Metrics) -> &HandlerEvents {
        self.handler_events.get_or_init(|| metrics.handler_events(self.handler()))
    }

    /// What its events run in, if found under registry `generation` (see [`crate::control::registry::Registry::generation`]).
    pub fn resolved(&self, generation: u64) -> Option<Resolved> {
        let resolved = self.resolved.lock().ok()?;
        resolved.as_deref().filter(|r| r.generation == generation).cloned()
    }

    /// Keeps what its events run in (`None` forgets it: after onclose, so a kept cell goes with the connection's end).
    pub fn set_resolved(&self, resolved: Option<Resolved>) {
        if let Ok(mut slot) = self.resolved.lock() {
            *slot = resolved.map(Box::new);
        }
    }

    /// The connection's place in registration order (the number in its id): older connections have smaller ones.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The attachment a handler keeps with this connection, if any.
    pub fn attachment(&self) -> Option<Arc<[u8]>> {
        self.attachment.lock().ok().and_then(|slot| slot.clone())
    }

    /// Arms a timer firing on this connection after `delay`; its id. `closed` once the connection is closing,
    /// `limit` at [`DEFAULT_MAX_TIMERS_PER_CONNECTION`].
    fn arm_timer(&self, delay: Duration, payload: Bytes) -> Result<u64, ConnError> {
        if !matches!(self.state(), ConnState::Open | ConnState::Connecting) {
            return Err(ConnError::Closed);
        }
        let mut timers = self.timers.lock().map_err(|_| ConnError::Closed)?;
        self.timers_used.store(true, Ordering::Release);
        timers.get_or_insert_with(Box::default).arm(delay, payload).ok_or_else(|| {
            ConnError::Limit(format!(
                "a connection has at most {DEFAULT_MAX_TIMERS_PER_CONNECTION} timers armed at once"
            ))
        })
    }

    /// Cancels timer `id` of this connection; whether it was armed.
    fn cancel_timer(&self, id: u64) -> bool {
        self.timers.lock().ok().and_then(|mut timers| timers.as_mut().map(|t| t.cancel(id))).unwrap_or(false)
    }

    /// When its soonest timer is due, if one is armed.
    pub fn next_timer(&self) -> Option<Instant> {
        if !self.timers_used.load(Ordering::Acquire) {
            return None;
        }
        self.timers.lock().ok()?.as_ref()?.next_due()
    }

    /// Its soonest timer if it is due now (taken off: it fires once), with when it was due.
    fn take_due_timer(&self) -> Option<(u64, Bytes, Instant)> {
        self.timers.lock().ok()?.as_mut()?.take_due(Instant::now())
    }

    /// Drops every timer it has armed; how many there were.
    fn drop_timers(&self) -> usize {
        self.timers.lock().ok().and_then(|mut timers| timers.take()).map_or(0, |timers| timers.len())
    }

    /// Keeps `data` with this connection (none removes it); more than the connection's `max_attachment_bytes` is a
    /// `limit` error and keeps the old value.
    pub fn set_attachment(&self, data: Option<Vec<u8>>) -> Result<(), ConnError> {
        let max = self.spec.limits.max_attachment_bytes;
        if let Some(data) = &data
            && data.len() > max
        {
            return Err(ConnError::Limit(format!(
                "an attachment is at most {max} bytes (serve --max-attachment-bytes); this one is {}",
                data.len()
            )));
        }
        if let Ok(mut slot) = self.attachment.lock() {
            *slot = data.map(Arc::from);
        }
        Ok(())
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
            protocol: self.spec.protocol.clone(),
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
            handler_failures: self.handler_failures.load(Ordering::Relaxed),
            attachment_bytes: self.attachment().map_or(0, |data| data.len()),
        }
    }

    /// The limits this connection runs with.
    pub fn limits(&self) -> &ConnLimits {
        &self.spec.limits
    }

    /// Counts a handler call for this connection that failed; returns how many failed in a row.
    pub fn count_failure(&self) -> u32 {
        self.handler_failures.fetch_add(1, Ordering::Relaxed);
        self.failures_in_a_row.fetch_add(1, Ordering::AcqRel).saturating_add(1)
    }

    /// Counts a handler call that succeeded, ending a run of failures.
    pub fn count_success(&self) {
        self.failures_in_a_row.store(0, Ordering::Release);
    }

    /// Data messages received and written so far, together: when it does not move, the connection is idle.
    pub fn traffic(&self) -> u64 {
        self.messages_in.load(Ordering::Relaxed).wrapping_add(self.messages_out.load(Ordering::Relaxed))
    }

    /// Queues a ping for the peer (keepalive); false when the queue has no room or the connection is closing.
    pub fn ping(&self) -> bool {
        self.state() == ConnState::Open && self.queue.try_push(Frame::Ping(wasmsock_wire::Bytes::new())).is_ok()
    }

    /// Counts a data message received.
    pub fn count_in(&self) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts data messages written.
    pub fn count_out(&self, messages: u64) {
        self.messages_out.fetch_add(messages, Ordering::Relaxed);
    }

    /// Whether this is an inbound session or an outbound client.
    pub fn direction(&self) -> Direction {
        self.spec.direction
    }

    /// The endpoint of an inbound session.
    pub fn endpoint(&self) -> Option<&str> {
        self.spec.endpoint.as_deref()
    }

    /// Queues a data frame without waiting: a full queue (frames or bytes) is a `limit` error, a closing connection a
    /// `closed` one. Under the [`SlowConsumer::Close`] policy a full queue also closes the connection with 1013.
    pub fn send(&self, frame: Frame) -> Result<(), ConnError> {
        if !frame.is_data() {
            return Err(ConnError::Invalid("only text and binary messages can be sent".into()));
        }
        if !matches!(self.state(), ConnState::Connecting | ConnState::Open) {
            return Err(ConnError::Closed);
        }
        let limits = &self.spec.limits;
        let len = frame.len();
        let before = self.queued_bytes.fetch_add(len, Ordering::AcqRel);
        let after = before.saturating_add(len);
        // One message always fits into an empty queue, however large, unless the memory budget has no room for it.
        let too_many_bytes = before > 0 && after > limits.outbound_queue_bytes;
        let short = if too_many_bytes { None } else { self.queued_budget.cover(after).err() };
        let result =
            if too_many_bytes || short.is_some() { Err(None) } else { self.queue.try_push(frame).map_err(Some) };
        let full = match result {
            Ok(()) => return Ok(()),
            Err(None | Some(Refused::Full)) => true,
            Err(Some(Refused::Closed)) => false,
        };
        let left = self.queued_bytes.fetch_sub(len, Ordering::AcqRel).saturating_sub(len);
        self.queued_budget.settle(left);
        if !full {
            return Err(ConnError::Closed);
        }
        let (what, reason) = match &short {
            Some(refusal) => {
                self.queued_budget.budget().count_refusal(Kind::Queued);
                let what = format!("connection {} cannot queue more: {refusal}", self.id);
                (what, "slow consumer: the host's memory budget is short")
            }
            None => {
                let what = format!(
                    "the outbound queue of connection {} is full ({} frames or {} bytes wait for a slow reader)",
                    self.id, limits.outbound_queue, limits.outbound_queue_bytes
                );
                (what, "slow consumer: outbound queue full")
            }
        };
        if limits.slow_consumer == SlowConsumer::Close {
            self.discard_queue.store(true, Ordering::Release);
            let _ = self.request_close(Close::new(1013, reason));
            // What it queued is dropped now, not when its writer (stuck on a full socket) gets to it.
            let freed = self.queue.clear();
            let left = self.queued_bytes.fetch_sub(freed, Ordering::AcqRel).saturating_sub(freed);
            self.queued_budget.settle(left);
            tracing::warn!(conn = %self.id, "{what}: closing it with 1013");
            return Err(ConnError::Limit(format!("{what}; the connection is being closed (1013)")));
        }
        Err(ConnError::Limit(what))
    }

    /// Counts what its socket's reader holds being received against the memory budget.
    pub fn set_receiving(&self, receiving: Arc<Receiving>) {
        let _ = self.receiving.set(receiving);
    }

    /// A received message was handled: what reading it held is free again.
    pub fn delivered(&self) {
        if let Some(receiving) = self.receiving.get() {
            receiving.delivered();
        }
    }

    /// A ping or pong with `len` bytes of payload was read: only what that frame took is free, since a data message
    /// may be unfinished around it (a control frame may come between a message's fragments).
    pub fn control_read(&self, len: usize) {
        if let Some(receiving) = self.receiving.get() {
            // Its header: two bytes (a control frame carries at most 125), and the mask key a client's frames carry.
            let mask = if self.spec.direction == Direction::Inbound { 4 } else { 0 };
            receiving.freed(len + 2 + mask);
        }
    }

    /// The close for a connection whose reading the memory budget refused: 1013 when it waited too long for room,
    /// 1009 when its message could never fit (see [`Receiving::close`]); none when it was not refused.
    pub fn budget_close(&self) -> Option<Close> {
        self.receiving.get().and_then(|r| r.close())
    }

    /// Whether this connection was closed as a slow consumer (its outbound queue was full).
    pub fn closed_for_full_queue(&self) -> bool {
        self.discard_queue.load(Ordering::Acquire)
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
        // The writer waits on its queue alone: woken there, it finds the close once the queue is empty.
        self.queue.wake();
        self.closing.notify_one();
        Ok(())
    }

    /// Its writer will look at the outbound queue before it waits again (see [`FrameQueue::will_look`]).
    pub fn writer_will_look(&self) {
        self.queue.will_look();
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

impl Connection for Conn {
    fn id(&self) -> &str {
        Conn::id(self)
    }

    fn info(&self) -> ClientInfo {
        Conn::info(self)
    }

    fn limits(&self) -> &ConnLimits {
        Conn::limits(self)
    }

    fn send(&self, frame: Frame) -> Result<(), ConnError> {
        Conn::send(self, frame)
    }

    fn close(&self, code: Option<u16>, reason: Option<String>) -> Result<(), ConnError> {
        Conn::close(self, code, reason)
    }

    fn attachment(&self) -> Option<Vec<u8>> {
        Conn::attachment(self).map(|data| data.to_vec())
    }

    fn set_attachment(&self, data: Option<Vec<u8>>) -> Result<(), ConnError> {
        Conn::set_attachment(self, data)
    }
}

/// The receiving end of a connection's outbound queue, owned by the task that writes to its socket.
#[derive(Debug)]
pub struct Outbox {
    conn: Arc<Conn>,
    /// A stand-in for a connection that cannot go on: it yields nothing.
    detached: bool,
}

impl Drop for Outbox {
    fn drop(&mut self) {
        if !self.detached {
            let freed = self.conn.queue.close_reader();
            let left = self.conn.queued_bytes.fetch_sub(freed, Ordering::AcqRel).saturating_sub(freed);
            self.conn.queued_budget.settle(left);
        }
    }
}

impl Outbox {
    /// The next frame to write: queued data in order, then the close frame once one is requested (and nothing after it).
    pub async fn next(&mut self) -> Option<Frame> {
        if self.detached {
            return None;
        }
        loop {
            if self.conn.discard_queue.load(Ordering::Acquire) {
                let dropped = self.drain();
                if !dropped.is_empty() {
                    tracing::debug!(conn = self.conn.id(), frames = dropped.len(), "dropped the slow consumer's queue");
                }
            }
            // Every data frame queued before the close still goes out first.
            if let Some(frame) = self.conn.queue.try_pop() {
                return Some(self.dequeued(frame));
            }
            if matches!(self.conn.state(), ConnState::Closing | ConnState::Closed)
                && let Some(close) = self.conn.take_close()
            {
                return Some(Frame::Close(Some(close)));
            }
            // A push and a close request both wake this one wait (one waiter to register per wake-up, not one for
            // each). A stale wake-up (a reconnect took the close back) goes round and waits again.
            self.conn.queue.wait().await;
        }
    }

    /// The next queued data frame if one is waiting, without waiting; none when the queue is empty or being dropped
    /// (a close then comes from [`Outbox::next`]).
    pub fn try_next(&mut self) -> Option<Frame> {
        if self.detached || self.conn.discard_queue.load(Ordering::Acquire) {
            return None;
        }
        self.conn.queue.try_pop().map(|frame| self.dequeued(frame))
    }

    fn dequeued(&self, frame: Frame) -> Frame {
        if frame.is_data() {
            let len = frame.len();
            let left = self.conn.queued_bytes.fetch_sub(len, Ordering::AcqRel).saturating_sub(len);
            self.conn.queued_budget.settle(left);
        }
        frame
    }

    /// An outbox whose queue is already closed, for a connection that cannot go on.
    pub fn detached(conn: Arc<Conn>) -> Self {
        Self { conn, detached: true }
    }

    /// Every frame still queued, without waiting (used to report what a failed connect could not send).
    pub fn drain(&mut self) -> Vec<Frame> {
        let mut frames = Vec::new();
        if self.detached {
            return frames;
        }
        while let Some(frame) = self.conn.queue.try_pop() {
            frames.push(self.dequeued(frame));
        }
        frames
    }
}

/// Every live connection, by id.
#[derive(Debug, Default)]
pub struct Hub {
    conns: RwLock<FastMap<String, Arc<Conn>>>,
    next: AtomicU64,
    admitted: Arc<Mutex<Admitted>>,
    failure_closes: Mutex<HashMap<String, u64>>,
    outbound: AtomicUsize,
    /// Live outbound clients by project (for the project's quota of clients).
    outbound_by_project: Mutex<FastMap<String, usize>>,
    /// Timers armed by project (for the project's quota of timers).
    timers_by_project: Mutex<FastMap<String, usize>>,
    running: Arc<AtomicUsize>,
    shutting_down: AtomicBool,
    /// `@<host id>`, the end of every connection id once this host is in a cluster.
    id_suffix: std::sync::OnceLock<String>,
    /// The memory budget connections' queues draw on.
    budget: Arc<Budget>,
}

/// Counts a running session until dropped (after its onclose), so shutdown can wait for every one.
#[derive(Debug)]
pub struct Running(Arc<AtomicUsize>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The sessions admitted and not ended, in all and per endpoint and project. The names are shared with the admissions
/// that count under them, so a session admitted under a name already counted allocates nothing.
#[derive(Debug, Default)]
struct Admitted {
    total: usize,
    by_endpoint: FastMap<Arc<str>, usize>,
    by_project: FastMap<Arc<str>, usize>,
}

/// A place among an endpoint's sessions, held from before the upgrade until the session ends.
#[derive(Debug)]
pub struct Admission {
    admitted: Arc<Mutex<Admitted>>,
    endpoint: Arc<str>,
    project: Arc<str>,
}

/// Why a session was not admitted: a limit of the host or the endpoint, or its project's quota.
#[derive(Debug, thiserror::Error)]
pub enum NotAdmitted {
    /// The host or the endpoint serves its limit.
    #[error("{0}")]
    Limit(String),
    /// The endpoint's project serves its quota.
    #[error("{0}; try again later")]
    Quota(QuotaRefused),
}

/// Adds one to the count under `key` and returns the map's own copy of the name (made when the count is new).
fn count_up(counts: &mut FastMap<Arc<str>, usize>, key: &str) -> Arc<str> {
    if let Some((name, _)) = counts.get_key_value(key) {
        let name = name.clone();
        if let Some(count) = counts.get_mut(key) {
            *count += 1;
        }
        return name;
    }
    let name: Arc<str> = Arc::from(key);
    counts.insert(name.clone(), 1);
    name
}

/// Takes one off the count under `key`, forgetting it at zero.
fn count_down<K: std::borrow::Borrow<str> + std::hash::Hash + Eq>(counts: &mut FastMap<K, usize>, key: &str) {
    if let Some(count) = counts.get_mut(key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(key);
        }
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        if let Ok(mut admitted) = self.admitted.lock() {
            admitted.total = admitted.total.saturating_sub(1);
            count_down(&mut admitted.by_endpoint, &self.endpoint);
            count_down(&mut admitted.by_project, &self.project);
        }
    }
}

impl Hub {
    /// An empty hub, with the default memory budget.
    pub fn new() -> Self {
        Self::with_budget(Arc::default())
    }

    /// An empty hub whose connections' queues draw on `budget`.
    pub fn with_budget(budget: Arc<Budget>) -> Self {
        Self { next: AtomicU64::new(1), budget, ..Self::default() }
    }

    /// The memory budget.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Ends every connection id registered from now on with `@host` (this host's id in a cluster), so that ids are
    /// unique in the cluster and say which host holds the connection. Set once, before serving.
    pub fn set_host(&self, host: &str) -> bool {
        self.id_suffix.set(format!("@{host}")).is_ok()
    }

    /// Marks a session (inbound or outbound) as running until the guard is dropped.
    pub fn track(&self) -> Running {
        self.running.fetch_add(1, Ordering::AcqRel);
        Running(self.running.clone())
    }

    /// How many sessions are running, including ones whose connection ended but whose onclose is still running.
    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Refuses new connections from now on (the host is draining).
    pub fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
    }

    /// Whether the host is draining for shutdown (new connections are refused).
    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Takes a place for a new session of `endpoint` of `project`, or says which limit is reached: at most `host_max`
    /// sessions in all, `endpoint_max` on this endpoint and `project_max` (its quota) on the project's endpoints.
    pub fn admit(
        &self,
        endpoint: &str,
        endpoint_max: usize,
        host_max: usize,
        project: &str,
        project_max: usize,
    ) -> Result<Admission, NotAdmitted> {
        let mut admitted = self.admitted.lock().map_err(|_| NotAdmitted::Limit("the host is failing".to_owned()))?;
        if admitted.total >= host_max {
            return Err(NotAdmitted::Limit(format!(
                "the host serves its limit of {host_max} sessions; try again later"
            )));
        }
        let count = admitted.by_endpoint.get(endpoint).copied().unwrap_or(0);
        if count >= endpoint_max {
            return Err(NotAdmitted::Limit(format!(
                "endpoint {endpoint} serves its limit of {endpoint_max} sessions; try again later"
            )));
        }
        let of_project = admitted.by_project.get(project).copied().unwrap_or(0);
        if of_project >= project_max {
            return Err(NotAdmitted::Quota(QuotaRefused {
                project: project.to_owned(),
                quota: "connections",
                what: "inbound sessions",
                limit: project_max as u64,
            }));
        }
        admitted.total += 1;
        let endpoint = count_up(&mut admitted.by_endpoint, endpoint);
        let project = count_up(&mut admitted.by_project, project);
        Ok(Admission { admitted: self.admitted.clone(), endpoint, project })
    }

    /// Sessions admitted on `endpoint` and not yet ended.
    pub fn admitted(&self, endpoint: &str) -> usize {
        self.admitted.lock().map(|a| a.by_endpoint.get(endpoint).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Counts a session of `endpoint` closed because its handler kept failing.
    pub fn count_failure_close(&self, endpoint: &str) {
        if let Ok(mut closes) = self.failure_closes.lock() {
            *closes.entry(endpoint.to_owned()).or_default() += 1;
        }
    }

    /// How many sessions of `endpoint` were closed because their handler kept failing.
    pub fn failure_closes(&self, endpoint: &str) -> u64 {
        self.failure_closes.lock().map(|c| c.get(endpoint).copied().unwrap_or(0)).unwrap_or(0)
    }

    /// Adds a connection and returns it with the receiving end of its queue.
    pub fn register(&self, spec: ConnSpec, state: ConnState) -> (Arc<Conn>, Outbox) {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let prefix = match spec.direction {
            Direction::Inbound => "s",
            Direction::Outbound => "c",
        };
        let queue = FrameQueue::new(spec.limits.outbound_queue);
        let project = spec.handler.split('/').next().unwrap_or_default();
        let scope = self.budget.scope(project, spec.endpoint.as_deref());
        let queued_budget = self.budget.connection_holding(Kind::Queued, scope);
        let conn = Arc::new(Conn {
            seq,
            id: format!("{prefix}{seq}{}", self.id_suffix.get().map_or("", String::as_str)),
            spec,
            state: AtomicU8::new(state as u8),
            queue,
            queued_bytes: AtomicUsize::new(0),
            queued_budget,
            receiving: std::sync::OnceLock::new(),
            discard_queue: AtomicBool::new(false),
            failures_in_a_row: AtomicU32::new(0),
            handler_failures: AtomicU64::new(0),
            close: Mutex::new(None),
            closing: Notify::new(),
            closed_by_host: AtomicBool::new(false),
            opened: std::time::SystemTime::now(),
            messages_in: AtomicU64::new(0),
            messages_out: AtomicU64::new(0),
            attachment: Mutex::new(None),
            handler_events: std::sync::OnceLock::new(),
            resolved: Mutex::new(None),
            timers: Mutex::new(None),
            timers_used: AtomicBool::new(false),
        });
        if let Ok(mut conns) = self.conns.write() {
            conns.insert(conn.id.clone(), conn.clone());
            if conn.spec.direction == Direction::Outbound {
                self.outbound.fetch_add(1, Ordering::AcqRel);
                if let Ok(mut by_project) = self.outbound_by_project.lock() {
                    *by_project.entry(project_of(&conn.spec.handler).to_owned()).or_default() += 1;
                }
            }
        }
        let outbox = Outbox { conn: conn.clone(), detached: false };
        (conn, outbox)
    }

    /// Removes a connection (it is closed).
    pub fn remove(&self, id: &str) {
        if let Ok(mut conns) = self.conns.write()
            && let Some(conn) = conns.remove(id)
        {
            if conn.spec.direction == Direction::Outbound {
                self.outbound.fetch_sub(1, Ordering::AcqRel);
                if let Ok(mut by_project) = self.outbound_by_project.lock() {
                    count_down(&mut by_project, project_of(&conn.spec.handler));
                }
            }
            conn.advance(ConnState::Closed);
            // Its timers go with it: none fires after its onclose.
            self.timers_gone(project_of(&conn.spec.handler), conn.drop_timers());
        }
    }

    /// Arms a timer on `conn` within `quota`, its project's quota of timers armed at once; its id.
    pub fn set_timer(&self, conn: &Conn, delay: Duration, payload: Bytes, quota: usize) -> Result<u64, ConnError> {
        let project = project_of(&conn.spec.handler);
        {
            let mut by_project = self.timers_by_project.lock().map_err(|_| ConnError::Closed)?;
            let armed = by_project.entry(project.to_owned()).or_default();
            if *armed >= quota {
                let refused =
                    QuotaRefused { project: project.to_owned(), quota: "timers", what: "timers", limit: quota as u64 };
                return Err(ConnError::Limit(refused.to_string()));
            }
            *armed += 1;
        }
        conn.arm_timer(delay, payload).inspect_err(|_| self.timers_gone(project, 1))
    }

    /// Cancels timer `id` of `conn`; whether it was armed.
    pub fn cancel_timer(&self, conn: &Conn, id: u64) -> bool {
        let cancelled = conn.cancel_timer(id);
        if cancelled {
            self.timers_gone(project_of(&conn.spec.handler), 1);
        }
        cancelled
    }

    /// Takes `conn`'s soonest timer if it is due: its id, payload and when it was due, to fire now.
    pub fn take_due_timer(&self, conn: &Conn) -> Option<(u64, Bytes, Instant)> {
        let due = conn.take_due_timer()?;
        self.timers_gone(project_of(&conn.spec.handler), 1);
        Some(due)
    }

    /// How many timers `project` has armed.
    pub fn timers_of(&self, project: &str) -> usize {
        self.timers_by_project.lock().map(|by| by.get(project).copied().unwrap_or(0)).unwrap_or(0)
    }

    fn timers_gone(&self, project: &str, n: usize) {
        if n == 0 {
            return;
        }
        if let Ok(mut by_project) = self.timers_by_project.lock()
            && let Some(count) = by_project.get_mut(project)
        {
            *count = count.saturating_sub(n);
            if *count == 0 {
                by_project.remove(project);
            }
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

    /// How many outbound clients are live.
    pub fn outbound(&self) -> usize {
        self.outbound.load(Ordering::Acquire)
    }

    /// How many outbound clients of `project`'s handlers are live.
    pub fn outbound_of(&self, project: &str) -> usize {
        self.outbound_by_project.lock().map(|by| by.get(project).copied().unwrap_or(0)).unwrap_or(0)
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
        spec_with(direction, handler, ConnLimits::default())
    }

    fn spec_with(direction: Direction, handler: &str, limits: ConnLimits) -> ConnSpec {
        ConnSpec {
            uri: "/x".into(),
            handler: handler.into(),
            endpoint: None,
            direction,
            remote: None,
            protocol: None,
            limits,
        }
    }

    fn limits(frames: usize, bytes: usize, slow_consumer: SlowConsumer) -> ConnLimits {
        ConnLimits { outbound_queue: frames, outbound_queue_bytes: bytes, slow_consumer, ..ConnLimits::default() }
    }

    #[tokio::test]
    async fn queued_frames_go_out_before_the_close_and_nothing_after_it() {
        let hub = Hub::new();
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
        let hub = Hub::new();
        let (conn, _outbox) = hub
            .register(spec_with(Direction::Inbound, "p/h", limits(2, 1 << 20, SlowConsumer::Error)), ConnState::Open);
        conn.send(Frame::Binary(vec![1].into())).unwrap();
        conn.send(Frame::Binary(vec![2].into())).unwrap();
        match conn.send(Frame::Binary(vec![3].into())) {
            Err(ConnError::Limit(text)) => assert!(text.contains(conn.id()), "{text}"),
            other => panic!("expected a limit error, got {other:?}"),
        }
        assert_eq!(conn.state(), ConnState::Open, "the error policy leaves the connection open");
    }

    #[tokio::test]
    async fn the_queue_is_bounded_in_bytes_and_one_big_message_fits_an_empty_queue() {
        let hub = Hub::new();
        let (conn, mut outbox) =
            hub.register(spec_with(Direction::Inbound, "p/h", limits(100, 10, SlowConsumer::Error)), ConnState::Open);
        conn.send(Frame::Binary(vec![0; 50].into())).unwrap();
        assert!(matches!(conn.send(Frame::Binary(vec![1].into())), Err(ConnError::Limit(_))));
        assert_eq!(outbox.next().await, Some(Frame::Binary(vec![0; 50].into())));
        conn.send(Frame::Binary(vec![0; 6].into())).unwrap();
        conn.send(Frame::Binary(vec![0; 4].into())).unwrap();
        assert!(matches!(conn.send(Frame::Binary(vec![1].into())), Err(ConnError::Limit(_))));
    }

    #[tokio::test]
    async fn a_slow_consumer_is_closed_with_1013_and_its_queue_dropped() {
        let hub = Hub::new();
        let (conn, mut outbox) = hub
            .register(spec_with(Direction::Inbound, "p/h", limits(2, 1 << 20, SlowConsumer::Close)), ConnState::Open);
        conn.send(Frame::Text("a".into())).unwrap();
        conn.send(Frame::Text("b".into())).unwrap();
        assert!(matches!(conn.send(Frame::Text("c".into())), Err(ConnError::Limit(text)) if text.contains("1013")));
        assert_eq!(conn.state(), ConnState::Closing);
        assert!(conn.closed_by_host());
        let Some(Frame::Close(Some(close))) = outbox.next().await else { panic!("expected the close first") };
        assert_eq!(close.code, 1013);
        assert_eq!(conn.send(Frame::Text("d".into())), Err(ConnError::Closed));
    }

    #[test]
    fn admissions_are_bounded_per_endpoint_and_per_host_and_released_on_drop() {
        let hub = Hub::new();
        let a1 = hub.admit("a", 2, 3, "p", 10).unwrap();
        let _a2 = hub.admit("a", 2, 3, "p", 10).unwrap();
        assert!(hub.admit("a", 2, 3, "p", 10).unwrap_err().to_string().contains("endpoint a serves its limit of 2"));
        let _b1 = hub.admit("b", 2, 3, "p", 10).unwrap();
        assert!(hub.admit("b", 2, 3, "p", 10).unwrap_err().to_string().contains("the host serves its limit of 3"));
        drop(a1);
        assert_eq!(hub.admitted("a"), 1);
        assert!(hub.admit("b", 2, 3, "p", 10).is_ok());
    }

    #[test]
    fn admissions_under_a_counted_name_share_it_and_a_name_is_forgotten_with_its_last_session() {
        let hub = Hub::new();
        let first = hub.admit("a", 5, 5, "p", 5).unwrap();
        let second = hub.admit("a", 5, 5, "p", 5).unwrap();
        assert!(Arc::ptr_eq(&first.endpoint, &second.endpoint), "the endpoint's name was copied");
        assert!(Arc::ptr_eq(&first.project, &second.project), "the project's name was copied");
        let other = hub.admit("b", 5, 5, "p", 5).unwrap();
        assert!(Arc::ptr_eq(&first.project, &other.project));
        drop((first, second));
        assert_eq!(hub.admitted("a"), 0);
        assert!(!hub.admitted.lock().unwrap().by_endpoint.contains_key("a"));
        let again = hub.admit("a", 5, 5, "p", 5).unwrap();
        assert!(Arc::ptr_eq(&again.project, &other.project));
        assert_eq!(hub.admitted.lock().unwrap().by_project.get("p"), Some(&2));
    }

    #[test]
    fn lookups_find_live_connections_only() {
        let hub = Hub::new();
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
