//! Every limit and timeout of the host in one place: the documented `DEFAULT_*` values and the `Limits` they fill.

use std::time::Duration;

/// How long one handler call may run before it is interrupted. A second is generous for an event handler and short
/// enough that a looping handler costs little; raise it for handlers that do heavy work per event.
pub const DEFAULT_HANDLER_DEADLINE: Duration = Duration::from_secs(1);

/// The most linear memory one handler instance may grow to. 64 MiB fits the JavaScript and Python runtimes (which start
/// at 10–20 MiB) with room for their heaps, and keeps 100 concurrent calls under 7 GiB.
pub const DEFAULT_HANDLER_MEMORY: usize = 64 << 20;

/// How often the epoch ticker advances. The deadline is checked on every tick, so this is its resolution.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// How many handler instances may exist at once. Every instance takes a slot of the pooling allocator; calls beyond this
/// wait for a slot rather than fail. Twice a few hundred is far more than two cores can keep busy.
pub const DEFAULT_MAX_INSTANCES: u32 = 256;

/// How many handler instances may be kept between events (`per-connection` and `shared` lifecycles) on top of
/// [`DEFAULT_MAX_INSTANCES`]. Each holds a slot of the pooling allocator (address space, not memory, until used) and
/// its guest's memory for its whole life, so this bounds what per-connection endpoints can hold: a connection that
/// finds every slot taken is closed with 1013 (try again later). 256 keeps the pool's address-space reservation
/// twice the per-event one; raise it for many concurrent per-connection sessions.
pub const DEFAULT_MAX_RESIDENT_INSTANCES: u32 = 256;

/// How many frames may wait in one connection's outbound queue. A handler's `send` gets a `limit` error when it is full
/// instead of blocking; 1024 frames absorb a burst of chat fan-out without holding unbounded memory for a slow reader.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;

/// The largest message (after reassembling fragments) a peer may send. 16 MiB is between AWS API Gateway's 128 KB and
/// Cloudflare's 32 MiB and keeps a single message from dominating the host's memory.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The largest single frame a peer may send.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// The socket read buffer per connection. tungstenite's default of 128 KiB costs about 130 KB per idle connection and is
/// zero-filled before each read; 4 KiB measured 6 KB per idle connection and half the CPU per message.
pub const DEFAULT_READ_BUFFER: usize = 4 << 10;

/// How long to wait for the peer's close frame (or the end of the stream) after this host sent one.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an outbound client may take to connect and finish its handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much a guest may write to stdout and stderr per event before the rest is dropped from the log.
pub const DEFAULT_GUEST_LOG_BYTES: usize = 16 << 10;

/// How long a graceful shutdown waits for sessions to finish their closing handshakes and handlers.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// How often the plugins root is checked for changed files. A change is applied after it has been stable for one more
/// interval, so a deploy by file copy goes live within about two seconds.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The limits one host runs with; `Limits::default()` is every `DEFAULT_*` above.
#[derive(Debug, Clone)]
pub struct Limits {
    /// See [`DEFAULT_HANDLER_DEADLINE`].
    pub handler_deadline: Duration,
    /// See [`DEFAULT_HANDLER_MEMORY`].
    pub handler_memory: usize,
    /// See [`DEFAULT_MAX_INSTANCES`].
    pub max_instances: u32,
    /// See [`DEFAULT_MAX_RESIDENT_INSTANCES`].
    pub max_resident_instances: u32,
    /// See [`DEFAULT_OUTBOUND_QUEUE`].
    pub outbound_queue: usize,
    /// See [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// See [`DEFAULT_MAX_FRAME_SIZE`].
    pub max_frame_size: usize,
    /// See [`DEFAULT_READ_BUFFER`].
    pub read_buffer: usize,
    /// See [`DEFAULT_CLOSE_TIMEOUT`].
    pub close_timeout: Duration,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_GUEST_LOG_BYTES`].
    pub guest_log_bytes: usize,
    /// See [`DEFAULT_SHUTDOWN_GRACE`].
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handler_deadline: DEFAULT_HANDLER_DEADLINE,
            handler_memory: DEFAULT_HANDLER_MEMORY,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_resident_instances: DEFAULT_MAX_RESIDENT_INSTANCES,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            read_buffer: DEFAULT_READ_BUFFER,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            guest_log_bytes: DEFAULT_GUEST_LOG_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        }
    }
}
