//! The JavaScript SDK for wasmsock handlers: the Dirigible-style `websockets` object and the `WebsocketClient` class
//! over the `wasmsock:websockets` WIT imports, with WIT errors turned into thrown `WebsocketError`s; and the project's
//! key-value store (`kv`, from `kv.js`) and configuration (`variables`, from `variables.js`).
//!
//! A handler is an ES module that imports this one and exports `onEvent()`; `build.mjs` bundles the two and turns
//! them into a component (QuickJS or SpiderMonkey). It imports it as `"wasmsock"` or, as a Dirigible handler does, as
//! `"sdk/net"`:
//!
//!     import { websockets } from "wasmsock"; // or: from "sdk/net"
//!
//!     export function onEvent() {
//!       if (websockets.isOnMessage()) {
//!         websockets.send(websockets.getMessage());
//!       }
//!     }

import * as wit from "wasmsock:websockets/websockets@0.1.4";

import { bytes } from "./wit-values.js";
import * as kv from "./kv.js";
import * as variables from "./variables.js";
import { TimerError, timers } from "./timers.js";

export { KvError } from "./kv.js";
export { HttpError, http } from "./http.js";
export { kv, timers, TimerError, variables };

/**
 * Why a call on a connection did not happen: the WIT `error` variant as an exception.
 *
 * `kind` is `"unknown-client"`, `"closed"`, `"invalid"` or `"limit"`; `detail` is the host's text (the client id for
 * `"unknown-client"`, empty for `"closed"`).
 */
export class WebsocketError extends Error {
  /**
   * @param {"unknown-client" | "closed" | "invalid" | "limit"} kind
   * @param {string} [detail]
   */
  constructor(kind, detail = "") {
    super(detail ? `${kind}: ${detail}` : kind);
    this.name = "WebsocketError";
    this.kind = kind;
    this.detail = detail;
  }
}

/** Runs a WIT call whose result may be an error, throwing the error as a `WebsocketError`. */
function call(fn) {
  try {
    return fn();
  } catch (err) {
    throw asWebsocketError(err);
  }
}

/** `err` thrown by a WIT call: the host's `error` as a `WebsocketError`, anything else as it is. */
function asWebsocketError(err) {
  const payload = err && err.payload;
  return payload && typeof payload.tag === "string" ? new WebsocketError(payload.tag, payload.val ?? "") : err;
}

/**
 * An absent WIT `option` as `undefined`: componentize-js gives `undefined`, componentize-qjs `null`, and a handler
 * must see the same on both engines.
 */
function some(value) {
  return value === null ? undefined : value;
}

/** A `client-info` record with its absent `endpoint` and `protocol` as `undefined`. */
function infoRecord(info) {
  info.endpoint = some(info.endpoint);
  info.protocol = some(info.protocol);
  return info;
}

/** Whether `data` is binary: a `Uint8Array` or another typed-array view, or an `ArrayBuffer`. */
function isBinary(data) {
  return data instanceof ArrayBuffer || ArrayBuffer.isView(data);
}

/** An attachment as bytes: a string as its UTF-8 bytes, binary data as it is, `null`/`undefined` as none. */
function attachmentBytes(data) {
  if (data === undefined || data === null) return undefined;
  if (typeof data === "string") return new TextEncoder().encode(data);
  return bytes(data, "setAttachment");
}

/** An attachment's bytes as text (UTF-8; a malformed sequence becomes U+FFFD); `undefined` stays `undefined`. */
function attachmentText(data) {
  return data === undefined ? undefined : new TextDecoder().decode(data);
}

/**
 * A live connection: an inbound session on an endpoint, or an outbound client (Dirigible's `WebsocketClient`).
 * Every call asks the host, so `getState()` is the state now, not when the object was made.
 */
export class WebsocketClient {
  /** @param {object} resource the WIT `websocket-client` handle. */
  constructor(resource) {
    this.resource = resource;
  }

  /** What the host knows about this connection now: `{id, uri, handler, endpoint, direction, state, protocol}`. */
  info() {
    return infoRecord(this.resource.info());
  }

  /** The host-wide unique id of the connection. */
  getId() {
    return this.info().id;
  }

  /** The request path and query of an inbound session, or the URI of an outbound client. */
  getUri() {
    return this.info().uri;
  }

  /** The handler that receives this connection's events, `project/name`. */
  getHandler() {
    return this.info().handler;
  }

  /** The endpoint of an inbound session; `undefined` for an outbound client. */
  getEndpoint() {
    return this.info().endpoint;
  }

