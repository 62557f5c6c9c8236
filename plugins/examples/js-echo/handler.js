//! The JavaScript echo handler: every text message goes back as text and every binary message as binary, to the
//! connection it came from (the same behaviour as the Rust `echo` example).

import { websockets } from "wasmsock";

/** Called by the host once per event. */
export function onEvent() {
  if (!websockets.isOnMessage()) {
    return;
  }
  // The binary payload is asked for only when the message is not text: one host call fewer per text message.
  const text = websockets.getMessage();
  try {
    if (text !== undefined) {
      websockets.send(text);
    } else {
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
