//! The HTTP faces of a host, on top of the app: the main listener (upgrades to `/websockets/service/{endpoint}`, the
//! console page) and the admin API with `/metrics` and the operator's dashboard. They do HTTP work only, then hand a socket to the connection layer.

pub mod admin;
mod admin_store;
mod api_error;
pub mod console;
pub mod dashboard;
pub mod listener;
mod secret;
pub mod server;
mod upgrade;

pub use server::{AdminListener, serve, serve_tls};
