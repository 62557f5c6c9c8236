//! The memory budget at a socket's read side: [`ReadGate`] counts what is read into a connection's [`Receiving`], asks
//! the budget before each further read, pauses reading while it has no room and fails the read once waiting is over
//! (or can never help); [`Budgeted`] puts a gate in front of any stream, for sockets the host does not accept itself
//! (outbound clients). The main listener's own stream uses the gate directly.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use super::ledger::Refusal;
use super::receiving::Receiving;

/// How often a reader paused by the memory budget looks for room again.
const PAUSE_RETRY: Duration = Duration::from_millis(50);

/// A reader waiting: since when, and the timer that wakes it.
#[derive(Debug)]
struct Waiting {
    /// When the wait began.
    since: Instant,
    retry: Pin<Box<Sleep>>,
}

/// What one socket's reads go through; see the module docs. Three words while nothing waits, so an idle connection
/// keeps no timer.
#[derive(Debug)]
pub struct ReadGate {
    receiving: Arc<Receiving>,
    /// Since when (the current message's first pause), and until when before looking again, its reading waits for the
    /// memory budget.
    paused: Option<Box<Waiting>>,
    /// Since when, and until when, an unfinished message holding budget has had no bytes from the peer.
    stalled: Option<Box<Waiting>>,
}

impl ReadGate {
    /// A gate counting into `receiving`.
    pub fn new(receiving: Arc<Receiving>) -> Self {
        Self { receiving, paused: None, stalled: None }
    }

    /// What it counts into.
    pub fn receiving(&self) -> &Arc<Receiving> {
        &self.receiving
    }

    /// Before the socket is read: `None` when it may be; else what the read returns (pending while paused for room,
    /// an error once the wait is over or when the message can never fit).
    pub fn poll_before(&mut self, cx: &mut Context<'_>) -> Option<Poll<std::io::Result<()>>> {
        // What the socket holds is the kernel's; what is read from it is the host's, so the budget is asked first.
        match self.receiving.may_read() {
            Ok(()) => {}
            Err(refusal) if refusal.never => {
                self.receiving.refuse(true);
                let message = format!(
                    "the message being received holds {} bytes, more than one connection may ever hold: {refusal}",
                    self.receiving.held()
                );
                tracing::debug!("{message}");
                return Some(Poll::Ready(Err(std::io::Error::other(message))));
            }
            Err(refusal) => return Some(self.pause(cx, &refusal)),
        }
        // The wait counts from the message's first pause: a message resumed now and then is not given a new wait
        // each time. It is over once what is read is back within the allowance (the message was handled).
        if self.paused.is_some() && !self.receiving.holds_budget() {
            self.paused = None;
        }
        None
    }

    /// After the socket was read: `read` is what it returned and `n` how many bytes it took from the socket. A read
    /// that is pending while an unfinished message holds budget starts (or goes on with) the stall timer.
    pub fn poll_after(
        &mut self,
        cx: &mut Context<'_>,
        read: Poll<std::io::Result<()>>,
        n: usize,
    ) -> Poll<std::io::Result<()>> {
        if read.is_ready() {
            self.receiving.read(n);
            self.stalled = None;
            read
        } else if self.receiving.holds_budget() {
            self.stall(cx)
        } else {
            read
        }
    }

    /// The budget refused the next read: wait and look again, or fail the read once the wait is over.
    fn pause(&mut self, cx: &mut Context<'_>, refusal: &Refusal) -> Poll<std::io::Result<()>> {
        let now = Instant::now();
        let wait = self.receiving.holding().map_or(Duration::ZERO, |h| h.budget().wait());
        let paused = self.paused.get_or_insert_with(|| {
            if let Some(holding) = self.receiving.holding() {
                holding.budget().count_pause();
            }
            tracing::debug!(held = self.receiving.held(), "reading paused: {refusal}");
            Box::new(Waiting { since: now, retry: Box::pin(tokio::time::sleep_until(now + PAUSE_RETRY)) })
        });
        if now >= paused.since + wait {
            self.receiving.refuse(false);
            let message = format!("reading stayed paused for {wait:?} (serve --memory-wait-ms): {refusal}");
            return Poll::Ready(Err(std::io::Error::other(message)));
        }
        loop {
            if paused.retry.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            paused.retry.as_mut().reset(Instant::now() + PAUSE_RETRY);
        }
    }

    /// The socket has nothing while an unfinished message holds budget: fail the read once nothing came for the
    /// budget's wait, so a peer that stalls its message on purpose holds its memory no longer than that.
    fn stall(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(holding) = self.receiving.holding() else { return Poll::Pending };
        let wait = holding.budget().wait();
        let stalled = self.stalled.get_or_insert_with(|| {
            let now = Instant::now();
            Box::new(Waiting { since: now, retry: Box::pin(tokio::time::sleep_until(now + wait)) })
        });
        if stalled.retry.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        self.receiving.refuse(false);
        let message = format!(
            "memory budget: an unfinished message holding {} bytes had nothing from the peer for {wait:?} (serve \
             --memory-wait-ms)",
            self.receiving.held()
        );
        Poll::Ready(Err(std::io::Error::other(message)))
    }
}

/// A stream whose reads go through a [`ReadGate`]; writes pass straight on.
#[derive(Debug)]
pub struct Budgeted<S> {
    inner: S,
    gate: ReadGate,
}

