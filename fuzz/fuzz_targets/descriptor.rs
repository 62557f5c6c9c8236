//! Fuzz target: any bytes as a `.websocket` descriptor. Parsing must return a descriptor or an error, never panic or
//! overflow the stack; a descriptor that parses must survive a round trip through its JSON form unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use wasmsock_wire::descriptor::Descriptor;
use wasmsock_wire::limits::Limits;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(descriptor) = Descriptor::parse(text) else { return };
    let json = serde_json::to_string(&descriptor).expect("a parsed descriptor serializes");
    let again = Descriptor::parse(&json).expect("a serialized descriptor parses");
    assert_eq!(descriptor, again);
    let _ = Limits::default().for_conn(Some(&descriptor.limits));
});
