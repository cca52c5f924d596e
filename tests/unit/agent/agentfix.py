"""Helpers of the agent unit tests (imported by conftest and tests; tests/ has no packages)."""

from __future__ import annotations

from typing import Any

from cloudisense.tools import FakeCluster


def node(id: str, temp: float | None, *, load: float = 1.0, mem: float = 50.0, online: bool = True,
         procs: dict[str, str] | None = None, cpu: float = 10.0) -> dict[str, Any]:
    procs = {"logger": "running"} if procs is None else procs
    return {"id": id, "online": online, "host": id, "version": "0.1.0",
            "metrics": {"cpu_percent": cpu, "memory_percent": mem, "load": [load, load, load], "disk_percent": 40.0,
                        "temperature_c": temp, "simulated": True, "ts": 0.0},
            "processes": [{"name": n, "state": s, "pid": 100 + i if s == "running" else None, "restarts": 0}
                          for i, (n, s) in enumerate(procs.items())]}


THREE = {"self": "node-a", "nodes": [node("node-a", 61.0, load=0.5, mem=70.0),
                                     node("node-b", 38.0, load=2.0, mem=40.0),
                                     node("node-c", 52.0, load=1.0, mem=20.0)]}


def pids(fake: FakeCluster, proc: str = "logger") -> dict[str, int | None]:
    return {nid: n.processes[proc]["pid"] for nid, n in fake.nodes.items() if proc in n.processes}


class FailingConn:
    """A connection wrapper that fails calls to some nodes (fault injection, no patching)."""

    def __init__(self, inner: FakeCluster, fail: set[str], *, service: str = "supervisor") -> None:
        self.inner, self.fail, self.service = inner, fail, service

    async def call(self, node, service, method, params=None, timeout=None):
        if node in self.fail and service == self.service:
            from cloudisense.node._errors import CallTimeout
            raise CallTimeout(f"{node} did not answer within 10 s", node=node)
        return await self.inner.call(node, service, method, params, timeout)

    async def broadcast(self, service, method, params=None, timeout=None):
        return await self.inner.broadcast(service, method, params, timeout)

    async def subscribe(self, node, topic):
        return await self.inner.subscribe(node, topic)
