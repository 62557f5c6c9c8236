//! Every limit and timeout of the host in one place: the documented `DEFAULT_*` values and the `Limits` they fill.

use std::time::Duration;

/// How long one handler call may run before it is interrupted. A second is generous for an event handler and short
/// enough that a looping handler costs little; raise it for handlers that do heavy work per event.
pub const DEFAULT_HANDLER_DEADLINE: Duration = Duration::from_secs(1);

/// The most linear memory one handler instance may grow to. 64 MiB fits the JavaScript and Python runtimes (which start
/// at 10–20 MiB) with room for their heaps, and keeps 100 concurrent calls under 7 GiB.
pub const DEFAULT_HANDLER_MEMORY: usize = 64 << 20;

/// How often the epoch ticker advances. The deadline is checked on every tick, so this is its resolution; it is also
/// the slice a long call runs before it steps aside for a waiting call (see [`PREEMPT_SLICE`]). 2 ms: with 10 ms, a
/// quiet project's round trip under 16 spinning connections of another had a p99 of 15-25 ms, the slices of the
/// spinners it waited behind; the ticker's 500 wake-ups a second cost nothing measurable.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

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
/// instead of blocking (and, under the default [`SlowConsumer::Close`] policy, the connection is closed with 1013);
/// 1024 frames absorb a burst of chat fan-out without holding unbounded memory for a slow reader.
pub const DEFAULT_OUTBOUND_QUEUE: usize = 1024;

/// How many bytes of payload may wait in one connection's outbound queue, whatever the number of frames. One message
/// of the largest size always fits into an empty queue (when the memory budget has room for it). The same as the
/// largest message, so a reader gets at least one; the sum over slow readers is bounded by the memory budget, which
/// cuts off the ones holding the most first when it is short.
pub const DEFAULT_OUTBOUND_QUEUE_BYTES: usize = 16 << 20;

/// How long a connection may carry no data message in either direction before it is closed with 1001. AWS API
/// Gateway's idle timeout is the same 10 minutes; keepalive pings do not count as data.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// How long the peer may stay silent before the host pings it; silent for twice this long (no pong to the ping), the
/// connection is closed with 1001. Browsers answer pings by themselves; 30 s is below common NAT and proxy idle cuts.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(30);

/// How many inbound sessions the host serves at once, over all endpoints; more get HTTP 503 before the upgrade. 10,000
/// idle sessions take about 100 MB; raise it (and the process's open-file limit) for more.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// How many outbound clients (`create-websocket`) may be live at once; past it `create-websocket` gets a `limit`
/// error, so a handler that opens clients in a loop cannot exhaust the host's sockets.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// How many inbound sessions one endpoint serves at once unless its descriptor says otherwise; more get HTTP 503.
pub const DEFAULT_MAX_ENDPOINT_CONNECTIONS: usize = 10_000;

/// How many handler calls in a row may fail (trap, time out, run out of memory) on one connection before the host
/// closes it with 1011: a handler that fails every event would otherwise keep a useless connection open.
pub const DEFAULT_MAX_HANDLER_FAILURES: u32 = 3;

/// How long a new TCP connection may take to send its HTTP upgrade request and get the answer; after that it is cut
/// (a slowloris client that never finishes its request holds a socket for at most this long).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest message (after reassembling fragments) a peer may send. 16 MiB is between AWS API Gateway's 128 KB and
/// Cloudflare's 32 MiB, as Bun's default, and keeps uploads over one socket working; the sum over connections is
/// bounded by the memory budget ([`DEFAULT_MEMORY_BUDGET_PERCENT`]), not by this. Endpoints that carry only small
/// messages should lower it in their descriptor.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

/// The largest single frame a peer may send.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 << 20;

/// Whether endpoints whose descriptor has no `"compression"` negotiate permessage-deflate (`serve --compression`). Off:
/// compression costs about 7-10 µs of CPU per 1 KB message against 1-2 µs uncompressed (BENCHMARKS.md), so an
/// endpoint asks for it.
pub const DEFAULT_COMPRESSION: bool = false;

/// The deflate level of a compressing endpoint: 1, the fastest. Level 6 costs 3x the CPU for chat-sized JSON, for 508
/// bytes on the wire instead of 695 (of 1,024; benches/deflate-lab/REPORT.md).
pub const DEFAULT_COMPRESSION_LEVEL: u32 = 1;

/// Messages shorter than this are sent uncompressed on a compressing connection: deflate makes 64-byte messages larger
/// and costs 4.3 µs instead of 1.6 for them.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 128;

/// How many idle deflate states the process keeps between messages, for each compression level, direction
/// (compressor, decompressor) and window size in use: one per worker thread would be enough, since a state is taken
/// only while one message is compressed or inflated. More are made when they are all taken at once, and dropped when
/// given back to a full pool. A state is about 330 KB at 15-bit windows, so the usual case (level 1, 15 bits, both
/// directions) keeps at most 8 states, about 2.6 MB, whatever the number of connections.
pub const DEFAULT_DEFLATE_POOL: usize = 4;

/// What an idle compressed connection may hold more than an uncompressed one, the budget `DEFAULT_DEFLATE_POOL` and no
/// context takeover keep it within: 25 KB, so 10,000 idle compressed connections hold at most 250 MB for compression.
/// Measured in the host: 0.5 KiB more (9.1 KiB against 8.6 per idle connection, 1,000 connections, release;
/// BENCHMARKS.md "permessage-deflate in the host"), 0-6 KB in the lab (benches/deflate-lab). The states a message in
/// flight borrows, and the pool's idle ones (`DEFAULT_DEFLATE_POOL`), come on top but do not grow with connections. With
/// context takeover a connection would keep its two states for life: about 330 KB each, 3.3 GB for 10,000, which is why
/// the host never negotiates it.
pub const DEFAULT_COMPRESSED_IDLE_BYTES: usize = 25_000;

