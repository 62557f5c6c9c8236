//! Test handler in JavaScript that mirrors the Rust `recorder`: every event of every connection routed to it is
//! reported as `"<id> <method> <detail>"` to each open inbound session whose URI contains `observer`, and text
//! messages on other inbound sessions are commands whose reply goes back to the sender.
//!
//! Commands: `echo TEXT`, `clients`, `connect-send URI TEXT`, `connect-engine URI ENGINE`,
//! `connect-reconnect URI INITIAL-MS MAX-MS ATTEMPTS|-` (then sends `first`), `client-send ID TEXT`,
//! `client-close ID`, `by-handler HANDLER`, `close CODE REASON`, `throw TEXT` (throws an Error with that message).
//! Channels and attachments: `join CH`, `leave CH` (`left true|false`), `channels` (`channels a,b` in join order,
//! `channels -`), `publish CH TEXT`, `publish-skip CH TEXT` (skip-self), `publish-binary CH TEXT` (TEXT's UTF-8 bytes
//! as a binary message) (each `queued N`), `members CH LIMIT AFTER|-` (`members ID,ID next ID|-`, `members - next -`),
//! `survey-members CH LIMIT AFTER|-` (the same with ` missing HOST,HOST|-`), `survey-clients` (`clients ID,ID missing -`),
//! `client-join ID CH`, `client-leave ID CH`, `client-channels ID` (`none` for no such client), `set-attachment TEXT`,
//! `set-attachment-size N` (N bytes of `a`), `clear-attachment`, `attachment` and `client-attachment ID`
//! (`attachment TEXT`, `attachment -`). A channel is the word after the verb (or ID); TEXT is the rest of the line.
//! `fetch METHOD URL [BODY]` (through `fetch`, sending `x-recorder: js`: `fetched STATUS CONTENT-TYPE BODY` or `error
//! CODE`), `http METHOD URL [BODY]` (the same through `http.request`), `timeout MS TEXT` and `interval MS N` (through
//! `setTimeout` and `setInterval`), `lifecycle`.
//! JavaScript globals: `decode HEX [fatal]` (the bytes through `TextDecoder` and back through `TextEncoder`: `decoded
//! JSON-TEXT HEX`, or `decode failed: ERROR-NAME`), `log TEXT` (`console.log` and `console.error` of it: `logged`).
//! The store and configuration commands (`kv-…`, `config NAME`, `config-all`) are the Rust recorder's (its
//! `kv_command` lists them), with the same replies.
//! A refused call replies `error <kind>: <detail>` (the SDK's `WebsocketError` or `KvError` message).

import { http, kv, timers, variables, websockets } from "wasmsock";

/**
 * The handler name this component is installed as (the handler of the connection whose event this is): its outbound
 * clients' events come back here. The tests install it twice, once per JavaScript engine.
 */
function self() {
  return websockets.currentClient().getHandler();
}