  /** `"inbound"` or `"outbound"`. */
  getDirection() {
    return this.info().direction;
  }

  /** `"connecting"`, `"open"`, `"closing"` or `"closed"`. */
  getState() {
    return this.info().state;
  }

  /** Queues a text message; never blocks. Throws a `WebsocketError` if the host refuses it. */
  send(message) {
    try {
      this.resource.send(typeof message === "string" ? message : String(message));
    } catch (err) {
      throw asWebsocketError(err);
    }
  }

  /** Queues a binary message; never blocks. Throws a `WebsocketError` if the host refuses it. */
  sendBinary(data) {
    call(() => this.resource.sendBinary(bytes(data)));
  }

  /** Starts the closing handshake with a code (1000 when absent) and a reason (at most 123 bytes). */
  close(code, reason) {
    call(() => this.resource.close(code ?? undefined, reason ?? undefined));
  }

  /**
   * Adds this connection to `channel` of the handler's project; joining a channel it is in already does nothing.
   * Throws a `WebsocketError`: `invalid` for a malformed name, `limit` past the channels-per-connection cap, `closed`.
   */
  join(channel) {
    call(() => this.resource.join(String(channel)));
  }

  /** Removes this connection from `channel`; `true` if it was a member. Throws a `WebsocketError` if refused. */
  leave(channel) {
    return call(() => this.resource.leave(String(channel)));
  }

  /** The channels this connection is in, in the order it joined them. */
  getChannels() {
    return this.resource.channels();
  }

  /** This connection's attachment (`Uint8Array`), or `undefined`. */
  getAttachment() {
    return some(this.resource.attachment());
  }

  /** This connection's attachment decoded as UTF-8 text, or `undefined`. */
  getAttachmentText() {
    return attachmentText(some(this.resource.attachment()));
  }
}

/**
 * Checks a WIT `u32` argument: the bindings would turn `NaN`, fractions or negatives into some other number silently.
 */
function u32(name, value) {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) {
    throw new WebsocketError("invalid", `${name} must be an integer from 0 to 4294967295, not ${String(value)}`);
  }
  return value;
}

/** Whether the engine's bindings take and give 64-bit integers as `bigint` (SpiderMonkey) rather than `number`. */
const BIGINT_64 = typeof WASMSOCK_ENGINE !== "undefined" && WASMSOCK_ENGINE === "spidermonkey";

/** A WIT 64-bit number as a `number`. */
function num(value) {
  return typeof value === "bigint" ? Number(value) : value;
}

/** The WIT `stream-position` of `{since, epoch}` (both needed), or `undefined` when `since` is not given. */
function position(options) {
  const since = options?.since;
  if (since === undefined || since === null) return undefined;
  const n = typeof since === "bigint" ? Number(since) : since;
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new WebsocketError("invalid", `since must be an offset (an integer from 0), not ${String(since)}`);
  }
  return { offset: BIGINT_64 ? BigInt(n) : n, epoch: String(options?.epoch ?? "") };
}

/** Wraps an optional WIT handle. */
function client(resource) {
  return resource === undefined || resource === null ? undefined : new WebsocketClient(resource);
}

/** A `members-page` record with its members' absent fields, and its absent `next`, as `undefined`. */
function membersPage(page) {
  page.members = page.members.map(infoRecord);
  page.next = some(page.next);
  return page;
}

/** Checks Dirigible's optional third argument of `createWebsocket`: only absent or `"wasm"` is accepted. */
function checkEngine(engine) {
  if (engine !== undefined && engine !== null && engine !== "wasm") {
    throw new WebsocketError("invalid", `engine ${JSON.stringify(engine)} is not supported; leave it out or use "wasm"`);
  }
}

