"""What the console shows, as plain data (pure: no Textual, no I/O, no awaits).

* :class:`ClusterModel` — the cluster table's rows, built from one
  ``node.cluster`` snapshot and then kept live by ``$cluster/node/*`` events
  (remote nodes), ``metrics/*`` and ``process/*`` events (the connected node,
  which sends no ``$cluster`` heartbeat about itself) and step results.
* :class:`PlanProgress` — per-step state of a plan while it waits for
  approval and while it runs (pending → queued → running → ok / error).
* Formatting helpers shared by the widgets (temperatures, ages, processes,
  RPC stats, the model label).

The widgets render these; the unit tests drive them directly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

# process/NAME/<what> -> the state the process is in after it (as the dashboard does)
PROCESS_STATES = {"started": "running", "restarted": "running", "stopped": "stopped", "exited": "exited"}


# ---- formatting --------------------------------------------------------------------------------

def model_label(model: Any) -> str:
    """How the header names the model: ``offline`` is the rules planner, and says so."""
    name = str(getattr(model, "name", model) or "offline")
    if name == "offline":
        return "offline (rules planner)"
    return name


def fmt_age(seconds: float | None) -> str:
    if seconds is None or math.isnan(seconds):
        return "—"
    s = max(0.0, seconds)
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s / 60:.0f}m"
    if s < 86400:
        return f"{s / 3600:.0f}h"
    return f"{s / 86400:.0f}d"


def fmt_pct(v: Any) -> str:
    return "—" if not isinstance(v, (int, float)) else f"{v:.0f}%"


def fmt_temp(metrics: dict[str, Any] | None) -> str:
    """``38.5°`` for a sensor, ``38.5° sim`` when the node says the value is simulated."""
    m = metrics or {}
    t = m.get("temperature_c")
    if not isinstance(t, (int, float)) or (isinstance(t, float) and math.isnan(t)):
        return "—"
    return f"{t:.1f}°" + (" sim" if m.get("simulated") else "")


_STATE_MARK = {"running": "▶", "stopped": "■", "exited": "✗", "backoff": "↻", "starting": "…"}


def fmt_processes(processes: Iterable[dict[str, Any]], width: int = 26) -> str:
    """``logger▶4242`` (running, pid), ``web■`` (stopped) … capped at ``width`` characters."""
    parts = []
    for p in processes:
        mark = _STATE_MARK.get(str(p.get("state")), "?")
        pid = p.get("pid") if p.get("state") == "running" else None
        parts.append(f"{p.get('name')}{mark}{pid if pid else ''}")
    if not parts:
        return "—"
    text = " ".join(parts)
    if len(text) <= width:
        return text
    shown: list[str] = []
    for i, part in enumerate(parts):
        rest = f" +{len(parts) - i}"
        if len(" ".join([*shown, part])) + len(f" +{len(parts) - i - 1}") > width:
            return (" ".join(shown) + rest).strip()
        shown.append(part)
    return " ".join(shown)


def fmt_params(params: dict[str, Any]) -> str:
    return json.dumps(params, ensure_ascii=False, separators=(", ", ": "))


def fmt_stats(stats: dict[str, Any] | None) -> str:
    """One line of RPC activity from a ``$sys/stats`` sample."""
    if not stats:
        return "RPC  waiting for $sys/stats…"
    rpc = stats.get("rpc") or {}
    errors = rpc.get("errors") or {}
    n_err = sum(int(v) for v in errors.values() if isinstance(v, (int, float)))
    lat = rpc.get("latency_ms") or {}
    err = f"{n_err} errors" if n_err else "0 errors"
    if errors:
        top = sorted(errors.items(), key=lambda kv: -kv[1])[:2]
        err += " (" + ", ".join(f"{k} {v}" for k, v in top) + ")"
    return (f"RPC  {float(rpc.get('calls_per_s') or 0):.1f} calls/s · {int(rpc.get('calls') or 0)} calls · {err} · "
            f"p50 {float(lat.get('p50') or 0):.1f} ms · p99 {float(lat.get('p99') or 0):.1f} ms")


def parse_watch(text: str) -> tuple[str | None, str]:
    """``"node-b metrics/#"`` → (``node-b``, ``metrics/#``); a lone topic or ``. topic`` is this node."""
    parts = text.split()
    if not parts:
        raise ValueError("type NODE TOPIC, e.g. node-b process/#  (or just a topic for this node)")
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) > 2:
        raise ValueError("type NODE TOPIC: two words, e.g. node-b metrics/#")
    node, topic = parts
    return (None if node in (".", "self") else node), topic


