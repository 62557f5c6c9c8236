//! How the SDK's modules hand values to the WIT bindings and take their errors back: binary data as one
//! `Uint8Array`, and a WIT error (thrown by the bindings of both engines) as the SDK's own error.

/**
 * Turns `Uint8Array`, `ArrayBuffer`, a typed-array view or an array of bytes into a `Uint8Array`; `what` names the
 * call in the `TypeError` for anything else.
 */
export function bytes(data, what = "sendBinary") {
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (Array.isArray(data)) return Uint8Array.from(data);
  throw new TypeError(`${what} takes a Uint8Array, an ArrayBuffer, a typed array or an array of bytes`);
}

/**
 * Runs a WIT call whose result may be an error; the bindings of both engines throw an `Error` whose `payload` is the
 * variant (`{tag, val}`), which `toError` turns into the error thrown instead. Anything else is rethrown unchanged.
 */
export function witCall(fn, toError) {
  try {
    return fn();
  } catch (err) {
    const payload = err && err.payload;
    if (payload && typeof payload.tag === "string") {
      throw toError(payload);
    }
    throw err;
  }
}
