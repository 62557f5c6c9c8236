//! wasmsock: a host that terminates WebSockets (inbound endpoints and outbound clients) and hands every event to a
//! handler compiled to a WebAssembly component.

pub mod admin;
pub mod app;
pub mod cli;
pub mod client;
pub mod console;
pub mod descriptor;
pub mod event;
pub mod frame;
pub mod hub;
pub mod lifecycle;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod registry;
pub mod runtime;
pub mod server;
pub mod session;
pub mod templates;

pub use app::App;
pub use limits::Limits;
