//! `wasmsock serve`: run the host on a plugins root until Ctrl-C or SIGTERM, then drain.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;

use crate::app::App;
use crate::cluster::{BrokerAuth, Secret};
use wasmsock_wire::limits::{self, Limits, SlowConsumer};

/// Arguments of `wasmsock serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The address to listen on for WebSocket connections.
    #[arg(long, env = "WASMSOCK_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The plugins root: `.websocket` descriptors anywhere below it, handler `p/h` at `p/h.wasm`.
    #[arg(long, env = "WASMSOCK_PLUGINS", default_value = "./plugins")]
    pub plugins: PathBuf,
    /// How long one handler call may run, in milliseconds.
    #[arg(long, default_value_t = limits::DEFAULT_HANDLER_DEADLINE.as_millis() as u64)]
    pub handler_deadline_ms: u64,
    /// The most memory one handler instance may use, in MiB.
    #[arg(long, default_value_t = limits::DEFAULT_HANDLER_MEMORY >> 20)]
    pub handler_memory_mib: usize,
    /// How many handler instances may exist at once (calls beyond wait).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_INSTANCES)]
    pub max_instances: u32,
    /// How many handler instances may be kept between events for `per-connection` and `shared` endpoints, on top of
    /// --max-instances (a per-connection session that finds none free is closed with 1013).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_RESIDENT_INSTANCES)]
    pub max_resident_instances: u32,
    /// How many frames may wait in one connection's outbound queue before `send` fails with `limit`.
    #[arg(long, default_value_t = limits::DEFAULT_OUTBOUND_QUEUE)]
    pub outbound_queue: usize,
    /// How many bytes may wait in one connection's outbound queue before `send` fails with `limit`.
    #[arg(long, default_value_t = limits::DEFAULT_OUTBOUND_QUEUE_BYTES)]
    pub outbound_queue_bytes: usize,
    /// What a full outbound queue does: close the connection with 1013, or only fail the `send`.
    #[arg(long, value_enum, default_value_t = SlowConsumerArg::Close)]
    pub slow_consumer: SlowConsumerArg,
    /// Close a connection with no data message either way for this long, in milliseconds (close 1001).
    #[arg(long, default_value_t = limits::DEFAULT_IDLE_TIMEOUT.as_millis() as u64, value_parser = at_least_one())]
    pub idle_timeout_ms: u64,
    /// Ping a peer silent for this long, in milliseconds; silent for twice as long, it is closed with 1001.
    #[arg(long, default_value_t = limits::DEFAULT_PING_INTERVAL.as_millis() as u64, value_parser = at_least_one())]
    pub ping_interval_ms: u64,
    /// How many inbound sessions the host serves at once (more get HTTP 503).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// How many sessions one endpoint serves at once unless its descriptor says (more get HTTP 503).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_ENDPOINT_CONNECTIONS)]
    pub max_endpoint_connections: usize,
    /// How many outbound clients may be open at once (more: `create-websocket` fails with `limit`).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CLIENTS)]
    pub max_clients: usize,
    /// How many handler calls in a row may fail on one connection before it is closed with 1011.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_HANDLER_FAILURES, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_handler_failures: u32,
    /// How long a new connection may take to send its HTTP upgrade request, in milliseconds.
    #[arg(long, default_value_t = limits::DEFAULT_HANDSHAKE_TIMEOUT.as_millis() as u64, value_parser = at_least_one())]
    pub handshake_timeout_ms: u64,
    /// Meter handler calls: the fuel (about one unit per WebAssembly instruction) one call may use. Off by default.
    #[arg(long)]
    pub fuel: Option<u64>,
    /// An origin whose pages may connect to endpoints without an `origins` list (repeatable; `*` for any). Without
    /// one, requests without an Origin header and same-origin ones are admitted.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origin: Vec<String>,
    /// The largest message a peer may send, in bytes (larger: close 1009).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_MESSAGE_SIZE)]
    pub max_message_size: usize,
    /// The largest frame a peer may send, in bytes (larger: close 1009).
    #[arg(long, default_value_t = limits::DEFAULT_MAX_FRAME_SIZE)]
    pub max_frame_size: usize,
    /// Negotiate permessage-deflate (level 1, no context takeover) on endpoints whose descriptor has no
    /// `"compression"`. Off by default: compressing costs CPU per message.
    #[arg(long)]
    pub compression: bool,
    /// The WebSocket read buffer of each inbound session, in bytes: what an idle connection holds for reading (a
    /// larger message is copied out in more pieces, not refused). At least 256.
    #[arg(long, default_value_t = limits::DEFAULT_READ_BUFFER, value_parser = parse_read_buffer)]
    pub read_buffer: usize,
    /// How long an outbound client may take to connect, in milliseconds.
    #[arg(long, default_value_t = limits::DEFAULT_CONNECT_TIMEOUT.as_millis() as u64, value_parser = at_least_one())]
    pub connect_timeout_ms: u64,
    /// How long shutdown waits for connections to close, in milliseconds.
    #[arg(long, default_value_t = limits::DEFAULT_SHUTDOWN_GRACE.as_millis() as u64)]
    pub shutdown_grace_ms: u64,
    /// How many channels one connection may be in at once.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_CHANNELS_PER_CONNECTION)]
    pub max_channels_per_connection: usize,
    /// The largest attachment a handler may keep with a connection, in bytes.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_ATTACHMENT_BYTES)]
    pub max_attachment_bytes: usize,
    /// How many handler calls may run at once on the whole host (default: one fewer than the worker threads, at
    /// least one, so the network side always has a thread). Waiting calls are served fairly between projects.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub execution_slots: Option<u64>,
    /// A handler call's wall-clock bound as a multiple of its deadline: past it the call is stopped however little it
    /// ran (the host was busy), reported like a timeout.
    #[arg(long, default_value_t = limits::DEFAULT_HANDLER_WALL_FACTOR, value_parser = clap::value_parser!(u32).range(1..))]
    pub handler_wall_factor: u32,
    /// Pause a handler after this many calls in a row ran out of their deadline: its onopen and onmessage events fail
    /// at once for the pause (1 s, doubling with each pause in a row up to --max-pause-ms).
    #[arg(long, default_value_t = limits::DEFAULT_PAUSE_AFTER, value_parser = clap::value_parser!(u32).range(1..))]
    pub pause_after: u32,
    /// The first pause of a handler that keeps running out its deadline, in milliseconds.
    #[arg(long, default_value_t = limits::DEFAULT_PAUSE.as_millis() as u64, value_parser = at_least_one())]
    pub pause_ms: u64,
    /// The longest pause, in milliseconds.
    #[arg(long, default_value_t = limits::DEFAULT_MAX_PAUSE.as_millis() as u64, value_parser = at_least_one())]
    pub max_pause_ms: u64,
    /// Each project's quota of handler calls under way at once (more wait their turn); a project's `project.json`
    /// may set its own (`{"quotas": {"calls": N}}`).
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_CALLS, value_parser = clap::value_parser!(u32).range(1..))]
    pub project_calls: u32,
    /// Each project's quota of instances kept between events (`per-connection`, `shared`); a session past it is
    /// closed with 1013. `project.json`: `quotas.resident-instances`.
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_RESIDENT_INSTANCES, value_parser = clap::value_parser!(u32).range(1..))]
    pub project_resident_instances: u32,
    /// Each project's quota of live outbound clients (past it `create-websocket` is `limit`). `project.json`:
    /// `quotas.clients`.
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_CLIENTS as u64, value_parser = at_least_one())]
    pub project_clients: u64,
    /// Each project's quota of inbound sessions over its endpoints (past it HTTP 503). `project.json`:
    /// `quotas.connections`.
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_CONNECTIONS as u64, value_parser = at_least_one())]
    pub project_connections: u64,
    /// Each project's quota of timers armed at once over its connections (past it `set-timer` is `limit`).
    /// `project.json`: `quotas.timers`.
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_TIMERS as u64, value_parser = at_least_one())]
    pub project_timers: u64,
    /// Each project's quota of alarms set at once (past it `set-alarm` is `limit`). `project.json`: `quotas.alarms`.
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_ALARMS, value_parser = clap::value_parser!(u32).range(1..))]
    pub project_alarms: u32,
    /// Each project's quota of keys in its store (past it writing a new key is `limit`). `project.json`:
    /// `quotas.kv-keys`.
    #[arg(long, default_value_t = limits::DEFAULT_KV_MAX_KEYS, value_parser = at_least_one())]
    pub kv_max_keys: u64,
    /// Each project's quota of bytes (keys and values) in its store. `project.json`: `quotas.kv-bytes`.
    #[arg(long, default_value_t = limits::DEFAULT_KV_MAX_BYTES, value_parser = at_least_one())]
    pub kv_max_bytes: u64,
    /// The largest value one key may hold, in bytes. `project.json`: `quotas.kv-value-bytes`.
    #[arg(long, default_value_t = limits::DEFAULT_KV_MAX_VALUE_BYTES, value_parser = clap::value_parser!(u32).range(1..))]
    pub kv_max_value_bytes: u32,
    /// How many publications each channel keeps in its history, for every project that does not say
    /// (`project.json`: `quotas.history-size`); 0, the default, keeps none: history is opt-in.
    #[arg(long, default_value_t = limits::DEFAULT_HISTORY_SIZE, value_parser = clap::value_parser!(u32).range(..=i64::from(limits::MAX_HISTORY_SIZE)))]
    pub history_size: u32,
    /// How long a publication stays in its channel's history, in seconds. `project.json`:
    /// `quotas.history-ttl-seconds`.
    #[arg(long, default_value_t = limits::DEFAULT_HISTORY_TTL_SECONDS, value_parser = clap::value_parser!(u32).range(1..))]
    pub history_ttl_seconds: u32,
    /// How many channels of one project may keep history at once. `project.json`: `quotas.history-channels`.
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_HISTORY_CHANNELS, value_parser = clap::value_parser!(u32).range(1..))]
    pub history_channels: u32,
    /// The bytes of messages one project's channel histories may hold in all. `project.json`:
    /// `quotas.history-bytes`.
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_HISTORY_BYTES, value_parser = at_least_one())]
    pub history_max_bytes: u64,
    /// Where handlers' keys and values, the projects' configuration and channel history are kept (default:
    /// .wasmsock-data under --plugins). Not used with --nats: the cluster keeps keys and configuration on the broker
    /// (and channel history in each host's memory).
    #[arg(long, env = "WASMSOCK_DATA", value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// What a write acknowledged to a handler (a store write, a publish-with to a channel with history) survives:
    /// `normal` survives the host being killed (kill -9), `full` also a power loss, at the cost of a disk sync per
    /// commit.
    #[arg(long, value_enum, default_value_t = crate::store::Durability::Normal)]
    pub store_sync: crate::store::Durability,
    /// The memory budget, in MiB: what messages being received, queued outbound frames and handler instances may
    /// hold in all (at least 64). Default: half the machine's memory (the smaller of physical memory and the cgroup's
    /// limit), 2048 when it cannot be read. When it is short, the sockets holding the most stop being read and the
    /// slowest readers are cut off first.
    #[arg(long, env = "WASMSOCK_MEMORY_BUDGET_MIB", value_parser = parse_memory_budget)]
    pub memory_budget_mib: Option<usize>,
    /// The share of the memory budget one project may hold, in percent (1-100).
    #[arg(long, default_value_t = limits::DEFAULT_PROJECT_MEMORY_SHARE, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub project_memory_share: u8,
    /// The share of the memory budget one endpoint's sessions may hold, in percent (1-100).
    #[arg(long, default_value_t = limits::DEFAULT_ENDPOINT_MEMORY_SHARE, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub endpoint_memory_share: u8,
    /// How long a session or outbound client whose reading is paused by the memory budget may wait for room (or whose
    /// unfinished message may get nothing from the peer), in milliseconds, before it is closed with 1013. A message
    /// larger than its connection's share could ever hold is closed with 1009 at once.
    #[arg(long, default_value_t = limits::DEFAULT_MEMORY_WAIT.as_millis() as u64, value_parser = at_least_one())]
    pub memory_wait_ms: u64,
    /// Join a cluster through this NATS server (`nats://HOST:PORT`, `tls://HOST:PORT` for TLS; several separated by
    /// commas): channels reach members on every host of it. Without it the host runs alone. The URL may carry
    /// credentials (`nats://USER:PASSWORD@HOST:PORT`, `nats://TOKEN@HOST:PORT`, percent-encoded); prefer giving the
    /// URL through WASMSOCK_NATS then, as a command line is visible to every user of the machine. Credentials are
    /// never logged.
    #[arg(long, env = "WASMSOCK_NATS", value_name = "URL", hide_env_values = true)]
    pub nats: Option<String>,
    /// The user to sign in to the broker as, with --nats-password.
    #[arg(long, env = "WASMSOCK_NATS_USER", value_name = "USER", requires_all = ["nats", "nats_password"])]
    pub nats_user: Option<String>,
    /// The password of --nats-user. Prefer WASMSOCK_NATS_PASSWORD to the flag (a command line is visible to every
    /// user of the machine); never logged.
    #[arg(long, env = "WASMSOCK_NATS_PASSWORD", value_name = "PASSWORD", hide_env_values = true,
          value_parser = Secret::parse, requires = "nats_user")]
    pub nats_password: Option<Secret>,
    /// Sign in to the broker with this token. Prefer WASMSOCK_NATS_TOKEN to the flag; never logged.
    #[arg(long, env = "WASMSOCK_NATS_TOKEN", value_name = "TOKEN", hide_env_values = true,
          value_parser = Secret::parse, requires = "nats", conflicts_with_all = ["nats_user", "nats_nkey", "nats_creds"])]
    pub nats_token: Option<Secret>,
    /// Sign in to the broker with an NKey: the user seed (`SU…`), or better a file holding it (mode 600), or the seed
    /// through WASMSOCK_NATS_NKEY; never logged.
    #[arg(long, env = "WASMSOCK_NATS_NKEY", value_name = "SEED|FILE", hide_env_values = true,
          value_parser = Secret::parse, requires = "nats", conflicts_with_all = ["nats_user", "nats_creds"])]
    pub nats_nkey: Option<Secret>,
    /// Sign in to the broker with a `.creds` file (a user JWT and its NKey seed, as `nsc` makes them).
    #[arg(long, env = "WASMSOCK_NATS_CREDS", value_name = "FILE", requires = "nats", conflicts_with = "nats_user")]
    pub nats_creds: Option<PathBuf>,
    /// Talk TLS to the broker and trust the PEM CA certificates in FILE for its certificate (instead of the system's
    /// roots).
    #[arg(long, env = "WASMSOCK_NATS_CA", value_name = "FILE", requires = "nats")]
    pub nats_ca: Option<PathBuf>,
    /// Talk TLS to the broker and show it this PEM client certificate chain (for a broker that verifies clients);
    /// needs --nats-key.
    #[arg(long, env = "WASMSOCK_NATS_CERT", value_name = "FILE", requires_all = ["nats", "nats_key"])]
    pub nats_cert: Option<PathBuf>,
    /// The PEM private key of --nats-cert (keep the file readable by this host's user only).
    #[arg(long, env = "WASMSOCK_NATS_KEY", value_name = "FILE", requires = "nats_cert")]
    pub nats_key: Option<PathBuf>,
    /// The cluster's name, shared by its hosts, so that several clusters can use one NATS server.
    #[arg(long, env = "WASMSOCK_CLUSTER_NAME", default_value = wasmsock_wire::cluster::DEFAULT_CLUSTER_NAME, requires = "nats")]
    pub cluster_name: String,
    /// This host's id in the cluster (letters, digits, `-`, `_`); generated at start when not given.
    #[arg(long, env = "WASMSOCK_HOST_ID", requires = "nats")]
    pub host_id: Option<String>,
    /// The address of the admin API (deploys, listings); off loopback it needs --admin-token.
    #[arg(long, env = "WASMSOCK_ADMIN_LISTEN", default_value = "127.0.0.1:8081")]
    pub admin: SocketAddr,
    /// Run without the admin API.
    #[arg(long, conflicts_with = "admin")]
    pub no_admin: bool,
    /// The bearer token every admin request must carry (required when --admin is off loopback).
    #[arg(long, env = "WASMSOCK_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// How often to look for changed descriptors and components under --plugins, in milliseconds (0: never).
    #[arg(long, default_value_t = limits::DEFAULT_WATCH_INTERVAL.as_millis() as u64)]
    pub watch_interval_ms: u64,
    /// Where compiled components are cached (default: .wasmsock-cache under --plugins). The cache keeps the versions
    /// loaded and the 8 others used most recently.
    #[arg(long)]
    pub cache_dir: Option<PathBuf>,
    /// Do not cache compiled components.
    #[arg(long, conflicts_with = "cache_dir")]
    pub no_cache: bool,
    /// Open an outbound client at start-up: `URI=HANDLER` (repeatable), e.g. `ws://127.0.0.1:9000/feed=feeds/ticker`.
    #[arg(long = "connect", value_name = "URI=HANDLER")]
    pub connect: Vec<String>,
    /// How the log is written to stderr: `text` for people, `json` (one object per line) for machines.
    #[arg(long, env = "WASMSOCK_LOG_FORMAT", value_enum, default_value_t)]
    pub log_format: super::logging::LogFormat,
    /// Serve the browser console at `/` on --listen: `auto` (on when --listen is loopback), `on` or `off`.
    #[arg(long, env = "WASMSOCK_CONSOLE", value_enum, default_value_t)]
    pub console: crate::http::console::ConsoleMode,
    /// Serve `wss://` (and the console over https) on --listen with this PEM certificate chain, leaf first; needs
    /// --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key", env = "WASMSOCK_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key (PKCS#8, PKCS#1 or SEC1) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert", env = "WASMSOCK_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// Also trust the PEM certificates in FILE (a private CA) for outbound `wss://` clients, beside the system's roots.
    #[arg(long, value_name = "FILE", env = "WASMSOCK_CA_FILE")]
    pub ca_file: Option<PathBuf>,
}