/// How many recently compressed messages a process keeps, each with the buffer it was compressed from, so that a
/// message sent to many compressing connections (a channel's publish to its members) is compressed once: every member
/// gets the same buffer, and a member whose negotiated window and level match reuses the first one's result.
pub const DEFAULT_DEFLATE_SHARED: usize = 32;

/// The most bytes of messages [`DEFAULT_DEFLATE_SHARED`] keeps alive together (their buffers are held while kept); a
/// message larger than a quarter of this is compressed for each connection and not kept: 2 MiB.
pub const DEFAULT_DEFLATE_SHARED_BYTES: usize = 2 << 20;

/// The WebSocket read buffer of an inbound session: what an idle connection holds for reading. Small, because the
/// main listener reads a plain connection ahead through a buffer per thread ([`READ_AHEAD`]): a large message is
/// still read with one system call per 64 KiB, then copied out in pieces of this size. tungstenite's default of 128 KiB
/// costs about 130 KB per idle connection and is zero-filled before each read. Measured against 4 KiB read directly
/// from the socket: an idle connection 10.3 -> 5.8 KB, 16 KiB messages 0.84x the CPU, 64-byte ones within the noise
/// (512 bytes saved another 0.4 KB but reallocated more often: about 10% more CPU for small messages).
pub const DEFAULT_READ_BUFFER: usize = 1 << 10;

/// The smallest read buffer `--read-buffer` accepts: room for the largest frame header (14 bytes) and then some.
pub const MIN_READ_BUFFER: usize = 256;

/// The WebSocket read buffer of an outbound client, which reads its socket directly (no read-ahead beneath it).
pub const DEFAULT_CLIENT_READ_BUFFER: usize = 4 << 10;

/// How much the main listener reads from a plain connection in one system call when the reader asked for less than a
/// quarter of it; the rest waits in the connection's own buffer, allocated only until it is read.
pub const READ_AHEAD: usize = 64 << 10;

/// How long to wait for the peer's close frame (or the end of the stream) after this host sent one.
pub const DEFAULT_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an outbound client may take to connect and finish its handshake.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a handler's outbound HTTP request may take to resolve its host and connect (TCP and TLS): long enough for
/// a distant server, short enough that a black-holed address fails while the handler can still answer its peer.
pub const DEFAULT_HTTP_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a handler's outbound HTTP request may take in all, from the call to the last byte of the response body.
/// The wait is not counted against the handler's deadline (it runs nothing), so this is what bounds it.
pub const DEFAULT_HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest response body a handler's outbound HTTP request may receive, in bytes. The host reads the whole body
/// before the handler sees the response (so the time it takes is off the handler's clock): this caps the host memory
/// one request holds. Larger: the request fails with `HTTP-response-body-size`.
pub const DEFAULT_HTTP_MAX_RESPONSE_BYTES: usize = 4 << 20;

/// Outbound HTTP requests one project may have in flight at once, over all its handlers; one more fails at once with
/// `connection-limit-reached`. With the response cap it bounds a project's memory in responses (64 MiB).
pub const DEFAULT_PROJECT_HTTP_REQUESTS: usize = 16;

/// The limits of handlers' outbound HTTP requests (see the `DEFAULT_HTTP_*` constants).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpLimits {
    /// See [`DEFAULT_HTTP_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_HTTP_TIMEOUT`].
    pub timeout: Duration,
    /// See [`DEFAULT_HTTP_MAX_RESPONSE_BYTES`].
    pub max_response_bytes: usize,
    /// See [`DEFAULT_PROJECT_HTTP_REQUESTS`].
    pub project_requests: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            connect_timeout: DEFAULT_HTTP_CONNECT_TIMEOUT,
            timeout: DEFAULT_HTTP_TIMEOUT,
            max_response_bytes: DEFAULT_HTTP_MAX_RESPONSE_BYTES,
            project_requests: DEFAULT_PROJECT_HTTP_REQUESTS,
        }
    }
}

/// How much a guest may write to stdout and stderr per event before the rest is dropped from the log.
pub const DEFAULT_GUEST_LOG_BYTES: usize = 16 << 10;

/// How long a graceful shutdown waits for sessions to finish their closing handshakes and handlers.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// TLS handshakes the main listener runs at once (`serve --tls-cert`); past it, new TCP connections wait in the
/// kernel's backlog. Each handshake is its own task bounded by the handshake timeout, so this caps the memory that
/// clients stalling their handshakes can hold, not how many sessions the host serves.
pub const DEFAULT_MAX_TLS_HANDSHAKES: usize = 1024;

/// Channels one connection may be in at once (`serve --max-channels-per-connection`); past it `join` is `limit`.
/// Membership costs a few dozen bytes per channel, so this bounds what one connection can make the host hold.
pub const DEFAULT_MAX_CHANNELS_PER_CONNECTION: usize = 128;

/// The largest attachment a handler may keep with a connection, in bytes (`serve --max-attachment-bytes`); a larger
/// `set-attachment` is `limit`. 4 KiB holds a user id, a session token and a few flags; it is kept per connection, so
/// 10,000 connections hold at most 40 MiB of attachments.
pub const DEFAULT_MAX_ATTACHMENT_BYTES: usize = 4 << 10;

