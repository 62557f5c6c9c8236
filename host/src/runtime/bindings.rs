//! The host side of the WIT contract, generated from `wit/` by the host's only `bindgen!`. Nothing outside the runtime
//! sees these types; `convert.rs` turns them into the host's own.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "handler",
    exports: { default: async },
    // These may ask the other hosts of the cluster; the rest never waits.
    imports: {
        "wasmsock:websockets/websockets.get-client": async | trappable,
        "wasmsock:websockets/websockets.get-clients": async | trappable,
        "wasmsock:websockets/websockets.get-client-by-handler": async | trappable,
        "wasmsock:websockets/websockets.survey-clients": async | trappable,
        "wasmsock:websockets/websockets.get-members": async | trappable,
        "wasmsock:websockets/websockets.survey-members": async | trappable,
        default: trappable,
    },
    with: {
        "wasmsock:websockets/websockets.websocket-client": crate::runtime::state::ClientRef,
    },
});
