//! Test handler written as an Eclipse Dirigible handler is: it imports its websockets from `"sdk/net"` (which
//! `sdk/js/build.mjs` resolves to the wasmsock SDK) and answers every text message with `seed <message>`, exactly as
//! `py-seed` does.

import { websockets } from "sdk/net";

/** Called by the host once per event. */
export function onEvent() {
  if (websockets.isOnMessage()) {
    const text = websockets.getMessage();
    if (text !== undefined) {
      websockets.send(`seed ${text}`);
    }
  }
}
