//! Outbound HTTP for JavaScript handlers, over the WIT `outbound-http` import: `http.get`, `http.post` and
//! `http.request` send one request and return its whole response (synchronously, on both engines); `fetch.js` builds
//! the web's `fetch` on the same call. The host sends a request only to destinations the endpoint's
//! `allowed-outbound-hosts` grant (`http://` and `https://` grants), within its timeouts and caps, exactly as it sends
//! a Rust or Python handler's `wasi:http` requests; the wait does not count against the handler's deadline.
//!
//!     import { http, websockets } from "wasmsock";
//!
//!     const response = http.post("http://127.0.0.1:8080/submit", "hi", { "content-type": "text/plain" });
//!     websockets.send(`${response.status} ${response.text()}`);
//!
//! A refusal or a failure throws an `HttpError` whose `code` names the `wasi:http` error code (`HttpRequestDenied`,
//! `DestinationIpProhibited`, `DnsError`, `HttpResponseBodySize`, `HttpResponseTimeout`, `ConnectionLimitReached`,
//! ...), the names the Rust and Python SDKs use.
//!
//! Why not `wasi:http` itself: componentize-qjs 0.4.5 cannot build a QuickJS component that imports it (its build-time
//! stand-in for `wasi:http/types` gives `io-error` a resource type of its own), and SpiderMonkey's own `fetch`
//! (componentize-js 0.23) never settles within a synchronous event (its event loop does not poll the request).

import { send } from "wasmsock:websockets/outbound-http@0.1.4";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Why a request got no response: `code` the error code's name, `detail` the host's reason. */
export class HttpError extends Error {
  constructor(code, detail = "") {
    super(detail ? `${code}: ${detail}` : code);
    this.name = "HttpError";
    this.code = code;
    this.detail = detail;
  }
}

/** Header names and values, in order, names lower-case; what `fetch` takes and a `Response` has. */
export class Headers {
  constructor(init) {
    this._list = [];
    if (init === undefined || init === null) return;
    const pairs = init instanceof Headers ? init._list : Array.isArray(init) ? init : Object.entries(init);
    for (const pair of pairs) {
      if (!Array.isArray(pair) || pair.length !== 2) throw new TypeError("headers are [name, value] pairs");
      this.append(pair[0], pair[1]);
    }
  }

  append(name, value) {
    this._list.push([String(name).toLowerCase(), String(value)]);
  }

  set(name, value) {
    this.delete(name);
    this.append(name, value);
  }

  delete(name) {
    const key = String(name).toLowerCase();
    this._list = this._list.filter(([have]) => have !== key);
  }

  /** The values of `name` joined with `, `, or `null`. */
  get(name) {
    const key = String(name).toLowerCase();
    const values = this._list.filter(([have]) => have === key).map(([, value]) => value);
    return values.length === 0 ? null : values.join(", ");
  }

  has(name) {
    return this.get(name) !== null;
  }

  forEach(fn, thisArg) {
    for (const [name, value] of this._list) fn.call(thisArg, value, name, this);
  }

  entries() {
    return this._list.map((pair) => pair.slice())[Symbol.iterator]();
  }

  keys() {
    return this._list.map(([name]) => name)[Symbol.iterator]();
  }

  values() {
    return this._list.map(([, value]) => value)[Symbol.iterator]();
  }

  [Symbol.iterator]() {
    return this.entries();
  }
}

/** A response read whole: `status`, `ok`, `headers`, `url`, `body` (bytes), and `text()` and `json()`. */
export class HttpResponse {
  constructor(status, headers, body, url) {
    this.status = status;
    this.ok = status >= 200 && status < 300;
    this.headers = new Headers(headers);
    this.body = body;
    this.url = url;
  }

  /** The body as UTF-8 text. */
  text() {
    return decoder.decode(this.body);
  }

  /** The body parsed as JSON. */
  json() {
    return JSON.parse(this.text());
  }
}

/** A body as bytes: a string (UTF-8), bytes of any view, or nothing. */
export function bodyBytes(body) {
  if (body === undefined || body === null) return new Uint8Array(0);
  if (typeof body === "string") return encoder.encode(body);
  if (body instanceof Uint8Array) return body;
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  throw new TypeError("a request body is a string, an ArrayBuffer or a typed array");
}

/**
 * Sends one request (`method` any HTTP method, `headers` an object, pairs or `Headers`, `body` a string or bytes) and
 * returns its `HttpResponse`; throws `HttpError`.
 */
function request(method, url, headers, body) {
  const pairs = [...new Headers(headers)].map(([name, value]) => [name, encoder.encode(value)]);
  const wanted = { method: String(method).toUpperCase(), url: String(url), headers: pairs, body: bodyBytes(body) };
  let response;
  try {
    response = send(wanted);
  } catch (err) {
    // The bindings throw the `http-error` itself or an error carrying it as `payload`.
    const failure = err && typeof err.payload === "object" && err.payload !== null ? err.payload : err;
    if (failure && typeof failure.code === "string") throw new HttpError(failure.code, failure.detail);
    throw err;
  }
  const received = response.headers.map(([name, value]) => [name, decoder.decode(Uint8Array.from(value))]);
  return new HttpResponse(response.status, received, Uint8Array.from(response.body), wanted.url);
}

export const http = {
  request,
  /** `GET url`. */
  get(url, headers) {
    return request("GET", url, headers, undefined);
  },
  /** `POST url` with `body`. */
  post(url, body, headers) {
    return request("POST", url, headers, body);
  },
};

export default http;
