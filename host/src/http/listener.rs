//! The main listener: every accepted TCP connection must finish its handshakes (TLS when the host serves `wss://`,
//! then the HTTP upgrade) within the handshake timeout, and a client that stalls or botches its TLS handshake holds
//! up no one else. Its plain connections read ahead through a buffer per thread, so a session's own read buffer can be
//! small (it is what an idle connection holds) without a system call per small read.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use wasmsock_wire::limits::{DEFAULT_MAX_TLS_HANDSHAKES, READ_AHEAD};

use crate::budget::{ReadGate, Receiving};

/// A TLS handshake that finished in time, with its peer and deadline; none when it failed (already logged).
type Handshaken = Option<(TlsStream<TcpStream>, SocketAddr, Instant)>;

/// The main listener, plain or TLS; see the module docs.
pub struct GuardedListener {
    listener: TcpListener,
    handshake_timeout: Duration,
    tls: Option<TlsAcceptor>,
    handshakes: JoinSet<Handshaken>,
}

impl std::fmt::Debug for GuardedListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardedListener")
            .field("listener", &self.listener)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls", &self.tls.is_some())
            .field("tls_handshakes", &self.handshakes.len())
            .finish()
    }
}

impl GuardedListener {
    /// Guards `listener`'s connections with `handshake_timeout`; with `tls`, serves TLS on them first.
    pub fn new(listener: TcpListener, handshake_timeout: Duration, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        Self { listener, handshake_timeout, tls: tls.map(TlsAcceptor::from), handshakes: JoinSet::new() }
    }

    /// Starts `tcp`'s TLS handshake in its own task, bounded by the connection's deadline.
    fn start_tls(&mut self, acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) {
        let deadline = Instant::now() + self.handshake_timeout;
        self.handshakes.spawn(async move {
            match tokio::time::timeout_at(deadline, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some((tls, peer, deadline)),
                Ok(Err(err)) => {
                    tracing::debug!(%peer, "TLS handshake failed: {err}");
                    None
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake not finished in time; connection dropped");
                    None
                }
            }
        });
    }

    fn guarded(stream: Stream, addr: SocketAddr, deadline: Instant) -> (GuardedStream, Peer) {
        let handshake = Handshake::default();
        let deadline = Some(Box::pin(tokio::time::sleep_until(deadline)));
        let receiving = Arc::new(Receiving::default());
        let stream = GuardedStream {
            inner: stream,
            deadline,
            handshake: handshake.clone(),
            ahead: Vec::new(),
            taken: 0,
            gate: ReadGate::new(receiving.clone()),
        };
        (stream, Peer { addr, handshake, receiving })
    }
}

/// Who is on the other end of a connection, and the switch that lifts its handshake deadline.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    handshake: Handshake,
    /// What the connection holds being received, for the memory budget.
    pub receiving: Arc<Receiving>,
}

impl Peer {
    /// The upgrade was accepted: the handshake deadline no longer applies.
    pub fn finish_handshake(&self) {
        self.handshake.0.store(true, Ordering::Release);
    }
}

/// Whether a connection has finished its handshake (then the deadline no longer applies).
#[derive(Debug, Clone, Default)]
struct Handshake(Arc<AtomicBool>);

