//! A compressing server connection's data frames, written by the host under yawc: each message deflated once for every
//! connection that sends it (the process keeps the recent ones by buffer, so a channel's publish to a thousand
//! compressing members is compressed once), framed, and handed to the guard under yawc to go out before yawc's next
//! bytes.
//!
//! This works because the host always negotiates no context takeover: a message's compressed form depends only on
//! its bytes, the level and the window, never on the connection's earlier messages. Only a server's frames can be
//! shared this way; a client's are masked with a key of their own, and outbound clients keep yawc's compressor.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::{BufMut, BytesMut};
use flate2::{Compress, FlushCompress};

use crate::control::metrics::{DEFLATE_COMPRESSED as COMPRESSED, DEFLATE_REUSED as REUSED};

use wasmsock_wire::Bytes;
use wasmsock_wire::deflate::Compression;
use wasmsock_wire::limits::{DEFAULT_DEFLATE_SHARED, DEFAULT_DEFLATE_SHARED_BYTES};

/// Frames written by the host and waiting to go out before yawc's next bytes (see [`super::deflated::Guarded`]).
pub type Outbox = Arc<Mutex<BytesMut>>;

/// How one compressing server connection writes its data frames.
#[derive(Debug)]
pub struct Writer {
    compression: Compression,
    window_bits: u8,
    outbox: Outbox,
}

impl Writer {
    /// A writer compressing with `compression` and the negotiated `window_bits`, framing into `outbox`.
    pub fn new(compression: Compression, window_bits: u8, outbox: Outbox) -> Self {
        Self { compression, window_bits, outbox }
    }

    /// Bytes framed and not yet handed to the socket.
    pub fn waiting(&self) -> usize {
        self.outbox.lock().map(|out| out.len()).unwrap_or(0)
    }

    /// Frames one whole message (`opcode` 1 text, 2 binary): compressed with RSV1 set when it is at least the
    /// threshold long, as it is otherwise. Unmasked: a server's frame.
    pub fn write(&self, opcode: u8, payload: &Bytes) -> std::io::Result<()> {
        let (first, body) = if payload.len() < self.compression.threshold {
            (0x80 | opcode, payload.clone())
        } else {
            (0x80 | 0x40 | opcode, shared(payload, self.compression.level, self.window_bits)?)
        };
        let mut out = self.outbox.lock().map_err(|_| std::io::Error::other("the connection's outbox was poisoned"))?;
        out.reserve(10 + body.len());
        out.put_u8(first);
        match body.len() {
            len @ 0..=125 => out.put_u8(len as u8),
            len @ 126..=0xffff => {
                out.put_u8(126);
                out.put_u16(len as u16);
            }
            len => {
                out.put_u8(127);
                out.put_u64(len as u64);
            }
        }
        out.extend_from_slice(&body);
        Ok(())
    }
}

/// One message kept with its compressed form.
struct Kept {
    /// The buffer it was compressed from: kept alive, so no other message can take its address while kept.
    raw: Bytes,
    level: u32,
    window_bits: u8,
    deflated: Bytes,
}

/// The recent messages compressed, newest first, and the bytes of their buffers.
struct Recent {
    kept: VecDeque<Kept>,
    bytes: usize,
}

static RECENT: Mutex<Recent> = Mutex::new(Recent { kept: VecDeque::new(), bytes: 0 });

/// `payload` compressed with `level` and `window_bits`: a form made for the same buffer (a channel's message goes to
/// every member as one buffer) when one is kept, or made now and kept.
fn shared(payload: &Bytes, level: u32, window_bits: u8) -> std::io::Result<Bytes> {
    let same = |k: &Kept| {
        k.raw.as_ptr() == payload.as_ptr()
            && k.raw.len() == payload.len()
            && k.level == level
            && k.window_bits == window_bits
    };
    if let Ok(recent) = RECENT.lock()
        && let Some(kept) = recent.kept.iter().find(|k| same(k))
    {
        REUSED.fetch_add(1, Ordering::Relaxed);
        return Ok(kept.deflated.clone());
    }
    let deflated = deflate(payload, level, window_bits)?;
    COMPRESSED.fetch_add(1, Ordering::Relaxed);
    if payload.len() <= DEFAULT_DEFLATE_SHARED_BYTES / 4
        && let Ok(mut recent) = RECENT.lock()
        && !recent.kept.iter().any(same)
    {
        recent.bytes += payload.len();
        recent.kept.push_front(Kept { raw: payload.clone(), level, window_bits, deflated: deflated.clone() });
        while recent.kept.len() > DEFAULT_DEFLATE_SHARED || recent.bytes > DEFAULT_DEFLATE_SHARED_BYTES {
            let Some(old) = recent.kept.pop_back() else { break };
            recent.bytes -= old.raw.len();
        }
    }
    Ok(deflated)
}