/// The longest channel name, in bytes of UTF-8.
pub const MAX_CHANNEL_NAME_BYTES: usize = 255;

/// The most members one `get-members` page (and one admin listing page) returns.
pub const MAX_MEMBERS_PAGE: u32 = 1000;

/// How often the plugins root is checked for changed files. A change is applied after it has been stable for one more
/// interval, so a deploy by file copy goes live within about two seconds.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// How many handler calls may run at once on the whole host (`serve --execution-slots`), when not set: one fewer
/// than the runtime's worker threads (at least one). A call holds a slot while its instance runs; the others wait in
/// their project's queue, served fairly (see the `fair` module of the host). One worker thread is always left to the
/// network side, so handshakes, pings, timeouts, `/healthz`, `/metrics` and the admin API are answered however busy
/// the handlers are.
pub const DEFAULT_EXECUTION_SLOTS: Option<usize> = None;

/// How long a call runs before it gives its execution slot to a waiting call of its own or another project: one
/// epoch tick. A call of a project that is not running anything is let in at once (the running calls are
/// interrupted at their next check and step aside), so this is the round-robin slice between the calls of busy
/// projects, not the wait of a quiet one.
pub const PREEMPT_SLICE: Duration = EPOCH_TICK;

/// The wall-clock bound of one handler call, as a multiple of its deadline (`serve --handler-wall-factor`). The
/// deadline counts the call's own running time only; this counts everything from the moment it got its instance
/// (time waiting for a slot and for the other hosts included), so a call cannot hold an instance for minutes on a
/// busy host. Five: a call gets a fifth of a core at worst before it is stopped.
pub const DEFAULT_HANDLER_WALL_FACTOR: u32 = 5;

/// How many calls of one handler in a row may run out of their deadline (or wall-clock bound, or fuel) before the
/// handler is paused (`serve --pause-after`): its events then fail at once for [`DEFAULT_PAUSE`], doubling with each
/// pause that follows without a successful call in between, up to [`DEFAULT_MAX_PAUSE`].
pub const DEFAULT_PAUSE_AFTER: u32 = 3;

/// The first pause of a handler that keeps running out its deadline.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

/// The longest pause.
pub const DEFAULT_MAX_PAUSE: Duration = Duration::from_secs(60);

/// How many handler calls of one project may be under way at once (`serve --project-calls`, or the project's
/// `project.json`): a quarter of [`DEFAULT_MAX_INSTANCES`], so one project cannot take the whole per-event pool.
/// Calls past it wait in the project's queue (they are not refused); each holds an instance only once it runs.
pub const DEFAULT_PROJECT_CALLS: u32 = 64;

/// How many instances one project may keep between events (`per-connection` and `shared`,
/// `serve --project-resident-instances`): a quarter of [`DEFAULT_MAX_RESIDENT_INSTANCES`]. A session that needs one
/// past it is closed with 1013, the reason naming the quota.
pub const DEFAULT_PROJECT_RESIDENT_INSTANCES: u32 = 64;

/// How many outbound clients one project may have live at once (`serve --project-clients`): a quarter of
/// [`DEFAULT_MAX_CLIENTS`]. Past it `create-websocket` is a `limit` error naming the quota.
pub const DEFAULT_PROJECT_CLIENTS: usize = 2_500;

/// How many inbound sessions one project's endpoints serve at once (`serve --project-connections`): a quarter of
/// [`DEFAULT_MAX_CONNECTIONS`]. Past it a handshake gets HTTP 503 naming the quota.
pub const DEFAULT_PROJECT_CONNECTIONS: usize = 2_500;

/// How many timers one connection may have armed at once: enough for a tick, a timeout or two and an "away" timer;
/// past it `set-timer` is a `limit` error naming it.
pub const DEFAULT_MAX_TIMERS_PER_CONNECTION: usize = 16;

/// How many timers one project may have armed at once over all its connections (`serve --project-timers`, or
/// `quotas.timers` in `project.json`): a tick on every one of [`DEFAULT_PROJECT_CONNECTIONS`] sessions and room to
/// spare. Past it `set-timer` is a `limit` error naming the quota.
pub const DEFAULT_PROJECT_TIMERS: usize = 10_000;

/// The largest payload a timer carries, in bytes.
pub const DEFAULT_MAX_TIMER_PAYLOAD: usize = 4 << 10;

/// The longest delay of a timer: a day, in milliseconds (a connection idle that long is closed anyway).
pub const DEFAULT_MAX_TIMER_DELAY_MS: u32 = 86_400_000;

/// How many alarms one project may have set at once (`serve --project-alarms`, `quotas.alarms` in `project.json`);
/// past it `set-alarm` is a `limit` error.
pub const DEFAULT_PROJECT_ALARMS: u32 = 1_000;

/// The longest delay of an alarm: 366 days, in milliseconds.
pub const DEFAULT_MAX_ALARM_DELAY_MS: u64 = 366 * 86_400_000;

/// The longest alarm name, in bytes.
pub const DEFAULT_MAX_ALARM_NAME: usize = 128;

/// How many due alarms one pass of a host's alarm loop fires (the rest on the next pass, at once).
pub const DEFAULT_ALARMS_PER_PASS: usize = 100;

/// How often a host looks for due alarms when nothing told it of a sooner one (alarms set on other hosts).
pub const DEFAULT_ALARM_POLL: Duration = Duration::from_secs(1);