/// `--slow-consumer`: see [`SlowConsumer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SlowConsumerArg {
    /// Close the connection with 1013.
    Close,
    /// Only fail the `send` with `limit`.
    Error,
}

impl ServeArgs {
    /// The limits these flags ask for; an origin that is not one is an error.
    pub fn limits(&self) -> anyhow::Result<Limits> {
        for origin in &self.allow_origin {
            wasmsock_wire::descriptor::check_origin(origin).context("--allow-origin")?;
        }
        Ok(self.limits_unchecked())
    }

    fn limits_unchecked(&self) -> Limits {
        Limits {
            handler_deadline: Duration::from_millis(self.handler_deadline_ms),
            handler_memory: self.handler_memory_mib << 20,
            max_instances: self.max_instances,
            max_resident_instances: self.max_resident_instances,
            outbound_queue: self.outbound_queue,
            outbound_queue_bytes: self.outbound_queue_bytes,
            slow_consumer: match self.slow_consumer {
                SlowConsumerArg::Close => SlowConsumer::Close,
                SlowConsumerArg::Error => SlowConsumer::Error,
            },
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
            ping_interval: Duration::from_millis(self.ping_interval_ms),
            max_connections: self.max_connections,
            max_endpoint_connections: self.max_endpoint_connections,
            max_clients: self.max_clients,
            max_handler_failures: self.max_handler_failures,
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            fuel: self.fuel,
            origins: self.allow_origin.clone(),
            max_message_size: self.max_message_size,
            max_frame_size: self.max_frame_size,
            compression: self.compression,
            read_buffer: self.read_buffer,
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            shutdown_grace: Duration::from_millis(self.shutdown_grace_ms),
            max_channels_per_connection: self.max_channels_per_connection,
            max_attachment_bytes: self.max_attachment_bytes,
            execution_slots: self.execution_slots.map(|slots| slots as usize),
            handler_wall_factor: self.handler_wall_factor,
            pause_after: self.pause_after,
            pause: Duration::from_millis(self.pause_ms),
            max_pause: Duration::from_millis(self.max_pause_ms),
            project: limits::ProjectQuotas {
                calls: self.project_calls,
                resident_instances: self.project_resident_instances,
                clients: self.project_clients as usize,
                connections: self.project_connections as usize,
                timers: self.project_timers as usize,
                alarms: self.project_alarms,
                kv_keys: self.kv_max_keys,
                kv_bytes: self.kv_max_bytes,
                kv_value_bytes: self.kv_max_value_bytes,
                history_size: self.history_size,
                history_ttl_seconds: self.history_ttl_seconds,
                history_channels: self.history_channels,
                history_bytes: self.history_max_bytes,
            },
            memory_budget: match self.memory_budget_mib {
                Some(mib) => mib << 20,
                None => limits::memory_budget_for(crate::budget::machine_memory()),
            },
            project_memory_share: self.project_memory_share,
            endpoint_memory_share: self.endpoint_memory_share,
            memory_wait: Duration::from_millis(self.memory_wait_ms),
            ..Limits::default()
        }
    }