thread_local! {
    /// This thread's compressors, one per level and window in use (about 330 KB each at 15 bits), reset before each
    /// message: no context is taken over.
    static COMPRESSORS: RefCell<Vec<(u32, u8, Compress)>> = const { RefCell::new(Vec::new()) };
}

/// `input` as one permessage-deflate message (RFC 7692 7.2.1): deflated with a sync flush, without its final
/// `00 00 ff ff`.
pub fn deflate(input: &[u8], level: u32, window_bits: u8) -> std::io::Result<Bytes> {
    COMPRESSORS.with_borrow_mut(|compressors| {
        let index = match compressors.iter().position(|(l, w, _)| *l == level && *w == window_bits) {
            Some(index) => index,
            None => {
                let level = flate2::Compression::new(level);
                compressors.push((
                    level.level(),
                    window_bits,
                    Compress::new_with_window_bits(level, false, window_bits),
                ));
                compressors.len() - 1
            }
        };
        let compress = &mut compressors[index].2;
        compress.reset();
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX).min(input.len());
            compress.compress_vec(&input[consumed..], &mut out, FlushCompress::Sync).map_err(std::io::Error::other)?;
            let consumed = usize::try_from(compress.total_in()).unwrap_or(usize::MAX);
            // A sync flush is complete once every byte went in and the output was not filled up.
            if consumed >= input.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(64));
        }
        if out.ends_with(&[0, 0, 0xff, 0xff]) {
            out.truncate(out.len() - 4);
        }
        Ok(Bytes::from(out))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(data: &[u8]) -> Vec<u8> {
        let mut input = data.to_vec();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut inflater = Decompress::new(false);
        let mut out = Vec::with_capacity(1 << 20);
        inflater.decompress_vec(&input, &mut out, FlushDecompress::Sync).unwrap();
        out
    }

    #[test]
    fn a_message_inflates_to_itself_at_every_window_and_size() {
        for window_bits in [9, 12, 15] {
            for len in [0, 1, 200, 70_000, 300_000] {
                let message: Vec<u8> = (0..len).map(|i| (i % 251) as u8 ^ (i / 1000) as u8).collect();
                let deflated = deflate(&message, 1, window_bits).unwrap();
                assert_eq!(inflate(&deflated), message, "{len} bytes at {window_bits} bits");
            }
        }
    }

    #[test]
    fn one_buffer_sent_by_many_connections_is_compressed_once() {
        let message = Bytes::from(format!("{{\"text\": \"{}\"}}", "hello ".repeat(100)));
        let outboxes: Vec<Outbox> = (0..50).map(|_| Outbox::default()).collect();
        let counts = || (COMPRESSED.load(Ordering::Relaxed), REUSED.load(Ordering::Relaxed));
        let (compressed, reused) = counts();
        for outbox in &outboxes {
            Writer::new(Compression { level: 1, threshold: 128 }, 15, outbox.clone()).write(1, &message).unwrap();
        }
        let (compressed, reused) = (counts().0 - compressed, counts().1 - reused);
        // Other tests in this process may compress at the same time, never reuse this buffer's form.
        assert!(compressed >= 1 && reused >= 49, "compressed {compressed}, reused {reused}");
        let frame = outboxes[0].lock().unwrap().clone();
        assert_eq!(frame[0], 0xc1, "FIN, RSV1 and text");
        assert!(outboxes.iter().all(|o| *o.lock().unwrap() == frame), "every connection sends the same frame");
        let (len, at) = match frame[1] {
            126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
            len => (usize::from(len), 2),
        };
        assert_eq!(inflate(&frame[at..at + len]), message.as_ref());
    }

    #[test]
    fn a_short_message_goes_as_it_is() {
        let outbox = Outbox::default();
        Writer::new(Compression { level: 1, threshold: 128 }, 15, outbox.clone())
            .write(2, &Bytes::from_static(b"hi"))
            .unwrap();
        assert_eq!(&outbox.lock().unwrap()[..], &[0x82, 2, b'h', b'i']);
    }
}
