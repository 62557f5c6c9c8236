//! The host side of the WIT contract, generated from `wit/` by the host's only `bindgen!`. Nothing outside the runtime
//! sees these types; `convert.rs` turns them into the host's own.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "handler",
    exports: { default: async },
    imports: { default: trappable },
    with: {
        "wasmsock:websockets/websockets.websocket-client": crate::runtime::state::ClientRef,
    },
});
