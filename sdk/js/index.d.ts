//! TypeScript declarations of the JavaScript SDK (`index.js`): the `websockets` object, `WebsocketClient` and
//! `WebsocketError`, the project's store (`kv`, `KvError`) and configuration (`variables`), with the WIT types as
//! JavaScript sees them.

/** The kind of event the handler is being called for. */
export type Method = "onopen" | "onmessage" | "onerror" | "onclose";

/** Which side opened a connection. */
export type Direction = "inbound" | "outbound";

/** Where a connection is in its life. */
export type ConnectionState = "connecting" | "open" | "closing" | "closed";

/** What the host knows about one connection. */
export interface ClientInfo {
  /** The host-wide unique id of the connection (use it with `getClient`). */
  id: string;
  /** For an inbound session the request path and query; for an outbound client the URI it connects to. */
  uri: string;
  /** The handler that receives this connection's events, as `project/name`. */
  handler: string;
  /** The endpoint an inbound session arrived on; `undefined` for outbound clients. */
  endpoint?: string;
  /** Inbound session or outbound client. */
  direction: Direction;
  /** The connection's state at the time of the call. */
  state: ConnectionState;
  /** The subprotocol agreed in the handshake, if any. */
  protocol?: string;
}

/** How an outbound client reconnects when its connection fails or the server ends it. */
export interface ReconnectPolicy {
  /** The delay before the first attempt, in milliseconds (default 1000); it doubles after each failed attempt. */
  initialDelayMs?: number;
  /** The longest delay between attempts, in milliseconds (default 30000). */
  maxDelayMs?: number;
  /** Give up after this many failed attempts in a row; absent: never give up. */
  maxAttempts?: number;
}

/** Options of `createWebsocketWith`. */
export interface ClientOptions {
  /** Reconnect automatically; absent: a lost connection is closed for good. */
  reconnect?: ReconnectPolicy;
}

/** Options of `publish` and `publishBinary`. */
export interface PublishOptions {
  /** Leave the current connection (the publisher) out, when it is a member of the channel. */
  skipSelf?: boolean;
}

/** Options of `getMembers`. */
export interface MembersOptions {
  /** The `next` of the page before; absent for the first page. */
  after?: string;
  /** At most this many members, 1 to 1000 (default 100). */
  limit?: number;
}

/** One page of a channel's members, oldest connection first. */
export interface MembersPage {
  /** At most the `limit` asked for. */
  members: ClientInfo[];
  /** Pass this as `after` to get the next page; `undefined` when this page is the last. */
  next?: string;
}

/** What `surveyClients` got. */
export interface ClientsSurvey {
  /** This host's connections, then each other host's, by host id. */
  clients: ClientInfo[];
  /** The hosts of the cluster that did not answer within 1 s; empty when `clients` is whole. */
  missingHosts: string[];
}

/** What `surveyMembers` got. */
export interface MembersSurvey {
  /** The page, as `getMembers` gives it. */
  page: MembersPage;
  /** The hosts of the cluster that did not answer within 1 s; empty when `page` is whole. */
  missingHosts: string[];
}

/** Where a publication sits in its channel's history. */
export interface StreamPosition {
  /** 1 for the channel's first publication, one more for each after it. */
  offset: number;
  /** The stream's epoch; a position means something only in its epoch. */
  epoch: string;
}

/** What `publishWith` did. */
export interface Published {
  /** How many connections on this host it was queued for. */
  queued: number;
  /** Its position; `undefined` when the project keeps no history. */
  position?: StreamPosition;
}

/** A position to start after (`getHistory`, `joinFrom`): both or neither. */
export interface SinceOptions {
  /** The offset of the last publication already seen. */
  since?: number;
  /** The epoch that offset was in. */
  epoch?: string;
}

/** One publication kept in a channel's history: `text` for a text message, `data` for a binary one. */
export interface Publication {
  offset: number;
  /** When it was published, in milliseconds since the Unix epoch. */
  timeMs: number;
  text?: string;
  data?: Uint8Array;
}

