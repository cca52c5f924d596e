"""Soak: three real nodes under churn and faults for N minutes, with per-resource slopes (issue 20).

    python bench/soak.py --minutes N [--warmup SECONDS] [--json FILE] [--keep-logs]

Not in CI: a 60-minute run is the acceptance run; ``--minutes 3`` is a smoke run.

Setup
  A private mosquitto on a free port and three ``cloudisense node`` processes (soak-a, soak-b, soak-c),
  each on a fixed WebSocket port (so that clients reconnect to the same address after a restart) and
  each supervising a ``logger`` (``cloudisense.node.demo.logger``).  Broker and node settings are the
  defaults apart from ports, topic prefix and a simulated temperature.

Traffic (every client is a ``cloudisense.node.Client``; the long-lived ones with ``reconnect=True``)
  * calls: one caller per node, 20 calls/s each (60/s), 3 of every 5 to another node
    (``node.ping``, ``system.metrics``), each with a 5 s deadline;
  * a broadcast (``node.ping`` to ``*``) every second, from a client on soak-b;
  * events: a client on soak-a publishes ``soak/ev`` 50 times a second, each carrying a sequence
    number; four subscribers: two clients on soak-a (local), one on soak-b and one on soak-c
    (relayed from soak-a through the broker);
  * churn: every second a new client connects (to each node in turn), subscribes to another node's
    ``soak/churn/#`` (a remote interest there), makes a call and leaves: even ones close cleanly, odd
    ones send a call to another node and reset the TCP connection at once (SO_LINGER 0, then abort);
  * ``supervisor.restart logger`` every 30 s, on each node in turn (called from soak-b).

Faults
  * kill -9 of soak-c every 2 minutes (first at 1:00), restarted 2 s later;
  * one broker restart (SIGTERM, started again on the same port 2 s later) at the multiple of 2 minutes
    nearest the middle of the run (between two kills).  soak-a and soak-b live the whole run: their
    slopes are the leak verdict; soak-c lives 2 minutes at a time (its slopes are pooled within its
    lifetimes and reported, not judged: two minutes are all warm-up).

Fault windows
  A window opens 1 s before the fault (events in flight when it strikes) and closes 2 s after the
  system is back: every node running and ``/readyz`` 200, every node counting 3 members online
  (``/metrics``), every long-lived client connected with all its subscriptions made again, and soak-a
  holding the remote interests of soak-b and soak-c in ``soak/ev`` (``/varz``).  A fault not back
  within 60 s is a finding; its window closes there.

What is counted
  * calls: each call the client sent ends in exactly one of: a result, an error reply (by code), the
    connection to its node lost (in a fault window: expected for clients of the killed node; outside
    one: a finding), or no reply within the deadline + 5 s (always a finding).  Replies the client
    could not match (late after its own deadline, a second reply to one call, an unknown id) are
    counted too (findings).  Calls not sent because the client was reconnecting are counted apart.
  * events: every ``soak/ev`` the node acknowledged (publish reply ok), published outside every fault
    window, must reach each of the four subscribers; losses inside windows are reported for
    information.  Duplicates are counted.
  * resources, every 10 s per node: RSS, open fds, threads (``/proc/PID``), child processes, and from
    ``/varz``: clients, subscriptions, remote interests, pending calls, client methods, MQTT event
    subscriptions.  Slopes are least squares over the samples after the warm-up, leaving out samples
    taken inside fault windows, with one intercept per process lifetime; RSS is also given per 100,000
    calls the node finished (its own ``rpc.calls`` counter).  The soak process's own tasks and fds are
    sampled too (a leak in the harness would show there).
  * ERROR/CRITICAL lines and tracebacks in the nodes' logs; supervised children left behind by a
    killed node.

Targets (pass/fail)
  0 calls without a reply; 0 duplicate, late or unknown replies; 0 calls lost outside fault windows;
  0 events lost outside fault windows; every fault back within 60 s; no orphaned child; no ERROR line;
  on soak-a and soak-b: RSS growth < 1 MB per 100,000 calls, and over the measured span a fitted change
  within: fds 3, threads 2, child processes 0.5, clients/subscriptions/interests/pending calls/client
  methods/MQTT event subscriptions 1.5.

Output: a progress line every 30 s, the report, and the JSON result (``bench/results/soak-<N>m.json``
unless ``--json``).  Ctrl-C (or SIGTERM) stops the traffic, drains, and reports what was measured
(``"interrupted": true``); a second Ctrl-C abandons the report.

Exit codes: 0 every target met; 1 a target missed; 2 usage or setup error (no mosquitto, a node did not
start).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import collections
import contextlib
import json
import math
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable

import psutil

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from _harness import Proc, Procs, mosquitto_binary, wait_remote  # noqa: E402
from cloudisense.node import Client  # noqa: E402
from cloudisense.node._client import ConnectionLost  # noqa: E402
from cloudisense.node._errors import CallTimeout, CloudisenseError  # noqa: E402
from cloudisense.node.testing import child_env, free_port, write_config  # noqa: E402

NODES = ("soak-a", "soak-b", "soak-c")
A, B, C = NODES
VICTIM = C                  # killed every KILL_EVERY s; A and B live the whole run
TOPIC = "soak/ev"
CALL_RATE = 20.0            # per caller (one per node): 60/s in all
CALL_TIMEOUT = 5.0
EVENT_RATE = 50.0
BROADCAST_EVERY = 1.0
CHURN_EVERY = 1.0
LOGGER_EVERY = 30.0
KILL_FIRST, KILL_EVERY = 60.0, 120.0
DOWNTIME = 2.0              # between a kill (or a broker stop) and the restart
SAMPLE_EVERY = 10.0
PROGRESS_EVERY = 30.0
LEAD, SETTLE = 1.0, 2.0     # a fault window: [fault - LEAD, back + SETTLE]
RECOVERY_LIMIT = 60.0
DRAIN = 3.0                 # after the traffic stops, for events in flight
LOGGER = {"name": "logger", "command": ["python", "-m", "cloudisense.node.demo.logger", "--interval", "0.5"],
          "stop_grace": 3.0}
# flat: |slope x measured span| within this (RSS is judged per 100,000 calls instead)
FLAT = {"fds": 3.0, "threads": 2.0, "children": 0.5, "clients": 1.5, "subscriptions": 1.5, "interests": 1.5,
        "pending": 1.5, "client_methods": 1.5, "mqtt_event_subs": 1.5}
RSS_MB_PER_100K = 1.0
RESOURCES = ("rss", *FLAT)


# --- replies the Client drops ----------------------------------------------------------------------

class ReplyTap(dict[str, "asyncio.Future[dict[str, Any]]"]):
    """A client's table of requests waiting for a reply (``Client._waiting``), watched.

    The Client drops a reply whose id it no longer waits for (a late one, a second one) without a word,
    which is right for a client and blind for a soak.  Its reader task takes each reply out of this table
    by id; a take by the reader that finds nothing is such a reply.  (The one place this bench reaches
    into the Client: the alternative was a second client implementation.)
    """

    def __init__(self, book: "Calls", client: str) -> None:
        super().__init__()
        self.book, self.client = book, client
        self.last_issued = 0
        self.answered: collections.OrderedDict[str, None] = collections.OrderedDict()

    def __setitem__(self, key: str, value: "asyncio.Future[dict[str, Any]]") -> None:
        if key.isdigit():
            self.last_issued = max(self.last_issued, int(key))
        super().__setitem__(key, value)

    def pop(self, key: str, *default: Any) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name().endswith(".reader"):
            if key in self:
                self.answered[key] = None
                if len(self.answered) > 2_000:   # a second reply comes within seconds, if at all
                    self.answered.popitem(last=False)
            elif key in self.answered:
                self.book.stray("duplicate", self.client, key)
            elif key.isdigit() and int(key) <= self.last_issued:
                self.book.stray("late", self.client, key)
            else:
                self.book.stray("unknown", self.client, key)
        return super().pop(key, *default)


def soak_client(book: "Calls", url: str, name: str, *, reconnect: bool = True) -> Client:
    c = Client(url, name=name, default_timeout=CALL_TIMEOUT, open_timeout=5.0, reconnect=reconnect,
               backoff_initial=0.1, backoff_cap=2.0)
    c._waiting = ReplyTap(book, name)
    return c


# --- what is counted -------------------------------------------------------------------------------

@dataclass
class Window:
    kind: str                   # "kill" or "broker restart"
    target: str
    fault: float                # monotonic time of the fault
    back: float | None = None   # everything back (see the module doc)
    end: float | None = None    # back + SETTLE (or the recovery limit, or the stop)
    ok: bool = True
    missing: str = ""           # what was not back, if it was not

    def covers(self, t: float) -> bool:
        return self.fault - LEAD <= t <= (self.end if self.end is not None else math.inf)


class Calls:
    """Outcomes of every call, by kind (call, broadcast, logger restart, churn)."""

    def __init__(self, t0: Callable[[], float]) -> None:
        self.rel = t0
        self.by_kind: collections.Counter[tuple[str, str]] = collections.Counter()
        self.lost_at: list[tuple[float, str, str]] = []      # (time, kind, client): connection lost mid-call
        self.no_reply: list[dict[str, Any]] = []
        self.strays: list[dict[str, Any]] = []
        self.broadcast_errors: collections.Counter[str] = collections.Counter()
        self.errors_at: list[tuple[float, str, str]] = []    # (time, kind, code) of every error reply
        self.broadcasts: list[tuple[float, int]] = []        # (time, nodes that answered)

    def stray(self, what: str, client: str, rid: str) -> None:
        self.strays.append({"what": what, "client": client, "id": rid, "t": round(self.rel(), 2)})

    async def call(self, kind: str, c: Client, node: str | None, service: str, method: str,
                   params: dict[str, Any] | None = None, timeout: float = CALL_TIMEOUT) -> Any:
        """One call, counted; returns its result (None unless it succeeded)."""
        try:
            r = await c.call(node, service, method, params, timeout)
        except ConnectionLost as e:
            if str(e).startswith("not connected"):
                self.by_kind[kind, "not_sent"] += 1
            else:
                self.by_kind[kind, "connection_lost"] += 1
                self.lost_at.append((time.monotonic(), kind, c.name))
            return None
        except CloudisenseError as e:
            if isinstance(e, CallTimeout) and e.request_id is None:   # the client's own deadline: no reply
                self.by_kind[kind, "no_reply"] += 1
                self.no_reply.append({"t": round(self.rel(), 2), "kind": kind, "client": c.name, "node": node,
                                      "call": f"{service}.{method}", "timeout": timeout})
            else:
                self.by_kind[kind, f"error:{e.code}"] += 1
                self.errors_at.append((time.monotonic(), kind, str(e.code)))
            return None
        self.by_kind[kind, "ok"] += 1
        if kind == "broadcast" and isinstance(r, dict):
            self.broadcasts.append((time.monotonic(), len(r.get("results") or {})))
            for n, err in (r.get("errors") or {}).items():
                code = err.get("code") if isinstance(err, dict) else str(err)
                self.broadcast_errors[f"{n}:{code}"] += 1
        return r

    def total(self, outcome: str | None = None) -> int:
        return sum(v for (_, o), v in self.by_kind.items() if outcome is None or o == outcome)

    def summary(self, windows: list[Window]) -> dict[str, Any]:
        outcomes: collections.Counter[str] = collections.Counter()
        for (_, o), v in self.by_kind.items():
            outcomes[o] += v
        errors = {o.split(":", 1)[1]: v for o, v in sorted(outcomes.items()) if o.startswith("error:")}
        sent = sum(v for o, v in outcomes.items() if o != "not_sent")
        now = time.monotonic()
        lost_out = [(round(self.rel() - (now - t), 2), k, c)
                    for t, k, c in self.lost_at if not any(w.covers(t) for w in windows)]
        errors_out: collections.Counter[str] = collections.Counter(
            f"{k}:{code}" for t, k, code in self.errors_at if not any(w.covers(t) for w in windows))
        short = [round(self.rel() - (now - t), 2) for t, n in self.broadcasts
                 if n < 3 and not any(w.covers(t) for w in windows)]
        by_kind: dict[str, dict[str, int]] = {}
        for (k, o), v in sorted(self.by_kind.items()):
            by_kind.setdefault(k, {})[o] = v
        return {"calls": sent, "replies": outcomes["ok"] + sum(errors.values()), "ok": outcomes["ok"],
                "errors": errors, "no_reply": outcomes["no_reply"], "connection_lost": outcomes["connection_lost"],
                "connection_lost_outside_windows": len(lost_out), "not_sent_while_reconnecting": outcomes["not_sent"],
                "stray_replies": collections.Counter(s["what"] for s in self.strays),
                "errors_outside_windows": dict(errors_out),
                "broadcasts_short_outside_windows": len(short), "broadcasts_short_at": short[:20],
                "by_kind": by_kind, "broadcast_node_errors": dict(self.broadcast_errors),
                "no_reply_detail": self.no_reply[:20], "stray_detail": self.strays[:20],
                "lost_outside_detail": [{"t": t, "client": c, "kind": k} for t, k, c in lost_out[:20]]}


class Events:
    """Published ``soak/ev`` events (by sequence number) and what each subscriber received; compact (an
    hour is 180,000 events), so that the soak's own memory stays flat too."""

    def __init__(self, subscribers: list[str]) -> None:
        self.times = array.array("d")          # seq -> monotonic send time
        self.acked = bytearray()               # seq -> 1 once the node acknowledged the publish
        self.unacked: collections.Counter[str] = collections.Counter()   # why a publish got no ok
        self.names = subscribers
        self.got = [bytearray() for _ in subscribers]   # seq -> 1 once received
        self.count = [0] * len(subscribers)
        self.dups = [0] * len(subscribers)

    def publishing(self) -> int:
        self.times.append(time.monotonic())
        self.acked.append(0)
        return len(self.times) - 1

    def received(self, i: int, seq: int) -> None:
        g = self.got[i]
        if not 0 <= seq < len(self.times):
            return
        if seq >= len(g):
            g.extend(bytes(seq + 1 - len(g) + 4096))
        if g[seq]:
            self.dups[i] += 1
        else:
            g[seq] = 1
            self.count[i] += 1

    def summary(self, windows: list[Window], rel: Callable[[float], float]) -> dict[str, Any]:
        out: dict[str, Any] = {"published": len(self.times), "acknowledged": 0, "not_acknowledged": 0,
                               "outside_windows": 0, "inside_windows": 0, "subscribers": {}}
        outside: list[int] = []
        inside: list[int] = []
        for seq, t in enumerate(self.times):
            if not self.acked[seq]:
                out["not_acknowledged"] += 1
                continue
            out["acknowledged"] += 1
            (inside if any(w.covers(t) for w in windows) else outside).append(seq)
        out["outside_windows"], out["inside_windows"] = len(outside), len(inside)
        out["not_acknowledged_why"] = dict(self.unacked.most_common(20))
        lost_total = 0
        for i, name in enumerate(self.names):
            g = self.got[i]

            def has(seq: int) -> bool:
                return seq < len(g) and bool(g[seq])   # noqa: B023 - used at once, in this iteration
            lost = [s for s in outside if not has(s)]
            lost_in = len([s for s in inside if not has(s)])
            lost_total += len(lost)
            out["subscribers"][name] = {
                "received": self.count[i], "duplicates": self.dups[i], "lost_outside_windows": len(lost),
                "lost_inside_windows": lost_in,
                "lost_detail": [{"seq": s, "t": round(rel(self.times[s]), 2)} for s in lost[:20]]}
        out["lost_outside_windows"] = lost_total
        out["duplicates"] = sum(self.dups)
        return out