impl Handshake {
    fn is_finished(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Both branches are cancel-safe; with TLS at most DEFAULT_MAX_TLS_HANDSHAKES run at once (more wait in
            // the kernel's backlog), so one of the two is always enabled.
            let room = self.handshakes.len() < DEFAULT_MAX_TLS_HANDSHAKES;
            tokio::select! {
                biased;
                Some(done) = self.handshakes.join_next(), if !self.handshakes.is_empty() => match done {
                    Ok(Some((tls, addr, deadline))) => return Self::guarded(Stream::Tls(Box::new(tls)), addr, deadline),
                    Ok(None) => {}
                    Err(err) => tracing::warn!("a TLS handshake task ended abnormally: {err}"),
                },
                accepted = self.listener.accept(), if room => match accepted {
                    Ok((stream, addr)) => {
                        let _ = stream.set_nodelay(true);
                        match self.tls.clone() {
                            Some(acceptor) => self.start_tls(acceptor, stream, addr),
                            None => {
                                let deadline = Instant::now() + self.handshake_timeout;
                                return Self::guarded(Stream::Plain(stream), addr, deadline);
                            }
                        }
                    }
                    Err(err) => {
                        // Out of file descriptors and the like: say so and give the host a moment rather than spin.
                        tracing::warn!("accepting a connection failed: {err}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        let receiving = Arc::new(Receiving::default());
        Ok(Peer { addr: self.listener.local_addr()?, handshake: Handshake::default(), receiving })
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, GuardedListener>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, GuardedListener>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A plain or a TLS connection.
#[derive(Debug)]
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// A connection whose reads fail once its handshake deadline passes, unless the upgrade was accepted before.
#[derive(Debug)]
pub struct GuardedStream {
    inner: Stream,
    /// Dropped at the first read after the handshake, so an established connection keeps no timer.
    deadline: Option<Pin<Box<Sleep>>>,
    handshake: Handshake,
    /// Bytes read from the socket past what the reader asked for, served before the socket is read again; empty and
    /// unallocated whenever the reader has caught up (so while the connection is idle).
    ahead: Vec<u8>,
    /// How much of `ahead` was served.
    taken: usize,
    /// What it holds being received, counted as it is read from the socket, against the memory budget.
    gate: ReadGate,
}

thread_local! {
    /// Where a plain connection's small reads land first; what the reader had no room for moves to its `ahead`.
    static READ_AHEAD_BUFFER: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_AHEAD].into_boxed_slice());
}

impl GuardedStream {
    /// Serves what was read ahead, if anything is left; frees it once it is all served.
    fn serve_ahead(&mut self, buf: &mut ReadBuf<'_>) -> bool {
        if self.taken >= self.ahead.len() {
            return false;
        }
        let n = buf.remaining().min(self.ahead.len() - self.taken);
        buf.put_slice(&self.ahead[self.taken..self.taken + n]);
        self.taken += n;
        if self.taken == self.ahead.len() {
            self.ahead = Vec::new();
            self.taken = 0;
        }
        true
    }
}

/// Reads from `tcp` for a reader with little room in `buf`: up to [`READ_AHEAD`] bytes into this thread's buffer in
/// one system call, what fits into `buf`, the rest into `ahead`.
fn read_ahead(
    tcp: &mut TcpStream,
    cx: &mut Context<'_>,
    buf: &mut ReadBuf<'_>,
    ahead: &mut Vec<u8>,
) -> Poll<std::io::Result<()>> {
    READ_AHEAD_BUFFER.with_borrow_mut(|scratch| {
        let mut scratch = ReadBuf::new(&mut scratch[..]);
        std::task::ready!(Pin::new(tcp).poll_read(cx, &mut scratch))?;
        let read = scratch.filled();
        let n = buf.remaining().min(read.len());
        buf.put_slice(&read[..n]);
        ahead.extend_from_slice(&read[n..]);
        Poll::Ready(Ok(()))
    })
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let Some(deadline) = &mut this.deadline {
            if this.handshake.is_finished() {
                this.deadline = None;
            } else if deadline.as_mut().poll(cx).is_ready() {
                let err = std::io::Error::new(std::io::ErrorKind::TimedOut, "the HTTP handshake took too long");
                return Poll::Ready(Err(err));
            }
        }
        if buf.remaining() == 0 || this.serve_ahead(buf) {
            return Poll::Ready(Ok(()));
        }
        if let Some(gated) = this.gate.poll_before(cx) {
            return gated;
        }
        let (filled, ahead) = (buf.filled().len(), this.ahead.len());
        let read = match &mut this.inner {
            Stream::Plain(tcp) if buf.remaining() < READ_AHEAD / 4 => read_ahead(tcp, cx, buf, &mut this.ahead),
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            // rustls reads whole records into buffers of its own: a small read costs no system call.
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        };
        let n = (buf.filled().len() - filled) + this.ahead.len().saturating_sub(ahead);
        this.gate.poll_after(cx, read, n)
    }
}

impl AsyncWrite for GuardedStream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match &mut self.inner {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match &mut self.inner {
            Stream::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.inner {
            Stream::Plain(tcp) => tcp.is_write_vectored(),
            Stream::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.inner {
            Stream::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A plain connection read in small pieces, as a session's read buffer does: every byte arrives in order, what was
    /// read ahead is served before the socket is read again, and nothing stays allocated once it is all read.
    #[tokio::test]
    async fn small_reads_are_served_from_one_read_ahead_and_free_it() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let writer = {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut tcp = TcpStream::connect(addr).await.expect("connect");
                tcp.write_all(&sent).await.expect("write");
            })
        };
        let (tcp, peer) = listener.accept().await.expect("accept");
        let (mut stream, peer) =
            GuardedListener::guarded(Stream::Plain(tcp), peer, Instant::now() + Duration::from_secs(5));
        peer.finish_handshake();

        let (mut received, mut piece, mut served_ahead) = (Vec::new(), [0u8; 1000], 0);
        loop {
            let had_ahead = stream.ahead.len() - stream.taken;
            let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut piece))
                .await
                .expect("read")
                .expect("read");
            if n == 0 {
                break;
            }
            if had_ahead > 0 {
                served_ahead += 1;
                assert_eq!(n, had_ahead.min(piece.len()), "what was read ahead is served first");
            }
            assert!(n <= piece.len());
            received.extend_from_slice(&piece[..n]);
            assert!(stream.ahead.len() <= READ_AHEAD, "at most one read ahead is kept");
        }
        writer.await.expect("writer");
        assert_eq!(received.len(), sent.len());
        assert!(received == sent, "the bytes arrive in order");
        assert!(served_ahead > 0, "reads of 1000 bytes were served from what was read ahead");
        assert!(stream.deadline.is_none(), "the handshake deadline is dropped once the handshake is done");
        assert_eq!(stream.ahead.capacity(), 0, "nothing stays allocated once everything is read");
    }
}