/** Called by the host once per event. */
export function onEvent() {
  if (timers.isOnTimer()) {
    // A timer armed with `timer MS TEXT`: its own reply, not an observer report.
    const fired = timers.getTimer();
    websockets.send(`fired ${fired.id} ${fired.payloadText}`);
    return;
  }
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

/** `a,b`, or `-` for an empty list. */
function joined(items) {
  return items.length === 0 ? "-" : items.join(",");
}

/** `channels a,b`, or `channels -` for none. */
function channels(list) {
  return `channels ${joined(list)}`;
}

/** `attachment TEXT`, or `attachment -` for none. */
function attachment(text) {
  return `attachment ${text ?? "-"}`;
}

/**
 * Runs `act` and formats what it returns with `format`, or `"error <kind>: <detail>"` if the host refused; a `closed`
 * (which has no detail) is worded as the Rust recorder words it.
 */
function reply(act, format) {
  try {
    return format(act());
  } catch (err) {
    if (err.kind === "closed" && !err.detail) {
      return "error closed: the connection is closing or closed";
    }
    return `error ${err.message}`;
  }
}

/** `"ok"`, or the refusal as `reply` words it. */
const ok = () => "ok";

/** Runs `act` on the client with this id; `"none"` if there is no such client. */
function withClient(id, act) {
  const client = websockets.getClient(id);
  return client === undefined ? "none" : act(client);
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
        const client = websockets.createWebsocket(uri, self());
        const queued = outcome(() => client.send(message));
        return `created ${describe(client.info())} send ${queued}`;
      } catch (err) {
        return `error ${err.message}`;
      }
    }
    case "connect-engine": {
      const [uri, engine] = split(rest);
      try {
        return `created ${describe(websockets.createWebsocket(uri, self(), engine).info())}`;
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
        const client = websockets.createWebsocketWith(uri, self(), { reconnect });
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
    case "decode": {
      // HEX bytes through TextDecoder (fatal when the word after the bytes is `fatal`), back through TextEncoder.
      const [hex, mode] = split(rest);
      const bytes = Uint8Array.from(hex.match(/../g) ?? [], (pair) => parseInt(pair, 16));
      try {
        const text = new TextDecoder("utf-8", { fatal: mode === "fatal" }).decode(bytes);
        const again = Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
        return `decoded ${JSON.stringify(text)} ${again}`;
      } catch (err) {
        return `decode failed: ${err.name}`;
      }
    }
    case "timer": {
      const [ms, text] = split(rest);
      try {
        return `armed ${timers.setTimer(Number(ms), text)}`;
      } catch (err) {
        return `error ${err.kind}: ${err.detail}`;
      }
    }
    case "fetch": {
      // `fetch METHOD URL [BODY]`: `fetched STATUS CONTENT-TYPE BODY` once the response is read, or `error CODE`.
      const [method, tail] = split(rest);
      const [url, body] = split(tail);
      try {
        fetch(url, { method, body: body === "" ? undefined : body, headers: { "x-recorder": "js" } })
          .then(async (response) => `fetched ${response.status} ${response.headers.get("content-type")} ${await response.text()}`)
          .catch((err) => `error ${err.code ?? err.message}`)
          .then((line) => websockets.send(line));
        return "";
      } catch (err) {
        return `error ${err.code ?? err.message}`;
      }
    }
    case "http": {
      // `http METHOD URL [BODY]`: the same through `http.request`, synchronous on both engines.
      const [method, tail] = split(rest);
      const [url, body] = split(tail);
      try {
        const response = http.request(method, url, { "x-recorder": "js" }, body === "" ? undefined : body);
        return `fetched ${response.status} ${response.headers.get("content-type")} ${response.text()}`;
      } catch (err) {
        return `error ${err.code ?? err.message}`;
      }
    }
    case "timeout": {
      // `timeout MS TEXT`: `timeout set`, then `timeout TEXT` from the callback; `error MESSAGE` where it cannot.
      const [ms, text] = split(rest);
      try {
        setTimeout((what) => websockets.send(`timeout ${what}`), Number(ms), text);
        return "timeout set";
      } catch (err) {
        return `error ${err.message}`;
      }
    }
    case "interval": {
      // `interval MS N`: `interval set`, then `tick 1` .. `tick N` from the callback, then it clears itself.
      const [ms, count] = split(rest);
      let ticks = 0;
      const handle = setInterval(() => {
        ticks += 1;
        websockets.send(`tick ${ticks}`);
        if (ticks >= Number(count)) clearInterval(handle);
      }, Number(ms));
      return "interval set";
    }
    case "lifecycle":
      return `lifecycle ${timers.getLifecycle()}`;
    case "random":
      // Math.random and the Web Crypto calls (a fresh instance per event: each must draw its own).
      return `random ${Math.random()} ${crypto.randomUUID()} ${crypto.getRandomValues(new Uint32Array(2)).length}`;
    case "log":
      console.log(`stdout ${rest}`);
      console.error(`stderr ${rest}`);
      return "logged";
    case "join":
      return reply(() => websockets.join(rest), ok);
    case "leave":
      return reply(() => websockets.leave(rest), (left) => `left ${left}`);
    case "channels":
      return channels(websockets.getChannels());
    case "hpublish": {
      const [channel, message] = split(rest);
      return reply(
        () => websockets.publishWith(channel, message),
        (p) => `published ${p.queued} at ${p.position === undefined ? "-" : p.position.offset}`,
      );
    }
    case "history": {
      const [channel, limit, since, epoch] = rest.split(" ");
      const options = { limit: Number(limit), since: since === undefined ? undefined : Number(since), epoch };
      return reply(
        () => websockets.getHistory(channel, options),
        (page) => {
          const items = page.publications.map((p) => (p.text !== undefined ? `${p.offset}:${p.text}` : `${p.offset}:b${p.data.length}`));
          return `history top ${page.top} complete ${page.complete} next ${page.next ?? "-"} epoch ${page.epoch} items ${joined(items)}`;
        },
      );
    }
    case "publish":
    case "publish-skip": {
      const [channel, message] = split(rest);
      const options = { skipSelf: verb === "publish-skip" };
      return reply(() => websockets.publish(channel, message, options), (n) => `queued ${n}`);
    }
    case "publish-binary": {
      const [channel, message] = split(rest);
      const data = new TextEncoder().encode(message);
      return reply(() => websockets.publish(channel, data), (n) => `queued ${n}`);
    }
    case "members": {
      const [channel, limit, after] = rest.split(" ");
      const options = { limit: Number(limit), after: after === "-" ? undefined : after };
      return reply(
        () => websockets.getMembers(channel, options),
        (page) => `members ${joined(page.members.map((m) => m.id))} next ${page.next ?? "-"}`,
      );
    }
    case "survey-members": {
      const [channel, limit, after] = rest.split(" ");
      const options = { limit: Number(limit), after: after === "-" ? undefined : after };
      return reply(
        () => websockets.surveyMembers(channel, options),
        (survey) =>
          `members ${joined(survey.page.members.map((m) => m.id))} next ${survey.page.next ?? "-"} ` +
          `missing ${joined(survey.missingHosts)}`,
      );
    }
    case "survey-clients": {
      const survey = websockets.surveyClients();
      return `clients ${joined(survey.clients.map((c) => c.id))} missing ${joined(survey.missingHosts)}`;
    }
    case "client-join": {
      const [id, channel] = split(rest);
      return withClient(id, (client) => reply(() => client.join(channel), ok));
    }
    case "client-leave": {
      const [id, channel] = split(rest);
      return withClient(id, (client) => reply(() => client.leave(channel), (left) => `left ${left}`));
    }
    case "client-channels":
      return withClient(rest, (client) => channels(client.getChannels()));
    case "set-attachment":
      return reply(() => websockets.setAttachment(rest), ok);
    case "set-attachment-size":
      return reply(() => websockets.setAttachment(new Uint8Array(Number(rest)).fill(0x61)), ok);
    case "clear-attachment":
      return reply(() => websockets.setAttachment(null), ok);
    case "attachment":
      return attachment(websockets.getAttachmentText());
    case "client-attachment":
      return withClient(rest, (client) => attachment(client.getAttachmentText()));
    default:
      if (verb.startsWith("kv-") || verb.startsWith("config")) {
        return reply(() => kvCommand(verb, rest), (text) => text);
      }
      return `unknown command ${JSON.stringify(verb)}`;
  }
}