/** The websockets API, named after Dirigible's `sdk/net` websockets module. */
export const websockets = {
  /** The kind of the event being handled: `"onopen"`, `"onmessage"`, `"onerror"` or `"onclose"`. */
  getMethod() {
    return wit.getMethod();
  },

  /** The text of the message being handled; `undefined` for binary messages and other events. */
  getMessage() {
    return some(wit.getMessage());
  },

  /** The bytes of the binary message being handled (`Uint8Array`); `undefined` for text messages and other events. */
  getBinaryMessage() {
    return some(wit.getBinaryMessage());
  },

  /** What went wrong, in an onerror event; `undefined` otherwise. */
  getError() {
    return some(wit.getError());
  },

  /** Whether the event is onopen. */
  isOnOpen() {
    return wit.getMethod() === "onopen";
  },

  /** Whether the event is onmessage. */
  isOnMessage() {
    return wit.getMethod() === "onmessage";
  },

  /** Whether the event is onerror. */
  isOnError() {
    return wit.getMethod() === "onerror";
  },

  /** Whether the event is onclose. */
  isOnClose() {
    return wit.getMethod() === "onclose";
  },

  /** The connection the event belongs to. */
  currentClient() {
    return new WebsocketClient(wit.currentClient());
  },

  /** Queues a text message on the current connection; never blocks. */
  send(message) {
    // Without `call`: the message path's calls make no closure (in QuickJS each one costs a measurable part of an
    // echo's event).
    try {
      wit.send(typeof message === "string" ? message : String(message));
    } catch (err) {
      throw asWebsocketError(err);
    }
  },

  /** Queues a binary message on the current connection; never blocks. */
  sendBinary(data) {
    const payload = bytes(data);
    try {
      wit.currentClient().sendBinary(payload);
    } catch (err) {
      throw asWebsocketError(err);
    }
  },

  /** Closes the current connection with a code (1000 when absent) and a reason. */
  close(code, reason) {
    call(() => wit.close(code ?? undefined, reason ?? undefined));
  },

  /**
   * Opens an outbound client to `uri` whose events go to `handler` (`project/name`); returns at once with the client
   * connecting (sends are queued until it opens). `engine`, Dirigible's optional third argument, must be absent or
   * `"wasm"`.
   */
  createWebsocket(uri, handler, engine) {
    checkEngine(engine);
    return new WebsocketClient(call(() => wit.createWebsocket(String(uri), String(handler))));
  },

  /**
   * `createWebsocket` with options: `{reconnect: {initialDelayMs, maxDelayMs, maxAttempts}}` reconnects with a doubling
   * delay; leave `maxAttempts` out to never give up.
   */
  createWebsocketWith(uri, handler, options = {}) {
    const policy = options.reconnect;
    const reconnect =
      policy === undefined || policy === null
        ? undefined
        : {
            initialDelayMs: u32("initialDelayMs", policy.initialDelayMs ?? 1000),
            maxDelayMs: u32("maxDelayMs", policy.maxDelayMs ?? 30000),
            maxAttempts: policy.maxAttempts == null ? undefined : u32("maxAttempts", policy.maxAttempts),
          };
    return new WebsocketClient(call(() => wit.createWebsocketWith(String(uri), String(handler), { reconnect })));
  },

  /** Every live connection, inbound sessions and outbound clients, as `info()` records. */
  getClients() {
    return wit.getClients().map(infoRecord);
  },

  /**
   * `getClients()` with the hosts of the cluster that did not answer in time: `{clients, missingHosts}`
   * (`missingHosts` is empty when the list is whole, and always on a host that runs alone).
   */
  surveyClients() {
    const survey = wit.surveyClients();
    survey.clients = survey.clients.map(infoRecord);
    return survey;
  },

  /** The live connection with this id, or `undefined`. */
  getClient(id) {
    return client(wit.getClient(String(id)));
  },

  /** The oldest live outbound client whose events go to `handler`, or `undefined`. */
  getClientByHandler(handler) {
    return client(wit.getClientByHandler(String(handler)));
  },

  /**
   * Adds the current connection to `channel` of the handler's project (a name is 1 to 255 bytes with no whitespace
   * or control characters); joining a channel it is in already does nothing. Throws a `WebsocketError`: `invalid`
   * for a malformed name, `limit` past the channels-per-connection cap, `closed` once the connection has ended.
   */
  join(channel) {
    call(() => wit.join(String(channel)));
  },

  /** Removes the current connection from `channel`; `true` if it was a member. */
  leave(channel) {
    return call(() => wit.leave(String(channel)));
  },

  /** The channels the current connection is in, in the order it joined them. */
  getChannels() {
    return wit.getChannels();
  },

  /**
   * Queues `message` on every member of `channel`: a string as text, binary data (`Uint8Array`, `ArrayBuffer`, a
   * typed array) as binary, anything else as its string. `{skipSelf: true}` leaves the current connection out.
   * Returns how many connections it was queued for (0 for a channel nobody is in).
   */
  publish(channel, message, options = {}) {
    const publishOptions = { skipSelf: Boolean(options?.skipSelf) };
    if (isBinary(message)) {
      const payload = bytes(message, "publish");
      return call(() => wit.publishBinary(String(channel), payload, publishOptions));
    }
    return call(() => wit.publish(String(channel), String(message), publishOptions));
  },

  /** `publish` of binary data, which may also be an array of bytes. */
  publishBinary(channel, data, options = {}) {
    const payload = bytes(data, "publishBinary");
    return call(() => wit.publishBinary(String(channel), payload, { skipSelf: Boolean(options?.skipSelf) }));
  },

  /**
   * `publish`, answering where the message sits in the channel's history: `{queued, position}`, with `position`
   * `{offset, epoch}` (offset a `number`), or `undefined` when the project keeps no history.
   */
  publishWith(channel, message, options = {}) {
    const publishOptions = { skipSelf: Boolean(options?.skipSelf) };
    const published = isBinary(message)
      ? call(() => wit.publishBinaryWith(String(channel), bytes(message, "publishWith"), publishOptions))
      : call(() => wit.publishWith(String(channel), String(message), publishOptions));
    const position = some(published.position);
    return { queued: published.queued, position: position && { offset: num(position.offset), epoch: position.epoch } };
  },

  /**
   * One page of `channel`'s history, oldest first: `{publications, epoch, top, complete, next}`, where each
   * publication is `{offset, timeMs, text}` or `{offset, timeMs, data}` (a `Uint8Array`). `{since, epoch}` starts
   * after that position (`complete` says whether nothing after it is missing); `limit` is 1 to 1000 (default 100).
   */
  getHistory(channel, options = {}) {
    const limit = u32("limit", options?.limit ?? 100);
    const page = call(() => wit.getHistory(String(channel), position(options), limit));
    return {
      publications: page.publications.map((p) => {
        const entry = { offset: num(p.offset), timeMs: num(p.timeMs) };
        if (p.data.tag === "text") entry.text = p.data.val;
        else entry.data = p.data.val;
        return entry;
      }),
      epoch: page.epoch,
      top: num(page.top),
      complete: page.complete,
      next: some(page.next) === undefined ? undefined : num(page.next),
    };
  },

  /**
   * Joins the current connection to `channel` from the position `{since, epoch}`: every publication the history keeps
   * after it is sent first, then the live ones, none missed and none twice. `{envelope: true}` has the host write each
   * as `{"offset":N,"epoch":"E","data":"TEXT"}`. Returns `{recovered, sent, epoch, top, history}`: `recovered` is
   * false when the history could not cover the position (then what it keeps was sent).
   */
  joinFrom(channel, options = {}) {
    const joinOptions = { envelope: Boolean(options?.envelope) };
    const recovery = call(() => wit.joinFrom(String(channel), position(options), joinOptions));
    const { recovered, sent, epoch, history } = recovery;
    return { recovered, sent, epoch, top: num(recovery.top), history };
  },

  /**
   * One page of `channel`'s members, oldest first: `{members, next}`, where `members` are `info()` records and `next`
   * (`undefined` on the last page) is the `after` of the next page. `limit` is 1 to 1000 (default 100).
   */
  getMembers(channel, options = {}) {
    const after = options?.after ?? undefined;
    const limit = u32("limit", options?.limit ?? 100);
    return membersPage(call(() => wit.getMembers(String(channel), after === undefined ? undefined : String(after), limit)));
  },

  /**
   * `getMembers` with the hosts of the cluster that did not answer in time: `{page, missingHosts}` (`missingHosts`
   * is empty when the page is whole).
   */
  surveyMembers(channel, options = {}) {
    const after = options?.after ?? undefined;
    const limit = u32("limit", options?.limit ?? 100);
    const survey = call(() => wit.surveyMembers(String(channel), after === undefined ? undefined : String(after), limit));
    survey.page = membersPage(survey.page);
    return survey;
  },

  /**
   * Keeps a small value (at most 4 KiB unless the host says otherwise) with the current connection, readable on
   * any later event of it: a string as its UTF-8 bytes, binary data as it is; `null` or `undefined` removes it.
   */
  setAttachment(data) {
    const payload = attachmentBytes(data);
    call(() => wit.setAttachment(payload));
  },

  /** The current connection's attachment (`Uint8Array`), or `undefined`. */
  getAttachment() {
    return some(wit.getAttachment());
  },

  /** The current connection's attachment decoded as UTF-8 text, or `undefined`. */
  getAttachmentText() {
    return attachmentText(some(wit.getAttachment()));
  },
};

export default websockets;
