// cloudisense.mjs: a browser (and Node ≥ 22) client of the CloudiSENSE WebSocket protocol v1
// (docs/protocol.md).  One ES module, no dependencies, no build step.  Every node serves it at
// /lib/cloudisense.mjs; clients/js/ ships the same file as an npm package, with types in cloudisense.d.ts.
//
//   import { connect } from "/lib/cloudisense.mjs";
//   const client = connect("ws://127.0.0.1:8765/ws", { token });
//   const off = await client.subscribe("node-b", "metrics/#", (ev) => console.log(ev.topic, ev.data));
//   console.log(await client.call("node-b", "system", "info"));
//
// The client reconnects on its own (capped, jittered backoff), then subscribes and registers again
// everything that was live.  Requests made while it is away wait for the connection within their timeout.

export const PROTOCOL = 1;

/** An error answered by a node (`code` is one of docs/protocol.md's error codes), or a local one:
 *  `disconnected` (the connection dropped before the answer), `closed` (client.close() was called). */
export class RpcError extends Error {
  constructor(code, message, node) {
    super(`${code}: ${message || ""}`);
    this.name = "RpcError";
    this.code = String(code);
    this.detail = String(message || "");
    if (node !== undefined && node !== null) this.node = String(node);
  }
}

/** MQTT filter matching (3.1.1 §4.7), including the rule that a wildcard first level skips `$` topics. */
export function topicMatches(filter, topic) {
  if (filter === topic) return true;
  const f = filter.split("/");
  const t = topic.split("/");
  if ((f[0] === "+" || f[0] === "#") && topic.startsWith("$")) return false;
  for (let i = 0; i < f.length; i++) {
    if (f[i] === "#") return true;
    if (i >= t.length) return false;
    if (f[i] !== "+" && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

const DEFAULTS = {
  token: null,            // string, or a function returning one (read at every hello)
  name: "cloudisense.mjs",  // the `client` field of hello: how the node's logs name this client
  timeout: 10,            // seconds: a call's deadline (sent to the node) and a request's wait
  reconnect: true,
  backoffInitial: 0.5,    // seconds before the first retry; doubles up to backoffMax, ±25 % jitter
  backoffMax: 10,
  WebSocket: null,        // a WebSocket class; default: globalThis.WebSocket
};

const isAuthCode = (code) => code === "unauthenticated" || code === "forbidden";
// Refusals that may pass later on the same connection: a node that restarted has not heard from the
// others yet (unknown_node), or the other node is away for a moment.
const RETRY_CODES = new Set(["unknown_node", "node_offline", "timeout", "overloaded"]);
const asError = (e) => (e && typeof e === "object" && typeof e.code === "string"
  ? new RpcError(e.code, e.message) : new RpcError("internal", "error without details"));

/** Open a client on a node's WebSocket URL (`ws://HOST:PORT/ws`).  Returns at once; the client
 *  connects in the background and emits `connect` with the node's welcome. */
export function connect(url, options = {}) {
  return new Client(url, options);
}

export class Client {
  constructor(url, options = {}) {
    this.url = String(url);
    this.options = { ...DEFAULTS, ...options };
    /** connecting | connected | disconnected | auth (the token was refused: set one, then reconnect()) | closed */
    this.state = "connecting";
    this.welcome = null;          // the last welcome frame: {node, role, protocol, auth, exposed}
    this.ws = null;
    this._ids = 0;
    this._pending = new Map();    // request id -> {resolve, reject, timer}
    this._waiters = new Set();    // requests waiting for the connection
    this._subs = new Map();       // "node\0topic" -> {node, topic, handlers: Set, active, ready}
    this._regs = new Map();       // "service.method" -> {service, method, handler, spec, active}
    this._listeners = new Map();  // event name -> Set of functions
    this._backoff = this.options.backoffInitial;
    this._retry = null;
    this._rewires = new Set();    // timers of subscriptions/methods to wire again (see _wireFailed)
    const WS = this.options.WebSocket || globalThis.WebSocket;
    if (typeof WS !== "function") throw new TypeError("no WebSocket here: pass one as connect(url, {WebSocket})");
    if (!/^wss?:\/\//i.test(this.url)) throw new TypeError(`not a ws:// or wss:// URL: ${this.url}`);
    this._open();
  }

  /** The id of the node this client is connected to (null before the first welcome). */
  get node() { return this.welcome ? this.welcome.node : null; }
  get connected() { return this.state === "connected"; }

  // ------------------------------------------------------------------ events
  /** `connect` (welcome), `disconnect` ({code, reason}), `error` (RpcError), `state` (state),
   *  `event` (every event frame), `dropped` ({count, total}).  Returns a function that removes it. */
  on(name, fn) {
    let set = this._listeners.get(name);
    if (!set) this._listeners.set(name, set = new Set());
    set.add(fn);
    return () => set.delete(fn);
  }

  _emit(name, ...args) {
    for (const fn of [...(this._listeners.get(name) || [])]) {
      try { fn(...args); } catch (err) { console.error(`cloudisense: a '${name}' listener threw`, err); }
    }
  }

  _setState(s) {
    if (this.state === s) return;
    this.state = s;
    this._emit("state", s);
  }

  // -------------------------------------------------------------- connection
  _open() {
    clearTimeout(this._retry);
    this._retry = null;
    if (this.state === "closed" || (this.ws && this.ws.readyState <= 1)) return;
    this._setState("connecting");
    const WS = this.options.WebSocket || globalThis.WebSocket;
    let ws;
    try {
      ws = new WS(this.url);
    } catch (err) {
      this._emit("error", new RpcError("bad_request", `cannot open ${this.url}: ${err.message || err}`));
      this._closed(null, 1006, "");
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._hello(ws);
    ws.onmessage = (m) => this._frame(ws, m.data);
    ws.onclose = (e) => this._closed(ws, e.code, e.reason);
    ws.onerror = () => {};        // a close follows, with the code
  }

  async _hello(ws) {
    let token = this.options.token;
    if (typeof token === "function") token = token();
    const frame = { type: "hello", client: this.options.name, protocol: PROTOCOL };
    if (token) frame.token = token;
    let welcome;
    try {
      welcome = await this._send(ws, frame, this.options.timeout);
    } catch (err) {
      if (ws !== this.ws) return;
      if (isAuthCode(err.code)) {
        this._setState("auth");   // no retry with a token that was refused: reconnect() after a new one
        this._emit("error", err);
      } else {
        ws.close();
      }
      return;
    }
    if (ws !== this.ws) return;
    this.welcome = welcome;
    this._backoff = this.options.backoffInitial;
    this._setState("connected");
    for (const w of [...this._waiters]) w();
    // What was live before: subscribed and registered again before `connect` is told.
    await Promise.all([
      ...[...this._subs.values()].filter((s) => s.wiredOn !== ws)
        .map((s) => this._wireSub(s).catch((err) => this._wireFailed(ws, s, err, this._subs, this._wireSub))),
      ...[...this._regs.values()].filter((r) => r.wiredOn !== ws)
        .map((r) => this._wireReg(r).catch((err) => this._wireFailed(ws, r, err, this._regs, this._wireReg))),
    ]);
    if (ws === this.ws) this._emit("connect", welcome);
  }

  /** A subscription or method refused on a new connection: told as an `error`, and tried again while
   *  this connection lasts when the refusal may pass (RETRY_CODES), backing off like reconnects. */
  _wireFailed(ws, item, err, table, wire, delay = this.options.backoffInitial) {
    this._emit("error", err);
    if (ws !== this.ws || !RETRY_CODES.has(err.code)) return;
    const timer = setTimeout(() => {
      this._rewires.delete(timer);
      if (ws !== this.ws || item.active || ![...table.values()].includes(item)) return;
      wire.call(this, item).catch((e) =>
        this._wireFailed(ws, item, e, table, wire, Math.min(delay * 2, this.options.backoffMax)));
    }, delay * (0.75 + Math.random() * 0.5) * 1000);
    this._rewires.add(timer);
  }

  _closed(ws, code, reason) {
    if (ws !== this.ws) return;
    this.ws = null;
    for (const t of this._rewires) clearTimeout(t);
    this._rewires.clear();
    const err = new RpcError(this.state === "closed" ? "closed" : "disconnected", "connection closed");
    for (const p of this._pending.values()) { clearTimeout(p.timer); p.reject(err); }
    this._pending.clear();
    for (const s of this._subs.values()) { s.active = false; s.wiredOn = null; }
    for (const r of this._regs.values()) { r.active = false; r.wiredOn = null; }
    const was = this.state;
    if (was === "closed") return;
    if (was !== "auth") this._setState("disconnected");
    if (was === "connected" || was === "auth") this._emit("disconnect", { code, reason: reason || "" });
    if (was === "auth" || !this.options.reconnect) return;
    const delay = this._backoff * (0.75 + Math.random() * 0.5);
    this._backoff = Math.min(this._backoff * 2, this.options.backoffMax);
    this._retry = setTimeout(() => this._open(), delay * 1000);
  }

  /** Connect again now (after a new token, or to skip the backoff wait). */
  reconnect() {
    if (this.state === "closed") return;
    this._backoff = this.options.backoffInitial;
    if (this.ws && this.ws.readyState === 1) { this._setState("connecting"); this._hello(this.ws); return; }
    if (this.ws) { const ws = this.ws; this.ws = null; ws.close(); }
    this._open();
  }

  /** Set the token the next hello sends (string, function, or null). */
  setToken(token) { this.options.token = token; }

  /** Close for good: pending requests fail with `closed`, no reconnect. */
  close() {
    clearTimeout(this._retry);
    const ws = this.ws;
    this._setState("closed");
    for (const w of [...this._waiters]) w();
    if (ws) { this._closed(ws, 1000, "closed by the client"); ws.close(1000); }
  }

  // ---------------------------------------------------------------- requests
  _send(ws, frame, timeout) {
    const id = String(++this._ids);
    return new Promise((resolve, reject) => {
      if (!ws || ws.readyState !== 1) { reject(new RpcError("disconnected", "not connected")); return; }
      const timer = setTimeout(() => {
        this._pending.delete(id);
        reject(new RpcError("timeout", `no answer from the node within ${timeout} s`));
      }, timeout * 1000);
      this._pending.set(id, { resolve, reject, timer });
      ws.send(JSON.stringify({ ...frame, id }));
    });
  }

  /** A request once connected: waits for the connection within `timeout` seconds (plus 2 s of slack
   *  for the answer to travel), then resolves with the reply frame or rejects with an RpcError. */
  async _request(frame, timeout = this.options.timeout) {
    const deadline = Date.now() + (timeout + 2) * 1000;
    if (this.state !== "connected") await this._connected(deadline);
    return this._send(this.ws, frame, Math.max(0.1, (deadline - Date.now()) / 1000));
  }

  _connected(deadline) {
    return new Promise((resolve, reject) => {
      const done = () => {
        clearTimeout(timer);
        this._waiters.delete(done);
        if (this.state === "connected") resolve();
        else reject(new RpcError(this.state === "closed" ? "closed" : "disconnected", "not connected"));
      };
      const timer = setTimeout(() => {
        this._waiters.delete(done);
        reject(new RpcError("disconnected", `not connected to ${this.url}`));
      }, Math.max(0, deadline - Date.now()));
      if (this.state === "closed") { done(); return; }
      this._waiters.add(done);
    });
  }

  _frame(ws, raw) {
    if (ws !== this.ws) return;
    let msg;
    try { msg = JSON.parse(raw); } catch { return; }
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "event") return this._event(msg);
    if (msg.type === "invoke") return this._invoke(ws, msg);
    if (msg.type === "dropped") return this._emit("dropped", msg);
    const id = msg.id === undefined || msg.id === null ? null : String(msg.id);
    const p = id === null ? undefined : this._pending.get(id);
    if (msg.type === "error") {
      const err = asError(msg.error);
      if (msg.node) err.node = String(msg.node);
      if (p) { this._pending.delete(id); clearTimeout(p.timer); p.reject(err); }
      if (err.code === "unauthenticated" && this.state === "connected") {
        this._setState("auth");   // the session lost its authentication (the node restarted with tokens)
        this._emit("error", err);
      } else if (!p) {
        this._emit("error", err);
      }
      return;
    }
    if (p) { this._pending.delete(id); clearTimeout(p.timer); p.resolve(msg); }
  }

  // ------------------------------------------------------------------- calls
  /** Call `service.method` on `node` (null, "" or "." = the node this client is connected to).
   *  Resolves with the method's result; rejects with an RpcError. */
  async call(node, service, method, params = {}, { timeout } = {}) {
    const t = timeout ?? this.options.timeout;
    const frame = { type: "call", service, method, params: params || {}, timeout: t };
    if (node && node !== ".") frame.node = node;
    return (await this._request(frame, t)).result;
  }

  /** Call `service.method` on every online node: resolves with {results: {node: result}, errors: {node: {code, message}}}. */
  async broadcast(service, method, params = {}, { timeout } = {}) {
    return this.call("*", service, method, params, { timeout });
  }

  /** Publish an event as the node this client is connected to (operators only). */
  async publish(topic, data) {
    await this._request({ type: "publish", topic, data: data === undefined ? null : data });
  }

  // ----------------------------------------------------------- subscriptions
  /** Subscribe to `topic` (an MQTT filter) on `node` (null = this node).  Resolves, once the node
   *  accepted it, with an async function that unsubscribes.  Subscriptions to the same (node, topic)
   *  share one on the wire; each handler gets every event frame {node, topic, data, ts} that matches. */
  async subscribe(node, topic, handler) {
    node = node && node !== "." ? String(node) : "";
    topic = String(topic);
    const key = `${node}\u0000${topic}`;
    let s = this._subs.get(key);
    const fn = typeof handler === "function" ? handler : () => {};
    if (!s) {
      s = { node, topic, handlers: new Set(), active: false, ready: null, wiredOn: null };
      this._subs.set(key, s);
    }
    s.handlers.add(fn);
    // Not connected: kept, and subscribed on the next connection (a refusal then is an `error` event).
    if (this.state === "connected" && s.wiredOn !== this.ws) this._wireSub(s);
    if (s.ready && s.wiredOn === this.ws) {
      try {
        await s.ready;
      } catch (err) {
        s.handlers.delete(fn);
        if (!s.handlers.size && this._subs.get(key) === s) this._subs.delete(key);
        throw err;
      }
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      s.handlers.delete(fn);
      if (s.handlers.size || this._subs.get(key) !== s) return;
      this._subs.delete(key);
      if (!s.active || this.state !== "connected") return;
      s.active = false;
      const frame = { type: "unsubscribe", topic: s.topic };
      if (s.node) frame.node = s.node;
      await this._request(frame);
    };
  }

  _wireSub(s) {
    const frame = { type: "subscribe", topic: s.topic };
    if (s.node) frame.node = s.node;
    s.wiredOn = this.ws;
    s.ready = this._send(this.ws, frame, this.options.timeout).then(() => { s.active = true; });
    return s.ready;
  }

  /** The live subscriptions: [{node, topic, handlers, active}] (node "" = this node). */
  subscriptions() {
    return [...this._subs.values()].map(({ node, topic, handlers, active }) =>
      ({ node, topic, handlers: handlers.size, active }));
  }

  _matches(s, ev) {
    if (s.node) {
      if (ev.node !== s.node) return false;
      // A node also tells the subscribers of another node when that node goes away and comes back.
      return topicMatches(s.topic, ev.topic) || ev.topic === "$cluster/node/offline" || ev.topic === "$cluster/node/online";
    }
    if (!topicMatches(s.topic, ev.topic)) return false;
    // This node's events, and `$` topics about other nodes (`$cluster/...` name the node they are about).
    return !ev.node || ev.node === this.node || ev.topic.startsWith("$");
  }

  _event(ev) {
    ev.topic = String(ev.topic || "");
    this._emit("event", ev);
    for (const s of this._subs.values()) {
      if (!s.handlers.size || !this._matches(s, ev)) continue;
      for (const fn of [...s.handlers]) {
        try { fn(ev); } catch (err) { console.error(`cloudisense: a handler of ${s.topic} threw`, err); }
      }
    }
  }

  // ---------------------------------------------------------- offered methods
  /** Offer `service.method` from this client (operators only): the node lists it like its own
   *  services and routes calls to `handler(params, {caller, timeout})`, whose return value (or
   *  promise) is the result; throwing an RpcError answers its code.  `spec`: {params (a JSON Schema),
   *  mutates (default true), description}.  Resolves with an async function that withdraws it. */
  async register(service, method, handler, spec = {}) {
    if (typeof handler !== "function") throw new TypeError("register: handler must be a function");
    const key = `${service}.${method}`;
    if (this._regs.has(key)) throw new RpcError("conflict", `${key} is already registered by this client`);
    const r = { service: String(service), method: String(method), handler, spec, active: false, wiredOn: null };
    this._regs.set(key, r);
    // Not connected: kept, and registered on the next connection (a refusal then is an `error` event).
    if (this.state === "connected") {
      try {
        await this._wireReg(r);
      } catch (err) {
        if (this._regs.get(key) === r) this._regs.delete(key);
        throw err;
      }
    }
    let done = false;
    return async () => {
      if (done) return;
      done = true;
      if (this._regs.get(key) !== r) return;
      this._regs.delete(key);
      if (!r.active || this.state !== "connected") return;
      r.active = false;
      await this._request({ type: "unregister", service: r.service, method: r.method });
    };
  }

  _wireReg(r) {
    const frame = { type: "register", service: r.service, method: r.method };
    if (r.spec.params !== undefined) frame.params = r.spec.params;
    if (r.spec.mutates !== undefined) frame.mutates = !!r.spec.mutates;
    if (r.spec.description !== undefined) frame.description = String(r.spec.description);
    r.wiredOn = this.ws;
    return this._send(this.ws, frame, this.options.timeout).then(() => { r.active = true; });
  }

  /** The methods this client offers: [{service, method, active}]. */
  registrations() {
    return [...this._regs.values()].map(({ service, method, active }) => ({ service, method, active }));
  }

  async _invoke(ws, msg) {
    const r = this._regs.get(`${msg.service}.${msg.method}`);
    let reply;
    if (!r) {
      reply = { error: { code: "unknown_method", message: `this client does not offer ${msg.service}.${msg.method}` } };
    } else {
      try {
        const result = await r.handler(msg.params || {}, { caller: msg.caller || {}, timeout: msg.timeout });
        reply = { result: result === undefined ? null : result };
      } catch (err) {
        reply = err instanceof RpcError
          ? { error: { code: err.code, message: err.detail } }
          : { error: { code: "internal", message: String((err && err.message) || err) } };
      }
    }
    if (ws === this.ws && ws.readyState === 1) {
      ws.send(JSON.stringify({ type: "yield", invocation: msg.invocation, ...reply }));
    }
  }
}