# --- processes -------------------------------------------------------------------------------------

class Cluster:
    """The broker and the three nodes; every process it starts is stopped by :meth:`close`."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.prefix = f"soak/{uuid.uuid4().hex[:10]}"
        self.broker_port = free_port()
        self.procs = Procs(tmp, f"mqtt://127.0.0.1:{self.broker_port}", self.prefix)
        self.ports = {n: free_port() for n in NODES}
        self.nodes: dict[str, Proc] = {}
        self.lifetime = {n: 0 for n in NODES}          # which process lifetime of the node this is (0, 1, ...)
        self.broker: Proc | None = None
        self.orphans: list[dict[str, Any]] = []        # supervised children a killed node left behind
        self.stop_problems: list[str] = []
        self.logs: list[tuple[str, Path]] = []

    def url(self, node: str) -> str:
        return f"ws://127.0.0.1:{self.ports[node]}/ws"

    def spawn(self, name: str, argv: list[str]) -> Proc:
        """Like ``Procs.spawn``, in a session of its own: a Ctrl-C at the terminal reaches the soak only,
        which then stops everything in order."""
        self.procs._n += 1
        out = self.tmp / f"{self.procs._n:02d}-{name}.out"
        err = self.tmp / f"{self.procs._n:02d}-{name}.log"
        with open(out, "wb") as o, open(err, "wb") as e:
            popen = subprocess.Popen(argv, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=child_env([HERE]),
                                     start_new_session=True)
        p = Proc(name, popen, out, err)
        self.procs.procs.append(p)
        return p

    async def start_broker(self) -> None:
        exe = mosquitto_binary()
        if exe is None:
            raise SetupError("no mosquitto binary")
        conf = self.tmp / "mosquitto.conf"
        conf.write_text(f"listener {self.broker_port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                        "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n")
        os.chmod(self.tmp, 0o755)
        os.chmod(conf, 0o644)
        p = self.spawn("mosquitto", [exe, "-c", str(conf)])
        self.logs.append(("mosquitto", p.err))
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.broker_port), timeout=0.5).close()
                break
            except OSError:
                if p.popen.poll() is not None or time.monotonic() > deadline:
                    raise SetupError(f"mosquitto did not listen on {self.broker_port}: {p.log_tail()}") from None
                await asyncio.sleep(0.05)
        self.broker = p

    def stop_broker(self) -> None:
        if self.broker is not None:
            self.procs.stop(self.broker)
            self.broker = None

    async def start_node(self, node: str) -> Proc:
        cfg = {"id": node, "ws": {"listen": f"127.0.0.1:{self.ports[node]}"},
               "broker": {"url": self.procs.broker, "prefix": self.prefix},
               "system": {"temperature": "sim:45"}, "processes": [dict(LOGGER)]}
        path = write_config(self.tmp / f"{node}.toml", cfg)
        p = self.spawn(f"node-{node}", [sys.executable, "-m", "cloudisense.node.cli", "node", "--config", str(path)])
        self.logs.append((f"{node}#{self.lifetime[node]}", p.err))
        try:
            await self.procs.ready(p, timeout=30)
        except RuntimeError as e:
            raise SetupError(str(e)) from None
        self.nodes[node] = p
        return p

    def kill_node(self, node: str) -> list[psutil.Process]:
        """kill -9; returns its children (to see that they go too)."""
        p = self.nodes.pop(node)
        children: list[psutil.Process] = []
        with contextlib.suppress(psutil.NoSuchProcess):
            children = list(psutil.Process(p.pid).children(recursive=True))
        p.popen.kill()
        p.popen.wait(10)
        self.procs.procs.remove(p)
        self.lifetime[node] += 1
        return children

    def check_orphans(self, node: str, children: list[psutil.Process], t: float) -> None:
        _, alive = psutil.wait_procs(children, timeout=5)
        for c in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                if c.status() != psutil.STATUS_ZOMBIE:
                    self.orphans.append({"node": node, "pid": c.pid, "cmd": " ".join(c.cmdline())[:120],
                                         "t": round(t, 1)})
                    c.kill()

    def close(self) -> None:
        """SIGTERM every node (they stop their loggers), then the broker; note what did not go cleanly."""
        nodes = list(self.nodes.items())
        kids = {}
        for n, p in nodes:
            with contextlib.suppress(psutil.NoSuchProcess):
                kids[n] = psutil.Process(p.pid).children(recursive=True)
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for n, p in nodes:
            try:
                p.popen.wait(20)
            except Exception:  # noqa: BLE001 - subprocess.TimeoutExpired: note it, then SIGKILL
                self.stop_problems.append(f"{n} did not stop within 20 s of SIGTERM")
            self.procs.stop(p)
            _, alive = psutil.wait_procs(kids.get(n, []), timeout=5)
            for c in alive:
                self.stop_problems.append(f"{n} left child {c.pid} behind")
                with contextlib.suppress(psutil.NoSuchProcess):
                    c.kill()
            codes = p.popen.returncode
            if codes not in (0, None):
                self.stop_problems.append(f"{n} exited with {codes} on SIGTERM")
        self.nodes.clear()
        self.procs.stop_all()


class SetupError(Exception):
    pass


# --- small I/O helpers -------------------------------------------------------------------------------

async def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, str]:
    """GET http://127.0.0.1:PORT/PATH (the nodes' ops endpoints): (status, body)."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n".encode())
            raw = await reader.read()
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
    head, _, body = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else 0
    return status, body.decode(errors="replace")


