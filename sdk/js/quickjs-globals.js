//! What a handler on QuickJS gets that componentize-qjs does not give it and SpiderMonkey (componentize-js) does:
//! `console` (its lines go to the host log, as on SpiderMonkey: `log`/`info`/`debug` on stdout, `warn`/`error`/
//! `trace` on stderr), UTF-8 `TextEncoder` and `TextDecoder`, `crypto.getRandomValues` and `crypto.randomUUID`, and a
//! `Math.random` seeded in every instance. `build.mjs --engine quickjs` runs this module before the handler's and
//! calls [`instanceStarts`] before every event; each global is defined only when the engine lacks it.
//!
//! Why `Math.random` is replaced: componentize-qjs runs the module at build time and snapshots the heap, QuickJS's
//! generator state included, so every instance drew the same numbers. Here it is a xoshiro128** generator seeded from
//! `wasi:random` at the first event of each instance (and, for a handler that draws at build time, then too).
//!
//! Not provided on QuickJS (a handler that needs them builds with `--engine spidermonkey`): `URL`, `URLSearchParams`,
//! `structuredClone`, `crypto.subtle`, and `TextDecoder`'s `stream` option and encodings other than UTF-8.
//! `setTimeout` and `setInterval` come from `timeouts.js` and `fetch` from `fetch.js` (`http` from `http.js`), on both engines.

import { getStderr } from "wasi:cli/stderr@0.2.12";
import { getStdout } from "wasi:cli/stdout@0.2.12";
import { getRandomBytes } from "wasi:random/random@0.2.12";

/** The most bytes one `crypto.getRandomValues` call fills (the Web Crypto limit). */
const MAX_RANDOM_VALUES = 65536;

/** `n` bytes from the host's secure random source. */
function randomBytes(n) {
  return Uint8Array.from(getRandomBytes(n));
}

/** The generator's state (four 32-bit words), none until seeded. */
let state = null;
/** Whether this instance has seeded the generator at runtime (false in the build-time snapshot). */
let started = false;

function seed() {
  state = new Uint32Array(randomBytes(16).buffer);
  if (state.every((word) => word === 0)) state[0] = 1;
}

const rotl = (x, k) => (x << k) | (x >>> (32 - k));

/** The next 32 bits of xoshiro128** (Blackman and Vigna). */
function next32() {
  const result = Math.imul(rotl(Math.imul(state[1], 5), 7), 9) >>> 0;
  const t = state[1] << 9;
  state[2] ^= state[0];
  state[3] ^= state[1];
  state[1] ^= state[2];
  state[0] ^= state[3];
  state[2] ^= t;
  state[3] = rotl(state[3], 11);
  return result;
}

Math.random = function random() {
  if (state === null) seed();
  // 53 random bits, as a double in [0, 1).
  return ((next32() >>> 5) * 67108864 + (next32() >>> 6)) / 9007199254740992;
};

/** Called by the build's entry before every event: seeds `Math.random` once per instance, at runtime. */
export function instanceStarts() {
  if (!started) {
    started = true;
    seed();
  }
}

if (globalThis.crypto === undefined) {
  globalThis.crypto = {
    /** Fills an integer typed array with secure random values and returns it. */
    getRandomValues(array) {
      const integer = array instanceof Int8Array || array instanceof Uint8Array || array instanceof Uint8ClampedArray ||
        array instanceof Int16Array || array instanceof Uint16Array || array instanceof Int32Array ||
        array instanceof Uint32Array || array instanceof BigInt64Array || array instanceof BigUint64Array;
      if (!integer) throw new TypeError("crypto.getRandomValues takes an integer typed array");
      if (array.byteLength > MAX_RANDOM_VALUES) {
        throw new RangeError(`crypto.getRandomValues fills at most ${MAX_RANDOM_VALUES} bytes at once`);
      }
      new Uint8Array(array.buffer, array.byteOffset, array.byteLength).set(randomBytes(array.byteLength));
      return array;
    },
    /** A random (version 4) UUID. */
    randomUUID() {
      const b = randomBytes(16);
      b[6] = (b[6] & 0x0f) | 0x40;
      b[8] = (b[8] & 0x3f) | 0x80;
      const hex = Array.from(b, (byte) => byte.toString(16).padStart(2, "0")).join("");
      return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
    },
  };
}

/** The most one `blocking-write-and-flush` call takes (WASI 0.2 guarantees 4096 bytes). */
const WRITE_CHUNK = 4096;

/** Encodes `text` as UTF-8; a lone surrogate becomes U+FFFD, as the WHATWG encoder does. */
function encodeUtf8(text) {
  const out = [];
  for (let i = 0; i < text.length; i++) {
    let code = text.charCodeAt(i);
    if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        code = 0x10000 + ((code - 0xd800) << 10) + (next - 0xdc00);
        i++;
      }
    }
    if (code >= 0xd800 && code <= 0xdfff) code = 0xfffd;
    if (code < 0x80) out.push(code);
    else if (code < 0x800) out.push(0xc0 | (code >> 6), 0x80 | (code & 0x3f));
    else if (code < 0x10000) out.push(0xe0 | (code >> 12), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    else {
      out.push(0xf0 | (code >> 18), 0x80 | ((code >> 12) & 0x3f), 0x80 | ((code >> 6) & 0x3f), 0x80 | (code & 0x3f));
    }
  }
  return Uint8Array.from(out);
}