/// How many keys one project's store may hold (`serve --kv-max-keys`, or `quotas.kv-keys` in `project.json`). Listing
/// keys on the cluster's broker reads every key of the project's bucket (12,002 keys in 50 ms through async-nats), so
/// this bounds a page there to about 40 ms. Past it a write of a new key is a `limit` error naming `keys`.
pub const DEFAULT_KV_MAX_KEYS: u64 = 10_000;

/// How many bytes (keys and values) one project's store may hold (`serve --kv-max-bytes`, `quotas.kv-bytes`):
/// 100 projects fit in 6.4 GB of disk. Past it a write is a `limit` error naming `bytes`.
pub const DEFAULT_KV_MAX_BYTES: u64 = 64 << 20;

/// The largest value one key may hold, in bytes (`serve --kv-max-value-bytes`, `quotas.kv-value-bytes`): Cloudflare
/// Durable Objects' per-value limit, far below the broker's 1 MiB message. Larger is a `limit` error naming
/// `value-bytes`.
pub const DEFAULT_KV_MAX_VALUE_BYTES: u32 = 128 << 10;

/// The longest key, in bytes of UTF-8 (Cloudflare KV's limit; escaped for the broker it stays under 1,536 bytes).
pub const DEFAULT_KV_MAX_KEY_BYTES: usize = 512;

/// The most keys one page of a listing returns (`list`, `list-keys`), and the most keys one batch call takes.
pub const DEFAULT_KV_PAGE: usize = 1_000;

/// How many times an increment on the cluster's store retries a write that lost a race before it answers
/// `unavailable` (each retry reads the key again).
pub const DEFAULT_KV_INCREMENT_RETRIES: u32 = 32;

/// How many publications each channel of a project keeps in its history (`serve --history-size`, or
/// `quotas.history-size` in `project.json`): 0, history is opt-in. A project that sets it gets an offset on every
/// publish and can read and resume its channels (see the README's "History and recovery").
pub const DEFAULT_HISTORY_SIZE: u32 = 0;

/// The most publications one channel's history may keep, whatever a project asks: one full resume is at most this
/// many frames queued on a connection at once.
pub const MAX_HISTORY_SIZE: u32 = 10_000;

/// How long a publication stays in its channel's history, in seconds (`serve --history-ttl-seconds`,
/// `quotas.history-ttl-seconds`): five minutes covers a phone that lost its network or a laptop that slept briefly,
/// the case recovery is for; longer gaps are better served by reading the history as data.
pub const DEFAULT_HISTORY_TTL_SECONDS: u32 = 300;

/// How many channels of one project may keep history at once on a host (`serve --history-channels`,
/// `quotas.history-channels`); a publish that would start one more is a `limit` error. With the default size this
/// bounds a project's history to channels × size messages.
pub const DEFAULT_PROJECT_HISTORY_CHANNELS: u32 = 1_000;

/// The bytes of messages one project's channel histories may hold in all on a host (`serve --history-max-bytes`,
/// `quotas.history-bytes`); past it the oldest publications of the channel being published to are trimmed first,
/// then the publish is a `limit` error.
pub const DEFAULT_PROJECT_HISTORY_BYTES: u64 = 64 << 20;

/// The most publications one page of history returns (`get-history`, the admin API).
pub const MAX_HISTORY_PAGE: u32 = 1_000;

/// How many configuration keys one project may have (`wasmsock config set`): configuration, not data.
pub const DEFAULT_CONFIG_MAX_KEYS: usize = 256;

/// The largest configuration value, in bytes.
pub const DEFAULT_CONFIG_MAX_VALUE_BYTES: usize = 64 << 10;

/// What one project may take of the host's shared resources; `ProjectQuotas::default()` is every `DEFAULT_PROJECT_*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProjectQuotas {
    /// See [`DEFAULT_PROJECT_CALLS`].
    pub calls: u32,
    /// See [`DEFAULT_PROJECT_RESIDENT_INSTANCES`].
    pub resident_instances: u32,
    /// See [`DEFAULT_PROJECT_CLIENTS`].
    pub clients: usize,
    /// See [`DEFAULT_PROJECT_CONNECTIONS`].
    pub connections: usize,
    /// See [`DEFAULT_PROJECT_TIMERS`].
    pub timers: usize,
    /// See [`DEFAULT_PROJECT_ALARMS`].
    pub alarms: u32,
    /// See [`DEFAULT_KV_MAX_KEYS`].
    pub kv_keys: u64,
    /// See [`DEFAULT_KV_MAX_BYTES`].
    pub kv_bytes: u64,
    /// See [`DEFAULT_KV_MAX_VALUE_BYTES`].
    pub kv_value_bytes: u32,
    /// See [`DEFAULT_HISTORY_SIZE`].
    pub history_size: u32,
    /// See [`DEFAULT_HISTORY_TTL_SECONDS`].
    pub history_ttl_seconds: u32,
    /// See [`DEFAULT_PROJECT_HISTORY_CHANNELS`].
    pub history_channels: u32,
    /// See [`DEFAULT_PROJECT_HISTORY_BYTES`].
    pub history_bytes: u64,
}

