//! TypeScript declarations of the JavaScript SDK (`index.js`): the `websockets` object, `WebsocketClient` and
//! `WebsocketError`, with the WIT types as JavaScript sees them.

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
  /** The live connection with this id. */
  getClient(id: string): WebsocketClient | undefined;
  /** The oldest live outbound client of `handler`. */
  getClientByHandler(handler: string): WebsocketClient | undefined;
}

/** The websockets API. */
export const websockets: Websockets;
export default websockets;
