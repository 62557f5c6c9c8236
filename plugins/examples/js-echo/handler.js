//! The JavaScript echo handler: every text message goes back as text and every binary message as binary, to the
//! connection it came from (the same behaviour as the Rust `echo` example).

import { websockets } from "wasmsock";

/** Called by the host once per event. */
export function onEvent() {
  // `getMessage` has text only for a text message, so asking it first saves asking for the method: two host calls
  // per text message (this and `send`) rather than three.
  const text = websockets.getMessage();
  try {
    if (text !== undefined) {
      websockets.send(text);
    } else if (websockets.isOnMessage()) {
      // The binary payload is asked for only when the event is a message that is not text.
      const data = websockets.getBinaryMessage();
      if (data !== undefined) {
        websockets.sendBinary(data);
      }
    }
  } catch (err) {
    // A guest logs through stderr: the host tags each line with the handler and connection.
    console.error(`echo failed: ${err.message}`);
  }
}