impl Default for ProjectQuotas {
    fn default() -> Self {
        Self {
            calls: DEFAULT_PROJECT_CALLS,
            resident_instances: DEFAULT_PROJECT_RESIDENT_INSTANCES,
            clients: DEFAULT_PROJECT_CLIENTS,
            connections: DEFAULT_PROJECT_CONNECTIONS,
            timers: DEFAULT_PROJECT_TIMERS,
            alarms: DEFAULT_PROJECT_ALARMS,
            kv_keys: DEFAULT_KV_MAX_KEYS,
            kv_bytes: DEFAULT_KV_MAX_BYTES,
            kv_value_bytes: DEFAULT_KV_MAX_VALUE_BYTES,
            history_size: DEFAULT_HISTORY_SIZE,
            history_ttl_seconds: DEFAULT_HISTORY_TTL_SECONDS,
            history_channels: DEFAULT_PROJECT_HISTORY_CHANNELS,
            history_bytes: DEFAULT_PROJECT_HISTORY_BYTES,
        }
    }
}

/// A project's own quotas (its `project.json`, field `quotas`); what is absent is the host's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct QuotaOverrides {
    /// Handler calls under way at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u32>,
    /// Instances kept between events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resident_instances: Option<u32>,
    /// Outbound clients live at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<usize>,
    /// Inbound sessions at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<usize>,
    /// Timers armed at once over the project's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timers: Option<usize>,
    /// Alarms set at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alarms: Option<u32>,
    /// Keys in the project's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_keys: Option<u64>,
    /// Bytes of keys and values in the project's store.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_bytes: Option<u64>,
    /// The largest value of one key, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_value_bytes: Option<u32>,
    /// Publications each channel keeps in its history (0: none, history off; at most [`MAX_HISTORY_SIZE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_size: Option<u32>,
    /// How long a publication stays in its channel's history, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_ttl_seconds: Option<u32>,
    /// Channels keeping history at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_channels: Option<u32>,
    /// Bytes of messages kept in the project's channel histories in all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_bytes: Option<u64>,
}

impl QuotaOverrides {
    /// Checks that every quota given is at least 1; the error names the field.
    pub fn check(&self) -> anyhow::Result<()> {
        let positive = [
            ("calls", self.calls.map(u64::from)),
            ("resident-instances", self.resident_instances.map(u64::from)),
            ("clients", self.clients.map(|v| v as u64)),
            ("connections", self.connections.map(|v| v as u64)),
            ("timers", self.timers.map(|v| v as u64)),
            ("alarms", self.alarms.map(u64::from)),
            ("kv-keys", self.kv_keys),
            ("kv-bytes", self.kv_bytes),
            ("kv-value-bytes", self.kv_value_bytes.map(u64::from)),
            ("history-ttl-seconds", self.history_ttl_seconds.map(u64::from)),
            ("history-channels", self.history_channels.map(u64::from)),
            ("history-bytes", self.history_bytes),
        ];
        for (field, value) in positive {
            if value == Some(0) {
                anyhow::bail!("field `quotas.{field}` must be at least 1");
            }
        }
        if let Some(size) = self.history_size
            && size > MAX_HISTORY_SIZE
        {
            anyhow::bail!("field `quotas.history-size` is {size}; a channel keeps at most {MAX_HISTORY_SIZE}");
        }
        Ok(())
    }

    /// The host's quotas with these applied.
    pub fn over(&self, host: ProjectQuotas) -> ProjectQuotas {
        ProjectQuotas {
            calls: self.calls.unwrap_or(host.calls),
            resident_instances: self.resident_instances.unwrap_or(host.resident_instances),
            clients: self.clients.unwrap_or(host.clients),
            connections: self.connections.unwrap_or(host.connections),
            timers: self.timers.unwrap_or(host.timers),
            alarms: self.alarms.unwrap_or(host.alarms),
            kv_keys: self.kv_keys.unwrap_or(host.kv_keys),
            kv_bytes: self.kv_bytes.unwrap_or(host.kv_bytes),
            kv_value_bytes: self.kv_value_bytes.unwrap_or(host.kv_value_bytes),
            history_size: self.history_size.unwrap_or(host.history_size),
            history_ttl_seconds: self.history_ttl_seconds.unwrap_or(host.history_ttl_seconds),
            history_channels: self.history_channels.unwrap_or(host.history_channels),
            history_bytes: self.history_bytes.unwrap_or(host.history_bytes),
        }
    }
}

/// The host's memory budget when the machine's memory cannot be read (and for hosts made with `Limits::default()`):
/// what messages being received, queued outbound frames and handler instances may hold in all. `wasmsock serve`
/// sizes it for the machine instead, with [`memory_budget_for`].
pub const DEFAULT_MEMORY_BUDGET: usize = 2 << 30;

/// The share of the machine's memory (the smaller of physical memory and the cgroup's `memory.max`), in percent, that
/// `wasmsock serve` budgets by default: half, so the budgeted kinds cannot take the host into the kernel's
/// out-of-memory killer, with the other half for what is not budgeted (idle connections at about 6 KB each, compiled
/// components, the allocator's slack, the kernel's socket buffers) and the rest of the machine.
pub const DEFAULT_MEMORY_BUDGET_PERCENT: u64 = 50;

/// The smallest budget `--memory-budget-mib` accepts, in MiB: below it a single message of the default size could not
/// be received.
pub const MIN_MEMORY_BUDGET_MIB: usize = 64;

/// The share of the budget, in percent, that one project's connections and instances may hold
/// (`serve --project-memory-share`): half, so one project's peers cannot starve every other project.
pub const DEFAULT_PROJECT_MEMORY_SHARE: u8 = 50;

/// The share of the budget, in percent, that one endpoint's connections may hold (`serve --endpoint-memory-share`): a
/// quarter, so another endpoint of the same project keeps room too.
pub const DEFAULT_ENDPOINT_MEMORY_SHARE: u8 = 25;