/** One page of a channel's history, oldest first. */
export interface HistoryPage {
  publications: Publication[];
  /** The stream's epoch now. */
  epoch: string;
  /** The offset of the latest publication (0 when none). */
  top: number;
  /** Whether the page continues the position asked for with no gap. */
  complete: boolean;
  /** Pass as `since` (with `epoch`) for the next page; `undefined` when this page reaches the top. */
  next?: number;
}

/** What `joinFrom` did. */
export interface Recovery {
  /** Whether every publication after the position was sent; when false, what the history keeps was sent. */
  recovered: boolean;
  /** How many publications were sent from the history before the live ones. */
  sent: number;
  /** The stream's epoch (empty when the project keeps no history). */
  epoch: string;
  /** The offset the connection is at after the history. */
  top: number;
  /** Whether the project keeps history at all. */
  history: boolean;
}

/** Binary data the SDK accepts. */
export type Bytes = Uint8Array | ArrayBuffer | ArrayBufferView | number[];

/** The kinds of `WebsocketError`, one per case of the WIT `error` variant. */
export type ErrorKind = "unknown-client" | "closed" | "invalid" | "limit";

/** Why a call on a connection did not happen: thrown by every call whose WIT result is an error. */
export class WebsocketError extends Error {
  constructor(kind: ErrorKind, detail?: string);
  /** Which case of the WIT `error` variant. */
  readonly kind: ErrorKind;
  /** The host's text: the client id for `unknown-client`, empty for `closed`, the reason otherwise. */
  readonly detail: string;
}

/** A live connection: an inbound session on an endpoint, or an outbound client (Dirigible's `WebsocketClient`). */
export class WebsocketClient {
  private constructor(resource: unknown);
  /** What the host knows about this connection now. */
  info(): ClientInfo;
  /** The host-wide unique id of the connection. */
  getId(): string;
  /** The request path and query of an inbound session, or the URI of an outbound client. */
  getUri(): string;
  /** The handler that receives this connection's events. */
  getHandler(): string;
  /** The endpoint of an inbound session; `undefined` for an outbound client. */
  getEndpoint(): string | undefined;
  /** Inbound session or outbound client. */
  getDirection(): Direction;
  /** The connection's state now. */
  getState(): ConnectionState;
  /** Queues a text message; never blocks. @throws {WebsocketError} */
  send(message: string): void;
  /** Queues a binary message; never blocks. @throws {WebsocketError} */
  sendBinary(data: Uint8Array | ArrayBuffer | ArrayBufferView | number[]): void;
  /** Starts the closing handshake with a code (1000 when absent) and a reason (at most 123 bytes). @throws {WebsocketError} */
  close(code?: number, reason?: string): void;
  /** Adds this connection to `channel`; joining it again does nothing. @throws {WebsocketError} */
  join(channel: string): void;
  /** Removes this connection from `channel`; `true` if it was a member. @throws {WebsocketError} */
  leave(channel: string): boolean;
  /** The channels this connection is in, in the order it joined them. */
  getChannels(): string[];
  /** This connection's attachment, if it has one. */
  getAttachment(): Uint8Array | undefined;
  /** This connection's attachment decoded as UTF-8, if it has one. */
  getAttachmentText(): string | undefined;
}

