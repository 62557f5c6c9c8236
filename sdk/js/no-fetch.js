//! `fetch` for JavaScript handlers, on both engines, until it works: it throws at once a `TypeError` (`code`
//! `"Unsupported"`) that says so, rather than leave a promise that never settles. `build.mjs` adds this module to a
//! handler that mentions `fetch`.
//!
//! Why there is none yet: componentize-qjs 0.4.5 cannot build a QuickJS component that imports `wasi:http` (its
//! build-time stand-in for `wasi:http/types` gives `io-error` a resource type of its own: "mismatched resource
//! types"), and SpiderMonkey's own `fetch` (componentize-js 0.23) does not settle within a synchronous `on-event`
//! call. The Rust SDK (`wasmsock_sdk::http`) and the Python SDK (`wasmsock.http`) send HTTP requests.

/** Throws the error that says `fetch` is not available. */
export function fetch() {
  const err = new TypeError(
    "fetch is not available to JavaScript handlers yet (the Rust and Python SDKs have HTTP helpers): see " +
      "sdk/js/no-fetch.js",
  );
  err.code = "Unsupported";
  throw err;
}

globalThis.fetch = fetch;
