//! `setTimeout`, `setInterval`, `clearTimeout` and `clearInterval` on the host's timers, for both engines. A callback
//! lives in the instance, so it can run only where the instance outlives the event: on `per-connection` and `shared`
//! endpoints. There each call arms a timer of the current connection (`timers.setTimer`) whose event runs the callback
//! instead of the handler's `onEvent`, with that connection current (so `websockets.send` answers it), in order with
//! its other events and never after its close. On a `per-event` endpoint, and in an alarm's event (no connection),
//! `setTimeout` throws an error that says so.
//!
//! The build's entry calls [`timeoutFired`] before the handler's `onEvent`: it costs nothing while no callback waits.
//! The host may replace a kept instance (after a trap or a deploy): the callbacks of the old one are lost, and their
//! timers' events reach the handler as `ontimer` events with a payload starting `wasmsock:timeout:`.

import * as wit from "wasmsock:websockets/timers@0.1.4";
import * as ws from "wasmsock:websockets/websockets@0.1.4";

import { TimerError } from "./timers.js";

/** The payload prefix of the timers armed here. */
const PREFIX = "wasmsock:timeout:";
/** The host's longest timer, in milliseconds (a day). */
const MAX_DELAY = 86_400_000;

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** The callbacks waiting, by handle: `{fn, args, interval, delay, connection, timer}`. */
const waiting = new Map();
/** The last handle given out. */
let lastHandle = 0;

/** The delay in whole milliseconds, from 1 (as browsers do, 0 and bad values mean as soon as possible). */
function delayOf(ms) {
  const n = Math.floor(Number(ms));
  if (!Number.isFinite(n) || n < 1) return 1;
  if (n > MAX_DELAY) throw new TimerError("invalid", `setTimeout waits at most ${MAX_DELAY} ms (a day), not ${ms}`);
  return n;
}

/** Arms the host timer for `entry` (handle `handle`) on the current connection. */
function arm(handle, entry) {
  try {
    entry.timer = wit.setTimer(entry.delay, encoder.encode(`${PREFIX}${handle}`));
  } catch (err) {
    const payload = err && err.payload;
    if (payload && typeof payload.tag === "string") {
      const detail = payload.val === undefined || payload.val === null ? "" : String(payload.val);
      throw new TimerError(payload.tag, detail);
    }
    throw err;
  }
}

/** The id of the event's connection. */
function currentId() {
  return ws.currentClient().info().id;
}

function schedule(fn, ms, args, interval) {
  if (typeof fn !== "function") throw new TypeError("setTimeout takes a function (code strings are not evaluated)");
  if (wit.getLifecycle() === "per-event") {
    throw new Error(
      "setTimeout needs an instance that outlives the event, and this endpoint's lifecycle is per-event: set " +
        '"instance": "per-connection" or "shared" in its .websocket descriptor, or arm timers.setTimer and handle ' +
        "its ontimer event",
    );
  }
  if (wit.getEvent() === "onalarm") {
    throw new TimerError("invalid", "setTimeout needs a connection, and an alarm's event has none");
  }
  const handle = ++lastHandle;
  const entry = { fn, args, interval, delay: delayOf(ms), connection: currentId(), timer: undefined };
  arm(handle, entry);
  waiting.set(handle, entry);
  return handle;
}

function clear(handle) {
  const entry = waiting.get(Number(handle));
  if (entry === undefined) return;
  waiting.delete(Number(handle));
  // Only the connection's own events can cancel its timers; elsewhere the timer fires and finds nothing to run.
  if (entry.timer !== undefined && currentId() === entry.connection) wit.cancelTimer(entry.timer);
}

/** Runs `fn(...args)` once after `ms` milliseconds, in an event of the current connection; a handle. */
export function setTimeout(fn, ms = 0, ...args) {
  return schedule(fn, ms, args, false);
}

/** Runs `fn(...args)` every `ms` milliseconds, in events of the current connection, until cleared or it closes. */
export function setInterval(fn, ms = 0, ...args) {
  return schedule(fn, ms, args, true);
}

/** Cancels a `setTimeout`. */
export function clearTimeout(handle) {
  clear(handle);
}

/** Cancels a `setInterval`. */
export function clearInterval(handle) {
  clear(handle);
}

/**
 * Called before every event: when it is the timer of a waiting callback, runs the callback and answers true (the
 * handler's `onEvent` is not called); at a connection's close, forgets its callbacks. Makes no host call while none
 * waits.
 */
export function timeoutFired() {
  if (waiting.size === 0) return false;
  const event = wit.getEvent();
  if (event === "onclose") {
    const id = currentId();
    for (const [handle, entry] of waiting) if (entry.connection === id) waiting.delete(handle);
    return false;
  }
  if (event !== "ontimer") return false;
  const fired = wit.getTimer();
  if (fired === undefined || fired === null) return false;
  const text = decoder.decode(Uint8Array.from(fired.payload));
  if (!text.startsWith(PREFIX)) return false;
  const handle = Number(text.slice(PREFIX.length));
  const entry = waiting.get(handle);
  if (entry === undefined) return true; // Cleared from another connection's event after it was armed.
  if (entry.interval) arm(handle, entry);
  else waiting.delete(handle);
  entry.fn(...entry.args);
  return true;
}

globalThis.setTimeout = setTimeout;
globalThis.setInterval = setInterval;
globalThis.clearTimeout = clearTimeout;
globalThis.clearInterval = clearInterval;