/** The websockets API, named after Dirigible's `sdk/net` websockets module. */
export interface Websockets {
  /** The kind of the event being handled. */
  getMethod(): Method;
  /** The text of the message being handled; `undefined` for binary messages and other events. */
  getMessage(): string | undefined;
  /** The bytes of the binary message being handled; `undefined` for text messages and other events. */
  getBinaryMessage(): Uint8Array | undefined;
  /** What went wrong, in an onerror event. */
  getError(): string | undefined;
  /** Whether the event is onopen. */
  isOnOpen(): boolean;
  /** Whether the event is onmessage. */
  isOnMessage(): boolean;
  /** Whether the event is onerror. */
  isOnError(): boolean;
  /** Whether the event is onclose. */
  isOnClose(): boolean;
  /** The connection the event belongs to. */
  currentClient(): WebsocketClient;
  /** Queues a text message on the current connection. @throws {WebsocketError} */
  send(message: string): void;
  /** Queues a binary message on the current connection. @throws {WebsocketError} */
  sendBinary(data: Uint8Array | ArrayBuffer | ArrayBufferView | number[]): void;
  /** Closes the current connection. @throws {WebsocketError} */
  close(code?: number, reason?: string): void;
  /**
   * Opens an outbound client whose events go to `handler`; returns at once, connecting. `engine` must be absent or
   * `"wasm"`. @throws {WebsocketError}
   */
  createWebsocket(uri: string, handler: string, engine?: string): WebsocketClient;
  /**
   * `createWebsocket` with options, such as reconnecting. The policy's numbers must be integers from 0 to 2^32-1 (an
   * `invalid` error otherwise). @throws {WebsocketError}
   */
  createWebsocketWith(uri: string, handler: string, options?: ClientOptions): WebsocketClient;
  /** Every live connection. */
  getClients(): ClientInfo[];
  /** `getClients()` with the hosts of the cluster that did not answer in time. */
  surveyClients(): ClientsSurvey;
  /** The live connection with this id. */
  getClient(id: string): WebsocketClient | undefined;
  /** The oldest live outbound client of `handler`. */
  getClientByHandler(handler: string): WebsocketClient | undefined;
  /**
   * Adds the current connection to `channel` (1 to 255 bytes, no whitespace or control characters); joining it again
   * does nothing. @throws {WebsocketError} `invalid`, `limit` or `closed`
   */
  join(channel: string): void;
  /** Removes the current connection from `channel`; `true` if it was a member. @throws {WebsocketError} */
  leave(channel: string): boolean;
  /** The channels the current connection is in, in the order it joined them. */
  getChannels(): string[];
  /**
   * Queues `message` on every member of `channel` (a string as text, binary data as binary); returns how many
   * connections it was queued for. @throws {WebsocketError}
   */
  publish(
    channel: string,
    message: string | Uint8Array | ArrayBuffer | ArrayBufferView,
    options?: PublishOptions,
  ): number;
  /** `publish` of binary data. @throws {WebsocketError} */
  publishBinary(channel: string, data: Bytes, options?: PublishOptions): number;
  /** `publish`, answering the message's position in the channel's history. @throws {WebsocketError} */
  publishWith(
    channel: string,
    message: string | Uint8Array | ArrayBuffer | ArrayBufferView,
    options?: PublishOptions,
  ): Published;
  /** One page of `channel`'s history after a position (1 to 1000, default 100). @throws {WebsocketError} */
  getHistory(channel: string, options?: SinceOptions & { limit?: number }): HistoryPage;
  /**
   * Joins the current connection to `channel` from a position: the history after it, then the live messages, none
   * missed or twice; `envelope` has the host frame each as `{"offset":N,"epoch":"E","data":"TEXT"}`.
   * @throws {WebsocketError}
   */
  joinFrom(channel: string, options?: SinceOptions & { envelope?: boolean }): Recovery;
  /** One page of `channel`'s members, oldest first. @throws {WebsocketError} */
  getMembers(channel: string, options?: MembersOptions): MembersPage;
  /** `getMembers` with the hosts of the cluster that did not answer in time. */
  surveyMembers(channel: string, options?: MembersOptions): MembersSurvey;
  /**
   * Keeps a small value with the current connection (a string as UTF-8); `null` or `undefined` removes it.
   * @throws {WebsocketError} `limit` past the host's cap (4 KiB by default)
   */
  setAttachment(data: string | Bytes | null | undefined): void;
  /** The current connection's attachment, if it has one. */
  getAttachment(): Uint8Array | undefined;
  /** The current connection's attachment decoded as UTF-8, if it has one. */
  getAttachmentText(): string | undefined;
}

