//! Compressed sockets (permessage-deflate) on yawc: the options a compressed connection runs with and the process's
//! one deflate pool, the guard under yawc that fails what yawc would let through (an oversized control frame, a read
//! error the host answers itself), and [`Deflated`], which turns a yawc socket into the host's frames and errors.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};

use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use yawc::close::CloseCode;
use yawc::{OpCode, WebSocketError};

use bytes::Buf;
use wasmsock_wire::deflate::{Compression, server_window_bits};
use wasmsock_wire::limits::DEFAULT_DEFLATE_POOL;
use wasmsock_wire::{Bytes, Close, ConnLimits, Frame, PeerError, Utf8Bytes};

use super::precompressed::{Outbox, Writer};

/// How many bytes of frames the host wrote may wait for the socket before a send flushes them first.
const DEFAULT_OUTBOX_BYTES: usize = 64 << 10;

/// The process's deflate states between messages, one pool per compression level (a pool drops a compressor of
/// another level instead of reusing it): every compressed connection, inbound or outbound, takes a state for one
/// message and gives it back (no context takeover), so an idle connection holds none.
fn pool(level: u32) -> yawc::DeflatePool {
    static POOLS: [OnceLock<yawc::DeflatePool>; 10] = [const { OnceLock::new() }; 10];
    let index = usize::try_from(level).unwrap_or(0).min(POOLS.len() - 1);
    POOLS[index].get_or_init(|| yawc::DeflatePool::new(DEFAULT_DEFLATE_POOL)).clone()
}

/// yawc's options for a connection compressing with `compression` within `limits`. The negotiation itself is the
/// host's ([`wasmsock_wire::deflate::negotiate`]): yawc is handed the agreed extension.
pub fn options(compression: Compression, limits: &ConnLimits, read_buffer: usize) -> yawc::Options {
    // yawc refuses a frame or a message of exactly its limit; the host's limits are the largest allowed.
    let (frame, message) = (limits.max_frame_size.saturating_add(1), limits.max_message_size.saturating_add(1));
    yawc::Options::default()
        .with_limits(frame.min(message), message)
        .with_read_buffer_capacity(read_buffer)
        .with_write_buffer_capacity(read_buffer)
        .with_compression_level(yawc::CompressionLevel::new(compression.level))
        .server_no_context_takeover()
        .client_no_context_takeover()
        .with_compression_threshold(compression.threshold)
        .with_deflate_pool(pool(compression.level))
}

/// What failed under yawc, for [`Deflated`] to report: yawc sees only "no more bytes yet".
type Failure = Arc<Mutex<Option<PeerError>>>;

/// Reads a socket for yawc, watching the frame headers go by. A frame that breaks the protocol in a way yawc 0.5 lets
/// through or answers with the wrong code is not handed on: a control frame longer than 125 bytes (RFC 6455 5.5; yawc
/// checks pings only and would echo an oversized close, Autobahn 7.3.6), a reserved opcode (yawc closes 1003, not
/// 1002: Autobahn 4.*), a continuation with nothing to continue or a new message inside a fragmented one (yawc lets
/// both through: Autobahn 5.9-5.18); the session closes with 1002 instead. A read error is
/// not handed on either: yawc would answer it with its own close (1011) before the host's (1009 or 1013 from the
/// memory budget). Both are kept for [`Deflated`], and yawc sees the socket go quiet.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    /// Bytes read from `inner` before the guard (with an outbound client's handshake answer), handed on first.
    prefix: Bytes,
    watch: HeaderWatch,
    failure: Failure,
    /// A server's frames written by the host ([`precompressed`]), which go out before yawc's next bytes.
    outbox: Option<Outbox>,
}

impl<S> Guarded<S> {
    /// A guard over `inner`, whose first frame is its next byte.
    pub fn new(inner: S) -> Self {
        Self::with_prefix(inner, Bytes::new())
    }

