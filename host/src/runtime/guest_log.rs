//! Guest stdout and stderr, turned into host log lines tagged with the handler, the connection and the event.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

use super::services::Connection;

/// The log of one handler instance: both streams share a per-call byte budget; what is past it is counted, not
/// logged. An instance kept between events is told each new call's connection and event with [`GuestLog::begin`].
/// One allocation per instance: a per-event instance makes a new log each event. The connection is kept as a
/// reference, not its id copied: a `shared` instance's calls change connections at almost every event.
#[derive(Clone)]
pub(super) struct GuestLog(Arc<Shared>);

struct Shared {
    handler: Arc<str>,
    per_call: usize,
    budget: AtomicUsize,
    call: Mutex<Call>,
}

/// What the current call's lines are tagged with, and the end of its stderr.
struct Call {
    conn: Arc<dyn Connection>,
    method: &'static str,
    stderr_tail: String,
    /// The span of the call (the connection's), kept only when `debug` is on: the connection span is a debug span,
    /// and wasmtime writes guest output from a task of its own, so lines are logged in it explicitly. At the default
    /// level every line already carries the handler, the connection and the method as fields, and looking up the
    /// current span on every event would cost the registry a lookup and a reference count for nothing.
    span: tracing::Span,
}

/// How much of the end of a call's stderr is kept to explain a trap (a JavaScript exception or a Python traceback
/// is printed there just before the guest traps).
const STDERR_TAIL_BYTES: usize = 400;

/// The span guest lines of a call starting now are logged in: the current one when debug spans are enabled.
fn call_span() -> tracing::Span {
    if tracing::level_enabled!(tracing::Level::DEBUG) { tracing::Span::current() } else { tracing::Span::none() }
}

impl GuestLog {
    pub(super) fn new(handler: Arc<str>, conn: Arc<dyn Connection>, method: &'static str, budget: usize) -> Self {
        Self(Arc::new(Shared {
            handler,
            per_call: budget,
            budget: AtomicUsize::new(budget),
            call: Mutex::new(Call { conn, method, stderr_tail: String::new(), span: call_span() }),
        }))
    }

    /// Starts a new call of a kept instance for a `method` event of connection `conn`: a fresh budget and an empty
    /// stderr tail.
    pub(super) fn begin(&self, conn: &Arc<dyn Connection>, method: &'static str) {
        if let Ok(mut call) = self.0.call.lock() {
            if !Arc::ptr_eq(&call.conn, conn) {
                call.conn = Arc::clone(conn);
            }
            call.method = method;
            call.stderr_tail.clear();
            call.span = call_span();
        }
        self.0.budget.store(self.0.per_call, Ordering::Relaxed);
    }

    /// The current call's span, connection and event method.
    fn call(&self) -> (tracing::Span, String, &'static str) {
        self.0
            .call
            .lock()
            .map(|call| (call.span.clone(), call.conn.id().to_owned(), call.method))
            .unwrap_or_else(|_| (tracing::Span::none(), "?".to_owned(), "?"))
    }

    /// The last lines the guest wrote to stderr in this call (at most [`STDERR_TAIL_BYTES`]), joined by " | ".
    pub(super) fn stderr_tail(&self) -> String {
        self.0.call.lock().map(|call| call.stderr_tail.clone()).unwrap_or_default()
    }

    pub(super) fn stream(&self, name: &'static str) -> GuestStream {
        GuestStream { log: self.clone(), name }
    }
}

/// One of the guest's output streams.
pub(super) struct GuestStream {
    log: GuestLog,
    name: &'static str,
}

impl IsTerminal for GuestStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestStream {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter { log: self.log.clone(), name: self.name, line: Vec::new(), dropped: 0 })
    }
}

/// Collects bytes into lines and logs each complete line; never fails, so a chatty guest cannot trap on a full log.
struct LineWriter {
    log: GuestLog,
    name: &'static str,
    line: Vec<u8>,
    dropped: usize,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\r', '\n']);
        let (span, conn, method) = self.log.call();
        let _in_call = span.enter();
        // stderr at warn, so a guest's errors survive RUST_LOG=warn; stdout at info.
        let (handler, stream) = (&self.log.0.handler, self.name);
        if stream == "stderr" {
            tracing::warn!(target: "wasmsock::guest", handler = %handler, conn = %conn, method, stream, "{text}");
        } else {
            tracing::info!(target: "wasmsock::guest", handler = %handler, conn = %conn, method, stream, "{text}");
        }
        if self.name == "stderr"
            && !text.trim().is_empty()
            && let Ok(mut call) = self.log.0.call.lock()
        {
            let tail = &mut call.stderr_tail;
            if !tail.is_empty() {
                tail.push_str(" | ");
            }
            tail.push_str(text.trim());
            if tail.len() > STDERR_TAIL_BYTES {
                let mut cut = tail.len() - STDERR_TAIL_BYTES;
                while !tail.is_char_boundary(cut) {
                    cut += 1;
                }
                tail.replace_range(..cut, "…");
            }
        }
        self.line.clear();
    }

    fn take_budget(&self, wanted: usize) -> usize {
        let mut granted = 0;
        let _ = self.log.0.budget.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            granted = left.min(wanted);
            Some(left - granted)
        });
        granted
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let granted = self.take_budget(buf.len());
        self.dropped += buf.len() - granted;
        for &byte in &buf[..granted] {
            self.line.push(byte);
            if byte == b'\n' {
                self.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        self.emit();
        if self.dropped > 0 {
            let (span, conn, method) = self.log.call();
            let _in_call = span.enter();
            tracing::warn!(
                target: "wasmsock::guest",
                handler = %self.log.0.handler,
                conn = %conn,
                method,
                stream = self.name,
                "{} bytes of guest output past the per-event log budget were dropped",
                self.dropped
            );
        }
    }
}
