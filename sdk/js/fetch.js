//! The web's `fetch` for JavaScript handlers, on `http.request` (`http.js`): `build.mjs` adds this module to a
//! handler that mentions `fetch`. The request is sent and its whole response read while `fetch` runs, so the promise
//! it returns is already settled; a refusal rejects with a `TypeError` (as a browser's does) whose `code` names the
//! `wasi:http` error code (`HttpRequestDenied`, ...).
//!
//!     const response = await fetch("http://127.0.0.1:8080/status", { method: "POST", body: "hi" });
//!     websockets.send(`${response.status} ${await response.text()}`);
//!
//! On SpiderMonkey that works as in a browser: promise jobs run when the handler returns, within the event. On QuickJS
//! they never run (componentize-qjs's synchronous runtime runs no promise jobs), so a `then` or an `await` would wait
//! forever: there `fetch` throws at once an error that says to use `http.get`/`http.post`/`http.request` from
//! "wasmsock" (synchronous) or to build with `--engine spidermonkey`. Not provided: streaming bodies, `AbortSignal`,
//! following redirects (a 3xx is returned as it is), `Request` objects, `FormData`.

import { Headers, HttpError, bodyBytes, http } from "./http.js";

const decoder = new TextDecoder();

/** Whether promise jobs run within an event on this engine (see above). */
const PROMISES_SETTLE = typeof WASMSOCK_ENGINE === "undefined" || WASMSOCK_ENGINE !== "quickjs";

/** The `TypeError` a failed `fetch` rejects with: `code` and `detail` from the `HttpError`. */
function fetchError(err) {
  const failure = new TypeError(`fetch failed: ${err.message}`);
  failure.code = err.code;
  failure.detail = err.detail;
  return failure;
}

/** A response read whole: `status`, `ok`, `headers`, `url`, and `text()`, `json()`, `arrayBuffer()`, `bytes()`. */
export class Response {
  constructor(body, init = {}) {
    this._body = body === undefined || body === null ? new Uint8Array(0) : bodyBytes(body);
    this.status = init.status ?? 200;
    this.statusText = init.statusText ?? "";
    this.headers = new Headers(init.headers);
    this.url = init.url ?? "";
    this.ok = this.status >= 200 && this.status < 300;
    this.bodyUsed = false;
  }

  _take() {
    if (this.bodyUsed) return Promise.reject(new TypeError("the body of this response was already read"));
    this.bodyUsed = true;
    return Promise.resolve(this._body);
  }

  text() {
    return this._take().then((body) => decoder.decode(body));
  }

  json() {
    return this.text().then((text) => JSON.parse(text));
  }

  arrayBuffer() {
    return this._take().then((body) => body.buffer.slice(body.byteOffset, body.byteOffset + body.byteLength));
  }

  bytes() {
    return this._take();
  }
}

/** Sends a request (`input` a URL string or an object with `url` or `href`); a settled promise of its `Response`. */
export function fetch(input, init = {}) {
  if (!PROMISES_SETTLE) {
    const err = new TypeError(
      "fetch is not available on QuickJS, whose runtime runs no promise jobs (a then or an await would wait " +
        'forever): use http.get, http.post or http.request from "wasmsock", or build with --engine spidermonkey',
    );
    err.code = "Unsupported";
    throw err;
  }
  try {
    const url = typeof input === "string" ? input : String(input?.url ?? input?.href ?? input);
    const options = init ?? {};
    let sent;
    try {
      sent = http.request(options.method ?? "GET", url, options.headers, options.body);
    } catch (err) {
      throw err instanceof HttpError ? fetchError(err) : err;
    }
    return Promise.resolve(new Response(sent.body, { status: sent.status, headers: [...sent.headers], url }));
  } catch (err) {
    return Promise.reject(err);
  }
}

globalThis.fetch = fetch;
globalThis.Headers = Headers;
globalThis.Response = Response;