    /// How the host signs in to the cluster's broker and checks it (the --nats-* flags).
    fn broker_auth(&self) -> BrokerAuth {
        BrokerAuth {
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            nkey: self.nats_nkey.clone(),
            creds: self.nats_creds.clone(),
            ca: self.nats_ca.clone(),
            cert: self.nats_cert.clone(),
            key: self.nats_key.clone(),
        }
    }

    /// Serves until a signal, then drains.
    pub async fn run(self) -> anyhow::Result<()> {
        raise_open_files();
        let connects = self.connect.iter().map(|spec| parse_connect(spec)).collect::<anyhow::Result<Vec<_>>>()?;
        if !self.no_admin && !self.admin.ip().is_loopback() && self.admin_token.is_none() {
            anyhow::bail!(
                "the admin API would listen on {}, off loopback, without a token: give --admin-token (or \
                 WASMSOCK_ADMIN_TOKEN), or keep --admin on 127.0.0.1",
                self.admin
            );
        }
        let cache_dir = match (&self.cache_dir, self.no_cache) {
            (_, true) => None,
            (Some(dir), false) => Some(dir.clone()),
            (None, false) => Some(self.plugins.join(crate::control::registry::DEFAULT_CACHE_DIR)),
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => {
                Some(crate::conn::tls::server_config(cert, key).context("--tls-cert/--tls-key")?)
            }
            _ => None,
        };
        let outbound_tls = crate::conn::tls::client_config(self.ca_file.as_deref()).context("--ca-file")?;
        let (app, errors) = App::start_with_tls(&self.plugins, cache_dir, self.limits()?, outbound_tls).await?;
        for err in &errors {
            tracing::error!("{err:#}");
        }
        if let Some(url) = &self.nats {
            if let Some(data) = &self.data {
                tracing::warn!(
                    "--data {} is not used with --nats: handlers' keys and configuration are kept on the broker",
                    data.display()
                );
            }
            let host_id = self.host_id.clone().unwrap_or_else(crate::cluster::generated_host_id);
            let options = crate::cluster::ClusterOptions {
                url: url.clone(),
                auth: self.broker_auth(),
                name: self.cluster_name.clone(),
                host_id,
            };
            app.join_cluster(options).await?;
        } else {
            let data = self.data.clone().unwrap_or_else(|| self.plugins.join(crate::store::DEFAULT_DATA_DIR));
            app.store.open_embedded(data.clone(), self.store_sync).context("--data")?;
            app.history.open_journal(&data, self.store_sync).context("--data")?;
        }
        let listener = tokio::net::TcpListener::bind(self.listen)
            .await
            .with_context(|| format!("cannot listen on {}", self.listen))?;
        let admin = if self.no_admin {
            None
        } else {
            let admin = tokio::net::TcpListener::bind(self.admin)
                .await
                .with_context(|| format!("cannot listen on {} for the admin API", self.admin))?;
            let addr = admin.local_addr().context("reading the admin address")?;
            tracing::info!("admin API on http://{addr}/admin/v1");
            Some(crate::http::AdminListener { listener: admin, token: self.admin_token.clone() })
        };
        // The projects' alarms fire from now on (those due while the host was down at once).
        app.watch_alarms();
        if self.watch_interval_ms > 0 {
            app.watch(Duration::from_millis(self.watch_interval_ms));
        }
        let addr = listener.local_addr().context("reading the bound address")?;
        app.console.set(self.console.enabled_for(addr));
        if app.console.is_on() {
            tracing::info!("console on {}://{addr}/", if tls.is_some() { "https" } else { "http" });
        }
        let endpoints = app.registry.endpoints();
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        tracing::info!(
            plugins = %self.plugins.display(),
            endpoints = endpoints.len(),
            "listening on {scheme}://{addr}/websockets/service/{{endpoint}}"
        );
        for endpoint in &endpoints {
            tracing::info!("  {scheme}://{addr}/websockets/service/{}  ({})", endpoint.name, endpoint.handler);
        }
        for (uri, handler) in connects {
            app.create_client(&uri, &handler, wasmsock_wire::ClientOptions::default())
                .map_err(|err| anyhow::anyhow!("--connect {uri}={handler}: {err}"))?;
        }
        // Listening: a service manager waiting for readiness (systemd's `Type=notify`) may go on.
        super::notify::notify(&format!("READY=1\nSTATUS=serving {} endpoints on {scheme}://{addr}", endpoints.len()));
        let served = crate::http::serve_tls(app.clone(), listener, tls, admin, shutdown_signal()).await;
        // After the last publish: the history's journal is written and marked clean, so a restart keeps its epochs.
        app.history.close().await;
        served
    }
}

