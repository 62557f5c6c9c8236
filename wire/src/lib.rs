//! wasmsock's pure protocol layer, the bottom of the host: the frames it deals in, close codes, limits and their
//! defaults, `.websocket` descriptors, channel names and their broker subjects, the outbound allow-list, and the plain data about connections and events that the runtime, the
//! connection layer and the admin API share. It knows no tokio and no wasmtime, so the fuzz targets build it as it is.

pub mod channel;
pub mod cluster;
pub mod conn;
pub mod deflate;
pub mod descriptor;
pub mod event;
pub mod frame;
pub mod history;
pub mod kv;
pub mod limits;
pub mod outbound;
pub mod project;

pub use conn::{ClientInfo, ClientOptions, ConnError, ConnState, Direction, Reconnect};
pub use event::{EventKind, Method, Payload};
pub use frame::{Bytes, Close, Frame, PeerError, Utf8Bytes};
pub use limits::{ConnLimits, EndpointLimits, Limits, ProjectQuotas, QuotaOverrides, SlowConsumer};