/// The share of the budget, in percent, that messages being received may hold in all, and the share queued outbound
/// frames may hold in all: half each, so stalled uploads cannot take the memory handler instances and slow readers
/// need, nor the other way round.
pub const MEMORY_KIND_SHARE: u8 = 50;

/// Past this share of any of its limits (host, kind, project, endpoint), in percent, the budget is short: a connection
/// holding more than the average of those holding memory there gets no more (its reading pauses, its queue counts as
/// full), so the ones holding the most stop first and the others keep going.
pub const MEMORY_SHORT_PERCENT: u8 = 75;

/// What each connection may hold being received and queued without touching the budget, in bytes. Small messages and
/// a prompt reader never reach it, so the echo's hot path costs no shared counter; at 10,000 connections it leaves at
/// most 320 MiB (both directions) outside the budget, part of the stated overhead.
pub const MEMORY_ALLOWANCE: usize = 16 << 10;

/// The unit the budget is charged in, in bytes: a connection holding more than its allowance takes the budget in
/// pieces of this size, so a 16 MiB message costs 256 updates of the shared counters, not one per read.
pub const MEMORY_CHUNK: usize = 64 << 10;

/// How long a connection whose reading is paused by the budget may wait for room before it is closed with 1013 (try
/// again later), the reason naming the memory budget: ten seconds ride out a burst of others' messages, and a peer
/// that stalled its message on purpose holds its share no longer than that once the host is short.
pub const DEFAULT_MEMORY_WAIT: Duration = Duration::from_secs(10);

/// The default budget for a machine with `machine` bytes of memory (none: unknown): [`DEFAULT_MEMORY_BUDGET_PERCENT`]
/// of it, at least [`MIN_MEMORY_BUDGET_MIB`]; [`DEFAULT_MEMORY_BUDGET`] when unknown.
pub fn memory_budget_for(machine: Option<u64>) -> usize {
    match machine {
        Some(bytes) => {
            let share = bytes.saturating_mul(DEFAULT_MEMORY_BUDGET_PERCENT) / 100;
            usize::try_from(share).unwrap_or(usize::MAX).max(MIN_MEMORY_BUDGET_MIB << 20)
        }
        None => DEFAULT_MEMORY_BUDGET,
    }
}

/// What happens when a handler sends to a connection whose outbound queue is full.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlowConsumer {
    /// The `send` gets a `limit` error and the connection is closed with 1013 ("try again later"), dropping what is
    /// queued: the peer reads too slowly to be served.
    #[default]
    Close,
    /// The `send` gets a `limit` error; the connection stays open and the handler decides.
    Error,
}

/// Per-endpoint overrides of the host's limits (see this module for what each means and its default).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct EndpointLimits {
    /// Largest message a peer may send, in bytes (larger: close 1009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<usize>,
    /// Largest frame a peer may send, in bytes (larger: close 1009).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_frame_size: Option<usize>,
    /// Milliseconds without a data message either way before the session is closed with 1001.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Milliseconds of silence from the peer before a ping; twice that without an answer closes with 1001.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ping_interval_ms: Option<u64>,
    /// Sessions this endpoint serves at once (more: HTTP 503 before the upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<usize>,
    /// Frames that may wait in a session's outbound queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_queue: Option<usize>,
    /// Bytes that may wait in a session's outbound queue.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_queue_bytes: Option<usize>,
    /// What a full outbound queue does: `"close"` (1013) or `"error"` (the send fails, the session stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_consumer: Option<SlowConsumer>,
    /// Handler calls in a row that may fail on one session before it is closed with 1011.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_handler_failures: Option<u32>,
    /// Milliseconds of its own running time one handler call may take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_deadline_ms: Option<u64>,
    /// MiB of memory one handler instance may grow to; at most the host's `--handler-memory-mib`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handler_memory_mib: Option<usize>,
    /// Fuel one handler call may use; the host must meter fuel (`serve --fuel`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
}

