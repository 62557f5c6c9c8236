//! The JavaScript chat handler, in rooms: a session joins the room named by the `room` query parameter of its URI
//! (`…/js-chat?room=red`; `lobby` without one) when it opens, and every message is published to its room, sender
//! included, text as text and binary as binary. A room is a channel of the project: the host keeps its members, and a
//! session leaves it by itself when it ends. The Rust `chat` example does the same in the same project (`examples`),
//! so their sessions in one room talk to each other.
//!
//! Recovery, as `chat` does, when the project keeps history: with `&recover=1` every message the session receives is
//! `{"offset": N, "epoch": "E", "data": "TEXT"}` (written by the host) and, right after joining, it receives
//! `{"recovered": true|false, "epoch": "E", "offset": TOP}`; with `&since=N&epoch=E` it first receives every message
//! after N of epoch E that the history keeps, then the live ones.

import { websockets } from "wasmsock";

/** The room of a session whose URI names none. */
const DEFAULT_ROOM = "lobby";

/** Called by the host once per event. */
export function onEvent() {
  const client = websockets.currentClient();
  if (websockets.isOnOpen()) {
    // Only sessions on an endpoint chat; an outbound client (none here) has no room.
    if (client.getEndpoint() === undefined) {
      return;
    }
    const uri = client.getUri();
    const room = param(uri, "room") || DEFAULT_ROOM;
    const recover = param(uri, "recover") === "1";
    const since = param(uri, "since");
    const epoch = param(uri, "epoch");
    const position = since !== undefined && epoch !== undefined && /^\d+$/.test(since) ? { since: Number(since), epoch } : {};
    try {
      if (recover || position.since !== undefined) {
        const recovery = websockets.joinFrom(room, { ...position, envelope: recover });
        if (recover) {
          websockets.send(JSON.stringify({ recovered: recovery.recovered, epoch: recovery.epoch, offset: recovery.top }));
        }
      } else {
        websockets.join(room);
      }
    } catch (err) {
      // A room name the host refuses (too long, spaces): tell the peer why and end the session, as `chat` does.
      try {
        websockets.send(`cannot join room ${JSON.stringify(room)}: ${err.message}`);
        websockets.close(1008, "bad room name");
      } catch {
        // Already closing.
      }
    }
    return;
  }
  if (!websockets.isOnMessage()) {
    return;
  }
  const text = websockets.getMessage();
  const message = text !== undefined ? text : websockets.getBinaryMessage();
  if (message === undefined) {
    return;
  }
  // The room this session joined on open (none if it was refused one).
  for (const room of websockets.getChannels()) {
    try {
      websockets.publish(room, message);
    } catch (err) {
      console.error(`chat: not published to ${room}: ${err.message}`);
    }
  }
}

/**
 * The query parameter `name` of a request path and query (`/websockets/service/js-chat?room=red`, `room` → `red`),
 * URL-decoded (`+` is a space); `undefined` when there is none.
 */
function param(uri, name) {
  const query = uri.includes("?") ? uri.slice(uri.indexOf("?") + 1).split("#")[0] : "";
  for (const pair of query.split("&")) {
    const at = pair.indexOf("=");
    const key = at < 0 ? pair : pair.slice(0, at);
    if (decode(key) === name) {
      return decode(at < 0 ? "" : pair.slice(at + 1));
    }
  }
  return undefined;
}

/** Decodes one query component (`+` is a space); a malformed escape is kept as it is. */
function decode(component) {
  const spaced = component.replaceAll("+", " ");
  try {
    return decodeURIComponent(spaced);
  } catch {
    return spaced;
  }
}
