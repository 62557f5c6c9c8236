//! The WebAssembly runtime, the host's only contact with wasmtime. Its front door: [`Runtime`] (compile a handler,
//! run one event), [`Instances`] (which instance runs an event, per lifecycle) and the traits through which it reaches
//! the host ([`Connection`], [`HostServices`]). It imports nothing of the connection, control or app layers.
//!
//! Inside, dependencies point one way: `engine` and `host` use `bindings`, `state` and `services`; `state` uses
//! `services`; nothing imports this file.

mod bindings;
mod convert;
mod engine;
mod guest_log;
mod host;
mod host_http;
mod host_kv;
mod host_poll;
mod host_timers;
mod instances;
mod services;
mod state;

pub use engine::{CallError, Handler, Resident, Runtime};
pub use instances::Instances;
pub use services::{
    Connection, Event, Gathered, HistoryFuture, HostServices, HttpBodyError, HttpFailure, HttpFuture, HttpRequestBody,
    KvFuture, KvService, Lookup, MembersSurvey, Survey,
};
