//! One connection's life, for inbound sessions and outbound clients alike: events to the handler in order, frames
//! from the outbound queue to the socket, keepalive pings and the idle timeout, the closing handshake, and onclose
//! exactly once. Independent of the socket
//! type, so it can be driven by anything that yields and accepts [`Frame`]s.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use futures_util::{FutureExt, Sink, SinkExt, Stream, StreamExt};
use tokio::sync::oneshot;
use tokio::time::Instant;

use wasmsock_wire::{Close, ConnState, EventKind, Frame, Payload, PeerError};

use super::ConnHost;
use super::hub::{Conn, Outbox};
use crate::control::metrics::Traffic;

/// How an open connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// This host closed it (the handler, a limit, or shutdown).
    ByHost,
    /// The peer closed it, or it failed.
    ByPeer,
}

/// Runs an inbound session from open to onclose. Not an `async fn`, and neither is [`run_open`]: an `async fn`'s future
/// keeps room for its arguments for its whole life, so the stream, sink and outbox, moved on at once, would be held
/// twice more by every idle connection.
pub fn run<H, St, Si>(
    app: Arc<H>,
    conn: Arc<Conn>,
    outbox: Outbox,
    stream: St,
    sink: Si,
) -> impl Future<Output = ()> + Send + 'static
where
    H: ConnHost,
    St: Stream<Item = Result<Frame, PeerError>> + Unpin + Send + 'static,
    Si: Sink<Frame> + Unpin + Send + 'static,
    Si::Error: Display,
{
    let running = app.hub().track();
    // `then`, not an `async` block awaiting `open`: awaiting a captured future moves it into the block's own state,
    // which would then hold it twice.
    run_open(Arc::clone(&app), Arc::clone(&conn), outbox, stream, sink).then(move |_| async move {
        finish(&app, &conn).await;
        drop(running);
    })
}

/// Runs a connection that is open: onopen, then onmessage per data message in order, and onerror for a failure,
/// until the stream ends (or the closing handshake times out). Resolves to the outbox (for a reconnect) and who ended
/// it. The writer's future is boxed here, so the session holds a pointer to it (see [`Writer`]).
pub fn run_open<H, St, Si>(
    app: Arc<H>,
    conn: Arc<Conn>,
    outbox: Outbox,
    stream: St,
    sink: Si,
) -> impl Future<Output = (Outbox, Ended)> + Send + 'static
where
    H: ConnHost,
    St: Stream<Item = Result<Frame, PeerError>> + Unpin + Send + 'static,
    Si: Sink<Frame> + Unpin + Send + 'static,
    Si::Error: Display,
{
    let (stop, stopped) = oneshot::channel();
    let traffic = app.metrics().traffic(conn.endpoint(), conn.direction());
    let writer = Box::pin(write_frames(conn.clone(), outbox, sink, stopped, traffic.clone()));
    serve_open(app, conn, writer, stop, traffic, stream)
}

/// The body of [`run_open`]: the reader and the writer beside it, then the end of both.
async fn serve_open<H, St>(
    app: Arc<H>,
    conn: Arc<Conn>,
    writer: Pin<Box<dyn Future<Output = Outbox> + Send>>,
    stop: oneshot::Sender<()>,
    traffic: Traffic,
    mut stream: St,
) -> (Outbox, Ended)
where
    H: ConnHost,
    St: Stream<Item = Result<Frame, PeerError>> + Unpin + Send,
{
    let (app, conn) = (&app, &conn);
    conn.advance(ConnState::Open);
    let mut writer = Writer::new(writer);
    let failure = {
        let reading = std::pin::pin!(read_frames(app, conn, &traffic, &mut stream));
        writer.beside(conn, reading).await
    };
    let mut written = None;
    if let Some(err) = &failure
        && let Some(close) = err.close.clone()
        && conn.request_close_for_peer(close).is_ok()
    {
        // Give the writer a moment to put the close frame on the wire before the socket is dropped.
        written = tokio::time::timeout(app.limits().close_timeout, writer.finish()).await.ok();
    }
    let _ = stop.send(());
    let written = match written {
        Some(written) => written,
        None => writer.finish().await,
    };
    let outbox = match written {
        Ok(outbox) => outbox,
        Err(()) => {
            // The writer cannot panic short of a bug; without its outbox the connection cannot go on.
            tracing::error!(conn = conn.id(), "the writer panicked");
            conn.advance(ConnState::Closing);
            return (Outbox::detached(conn.clone()), Ended::ByHost);
        }
    };
    // The socket is done with (the writer has let go of its half): what reading it held, an unfinished message
    // included, is free before the handler runs, which may need that memory budget for its own instance.
    drop(stream);
    conn.delivered();
    if let Some(err) = failure {
        tracing::debug!(conn = conn.id(), "{}", err.message);
        app.dispatch(conn, EventKind::Error(err.message)).await;
    }
    let ended = if conn.closed_by_host() { Ended::ByHost } else { Ended::ByPeer };
    (outbox, ended)
}

