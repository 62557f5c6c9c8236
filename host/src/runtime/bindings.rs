//! The host side of the WIT contract, generated from `wit/` by the host's only `bindgen!`. Nothing outside the runtime
//! sees these types; `convert.rs` turns them into the host's own.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "handler",
    exports: { default: async },
    // `get-client` may ask another host of the cluster whether it holds the connection; the rest never waits.
    imports: {
        "wasmsock:websockets/websockets.get-client": async | trappable,
        default: trappable,
    },
    with: {
        "wasmsock:websockets/websockets.websocket-client": crate::runtime::state::ClientRef,
    },
});
