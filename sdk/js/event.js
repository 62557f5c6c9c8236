//! The current event, asked of the host once per event (the WIT `events.get-current`) and kept until the next: every
//! `getMethod`, `getMessage`, `getBinaryMessage`, `getError`, `timers.getEvent`, `getTimer` and `getAlarm` answers
//! from it, where each used to be a host call of its own (about a microsecond each through the engine's bindings).
//! The build's entry calls [`eventStarts`] before every event.

import { getCurrent } from "wasmsock:websockets/events@0.1.4";

/** The event being handled, once asked; `null` before. */
let current = null;

/** Called by the build's entry before every event: the next question asks the host again. */
export function eventStarts() {
  current = null;
}

/** The current event: `{kind, data}`, `data` a variant (`{tag: "none" | "text" | "binary" | ..., val}`). */
export function currentEvent() {
  if (current === null) current = getCurrent();
  return current;
}

/** What came with the current event when it is of variant `tag`; `undefined` otherwise. */
export function eventData(tag) {
  const data = currentEvent().data;
  return data.tag === tag ? data.val : undefined;
}

/** The Dirigible method of the current event: timers and alarms are `"onmessage"` (the WIT's `get-method`). */
export function currentMethod() {
  const kind = currentEvent().kind;
  return kind === "ontimer" || kind === "onalarm" ? "onmessage" : kind;
}