/// The connection's writer, run by its session's own task beside the reader rather than as a task of its own: a
/// connection is one task, and the replies its reader queued in a poll are written in that same poll.
///
/// Each side is polled with a waker of its own, which marks that side and wakes the task; a poll of the task polls only
/// the sides marked. So a frame another connection queued (a fan-out) costs a poll of the writer alone, and a frame
/// read from the socket a poll of the reader, then of the writer for what it queued.
struct Writer {
    /// The writer until it ends; it is boxed already, so it needs no pinning of its own.
    running: Option<futures_util::future::CatchUnwind<std::panic::AssertUnwindSafe<WriterFuture>>>,
    /// How it ended, when it ended while the reader still ran: its outbox, or an error if it panicked.
    done: Option<Result<Outbox, ()>>,
    sides: Arc<Sides>,
    writer_waker: Waker,
}

type WriterFuture = Pin<Box<dyn Future<Output = Outbox> + Send>>;

/// Which sides of a connection were woken since its task last polled them, and the task to wake. It is also the waker
/// the reading side is polled with (waking it marks the reader); [`WriterWake`] marks the writer.
#[derive(Debug)]
struct Sides {
    task: AtomicWaker,
    reader: AtomicBool,
    writer: AtomicBool,
}

/// The waker the writing side is polled with.
struct WriterWake(Arc<Sides>);

impl Wake for Sides {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.reader.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl Wake for WriterWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.writer.store(true, Ordering::Release);
        self.0.task.wake();
    }
}

impl Writer {
    fn new(future: WriterFuture) -> Self {
        // Both sides are due at the first poll.
        let sides =
            Arc::new(Sides { task: AtomicWaker::new(), reader: AtomicBool::new(true), writer: AtomicBool::new(true) });
        Self {
            running: Some(std::panic::AssertUnwindSafe(future).catch_unwind()),
            done: None,
            writer_waker: Waker::from(Arc::new(WriterWake(Arc::clone(&sides)))),
            sides,
        }
    }

    /// Polls the writer if it has not ended.
    fn poll_writer(&mut self) {
        if let Some(running) = &mut self.running
            && let Poll::Ready(ended) = Pin::new(running).poll(&mut Context::from_waker(&self.writer_waker))
        {
            self.done = Some(ended.map_err(|_| ()));
            self.running = None;
        }
    }

    /// Runs `reading` with the writer beside it until `reading` ends. Takes it pinned by the caller rather than by
    /// value: an argument of an `async fn` keeps its room in the future for its whole life, so the reader's state would
    /// be held twice by every connection.
    async fn beside<F: Future>(&mut self, conn: &Conn, mut reading: Pin<&mut F>) -> F::Output {
        let reader_waker = Waker::from(Arc::clone(&self.sides));
        std::future::poll_fn(|cx| {
            let sides = &self.sides;
            // Registered before the marks are read: a side woken after this wakes the task, which looks again.
            sides.task.register(cx.waker());
            let read_now = sides.reader.swap(false, Ordering::AcqRel);
            // A writer woken for its own sake goes first: tokio's budget is the task's, and a reader that spends it
            // at every poll (a peer that never stops sending) would otherwise leave it none.
            if sides.writer.swap(false, Ordering::AcqRel) {
                self.poll_writer();
            }
            let mut read = Poll::Pending;
            if read_now {
                // The writer is polled next, in this poll: what the reader queues meanwhile need not wake it.
                conn.writer_will_look();
                read = reading.as_mut().poll(&mut Context::from_waker(&reader_waker));
                self.poll_writer();
            }
            read
        })
        .await
    }

    /// Resolves when the writer has ended, with its outbox (an error if it panicked).
    async fn finish(&mut self) -> Result<Outbox, ()> {
        std::future::poll_fn(|cx| {
            self.sides.task.register(cx.waker());
            self.sides.writer.store(false, Ordering::Release);
            self.poll_writer();
            match self.done.take() {
                Some(done) => Poll::Ready(done),
                None => Poll::Pending,
            }
        })
        .await
    }
}

