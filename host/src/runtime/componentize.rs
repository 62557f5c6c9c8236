//! A core WebAssembly module deployed as a handler, made into a component: what a Rust handler built for
//! `wasm32-unknown-unknown` is (the SDK's path without WASI), carrying the world it was built for in its bindings'
//! `component-type` section, as `wasm-tools component new` reads it.

use anyhow::Context as _;

/// The header of a core module (`\0asm`, version 1); a component's carries another version and layer.
const CORE_MODULE_HEADER: &[u8; 8] = b"\0asm\x01\0\0\0";

/// `bytes` as a component: unchanged when they are not a core module, or the component made from the module and the
/// world its bindings embed. A module without that world, or one that imports WASI preview 1 (`wasm32-wasip1`),
/// is refused with what to build instead.
pub fn component_of(bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    if !bytes.starts_with(CORE_MODULE_HEADER) {
        return Ok(bytes);
    }
    let refused = "a core WebAssembly module, not a component, and it cannot be made into one: a handler is a \
                   component (Rust: wasm32-wasip2), or a module built for wasm32-unknown-unknown with wasmsock-sdk, \
                   whose bindings carry the world it is made into a component from";
    let (with_world, _) = wit_component::metadata::decode(&bytes).context(refused)?;
    if with_world.is_none() {
        anyhow::bail!("{refused}; this one carries no world (no `component-type` custom section)");
    }
    wit_component::ComponentEncoder::default()
        .module(&bytes)
        .and_then(|encoder| encoder.validate(true).encode())
        .context(refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_component_passes_unchanged_and_a_module_without_a_world_is_refused_saying_what_to_build() {
        // The smallest component (a header alone) is not a module: nothing is done to it.
        let component = b"\0asm\x0d\0\x01\0".to_vec();
        assert_eq!(component_of(component.clone()).unwrap(), component);
        // The smallest module has no `component-type` section to be made a component from.
        let err = component_of(CORE_MODULE_HEADER.to_vec()).unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("not a component") && text.contains("wasm32-unknown-unknown"), "{text}");
    }
}
