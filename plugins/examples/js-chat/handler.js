//! The JavaScript chat handler: every message goes to every open session of the endpoint it arrived on, sender
//! included (the same behaviour as the Rust `chat` example).

import { websockets } from "wasmsock";

/** Called by the host once per event. */
export function onEvent() {
  if (!websockets.isOnMessage()) {
    return;
  }
  const endpoint = websockets.currentClient().getEndpoint();
  if (endpoint === undefined) {
    return;
  }
  const text = websockets.getMessage();
  const data = websockets.getBinaryMessage();
  for (const info of websockets.getClients()) {
    const member = info.direction === "inbound" && info.state === "open" && info.endpoint === endpoint;
    if (!member) {
      continue;
    }
    const client = websockets.getClient(info.id);
    if (client === undefined) {
      continue;
    }
    try {
      if (text !== undefined) {
        client.send(text);
      } else if (data !== undefined) {
        client.sendBinary(data);
      }
    } catch (err) {
      // A member that left or fell behind misses this message; the others still get it.
      console.error(`chat: not delivered to ${info.id}: ${err.message}`);
    }
  }
}
