//! What a handler on QuickJS gets that componentize-qjs does not give it and SpiderMonkey (componentize-js) does:
//! `console` (its lines go to the host log, as on SpiderMonkey: `log`/`info`/`debug` on stdout, `warn`/`error`/
//! `trace` on stderr), and UTF-8 `TextEncoder` and `TextDecoder`. `build.mjs --engine quickjs` runs this module before
//! the handler's; each global is defined only when the engine lacks it.
//!
//! Not provided on QuickJS (a handler that needs them builds with `--engine spidermonkey`): `setTimeout`, `crypto`,
//! `URL`, `URLSearchParams`, `structuredClone`, `fetch`, and `TextDecoder`'s `stream` option and encodings other than
//! UTF-8.

import { getStderr } from "wasi:cli/stderr@0.2.12";
import { getStdout } from "wasi:cli/stdout@0.2.12";

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
