"""Operations endpoints: ``/metrics`` (Prometheus text format), ``/healthz``, ``/readyz``, ``/varz``.

Nothing here runs until scraped, except :class:`CallMetrics`, which ``Stats.record`` feeds one call at
a time (a dict increment and a bucket increment).  Everything else is read at scrape time from the
counters the node keeps anyway (``Stats``, the federation's and verifier's counters, the membership
table, the supervisor, ``/proc/self``).

The exposition writer is ours (a few dozen lines) rather than ``prometheus-client``: importing that
costs ~2 MB of an idle node's RSS, and the text format is simple.  ``tests/unit/test_metrics.py``
checks what we write with ``prometheus-client``'s own parser.

Label cardinality is bounded: a node's own id is never a label (Prometheus adds ``instance``);
service/method pairs are named only once a call proved them real, and at most :data:`MAX_METHODS` of them
(the rest count as ``other``/``other``),
rejection reasons and process names come from closed sets or the config.
"""

from __future__ import annotations

import os
from bisect import bisect_left
from typing import TYPE_CHECKING, Any

from ._text import printable

if TYPE_CHECKING:
    from websockets.http11 import Request, Response
    from websockets.asyncio.server import ServerConnection

    from ._gateway import Gateway

#: Call latency buckets, in seconds (upper bounds; ``+Inf`` is implied).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BUCKETS_MS = tuple(b * 1000 for b in BUCKETS)
MAX_METHODS = 64          # distinct (service, method) label pairs; more fold into ("other", "other")
MAX_LABEL_VALUES = 64     # for any other open label (rejection reasons, error codes)
#: outcomes that show the service and method exist (the call reached them)
_PROVEN = frozenset({None, "forbidden", "invalid_params", "internal"})
OPS_PATHS = frozenset({"/metrics", "/healthz", "/readyz", "/varz"})
PROTECTED = frozenset({"/metrics", "/varz"})


class CallMetrics:
    """Calls by (local|remote, service, method, outcome code), and their latency in fixed buckets."""

    __slots__ = ("counts", "methods", "buckets", "sums")

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, str, str], int] = {}
        self.methods: set[tuple[str, str]] = set()
        self.buckets = {"local": [0] * (len(BUCKETS) + 1), "remote": [0] * (len(BUCKETS) + 1)}
        self.sums = {"local": 0.0, "remote": 0.0}

    def observe(self, local: bool, service: str, method: str, code: str | None, ms: float) -> None:
        where = "local" if local else "remote"
        if (service, method) not in self.methods:
            # a name is admitted once a call proved it real (a client can make names up: an unknown
            # method, or any name to an offline node), and only up to the cap
            if code in _PROVEN and len(self.methods) < MAX_METHODS:
                self.methods.add((service, method))
            else:
                service = method = "other"
        key = (where, service, method, code or "ok")
        self.counts[key] = self.counts.get(key, 0) + 1
        self.buckets[where][bisect_left(_BUCKETS_MS, ms)] += 1
        self.sums[where] += ms / 1000


# --- the text format ------------------------------------------------------------------------------

