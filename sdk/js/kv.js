//! The key-value store of a handler's project, named as Spin's `@spinframework/spin-kv` (`openDefault()`, `get`,
//! `set`, `delete`, `exists`, `getKeys`, `getJson`, `setJson`), over `wasi:keyvalue` (store, atomics), plus
//! wasmsock's `kv` extras (entries with revisions, conditional writes, time to live, listing by prefix, usage).
//!
//!     import { kv } from "wasmsock";
//!
//!     const store = kv.openDefault();
//!     store.set("greeting", "hello");
//!     const visits = store.increment("visits", 1);
//!
//! Both engines give the same values: a value is a `Uint8Array` (SpiderMonkey's bindings give an array of numbers),
//! an absent value is `null` (QuickJS's bindings give `null`, SpiderMonkey's `undefined`), and a 64-bit number
//! (counter, revision, size) is a plain `number` (a `bigint` from the bindings is turned into one), exact up to
//! `Number.MAX_SAFE_INTEGER`.

import * as atomics from "wasi:keyvalue/atomics@0.2.0-draft2";
import * as wasi from "wasi:keyvalue/store@0.2.0-draft2";
import * as wit from "wasmsock:websockets/kv@0.1.4";

import { bytes, witCall } from "./wit-values.js";

/** The only store a handler opens: its project's. */
const DEFAULT_STORE = "default";

/** How many keys `list` returns without a `limit`. */
const DEFAULT_LIST_LIMIT = 100;

/**
 * Why a store call did not happen. `kind` is `"no-such-store"`, `"access-denied"`, `"invalid"`, `"limit"`,
 * `"conflict"`, `"unavailable"`, `"json"` or `"other"`; `detail` is the host's text; for a conflict, `revision` is
 * the key's current revision (`null`: the key is absent). The message is `kind: detail`, as in the Rust and Python
 * SDKs.
 */
export class KvError extends Error {
  /**
   * @param {string} kind
   * @param {string} [detail]
   * @param {number | null} [revision]
   */
  constructor(kind, detail = "", revision = null) {
    super(detail ? `${kind}: ${detail}` : kind);
    this.name = "KvError";
    this.kind = kind;
    this.detail = detail;
    this.revision = revision;
  }
}

/** The kinds the host writes at the start of a `wasi:keyvalue` `other` text. */
const TEXT_KINDS = ["invalid", "limit", "unavailable"];

/** A WIT error variant of either interface (`{tag, val}`) as a `KvError`. */
function kvError(payload) {
  switch (payload.tag) {
    case "other": {
      const text = String(payload.val ?? "");
      const kind = TEXT_KINDS.find((name) => text.startsWith(`${name}: `));
      return kind === undefined ? new KvError("other", text) : new KvError(kind, text.slice(kind.length + 2));
    }
    case "conflict": {
      const revision = payload.val === undefined || payload.val === null ? null : Number(payload.val);
      return new KvError("conflict", `the key's revision is ${revision ?? "none (absent)"}`, revision);
    }
    case "store-error":
      return kvError(payload.val);
    default:
      return new KvError(payload.tag, payload.val === undefined || payload.val === null ? "" : String(payload.val));
  }
}

/** Runs a WIT call whose result may be an error, throwing the error as a `KvError`. */
function call(fn) {
  return witCall(fn, kvError);
}

/** An absent WIT `option` as `null`, on both engines. */
function orNull(value) {
  return value === undefined ? null : value;
}

/**
 * A WIT `option<list<u8>>` as a `Uint8Array` or `null`: SpiderMonkey's bindings give a value inside a `result` as a
 * plain array of numbers, QuickJS's a `Uint8Array`.
 */
function optionalBytes(value) {
  if (value === undefined || value === null) return null;
  return value instanceof Uint8Array ? value : bytes(value, "a stored value");
}

/** A WIT 64-bit number (`number` on QuickJS, `bigint` on SpiderMonkey) as a `number`. */
function num(value) {
  return typeof value === "bigint" ? Number(value) : value;
}

/**
 * Whether the engine's bindings take 64-bit integers as `bigint` (SpiderMonkey's: a negative `number` traps there)
 * rather than `number` (QuickJS's). `build.mjs` defines `WASMSOCK_ENGINE`.
 */
const BIGINT_64 = typeof WASMSOCK_ENGINE !== "undefined" && WASMSOCK_ENGINE === "spidermonkey";

/**
 * An integer argument for a WIT 64-bit parameter: a safe integer `number` or a `bigint`, passed as the engine's
 * bindings take it; `name` is the argument's, for the error.
 */
function int(name, value, min = Number.MIN_SAFE_INTEGER) {
  const n = typeof value === "bigint" ? Number(value) : value;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new KvError("invalid", `${name} must be an integer from ${min} to ${Number.MAX_SAFE_INTEGER}, not ${value}`);
  }
  return BIGINT_64 ? BigInt(n) : n;
}

/** How many times an increment by a negative delta on SpiderMonkey reads and writes again after a conflict. */
const NEGATIVE_INCREMENT_RETRIES = 32;