# ---- the cluster -------------------------------------------------------------------------------

@dataclass
class NodeRow:
    id: str
    online: bool = False
    since: float | None = None
    last_seen: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    services: dict[str, Any] = field(default_factory=dict)
    processes: list[dict[str, Any]] = field(default_factory=list)
    history: dict[str, list[float]] = field(default_factory=dict)  # metric -> the last HISTORY samples
    recent: list[dict[str, Any]] = field(default_factory=list)      # the last RECENT events about this node

    def sample(self) -> None:
        """Record the current metrics for the detail view's sparklines."""
        for key in SPARK_METRICS:
            v = self.metrics.get(key)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v):
                self.history[key] = (self.history.get(key, []) + [float(v)])[-HISTORY:]

    def merge(self, data: dict[str, Any]) -> None:
        for key in ("online", "since", "last_seen"):
            if key in data and data[key] is not None:
                setattr(self, key, data[key])
        if isinstance(data.get("metrics"), dict) and data["metrics"]:
            self.metrics = dict(data["metrics"])
        if isinstance(data.get("services"), dict) and data["services"]:
            self.services = dict(data["services"])
        if isinstance(data.get("processes"), list):
            self.processes = [dict(p) for p in data["processes"] if isinstance(p, dict)]

    def cells(self, now: float, self_id: str, procs_width: int = 26) -> tuple[str, ...]:
        name = self.id + (" *" if self.id == self_id else "")
        state = "online" if self.online else "OFFLINE"
        svc = len(self.services)
        seen = fmt_age(now - self.last_seen) if self.last_seen else "—"
        # An offline node's processes are not known to run: no ▶, no pid, only what was last seen.
        procs = fmt_processes(self.processes, procs_width) if self.online else (
            "last seen: " + (" ".join(str(p.get("name")) for p in self.processes) or "—"))
        return (name, state, fmt_temp(self.metrics), fmt_pct(self.metrics.get("cpu_percent")),
                fmt_pct(self.metrics.get("memory_percent")), f"{svc}" if svc else "—", procs, seen)


SPARK_METRICS = ("temperature_c", "cpu_percent", "memory_percent", "disk_percent")
HISTORY = 120
RECENT = 50

CLUSTER_COLUMNS = ("node", "state", "temp", "cpu", "mem", "svc", "processes", "seen")


class ClusterModel:
    """The membership table as the console shows it.  Methods return True when something changed."""

    def __init__(self) -> None:
        self.self_id = ""
        self.nodes: dict[str, NodeRow] = {}
        self.version = 0  # bumped on every change: widgets re-render when it moved

    def _changed(self) -> bool:
        self.version += 1
        return True

    def load(self, snapshot: dict[str, Any]) -> bool:
        """A whole ``node.cluster`` result: nodes it no longer lists are dropped."""
        self.self_id = str(snapshot.get("self") or self.self_id)
        seen = set()
        found = snapshot.get("catalogs")
        catalogs: dict[str, Any] = found if isinstance(found, dict) else {}
        for entry in snapshot.get("nodes") or []:
            if not isinstance(entry, dict) or not entry.get("id"):
                continue
            if not entry.get("services") and entry.get("catalog_hash") in catalogs:
                entry = {**entry, "services": catalogs[entry["catalog_hash"]]}   # compact rows: catalogs beside
            nid = str(entry["id"])
            seen.add(nid)
            row = self.nodes.setdefault(nid, NodeRow(nid))
            row.merge(entry)
            row.sample()
        for nid in set(self.nodes) - seen:
            del self.nodes[nid]
        return self._changed()

    def apply(self, event: dict[str, Any], now: float) -> bool:
        """One event from the node.  Unknown topics change nothing."""
        topic = str(event.get("topic") or "")
        raw = event.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        named = event.get("node") or data.get("id")
        if not named:
            return False
        node = str(named)
        t = event.get("ts")
        ts: float = t if isinstance(t, (int, float)) else now
        if node in self.nodes:
            row0 = self.nodes[node]
            row0.recent = (row0.recent + [{"topic": topic, "ts": ts, "data": event.get("data")}])[-RECENT:]
        if topic.startswith("$cluster/node/"):
            kind = topic.removeprefix("$cluster/node/")
            if kind not in ("online", "offline", "state"):
                return False
            row = self.nodes.setdefault(node, NodeRow(node))
            row.merge(data)
            row.sample()
            if kind == "offline":
                row.online = False
                row.since = data.get("since") or ts
            else:
                row.online = True
                if kind == "online" and not data.get("since"):
                    row.since = ts
                if kind == "state" and not data.get("last_seen"):
                    row.last_seen = ts
            return self._changed()
        if node not in self.nodes:
            return False
        row = self.nodes[node]
        if topic.startswith("metrics/"):
            keys = ("cpu_percent", "memory_percent", "disk_percent", "temperature_c", "load", "simulated")
            if not any(k in data for k in keys):
                return False
            row.metrics = {**row.metrics, **{k: v for k, v in data.items() if k != "node"}}
            row.sample()
            row.last_seen = max(row.last_seen or 0.0, float(ts))
            row.online = True
            return self._changed()
        if topic.startswith("process/"):
            what = topic.rsplit("/", 1)[-1]
            if not data.get("name"):
                return False
            patch: dict[str, Any] = {k: data[k] for k in ("pid", "restarts", "exit_code") if k in data}
            if what in PROCESS_STATES:
                patch["state"] = "backoff" if what == "exited" and data.get("restart_in") else PROCESS_STATES[what]
            return self.patch_process(node, {"name": data["name"], **patch})
        return False

    def patch_process(self, node: str, status: dict[str, Any]) -> bool:
        """A supervisor answer (a process status) updates the row at once."""
        row = self.nodes.get(node)
        name = status.get("name")
        if row is None or not name:
            return False
        for p in row.processes:
            if p.get("name") == name:
                p.update({k: v for k, v in status.items() if k != "node"})
                break
        else:
            row.processes.append({k: v for k, v in status.items() if k != "node"})
        return self._changed()

    def rows(self) -> list[NodeRow]:
        return [self.nodes[k] for k in sorted(self.nodes)]

    def counts(self) -> tuple[int, int]:
        return sum(1 for n in self.nodes.values() if n.online), len(self.nodes)


