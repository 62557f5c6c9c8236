//! The Rust SDK for wasmsock handlers: the Dirigible-style `websockets` API over the WIT imports, channel history and
//! recovery ([`history`]), the project's key-value store ([`kv`]) and configuration ([`variables`]) named as Spin's,
//! and [`handler!`], which exports a plain `fn on_event()` as the component's `on-event`.
//!
//! ```ignore
//! use wasmsock_sdk::websockets;
//!
//! fn on_event() {
//!     if websockets::is_on_message() {
//!         if let Some(text) = websockets::get_message() {
//!             let _ = websockets::send(&text);
//!         }
//!     }
//! }
//!
//! wasmsock_sdk::handler!(on_event);
//! ```
//! Build with `cargo build --target wasm32-wasip2 --release`; the `.wasm` in `target/wasm32-wasip2/release/` is the
//! handler component. Or build for `wasm32-unknown-unknown` and make the component with `wasm-tools component new`: a
//! component without WASI, cheaper to instantiate (see the README); log with [`eprintln!`], which works on both.

pub mod http;

/// The generated bindings of the `wasmsock:websockets` WIT package. Use [`websockets`] instead.
#[doc(hidden)]
#[allow(missing_docs, unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "handler",
        pub_export_macro: true,
        export_macro_name: "__export_handler",
        default_bindings_module: "::wasmsock_sdk::bindings",
        generate_all,
    });
}

pub mod history;
pub mod kv;
pub mod lean;
pub mod timers;
pub mod variables;

/// A handler built for `wasm32-unknown-unknown` takes its first allocations of an instance from an arena in its
/// initial memory (see [`lean::Arena`]); turn the `arena` feature off to bring your own global allocator.
#[cfg(all(target_arch = "wasm32", target_os = "unknown", feature = "arena"))]
#[global_allocator]
static ARENA: lean::Arena = lean::Arena::new();

/// Writes a line to the host's log, which tags it with the handler and connection: `std::eprintln!` for
/// `wasm32-wasip2`, and through `wasi:cli/stderr` for `wasm32-unknown-unknown`, whose standard library writes nothing.
#[macro_export]
macro_rules! eprintln {
    ($($arg:tt)*) => {
        $crate::__log_line(::std::format_args!($($arg)*))
    };
}

/// The line of [`eprintln!`].
#[doc(hidden)]
pub fn __log_line(args: std::fmt::Arguments<'_>) {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    lean::write_stderr(&format!("{args}\n"));
    #[cfg(not(all(target_arch = "wasm32", target_os = "unknown")))]
    {
        #[allow(clippy::print_stderr)]
        {
            std::eprintln!("{args}");
        }
    }
}

/// What [`handler!`] does before each event: for `wasm32-unknown-unknown`, a panic's message goes to the host's log.
#[doc(hidden)]
pub fn __before_event() {
    #[cfg(all(target_arch = "wasm32", target_os = "unknown"))]
    lean::report_panics();
}

/// Exports `fn on_event()` (or any path to a function taking nothing) as the handler's `on-event`.
#[macro_export]
macro_rules! handler {
    ($on_event:path) => {
        struct __WasmsockHandler;

        impl $crate::bindings::Guest for __WasmsockHandler {
            fn on_event() {
                $crate::__before_event();
                $on_event()
            }
        }

        $crate::bindings::__export_handler!(__WasmsockHandler with_types_in $crate::bindings);
    };
}

/// The websockets API, named after Dirigible's `sdk/net` websockets module.
pub mod websockets {
    use crate::bindings::wasmsock::websockets::websockets as wit;

    pub use wit::{
        ClientInfo, ClientOptions, ClientsSurvey, ConnectionState, Direction, Error, MembersPage, MembersSurvey,
        Method, PublishOptions, ReconnectPolicy, WebsocketClient,
    };

    /// The kind of the event being handled (`getMethod()`).
    pub fn get_method() -> Method {
        wit::get_method()
    }

    /// The text of the message being handled (`getMessage()`); none for binary messages and other events.
    pub fn get_message() -> Option<String> {
        wit::get_message()
    }

    /// The bytes of the binary message being handled; none for text messages and other events.
    pub fn get_binary_message() -> Option<Vec<u8>> {
        wit::get_binary_message()
    }

    /// What went wrong, in an onerror event (`getError()`).
    pub fn get_error() -> Option<String> {
        wit::get_error()
    }

    /// Whether the event is onopen (`isOnOpen()`).
    pub fn is_on_open() -> bool {
        matches!(get_method(), Method::Onopen)
    }

    /// Whether the event is onmessage (`isOnMessage()`).
    pub fn is_on_message() -> bool {
        matches!(get_method(), Method::Onmessage)
    }

    /// Whether the event is onerror (`isOnError()`).
    pub fn is_on_error() -> bool {
        matches!(get_method(), Method::Onerror)
    }

    /// Whether the event is onclose (`isOnClose()`).
    pub fn is_on_close() -> bool {
        matches!(get_method(), Method::Onclose)
    }

