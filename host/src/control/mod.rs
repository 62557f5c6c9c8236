//! What the operator deploys and watches: the registry of endpoints and handlers (plugins root, deploys, the compile
//! cache) and the host's metrics. Below the connection layer: it knows the runtime, never a connection.

pub mod metrics;
pub mod registry;
