"""An in-memory cluster with the :class:`ClusterConnection` interface, for tests, the eval set and benchmarks.

Each fake node has a real :class:`cloudisense.node._services.Registry` with
``supervisor`` and ``system`` services over in-memory state, so params are
validated and described exactly as a node does; other services named in a
snapshot accept any params and answer ``{"ok": true}``.  Every call is
recorded in :attr:`FakeCluster.calls` with whether it mutates.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Self

from pydantic import BaseModel, ConfigDict, Field

from cloudisense.node._errors import InvalidParams, NodeOffline, UnknownMethod, UnknownNode, UnknownService
from cloudisense.node._services import Registry, Service, method
from cloudisense.node._topics import matches   # the node's matcher: MQTT's '$' rule included


class NameParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="process name")


class LogsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="process name")
    lines: int = Field(50, ge=1, le=1000, description="how many of the last lines")


class _Anything(BaseModel):
    model_config = ConfigDict(extra="allow")


@dataclass
class CallRecord:
    node: str
    service: str
    method: str
    params: dict[str, Any]
    mutates: bool


@dataclass
class FakeNode:
    id: str
    online: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)
    logs: dict[str, list[str]] = field(default_factory=dict)
    extra_services: dict[str, dict[str, Any]] = field(default_factory=dict)
    host: str = "localhost"
    version: str = "0.1.0"
    since: float = 0.0
    registry: Registry | None = field(default=None, repr=False)  # built on first use


class _Supervisor(Service):
    name = "supervisor"
    description = "supervised child processes"

    def __init__(self, fake: FakeCluster, node: FakeNode) -> None:
        super().__init__()
        self.fake, self.fnode = fake, node

    def _proc(self, name: str) -> dict[str, Any]:
        p = self.fnode.processes.get(name)
        if p is None:
            raise InvalidParams(f"no process {name!r} on {self.fnode.id} "
                                f"(processes: {', '.join(sorted(self.fnode.processes)) or 'none'})")
        return p

    @method(mutates=False, description="all supervised processes")
    async def list(self) -> _Anything:
        return _Anything(processes=[dict(p) for p in self.fnode.processes.values()])

    @method(mutates=False, description="one process's state")
    async def status(self, p: NameParams) -> _Anything:
        return _Anything(**self._proc(p.name))

    @method(mutates=True, description="start a stopped process")
    async def start(self, p: NameParams) -> _Anything:
        proc = self._proc(p.name)
        if proc["state"] != "running":
            proc.update(state="running", pid=self.fake.next_pid(), uptime=0.0, exit_code=None)
        return _Anything(**proc)

    @method(mutates=True, description="stop a process")
    async def stop(self, p: NameParams) -> _Anything:
        proc = self._proc(p.name)
        proc.update(state="stopped", pid=None, uptime=None, exit_code=0)
        return _Anything(**proc)

    @method(mutates=True, description="restart a process (new pid)")
    async def restart(self, p: NameParams) -> _Anything:
        proc = self._proc(p.name)
        proc.update(state="running", pid=self.fake.next_pid(), uptime=0.0, exit_code=None,
                    restarts=int(proc.get("restarts", 0)) + 1)
        return _Anything(**proc)

    @method(mutates=False, description="the last lines a process wrote")
    async def logs(self, p: LogsParams) -> _Anything:
        self._proc(p.name)
        lines = self.fnode.logs.get(p.name, [])
        return _Anything(name=p.name, lines=lines[-p.lines:], next_seq=len(lines))


class _System(Service):
    name = "system"
    description = "host information and metrics"

    def __init__(self, node: FakeNode) -> None:
        super().__init__()
        self.fnode = node

    @method(mutates=False, description="host, platform, versions")
    async def info(self) -> _Anything:
        return _Anything(node=self.fnode.id, host=self.fnode.host, version=self.fnode.version, platform="fake")

    @method(mutates=False, description="current metrics")
    async def metrics(self) -> _Anything:
        return _Anything(**self.fnode.metrics)


class _Sub:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self._events = events
        self._closed = asyncio.Event()
        self.closed = False

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._iter()

    async def _iter(self) -> AsyncIterator[dict[str, Any]]:
        for ev in self._events:
            yield ev
        await self._closed.wait()  # a live subscription: quiet until closed

    async def close(self) -> None:
        self.closed = True
        self._closed.set()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class FakeCluster:
    """An in-memory cluster; ``self_id`` is the node the 'connection' is attached to."""

    def __init__(self, nodes: list[FakeNode], self_id: str | None = None) -> None:
        self.nodes: dict[str, FakeNode] = {n.id: n for n in nodes}
        self.self_id = self_id or (nodes[0].id if nodes else "")
        self.calls: list[CallRecord] = []
        self.events: dict[tuple[str, str], list[dict[str, Any]]] = {}
        self.subscriptions: list[_Sub] = []
        self._pid = 1000
        self.descriptions: dict[str, dict[str, str]] = {}  # node -> service -> description override

    def _reg(self, n: FakeNode) -> Registry:
        if n.registry is None:
            n.registry = Registry()
            n.registry.add(_Supervisor(self, n))
            n.registry.add(_System(n))
        return n.registry

    def next_pid(self) -> int:
        self._pid += 1
        return self._pid

    # ---- construction ------------------------------------------------------------------------

    @classmethod
    def from_snapshot(cls, snap: dict[str, Any]) -> FakeCluster:
        """From a ``node.cluster`` result (plus optional ``logs``: node -> process -> lines)."""
        nodes = []
        builtin = {"supervisor", "system", "node"}
        for d in snap["nodes"]:
            n = FakeNode(id=d["id"], online=d.get("online", True), metrics=copy.deepcopy(d.get("metrics") or {}),
                         processes={p["name"]: {"restarts": 0, "uptime": 1.0, "exit_code": None, **p}
                                    for p in d.get("processes", [])},
                         logs=copy.deepcopy(snap.get("logs", {}).get(d["id"], {})),
                         extra_services={k: v for k, v in (d.get("services") or {}).items() if k not in builtin},
                         host=d.get("host", "localhost"), version=d.get("version", "0.1.0"))
            nodes.append(n)
        fake = cls(nodes, snap.get("self"))
        fake._pid = max([1000] + [p.get("pid") or 0 for n in nodes for p in n.processes.values()])
        fake.descriptions = snap.get("descriptions", {})
        return fake

    @classmethod
    def simulated(cls, n: int, *, seed: int = 0, processes: tuple[str, ...] = ("logger",)) -> FakeCluster:
        """``n`` nodes with deterministic pseudo-random metrics (benchmarks, prompt size)."""
        rnd = random.Random(seed)
        nodes = []
        for i in range(n):
            nodes.append(FakeNode(
                id=f"node-{i:04d}",
                metrics={"cpu_percent": round(rnd.uniform(1, 95), 1), "memory_percent": round(rnd.uniform(10, 90), 1),
                         "load": [round(rnd.uniform(0, 4), 2) for _ in range(3)],
                         "disk_percent": round(rnd.uniform(5, 95), 1),
                         "temperature_c": round(rnd.uniform(30, 80), 1), "simulated": True, "ts": 0.0},
                processes={p: {"name": p, "state": "running", "pid": 2000 + i, "restarts": 0, "uptime": 10.0,
                               "exit_code": None, "command": ["python", "-m", p]} for p in processes}))
        fake = cls(nodes, nodes[0].id if nodes else None)
        fake._pid = 2000 + n
        return fake

    # ---- the ClusterConnection interface -----------------------------------------------------

    def _node(self, node: str | None) -> FakeNode:
        nid = self.self_id if node in (None, ".", "") else node
        n = self.nodes.get(nid)
        if n is None:
            raise UnknownNode(f"no node {nid!r}", node=nid)
        if not n.online:
            raise NodeOffline(f"node {nid} is offline", node=nid)
        return n

    def mutates(self, node: FakeNode, service: str, method_name: str) -> bool:
        if service == "node":
            return False
        if service in self._reg(node):
            try:
                return self._reg(node).mutates(service, method_name)
            except UnknownMethod:
                return True
        m = node.extra_services.get(service, {}).get("methods", {}).get(method_name)
        return True if m is None else bool(m.get("mutates", True))

    async def call(self, node: str | None, service: str, method: str,
                   params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        if node == "*":
            return await self.broadcast(service, method, params, timeout)
        n = self._node(node)
        params = dict(params or {})
        self.calls.append(CallRecord(n.id, service, method, params, self.mutates(n, service, method)))
        if service == "node":
            if method == "ping":
                return {"node": n.id, "ts": time.time()}
            if method == "describe":
                return self._describe(n)
            if method == "cluster":
                return self.cluster_view()
            raise UnknownMethod(f"service 'node' has no method {method!r}")
        if service in self._reg(n):
            return await self._reg(n).call(service, method, params)
        extra = n.extra_services.get(service)
        if extra is None:
            raise UnknownService(f"no service {service!r} on {n.id}")
        if method not in extra.get("methods", {}):
            raise UnknownMethod(f"service {service!r} has no method {method!r}")
        return {"ok": True}

    async def broadcast(self, service: str, method: str, params: dict[str, Any] | None = None,
                        timeout: float | None = None) -> dict[str, Any]:
        results: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for nid, n in self.nodes.items():
            if not n.online:
                continue
            try:
                results[nid] = await self.call(nid, service, method, params, timeout)
            except Exception as e:  # noqa: BLE001 - one node's failure is that node's error entry
                errors[nid] = {"code": str(getattr(e, "code", "internal")), "message": str(e)}
        return {"results": results, "errors": errors}

    async def subscribe(self, node: str | None, topic: str) -> _Sub:
        n = self._node(node)
        evs = [e for (nid, t), es in self.events.items() if nid == n.id and matches(topic, t) for e in es]
        sub = _Sub(evs)
        self.subscriptions.append(sub)
        return sub

    # ---- views -------------------------------------------------------------------------------

    _builtin_describe: dict[str, Any] | None = None  # the same for every fake node: computed once

    def _registry_describe(self, n: FakeNode) -> dict[str, Any]:
        if FakeCluster._builtin_describe is None:
            FakeCluster._builtin_describe = self._reg(n).describe()
        return copy.deepcopy(FakeCluster._builtin_describe)

    def _catalog(self, n: FakeNode) -> dict[str, Any]:
        cat = {name: {"description": s["description"],
                      "methods": {m: {"description": d["description"], "mutates": d["mutates"]}
                                  for m, d in s["methods"].items()}}
               for name, s in self._registry_describe(n).items()}
        for name, s in n.extra_services.items():
            cat[name] = {"description": s.get("description", ""),
                         "methods": {m: {"description": d.get("description", ""), "mutates": bool(d.get("mutates", True))}
                                     for m, d in s.get("methods", {}).items()}}
        return cat

    def _describe(self, n: FakeNode) -> dict[str, Any]:
        services = self._registry_describe(n)
        for name, s in n.extra_services.items():
            services[name] = {"description": s.get("description", ""),
                              "methods": {m: {"description": d.get("description", ""),
                                              "mutates": bool(d.get("mutates", True)),
                                              "params": d.get("params", {"type": "object"}),
                                              "result": {}}
                                          for m, d in s.get("methods", {}).items()}}
        for name, text in self.descriptions.get(n.id, {}).items():
            if name in services:
                services[name]["description"] = text
        return {"node": n.id, "services": services}

    def cluster_view(self) -> dict[str, Any]:
        return {"self": self.self_id, "nodes": [
            {"id": n.id, "online": n.online, "since": n.since, "last_seen": n.since, "host": n.host,
             "version": n.version, "metrics": dict(n.metrics), "services": self._catalog(n),
             "processes": [dict(p) for p in n.processes.values()]}
            for n in self.nodes.values()]}

    @property
    def mutating_calls(self) -> list[CallRecord]:
        return [c for c in self.calls if c.mutates]