def _esc(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _num(v: float) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    if isinstance(v, int):
        return str(v)
    if v != v:
        return "NaN"
    if v in (float("inf"), float("-inf")):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


class Exposition:
    """Builds one scrape: ``family()`` then ``sample()`` lines, in order."""

    def __init__(self, prefix: str = "cloudisense_") -> None:
        self.prefix = prefix
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, *, raw: bool = False) -> str:
        full = name if raw else self.prefix + name
        self.lines.append(f"# HELP {full} {help_.replace(chr(92), chr(92) * 2).replace(chr(10), ' ')}")
        self.lines.append(f"# TYPE {full} {kind}")
        return full

    def sample(self, name: str, value: float, labels: dict[str, str] | None = None) -> None:
        if labels:
            inner = ",".join(f'{k}="{_esc(str(v))}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {_num(value)}")
        else:
            self.lines.append(f"{name} {_num(value)}")

    def one(self, name: str, kind: str, help_: str, value: float, *, raw: bool = False) -> None:
        full = self.family(name, kind, help_, raw=raw)
        self.sample(full + ("_total" if kind == "counter" and not full.endswith("_total") else ""), value)

    def labelled(self, name: str, kind: str, help_: str, label: str, values: dict[str, float]) -> None:
        full = self.family(name, kind, help_)
        sample = full + "_total" if kind == "counter" else full
        for k, v in _capped(values).items():
            self.sample(sample, v, {label: k})

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _capped(values: dict[str, float]) -> dict[str, float]:
    if len(values) <= MAX_LABEL_VALUES:
        return values
    out: dict[str, float] = {}
    for i, (k, v) in enumerate(sorted(values.items())):
        key = k if i < MAX_LABEL_VALUES - 1 else "other"
        out[key] = out.get(key, 0) + v
    return out


# --- what the node exposes ------------------------------------------------------------------------------

_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _process(x: Exposition) -> None:
    """The standard ``process_*`` metrics, from /proc/self (Linux); skipped where it is missing."""
    try:
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        with open("/proc/self/statm", "rb") as f:
            rss_pages = int(f.read().split()[1])
        fds = len(os.listdir("/proc/self/fd"))
    except (OSError, IndexError, ValueError):
        t = os.times()
        x.one("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.",
              t.user + t.system, raw=True)
        return
    # fields[0] is field 3 (state) of proc(5): utime is field 14, stime 15
    x.one("process_cpu_seconds_total", "counter", "User and system CPU time spent, in seconds.",
          (int(fields[11]) + int(fields[12])) / _CLK, raw=True)
    x.one("process_resident_memory_bytes", "gauge", "Resident memory size, in bytes.", rss_pages * _PAGE, raw=True)
    x.one("process_open_fds", "gauge", "Open file descriptors.", fds, raw=True)
    try:
        import resource
        x.one("process_max_fds", "gauge", "The limit of open file descriptors.",
              resource.getrlimit(resource.RLIMIT_NOFILE)[0], raw=True)
    except (ImportError, OSError, ValueError):
        pass


def readiness(node: Any) -> tuple[bool, str]:
    """Whether the node is ready to serve, and why not."""
    if node.gateway._server is None or (node.fed is not None and not node.peers.joined.is_set()):
        return False, "start-up is not finished"
    fed = node.fed
    if fed is not None and not fed.connected.is_set():
        return False, f"the federation link to the broker {fed.url} is down"
    missing = fed.missing() if fed is not None else []
    if missing:
        shown = ", ".join(printable(t, limit=120) for t in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return False, (f"the broker {fed.url} has not granted {len(missing)} subscription(s) this node needs: "
                       f"{shown}{more} (retrying; counted as federation.subscribe_failures)")
    return True, "ready"


def render(node: Any) -> str:
    """One scrape of ``node``, in the Prometheus text format (version 0.0.4)."""
    s = node.stats
    cm: CallMetrics = s.by_call
    fed = node.fed
    x = Exposition()
    full = x.family("build_info", "gauge", "Version of this node (always 1).")
    x.sample(full, 1, {"version": node.version})
    x.one("start_time_seconds", "gauge", "When this node started, in seconds since the epoch.", node.started)
    ready, _ = readiness(node)
    x.one("ready", "gauge", "1 when the node is ready (started, and its federation link is up), else 0.", ready)

    # calls
    full = x.family("calls", "counter", "Calls finished here, by local|remote (the call crossed the federation), "
                    "service, method and outcome code (ok or an error code).")
    for (where, svc, meth, code), n in sorted(cm.counts.items()):
        x.sample(full + "_total", n, {"kind": where, "service": svc, "method": meth, "code": code})
    full = x.family("call_duration_seconds", "histogram", "Call latency as the caller here saw it, by local|remote.")
    for where, counts in cm.buckets.items():
        acc = 0
        for le, n in zip((*BUCKETS, float("inf")), counts, strict=True):
            acc += n
            x.sample(full + "_bucket", acc, {"kind": where, "le": _num(le)})
        x.sample(full + "_sum", cm.sums[where], {"kind": where})
        x.sample(full + "_count", acc, {"kind": where})
    x.one("calls_pending", "gauge", "Calls sent to other nodes and waiting for a reply.", len(node.pending))
    x.labelled("remote_calls", "counter", "Remote calls sent (out) and served (in).", "direction",
               {"out": s.remote_calls_out, "in": s.remote_calls_in})
    x.one("duplicate_calls", "counter", "Remote calls received again (de-duplicated).", s.duplicates)
    x.one("late_calls", "counter", "Remote calls that arrived after their deadline.", s.late_calls)
    x.one("late_replies", "counter", "Replies that arrived after their call had finished.", node.pending.late)

    # events and clients
    x.one("events_published", "counter", "Events published on this node.", s.events)
    x.labelled("events_remote", "counter", "Events sent to (out) and received from (in) other nodes.", "direction",
               {"out": s.events_remote_out, "in": s.events_remote_in})
    x.one("events_dropped", "counter", "Events dropped from slow clients' queues.", s.dropped)
    sessions = node.gateway.sessions
    x.one("ws_clients", "gauge", "WebSocket clients connected.", len(sessions))
    subs = node.subs.stats()
    x.one("subscriptions", "gauge", "Subscriptions of this node's subscribers (clients, agents).",
          subs["subscriptions"])
    x.one("remote_interests", "gauge", "Subscriptions other nodes hold on this node's events.", len(node.interests))
    x.one("ws_queued_bytes", "gauge", "Characters of JSON queued for WebSocket clients.",
          sum(c.queued for c in sessions))

    # federation
    x.one("federation_enabled", "gauge", "1 when this node federates over a broker.", fed is not None)
    x.one("federation_connected", "gauge", "1 while the link to the broker is up.",
          bool(fed and fed.connected.is_set()))
    c = fed.counters if fed else {}
    x.one("federation_reconnects", "counter", "Reconnections to the broker after the link was lost.",
          c.get("reconnects", 0))
    x.one("federation_link_failures", "counter", "Failures of the broker link.", c.get("link_failures", 0))
    x.one("federation_subscribe_failures", "counter", "Subscriptions the broker refused (SUBACK 0x80) or did not "
          "grant in time; each is retried with backoff.", c.get("subscribe_failures", 0))
    x.one("federation_subscriptions_missing", "gauge", "Subscriptions this node needs and the broker does not "
          "give it now (the node is not ready while any is missing).", len(fed.missing()) if fed else 0)
    x.one("federation_failovers", "counter", "Moves to the next server of broker.url after a failed attempt "
          "or a lost link.", c.get("failovers", 0))
    x.labelled("mqtt_messages", "counter", "MQTT messages received (in) and sent (out).", "direction",
               {"in": c.get("rx_messages", 0), "out": c.get("tx_messages", 0)})
    x.labelled("envelopes", "counter", "Envelopes received (in) and sent (out).", "direction",
               {"in": c.get("rx_envelopes", 0), "out": c.get("tx_envelopes", 0)})
    x.one("mqtt_unsendable", "counter", "Envelopes that could not be sent.", c.get("unsendable", 0))
    rejected = node.peers.rejected()
    if c.get("malformed"):
        rejected["non_json"] = rejected.get("non_json", 0) + c["malformed"]
    x.labelled("envelopes_rejected", "counter", "Inbound envelopes dropped, by reason.", "reason", rejected)

    # membership
    online = len(node.members.online_ids())
    x.labelled("cluster_members", "gauge", "Nodes in this node's membership table (itself included).", "state",
               {"online": online, "offline": len(node.members) - online})
    x.one("cluster_local_health", "gauge", "This node's own health as its failure detector sees it (0: healthy, up "
          "to 8; Lifeguard): raised when a peer suspects it or it cannot hear answers, lowered by each answered "
          "probe. Its probe and suspicion timeouts are multiplied by this + 1.", node.peers.prober.health)

    # supervised processes
    sup = node.supervisor
    procs = sup.snapshot() if hasattr(sup, "snapshot") else []
    full = x.family("process_restarts", "counter", "Automatic restarts of a supervised process.")
    for p in procs:
        x.sample(full + "_total", p.restarts, {"process": p.name})
    full = x.family("process_state", "gauge", "State of a supervised process (1 for its current state).")
    for p in procs:
        for st in ("running", "starting", "stopping", "stopped", "exited", "backoff"):
            x.sample(full, p.state == st, {"process": p.name, "state": st})

    _process(x)
    return x.text()


def varz(node: Any) -> dict[str, Any]:
    """``/varz``: the stats snapshot plus the clients (like NATS's ``/varz`` and ``/connz``)."""
    snap: dict[str, Any] = node.stats_snapshot()
    snap["clients_list"] = [
        {"id": c.num, "name": c.name, "role": c.role, "remote": c.addr,
         "subscriptions": node.subs.count(c), "queued_bytes": c.queued, "dropped": c.dropped_total}
        for c in sorted(node.gateway.sessions, key=lambda c: c.num)]
    snap["ready"], snap["ready_reason"] = readiness(node)
    return snap


# --- HTTP ------------------------------------------------------------------------------------------

def http(gw: "Gateway", conn: "ServerConnection", req: "Request", path: str) -> "Response":
    """Answer one of :data:`OPS_PATHS` (the gateway has checked the Host header)."""
    from ._edge import http_response as _response
    from ._json import dumps
    node = gw.node
    if path == "/healthz":
        return _response(200, b"ok\n", "text/plain")
    if path == "/readyz":
        ok, why = readiness(node)
        return _response(200 if ok else 503, dumps({"ready": ok, "reason": why}).encode(), "application/json")
    if path in PROTECTED and gw.tokens:
        addr = str((conn.remote_address or ("?",))[0])
        if wait := gw.auth_failures.blocked_for(addr):
            resp = _response(429, b"too many failed authentications from this address\n", "text/plain")
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        auth = req.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        role = gw.check_token(token.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            if auth:
                gw.auth_failed(addr)
            resp = _response(401, b"unauthorized: send a viewer or operator token as "
                             b"'Authorization: Bearer TOKEN'\n", "text/plain")
            resp.headers["WWW-Authenticate"] = 'Bearer realm="cloudisense"'
            return resp
    if path == "/metrics":
        return _response(200, render(node).encode(), "text/plain; version=0.0.4")
    return _response(200, dumps(varz(node)).encode(), "application/json")