/// The reading side of an open connection: onopen, then its frames and timers, until the stream ends or fails (the
/// failure is returned).
async fn read_frames<H, St>(app: &Arc<H>, conn: &Arc<Conn>, traffic: &Traffic, stream: &mut St) -> Option<PeerError>
where
    H: ConnHost,
    St: Stream<Item = Result<Frame, PeerError>> + Unpin + Send,
{
    app.dispatch(conn, EventKind::Open).await;
    let mut failure = None;
    let mut alive = Liveness::new(conn);
    // Made once and re-armed when they fire: made per frame, the timer was registered and removed again at every
    // message (its deadline moves with every frame heard, so it is left where it is and re-armed from the latest
    // frame when it fires), and the wait for a close request the same.
    let mut check = std::pin::pin!(tokio::time::sleep_until(alive.next_check()));
    let mut closing = std::pin::pin!(conn.closing_requested());
    // The soonest timer the handler armed, likewise: re-armed only when that changes (an event armed or cancelled
    // one, or it fired), not made again for every frame while a timer waits.
    let mut timer = std::pin::pin!(tokio::time::sleep_until(tokio::time::Instant::now()));
    let mut timer_due = None;
    loop {
        let due = conn.next_timer();
        if due != timer_due {
            if let Some(at) = due {
                timer.as_mut().reset(at.into());
            }
            timer_due = due;
        }
        let next = if conn.state() == ConnState::Open {
            tokio::select! {
                next = stream.next() => next,
                // The host asked to close: go round again, now bounded by the close timeout.
                () = &mut closing => {
                    closing.set(conn.closing_requested());
                    continue;
                }
                () = &mut check => {
                    alive.check(conn);
                    check.as_mut().reset(alive.next_check());
                    continue;
                }
                // A timer the handler armed: its event comes between the others, never during one.
                () = &mut timer, if timer_due.is_some() => {
                    // Looked at again next time round, whether it fired or was replaced in the meantime.
                    timer_due = None;
                    if let Some((id, payload, due)) = app.hub().take_due_timer(conn) {
                        app.metrics().timer_fired(due.elapsed());
                        app.dispatch(conn, EventKind::Timer { id, payload }).await;
                    }
                    continue;
                }
            }
        } else {
            // Closing: wait a bounded time for the peer's close frame and the end of the stream.
            match tokio::time::timeout(app.limits().close_timeout, stream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::debug!(conn = conn.id(), "the peer did not finish the closing handshake in time");
                    break;
                }
            }
        };
        // Every frame shows the peer alive: a message as of the end of its event (the dispatch's own clock reading,
        // rather than one more per message), any other frame as of now.
        match next {
            None => break,
            Some(Ok(Frame::Text(text))) if conn.state() == ConnState::Open => {
                conn.count_in();
                traffic.received(text.len());
                alive.heard_at(app.dispatch(conn, EventKind::Message(Payload::Text(text))).await);
                conn.delivered();
            }
            Some(Ok(Frame::Binary(data))) if conn.state() == ConnState::Open => {
                conn.count_in();
                traffic.received(data.len());
                alive.heard_at(app.dispatch(conn, EventKind::Message(Payload::Binary(data))).await);
                conn.delivered();
            }
            // Data after a close frame is dropped: the handler already let the connection go; the message was read
            // whole, so what reading it held is free.
            Some(Ok(Frame::Text(_) | Frame::Binary(_))) => {
                alive.heard_at(Instant::now());
                conn.delivered();
            }
            // Pings are answered by the library; pings and pongs only show the peer is alive. Only what the frame
            // itself took is free: it may have come between the fragments of an unfinished message.
            Some(Ok(Frame::Ping(data) | Frame::Pong(data))) => {
                alive.heard_at(Instant::now());
                conn.control_read(data.len());
            }
            // The library answers the peer's close; keep reading so the answer is written before the stream ends.
            Some(Ok(Frame::Close(_))) => {
                alive.heard_at(Instant::now());
                conn.advance(ConnState::Closing);
            }
            Some(Err(mut err)) => {
                if let Some(close) = conn.budget_close() {
                    // Its message could not be finished within the memory budget: in time (1013, try again later),
                    // or ever (1009, too big for any share this connection draws on).
                    err.close = Some(close);
                }
                failure = Some(err);
                break;
            }
        }
    }
    failure
}

/// Ends a connection for good: it leaves the hub, then its handler sees onclose, then the host forgets it.
pub async fn finish<H: ConnHost>(app: &Arc<H>, conn: &Arc<Conn>) {
    app.hub().remove(conn.id());
    app.metrics().connection_closed(conn.endpoint(), conn.direction());
    if conn.closed_for_full_queue() {
        app.metrics().record_queue_full_close(conn.endpoint().unwrap_or_default());
    }
    app.dispatch(conn, EventKind::Close).await;
    app.ended(conn);
}

/// The most frames one flush of the socket carries; a bound so that one connection's backlog cannot keep its writer
/// from checking for a stop for long.
const MAX_WRITE_BATCH: usize = 64;

