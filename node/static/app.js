// CloudiSENSE dashboard: a page on the browser library /lib/cloudisense.mjs (clients/js/), which
// holds the WebSocket, hello/token, requests, reconnect with resubscription, and shares one
// subscription on the wire per (node, topic) between the views that want it.
//
// Shape of this file:
//   client      – the library's client; the page follows its connection events.
//   state       – what the page knows; network handlers only mutate it and
//                 call invalidate(part).
//   render*     – draw the dirty parts, at most every FRAME_MS (coalesced with
//                 a timer + requestAnimationFrame), so a burst of events from
//                 50 nodes costs a handful of renders, not thousands.
//   cluster view – cards for a small cluster; above TABLE_ABOVE nodes a virtualised
//                 table (only the rows in view exist, and only they are updated),
//                 with search, sortable columns and summary counts. An event only
//                 merges into state.nodes and marks the view dirty (O(1)); "now" is
//                 read once per render and times are formatted through caches.
import { connect } from "/lib/cloudisense.mjs";

(() => {
  const FRAME_MS = 250;            // render at most ~4 times a second
  const TABLE_ABOVE = 64;          // more nodes than this: the table instead of cards
  const ROW_H = 28;                // px: the table's fixed row height (style.css .nt-row)
  const OVERSCAN = 4;              // table rows drawn beyond the viewport on each side
  const STATUS_ORDER = { online: 0, stale: 1, offline: 2 };
  const CHART_POINTS = 120;        // two minutes of $sys/stats samples
  const INSPECTOR_ROWS = 200;      // events kept in the inspector table
  const CALL_TIMEOUT = 10;         // seconds, sent with every call
  const TOKEN_KEY = "cloudisense.token";
  const CLUSTER_TOPIC = "$cluster/#";
  const STATS_TOPIC = "$sys/stats";
  // This node's own live data: it sends no $cluster/node/state about itself.
  const SELF_TOPICS = ["metrics/#", "process/#"];
  // Remote node shown in the detail panel: live process changes (metrics come
  // with its $cluster/node/state heartbeat anyway).
  const DETAIL_TOPICS = ["process/#"];
  // process/NAME/<what> -> the state the process is in after it.
  const PROCESS_STATES = { started: "running", restarted: "running", stopped: "stopped", exited: "exited" };

  // ------------------------------------------------------------------ state
  const state = {
    conn: "connecting",          // connecting | connected | disconnected | auth
    self: null,                  // id of the node we are connected to
    role: null,                  // operator | viewer
    auth: "token",               // welcome.auth: "none" when the node has no tokens (everyone is an operator)
    exposed: false,              // welcome.exposed: the node listens beyond loopback
    nodes: new Map(),            // id -> node entry of node.cluster (+ live merges)
    catalogs: new Map(),         // catalog hash -> services (node.cluster's catalogs, online events)
    filter: "",                  // the search box, trimmed and lower case
    sort: { key: "id", dir: 1 }, // the table's order: a key of SORTS, 1 ascending, -1 descending
    selected: null,              // node id shown in the detail panel
    stats: null,                 // last $sys/stats data
    series: [],                  // [{t, calls, events}] for the chart
    insp: { subs: [], events: [], count: 0, paused: false, error: "", view: "pretty" },
    callResult: null,            // {label, ok, text} of the last call made from the page
  };
  // Counters for tests and the console. lag: for each table row updated in place with a newer
  // heartbeat, seconds from the heartbeat's own timestamp (the sender's clock) to the render that
  // showed it; clicks: from a click on a node (the input event's timestamp) to the frame that shows
  // its detail.
  const debug = {
    renders: 0, events: 0, dropped: 0, disconnects: 0,
    lag: { n: 0, max: 0, sum: 0 }, clicks: [],
  };

  // ------------------------------------------------------------- utilities
  const $ = (id) => document.getElementById(id);

  /** Tiny element builder: h("td", {class: "x", dataset: {testid: "y"}}, "text", child). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") el.className = v;
      else if (k === "dataset") Object.assign(el.dataset, v);
      else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      el.append(c instanceof Node ? c : String(c));
    }
    return el;
  }

  /** Set text only when it changed (keeps layout work down at 50 nodes). */
  function setText(el, text) {
    text = String(text);
    if (el.textContent !== text) el.textContent = text;
  }

  function setAttr(el, name, value) {
    value = String(value);
    if (el.getAttribute(name) !== value) el.setAttribute(name, value);
  }

  const nowS = () => Date.now() / 1000;
  // Timestamps on the wire are epoch seconds; tolerate milliseconds.
  const toS = (t) => (typeof t === "number" && t > 0 ? (t > 1e12 ? t / 1000 : t) : null);
  // The clock of the current render: read once per render (and per scroll frame), not per row.
  const tick = { now: nowS() };

  function ago(ts) {
    const t = toS(ts);
    if (t === null) return "—";
    return duration(Math.max(0, tick.now - t));
  }

  const durations = [];   // whole seconds -> text, for the first hour (ages of a live cluster)

  function duration(sec) {
    if (typeof sec !== "number" || !isFinite(sec)) return "—";
    sec = Math.floor(sec);
    if (sec >= 0 && sec < 3600) return durations[sec] ??= formatDuration(sec);
    return formatDuration(sec);
  }

  function formatDuration(sec) {
    if (sec < 60) return `${sec}s`;
    if (sec < 3600) return `${Math.floor(sec / 60)}m ${sec % 60}s`;
    if (sec < 86400) return `${Math.floor(sec / 3600)}h ${Math.floor((sec % 3600) / 60)}m`;
    return `${Math.floor(sec / 86400)}d ${Math.floor((sec % 86400) / 3600)}h`;
  }

  // toLocaleTimeString is slow (it was 41 % of the page's time at 1,000 nodes): once per second shown.
  const clocks = new Map();   // whole epoch second -> text
  const clock = (ts) => {
    const t = toS(ts);
    if (t === null) return "";
    const k = Math.floor(t);
    let text = clocks.get(k);
    if (text === undefined) {
      if (clocks.size >= 4096) clocks.clear();
      text = new Date(k * 1000).toLocaleTimeString([], { hour12: false });
      clocks.set(k, text);
    }
    return text;
  };
  const pct = (v) => (typeof v === "number" ? `${v.toFixed(0)}%` : "—");
  const num = (v, digits = 0) => (typeof v === "number" ? v.toFixed(digits) : "—");
  const ms = (v) => (typeof v === "number" ? (v < 10 ? v.toFixed(2) : v.toFixed(0)) + " ms" : "—");

  function json(value, max) {
    let s;
    try { s = JSON.stringify(value); } catch { s = String(value); }
    if (s === undefined) s = "null";
    return max && s.length > max ? s.slice(0, max) + "…" : s;
  }

  // ------------------------------------------------------------- rendering
  const dirty = new Set();
  let renderTimer = null;
  let lastRender = 0;

  function invalidate(...parts) {
    for (const p of parts) dirty.add(p);
    if (renderTimer !== null) return;
    const wait = Math.max(0, lastRender + FRAME_MS - performance.now());
    renderTimer = setTimeout(() => requestAnimationFrame(render), wait);
  }

  function render() {
    renderTimer = null;
    lastRender = performance.now();
    tick.now = nowS();
    debug.renders++;
    const parts = new Set(dirty);
    dirty.clear();
    if (parts.has("header")) renderHeader();
    if (parts.has("nodes")) renderNodes();
    if (parts.has("nodes")) renderSparks();
    if (parts.has("detail")) renderDetail();
    if (parts.has("stats")) renderStats();
    if (parts.has("chart")) renderChart();
    if (parts.has("insp")) renderInspector();
  }

  // ---------------------------------------------------------- connection
  let client = null;   // the library's client, made by init()

  function openClient() {
    const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws";
    client = connect(url, { name: "dashboard", timeout: CALL_TIMEOUT, token: () => sessionStorage.getItem(TOKEN_KEY) });
    client.on("state", (s) => { if (s === "connecting" || s === "disconnected") setConn(s); });
    client.on("disconnect", (e) => {
      debug.disconnects++;
      if (client.state !== "auth") setConn("disconnected", e.reason);
    });
    client.on("dropped", (d) => { debug.dropped += Number(d && d.count) || 0; });
    client.on("event", onEvent);
    client.on("error", (err) => {
      if (client.state === "auth") askToken(sessionStorage.getItem(TOKEN_KEY) ? "That token was not accepted." : "");
      else console.warn("cloudisense", err);
    });
    // After the welcome, and after the library subscribed again to everything the page had.
    client.on("connect", (welcome) => {
      state.self = welcome.node;
      state.role = welcome.role || "operator";
      state.auth = welcome.auth === "none" ? "none" : "token";
      state.exposed = welcome.exposed === true;
      setConn("connected");
      hideToken();
      invalidate("header", "nodes", "detail", "insp");
      refreshCluster();
    });
  }

  function setConn(s, reason) {
    state.conn = s;
    state.connReason = reason || "";
    invalidate("header");
  }

  /** Subscribe for the page's lifetime (wired again after every reconnect by the library). */
  const keep = (node, topic) => client.subscribe(node, topic);

  // ------------------------------------------------------------ cluster
  let clusterInFlight = false;

  async function refreshCluster() {
    if (clusterInFlight) return;
    clusterInFlight = true;
    try {
      // Compact rows with each distinct catalog once: the whole table (a catalog in every row) is
      // megabytes at 1,000 nodes, more than the node queues for one client.
      const res = await client.call(null, "node", "cluster", { catalogs: true });
      if (res && res.self) state.self = res.self;
      for (const [hash, services] of Object.entries((res && res.catalogs) || {})) state.catalogs.set(hash, services);
      const seen = new Set();
      for (const n of (res && res.nodes) || []) {
        seen.add(n.id);
        upsertNode(n.id, n);
      }
      // Nodes the cluster no longer knows about are dropped from the view.
      for (const id of [...state.nodes.keys()]) if (!seen.has(id)) state.nodes.delete(id);
      table.viewDirty = true;
      if (!state.selected && state.self) select(state.self);
      invalidate("nodes", "detail", "insp");
    } catch (err) {
      console.warn("node.cluster failed", err);
    } finally {
      clusterInFlight = false;
    }
  }

  const catalogAsked = new Set();   // catalog hashes node.cluster was asked for once (not again per heartbeat)

  /** Merge what the node says about `id` (a row, or an event's entry) into the page's view: O(1). */
  function upsertNode(id, data) {
    const prev = state.nodes.get(id);
    const node = Object.assign(prev || { id, online: true, metrics: {}, services: {}, processes: [] },
      data && typeof data === "object" ? data : {});
    node.id = id;
    node._seen = nowS();
    node._rev = (node._rev || 0) + 1;
    if (data && Array.isArray(data.processes)) for (const p of node.processes) p._at = node._seen;
    // Services travel once per catalog (by hash), not with every heartbeat.
    const hash = node.catalog_hash;
    if (hash && data && isFull(data.services)) state.catalogs.set(hash, data.services);
    else if (hash && state.catalogs.has(hash)) node.services = state.catalogs.get(hash);
    else if (hash && !catalogAsked.has(hash)) {   // a catalog we have not seen (heartbeats carry only its hash)
      catalogAsked.add(hash);
      refreshCluster();
    }
    if (!prev) {
      node._lid = id.toLowerCase();
      state.nodes.set(id, node);
      table.viewDirty = true;
    }
    return node;
  }

  const isFull = (o) => { if (!o || typeof o !== "object") return false; for (const _ in o) return true; return false; };

  /** online | stale | offline */
  const statusOf = (n) => (n.online === false ? "offline" : n.status === "stale" ? "stale" : "online");

  function setStatus(n, status) {
    if (n.status !== status) table.viewDirty = true;   // the status filter and order may change
    n.status = status;
  }

  function onClusterEvent(ev) {
    const id = ev.node || (ev.data && ev.data.id);
    if (!id) return;
    const data = ev.data && typeof ev.data === "object" ? ev.data : {};
    const kind = ev.topic.slice("$cluster/node/".length);
    const known = state.nodes.has(id);
    if (kind === "offline") {
      const n = upsertNode(id, data);
      if (n.online !== false || data.since === undefined) n.since = data.since ?? ev.ts ?? nowS();
      n.online = false;
      setStatus(n, "offline");
    } else if (kind === "online") {
      const wasOnline = known && state.nodes.get(id).online !== false;
      const n = upsertNode(id, data);
      if (!wasOnline && data.since === undefined) n.since = ev.ts ?? nowS();
      n.online = true;
      setStatus(n, "online");
    } else if (kind === "stale") {
      const n = upsertNode(id, data);
      setStatus(n, "stale");
    } else if (kind === "state") {
      const n = upsertNode(id, data);
      if (data.online === undefined) n.online = true;
      setStatus(n, typeof data.status === "string" ? data.status : "online");
      // The heartbeat's own time (the sender's clock), for the lag the table measures.
      n._hb = toS(data.metrics && data.metrics.ts) ?? toS(data.last_seen) ?? toS(ev.ts);
    } else {
      return;
    }
    table.dataDirty = true;
    invalidate("nodes");
    if (id === state.selected) invalidate("detail");
    if (!known) invalidate("insp");   // a new node for the inspector's select
  }

  function onMetricsEvent(ev) {
    const n = state.nodes.get(ev.node);
    const d = ev.data;
    if (!n || !d || typeof d !== "object") return;
    const keys = ["cpu_percent", "memory_percent", "disk_percent", "temperature_c", "load"];
    if (!keys.some((k) => k in d)) return;
    n.metrics = Object.assign({}, n.metrics, d);
    n._rev++;
    table.dataDirty = true;
    const ts = toS(ev.ts);
    if (ts && ts > (n.last_seen || 0)) n.last_seen = ts;
    invalidate("nodes");
    if (ev.node === state.selected) invalidate("detail");
  }

  function onProcessEvent(ev, topic) {
    const n = state.nodes.get(ev.node);
    const d = ev.data;
    if (!n || !d || typeof d !== "object" || !d.name) return;
    const what = topic.split("/").pop();
    const list = Array.isArray(n.processes) ? n.processes : (n.processes = []);
    let p = list.find((x) => x.name === d.name);
    if (!p) list.push(p = { name: d.name, restarts: 0 });
    for (const k of ["pid", "restarts", "exit_code", "error", "restart_in"]) if (k in d) p[k] = d[k];
    if (PROCESS_STATES[what]) p.state = what === "exited" && d.restart_in ? "backoff" : PROCESS_STATES[what];
    if (p.state === "running" && (what === "started" || what === "restarted")) p.uptime = 0;
    if (p.state !== "running") p.uptime = null;
    p._at = nowS();
    invalidate("nodes");
    if (ev.node === state.selected) invalidate("detail");
  }

  /** A supervisor answer (a process status) updates the row at once. */
  function patchProcess(nodeId, status) {
    const n = state.nodes.get(nodeId);
    if (!n) return;
    const list = Array.isArray(n.processes) ? n.processes : (n.processes = []);
    const p = list.find((x) => x.name === status.name);
    if (p) Object.assign(p, status, { _at: nowS() }); else list.push({ ...status, _at: nowS() });
    invalidate("nodes", "detail");
  }

  // -------------------------------------------------------------- events
  function onEvent(ev) {
    debug.events++;
    const topic = ev.topic;
    if (topic.startsWith("$cluster/node/")) onClusterEvent(ev);
    else if (topic === STATS_TOPIC && (!ev.node || ev.node === state.self)) onStats(ev);
    else if (topic.startsWith("metrics/")) onMetricsEvent(ev);
    else if (topic.startsWith("process/")) onProcessEvent(ev, topic);
    sparkFeed(ev, topic);
  }

  function onStats(ev) {
    const d = ev.data || {};
    state.stats = d;
    const rpc = d.rpc || {};
    const ps = d.pubsub || {};
    state.series.push({
      t: toS(ev.ts) ?? nowS(),
      calls: Number(rpc.calls_per_s) || 0,
      events: Number(ps.events_per_s) || 0,
    });
    if (state.series.length > CHART_POINTS) state.series.splice(0, state.series.length - CHART_POINTS);
    invalidate("stats", "chart");
  }

  // ----------------------------------------------------------- inspector
  /** The handler of every inspector subscription (the library matches events to them). */
  function onInspectorEvent(ev) {
    const insp = state.insp;
    // Paused, or already shown: one frame matching two of the inspector's filters is one row.
    if (insp.paused || insp.events[insp.events.length - 1] === ev) return;
    insp.count++;
    insp.events.push(ev);
    if (insp.events.length > INSPECTOR_ROWS * 2) insp.events.splice(0, insp.events.length - INSPECTOR_ROWS);
    invalidate("insp");
  }

  async function inspectorSubscribe(node, topic) {
    const insp = state.insp;
    topic = topic.trim();
    insp.error = "";
    if (!topic) { insp.error = "enter a topic or filter, e.g. metrics/#"; return invalidate("insp"); }
    if (insp.subs.some((s) => s.node === node && s.topic === topic)) return;
    const sub = { node, topic, state: "pending" };
    insp.subs.push(sub);
    invalidate("insp");
    try {
      sub.off = await client.subscribe(node, topic, onInspectorEvent);
      sub.state = "active";
    } catch (err) {
      insp.subs = insp.subs.filter((s) => s !== sub);
      insp.error = `subscribe ${topic} on ${node || state.self}: ${err.message}`;
    }
    invalidate("insp");
  }

  async function inspectorUnsubscribe(sub) {
    state.insp.subs = state.insp.subs.filter((s) => s !== sub);
    invalidate("insp");
    if (sub.off) await sub.off().catch((err) => console.warn("unsubscribe", err));
  }

  // -------------------------------------------------------------- detail
  let detailStreams = null;   // unsubscribe functions of the detail view's live data

  /** Show `id` in the detail panel. A click (`inputTs`: its event's timeStamp) draws the panel at
   *  once rather than at the next render tick, and records how long until the frame that shows it. */
  function select(id, inputTs) {
    if (state.selected === id) return;
    state.selected = id;
    state.callResult = null;
    if (detailStreams) for (const off of detailStreams) off.then((f) => f()).catch(() => {});
    detailStreams = null;
    if (id && id !== state.self) {
      detailStreams = DETAIL_TOPICS.map((t) => client.subscribe(id, t));
      for (const p of detailStreams) p.catch((err) => console.warn("detail stream", err));
    }
    invalidate("nodes", "detail");
    if (inputTs === undefined) return;
    tick.now = nowS();
    renderDetail();
    if (tableShown) renderTableRows();   // the selected row's highlight
    requestAnimationFrame(() => {
      debug.clicks.push({ node: id, ms: performance.now() - inputTs });
      if (debug.clicks.length > 100) debug.clicks.shift();
    });
  }

  async function callFromPage(nodeId, service, method, params) {
    const label = `${nodeId} ${service}.${method}`;
    state.callResult = { label, ok: null, text: "calling…" };
    invalidate("detail");
    try {
      const result = await client.call(nodeId, service, method, params);
      state.callResult = { label, ok: true, text: JSON.stringify(result, null, 2) };
      if (service === "supervisor" && result && result.name && result.state) patchProcess(nodeId, result);
    } catch (err) {
      state.callResult = { label, ok: false, text: `${err.message}` };
    }
    invalidate("detail");
  }

  // ------------------------------------------------------------ renderers
  function renderHeader() {
    const cs = $("conn-status");
    const labels = {
      connecting: "connecting…",
      connected: "connected",
      disconnected: "disconnected — retrying",
      auth: "token required",
    };
    setText(cs, labels[state.conn] || state.conn);
    setAttr(cs, "data-state", state.conn);
    setText($("self-node"), state.self || "—");
    for (const el of document.querySelectorAll(".self-name")) setText(el, state.self || "this node");
    const role = $("role");
    role.hidden = !state.role;
    // Without tokens every client is an operator: the badge says why, not just "operator".
    setText(role, state.role && state.auth === "none" ? `${state.role} (no tokens configured)` : state.role || "");
    setAttr(role, "data-role", state.role || "");
    role.classList.toggle("no-tokens", state.auth === "none");
    $("open-banner").hidden = !(state.role && state.auth === "none" && state.exposed);
    document.body.classList.toggle("viewer", state.role === "viewer");
    $("token-change").hidden = !sessionStorage.getItem(TOKEN_KEY);
  }

  const cardEls = new Map();   // node id -> {root, fields...}

  function makeCard(id) {
    const f = {};
    const root = h("article", {
      class: "node-card", role: "listitem", tabindex: "0",
      dataset: { testid: "node-card", node: id },
      onclick: (e) => select(id, e.timeStamp),
      onkeydown: (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); select(id, e.timeStamp); } },
    },
      h("div", { class: "nc-head" },
        f.dot = h("span", { class: "dot", "aria-hidden": "true" }),
        h("b", { class: "nc-id", dataset: { testid: "node-id" } }, id),
        f.self = h("span", { class: "badge self", hidden: true }, "this node")),
      f.status = h("div", { class: "nc-status", dataset: { testid: "node-status" } }),
      h("div", { class: "nc-metrics" },
        h("div", { class: "metric" }, h("label", {}, "temp"),
          h("span", { class: "val" },
            f.temp = h("span", { dataset: { testid: "node-temp" } }),
            f.sim = h("span", { class: "badge sim", title: "simulated temperature", dataset: { testid: "node-temp-sim" }, hidden: true }, "sim"))),
        h("div", { class: "metric" }, h("label", {}, "CPU"),
          f.cpu = h("span", { class: "val", dataset: { testid: "node-cpu" } }),
          h("span", { class: "bar" }, f.cpuBar = h("i"))),
        h("div", { class: "metric" }, h("label", {}, "mem"),
          f.mem = h("span", { class: "val", dataset: { testid: "node-mem" } }),
          h("span", { class: "bar" }, f.memBar = h("i")))),
      f.foot = h("div", { class: "nc-foot", dataset: { testid: "node-summary" } }));
    f.root = root;
    return f;
  }

  function bar(el, v) {
    const w = typeof v === "number" ? Math.max(0, Math.min(100, v)) : 0;
    const s = `${w.toFixed(0)}%`;
    if (el.style.width !== s) el.style.width = s;
    const level = w >= 90 ? "hot" : w >= 70 ? "warm" : "";
    if (el.className !== level) el.className = level;
  }

  function processSummary(n) {
    const procs = Array.isArray(n.processes) ? n.processes : [];
    const running = procs.filter((p) => p.state === "running").length;
    const services = Object.keys(n.services || {});
    const parts = [`${services.length} service${services.length === 1 ? "" : "s"}`];
    if (procs.length) parts.push(`${running}/${procs.length} process${procs.length === 1 ? "" : "es"} running`);
    return parts.join(" · ");
  }

  function sortedNodes() {
    return [...state.nodes.values()].sort((a, b) =>
      (a.id === state.self ? -1 : b.id === state.self ? 1 : 0) || a.id.localeCompare(b.id));
  }

  // The cluster view: summary and search always; cards up to TABLE_ABOVE nodes, the table above.
  let tableShown = false;

  function renderNodes() {
    const total = state.nodes.size;
    const sum = summarize();
    setText($("node-count"), total ? `${sum.up}/${total} online` : "loading…");
    $("nodes-empty").hidden = total > 0 || state.conn !== "connected";
    renderSummary(sum);
    const wantTable = total > TABLE_ABOVE;
    if (wantTable !== tableShown) {
      tableShown = wantTable;
      $("node-table").hidden = !wantTable;
      $("nodes").hidden = wantTable;
      table.viewDirty = true;
      if (wantTable) { for (const f of cardEls.values()) f.root.remove(); cardEls.clear(); }
      else { for (const r of table.rows) r.el.remove(); table.rows = []; }
    }
    if (tableShown) renderTable(); else renderCards();
  }

  /** One pass over the members: counts by status, the hottest and the busiest online node. */
  function summarize() {
    const sum = { online: 0, stale: 0, offline: 0, up: 0, hottest: null, busiest: null };
    for (const n of state.nodes.values()) {
      const st = statusOf(n);
      sum[st]++;
      if (n.online !== false) sum.up++;
      if (st === "offline") continue;
      const m = n.metrics || {};
      if (typeof m.temperature_c === "number" && (!sum.hottest || m.temperature_c > sum.hottest.metrics.temperature_c)) sum.hottest = n;
      if (typeof m.cpu_percent === "number" && (!sum.busiest || m.cpu_percent > sum.busiest.metrics.cpu_percent)) sum.busiest = n;
    }
    return sum;
  }

  function renderSummary(sum) {
    const any = state.nodes.size > 0;
    for (const k of ["online", "stale", "offline"]) setText($(`sum-${k}`), any ? sum[k] : "—");
    const pick = (el, n, text) => {
      setText(el, n ? text : "—");
      el.disabled = !n;
      el.dataset.node = n ? n.id : "";
    };
    const hot = sum.hottest, busy = sum.busiest;
    pick($("sum-hottest"), hot, hot ? `${hot.id} ${hot.metrics.temperature_c.toFixed(1)} °C` : "");
    pick($("sum-busiest"), busy, busy ? `${busy.id} ${pct(busy.metrics.cpu_percent)} CPU` : "");
  }

  /** The search box: a case-insensitive substring of the id or the status. */
  const matches = (n, q) => !q || n._lid.includes(q) || statusOf(n).includes(q);

  function renderMatches(shown, total) {
    setText($("node-matches"), state.filter ? `${shown} of ${total} match` : "");
  }

  function renderCards() {
    const grid = $("nodes");
    const q = state.filter;
    const nodes = sortedNodes().filter((n) => matches(n, q));
    renderMatches(nodes.length, state.nodes.size);
    if (state.nodes.size) for (const sk of grid.querySelectorAll(".skeleton")) sk.remove();

    const live = new Set();
    let prev = null;
    for (const n of nodes) {
      live.add(n.id);
      let f = cardEls.get(n.id);
      if (!f) { f = makeCard(n.id); cardEls.set(n.id, f); }
      const up = n.online !== false;
      const st = statusOf(n);
      const m = n.metrics || {};
      setAttr(f.root, "data-online", up ? "true" : "false");
      setAttr(f.root, "data-status", st);
      f.root.classList.toggle("offline", !up);
      f.root.classList.toggle("selected", n.id === state.selected);
      f.self.hidden = n.id !== state.self;
      setText(f.status, `${st} · ${ago(n.since)}`);
      // Two clocks per card: only when the times they show changed (and cached per second).
      const times = `${Math.floor(n.since || 0)}/${Math.floor(n.last_seen || 0)}`;
      if (f.times !== times) {
        f.times = times;
        setAttr(f.status, "title", `since ${clock(n.since)}, last seen ${clock(n.last_seen)}`);
      }
      setText(f.temp, typeof m.temperature_c === "number" ? `${m.temperature_c.toFixed(1)} °C` : "—");
      f.sim.hidden = !m.simulated;
      setText(f.cpu, pct(m.cpu_percent));
      bar(f.cpuBar, m.cpu_percent);
      setText(f.mem, pct(m.memory_percent));
      bar(f.memBar, m.memory_percent);
      setText(f.foot, processSummary(n));
      // Keep DOM order = sorted order, moving only what is out of place.
      const want = prev ? prev.nextSibling : grid.firstChild;
      if (want !== f.root) grid.insertBefore(f.root, want);
      prev = f.root;
    }
    for (const [id, f] of cardEls) if (!live.has(id)) { f.root.remove(); cardEls.delete(id); }
  }

  // ------------------------------------------------------------ the table
  // view: the ids that pass the search, in the table's order; recomputed when a member, a status,
  // the search or the order changed (and, sorted by a value, when values changed), at most once a
  // render. rows: the pool of row elements, one per row in view (+ OVERSCAN), each bound to a node.
  const table = { view: [], viewDirty: true, dataDirty: false, rows: [] };
  const metricOf = (k) => (n) => { const v = n.metrics && n.metrics[k]; return typeof v === "number" ? v : -Infinity; };
  const SORTS = {
    id: null,
    status: (n) => STATUS_ORDER[statusOf(n)],
    temp: metricOf("temperature_c"),
    cpu: metricOf("cpu_percent"),
    mem: metricOf("memory_percent"),
    seen: (n) => n.last_seen || 0,
  };

  function tableView() {
    const key = SORTS[state.sort.key];
    if (!table.viewDirty && !(key && table.dataDirty)) return table.view;
    table.viewDirty = table.dataDirty = false;
    const q = state.filter, dir = state.sort.dir;
    const rows = [];
    for (const n of state.nodes.values()) if (matches(n, q)) rows.push(n);
    const byId = (a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    rows.sort(key ? (a, b) => (key(a) - key(b)) * dir || byId(a, b) : (a, b) => byId(a, b) * dir);
    table.view = rows.map((n) => n.id);
    return table.view;
  }

  function renderTable() {
    const view = tableView();
    renderMatches(view.length, state.nodes.size);
    for (const b of document.querySelectorAll("#node-table [data-sort]")) {
      const on = b.dataset.sort === state.sort.key;
      setAttr(b, "aria-sort", on ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
    }
    const spacer = $("nt-spacer");
    const height = `${view.length * ROW_H}px`;
    if (spacer.style.height !== height) spacer.style.height = height;
    renderTableRows();
  }

  function makeRow() {
    const r = { id: null, index: -1, rev: -1, hb: null, sel: false };
    r.el = h("div", { class: "nt-row", role: "row", tabindex: "0", dataset: { testid: "node-row" } },
      h("span", { class: "dot", "aria-hidden": "true" }),
      r.idEl = h("span", { class: "nt-id", dataset: { testid: "node-id" } }),
      r.status = h("span", { class: "nt-status", dataset: { testid: "node-status" } }),
      r.temp = h("span", { class: "num", dataset: { testid: "node-temp" } }),
      r.cpu = h("span", { class: "num", dataset: { testid: "node-cpu" } }),
      r.mem = h("span", { class: "num", dataset: { testid: "node-mem" } }),
      r.seen = h("span", { class: "num", dataset: { testid: "node-seen" } }));
    return r;
  }

  /** Bind the row pool to the rows in view and update only those. */
  function renderTableRows() {
    const vp = $("nt-viewport");
    const view = table.view;
    const top = vp.scrollTop;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN);
    const last = Math.min(view.length, Math.ceil((top + (vp.clientHeight || 0)) / ROW_H) + OVERSCAN);
    const want = Math.max(0, last - first);
    while (table.rows.length < want) { const r = makeRow(); table.rows.push(r); vp.append(r.el); }
    while (table.rows.length > want) table.rows.pop().el.remove();
    const now = tick.now;
    for (let i = first; i < last; i++) {
      const r = table.rows[i - first];
      const n = state.nodes.get(view[i]);
      if (!n) continue;
      if (r.index !== i) { r.index = i; r.el.style.transform = `translateY(${i * ROW_H}px)`; }
      if (r.id !== n.id) {
        r.id = n.id;
        r.rev = -1;
        r.hb = n._hb;   // a row newly in view shows what is known: not an update, no lag to count
        r.el.dataset.node = n.id;
        setText(r.idEl, n.id);
      }
      const sel = n.id === state.selected;
      if (r.sel !== sel) { r.sel = sel; r.el.classList.toggle("selected", sel); setAttr(r.el, "aria-selected", sel); }
      setText(r.seen, n.last_seen ? ago(n.last_seen) : "—");
      if (r.rev === n._rev) continue;
      r.rev = n._rev;
      const st = statusOf(n);
      const m = n.metrics || {};
      setAttr(r.el, "data-status", st);
      setText(r.status, st);
      setText(r.temp, typeof m.temperature_c === "number" ? `${m.temperature_c.toFixed(1)} °C` : "—");
      setText(r.cpu, pct(m.cpu_percent));
      setText(r.mem, pct(m.memory_percent));
      if (n._hb && n._hb !== r.hb) {
        r.hb = n._hb;
        const lag = Math.max(0, now - n._hb);
        debug.lag.n++;
        debug.lag.sum += lag;
        if (lag > debug.lag.max) debug.lag.max = lag;
      }
    }
  }

  function sortBy(key) {
    state.sort = { key, dir: state.sort.key === key ? -state.sort.dir : (key === "id" || key === "status" ? 1 : -1) };
    table.viewDirty = true;
    invalidate("nodes");
  }

  const firstLine = (text) => String(text || "").split("\n")[0];

  function paramSkeleton(schema) {
    const out = {};
    const props = (schema && schema.properties) || {};
    for (const [k, p] of Object.entries(props)) {
      if ("default" in p) out[k] = p.default;
      else if (p.type === "integer" || p.type === "number") out[k] = 0;
      else if (p.type === "boolean") out[k] = false;
      else if (p.type === "array") out[k] = [];
      else if (p.type === "object") out[k] = {};
      else out[k] = "";
    }
    return out;
  }

  const canMutate = () => state.role !== "viewer";

  /** A button for an action; none at all for a viewer when it changes state. A mutating one asks
   *  first (`question` names the node, the process or method, and the action). */
  function actionButton(label, mutates, onclick, testid, offline, question) {
    if (mutates && !canMutate()) return null;
    return h("button", {
      type: "button", class: mutates ? "mutating" : "",
      disabled: offline,
      title: offline ? "the node is offline" : (mutates ? "changes state: asks first" : "read-only"),
      dataset: { testid, mutates: mutates ? "true" : "false" },
      onclick: mutates ? () => confirmAction(question, label).then((ok) => { if (ok) onclick(); }) : onclick,
    }, label);
  }

  // ---------------------------------------------------------- confirmation
  let confirmResolve = null;

  /** Ask in the page's own dialog; resolves true (OK) or false (Cancel, Escape, another question). */
  function confirmAction(text, okLabel) {
    if (confirmResolve) closeConfirm(false);
    setText($("confirm-text"), text);
    setText($("confirm-ok"), okLabel.charAt(0).toUpperCase() + okLabel.slice(1));
    $("confirm-dialog").hidden = false;
    $("confirm-cancel").focus();   // Enter on a fresh dialog does not confirm
    return new Promise((resolve) => { confirmResolve = resolve; });
  }

  function closeConfirm(ok) {
    $("confirm-dialog").hidden = true;
    const r = confirmResolve;
    confirmResolve = null;
    if (r) r(ok);
  }

  // The detail panel is rebuilt when the node, its catalog or the role changes;
  // the frequently-changing parts (metrics, process rows, ages) are patched.
  let detailKey = "";
  let detailEls = null;
  const openForms = new Map();   // "service.method" -> textarea value, survives rebuilds
  const closedServices = new Set();   // services the user folded, survives rebuilds

  function renderDetail() {
    const box = $("detail");
    const n = state.selected ? state.nodes.get(state.selected) : null;
    setText($("detail-node"), n ? n.id : "");
    if (!n) {
      setText($("detail-status"), "");
      if (detailKey !== "") {
        detailKey = "";
        box.replaceChildren(h("p", { class: "muted empty" }, "Click a node to see its metrics, processes and services."));
      }
      return;
    }
    const services = n.services || {};
    const procs = Array.isArray(n.processes) ? n.processes : [];
    const key = json([n.id, state.role, n.online !== false, Object.keys(services).map((s) => [s, Object.keys(services[s].methods || {})]),
      procs.map((p) => p.name), [...openForms.keys()]]);
    if (key !== detailKey) {
      detailKey = key;
      detailEls = buildDetail(n, services, procs);
      box.replaceChildren(detailEls.root);
    }
    patchDetail(n, procs);
  }

  function buildDetail(n, services, procs) {
    const els = { metrics: {}, procRows: new Map() };
    const offline = n.online === false;
    const metric = (k, label) => h("div", { class: "tile" }, h("label", {}, label),
      els.metrics[k] = h("b", { dataset: { testid: `detail-${k}` } }));

    const supervisor = services.supervisor && services.supervisor.methods ? services.supervisor.methods : {};
    const procActions = ["start", "stop", "restart"].filter((a) => supervisor[a]);

    const procTable = h("table", { class: "procs" },
      h("thead", {}, h("tr", {}, h("th", {}, "process"), h("th", {}, "state"), h("th", { class: "num" }, "pid"),
        h("th", { class: "num", title: "automatic restarts after the process exited on its own" }, "auto restarts"),
        h("th", { class: "num" }, "uptime"), procActions.length && canMutate() ? h("th", {}, "") : null)),
      h("tbody", { dataset: { testid: "detail-processes" } }, procs.map((p) => {
        const r = {};
        const row = h("tr", { dataset: { testid: "process-row", process: p.name } },
          h("td", {}, p.name),
          h("td", {}, r.state = h("span", { class: "state", dataset: { testid: "process-state" } })),
          r.pid = h("td", { class: "num", dataset: { testid: "process-pid" } }),
          r.restarts = h("td", { class: "num", dataset: { testid: "process-restarts" } }),
          r.uptime = h("td", { class: "num" }),
          procActions.length && canMutate() ? h("td", { class: "actions" }, procActions.map((a) =>
            actionButton(a, !!supervisor[a].mutates,
              () => callFromPage(n.id, "supervisor", a, { name: p.name }), `process-${a}`, offline,
              `${a} process ${p.name} on node ${n.id}?`))) : null);
        els.procRows.set(p.name, r);
        return row;
      })));

    const serviceList = h("div", { class: "services", dataset: { testid: "detail-services" } },
      Object.entries(services).sort(([a], [b]) => a.localeCompare(b)).map(([sname, svc]) =>
        h("details", {
          class: "service", dataset: { testid: "service", service: sname }, open: !closedServices.has(sname),
          ontoggle: (e) => { if (e.target.open) closedServices.delete(sname); else closedServices.add(sname); },
        },
          h("summary", { title: svc.description || "" }, h("b", {}, sname), " ", h("span", { class: "muted" }, firstLine(svc.description))),
          h("ul", { class: "methods" }, Object.entries(svc.methods || {}).sort(([a], [b]) => a.localeCompare(b)).map(([mname, spec]) =>
            methodRow(n, sname, mname, spec || {}, offline))))));

    els.result = h("pre", { class: "call-result", dataset: { testid: "call-result" }, hidden: true });

    els.root = h("div", { class: "detail-body" },
      h("div", { class: "tiles" }, metric("temp", "temperature"), metric("cpu", "CPU"), metric("mem", "memory"),
        metric("disk", "disk"), metric("load", "load 1/5/15"), metric("seen", "last seen")),
      h("h3", {}, "Processes"),
      procs.length ? procTable : h("p", { class: "muted" }, "no supervised processes"),
      h("h3", {}, "Services"),
      Object.keys(services).length ? serviceList : h("p", { class: "muted" }, "no services reported"),
      els.result);
    return els;
  }

  function methodRow(n, sname, mname, spec, offline) {
    const formKey = `${sname}.${mname}`;
    const mutates = !!spec.mutates;
    const takesParams = spec.params && spec.params.properties && Object.keys(spec.params.properties).length > 0;
    const open = openForms.has(formKey);
    let area = null;
    const run = () => {
      let params = {};
      if (area) {
        try { params = JSON.parse(area.value || "{}"); } catch (e) {
          state.callResult = { label: formKey, ok: false, text: `params are not valid JSON: ${e.message}` };
          invalidate("detail");
          return null;
        }
      }
      return params;
    };
    // A mutating call asks first, naming the params as they are when clicked (the textarea may change).
    const callButton = () => {
      if (!canMutate()) return null;
      return h("button", {
        type: "button", class: "mutating", disabled: offline,
        title: offline ? "the node is offline" : "changes state: asks first",
        dataset: { testid: "method-call", mutates: "true" },
        onclick: () => {
          const ps = run();
          if (!ps) return;
          confirmAction(`call ${formKey} on node ${n.id} with ${json(ps, 200)}?`, "call")
            .then((ok) => { if (ok) callFromPage(n.id, sname, mname, ps); });
        },
      }, "call");
    };
    const li = h("li", { class: "method", dataset: { testid: "method", method: formKey } },
      h("code", {}, mname),
      mutates ? h("span", { class: "badge mutates", title: "changes state" }, "mutates") : h("span", { class: "badge ro" }, "read-only"),
      spec.offered_by === "client" ? h("span", { class: "badge client", dataset: { testid: "offered-by-client" },
        title: "offered by a client connected to the node (it goes when the client does)" }, "client") : null,
      h("span", { class: "muted desc", title: spec.description || "" }, firstLine(spec.description)),
      takesParams && (!mutates || canMutate()) ? h("button", {
        type: "button", class: "link",
        onclick: () => { if (open) openForms.delete(formKey); else openForms.set(formKey, json(paramSkeleton(spec.params))); invalidate("detail"); },
      }, open ? "hide params" : "params…") : null,
      mutates ? callButton() : actionButton("call", false, () => { const ps = run(); if (ps) callFromPage(n.id, sname, mname, ps); },
        "method-call", offline));
    if (open) {
      area = h("textarea", { class: "params", rows: 2, spellcheck: "false",
        oninput: () => openForms.set(formKey, area.value) });
      area.value = openForms.get(formKey);
      li.append(area);
    }
    return li;
  }

  function patchDetail(n, procs) {
    const m = n.metrics || {};
    const up = n.online !== false;
    setText($("detail-status"), `${up ? "online" : "offline"} for ${ago(n.since)}${n.version ? " · v" + n.version : ""}${n.host ? " · " + n.host : ""}`);
    const e = detailEls.metrics;
    setText(e.temp, typeof m.temperature_c === "number" ? `${m.temperature_c.toFixed(1)} °C${m.simulated ? " (sim)" : ""}` : "—");
    setText(e.cpu, pct(m.cpu_percent));
    setText(e.mem, pct(m.memory_percent));
    setText(e.disk, pct(m.disk_percent));
    setText(e.load, Array.isArray(m.load) ? m.load.map((x) => num(x, 2)).join(" ") : "—");
    setText(e.seen, n.last_seen ? `${ago(n.last_seen)} ago` : "—");
    detailEls.root.classList.toggle("offline", !up);
    for (const p of procs) {
      const r = detailEls.procRows.get(p.name);
      if (!r) continue;
      setText(r.state, p.state || "—");
      setAttr(r.state, "data-state", p.state || "");
      setText(r.pid, p.pid ?? "—");
      setText(r.restarts, p.auto_restarts ?? p.restarts ?? 0);
      // Uptime ticks while we hear from the node; an offline node's last facts stand still.
      const since = up ? Math.max(0, nowS() - (p._at || nowS())) : 0;
      setText(r.uptime, p.state === "running" && typeof p.uptime === "number" ? duration(p.uptime + since) : "—");
    }
    const res = state.callResult;
    detailEls.result.hidden = !res;
    if (res) {
      setText(detailEls.result, `${res.label}\n${res.text}`);
      setAttr(detailEls.result, "data-ok", res.ok === null ? "pending" : String(res.ok));
    }
  }

  function chips(box, entries, cls) {
    const list = entries.filter(([, v]) => v);
    const key = json(list);
    if (box.dataset.key === key) return;
    box.dataset.key = key;
    box.replaceChildren(...(list.length
      ? list.map(([k, v]) => h("span", { class: `chip ${cls}`, dataset: { code: k } }, `${k} `, h("b", {}, v)))
      : [h("span", { class: "muted" }, "none")]));
  }

  function renderStats() {
    const d = state.stats || {};
    const rpc = d.rpc || {};
    const ps = d.pubsub || {};
    const fed = d.federation || {};
    const lat = rpc.latency_ms || {};
    setText($("rpc-rate"), num(rpc.calls_per_s, 1));
    setText($("rpc-calls"), num(rpc.calls));
    setText($("rpc-p50"), ms(lat.p50));
    setText($("rpc-p99"), ms(lat.p99));
    chips($("rpc-errors"), Object.entries(rpc.errors || {}), "err");

    const tbody = $("rpc-recent");
    const recent = (Array.isArray(rpc.recent) ? rpc.recent : []).slice().sort((a, b) => (b.ts || 0) - (a.ts || 0));
    const key = json(recent);
    if (tbody.dataset.key !== key) {
      tbody.dataset.key = key;
      tbody.replaceChildren(...recent.map((c) => h("tr", { class: c.ok ? "" : "failed", dataset: { testid: "rpc-call" } },
        h("td", {}, clock(c.ts)),
        h("td", {}, `${c.from || "?"} → ${c.to || "?"}`),
        h("td", {}, h("code", {}, `${c.service}.${c.method}`)),
        h("td", { class: "num" }, num(c.ms, c.ms < 10 ? 2 : 0)),
        h("td", {}, c.ok ? h("span", { class: "ok" }, "ok") : h("span", { class: "err" }, c.code || "error")))));
    }

    setText($("ps-rate"), num(ps.events_per_s, 1));
    setText($("ps-events"), num(ps.events));
    setText($("ps-topics"), num(ps.topics));
    setText($("ps-dropped"), num(ps.dropped));
    $("ps-dropped").classList.toggle("warn", ps.dropped > 0);
    setText($("ps-local"), num(ps.local_subscribers));
    setText($("ps-remote"), num(ps.remote_interests));
    setText($("ps-clients"), num(d.clients));
    const fc = $("fed-connected");
    setText(fc, fed.connected === undefined ? "—" : fed.connected ? "connected" : "down");
    fc.classList.toggle("warn", fed.connected === false);
    chips($("fed-rejected"), Object.entries(fed.rejected || {}), "err");
  }

  function niceMax(v) {
    if (v <= 1) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
    return 10 * p;
  }

  function renderChart() {
    const canvas = $("chart");
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth;
    const hgt = canvas.clientHeight;
    if (!w || !hgt) return;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(hgt * dpr);
    }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, w, hgt);
    const css = getComputedStyle(document.body);
    const colGrid = css.getPropertyValue("--grid").trim() || "#333";
    const colCalls = css.getPropertyValue("--calls").trim() || "#4aa3ff";
    const colEvents = css.getPropertyValue("--events").trim() || "#f5a623";
    const colText = css.getPropertyValue("--muted").trim() || "#888";

    const pts = state.series;
    const top = niceMax(Math.max(0, ...pts.map((p) => Math.max(p.calls, p.events))));
    const pad = { l: 34, r: 6, t: 6, b: 16 };
    const pw = w - pad.l - pad.r;
    const ph = hgt - pad.t - pad.b;
    ctx.font = "10px system-ui, sans-serif";
    ctx.fillStyle = colText;
    ctx.strokeStyle = colGrid;
    ctx.lineWidth = 1;
    ctx.textAlign = "right";
    ctx.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const y = pad.t + ph - (ph * i) / 4;
      ctx.beginPath(); ctx.moveTo(pad.l, Math.round(y) + 0.5); ctx.lineTo(w - pad.r, Math.round(y) + 0.5); ctx.stroke();
      const v = (top * i) / 4;
      ctx.fillText(v >= 10 ? v.toFixed(0) : v.toFixed(v % 1 ? 2 : 0), pad.l - 4, y);
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "alphabetic";
    const span = pts.length ? pts[pts.length - 1].t - pts[0].t : 0;
    const window_ = Math.min(CHART_POINTS, Math.max(30, Math.ceil(span / 30) * 30));
    ctx.fillText(`last ${window_}s`, pad.l + 2, hgt - 3);
    setText($("chart-max"), pts.length ? `· scale 0–${top}/s` : "· waiting for $sys/stats");
    if (pts.length < 2) return;
    const tEnd = pts[pts.length - 1].t;
    const x = (t) => pad.l + pw - ((tEnd - t) / window_) * pw;
    const y = (v) => pad.t + ph - (v / top) * ph;
    for (const [key, color] of [["events", colEvents], ["calls", colCalls]]) {
      ctx.strokeStyle = color;
      ctx.lineWidth = 1.75;
      ctx.lineJoin = "round";
      ctx.beginPath();
      pts.forEach((p, i) => {
        const px = Math.max(pad.l, x(p.t));
        if (i === 0) ctx.moveTo(px, y(p[key])); else ctx.lineTo(px, y(p[key]));
      });
      ctx.stroke();
    }
  }

  function renderInspector() {
    const insp = state.insp;
    // Node choices: this node + every known node.
    const sel = $("insp-node");
    const ids = sortedNodes().map((n) => n.id).filter((id) => id !== state.self);
    const optKey = json([state.self, ids]);
    if (sel.dataset.key !== optKey) {
      sel.dataset.key = optKey;
      const current = sel.value;
      sel.replaceChildren(h("option", { value: "" }, state.self ? `${state.self} (this node)` : "this node"),
        ...ids.map((id) => h("option", { value: id }, id)));
      if ([...sel.options].some((o) => o.value === current)) sel.value = current;
    }

    const err = $("insp-error");
    err.hidden = !insp.error;
    setText(err, insp.error);

    const subsBox = $("insp-subs");
    const subsKey = json(insp.subs.map((s) => [s.node, s.topic, s.state]));
    if (subsBox.dataset.key !== subsKey) {
      subsBox.dataset.key = subsKey;
      subsBox.replaceChildren(...insp.subs.map((s) => h("span", {
        class: `chip sub ${s.state}`, dataset: { testid: "insp-sub", node: s.node || state.self || "", topic: s.topic },
      }, h("span", {}, `${s.node || state.self || "this node"} · `), h("code", {}, s.topic),
      h("button", { type: "button", class: "x", title: "unsubscribe", "aria-label": `unsubscribe ${s.topic}`,
        dataset: { testid: "insp-unsub" }, onclick: () => inspectorUnsubscribe(s) }, "×"))));
    }

    setText($("insp-count"), insp.count);
    const view = $("insp-view");
    setText(view, insp.view === "raw" ? "Pretty" : "Raw");
    setAttr(view, "aria-pressed", insp.view === "raw" ? "true" : "false");
    const table = $("insp-table");
    table.classList.toggle("raw", insp.view === "raw");
    table.classList.toggle("pretty", insp.view !== "raw");
    const pause = $("insp-pause");
    setText(pause, insp.paused ? "Resume" : "Pause");
    setAttr(pause, "aria-pressed", insp.paused ? "true" : "false");

    $("insp-empty").hidden = insp.count > 0 || $("insp-events").rows.length > 0;
    // Append new events as a batch (newest on top), keep at most INSPECTOR_ROWS rows.
    if (!insp.events.length) return;
    const tbody = $("insp-events");
    const batch = insp.events.splice(0).slice(-INSPECTOR_ROWS).reverse();
    const frag = document.createDocumentFragment();
    for (const ev of batch) {
      const data = json(ev.data, 400);
      frag.append(h("tr", { dataset: { testid: "insp-event", node: ev.node || "", topic: ev.topic } },
        h("td", {}, clock(ev.ts) || clock(nowS())),
        h("td", {}, ev.node || state.self || ""),
        h("td", {}, h("code", {}, ev.topic)),
        h("td", { class: "data" },
          h("span", { class: "raw", dataset: { testid: "insp-raw" }, title: data.length > 120 ? data : "" }, data),
          h("div", { class: "pretty-view" }, tree(ev.data, undefined, 0)))));
    }
    tbody.prepend(frag);
    while (tbody.rows.length > INSPECTOR_ROWS) tbody.lastElementChild.remove();
  }

  // A payload as a collapsible tree: objects and arrays are <details> whose children are built when
  // first opened (200 rows of closed trees cost little); bounded in depth, keys and string length.
  const TREE_DEPTH = 12, TREE_KEYS = 200, TREE_STRING = 500;

  function tree(value, key, depth) {
    const label = key === undefined ? null
      : h("span", { class: "tk" }, typeof key === "number" ? `${key}: ` : `${JSON.stringify(key)}: `);
    if (value === null || typeof value !== "object") {
      const text = typeof value === "string"
        ? JSON.stringify(value.length > TREE_STRING ? value.slice(0, TREE_STRING) + "…" : value)
        : String(value);
      return h("div", { class: "tl", dataset: { testid: "tree-leaf" } }, label,
        h("span", { class: `tv ${value === null ? "null" : typeof value}` }, text));
    }
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const kind = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
    const d = h("details", { class: "tree", dataset: { testid: "tree-node" } },
      h("summary", {}, label, h("span", { class: "tn" }, kind), " ", h("span", { class: "tp muted" }, json(value, 80))));
    let built = false;
    d.addEventListener("toggle", () => {
      if (built || !d.open) return;
      built = true;
      if (depth >= TREE_DEPTH) { d.append(h("div", { class: "tl muted" }, "… (deeper levels: see Raw)")); return; }
      d.append(h("div", { class: "tc" }, entries.slice(0, TREE_KEYS).map(([k, v]) => tree(v, k, depth + 1)),
        entries.length > TREE_KEYS ? h("div", { class: "tl muted" }, `… ${entries.length - TREE_KEYS} more`) : null));
    });
    return d;
  }

  // ---------------------------------------------------------------- token
  function askToken(message) {
    state.conn = "auth";
    state.role = null;
    invalidate("header");
    $("token-dialog").hidden = false;
    const err = $("token-error");
    err.hidden = !message;
    err.textContent = message || "";
    $("token-input").focus();
  }

  function hideToken() { $("token-dialog").hidden = true; }

  // ------------------------------------------------------------ sparklines
  // Per-node sparklines of CPU, temperature and calls/s, kept in the page from live events
  // (metrics/system and $cluster/node/state heartbeats; $sys/stats of this node and of up to
  // SPARK_STATS_NODES others), drawn with the vendored uPlot (static/vendor/). Self-contained:
  // fed by sparkFeed(ev) from onEvent, drawn by renderSparks() with the node cards.
  const SPARK_POINTS = 120;
  const SPARK_STATS_NODES = 8;     // remote $sys/stats subscriptions at most (each is ~1 message/s)
  const SPARKS = [
    { key: "cpu", label: "CPU %", color: "#3b82f6", fmt: (v) => `${v.toFixed(0)}%` },
    { key: "temp", label: "°C", color: "#f97316", fmt: (v) => v.toFixed(1) },
    { key: "calls", label: "calls/s", color: "#22c55e", fmt: (v) => v.toFixed(v < 10 ? 1 : 0) },
  ];
  const sparkData = new Map();     // node id -> {t: [], cpu: [], temp: [], calls: [], dirty}
  const sparkStats = new Set();    // remote nodes whose $sys/stats we subscribed to

  function sparkPush(id, key, t, v) {
    if (typeof v !== "number" || !Number.isFinite(v) || typeof id !== "string") return;
    let d = sparkData.get(id);
    if (!d) {
      if (sparkData.size >= 1000) return;
      sparkData.set(id, d = { cpu: [[], []], temp: [[], []], calls: [[], []], dirty: false });
    }
    const [ts, vs] = d[key];
    ts.push(t); vs.push(v);
    if (ts.length > SPARK_POINTS) { ts.splice(0, ts.length - SPARK_POINTS); vs.splice(0, vs.length - SPARK_POINTS); }
    d.dirty = true;
    invalidate("nodes");
  }

  function sparkFeed(ev, topic) {
    const d = ev && ev.data;
    if (!d || typeof d !== "object") return;
    const t = toS(ev.ts) ?? nowS();
    let id = ev.node, m = null;
    if (topic === "metrics/system") m = d;
    else if (topic === "$cluster/node/state") { id = ev.node || d.id; m = d.metrics; }
    else if (topic === STATS_TOPIC) { sparkPush(id || state.self, "calls", t, Number((d.rpc || {}).calls_per_s)); return; }
    else return;
    if (!m || typeof m !== "object") return;
    sparkPush(id, "cpu", t, m.cpu_percent);
    sparkPush(id, "temp", t, m.temperature_c);
    if (id && id !== state.self && !sparkStats.has(id) && sparkStats.size < SPARK_STATS_NODES) {
      sparkStats.add(id);
      keep(id, STATS_TOPIC).catch(() => sparkStats.delete(id));
    }
  }

  function renderSparks() {
    if (typeof window.uPlot !== "function") return;   // the library did not load: cards without sparklines
    for (const [id, f] of cardEls) {
      const d = sparkData.get(id);
      if (!d || (!d.dirty && f.sparks)) continue;
      if (!f.sparks) {
        f.sparks = {};
        const box = h("div", { class: "sparks", dataset: { testid: "node-sparks" } });
        for (const s of SPARKS) {
          const plot = h("div", { class: "spark-plot" });
          const val = h("span", { class: "spark-val" });
          box.append(h("div", { class: "spark", dataset: { testid: `spark-${s.key}`, points: "0" } },
            h("label", {}, s.label), plot, val));
          f.sparks[s.key] = { plot, val, row: box.lastChild, u: null };
        }
        f.root.insertBefore(box, f.foot);
      }
      d.dirty = false;
      for (const s of SPARKS) {
        const sp = f.sparks[s.key];
        const data = d[s.key];
        sp.row.dataset.points = String(data[0].length);
        const last = data[1][data[1].length - 1];
        setText(sp.val, typeof last === "number" ? s.fmt(last) : "—");
        if (data[0].length < 2) continue;
        if (!sp.u) {
          sp.u = new window.uPlot({
            width: Math.max(60, sp.plot.clientWidth || 120), height: 24, pxAlign: false,
            cursor: { show: false }, select: { show: false }, legend: { show: false },
            scales: { x: { time: false } }, axes: [{ show: false }, { show: false }],
            series: [{}, { stroke: s.color, width: 1.5, fill: s.color + "22", points: { show: false } }],
          }, data, sp.plot);
        } else {
          sp.u.setData(data);
        }
      }
    }
  }

  // ------------------------------------------------------------ metrics link
  // /metrics wants the token as a bearer header when the node has tokens: fetch it with the
  // tab's token and show the text, rather than a plain link that would get 401.
  function openMetrics(e) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) return;   // no token: the plain link works
    e.preventDefault();
    fetch("/metrics", { headers: { Authorization: `Bearer ${token}` } })
      .then((r) => r.text().then((text) => ({ ok: r.ok, text })))
      .then(({ ok, text }) => {
        const url = URL.createObjectURL(new Blob([text], { type: "text/plain" }));
        window.open(url, "_blank", "noopener");
        setTimeout(() => URL.revokeObjectURL(url), 60_000);
        if (!ok) console.warn("/metrics:", text);
      })
      .catch((err) => console.warn("/metrics failed", err));
  }

  // ----------------------------------------------------------------- wire up
  function init() {
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const token = $("token-input").value.trim();
      if (!token) return;
      sessionStorage.setItem(TOKEN_KEY, token);
      $("token-input").value = "";
      state.conn = "connecting";
      invalidate("header");
      client.reconnect();
    });
    $("token-change").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      askToken("");
      client.reconnect();   // without a token: the node refuses the hello, the form stays up
    });
    $("metrics-link").addEventListener("click", openMetrics);
    $("node-search").addEventListener("input", (e) => {
      state.filter = e.target.value.trim().toLowerCase();
      table.viewDirty = true;
      $("nt-viewport").scrollTop = 0;
      invalidate("nodes");
    });
    for (const b of document.querySelectorAll("#node-table [data-sort]")) b.addEventListener("click", () => sortBy(b.dataset.sort));
    const vp = $("nt-viewport");
    const rowOf = (e) => { const row = e.target.closest(".nt-row"); return row && row.dataset.node; };
    vp.addEventListener("click", (e) => { const id = rowOf(e); if (id) select(id, e.timeStamp); });
    vp.addEventListener("keydown", (e) => {
      const id = (e.key === "Enter" || e.key === " ") && rowOf(e);
      if (id) { e.preventDefault(); select(id, e.timeStamp); }
    });
    let scrollFrame = 0;   // scrolling draws the rows that come into view at the next frame
    vp.addEventListener("scroll", () => {
      if (scrollFrame) return;
      scrollFrame = requestAnimationFrame(() => { scrollFrame = 0; tick.now = nowS(); renderTableRows(); });
    }, { passive: true });
    for (const id of ["sum-hottest", "sum-busiest"]) {
      $(id).addEventListener("click", (e) => { if (e.target.dataset.node) select(e.target.dataset.node, e.timeStamp); });
    }
    $("insp-form").addEventListener("submit", (e) => {
      e.preventDefault();
      inspectorSubscribe($("insp-node").value, $("insp-topic").value);
    });
    $("insp-pause").addEventListener("click", () => { state.insp.paused = !state.insp.paused; invalidate("insp"); });
    $("insp-clear").addEventListener("click", () => {
      state.insp.events = [];
      state.insp.count = 0;
      $("insp-events").replaceChildren();
      invalidate("insp");
    });
    $("insp-view").addEventListener("click", () => {
      state.insp.view = state.insp.view === "raw" ? "pretty" : "raw";
      invalidate("insp");
    });
    $("confirm-form").addEventListener("submit", (e) => { e.preventDefault(); closeConfirm(true); });
    $("confirm-cancel").addEventListener("click", () => closeConfirm(false));
    $("confirm-dialog").addEventListener("keydown", (e) => { if (e.key === "Escape") closeConfirm(false); });
    window.addEventListener("resize", () => invalidate("chart"));
    // Ages ("online · 42s") move on their own.
    setInterval(() => invalidate("nodes", "detail"), 1000);

    openClient();
    // Streams the page always wants; wired once the welcome arrives.
    for (const t of [CLUSTER_TOPIC, STATS_TOPIC, ...SELF_TOPICS]) keep("", t).catch(() => {});
    invalidate("header", "nodes", "detail", "stats", "chart", "insp");
  }

  // For tests and debugging in the console: read-only views plus a way to feed frames.
  window.cloudisense = {
    state, debug,
    subscriptions: () => (client ? client.subscriptions() : []),
    inject: (frame) => onEvent(frame),
    renderNow: () => { clearTimeout(renderTimer); render(); },
  };

  document.addEventListener("DOMContentLoaded", init);
})();
