//! The main listener: every accepted TCP connection must finish its handshakes (TLS when the host serves `wss://`,
//! then the HTTP upgrade) within the handshake timeout, and a client that stalls or botches its TLS handshake holds
//! up no one else.

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
use wasmsock_wire::limits::DEFAULT_MAX_TLS_HANDSHAKES;

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
        let deadline = Box::pin(tokio::time::sleep_until(deadline));
        (GuardedStream { inner: stream, deadline, handshake: handshake.clone() }, Peer { addr, handshake })
    }
}

/// Who is on the other end of a connection, and the switch that lifts its handshake deadline.
#[derive(Debug, Clone)]
pub struct Peer {
    /// The peer's address.
    pub addr: SocketAddr,
    handshake: Handshake,
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
        Ok(Peer { addr: self.listener.local_addr()?, handshake: Handshake::default() })
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
    deadline: Pin<Box<Sleep>>,
    handshake: Handshake,
}

impl AsyncRead for GuardedStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if !this.handshake.is_finished() && this.deadline.as_mut().poll(cx).is_ready() {
            let err = std::io::Error::new(std::io::ErrorKind::TimedOut, "the HTTP handshake took too long");
            return Poll::Ready(Err(err));
        }
        match &mut this.inner {
            Stream::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Stream::Tls(tls) => Pin::new(tls.as_mut()).poll_read(cx, buf),
        }
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
