//! Test component of a world that is not wasmsock's: it exports `greet` and no `on-event`, so the host refuses it.

#![allow(missing_docs, unsafe_code)]

wit_bindgen::generate!({
    inline: "package test:wrong; world wrong { export greet: func() -> string; }",
});

struct Component;

impl Guest for Component {
    fn greet() -> String {
        "not a websocket handler".into()
    }
}

export!(Component);