/// Splits `URI=HANDLER` at the last `=` (URIs may hold `=` in their query).
/// Raises the soft limit of open files to the hard one (every connection is a file descriptor; a default soft limit of
/// 1024 would refuse connections long before `--max-connections`) and logs both.
fn raise_open_files() {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, hard)) => match rlimit::increase_nofile_limit(hard) {
            Ok(raised) => tracing::info!(was = soft, soft = raised, hard, "open files limit"),
            Err(err) => tracing::warn!(soft, hard, "cannot raise the open files limit: {err}"),
        },
        Err(err) => tracing::warn!("cannot read the open files limit: {err}"),
    }
}

fn parse_connect(spec: &str) -> anyhow::Result<(String, String)> {
    match spec.rsplit_once('=') {
        Some((uri, handler)) if !uri.is_empty() && !handler.is_empty() => Ok((uri.to_owned(), handler.to_owned())),
        _ => anyhow::bail!("--connect {spec:?}: expected URI=HANDLER, e.g. ws://127.0.0.1:9000/feed=feeds/ticker"),
    }
}

/// A duration in milliseconds (or a count) that 0 would turn into a footgun: an idle timeout or ping interval of 0 would
/// close or ping every connection at once, a connect timeout of 0 fail every client. Refused with the flag named.
fn at_least_one() -> clap::builder::RangedU64ValueParser<u64> {
    clap::value_parser!(u64).range(1..)
}