/** The websockets API. */
export const websockets: Websockets;
export default websockets;

/** The kinds of `KvError`. */
export type KvErrorKind =
  | "no-such-store"
  | "access-denied"
  | "invalid"
  | "limit"
  | "conflict"
  | "unavailable"
  | "json"
  | "other";

/** Why a store call did not happen: thrown by every store call the host refuses. The message is `kind: detail`. */
export class KvError extends Error {
  constructor(kind: KvErrorKind, detail?: string, revision?: number | null);
  /** What went wrong. */
  readonly kind: KvErrorKind;
  /** The host's text (which quota, which check); empty for `no-such-store` and `access-denied`. */
  readonly detail: string;
  /** For a `conflict`, the key's current revision; `null` when the key is absent (and for other kinds). */
  readonly revision: number | null;
}

/** A value and what the store keeps beside it. */
export interface KvEntry {
  /** The value as stored. */
  value: Uint8Array;
  /** Changes on every write of the key and is never reused in the project's store. */
  revision: number;
  /** Milliseconds until the key expires; `null` without a time to live. */
  expiresInMs: number | null;
}

/** Options of `Store.put`. */
export interface PutOptions {
  /** Write always (the default), only when the key is absent, or only when its revision is this number. */
  condition?: "always" | "absent" | number;
  /** Remove the key this many seconds after the write; absent: keep it (and clear an earlier time to live). */
  ttlSeconds?: number;
}

/** Options of `Store.list`. */
export interface ListOptions {
  /** The `next` of the page before; absent for the first page. */
  after?: string | null;
  /** At most this many keys, 1 to 1000 (default 100). */
  limit?: number;
}

/** One page of keys, in byte order. */
export interface KeysPage {
  /** At most the `limit` asked for. */
  keys: string[];
  /** Pass this as `after` for the following page; `null` when this page is the last. */
  next: string | null;
}

/** The project's use of its store against its quotas. */
export interface KvUsage {
  keys: number;
  bytes: number;
  maxKeys: number;
  maxBytes: number;
  maxValueBytes: number;
}

/** A key's value as read at one moment, to be replaced only if the key has not been written since. */
export interface Cas {
  /** The value read; `null` when the key was absent. @throws {KvError} */
  current(): Uint8Array | null;
  /** Writes `value` if the key is unchanged since the read: `true`; `false` when it changed. @throws {KvError} */
  swap(value: string | Bytes): boolean;
}

/** The project's key-value store (Spin's `Store`). Every method throws a `KvError` when the host refuses. */
export interface Store {
  /** The value of `key`; `null` when it is absent. */
  get(key: string): Uint8Array | null;
  /** The value of `key` decoded as UTF-8; `null` when it is absent. */
  getText(key: string): string | null;
  /** Sets `key` (a string as UTF-8, binary data as it is, any other value as its JSON). */
  set(key: string, value: string | Bytes | unknown): void;
  /** Deletes `key` (an absent key is fine). */
  delete(key: string): void;
  /** Whether `key` holds a value. */
  exists(key: string): boolean;
  /** Every key, in byte order. */
  getKeys(): string[];
  /** The value of `key` parsed as JSON; `null` when it is absent. */
  getJson(key: string): unknown;
  /** Sets `key` to `value`'s JSON. */
  setJson(key: string, value: unknown): void;
  /** Adds `delta` (default 1) to the number at `key` (0 when absent), atomically; the new value. */
  increment(key: string, delta?: number | bigint): number;
  /** Reads `key` for a compare-and-swap. */
  cas(key: string): Cas;
  /** The value of `key` with its revision and expiry; `null` when absent. */
  getEntry(key: string): KvEntry | null;
  /** Writes `value` when the condition holds; the new revision (a `conflict` error otherwise). */
  put(key: string, value: string | Bytes | unknown, options?: PutOptions): number;
  /** Deletes `key` only at `revision` (a `conflict` error otherwise). */
  deleteIf(key: string, revision: number | bigint): void;
  /** `increment`, giving a key it creates `ttlSeconds` to live. */
  incrementWithTtl(key: string, delta: number | bigint, ttlSeconds?: number | null): number;
  /** One page of the keys starting with `prefix`. */
  list(prefix?: string, options?: ListOptions): KeysPage;
  /** How much of its quotas the project's store uses. */
  usage(): KvUsage;
}