/** A counter's value: the decimal text of a signed integer (what increments write), as the host reads it. */
function counter(value) {
  const text = new TextDecoder().decode(value).trim();
  if (!/^[+-]?\d+$/.test(text)) {
    throw new KvError("invalid", "the key's value is not a decimal number, so it cannot be incremented");
  }
  return Number(text);
}

/**
 * An increment by a negative `delta` on SpiderMonkey, whose bindings trap on any negative `s64` argument
 * (ComponentizeJS issue 343): read the entry, write the sum only at the revision read, again on a conflict. A key it
 * creates gets `ttlSeconds` to live; an existing key keeps its time to live (rounded up to whole seconds).
 */
function incrementByPut(key, delta, ttlSeconds) {
  for (let attempt = 0; attempt < NEGATIVE_INCREMENT_RETRIES; attempt++) {
    const entry = orNull(call(() => wit.getEntry(key)));
    const sum = (entry === null ? 0 : counter(optionalBytes(entry.value))) + delta;
    const expires = entry === null ? null : orNull(entry.expiresInMs);
    const kept = expires === null ? undefined : Math.max(1, Math.ceil(num(expires) / 1000));
    const options = {
      condition: entry === null ? { tag: "absent" } : { tag: "revision", val: BigInt(entry.revision) },
      ttlSeconds: entry === null ? ttlSeconds : kept,
    };
    try {
      call(() => wit.put(key, new TextEncoder().encode(String(sum)), options));
      return sum;
    } catch (err) {
      if (!(err instanceof KvError && err.kind === "conflict")) throw err;
    }
  }
  const tries = NEGATIVE_INCREMENT_RETRIES;
  throw new KvError("unavailable", `the key changed ${tries} times while it was being incremented`);
}

/** Whether an increment by `delta` must go through `incrementByPut`. */
function negativeOnSpiderMonkey(delta) {
  return BIGINT_64 && delta < 0;
}

/** A time to live in seconds (a WIT `option<u32>`): `undefined` or `null` for none. */
function ttl(seconds) {
  if (seconds === undefined || seconds === null) return undefined;
  if (!Number.isInteger(seconds) || seconds < 0 || seconds > 0xffffffff) {
    throw new KvError("invalid", `ttlSeconds must be an integer from 0 to 4294967295, not ${seconds}`);
  }
  return seconds;
}

/** A value to store: a string as its UTF-8 bytes, binary data as it is, anything else as its JSON (as Spin does). */
function valueBytes(value) {
  if (typeof value === "string") return new TextEncoder().encode(value);
  if (value instanceof ArrayBuffer || ArrayBuffer.isView(value) || Array.isArray(value)) return bytes(value, "set");
  return new TextEncoder().encode(JSON.stringify(value));
}

/** A `put` condition: `"always"` (or absent), `"absent"`, or a revision number. */
function condition(value) {
  if (value === undefined || value === null || value === "always") return { tag: "always" };
  if (value === "absent") return { tag: "absent" };
  return { tag: "revision", val: int("condition", value, 0) };
}

/** Drops a resource handle now where the engine lets us (`Symbol.dispose`), rather than at the end of the call. */
function dispose(resource) {
  if (typeof Symbol.dispose === "symbol" && resource && typeof resource[Symbol.dispose] === "function") {
    resource[Symbol.dispose]();
  }
}

/** The project's bucket, opened once per instance: a handle kept by a `shared` instance stays valid across events. */
let defaultBucket;

/**
 * A key's value as read at one moment (`store.cas(key)`), to be replaced only if the key has not been written since.
 */
export class Cas {
  /** @param {object} handle the WIT `cas` handle. */
  constructor(handle) {
    this.handle = handle;
  }

  /** The value read (`Uint8Array`); `null` when the key was absent. */
  current() {
    return optionalBytes(call(() => this.handle.current()));
  }

  /**
   * Writes `value` if the key has not been written since it was read: `true`; `false` when it has (read it again
   * with `store.cas(key)` and retry). The handle is used up either way.
   */
  swap(value) {
    const data = valueBytes(value);
    try {
      atomics.swap(this.handle, data);
      return true;
    } catch (err) {
      const payload = err && err.payload;
      if (payload && payload.tag === "cas-failed") {
        dispose(payload.val);
        return false;
      }
      if (payload && typeof payload.tag === "string") throw kvError(payload);
      throw err;
    }
  }
}

/**
 * An open key-value store: the handler's project store (Spin's `Store`). Every handler of the project sees the same
 * keys; no other project's handler can reach them.
 */
export class Store {
  /** @param {object} bucket the WIT `bucket` handle. */
  constructor(bucket) {
    this.bucket = bucket;
  }

  /** The value of `key` as a `Uint8Array`; `null` when it is absent (or expired). */
  get(key) {
    return optionalBytes(call(() => this.bucket.get(String(key))));
  }

  /** The value of `key` decoded as UTF-8; `null` when it is absent. */
  getText(key) {
    const value = this.get(key);
    return value === null ? null : new TextDecoder().decode(value);
  }

