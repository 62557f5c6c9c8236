// The host's own modules, compiled into each fuzz target as they are (included at the target's crate root: they refer
// to each other as `crate::…`). They depend only on serde, anyhow and the WebSocket libraries, so the targets build
// without wasmtime.

#[allow(dead_code)]
#[path = "../../host/src/descriptor.rs"]
mod descriptor;
#[allow(dead_code)]
#[path = "../../host/src/frame.rs"]
mod frame;
#[allow(dead_code)]
#[path = "../../host/src/limits.rs"]
mod limits;