    /// The connection the event belongs to.
    pub fn current_client() -> WebsocketClient {
        wit::current_client()
    }

    /// Queues a text message on the current connection; never blocks.
    pub fn send(message: &str) -> Result<(), Error> {
        wit::send(message)
    }

    /// Queues a binary message on the current connection; never blocks.
    pub fn send_binary(data: &[u8]) -> Result<(), Error> {
        wit::current_client().send_binary(data)
    }

    /// Closes the current connection with a code (1000 when none) and reason.
    pub fn close(code: Option<u16>, reason: Option<&str>) -> Result<(), Error> {
        wit::close(code, reason)
    }

    /// Opens an outbound client whose events go to `handler` (`createWebsocket(uri, handler)`); returns at once.
    pub fn create_websocket(uri: &str, handler: &str) -> Result<WebsocketClient, Error> {
        wit::create_websocket(uri, handler)
    }

    /// `createWebsocket(uri, handler, engine)`: the seed's third argument; only absent or `"wasm"` is accepted.
    pub fn create_websocket_with_engine(
        uri: &str,
        handler: &str,
        engine: Option<&str>,
    ) -> Result<WebsocketClient, Error> {
        match engine {
            None | Some("wasm") => wit::create_websocket(uri, handler),
            Some(other) => {
                Err(Error::Invalid(format!("engine {other:?} is not supported; leave it out or use \"wasm\"")))
            }
        }
    }

    /// Opens an outbound client with options, such as reconnecting with backoff when the connection is lost.
    pub fn create_websocket_with(uri: &str, handler: &str, options: ClientOptions) -> Result<WebsocketClient, Error> {
        wit::create_websocket_with(uri, handler, options)
    }

    /// Every live connection, inbound sessions and outbound clients (`getClients()`).
    pub fn get_clients() -> Vec<ClientInfo> {
        wit::get_clients()
    }

    /// [`get_clients`] with the hosts of the cluster that did not answer in time (`missing_hosts`, empty when the list
    /// is whole).
    pub fn survey_clients() -> ClientsSurvey {
        wit::survey_clients()
    }

    /// The live connection with this id (`getClient(id)`).
    pub fn get_client(id: &str) -> Option<WebsocketClient> {
        wit::get_client(id)
    }

    /// The oldest live outbound client of `handler` (`getClientByHandler(handler)`).
    pub fn get_client_by_handler(handler: &str) -> Option<WebsocketClient> {
        wit::get_client_by_handler(handler)
    }

    /// Adds the current connection to `channel` of this handler's project (`join(channel)`).
    pub fn join(channel: &str) -> Result<(), Error> {
        wit::join(channel)
    }

    /// Removes the current connection from `channel`; whether it was a member.
    pub fn leave(channel: &str) -> Result<bool, Error> {
        wit::leave(channel)
    }

    /// The channels the current connection is in, in the order it joined them.
    pub fn get_channels() -> Vec<String> {
        wit::get_channels()
    }

    /// Queues a text message on every member of `channel` (the current connection included if it is one); returns
    /// how many connections it was queued for.
    pub fn publish(channel: &str, message: &str) -> Result<u32, Error> {
        wit::publish(channel, message, PublishOptions { skip_self: false })
    }

    /// [`publish`] to every member but the current connection.
    pub fn publish_to_others(channel: &str, message: &str) -> Result<u32, Error> {
        wit::publish(channel, message, PublishOptions { skip_self: true })
    }

    /// Queues a binary message on every member of `channel`, with options such as skipping the current connection.
    pub fn publish_binary(channel: &str, data: &[u8], options: PublishOptions) -> Result<u32, Error> {
        wit::publish_binary(channel, data, options)
    }

    /// [`publish`] with options, such as skipping the current connection.
    pub fn publish_with(channel: &str, message: &str, options: PublishOptions) -> Result<u32, Error> {
        wit::publish(channel, message, options)
    }

    /// One page of `channel`'s members, oldest first: at most `limit` (1 to 1000) after the id `after` (the `next`
    /// of the page before; none for the first page).
    pub fn get_members(channel: &str, after: Option<&str>, limit: u32) -> Result<MembersPage, Error> {
        wit::get_members(channel, after, limit)
    }

    /// [`get_members`] with the hosts of the cluster that did not answer in time (`missing_hosts`, empty when the
    /// page is whole).
    pub fn survey_members(channel: &str, after: Option<&str>, limit: u32) -> Result<MembersSurvey, Error> {
        wit::survey_members(channel, after, limit)
    }

    /// Keeps `data` with the current connection, readable on its later events (at most 4 KiB by default).
    pub fn set_attachment(data: &[u8]) -> Result<(), Error> {
        wit::set_attachment(Some(data))
    }

    /// Removes the current connection's attachment.
    pub fn clear_attachment() -> Result<(), Error> {
        wit::set_attachment(None)
    }

    /// The current connection's attachment, if it has one.
    pub fn get_attachment() -> Option<Vec<u8>> {
        wit::get_attachment()
    }
}
