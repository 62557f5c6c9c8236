//! The WebAssembly runtime, the host's only contact with wasmtime. Its front door: [`Runtime`] (compile a handler,
//! run one event), [`Instances`] (which instance runs an event, per lifecycle) and the traits through which it reaches
//! the host ([`Connection`], [`HostServices`]). It imports nothing of the connection, control or app layers.
//!
//! Inside, dependencies point one way: `engine` and `host` use `bindings`, `state` and `services`; `state` uses
//! `services`; nothing imports this file.

mod bindings;
mod componentize;
mod convert;
mod engine;
mod guest_log;
mod host;
mod host_http;
mod host_kv;
mod host_outbound;
mod host_poll;
mod host_timers;
mod instances;
mod services;
mod state;

pub use engine::{CallError, Handler, Resident, Runtime};

/// The engine that runs handlers, as `wasmsock --version` names it (its major version is the workspace's, tested).
pub const ENGINE: &str = "wasmtime 48";
pub use instances::{Instances, KeptCell};
pub use services::{
    Connection, Event, Gathered, HistoryFuture, HostServices, HttpBodyError, HttpFailure, HttpFuture, HttpRequestBody,
    KvFuture, KvService, Lookup, MembersSurvey, Survey,
};

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    #[test]
    fn the_engine_named_is_the_one_the_workspace_builds_with() {
        let workspace = include_str!("../../../Cargo.toml");
        let pinned = workspace.lines().find_map(|line| line.strip_prefix("wasmtime = ")).unwrap();
        let major = pinned.trim_matches(|c: char| !c.is_ascii_digit()).split('.').next().unwrap();
        assert_eq!(super::ENGINE, format!("wasmtime {major}"), "{pinned}");
    }
}