impl<S> Budgeted<S> {
    /// `inner`, its reads counted into `receiving`.
    pub fn new(inner: S, receiving: Arc<Receiving>) -> Self {
        Self { inner, gate: ReadGate::new(receiving) }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Budgeted<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if let Some(gated) = this.gate.poll_before(cx) {
            return gated;
        }
        let filled = buf.filled().len();
        let read = Pin::new(&mut this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - filled;
        this.gate.poll_after(cx, read, n)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Budgeted<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use wasmsock_wire::Limits;
    use wasmsock_wire::limits::MEMORY_ALLOWANCE;

    use super::super::ledger::{Budget, Kind};
    use super::*;

    /// A loopback pair: the accepted end wrapped in a [`Budgeted`] counting into a fresh `Receiving` of endpoint `e`
    /// in `budget`, and the connecting end to write with.
    async fn pair(budget: &Arc<Budget>) -> (Budgeted<TcpStream>, Arc<Receiving>, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let writer = TcpStream::connect(listener.local_addr().expect("addr")).await.expect("connect");
        let (tcp, _) = listener.accept().await.expect("accept");
        let receiving = Arc::new(Receiving::default());
        receiving.start(budget.connection_holding(Kind::Receiving, budget.scope("p", Some("e"))));
        (Budgeted::new(tcp, receiving.clone()), receiving, writer)
    }

    fn budget(endpoint_share: u8, wait: Duration) -> Arc<Budget> {
        let limits = Limits {
            memory_budget: 64 << 20,
            endpoint_memory_share: endpoint_share,
            memory_wait: wait,
            ..Limits::default()
        };
        Arc::new(Budget::new(&limits))
    }

    /// Reads until `want` bytes arrived or the read fails; the bytes read and the error.
    async fn read_up_to(stream: &mut Budgeted<TcpStream>, want: usize) -> (usize, Option<std::io::Error>) {
        let (mut got, mut buf) = (0, vec![0u8; 64 << 10]);
        while got < want {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) => return (got, Some(err)),
            }
        }
        (got, None)
    }

    #[tokio::test]
    async fn reading_pauses_while_the_budget_has_no_room_and_resumes_when_it_has() {
        // The endpoint may hold 16 MiB; another holder takes 15 of them.
        let budget = budget(25, Duration::from_secs(10));
        let other = budget.connection_holding(Kind::Receiving, budget.scope("p", Some("e")));
        other.cover(MEMORY_ALLOWANCE + (15 << 20)).expect("room");
        let (mut stream, receiving, mut writer) = pair(&budget).await;
        const SENT: usize = 2 << 20;
        let write = tokio::spawn(async move {
            writer.write_all(&vec![7u8; SENT]).await.expect("write");
            writer
        });
        let paused = tokio::time::timeout(Duration::from_millis(500), read_up_to(&mut stream, SENT)).await;
        assert!(paused.is_err(), "the reader got all of it with no room in the budget");
        assert!(budget.pauses() >= 1 && receiving.held() < SENT, "held {}", receiving.held());
        drop(other);
        let read = tokio::time::timeout(Duration::from_secs(5), read_up_to(&mut stream, SENT - receiving.held())).await;
        let (_, err) = read.expect("reading resumed once the other let go");
        assert!(err.is_none(), "{err:?}");
        assert_eq!(receiving.held(), SENT);
        assert!(budget.held() >= SENT - MEMORY_ALLOWANCE, "what is read beyond the allowance is charged");
        receiving.delivered();
        assert_eq!(budget.held(), 0);
        drop(write.await.expect("writer"));
    }

    #[tokio::test]
    async fn a_message_larger_than_the_connection_could_ever_hold_fails_at_once() {
        // The endpoint may hold 2% of 64 MiB, about 1.3 MiB; 2 MiB come.
        let budget = budget(2, Duration::from_secs(10));
        let (mut stream, receiving, mut writer) = pair(&budget).await;
        let write = tokio::spawn(async move {
            let _ = writer.write_all(&vec![7u8; 2 << 20]).await;
            writer
        });
        let (got, err) =
            tokio::time::timeout(Duration::from_secs(2), read_up_to(&mut stream, 2 << 20)).await.expect("no wait");
        let err = err.expect("the read failed");
        assert!(err.to_string().contains("more than one connection may ever hold"), "{err}");
        assert!(got <= receiving.holding().expect("started").most() + (64 << 10), "read {got}");
        assert_eq!(receiving.close().map(|c| c.code), Some(1009));
        assert_eq!(budget.refusals(Kind::Receiving), 1);
        drop((stream, receiving));
        drop(write.await.expect("writer"));
        assert_eq!(budget.held(), 0, "dropping the holder gives everything back");
    }

    #[tokio::test]
    async fn an_unfinished_message_the_peer_stalls_fails_after_the_wait_with_1013() {
        let budget = budget(25, Duration::from_millis(200));
        let (mut stream, receiving, mut writer) = pair(&budget).await;
        writer.write_all(&vec![7u8; 1 << 20]).await.expect("write");
        let (got, err) = read_up_to(&mut stream, 1 << 20).await;
        assert_eq!((got, err.is_none()), (1 << 20, true));
        let started = Instant::now();
        let (_, err) = tokio::time::timeout(Duration::from_secs(2), read_up_to(&mut stream, 1)).await.expect("no hang");
        let err = err.expect("the stalled read failed");
        assert!(started.elapsed() >= Duration::from_millis(200), "failed before the wait was over");
        assert!(
            err.to_string().contains("memory budget") && err.to_string().contains("nothing from the peer"),
            "{err}"
        );
        assert_eq!(receiving.close().map(|c| c.code), Some(1013));
        drop(writer);
    }
}