# ---- a plan's progress -------------------------------------------------------------------------

@dataclass
class StepState:
    index: int
    targets: list[str]
    checked: bool = True
    status: str = "pending"         # pending | queued | skipped | running | ok | error | not run
    done: int = 0                   # targets finished
    started: float | None = None
    seconds: float | None = None
    error: str = ""
    running_on: str = ""

    def label(self, now: float | None = None) -> str:
        n = len(self.targets)
        if self.status == "running":
            el = f" {now - self.started:.1f}s" if now is not None and self.started is not None else ""
            where = f" {self.running_on}" if n > 1 and self.running_on else ""
            return f"running{where}{el}"
        if self.status == "ok":
            return f"ok {self.seconds:.2f}s" if self.seconds is not None and n == 1 else f"ok {self.done}/{n}"
        if self.status == "error":
            return f"error: {self.error}"
        if self.status == "pending":
            return "approve?" if self.checked else "unchecked"
        return self.status


class PlanProgress:
    """Which steps are checked for approval, and how each one is doing once approved."""

    def __init__(self, steps: Iterable[tuple[int, list[str]]]) -> None:
        self.steps: dict[int, StepState] = {i: StepState(i, list(t)) for i, t in steps}
        self.running = False
        self.finished = False

    def toggle(self, index: int) -> bool:
        s = self.steps[index]
        s.checked = not s.checked
        return s.checked

    def checked(self) -> list[int]:
        return [i for i, s in self.steps.items() if s.checked]

    def start(self, approved: Iterable[int]) -> None:
        ok = set(approved)
        self.running = True
        for i, s in self.steps.items():
            s.status = "queued" if i in ok else "skipped"

    def on_call(self, node: str, now: float) -> StepState | None:
        """A mutating call just went out: the first queued/running step still waiting for ``node``."""
        for s in self.steps.values():
            if s.status in ("queued", "running") and s.done < len(s.targets) and node in s.targets[s.done:]:
                s.status = "running"
                s.running_on = node
                if s.started is None:
                    s.started = now
                return s
        return None

    def on_result(self, index: int, ok: bool, seconds: float | None, error: str = "") -> StepState | None:
        s = self.steps.get(index)
        if s is None:
            return None
        s.done += 1
        s.seconds = (s.seconds or 0.0) + (seconds or 0.0)
        if not ok:
            s.status, s.error = "error", error
        elif s.done >= len(s.targets):
            s.status = "ok"
        else:
            s.status = "running"
        return s

    def finish(self) -> None:
        self.running = False
        self.finished = True
        for s in self.steps.values():
            if s.status in ("queued", "running"):
                s.status = "not run"