/// A `--read-buffer` of at least [`limits::MIN_READ_BUFFER`] bytes; smaller is refused with the minimum named.
fn parse_read_buffer(value: &str) -> Result<usize, String> {
    let bytes: usize = value.parse().map_err(|err| format!("{value:?} is not a number of bytes: {err}"))?;
    if bytes < limits::MIN_READ_BUFFER {
        return Err(format!("{bytes} bytes is below the smallest read buffer, {} bytes", limits::MIN_READ_BUFFER));
    }
    Ok(bytes)
}

/// A `--memory-budget-mib` of at least [`limits::MIN_MEMORY_BUDGET_MIB`]; smaller (0 included) is refused with the
/// minimum named.
fn parse_memory_budget(value: &str) -> Result<usize, String> {
    let mib: usize = value.parse().map_err(|err| format!("{value:?} is not a number of MiB: {err}"))?;
    if mib < limits::MIN_MEMORY_BUDGET_MIB {
        return Err(format!("{mib} MiB is below the smallest memory budget, {} MiB", limits::MIN_MEMORY_BUDGET_MIB));
    }
    usize::try_from(u64::try_from(mib).unwrap_or(u64::MAX).saturating_mul(1 << 20))
        .map(|_| mib)
        .map_err(|_| format!("{mib} MiB does not fit in this machine's address space"))
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("signal received; draining connections");
    super::notify::notify("STOPPING=1\nSTATUS=draining connections");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_specs_split_at_the_last_equals_sign() {
        assert_eq!(parse_connect("ws://h:1/p?a=b=x/y").unwrap(), ("ws://h:1/p?a=b".to_owned(), "x/y".to_owned()));
        assert!(parse_connect("ws://h:1/p").is_err());
        assert!(parse_connect("=x/y").is_err());
    }

    #[test]
    fn zero_is_refused_where_it_would_close_ping_or_fail_everything_at_once() {
        use clap::Parser as _;
        for flag in [
            "--idle-timeout-ms",
            "--ping-interval-ms",
            "--handshake-timeout-ms",
            "--connect-timeout-ms",
            "--max-handler-failures",
            "--memory-wait-ms",
            "--project-memory-share",
            "--endpoint-memory-share",
        ] {
            let err = crate::cli::Cli::try_parse_from(["wasmsock", "serve", flag, "0"]).err();
            let err = err.map(|err| err.to_string()).unwrap_or_default();
            assert!(err.contains(flag) && err.contains("0 is not in 1"), "{flag}: {err}");
        }
        assert!(crate::cli::Cli::try_parse_from(["wasmsock", "serve", "--idle-timeout-ms", "1"]).is_ok());
    }

    #[test]
    fn a_memory_budget_below_the_minimum_is_refused_and_the_default_fits_the_machine() {
        assert_eq!(parse_memory_budget("64"), Ok(64));
        let err = parse_memory_budget("0").unwrap_err();
        assert!(err.contains("0 MiB") && err.contains("64 MiB"), "{err}");
        use clap::Parser as _;
        let crate::cli::Command::Serve(args) =
            crate::cli::Cli::try_parse_from(["wasmsock", "serve"]).expect("parses").command
        else {
            panic!("not serve");
        };
        let budget = args.limits_unchecked().memory_budget;
        assert_eq!(budget, limits::memory_budget_for(crate::budget::machine_memory()));
        assert!(budget >= limits::MIN_MEMORY_BUDGET_MIB << 20);
    }

    #[test]
    fn broker_credentials_pair_up_and_one_way_of_signing_in_is_taken() {
        use clap::Parser as _;
        let parse = |args: &[&str]| {
            let mut all = vec!["wasmsock", "serve", "--nats", "nats://127.0.0.1:4222"];
            all.extend_from_slice(args);
            crate::cli::Cli::try_parse_from(all).map(|_| ()).map_err(|err| err.to_string())
        };
        assert!(parse(&["--nats-user", "a", "--nats-password", "b"]).is_ok());
        assert!(parse(&["--nats-user", "a"]).is_err(), "a user needs a password");
        assert!(parse(&["--nats-token", "t", "--nats-nkey", "SU"]).is_err());
        assert!(parse(&["--nats-token", "t", "--nats-creds", "x.creds"]).is_err());
        assert!(parse(&["--nats-cert", "c.pem"]).is_err(), "a certificate needs its key");
        assert!(parse(&["--nats-ca", "ca.pem", "--nats-cert", "c.pem", "--nats-key", "k.pem"]).is_ok());
        let alone = crate::cli::Cli::try_parse_from(["wasmsock", "serve", "--nats-token", "t"]);
        assert!(alone.is_err(), "broker flags without --nats");
    }

    #[test]
    fn a_read_buffer_below_the_minimum_is_refused_with_the_minimum_named() {
        assert_eq!(parse_read_buffer("256"), Ok(256));
        assert_eq!(parse_read_buffer("65536"), Ok(65536));
        let err = parse_read_buffer("255").unwrap_err();
        assert!(err.contains("255 bytes") && err.contains("256 bytes"), "{err}");
        assert!(parse_read_buffer("1k").unwrap_err().contains("\"1k\" is not a number"));
    }
}
