//! Test handler in JavaScript that mirrors the Rust `recorder`: every event of every connection routed to it is
//! reported as `"<id> <method> <detail>"` to each open inbound session whose URI contains `observer`, and text
//! messages on other inbound sessions are commands whose reply goes back to the sender.
//!
//! Commands: `echo TEXT`, `clients`, `connect-send URI TEXT`, `connect-engine URI ENGINE`,
//! `connect-reconnect URI INITIAL-MS MAX-MS ATTEMPTS|-` (then sends `first`), `client-send ID TEXT`,
//! `client-close ID`, `by-handler HANDLER`, `close CODE REASON`, `throw TEXT` (throws an Error with that message).
//! A refused call replies `error <kind>: <detail>` (the SDK's `WebsocketError` message).

import { websockets } from "wasmsock";

/** The handler name this component is installed as: its outbound clients' events come back here. */
const SELF = "tests/js-recorder";

/** Called by the host once per event. */
export function onEvent() {
  const me = websockets.currentClient().info();
  report(me);
  if (websockets.isOnMessage() && me.direction === "inbound" && !me.uri.includes("observer")) {
    const text = websockets.getMessage();
    if (text !== undefined) {
      const reply = command(text);
      if (reply !== "") {
        websockets.send(reply);
      }
    }
  }
}

/** Sends this event's report line to every open observer session. */
function report(me) {
  let detail = "";
  if (websockets.isOnMessage()) {
    const text = websockets.getMessage();
    const data = websockets.getBinaryMessage();
    detail = text !== undefined ? text : data !== undefined ? `<${data.length} bytes>` : "";
  } else if (websockets.isOnError()) {
    detail = websockets.getError() ?? "";
  }
  const line = `${me.id} ${websockets.getMethod()} ${detail}`.trimEnd();
  for (const info of websockets.getClients()) {
    if (info.direction === "inbound" && info.uri.includes("observer") && info.state === "open") {
      try {
        websockets.getClient(info.id)?.send(line);
      } catch {
        // An observer that is leaving misses the line.
      }
    }
  }
}

/** `id|uri|handler|endpoint|direction|state`, as the Rust recorder writes it. */
function describe(info) {
  return [info.id, info.uri, info.handler, info.endpoint ?? "-", info.direction, info.state].join("|");
}

/** Runs `act`; `"ok"`, or `"error <kind>: <detail>"` if the host refused. */
function outcome(act) {
  try {
    act();
    return "ok";
  } catch (err) {
    return `error ${err.message}`;
  }
}

/** Splits `text` at its first space. */
function split(text) {
  const at = text.indexOf(" ");
  return at < 0 ? [text, ""] : [text.slice(0, at), text.slice(at + 1)];
}

/** Runs one command and returns the reply. */
function command(text) {
  const [verb, rest] = split(text);
  switch (verb) {
    case "echo":
      return rest;
    case "clients":
      return `clients ${websockets.getClients().map(describe).join(";")}`;
    case "connect-send": {
      // The seed's pattern: create, then send at once, before the client can have opened.
      const [uri, message] = split(rest);
      try {
        const client = websockets.createWebsocket(uri, SELF);
        const queued = outcome(() => client.send(message));
        return `created ${describe(client.info())} send ${queued}`;
      } catch (err) {
        return `error ${err.message}`;
      }
    }
    case "connect-engine": {
      const [uri, engine] = split(rest);
      try {
        return `created ${describe(websockets.createWebsocket(uri, SELF, engine).info())}`;
      } catch (err) {
        return `error ${err.message}`;
      }
    }
    case "connect-reconnect": {
      // `connect-reconnect URI INITIAL-MS MAX-MS ATTEMPTS` (`-`: never give up), then send `first`.
      const [uri, initial, max, attempts] = rest.split(" ");
      const reconnect = {
        initialDelayMs: Number(initial),
        maxDelayMs: Number(max),
        maxAttempts: attempts === "-" ? undefined : Number(attempts),
      };
      try {
        const client = websockets.createWebsocketWith(uri, SELF, { reconnect });
        const queued = outcome(() => client.send("first"));
        return `created ${describe(client.info())} send ${queued}`;
      } catch (err) {
        return `error ${err.message}`;
      }
    }
    case "client-send": {
      const [id, message] = split(rest);
      const client = websockets.getClient(id);
      return client === undefined ? "none" : outcome(() => client.send(message));
    }
    case "client-close": {
      const client = websockets.getClient(rest);
      return client === undefined ? "none" : outcome(() => client.close(1000, "done"));
    }
    case "by-handler": {
      const client = websockets.getClientByHandler(rest);
      return client === undefined ? "none" : `found ${describe(client.info())}`;
    }
    case "close": {
      const [code, reason] = split(rest);
      return outcome(() => websockets.close(Number(code), reason));
    }
    case "throw":
      throw new Error(rest);
    default:
      return `unknown command ${JSON.stringify(verb)}`;
  }
}