/** What `get` gave, checked to be `null` or a `Uint8Array` (on both engines), as text. */
function shown(value, format) {
  if (value === null) return "none";
  if (!(value instanceof Uint8Array)) return `not a Uint8Array: ${String(value)}`;
  return format(new TextDecoder().decode(value));
}

/** A time to live in seconds, or `undefined` for `-`. */
function seconds(word) {
  return word === undefined || word === "-" ? undefined : Number(word);
}

/** The store and configuration commands, replying as the Rust recorder's `kv_command` does. */
function kvCommand(verb, rest) {
  const store = kv.openDefault();
  const [key, value] = split(rest);
  const words = rest.split(" ");
  switch (verb) {
    case "kv-set":
      store.set(key, value);
      return "ok";
    case "kv-get":
      return shown(store.get(key), (text) => `value ${text}`);
    case "kv-del":
      store.delete(key);
      return "ok";
    case "kv-exists":
      return String(store.exists(key));
    case "kv-keys":
      return `keys ${joined(store.getKeys().filter((k) => k.startsWith(key)))}`;
    case "kv-list": {
      const [prefix, limit, after] = words;
      const page = store.list(prefix, { limit: Number(limit), after: after === "-" ? undefined : after });
      return `keys ${joined(page.keys)} next ${page.next ?? "-"}`;
    }
    case "kv-incr":
      return String(store.increment(words[0], Number(words[1])));
    case "kv-incr-ttl":
      return String(store.incrementWithTtl(words[0], Number(words[1]), seconds(words[2])));
    case "kv-cas":
    case "kv-cas-race": {
      const cas = store.cas(words[0]);
      const read = shown(cas.current(), (text) => text);
      if (verb === "kv-cas-race") store.set(words[0], words[2]);
      return `read ${read === "none" ? "-" : read} swapped ${cas.swap(words[1])}`;
    }
    case "kv-put": {
      const [k, v, when, ttl] = words;
      const condition = when === "always" || when === "absent" ? when : Number(when);
      return `rev ${store.put(k, v, { condition, ttlSeconds: seconds(ttl) })}`;
    }
    case "kv-ttl":
      store.put(words[0], words[1], { ttlSeconds: Number(words[2]) });
      return "ok";
    case "kv-entry": {
      const entry = store.getEntry(key);
      if (entry === null) return "none";
      const text = new TextDecoder().decode(entry.value);
      return `entry ${text} rev ${entry.revision} ttl ${entry.expiresInMs === null ? "no" : "yes"}`;
    }
    case "kv-del-if":
      store.deleteIf(words[0], Number(words[1]));
      return "ok";
    case "kv-set-size":
      store.set(words[0], new Uint8Array(Number(words[1])).fill(0x61));
      return "ok";
    case "kv-usage": {
      const usage = store.usage();
      return (
        `usage has-keys ${usage.keys > 0} max-keys ${usage.maxKeys} max-bytes ${usage.maxBytes} ` +
        `max-value-bytes ${usage.maxValueBytes}`
      );
    }
    case "kv-json-set": {
      let json;
      try {
        json = JSON.parse(value);
      } catch (err) {
        return `bad json ${err.message}`;
      }
      store.setJson(key, json);
      return "ok";
    }
    case "kv-json-get": {
      const json = store.getJson(key);
      return json === null ? "none" : `json ${JSON.stringify(json)}`;
    }
    case "kv-open":
      kv.open(rest);
      return "ok";
    case "config": {
      const found = variables.get(rest);
      return found === null ? "none" : `config ${found}`;
    }
    case "config-all":
      return `config ${joined(variables.getAll().map(([name, v]) => `${name}=${v}`))}`;
    default:
      return `unknown command ${JSON.stringify(verb)}`;
  }
}