/**
 * Decodes UTF-8 `bytes`. A malformed sequence becomes one U+FFFD per maximal bad subpart (the WHATWG decoder's rule),
 * or a `TypeError` when `fatal`.
 */
function decodeUtf8(bytes, fatal) {
  let text = "";
  let i = 0;
  const bad = () => {
    if (fatal) throw new TypeError("The encoded data was not valid UTF-8");
    text += "\ufffd";
  };
  while (i < bytes.length) {
    const first = bytes[i];
    if (first < 0x80) {
      text += String.fromCharCode(first);
      i++;
      continue;
    }
    // The length of the sequence and the range its second byte must fall in (no overlongs, no surrogates).
    let need;
    let low = 0x80;
    let high = 0xbf;
    if (first >= 0xc2 && first <= 0xdf) need = 1;
    else if (first >= 0xe0 && first <= 0xef) {
      need = 2;
      if (first === 0xe0) low = 0xa0;
      if (first === 0xed) high = 0x9f;
    } else if (first >= 0xf0 && first <= 0xf4) {
      need = 3;
      if (first === 0xf0) low = 0x90;
      if (first === 0xf4) high = 0x8f;
    } else {
      bad();
      i++;
      continue;
    }
    let code = first & (0x3f >> need);
    let j = 1;
    for (; j <= need; j++) {
      const byte = bytes[i + j];
      if (byte === undefined || byte < low || byte > high) break;
      code = (code << 6) | (byte & 0x3f);
      low = 0x80;
      high = 0xbf;
    }
    if (j <= need) {
      bad();
      i += j;
      continue;
    }
    text += String.fromCodePoint(code);
    i += need + 1;
  }
  return text;
}

/** `bytes` as a `Uint8Array` over the same memory: an `ArrayBuffer`, a typed array or a `DataView`. */
function view(bytes) {
  if (bytes === undefined) return new Uint8Array(0);
  if (bytes instanceof Uint8Array) return bytes;
  if (bytes instanceof ArrayBuffer) return new Uint8Array(bytes);
  if (ArrayBuffer.isView(bytes)) return new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  throw new TypeError("TextDecoder.decode takes an ArrayBuffer or a view of one");
}

if (typeof globalThis.TextEncoder === "undefined") {
  globalThis.TextEncoder = class TextEncoder {
    get encoding() {
      return "utf-8";
    }

    encode(input = "") {
      return encodeUtf8(String(input));
    }
  };
}

if (typeof globalThis.TextDecoder === "undefined") {
  globalThis.TextDecoder = class TextDecoder {
    constructor(label = "utf-8", options = {}) {
      const name = String(label).trim().toLowerCase();
      if (name !== "utf-8" && name !== "utf8" && name !== "unicode-1-1-utf-8") {
        throw new RangeError(`TextDecoder: only UTF-8 is available on QuickJS, not ${JSON.stringify(label)}`);
      }
      this.fatal = Boolean(options.fatal);
      this.ignoreBOM = Boolean(options.ignoreBOM);
    }

    get encoding() {
      return "utf-8";
    }

    decode(input, options = {}) {
      if (options.stream) {
        throw new TypeError("TextDecoder: the stream option is not available on QuickJS");
      }
      let bytes = view(input);
      if (!this.ignoreBOM && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) bytes = bytes.subarray(3);
      return decodeUtf8(bytes, this.fatal);
    }
  };
}

/** One argument of a console call as text: strings as they are, errors with their stack, the rest as JSON. */
function show(value) {
  if (typeof value === "string") return value;
  if (value instanceof Error) return value.stack ? `${value.name}: ${value.message}\n${value.stack}` : String(value);
  if (typeof value === "object" && value !== null) {
    try {
      return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? `${v}n` : v));
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/** Writes one console line to a WASI stream, in chunks the stream takes. */
function writeLine(stream, args) {
  const bytes = encodeUtf8(`${args.map(show).join(" ")}\n`);
  for (let offset = 0; offset < bytes.length; offset += WRITE_CHUNK) {
    stream.blockingWriteAndFlush(bytes.subarray(offset, offset + WRITE_CHUNK));
  }
}

if (typeof globalThis.console === "undefined") {
  // Asked for at the first line, not here: this module runs while the component is built (snapshotted), when no
  // stream exists yet. Each instance then keeps the two it got.
  let stdout;
  let stderr;
  const out = (...args) => writeLine((stdout ??= getStdout()), args);
  const err = (...args) => writeLine((stderr ??= getStderr()), args);
  globalThis.console = {
    log: out,
    info: out,
    debug: out,
    warn: err,
    error: err,
    trace: (...args) => err(...args, new Error("console.trace").stack ?? ""),
    assert: (condition, ...args) => {
      if (!condition) err("Assertion failed", ...args);
    },
  };
}
