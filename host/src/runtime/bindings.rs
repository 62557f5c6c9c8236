//! The host side of the WIT contract, generated from `wit/` by the host's only `bindgen!`. Nothing outside the runtime
//! sees these types; `convert.rs` turns them into the host's own.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "handler",
    exports: { default: async },
    // These may ask the other hosts of the cluster or the store; the rest never waits.
    imports: {
        "wasmsock:websockets/websockets.get-client": async | trappable,
        "wasmsock:websockets/websockets.get-clients": async | trappable,
        "wasmsock:websockets/websockets.get-client-by-handler": async | trappable,
        "wasmsock:websockets/websockets.survey-clients": async | trappable,
        "wasmsock:websockets/websockets.get-members": async | trappable,
        "wasmsock:websockets/websockets.survey-members": async | trappable,
        "wasmsock:websockets/kv.get-entry": async | trappable,
        "wasmsock:websockets/kv.put": async | trappable,
        "wasmsock:websockets/kv.delete-if": async | trappable,
        "wasmsock:websockets/kv.increment-with-ttl": async | trappable,
        "wasmsock:websockets/kv.list-keys": async | trappable,
        "wasmsock:websockets/kv.get-usage": async | trappable,
        "wasi:keyvalue/store.open": trappable,
        "wasi:keyvalue/store.[method]bucket.get": async | trappable,
        "wasi:keyvalue/store.[method]bucket.set": async | trappable,
        "wasi:keyvalue/store.[method]bucket.delete": async | trappable,
        "wasi:keyvalue/store.[method]bucket.exists": async | trappable,
        "wasi:keyvalue/store.[method]bucket.list-keys": async | trappable,
        "wasi:keyvalue/store.[drop]bucket": trappable,
        "wasi:keyvalue/atomics.[static]cas.new": async | trappable,
        "wasi:keyvalue/atomics.[method]cas.current": trappable,
        "wasi:keyvalue/atomics.[drop]cas": trappable,
        "wasi:keyvalue/atomics.increment": async | trappable,
        "wasi:keyvalue/atomics.swap": async | trappable,
        "wasi:keyvalue/batch.get-many": async | trappable,
        "wasi:keyvalue/batch.set-many": async | trappable,
        "wasi:keyvalue/batch.delete-many": async | trappable,
        default: trappable,
    },
    with: {
        "wasmsock:websockets/websockets.websocket-client": crate::runtime::state::ClientRef,
        "wasi:keyvalue/store.bucket": crate::runtime::state::BucketRef,
        "wasi:keyvalue/atomics.cas": crate::runtime::state::CasRef,
    },
});