impl EndpointLimits {
    /// Whether nothing is overridden.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Checks that every override given is at least 1; the error names the field.
    pub fn check(&self) -> anyhow::Result<()> {
        let positive = [
            ("max-message-size", self.max_message_size.map(|v| v as u64)),
            ("max-frame-size", self.max_frame_size.map(|v| v as u64)),
            ("idle-timeout-ms", self.idle_timeout_ms),
            ("ping-interval-ms", self.ping_interval_ms),
            ("max-connections", self.max_connections.map(|v| v as u64)),
            ("outbound-queue", self.outbound_queue.map(|v| v as u64)),
            ("outbound-queue-bytes", self.outbound_queue_bytes.map(|v| v as u64)),
            ("max-handler-failures", self.max_handler_failures.map(u64::from)),
            ("handler-deadline-ms", self.handler_deadline_ms),
            ("handler-memory-mib", self.handler_memory_mib.map(|v| v as u64)),
            ("fuel", self.fuel),
        ];
        for (field, value) in positive {
            if value == Some(0) {
                anyhow::bail!("field `limits.{field}` must be at least 1");
            }
        }
        Ok(())
    }
}

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
    /// See [`DEFAULT_OUTBOUND_QUEUE_BYTES`].
    pub outbound_queue_bytes: usize,
    /// What a full outbound queue does; see [`SlowConsumer`].
    pub slow_consumer: SlowConsumer,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`DEFAULT_MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// See [`DEFAULT_MAX_ENDPOINT_CONNECTIONS`].
    pub max_endpoint_connections: usize,
    /// See [`DEFAULT_MAX_CLIENTS`].
    pub max_clients: usize,
    /// See [`DEFAULT_MAX_HANDLER_FAILURES`].
    pub max_handler_failures: u32,
    /// See [`DEFAULT_HANDSHAKE_TIMEOUT`].
    pub handshake_timeout: Duration,
    /// Fuel (roughly, WebAssembly instructions) one handler call may use; none: unmetered, bounded by the deadline
    /// only. Metering costs every call some speed, so it is off unless asked for.
    pub fuel: Option<u64>,
    /// Origins allowed to open sessions on endpoints whose descriptor has no `origins` list. Empty: requests without an
    /// `Origin` header (non-browser clients) and same-origin requests only. `*` allows any.
    pub origins: Vec<String>,
    /// See [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// See [`DEFAULT_MAX_FRAME_SIZE`].
    pub max_frame_size: usize,
    /// See [`DEFAULT_COMPRESSION`]: whether endpoints without a `"compression"` of their own compress.
    pub compression: bool,
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
    /// See [`DEFAULT_MAX_CHANNELS_PER_CONNECTION`].
    pub max_channels_per_connection: usize,
    /// See [`DEFAULT_MAX_ATTACHMENT_BYTES`].
    pub max_attachment_bytes: usize,
    /// See [`DEFAULT_EXECUTION_SLOTS`]; none: one fewer than the worker threads.
    pub execution_slots: Option<usize>,
    /// See [`DEFAULT_HANDLER_WALL_FACTOR`].
    pub handler_wall_factor: u32,
    /// See [`DEFAULT_PAUSE_AFTER`].
    pub pause_after: u32,
    /// See [`DEFAULT_PAUSE`].
    pub pause: Duration,
    /// See [`DEFAULT_MAX_PAUSE`].
    pub max_pause: Duration,
    /// Each project's quotas unless its `project.json` says otherwise; see [`ProjectQuotas`].
    pub project: ProjectQuotas,
    /// The memory budget in bytes; see [`DEFAULT_MEMORY_BUDGET`] and [`memory_budget_for`].
    pub memory_budget: usize,
    /// See [`DEFAULT_PROJECT_MEMORY_SHARE`].
    pub project_memory_share: u8,
    /// See [`DEFAULT_ENDPOINT_MEMORY_SHARE`].
    pub endpoint_memory_share: u8,
    /// See [`DEFAULT_MEMORY_WAIT`].
    pub memory_wait: Duration,
    /// Handlers' outbound HTTP requests; see [`HttpLimits`].
    pub http: HttpLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handler_deadline: DEFAULT_HANDLER_DEADLINE,
            handler_memory: DEFAULT_HANDLER_MEMORY,
            max_instances: DEFAULT_MAX_INSTANCES,
            max_resident_instances: DEFAULT_MAX_RESIDENT_INSTANCES,
            outbound_queue: DEFAULT_OUTBOUND_QUEUE,
            outbound_queue_bytes: DEFAULT_OUTBOUND_QUEUE_BYTES,
            slow_consumer: SlowConsumer::default(),
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            ping_interval: DEFAULT_PING_INTERVAL,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_endpoint_connections: DEFAULT_MAX_ENDPOINT_CONNECTIONS,
            max_clients: DEFAULT_MAX_CLIENTS,
            max_handler_failures: DEFAULT_MAX_HANDLER_FAILURES,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            fuel: None,
            origins: Vec::new(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            compression: DEFAULT_COMPRESSION,
            read_buffer: DEFAULT_READ_BUFFER,
            close_timeout: DEFAULT_CLOSE_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            guest_log_bytes: DEFAULT_GUEST_LOG_BYTES,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            max_channels_per_connection: DEFAULT_MAX_CHANNELS_PER_CONNECTION,
            max_attachment_bytes: DEFAULT_MAX_ATTACHMENT_BYTES,
            execution_slots: DEFAULT_EXECUTION_SLOTS,
            handler_wall_factor: DEFAULT_HANDLER_WALL_FACTOR,
            pause_after: DEFAULT_PAUSE_AFTER,
            pause: DEFAULT_PAUSE,
            max_pause: DEFAULT_MAX_PAUSE,
            project: ProjectQuotas::default(),
            memory_budget: DEFAULT_MEMORY_BUDGET,
            project_memory_share: DEFAULT_PROJECT_MEMORY_SHARE,
            endpoint_memory_share: DEFAULT_ENDPOINT_MEMORY_SHARE,
            memory_wait: DEFAULT_MEMORY_WAIT,
            http: HttpLimits::default(),
        }
    }
}

/// The limits one connection runs with: the host's, with its endpoint's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLimits {
    /// See [`DEFAULT_MAX_MESSAGE_SIZE`].
    pub max_message_size: usize,
    /// See [`DEFAULT_MAX_FRAME_SIZE`].
    pub max_frame_size: usize,
    /// See [`DEFAULT_IDLE_TIMEOUT`].
    pub idle_timeout: Duration,
    /// See [`DEFAULT_PING_INTERVAL`].
    pub ping_interval: Duration,
    /// See [`DEFAULT_OUTBOUND_QUEUE`].
    pub outbound_queue: usize,
    /// See [`DEFAULT_OUTBOUND_QUEUE_BYTES`].
    pub outbound_queue_bytes: usize,
    /// See [`SlowConsumer`].
    pub slow_consumer: SlowConsumer,
    /// See [`DEFAULT_MAX_HANDLER_FAILURES`].
    pub max_handler_failures: u32,
    /// See [`DEFAULT_HANDLER_DEADLINE`].
    pub handler_deadline: Duration,
    /// See [`DEFAULT_HANDLER_WALL_FACTOR`]: the deadline times the host's factor.
    pub handler_wall: Duration,
    /// See [`DEFAULT_HANDLER_MEMORY`]; never more than the host's (a pool slot's size).
    pub handler_memory: usize,
    /// See [`Limits::fuel`]; only when the host meters fuel.
    pub fuel: Option<u64>,
    /// See [`DEFAULT_MAX_ATTACHMENT_BYTES`].
    pub max_attachment_bytes: usize,
}

impl Limits {
    /// The limits of a connection on an endpoint with these overrides (none: an outbound client).
    pub fn for_conn(&self, endpoint: Option<&EndpointLimits>) -> ConnLimits {
        let over = endpoint.cloned().unwrap_or_default();
        ConnLimits {
            max_message_size: over.max_message_size.unwrap_or(self.max_message_size),
            max_frame_size: over.max_frame_size.unwrap_or(self.max_frame_size),
            idle_timeout: over.idle_timeout_ms.map_or(self.idle_timeout, Duration::from_millis),
            ping_interval: over.ping_interval_ms.map_or(self.ping_interval, Duration::from_millis),
            outbound_queue: over.outbound_queue.unwrap_or(self.outbound_queue).max(1),
            outbound_queue_bytes: over.outbound_queue_bytes.unwrap_or(self.outbound_queue_bytes).max(1),
            slow_consumer: over.slow_consumer.unwrap_or(self.slow_consumer),
            max_handler_failures: over.max_handler_failures.unwrap_or(self.max_handler_failures).max(1),
            handler_deadline: over.handler_deadline_ms.map_or(self.handler_deadline, Duration::from_millis),
            handler_wall: over
                .handler_deadline_ms
                .map_or(self.handler_deadline, Duration::from_millis)
                .saturating_mul(self.handler_wall_factor.max(1)),
            handler_memory: over
                .handler_memory_mib
                .map_or(self.handler_memory, |mib| mib << 20)
                .min(self.handler_memory),
            fuel: self.fuel.map(|host| over.fuel.unwrap_or(host)),
            max_attachment_bytes: self.max_attachment_bytes,
        }
    }

    /// Checks that the host can honour an endpoint's overrides: memory within its pool slots, fuel only when it
    /// meters fuel. The error names the field.
    pub fn check_endpoint(&self, over: &EndpointLimits) -> anyhow::Result<()> {
        if let Some(mib) = over.handler_memory_mib
            && mib << 20 > self.handler_memory
        {
            anyhow::bail!(
                "field `limits.handler-memory-mib`: {mib} MiB is more than this host's {} MiB (serve --handler-memory-mib)",
                self.handler_memory >> 20
            );
        }
        if over.fuel.is_some() && self.fuel.is_none() {
            anyhow::bail!("field `limits.fuel`: this host does not meter fuel (start it with serve --fuel N)");
        }
        Ok(())
    }
}

impl Default for ConnLimits {
    fn default() -> Self {
        Limits::default().for_conn(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_is_half_the_machine_with_a_floor_and_a_fallback() {
        assert_eq!(memory_budget_for(Some(16 << 30)), 8 << 30);
        assert_eq!(memory_budget_for(Some(1 << 20)), MIN_MEMORY_BUDGET_MIB << 20);
        assert_eq!(memory_budget_for(None), DEFAULT_MEMORY_BUDGET);
    }

    #[test]
    fn endpoint_overrides_win_and_the_rest_comes_from_the_host() {
        let host = Limits { outbound_queue: 7, idle_timeout: Duration::from_secs(9), ..Limits::default() };
        let over = EndpointLimits {
            max_message_size: Some(100),
            ping_interval_ms: Some(250),
            slow_consumer: Some(SlowConsumer::Error),
            ..EndpointLimits::default()
        };
        let conn = host.for_conn(Some(&over));
        assert_eq!(conn.max_message_size, 100);
        assert_eq!(conn.ping_interval, Duration::from_millis(250));
        assert_eq!(conn.slow_consumer, SlowConsumer::Error);
        assert_eq!(conn.outbound_queue, 7);
        assert_eq!(conn.idle_timeout, Duration::from_secs(9));
        assert_eq!(conn.max_frame_size, DEFAULT_MAX_FRAME_SIZE);
        assert_eq!(host.for_conn(None).max_message_size, DEFAULT_MAX_MESSAGE_SIZE);
    }

    #[test]
    fn handler_limits_are_per_endpoint_within_what_the_host_can_do() {
        let host = Limits { fuel: Some(1000), ..Limits::default() };
        let over = EndpointLimits {
            handler_deadline_ms: Some(50),
            handler_memory_mib: Some(8),
            fuel: Some(10),
            ..EndpointLimits::default()
        };
        assert!(host.check_endpoint(&over).is_ok());
        let conn = host.for_conn(Some(&over));
        assert_eq!(
            (conn.handler_deadline, conn.handler_memory, conn.fuel),
            (Duration::from_millis(50), 8 << 20, Some(10))
        );
        assert_eq!(host.for_conn(None).fuel, Some(1000));
        let too_big = EndpointLimits { handler_memory_mib: Some(1024), ..EndpointLimits::default() };
        assert!(format!("{:#}", host.check_endpoint(&too_big).unwrap_err()).contains("limits.handler-memory-mib"));
        let unmetered = Limits::default();
        assert!(format!("{:#}", unmetered.check_endpoint(&over).unwrap_err()).contains("limits.fuel"));
        assert_eq!(unmetered.for_conn(Some(&over)).fuel, None);
    }
}
