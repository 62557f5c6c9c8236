//! The JavaScript echo handler: every text message goes back as text and every binary message as binary, to the
//! connection it came from (the same behaviour as the Rust `echo` example).

import { websockets } from "wasmsock";

/** Called by the host once per event. */
export function onEvent() {
  if (!websockets.isOnMessage()) {
    return;
  }
  const text = websockets.getMessage();
  const data = websockets.getBinaryMessage();
  try {
    if (text !== undefined) {
      websockets.send(text);
    } else if (data !== undefined) {
      websockets.sendBinary(data);
    }
  } catch (err) {
    // A guest logs through stderr: the host tags each line with the handler and connection.
    console.error(`echo failed: ${err.message}`);
  }
}
