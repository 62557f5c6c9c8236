//! wasmsock: a host that terminates WebSockets (inbound endpoints and outbound clients) and hands every event to a
//! handler compiled to a WebAssembly component.
//!
//! The rooms, from the bottom up; each imports only rooms below it:
//! - `wasmsock_wire` (the crate `wire/`, re-exported as [`wire`]): frames, close codes, limits, descriptors.
//! - [`budget`]: the host's memory budget (messages being received, queued frames, handler instances), in all and
//!   per project and endpoint.
//! - [`fair`]: the fair share of handler execution between projects (slots, queues, quotas, pauses); no wasmtime.
//! - [`runtime`]: everything wasmtime; knows the host only through the traits it defines.
//! - [`control`]: the registry of endpoints and handlers (deploys, the compile cache) and the metrics.
//! - [`conn`]: the hub of live connections, one connection's session loop, outbound clients.
//! - [`channels`]: named groups of connections per project, and the fan-out of a publish to their members.
//! - [`history`]: channel history per project that opted in: offsets, epochs, reading and joining from a position.
//! - [`cluster`]: hosts sharing one NATS broker act as one for channels (`serve --nats`).
//! - [`app`]: the rooms wired into one host; where an event crosses from a connection into its handler.
//! - [`http`]: the main listener (upgrades, the console) and the admin API.
//! - [`cli`]: the `wasmsock` command line.

pub mod app;
pub mod budget;
pub mod channels;
pub mod cli;
pub mod cluster;
pub mod conn;
pub mod control;
pub mod fair;
pub mod history;
pub mod http;
pub mod runtime;
pub mod store;

pub use app::App;

/// The maps the host looks up on every handshake (endpoints, handlers, projects, connections): hashed with foldhash,
/// seeded per process, rather than the standard SipHash, whose ~190 instructions a lookup added up to 4% of a
/// handshake's (BENCHMARKS.md, round twelve). Their keys come from descriptors and from the host itself; a request's
/// path is looked up in them, never inserted.
pub(crate) type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub use wasmsock_wire as wire;
pub use wasmsock_wire::Limits;