/** The project's key-value store, as Spin's `@spinframework/spin-kv` (which `build.mjs` resolves to it). */
export const kv: {
  /** Opens the project's store. */
  openDefault(): Store;
  /** Opens the store named `label`; only `"default"` exists. @throws {KvError} `no-such-store` */
  open(label: string): Store;
  KvError: typeof KvError;
};

/** The project's configuration, as Spin's `@spinframework/spin-variables` (which `build.mjs` resolves to it). */
export const variables: {
  /** The value of `name`; `null` when the project has none. */
  get(name: string): string | null;
  /** Every value, as `[name, value]` pairs in name order. */
  getAll(): [string, string][];
};

/** What the current event is, the kinds `getMethod()` cannot name included (it calls them `"onmessage"`). */
export type EventKind = "onopen" | "onmessage" | "onerror" | "onclose" | "ontimer" | "onalarm";

/** Why a timer or an alarm was not set. */
export class TimerError extends Error {
  readonly kind: "closed" | "invalid" | "limit" | "conflict" | "unavailable";
  readonly detail: string;
}

/** A timer that fired (`ontimer`). */
export interface FiredTimer {
  id: number;
  payload: Uint8Array;
  payloadText: string;
}

/** An alarm that fired (`onalarm`). */
export interface FiredAlarm {
  name: string;
  payload: Uint8Array;
  payloadText: string;
}

/** An alarm of the project. */
export interface Alarm {
  name: string;
  handler: string;
  dueInMs: number;
  payload: Uint8Array;
}

/** Timers on the current connection and alarms of the project. */
export const timers: {
  getEvent(): EventKind;
  /** How long the instance running the event lives: whether what it keeps in memory is there at a later event. */
  getLifecycle(): "per-event" | "per-connection" | "shared";
  isOnTimer(): boolean;
  isOnAlarm(): boolean;
  /** Arms a timer on the current connection; its id. */
  setTimer(delayMs: number, payload?: string | Bytes): number;
  cancelTimer(id: number): boolean;
  getTimer(): FiredTimer | undefined;
  /** Sets (replaces) the project's alarm `name`, kept across restarts, fired once on one host. */
  setAlarm(name: string, delayMs: number, payload?: string | Bytes): void;
  cancelAlarm(name: string): boolean;
  listAlarms(): Alarm[];
  getAlarm(): FiredAlarm | undefined;
};

/** Why an outbound HTTP request got no response: `code` names the `wasi:http` error code (`HttpRequestDenied`, ...). */
export class HttpError extends Error {
  readonly code: string;
  readonly detail: string;
}

/** An outbound HTTP response, read whole. */
export interface HttpResponse {
  status: number;
  ok: boolean;
  headers: { get(name: string): string | null; has(name: string): boolean; entries(): IterableIterator<[string, string]> };
  body: Uint8Array;
  url: string;
  text(): string;
  json(): unknown;
}

type HttpHeaders = Record<string, string> | Array<[string, string]>;

/** Outbound HTTP under the endpoint's grants, synchronous on both engines; throws `HttpError`. */
export const http: {
  request(method: string, url: string, headers?: HttpHeaders, body?: string | Bytes): HttpResponse;
  get(url: string, headers?: HttpHeaders): HttpResponse;
  post(url: string, body?: string | Bytes, headers?: HttpHeaders): HttpResponse;
};