def proc_status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "VmRSS":
                out["rss"] = int(v.split()[0]) * 1024
            elif k == "Threads":
                out["threads"] = int(v)
    out["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    return out


def tcp_reset(c: Client) -> None:
    """Drop the client's connection with a TCP RST (SO_LINGER 0, then abort), as a crashed peer would."""
    ws = c.ws
    if ws is None:
        return
    sock = ws.transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()


def lsq_slope(points: list[tuple[float, float, int]]) -> float | None:
    """Least-squares slope (per second) of (t, value, lifetime) with one intercept per lifetime."""
    groups: dict[int, list[tuple[float, float]]] = {}
    for t, v, g in points:
        groups.setdefault(g, []).append((t, v))
    num = den = 0.0
    for pts in groups.values():
        if len(pts) < 2:
            continue
        mt = sum(t for t, _ in pts) / len(pts)
        mv = sum(v for _, v in pts) / len(pts)
        num += sum((t - mt) * (v - mv) for t, v in pts)
        den += sum((t - mt) ** 2 for t, _ in pts)
    return num / den if den > 0 else None


# --- the soak ----------------------------------------------------------------------------------------

class Soak:
    def __init__(self, cluster: Cluster, minutes: float, warmup: float) -> None:
        self.cluster = cluster
        self.duration = minutes * 60
        self.warmup = warmup
        self.t0 = time.monotonic()
        self.calls = Calls(lambda: time.monotonic() - self.t0)
        self.sub_names = [f"{A}/local-1", f"{A}/local-2", f"{B}/relayed", f"{C}/relayed"]
        self.events = Events(self.sub_names)
        self.windows: list[Window] = []
        self.samples: list[dict[str, Any]] = []
        self.harness_samples: list[dict[str, Any]] = []
        self.stop = asyncio.Event()        # traffic and faults stop
        self.done = asyncio.Event()        # subscribers and the sampler stop (after the drain)
        self.interrupted = False
        self.churn = collections.Counter[str]()
        self.logger_restarts = collections.Counter[str]()
        self.clients: dict[str, Client] = {}
        self.subs: list[Any] = []
        self.recovery: list[dict[str, Any]] = []
        self.schedule: list[tuple[float, str]] = []
        self.traffic_ended: float | None = None

    def rel(self, t: float | None = None) -> float:
        return (time.monotonic() if t is None else t) - self.t0

    # --- set-up ----------------------------------------------------------------------------------

    async def connect_clients(self, stack: contextlib.AsyncExitStack) -> None:
        cl = self.cluster
        names = {f"caller@{n}": n for n in NODES}
        names |= {"broadcaster@b": B, "ops@b": B, "publisher@a": A,
                  "sub1@a": A, "sub2@a": A, "sub3@b": B, "sub4@c": C}
        for name, node in names.items():
            c = soak_client(self.calls, cl.url(node), name)
            await c.connect()
            stack.push_async_callback(c.close)
            self.clients[name] = c
        for name, remote in [("sub1@a", None), ("sub2@a", None), ("sub3@b", A), ("sub4@c", A)]:
            self.subs.append(await self.clients[name].subscribe(remote, TOPIC))

    def schedule_faults(self) -> list[tuple[float, str]]:
        d = self.duration
        kills = [KILL_FIRST + k * KILL_EVERY for k in range(int(d // KILL_EVERY) + 1)
                 if KILL_FIRST + k * KILL_EVERY <= d - 20]
        mids = [k * KILL_EVERY for k in range(1, int(d // KILL_EVERY) + 1) if k * KILL_EVERY <= d - 30]
        broker = min(mids, key=lambda t: abs(t - d / 2)) if mids else (d / 2 if d >= 90 else None)
        plan = [(t, "kill") for t in kills if broker is None or abs(t - broker) >= 30]
        if broker is not None:
            plan.append((broker, "broker restart"))
        return sorted(plan)

    # --- health --------------------------------------------------------------------------------------

    async def varz(self, node: str) -> dict[str, Any] | None:
        try:
            status, body = await http_get(self.cluster.ports[node], "/varz")
        except (OSError, TimeoutError):
            return None
        if status != 200:
            return None
        v: dict[str, Any] = json.loads(body)
        return v

    async def not_back(self) -> str:
        """What is not back yet ('' when everything is): see the module doc."""
        cl = self.cluster
        for n in NODES:
            if n not in cl.nodes:
                return f"{n} not running"
            try:
                status, _ = await http_get(cl.ports[n], "/readyz")
                if status != 200:
                    return f"{n} not ready"
                status, text = await http_get(cl.ports[n], "/metrics")
            except (OSError, TimeoutError):
                return f"{n} not answering"
            m = re.search(r'^cloudisense_cluster_members\{state="online"\} (\S+)$', text, re.M)
            if m is None or float(m.group(1)) < len(NODES):
                return f"{n} sees {m.group(1) if m else '?'} members online"
        for name, c in self.clients.items():
            if not c.connected:
                return f"client {name} not connected"
            if c.remaking:
                return f"client {name} still making {sorted(c.remaking)} again"
        v = await self.varz(A)
        if v is None:
            return f"{A} /varz not answering"
        interests = v["pubsub"]["interests"]
        for n in (B, C):
            if TOPIC not in interests.get(n, []):
                return f"{A} has no interest of {n} in {TOPIC}"
        return ""

    async def wait_back(self, w: Window) -> None:
        deadline = w.fault + RECOVERY_LIMIT
        why = ""
        while time.monotonic() < deadline and not self.done.is_set():
            why = await self.not_back()
            if not why:
                w.back = time.monotonic()
                w.end = w.back + SETTLE
                return
            await asyncio.sleep(0.2)
        w.ok, w.missing = False, why or "stopped"
        w.end = time.monotonic()

    # --- workers ---------------------------------------------------------------------------------------

    async def every(self, period: float, fn: Callable[[int], Awaitable[None]], start: float = 0.0,
                    until: asyncio.Event | None = None) -> None:
        """``fn(i)`` every ``period`` s until ``until`` (the stop event); late ticks are not made up in bursts."""
        ev = until or self.stop
        due = time.monotonic() + start
        i = 0
        while not ev.is_set():
            delay = due - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await ev.wait()
                if ev.is_set():
                    return
            await fn(i)
            i += 1
            due += period
            if due < time.monotonic() - 1:
                due = time.monotonic()

    async def caller(self, node: str) -> None:
        c = self.clients[f"caller@{node}"]
        others = [n for n in NODES if n != node]
        plan: list[tuple[str | None, str, str]] = [(None, "node", "ping"), (others[0], "node", "ping"),
                                                  (others[1], "system", "metrics"), (None, "system", "metrics"),
                                                  (others[1], "node", "ping")]
        async with asyncio.TaskGroup() as tg:
            async def tick(i: int) -> None:
                target, svc, meth = plan[i % len(plan)]
                tg.create_task(self.calls.call("call", c, target, svc, meth), name=f"soak.call[{node}]")
            await self.every(1 / CALL_RATE, tick)

    async def broadcaster(self) -> None:
        c = self.clients["broadcaster@b"]
        async with asyncio.TaskGroup() as tg:
            async def tick(i: int) -> None:
                tg.create_task(self.calls.call("broadcast", c, "*", "node", "ping", timeout=3.0),
                               name="soak.broadcast")
            await self.every(BROADCAST_EVERY, tick)

    async def logger_restarter(self) -> None:
        c = self.clients["ops@b"]

        async def tick(i: int) -> None:
            node = NODES[i % len(NODES)]
            r = await self.calls.call("logger restart", c, node, "supervisor", "restart", {"name": "logger"},
                                      timeout=15.0)
            self.logger_restarts["ok" if r is not None else "failed"] += 1
        await self.every(LOGGER_EVERY, tick, start=LOGGER_EVERY / 2)

    async def publisher(self) -> None:
        c = self.clients["publisher@a"]

        async def tick(i: int) -> None:
            seq = self.events.publishing()
            try:
                await c.publish(TOPIC, {"seq": seq})
            except CloudisenseError as e:
                self.events.unacked[f"{self.rel():.1f}s {type(e).__name__}:{e.code}: {str(e)[:80]}"] += 1
                return
            self.events.acked[seq] = 1
        await self.every(1 / EVENT_RATE, tick)

    async def subscriber(self, i: int) -> None:
        sub = self.subs[i]
        while not self.done.is_set():
            try:
                ev = await sub.get(timeout=0.5)
            except TimeoutError:
                continue
            except ConnectionLost:
                return
            if ev.get("topic") == TOPIC and isinstance(ev.get("data"), dict):
                self.events.received(i, int(ev["data"]["seq"]))

    async def churner(self) -> None:
        async with asyncio.TaskGroup() as tg:
            async def tick(i: int) -> None:
                tg.create_task(self.churn_one(i), name=f"soak.churn[{i}]")
            await self.every(CHURN_EVERY, tick)

    async def churn_one(self, i: int) -> None:
        node = NODES[i % len(NODES)]
        other = NODES[(i + 1) % len(NODES)]
        reset = i % 2 == 1
        c = soak_client(self.calls, self.cluster.url(node), f"churn-{i}", reconnect=False)
        try:
            async with asyncio.timeout(15):
                try:
                    await c.connect()
                except CloudisenseError:
                    self.churn["connect_failed"] += 1
                    return
                try:
                    await c.subscribe(other, "soak/churn/#")
                    self.churn["subscribed"] += 1
                except CloudisenseError as e:
                    self.churn[f"subscribe:{e.code}"] += 1
                await self.calls.call("churn", c, None, "node", "ping")
                if reset:
                    # a call to another node in flight when the connection is reset: nothing to answer
                    pending = asyncio.create_task(c.call(other, "node", "ping", None, CALL_TIMEOUT),
                                                  name=f"soak.churn[{i}].abandoned")
                    await asyncio.sleep(0.002)
                    tcp_reset(c)
                    with contextlib.suppress(CloudisenseError):
                        await pending
                    self.churn["left_by_reset"] += 1
                else:
                    await c.close()
                    self.churn["left_cleanly"] += 1
        except TimeoutError:
            self.churn["stuck"] += 1
        finally:
            await c.close()

    async def faults(self) -> None:
        cl = self.cluster
        for at, kind in self.schedule:
            delay = self.t0 + at - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self.stop.wait()
            if self.stop.is_set():
                return
            w = Window(kind, VICTIM if kind == "kill" else "broker", time.monotonic())
            self.windows.append(w)
            if kind == "kill":
                children = cl.kill_node(VICTIM)
                await asyncio.to_thread(cl.check_orphans, VICTIM, children, self.rel())
                await asyncio.sleep(max(0.0, w.fault + DOWNTIME - time.monotonic()))
                await cl.start_node(VICTIM)
            else:
                cl.stop_broker()
                await asyncio.sleep(DOWNTIME)
                await cl.start_broker()
            await self.wait_back(w)
            self.recovery.append({"kind": w.kind, "target": w.target, "at": round(self.rel(w.fault), 1),
                                  "back_s": round(w.back - w.fault, 2) if w.back else None, "ok": w.ok,
                                  "missing": w.missing})
            print(f"[{clock(self.rel())}] {kind} of {w.target}: "
                  + (f"back in {w.back - w.fault:.1f} s" if w.back else f"NOT back within "
                     f"{RECOVERY_LIMIT:g} s: {w.missing}"), flush=True)

    async def sample_once(self) -> None:
        t = time.monotonic()
        for n in NODES:
            p = self.cluster.nodes.get(n)
            if p is None or p.popen.poll() is not None:
                continue
            try:
                s: dict[str, Any] = {"t": t, "node": n, "life": self.cluster.lifetime[n], **proc_status(p.pid),
                                     "children": len(psutil.Process(p.pid).children(recursive=True))}
            except (OSError, psutil.Error):
                continue
            v = await self.varz(n)
            if v is None:
                continue
            rpc, ps = v["rpc"], v["pubsub"]
            s.update(clients=v["clients"], subscriptions=ps["subscriptions"], interests=ps["remote_interests"],
                     pending=rpc["pending"], client_methods=rpc["client_methods"],
                     mqtt_event_subs=len(ps["mqtt_subscriptions"]), calls=rpc["calls"],
                     late_replies=rpc["late_replies"], duplicates=rpc["duplicates"], late_calls=rpc["late_calls"],
                     dropped=ps["dropped"], fed_reconnects=v["federation"].get("reconnects", 0),
                     rejected=sum(v["federation"].get("rejected", {}).values()))
            self.samples.append(s)
        me = proc_status(os.getpid())
        self.harness_samples.append({"t": t, "tasks": len(asyncio.all_tasks()), "fds": me["fds"],
                                     "threads": me["threads"], "rss": me["rss"]})

    async def sampler(self) -> None:
        async def tick(i: int) -> None:
            await self.sample_once()
        await self.every(SAMPLE_EVERY, tick, until=self.done)

    async def progress(self) -> None:
        async def tick(i: int) -> None:
            if i == 0:
                return
            last = {s["node"]: s for s in self.samples[-len(NODES) * 2:]}
            res = " ".join(f"{n[-1]}:{last[n]['rss'] / 2**20:.1f}MB/{last[n]['fds']}fd" for n in NODES if n in last)
            errs = collections.Counter({o.split(":", 1)[1]: v for (_, o), v in self.calls.by_kind.items()
                                        if o.startswith("error:")})
            got = min(self.events.count, default=0)
            print(f"[{clock(self.rel())}] calls {self.calls.total() - self.calls.total('not_sent'):,} "
                  f"ok {self.calls.total('ok'):,} err {sum(errs.values()):,}"
                  + (f" ({', '.join(f'{k} {v}' for k, v in errs.most_common(3))})" if errs else "")
                  + f" no-reply {self.calls.total('no_reply')} lost {self.calls.total('connection_lost')}"
                  f" | events {len(self.events.times):,} min-recv {got:,} | churn {sum(self.churn.values()):,}"
                  f" | faults {len(self.windows)} | {res}", flush=True)
        await self.every(PROGRESS_EVERY, tick)

    async def clock_(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(0.0, self.t0 + self.duration - time.monotonic())):
                await self.stop.wait()
        self.stop.set()

    async def run(self) -> None:
        cl = self.cluster
        await cl.start_broker()
        await asyncio.gather(*(cl.start_node(n) for n in NODES))
        for a in NODES:
            for b in NODES:
                if a != b:
                    await wait_remote(cl.url(a), b, timeout=30)
        async with contextlib.AsyncExitStack() as stack:
            await self.connect_clients(stack)
            deadline = time.monotonic() + 30
            while why := await self.not_back():
                if time.monotonic() > deadline:
                    raise SetupError(f"the cluster did not settle: {why}")
                await asyncio.sleep(0.2)
            self.t0 = time.monotonic()
            self.schedule = self.schedule_faults()
            print(f"soak: {self.duration / 60:g} min; nodes {', '.join(NODES)} (victim {VICTIM}); broker "
                  f"{cl.procs.broker}; faults at " + ", ".join(f"{clock(t)} {k}" for t, k in self.schedule)
                  + f"; logs in {cl.tmp}", flush=True)
            async with asyncio.TaskGroup() as outer:
                for i in range(len(self.subs)):
                    outer.create_task(self.subscriber(i), name=f"soak.subscriber[{i}]")
                outer.create_task(self.sampler(), name="soak.sampler")
                async with asyncio.TaskGroup() as tg:
                    for n in NODES:
                        tg.create_task(self.caller(n), name=f"soak.caller[{n}]")
                    tg.create_task(self.broadcaster(), name="soak.broadcaster")
                    tg.create_task(self.logger_restarter(), name="soak.logger")
                    tg.create_task(self.publisher(), name="soak.publisher")
                    tg.create_task(self.churner(), name="soak.churner")
                    tg.create_task(self.faults(), name="soak.faults")
                    tg.create_task(self.progress(), name="soak.progress")
                    tg.create_task(self.clock_(), name="soak.clock")
                self.traffic_ended = time.monotonic()
                for w in self.windows:   # a fault still open at the stop closes there
                    if w.end is None:
                        w.end, w.ok, w.missing = self.traffic_ended, False, w.missing or "stopped before back"
                await asyncio.sleep(DRAIN)
                await self.sample_once()
                self.done.set()

    # --- the report --------------------------------------------------------------------------------

    def slopes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        start = self.t0 + self.warmup
        for n in NODES:
            pts = [s for s in self.samples if s["node"] == n and s["t"] >= start
                   and not any(w.covers(s["t"]) for w in self.windows)]
            if n == VICTIM:   # leave out each lifetime's first 30 s as well
                first: dict[int, float] = {}
                for s in self.samples:
                    if s["node"] == n:
                        first.setdefault(s["life"], s["t"])
                pts = [s for s in pts if s["t"] >= first[s["life"]] + 30]
            r: dict[str, Any] = {"samples": len(pts), "lifetimes": len({s["life"] for s in pts})}
            if len(pts) < 3:
                out[n] = r
                continue
            span = pts[-1]["t"] - pts[0]["t"]
            r["span_s"] = round(span, 1)
            per_h: dict[str, float | None] = {}
            for k in RESOURCES:
                sl = lsq_slope([(s["t"], float(s[k]), s["life"]) for s in pts])
                per_h[k] = None if sl is None else round(sl * 3600 / (2**20 if k == "rss" else 1), 3)
            r["per_hour"] = per_h            # rss in MB per hour, the others in units per hour
            # calls this node finished, per second, over the same samples (its counter restarts with it)
            calls = sum(max(0, b["calls"] - a["calls"]) for a, b in zip(pts, pts[1:], strict=False)
                        if a["life"] == b["life"])
            secs = sum(b["t"] - a["t"] for a, b in zip(pts, pts[1:], strict=False) if a["life"] == b["life"])
            rate = calls / secs if secs else 0.0
            r["calls_per_s"] = round(rate, 2)
            rss_h = per_h["rss"]
            r["rss_mb_per_100k_calls"] = (round(rss_h / (rate * 3600) * 1e5, 4)
                                          if rss_h is not None and rate > 0 else None)
            r["change_over_span"] = {k: (round(v * span / 3600, 3) if v is not None else None)
                                     for k, v in per_h.items() if k != "rss"}
            r["first"] = {k: pts[0][k] for k in RESOURCES}
            r["last"] = {k: pts[-1][k] for k in RESOURCES}
            r["max"] = {k: max(s[k] for s in pts) for k in RESOURCES}
            out[n] = r
        h = [s for s in self.harness_samples if s["t"] >= start]
        if len(h) >= 3:
            out["harness"] = {k: round((lsq_slope([(s["t"], float(s[k]), 0) for s in h]) or 0.0) * 3600
                                       / (2**20 if k == "rss" else 1), 3)
                              for k in ("tasks", "fds", "threads", "rss")}
            out["harness"]["last"] = {k: h[-1][k] for k in ("tasks", "fds", "threads")}
        return out

    def node_counters(self) -> dict[str, Any]:
        out = {}
        for n in NODES:
            mine = [s for s in self.samples if s["node"] == n]
            if mine:
                last = mine[-1]
                out[n] = {k: last[k] for k in ("late_replies", "duplicates", "late_calls", "dropped",
                                               "fed_reconnects", "rejected")}
                if n == VICTIM:
                    out[n]["note"] = "since its last restart"
        return out


def scan_logs(logs: list[tuple[str, Path]]) -> dict[str, Any]:
    """ERROR/CRITICAL lines and tracebacks, and the count of WARNINGs, per process log."""
    out: dict[str, Any] = {}
    for name, path in logs:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        bad = [ln for ln in lines if re.search(r" (ERROR|CRITICAL) |^Traceback", ln)]
        warnings = sum(1 for ln in lines if " WARNING " in ln)
        if bad or warnings:
            out[name] = {"errors": len(bad), "warnings": warnings, "error_lines": bad[:10]}
    return out


def clock(t: float) -> str:
    t = max(0.0, t)
    return f"{int(t // 60):d}:{int(t % 60):02d}"


def evaluate(report: dict[str, Any]) -> list[tuple[str, bool, str]]:
    c, e, s = report["calls"], report["events"], report["slopes"]
    checks = [
        ("calls without a reply", c["no_reply"] == 0, f"{c['no_reply']}"),
        ("duplicate, late or unknown replies", sum(c["stray_replies"].values()) == 0, f"{dict(c['stray_replies'])}"),
        ("calls lost outside fault windows", c["connection_lost_outside_windows"] == 0,
         f"{c['connection_lost_outside_windows']}"),
        ("events lost outside fault windows", e["lost_outside_windows"] == 0, f"{e['lost_outside_windows']}"),
        ("faults back within 60 s", all(r["ok"] for r in report["faults"]),
         ", ".join(f"{r['kind']}@{r['at']}s {r['back_s']}s" for r in report["faults"] if not r["ok"]) or "all"),
        ("orphaned children", not report["orphans"], f"{len(report['orphans'])}"),
        ("ERROR lines / tracebacks in node logs", not any(v["errors"] for k, v in report["logs"].items()
                                                          if k != "mosquitto"),
         f"{sum(v['errors'] for k, v in report['logs'].items() if k != 'mosquitto')}"),
        ("clean stop", not report["stop_problems"], "; ".join(report["stop_problems"]) or "yes"),
    ]
    for n in (A, B):
        r = s.get(n, {})
        if "per_hour" not in r:
            checks.append((f"{n} slopes", False, "too few samples"))
            continue
        v = r["rss_mb_per_100k_calls"]
        checks.append((f"{n} RSS growth < {RSS_MB_PER_100K:g} MB / 100k calls", v is not None and v < RSS_MB_PER_100K,
                       f"{v} MB"))
        for k, tol in FLAT.items():
            ch = r["change_over_span"][k]
            checks.append((f"{n} {k} flat (|change| <= {tol:g})", ch is not None and abs(ch) <= tol,
                           f"{ch:+g} over {r['span_s'] / 60:.0f} min" if ch is not None else "n/a"))
    return checks


def render(report: dict[str, Any], checks: list[tuple[str, bool, str]]) -> str:
    c, e = report["calls"], report["events"]
    lines = [f"\n== soak {report['minutes']:g} min{' (interrupted)' if report['interrupted'] else ''}: "
             f"{report['seconds']:.0f} s of traffic",
             f"calls {c['calls']:,}  replies {c['replies']:,} (ok {c['ok']:,}, errors "
             + ", ".join(f"{k} {v:,}" for k, v in c["errors"].items()) + ")"
             f"  no reply {c['no_reply']}  connection lost {c['connection_lost']} "
             f"(outside windows {c['connection_lost_outside_windows']})  not sent (reconnecting) "
             f"{c['not_sent_while_reconnecting']}  stray replies {dict(c['stray_replies'])}",
             f"error replies outside fault windows: {c['errors_outside_windows'] or 0}; broadcasts answered by "
             f"fewer than 3 nodes outside fault windows: {c['broadcasts_short_outside_windows']}",
             f"events published {e['published']:,} (acknowledged {e['acknowledged']:,}; outside windows "
             f"{e['outside_windows']:,}), lost outside windows {e['lost_outside_windows']}, duplicates "
             f"{e['duplicates']}",
             "  " + "; ".join(f"{k}: got {v['received']:,}, lost {v['lost_outside_windows']} "
                              f"(+{v['lost_inside_windows']} in windows)" for k, v in e["subscribers"].items()),
             "faults: " + ", ".join(f"{r['kind']} {r['target']} @{r['at']:g}s back {r['back_s']}s"
                                    for r in report["faults"]),
             f"churn: {dict(report['churn'])}",
             "slopes per hour (rss MB/h; after the warm-up, outside fault windows):"]
    for n, r in report["slopes"].items():
        if n == "harness":
            lines.append(f"  harness: {r}")
            continue
        if "per_hour" not in r:
            lines.append(f"  {n}: {r['samples']} samples (too few)")
            continue
        ph = r["per_hour"]
        lines.append(f"  {n}{' (victim, pooled within lifetimes, not judged)' if n == VICTIM else ''}: "
                     + " ".join(f"{k} {ph[k]:+g}" if ph[k] is not None else f"{k} -" for k in RESOURCES)
                     + f" | RSS {r['rss_mb_per_100k_calls']} MB/100k calls at {r['calls_per_s']} calls/s, "
                     f"{r['samples']} samples over {r['span_s'] / 60:.1f} min")
    for name, v in report["logs"].items():
        lines.append(f"log {name}: {v['errors']} error lines, {v['warnings']} warnings"
                     + "".join(f"\n    {ln[:200]}" for ln in v["error_lines"][:3]))
    lines.append("targets:")
    for what, ok, detail in checks:
        lines.append(f"  [{'ok' if ok else 'MISSED'}] {what}: {detail}")
    lines.append("PASS" if all(ok for _, ok, _ in checks) else "FAIL")
    return "\n".join(lines)


async def amain(args: argparse.Namespace) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="cloudisense-soak-"))
    cluster = Cluster(tmp)
    soak = Soak(cluster, args.minutes, args.warmup if args.warmup is not None
                else min(300.0, max(30.0, args.minutes * 6.0)))
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None

    def on_signal() -> None:
        if soak.stop.is_set():
            main.cancel()
            return
        print("\nsoak: stopping (again to abandon the report)", file=sys.stderr, flush=True)
        soak.interrupted = True
        soak.stop.set()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    try:
        try:
            await soak.run()
        except SetupError as e:
            print(f"soak: setup failed: {e}\nlogs in {tmp}", file=sys.stderr)
            return 2
        finally:
            await asyncio.to_thread(cluster.close)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    traffic = (soak.traffic_ended or time.monotonic()) - soak.t0
    report: dict[str, Any] = {
        "command": " ".join(["python", "bench/soak.py", *sys.argv[1:]]), "date": started,
        "minutes": args.minutes, "seconds": round(traffic, 1), "interrupted": soak.interrupted,
        "warmup_s": soak.warmup, "setup": {"nodes": list(NODES), "victim": VICTIM, "calls_per_s": CALL_RATE * 3,
                                           "events_per_s": EVENT_RATE, "subscribers": soak.sub_names,
                                           "fault_window": f"[fault - {LEAD:g} s, back + {SETTLE:g} s]"},
        "calls": soak.calls.summary(soak.windows),
        "events": soak.events.summary(soak.windows, soak.rel),
        "faults": soak.recovery,
        "windows": [{**asdict(w), "fault": round(soak.rel(w.fault), 2),
                     "back": round(soak.rel(w.back), 2) if w.back else None,
                     "end": round(soak.rel(w.end), 2) if w.end else None} for w in soak.windows],
        "churn": dict(soak.churn), "logger_restarts": dict(soak.logger_restarts),
        "slopes": soak.slopes(), "node_counters": soak.node_counters(),
        "orphans": cluster.orphans, "stop_problems": cluster.stop_problems,
        "logs": scan_logs(cluster.logs),
        "samples": [{k: (round(v - soak.t0, 1) if k == "t" else v) for k, v in s.items()} for s in soak.samples],
        "loadavg_at_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count(),
    }
    checks = evaluate(report)
    report["targets"] = [{"what": w, "met": ok, "value": d} for w, ok, d in checks]
    report["pass"] = all(ok for _, ok, _ in checks)
    out = Path(args.json) if args.json else HERE / "results" / f"soak-{args.minutes:g}m.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    samples = report.pop("samples")   # one line per sample
    body = json.dumps(report, indent=1, default=str)
    rows = ",\n  ".join(json.dumps(x, separators=(",", ":")) for x in samples)
    out.write_text(body[:-2] + ',\n "samples": [\n  ' + rows + "\n ]\n}\n")
    print(render(report, checks))
    print(f"result: {out}")
    if args.keep_logs or not report["pass"]:
        print(f"logs kept in {tmp}")
    else:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0 if report["pass"] else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, required=True, help="how long the traffic runs")
    ap.add_argument("--warmup", type=float, help="seconds left out of the slopes (default: 10%% of the run, "
                                                 "at least 30, at most 300)")
    ap.add_argument("--json", metavar="FILE", help="where the result goes (default bench/results/soak-<N>m.json)")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs (always kept on FAIL)")
    args = ap.parse_args(argv)
    if args.minutes <= 0:
        ap.error("--minutes must be positive")
    if mosquitto_binary() is None:
        print("soak: no mosquitto binary on PATH", file=sys.stderr)
        return 2
    try:
        return asyncio.run(amain(args))
    except asyncio.CancelledError:
        print("soak: abandoned", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
