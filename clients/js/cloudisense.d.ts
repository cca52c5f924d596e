// Types of cloudisense.mjs, the CloudiSENSE browser client.  The API below is written by hand; the frame
// types at the end are generated from the protocol's JSON Schemas (python scripts/gen_dts.py --write).

export declare const PROTOCOL: 1;

/** An error a node answered (`code` is an ErrorCode), or a local one: `disconnected` (the connection
 *  dropped before the answer, or none came up within the timeout), `closed` (client.close() was called). */
export declare class RpcError extends Error {
  constructor(code: string, message?: string, node?: string);
  readonly code: ErrorCode | "disconnected" | "closed" | (string & {});
  /** The node's message, without the code. */
  readonly detail: string;
  /** The node that answered the error, when the reply named one. */
  readonly node?: string;
}

/** MQTT topic filter matching (`+`, `#`; a wildcard first level does not match `$` topics). */
export declare function topicMatches(filter: string, topic: string): boolean;

export interface ConnectOptions {
  /** A token of `[[auth.tokens]]`, or a function read at every hello (after a reconnect too). */
  token?: string | null | (() => string | null | undefined);
  /** The `client` field of hello: how the node's logs name this client. */
  name?: string;
  /** Seconds: the default deadline of calls and requests (default 10). */
  timeout?: number;
  /** Reconnect after the connection drops (default true). */
  reconnect?: boolean;
  /** Seconds before the first retry (default 0.5); doubles up to backoffMax (default 10), ±25 % jitter. */
  backoffInitial?: number;
  backoffMax?: number;
  /** A WebSocket class (default: globalThis.WebSocket). */
  WebSocket?: new (url: string) => WebSocket;
}

export type ClientState = "connecting" | "connected" | "disconnected" | "auth" | "closed";

/** An event as the handler gets it: `node` is the node it is from (for `$cluster/...` topics: about). */
export type CloudEvent<T = unknown> = Omit<EventFrame, "data"> & { data: T };

export type EventHandler<T = unknown> = (event: CloudEvent<T>) => void;

/** Withdraws a subscription or an offered method. */
export type Unsubscribe = () => Promise<void>;

/** What `broadcast` resolves with. */
export interface BroadcastResult<T = unknown> {
  results: Record<string, T>;
  errors: Record<string, WireError>;
}

export interface CallOptions {
  /** Seconds: the call's deadline, sent to the node (default: ConnectOptions.timeout). */
  timeout?: number;
}

/** Answers a call to a client-offered method; `caller` is the invoke frame's (who called). */
export type MethodHandler<P = Record<string, unknown>, R = unknown> =
  (params: P, context: { caller: Caller; timeout?: number }) => R | Promise<R>;

export interface RegisterOptions {
  /** A JSON Schema of the params (default {"type": "object"}). */
  params?: Record<string, unknown>;
  /** Whether a call changes state (default true: the agent asks before calling it). */
  mutates?: boolean;
  /** At most 500 characters; shown by node.describe, the dashboard and the agent. */
  description?: string;
}

export interface ConnectionEvents {
  connect: (welcome: WelcomeFrame) => void;
  disconnect: (info: { code: number; reason: string }) => void;
  error: (error: RpcError) => void;
  state: (state: ClientState) => void;
  event: (event: CloudEvent) => void;
  dropped: (frame: DroppedFrame) => void;
}

export declare class Client {
  constructor(url: string, options?: ConnectOptions);
  readonly url: string;
  readonly state: ClientState;
  /** The last welcome (null before the first one). */
  readonly welcome: WelcomeFrame | null;
  /** The id of the node this client is connected to. */
  readonly node: string | null;
  readonly connected: boolean;

  /** Listen to a connection event; returns a function that stops listening. */
  on<K extends keyof ConnectionEvents>(name: K, listener: ConnectionEvents[K]): () => void;

  /** Call `service.method` on `node` (null or "." = the node this client is connected to). */
  call<R = unknown>(node: string | null | undefined, service: string, method: string,
    params?: Record<string, unknown>, options?: CallOptions): Promise<R>;
  /** Call `service.method` on every online node. */
  broadcast<R = unknown>(service: string, method: string, params?: Record<string, unknown>,
    options?: CallOptions): Promise<BroadcastResult<R>>;
  /** Publish an event as the node this client is connected to (operators only). */
  publish(topic: string, data?: unknown): Promise<void>;
  /** Subscribe to an MQTT filter on `node` (null = this node); resolves once the node accepted it
   *  (at once when not connected: it is made on the next connection). */
  subscribe<T = unknown>(node: string | null | undefined, topic: string, handler?: EventHandler<T>): Promise<Unsubscribe>;
  subscriptions(): Array<{ node: string; topic: string; handlers: number; active: boolean }>;
  /** Offer `service.method` from this client (operators only); made again after every reconnect. */
  register<P = Record<string, unknown>, R = unknown>(service: string, method: string,
    handler: MethodHandler<P, R>, options?: RegisterOptions): Promise<Unsubscribe>;
  registrations(): Array<{ service: string; method: string; active: boolean }>;
  /** Set the token the next hello sends. */
  setToken(token: ConnectOptions["token"]): void;
  /** Connect again now (after a new token, or to skip the backoff wait). */
  reconnect(): void;
  /** Close for good: pending requests fail with `closed`, no reconnect. */
  close(): void;
}

