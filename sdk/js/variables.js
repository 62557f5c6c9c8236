//! The configuration of a handler's project (`wasi:config/store`), named as Spin's `@spinframework/spin-variables`:
//! values the operator sets per project, read by name.
//!
//!     import { variables } from "wasmsock";
//!
//!     const upstream = variables.get("upstream-url") ?? "ws://127.0.0.1:9000";

import * as wit from "wasi:config/store@0.2.0-rc.1";

import { witCall } from "./wit-values.js";

/**
 * Runs a WIT call whose result may be an error, throwing a `wasi:config` error (`upstream` or `io`) as an `Error`
 * whose message is `kind: detail` and whose `kind` is the case.
 */
function call(fn) {
  return witCall(fn, (payload) => {
    const error = new Error(`${payload.tag}: ${payload.val ?? ""}`);
    error.kind = payload.tag;
    return error;
  });
}

/**
 * The value of the configuration `name`; `null` when the project has no such value. Within one event the answers do
 * not change, even if the operator changes the configuration meanwhile.
 */
export function get(name) {
  const value = call(() => wit.get(String(name)));
  return value === undefined ? null : value;
}

/** Every configuration value of the project, as `[name, value]` pairs in name order. */
export function getAll() {
  return call(() => wit.getAll()).map(([name, value]) => [name, value]);
}