    /// A guard over `inner` whose first frames begin with `prefix`, already read from it.
    pub fn with_prefix(inner: S, prefix: Bytes) -> Self {
        Self { inner, prefix, watch: HeaderWatch::default(), failure: Arc::default(), outbox: None }
    }

    /// A server's guard, which also writes the data frames the host frames itself (see [`Deflated::server`]).
    pub fn server(inner: S) -> Self {
        Self { outbox: Some(Outbox::default()), ..Self::new(inner) }
    }

    fn fail(&self, err: PeerError) {
        if let Ok(mut failure) = self.failure.lock() {
            failure.get_or_insert(err);
        }
    }

    fn failed(&self) -> bool {
        self.failure.lock().map(|f| f.is_some()).unwrap_or(true)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.failed() {
            return Poll::Pending;
        }
        let before = buf.filled().len();
        if this.prefix.is_empty() {
            if let Err(err) = ready!(Pin::new(&mut this.inner).poll_read(cx, buf)) {
                this.fail(PeerError { message: format!("the connection failed: {err}"), close: None });
                return Poll::Pending;
            }
        } else {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
        }
        let Some(at) = this.watch.scan(&buf.filled()[before..]) else { return Poll::Ready(Ok(())) };
        let broken = this.watch.broken.unwrap_or_default();
        this.fail(PeerError {
            message: format!("the peer broke the WebSocket protocol: it sent {broken}"),
            close: Some(Close::new(1002, "protocol error")),
        });
        if at == 0 {
            // Nothing to hand on: an empty read would read as the end of the stream.
            return Poll::Pending;
        }
        buf.set_filled(before + at);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Writes the frames the host framed itself, all of them, before anything yawc writes.
    fn poll_outbox(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let Some(outbox) = &self.outbox else { return Poll::Ready(Ok(())) };
        let mut out = outbox.lock().map_err(|_| std::io::Error::other("the connection's outbox was poisoned"))?;
        while !out.is_empty() {
            match ready!(Pin::new(&mut self.inner).poll_write(cx, &out))? {
                0 => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                n => out.advance(n),
            }
        }
        // Written: an idle connection keeps no buffer.
        if out.capacity() > 0 {
            *out = bytes::BytesMut::new();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_outbox(cx))?;
        Pin::new(&mut this.inner).poll_write(cx, data)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_outbox(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_outbox(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_outbox(cx))?;
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Where the byte stream is in its frames: within a header (the bytes so far), or within a payload (what is left).
#[derive(Debug, Default)]
struct HeaderWatch {
    header: [u8; 14],
    have: usize,
    skip: u64,
    /// A fragmented message is unfinished: only continuation and control frames may come.
    fragmented: bool,
    /// What broke the protocol, once found: nothing after it is a frame.
    broken: Option<&'static str>,
}

impl HeaderWatch {
    /// Goes through the next bytes of the stream; the offset in `data` of a control frame longer than 125 bytes (0
    /// when its header began in earlier bytes), if one starts.
    fn scan(&mut self, data: &[u8]) -> Option<usize> {
        if self.broken.is_some() {
            return Some(0);
        }
        let mut at = 0;
        let mut start = None;
        while at < data.len() {
            if self.skip > 0 {
                let n = usize::try_from(self.skip).unwrap_or(usize::MAX).min(data.len() - at);
                self.skip -= n as u64;
                at += n;
                continue;
            }
            if self.have == 0 {
                start = Some(at);
            }
            self.header[self.have] = data[at];
            self.have += 1;
            at += 1;
            if self.have < 2 {
                continue;
            }
            let (fin, opcode, length) = (self.header[0] & 0x80 != 0, self.header[0] & 0x0f, self.header[1] & 0x7f);
            if self.have == 2 {
                self.broken = match opcode {
                    3..=7 | 11..=15 => Some("a frame with a reserved opcode"),
                    8..=10 if length > 125 => Some("a control frame longer than 125 bytes"),
                    0 if !self.fragmented => Some("a continuation frame with no message to continue"),
                    1 | 2 if self.fragmented => Some("a new message before its fragmented one was finished"),
                    _ => None,
                };
                if self.broken.is_some() {
                    return Some(start.unwrap_or(0));
                }
                if opcode < 8 {
                    self.fragmented = !fin;
                }
            }
            let extended = match length {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let masked = if self.header[1] & 0x80 != 0 { 4 } else { 0 };
            if self.have < 2 + extended + masked {
                continue;
            }
            self.skip = match extended {
                0 => u64::from(length),
                _ => self.header[2..2 + extended].iter().fold(0, |n, b| n << 8 | u64::from(*b)),
            };
            self.have = 0;
        }
        None
    }
}

/// A yawc socket as the host's frames (see the module docs). Errors yawc answers with a close of its own (1002, 1007,
/// 1009) end the stream after that close is written, with no close for the host to send; failures the guard kept come
/// with the close the host sends.
pub struct Deflated<S> {
    socket: yawc::WebSocket<Guarded<S>>,
    failure: Failure,
    /// A server's data frames, framed by the host and compressed once for every connection that sends the same
    /// message ([`precompressed`]); none for an outbound client, whose frames yawc masks and compresses.
    writer: Option<Writer>,
    /// yawc failed the connection and is writing its close; reported once that is done.
    failed: Option<PeerError>,
    /// The host sent a close: the peer's is its answer, and yawc's echo of that must not follow it.
    sent_close: bool,
    ended: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Deflated<S> {
    /// The host's side of `socket`, whose stream is guarded by the [`Guarded`] that gave `guard`.
    pub fn new(socket: yawc::WebSocket<Guarded<S>>, guard: GuardHandles) -> Self {
        Self { socket, failure: guard.failure, writer: None, failed: None, sent_close: false, ended: false }
    }

    /// A server's side of `socket`: when deflate was negotiated (`extension`) and the guard was made by
    /// [`Guarded::server`], the host compresses and frames the data messages itself with `compression`; control frames
    /// go through yawc.
    pub fn server(
        socket: yawc::WebSocket<Guarded<S>>,
        guard: GuardHandles,
        compression: Compression,
        extension: Option<&str>,
    ) -> Self {
        let writer = match (extension, &guard.outbox) {
            (Some(extension), Some(outbox)) => {
                Some(Writer::new(compression, server_window_bits(extension), outbox.clone()))
            }
            _ => None,
        };
        Self { writer, ..Self::new(socket, guard) }
    }
}

/// What a [`Deflated`] shares with the guard under its yawc socket.
#[derive(Debug)]
pub struct GuardHandles {
    failure: Failure,
    outbox: Option<Outbox>,
}

impl<S> Guarded<S> {
    /// What the guard shares, for [`Deflated::new`] and [`Deflated::server`].
    pub fn handles(&self) -> GuardHandles {
        GuardHandles { failure: self.failure.clone(), outbox: self.outbox.clone() }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Stream for Deflated<S> {
    type Item = Result<Frame, PeerError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            match this.socket.poll_next_frame(cx) {
                Poll::Ready(Ok(frame)) => match to_frame(frame) {
                    Some(frame) => {
                        // yawc answers every close it reads, even one answering the host's: the stream ends here,
                        // so that answer is never written (the writer has stopped after the host's close).
                        this.ended = frame.is_close() && this.sent_close;
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    None => {
                        this.ended = true;
                        let close = Some(Close::new(1007, "invalid UTF-8 in a text message"));
                        let message = "the peer sent invalid UTF-8 in a text message".to_owned();
                        return Poll::Ready(Some(Err(PeerError { message, close })));
                    }
                },
                Poll::Ready(Err(err)) => {
                    // After an error of its own yawc is closed: the next poll writes its close and ends.
                    if let Some(failed) = this.failed.take() {
                        this.ended = true;
                        return Poll::Ready(Some(Err(failed)));
                    }
                    if matches!(err, WebSocketError::ConnectionClosed) {
                        this.ended = true;
                        return Poll::Ready(None);
                    }
                    this.failed = Some(peer_error(&err));
                }
                Poll::Pending => {
                    let kept = this.failure.lock().ok().and_then(|mut failure| failure.take());
                    return match kept {
                        Some(err) => {
                            this.ended = true;
                            Poll::Ready(Some(Err(err)))
                        }
                        None => Poll::Pending,
                    };
                }
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> Sink<Frame> for Deflated<S> {
    type Error = WebSocketError;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        // Frames the host wrote wait in the guard's outbox until yawc writes or flushes: past a buffer's worth, a
        // flush makes room, as yawc does with its own buffer.
        if this.writer.as_ref().is_some_and(|w| w.waiting() >= DEFAULT_OUTBOX_BYTES) {
            ready!(Pin::new(&mut this.socket).poll_flush(cx))?;
        }
        Pin::new(&mut this.socket).poll_ready(cx)
    }

    fn start_send(self: Pin<&mut Self>, frame: Frame) -> Result<(), Self::Error> {
        let this = self.get_mut();
        this.sent_close |= frame.is_close();
        let frame = match (frame, &this.writer) {
            (Frame::Text(text), Some(writer)) => return Ok(writer.write(0x1, &Bytes::from(text))?),
            (Frame::Binary(data), Some(writer)) => return Ok(writer.write(0x2, &data)?),
            (frame, _) => frame,
        };
        Pin::new(&mut this.socket).start_send(from_frame(frame))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.get_mut().socket).poll_close(cx)
    }
}

/// A yawc error as the session reports it; yawc has queued the close itself, so none for the host to send.
fn peer_error(err: &WebSocketError) -> PeerError {
    let message = match err {
        WebSocketError::FrameTooLarge => "the peer sent a message larger than the limit".to_owned(),
        WebSocketError::InvalidUTF8 => "the peer sent invalid UTF-8 in a text message".to_owned(),
        WebSocketError::IoError(io) => format!("the connection failed: {io}"),
        other => format!("the peer broke the WebSocket protocol: {other}"),
    };
    PeerError { message, close: None }
}

/// A yawc frame as the host's; none for a text message that is not UTF-8.
fn to_frame(frame: yawc::Frame) -> Option<Frame> {
    let close = (frame.opcode() == OpCode::Close).then(|| {
        let code = frame.close_code().map(u16::from);
        let reason = frame.close_reason().ok().flatten().unwrap_or_default().to_owned();
        code.map(|code| Close { code, reason })
    });
    let (opcode, _, payload) = frame.into_parts();
    Some(match opcode {
        OpCode::Text => Frame::Text(Utf8Bytes::try_from(payload).ok()?),
        OpCode::Binary | OpCode::Continuation => Frame::Binary(payload),
        OpCode::Close => Frame::Close(close.flatten()),
        OpCode::Ping => Frame::Ping(payload),
        OpCode::Pong => Frame::Pong(payload),
    })
}

/// The host's frame as yawc's. A close without a code goes out empty, as on a plain connection (yawc's `close` always
/// writes a code, so it is made from its opcode and an empty payload).
fn from_frame(frame: Frame) -> yawc::Frame {
    match frame {
        Frame::Text(text) => yawc::Frame::text(Bytes::from(text)),
        Frame::Binary(data) => yawc::Frame::binary(data),
        Frame::Close(Some(close)) => yawc::Frame::close(CloseCode::from(close.code), close.reason),
        Frame::Close(None) => yawc::Frame::from((OpCode::Close, Bytes::new())),
        Frame::Ping(data) => yawc::Frame::ping(data),
        Frame::Pong(data) => yawc::Frame::pong(data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(opcode: u8, len: usize, masked: bool) -> Vec<u8> {
        let mask = if masked { 0x80 } else { 0 };
        let mut bytes = vec![0x80 | opcode];
        match len {
            0..=125 => bytes.push(mask | len as u8),
            126..=0xffff => {
                bytes.push(mask | 126);
                bytes.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                bytes.push(mask | 127);
                bytes.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        if masked {
            bytes.extend_from_slice(&[1, 2, 3, 4]);
        }
        bytes
    }

    fn frame(opcode: u8, len: usize, masked: bool) -> Vec<u8> {
        let mut bytes = header(opcode, len, masked);
        bytes.resize(bytes.len() + len, b'x');
        bytes
    }

    #[test]
    fn frames_of_any_length_pass_and_an_oversized_control_frame_is_found_where_it_starts() {
        let mut stream = Vec::new();
        for (opcode, len) in [(1, 5), (2, 126), (2, 70_000), (9, 125), (8, 2)] {
            stream.extend(frame(opcode, len, true));
        }
        let good = stream.len();
        stream.extend(frame(8, 126, true));
        let mut watch = HeaderWatch::default();
        assert_eq!(watch.scan(&stream), Some(good));
        // Byte by byte, the same frame is found at its second byte (its first was already handed on).
        let mut watch = HeaderWatch::default();
        let found: Vec<_> =
            stream.iter().enumerate().filter_map(|(i, b)| watch.scan(&[*b]).map(|at| (i, at))).collect();
        assert_eq!(found.first(), Some(&(good + 1, 0)));
        // Unmasked (a server's frames, read by an outbound client), and a long pong.
        let mut watch = HeaderWatch::default();
        let mut server = frame(1, 300, false);
        server.extend(header(10, 200, false));
        assert_eq!(watch.scan(&server), Some(304));
        assert_eq!(watch.broken, Some("a control frame longer than 125 bytes"));
    }

    #[test]
    fn reserved_opcodes_and_fragments_out_of_order_are_found() {
        let unfinished = |opcode: u8| {
            let mut bytes = frame(opcode, 3, true);
            bytes[0] &= 0x7f;
            bytes
        };
        let cases: [(Vec<Vec<u8>>, Option<&str>); 6] = [
            (vec![frame(3, 0, true)], Some("a frame with a reserved opcode")),
            (vec![frame(11, 0, true)], Some("a frame with a reserved opcode")),
            (vec![frame(0, 5, true)], Some("a continuation frame with no message to continue")),
            (vec![unfinished(1), frame(1, 5, true)], Some("a new message before its fragmented one was finished")),
            // A ping between fragments, then the last fragment, then a new message: all fine.
            (vec![unfinished(1), frame(9, 1, true), unfinished(0), frame(0, 2, true), frame(2, 4, true)], None),
            (
                vec![unfinished(2), frame(0, 2, true), frame(0, 2, true)],
                Some("a continuation frame with no message to continue"),
            ),
        ];
        for (frames, broken) in cases {
            let mut watch = HeaderWatch::default();
            let stream = frames.concat();
            let last = frames.last().map_or(0, Vec::len);
            let found = watch.scan(&stream);
            assert_eq!(watch.broken, broken, "{frames:?}");
            assert_eq!(found, broken.map(|_| stream.len() - last), "{frames:?}");
        }
    }

    #[test]
    fn frames_convert_both_ways() {
        for frame in [
            Frame::Text("héllo".into()),
            Frame::Binary(vec![0, 1, 255].into()),
            Frame::Close(Some(Close::new(4001, "bye"))),
            Frame::Close(None),
            Frame::Ping(vec![7].into()),
            Frame::Pong(Bytes::new()),
        ] {
            assert_eq!(to_frame(from_frame(frame.clone())), Some(frame));
        }
        assert!(from_frame(Frame::Close(None)).payload().is_empty(), "a close without a code has no payload");
        assert_eq!(to_frame(yawc::Frame::text(vec![0xff, 0xfe])), None, "not UTF-8");
    }
}