/** Open a client on a node's WebSocket URL (`ws://HOST:PORT/ws`); it connects in the background. */
export declare function connect(url: string, options?: ConnectOptions): Client;

// BEGIN GENERATED FRAME TYPES (python scripts/gen_dts.py --write)
// The wire frames of protocol v1 (docs/protocol.md), from node/_frames.py's JSON Schemas.

/** The closed set of error codes a node answers (docs/protocol.md, "Error codes"). */
export type ErrorCode =
  | "bad_request"
  | "too_large"
  | "unauthenticated"
  | "forbidden"
  | "unknown_node"
  | "node_offline"
  | "unknown_service"
  | "unknown_method"
  | "invalid_params"
  | "timeout"
  | "overloaded"
  | "conflict"
  | "internal"
;

export interface Caller {
  /** the node the call came from */
  node: string;
  /** the calling client's name, when it is connected to this node */
  client?: string | null;
}

export interface WireError {
  code: string;
  message: string;
}

export interface YieldError {
  /** one of the error codes; any other becomes 'internal' */
  code: string;
  message?: string;
}

// Client → node
/** First frame of a session; required first when auth is on. */
export interface HelloFrame {
  type: "hello";
  id: string | number;
  token?: string | null;
  client?: string | null;
  protocol?: number;
}

/** Call a method on this node (`node` absent or this node's id), another node, or every node (`"*"`). */
export interface CallFrame {
  type: "call";
  id: string | number;
  node?: string | null;
  service: string;
  method: string;
  params?: Record<string, unknown> | null;
  timeout?: number | null;
  reply?: boolean;
}

/** Subscribe to events matching an MQTT topic filter on this node or another one. */
export interface SubscribeFrame {
  type: "subscribe";
  id: string | number;
  node?: string | null;
  topic: string;
}

export interface UnsubscribeFrame {
  type: "unsubscribe";
  id: string | number;
  node?: string | null;
  topic: string;
}

/** Publish an event as the node the client is connected to. */
export interface PublishFrame {
  type: "publish";
  id: string | number;
  topic: string;
  data?: unknown;
}

/** Offer ``service.method`` from this client (operators only); the node sends it ``invoke`` frames. */
export interface RegisterFrame {
  type: "register";
  id: string | number;
  service: string;
  method: string;
  /** JSON Schema of the params (shown to callers and the agent) */
  params?: Record<string, unknown>;
  /** whether a call may change state (viewers may not call it; the agent asks approval) */
  mutates?: boolean;
  /** plain text: no control or invisible characters */
  description?: string;
}

/** Withdraw a method this client registered. */
export interface UnregisterFrame {
  type: "unregister";
  id: string | number;
  service: string;
  method: string;
}

/** The client's answer to an ``invoke``: ``result``, or ``error``. No reply frame. */
export interface YieldFrame {
  type: "yield";
  invocation: string;
  result?: unknown;
  error?: YieldError | null;
}

export type ClientFrame =
  | HelloFrame
  | CallFrame
  | SubscribeFrame
  | UnsubscribeFrame
  | PublishFrame
  | RegisterFrame
  | UnregisterFrame
  | YieldFrame
;

// Node → client
export interface WelcomeFrame {
  type: "welcome";
  id: string | number;
  node: string;
  role: "operator" | "viewer";
  protocol?: number;
  /** 'none': the node has no [[auth.tokens]], every client is an operator */
  auth?: "token" | "none";
  /** the node listens on a non-loopback address */
  exposed?: boolean;
}

export interface ResultFrame {
  type: "result";
  id: string | number;
  node: string;
  result: unknown;
}

export interface ErrorFrame {
  type: "error";
  id: string | number | null;
  node?: string | null;
  error: WireError;
}

export interface SubscribedFrame {
  type: "subscribed";
  id: string | number;
}

export interface UnsubscribedFrame {
  type: "unsubscribed";
  id: string | number;
}

export interface PublishedFrame {
  type: "published";
  id: string | number;
}

export interface EventFrame {
  type: "event";
  node: string;
  topic: string;
  data: unknown;
  ts: number;
}

/** Sent to a slow client after events were dropped from its queue. */
export interface DroppedFrame {
  type: "dropped";
  count: number;
  total: number;
}

export interface RegisteredFrame {
  type: "registered";
  id: string | number;
  service: string;
  method: string;
}

export interface UnregisteredFrame {
  type: "unregistered";
  id: string | number;
}

/** A call of a method this client registered; answer it with ``yield``. */
export interface InvokeFrame {
  type: "invoke";
  /** node-chosen id; the yield's key */
  invocation: string;
  service: string;
  method: string;
  params: Record<string, unknown>;
  caller: Caller;
  /** seconds left of the caller's deadline */
  timeout: number;
}

export type NodeFrame =
  | WelcomeFrame
  | ResultFrame
  | ErrorFrame
  | SubscribedFrame
  | UnsubscribedFrame
  | PublishedFrame
  | EventFrame
  | DroppedFrame
  | RegisteredFrame
  | UnregisteredFrame
  | InvokeFrame
;

// END GENERATED FRAME TYPES