/// Writes queued frames to the socket until the close frame has gone out, the socket fails, or `stop` fires; returns
/// the outbox so frames queued later are kept for a reconnect.
async fn write_frames<Si>(
    conn: Arc<Conn>,
    mut outbox: Outbox,
    mut sink: Si,
    mut stop: oneshot::Receiver<()>,
    traffic: Traffic,
) -> Outbox
where
    Si: Sink<Frame> + Unpin,
    Si::Error: Display,
{
    // The stop is polled after the outbox and the socket, so it costs nothing while they are ready (polling it first
    // at every frame, feed and flush was about 2% of a fan-out delivery), and looked at once per batch, so a queue
    // that never empties still sees it.
    'write: loop {
        let frame = tokio::select! {
            biased;
            frame = outbox.next() => frame,
            _ = &mut stop => break,
        };
        let Some(first) = frame else { break };
        if !matches!(stop.try_recv(), Err(oneshot::error::TryRecvError::Empty)) {
            break;
        }
        // Every frame already queued goes into the socket's buffer with this one and out with one flush: a member of a
        // busy channel or a connection with many replies in flight costs one write, not one per message.
        let (mut messages, mut bytes, mut closed) = (0u64, 0usize, false);
        let mut frame = Some(first);
        let mut batch = 0;
        while let Some(next) = frame.take() {
            closed = next.is_close();
            let data = next.is_data().then(|| next.len());
            let fed = tokio::select! {
                biased;
                fed = sink.feed(next) => fed,
                _ = &mut stop => break 'write,
            };
            if let Err(err) = fed {
                tracing::debug!(conn = conn.id(), "writing to the socket failed: {err}");
                break 'write;
            }
            if let Some(len) = data {
                messages += 1;
                bytes += len;
            }
            batch += 1;
            if closed || batch >= MAX_WRITE_BATCH {
                break;
            }
            frame = outbox.try_next();
        }
        let flushed = tokio::select! {
            biased;
            flushed = sink.flush() => flushed,
            _ = &mut stop => break,
        };
        if let Err(err) = flushed {
            tracing::debug!(conn = conn.id(), "writing to the socket failed: {err}");
            break;
        }
        conn.count_out(messages);
        traffic.sent(messages, bytes);
        if closed {
            break;
        }
    }
    outbox
}

/// Keepalive and idle time of one open connection: when to ping a silent peer, when to give up on it, and when a
/// connection without data has been idle too long.
struct Liveness {
    ping_interval: std::time::Duration,
    idle_timeout: std::time::Duration,
    heard: Instant,
    pinged: bool,
    traffic: u64,
    idle_since: Instant,
}

impl Liveness {
    fn new(conn: &Conn) -> Self {
        let now = Instant::now();
        let limits = conn.limits();
        Self {
            ping_interval: limits.ping_interval,
            idle_timeout: limits.idle_timeout,
            heard: now,
            pinged: false,
            traffic: conn.traffic(),
            idle_since: now,
        }
    }

    /// The peer sent a frame (any frame, pongs included), counted as heard `at`.
    fn heard_at(&mut self, at: impl Into<Instant>) {
        self.heard = at.into();
        self.pinged = false;
    }

    /// When something may be due: a ping, giving up on an unanswered one, or the idle timeout.
    fn next_check(&self) -> Instant {
        let silence = if self.pinged { self.ping_interval.saturating_mul(2) } else { self.ping_interval };
        (self.heard + silence).min(self.idle_since + self.idle_timeout)
    }

    /// Does what is due: pings a silent peer, or closes the connection (1001) when the peer stopped answering or no
    /// data moved for the idle timeout.
    fn check(&mut self, conn: &Conn) {
        let now = Instant::now();
        let traffic = conn.traffic();
        if traffic != self.traffic {
            self.traffic = traffic;
            self.idle_since = now;
        }
        if now >= self.idle_since + self.idle_timeout {
            let reason = format!("idle: no message for {:?}", self.idle_timeout);
            tracing::debug!(conn = conn.id(), "closing: {reason}");
            let _ = conn.request_close(Close::new(1001, reason));
        } else if self.pinged && now >= self.heard + self.ping_interval.saturating_mul(2) {
            let reason = format!("no answer to a ping for {:?}", self.ping_interval);
            tracing::debug!(conn = conn.id(), "closing: {reason}");
            // The peer's fault: a client with a reconnect policy reconnects.
            let _ = conn.request_close_for_peer(Close::new(1001, reason));
        } else if !self.pinged && now >= self.heard + self.ping_interval {
            // A ping that finds the queue full is not retried: the peer then gets the same time to show life.
            conn.ping();
            self.pinged = true;
        }
    }
}