  /**
   * Sets `key` to `value` (a string as UTF-8, binary data as it is, any other value as its JSON), replacing any value
   * and clearing any time to live.
   */
  set(key, value) {
    const data = valueBytes(value);
    call(() => this.bucket.set(String(key), data));
  }

  /** Deletes `key`; deleting an absent key is not an error. */
  delete(key) {
    call(() => this.bucket.delete(String(key)));
  }

  /** Whether `key` holds a value. */
  exists(key) {
    return call(() => this.bucket.exists(String(key)));
  }

  /** Every key of the store, in byte order, read a page at a time. `list` reads one page of keys with a prefix. */
  getKeys() {
    const keys = [];
    let cursor;
    do {
      const page = call(() => this.bucket.listKeys(cursor));
      keys.push(...page.keys);
      cursor = orNull(page.cursor);
    } while (cursor !== null);
    return keys;
  }

  /** The value of `key` parsed as JSON; `null` when it is absent. A value that is not JSON throws a `json` error. */
  getJson(key) {
    const text = this.getText(key);
    if (text === null) return null;
    try {
      return JSON.parse(text);
    } catch (err) {
      throw new KvError("json", err.message);
    }
  }

  /** Sets `key` to `value`'s JSON. */
  setJson(key, value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new KvError("json", `${typeof value} has no JSON`);
    this.set(key, text);
  }

  /** Adds `delta` (default 1) to the decimal number stored at `key` (0 when absent), atomically; the new value. */
  increment(key, delta = 1) {
    const by = int("delta", delta);
    if (negativeOnSpiderMonkey(by)) return incrementByPut(String(key), Number(by), undefined);
    return num(call(() => atomics.increment(this.bucket, String(key), by)));
  }

  /** Reads `key` now, for a `swap` that writes only if the key has not changed since (`wasi:keyvalue`'s `cas`). */
  cas(key) {
    return new Cas(call(() => atomics.Cas.new(this.bucket, String(key))));
  }

  /**
   * The value of `key` with what the store keeps beside it, `{value, revision, expiresInMs}` (`expiresInMs` `null`
   * without a time to live); `null` when the key is absent or expired.
   */
  getEntry(key) {
    const entry = orNull(call(() => wit.getEntry(String(key))));
    if (entry === null) return null;
    const expires = orNull(entry.expiresInMs);
    return {
      value: optionalBytes(entry.value),
      revision: num(entry.revision),
      expiresInMs: expires === null ? null : num(expires),
    };
  }

  /**
   * Writes `value` at `key` when `condition` holds (`"always"`, the default; `"absent"`; or a revision number), with
   * `ttlSeconds` to live if given; returns the new revision. A condition that does not hold throws a `conflict`
   * error whose `revision` is the key's current one.
   */
  put(key, value, { condition: when, ttlSeconds } = {}) {
    const options = { condition: condition(when), ttlSeconds: ttl(ttlSeconds) };
    const data = valueBytes(value);
    return num(call(() => wit.put(String(key), data, options)));
  }

  /** Deletes `key` only when its revision is `revision`; a `conflict` error otherwise. */
  deleteIf(key, revision) {
    const at = int("revision", revision, 0);
    call(() => wit.deleteIf(String(key), at));
  }

  /** `increment`, giving the key `ttlSeconds` to live when this call creates it (a counter per time window). */
  incrementWithTtl(key, delta, ttlSeconds) {
    const by = int("delta", delta);
    if (negativeOnSpiderMonkey(by)) return incrementByPut(String(key), Number(by), ttl(ttlSeconds));
    return num(call(() => wit.incrementWithTtl(String(key), by, ttl(ttlSeconds))));
  }

  /**
   * One page of the keys starting with `prefix`, in byte order: `{keys, next}`; pass `next` as `after` for the
   * following page (`null` on the last). `limit` is 1 to 1000 (default 100).
   */
  list(prefix = "", { after, limit = DEFAULT_LIST_LIMIT } = {}) {
    if (!Number.isInteger(limit) || limit < 0 || limit > 0xffffffff) {
      throw new KvError("invalid", `limit must be an integer from 1 to 1000, not ${limit}`);
    }
    const from = after === undefined || after === null ? undefined : String(after);
    const page = call(() => wit.listKeys(String(prefix), from, limit));
    return { keys: page.keys, next: orNull(page.next) };
  }

  /** How much of its quotas the project's store uses: `{keys, bytes, maxKeys, maxBytes, maxValueBytes}`. */
  usage() {
    const usage = call(() => wit.getUsage());
    return {
      keys: num(usage.keys),
      bytes: num(usage.bytes),
      maxKeys: num(usage.maxKeys),
      maxBytes: num(usage.maxBytes),
      maxValueBytes: num(usage.maxValueBytes),
    };
  }
}

/** Opens the project's store (Spin's `openDefault()`). */
export function openDefault() {
  defaultBucket ??= call(() => wasi.open(DEFAULT_STORE));
  return new Store(defaultBucket);
}

/** Opens the store named `label`; only `"default"` exists (any other name throws a `no-such-store` error). */
export function open(label) {
  if (label === DEFAULT_STORE) return openDefault();
  return new Store(call(() => wasi.open(String(label))));
}
