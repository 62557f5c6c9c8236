//! Timers on the current connection and alarms of the project, over the WIT `timers` interface. A handler that arms
//! either asks `timers.getEvent()` first: `websockets.getMethod()` predates them and calls their events
//! `"onmessage"` (with no message).
//!
//!     import { timers, websockets } from "wasmsock";
//!
//!     export function onEvent() {
//!       switch (timers.getEvent()) {
//!         case "onopen": timers.setTimer(1000, "1"); break;
//!         case "ontimer": websockets.send(`tick ${timers.getTimer().payloadText}`); break;
//!         case "onalarm": websockets.publish("room", `alarm ${timers.getAlarm().name}`); break;
//!       }
//!     }

import * as wit from "wasmsock:websockets/timers@0.1.4";

import { bytes, witCall } from "./wit-values.js";

/** Whether the engine's bindings take and give 64-bit integers as `bigint` (SpiderMonkey) rather than `number`. */
const BIGINT_64 = typeof WASMSOCK_ENGINE !== "undefined" && WASMSOCK_ENGINE === "spidermonkey";

const decoder = new TextDecoder();

/** A timer or an alarm that could not be set: `kind` is `closed`, `invalid`, `limit` or `unavailable`. */
export class TimerError extends Error {
  constructor(kind, detail = "") {
    super(detail ? `${kind}: ${detail}` : kind);
    this.name = "TimerError";
    this.kind = kind;
    this.detail = detail;
  }
}

function call(fn) {
  return witCall(fn, (payload) => {
    const detail = payload.val === undefined || payload.val === null ? "" : String(payload.val);
    return new TimerError(payload.tag, detail);
  });
}

/** A payload: a string (as UTF-8) or bytes. */
function payloadBytes(payload, what) {
  if (payload === undefined || payload === null) return new Uint8Array(0);
  return typeof payload === "string" ? new TextEncoder().encode(payload) : bytes(payload, what);
}

/** A whole number of milliseconds from `min` up, as the engine's bindings take a 64-bit one when `wide`. */
function millis(name, value, wide) {
  const n = typeof value === "bigint" ? Number(value) : value;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw new TimerError("invalid", `${name} must be a whole number of milliseconds from 1, not ${value}`);
  }
  return wide && BIGINT_64 ? BigInt(n) : n;
}

export const timers = {
  /** The kind of the event: `"onopen"`, `"onmessage"`, `"onerror"`, `"onclose"`, `"ontimer"` or `"onalarm"`. */
  getEvent() {
    return wit.getEvent();
  },

  /**
   * How long the instance running the event lives: `"per-event"` (nothing in it reaches a later event),
   * `"per-connection"` (this connection's later events) or `"shared"` (every connection's).
   */
  getLifecycle() {
    return wit.getLifecycle();
  },

  /** Whether the event is a timer of the current connection firing. */
  isOnTimer() {
    return wit.getEvent() === "ontimer";
  },

  /** Whether the event is an alarm of the project firing (there is no current connection). */
  isOnAlarm() {
    return wit.getEvent() === "onalarm";
  },

  /**
   * Arms a timer on the current connection: an `ontimer` event carrying `payload` (a string or bytes, at most 4 KiB)
   * after `delayMs` (1 ms to a day), in order with its other events and never after its close. Fires once. Returns
   * its id (a number).
   */
  setTimer(delayMs, payload) {
    const data = payloadBytes(payload, "setTimer");
    return Number(call(() => wit.setTimer(millis("delayMs", delayMs, false), data)));
  },

  /** Cancels timer `id` of the current connection; whether it was still armed. */
  cancelTimer(id) {
    const n = typeof id === "bigint" ? Number(id) : id;
    if (!Number.isSafeInteger(n) || n < 0) return false;
    return wit.cancelTimer(BIGINT_64 ? BigInt(n) : n);
  },

  /** The timer of an `ontimer` event: `{id, payload, payloadText}`; `undefined` for other events. */
  getTimer() {
    const fired = wit.getTimer();
    if (fired === undefined || fired === null) return undefined;
    const payload = Uint8Array.from(fired.payload);
    return { id: Number(fired.id), payload, payloadText: decoder.decode(payload) };
  },

  /**
   * Sets the project's alarm `name`: an `onalarm` event of this handler carrying `payload` after `delayMs` (1 ms to
   * 366 days), kept in the project's store across restarts and deploys, fired once on one host. Setting a name again
   * replaces its alarm.
   */
  setAlarm(name, delayMs, payload) {
    const data = payloadBytes(payload, "setAlarm");
    call(() => wit.setAlarm(String(name), millis("delayMs", delayMs, true), data));
  },

  /** Cancels the project's alarm `name`; whether it was set. */
  cancelAlarm(name) {
    return call(() => wit.cancelAlarm(String(name)));
  },

  /** The project's alarms, soonest first: `[{name, handler, dueInMs, payload}]`. */
  listAlarms() {
    return call(() => wit.listAlarms()).map((alarm) => ({
      name: alarm.name,
      handler: alarm.handler,
      dueInMs: Number(alarm.dueInMs),
      payload: Uint8Array.from(alarm.payload),
    }));
  },

  /** The alarm of an `onalarm` event: `{name, payload, payloadText}`; `undefined` for other events. */
  getAlarm() {
    const fired = wit.getAlarm();
    if (fired === undefined || fired === null) return undefined;
    const payload = Uint8Array.from(fired.payload);
    return { name: fired.name, payload, payloadText: decoder.decode(payload) };
  },
};

export default timers;
