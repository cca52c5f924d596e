"""A stand-in node client over :class:`cloudisense.tools.FakeCluster`, for tests and snapshots.

``make_app(client_factory=FakeLink(fake).factory)`` gives the console a
deterministic cluster: ``node.cluster`` and every service answer from the
fake, and the test decides which events arrive (:meth:`FakeLink.emit`) and
when the link drops (:meth:`FakeLink.drop`).  ``delays`` makes chosen
methods slow, as a transport wrapper would.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cloudisense.node import ConnectionLost
from cloudisense.node._topics import matches
from cloudisense.tools import FakeCluster


class FakeSubscription:
    def __init__(self, client: FakeClient, node: str | None, topic: str) -> None:
        self.client, self.node, self.topic = client, node, topic
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self.closed = False

    def __aiter__(self) -> FakeSubscription:
        return self

    async def __anext__(self) -> dict[str, Any]:
        ev = await self.queue.get()
        if ev is None:
            raise StopAsyncIteration
        return ev

    async def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.client.subs.discard(self)
            self.queue.put_nowait(None)


class FakeClient:
    def __init__(self, link: FakeLink) -> None:
        self.link = link
        self.node_id = ""
        self.closed = True
        self.subs: set[FakeSubscription] = set()

    async def connect(self) -> None:
        if self.link.refuse:
            raise ConnectionLost("cannot connect: the fake node is down")
        self.closed = False
        self.node_id = self.link.fake.self_id
        self.link.clients.append(self)

    async def close(self) -> None:
        self.closed = True
        for s in list(self.subs):
            await s.close()

    def _check(self) -> None:
        if self.closed:
            raise ConnectionLost("connection to the node closed")

    async def call(self, node: str | None, service: str, method: str, params: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        self._check()
        delay = self.link.delays.get(f"{service}.{method}")
        if delay:
            await asyncio.sleep(delay)
            self._check()
        return await self.link.fake.call(node, service, method, params, timeout)

    async def broadcast(self, service: str, method: str, params: dict[str, Any] | None = None,
                        timeout: float | None = None) -> dict[str, Any]:
        self._check()
        return await self.link.fake.broadcast(service, method, params, timeout)

    async def subscribe(self, node: str | None, topic: str) -> FakeSubscription:
        self._check()
        sub = FakeSubscription(self, node, topic)
        self.subs.add(sub)
        self.link.subscribed.append((node, topic))
        return sub


class FakeLink:
    """The far end of every :class:`FakeClient` made by :attr:`factory`."""

    def __init__(self, fake: FakeCluster, *, delays: dict[str, float] | None = None) -> None:
        self.fake = fake
        self.delays = dict(delays or {})
        self.clients: list[FakeClient] = []
        self.subscribed: list[tuple[str | None, str]] = []
        self.refuse = False

    def factory(self, url: str, token: str | None = None) -> FakeClient:
        return FakeClient(self)

    @property
    def current(self) -> FakeClient | None:
        live = [c for c in self.clients if not c.closed]
        return live[-1] if live else None

    def emit(self, topic: str, data: Any, node: str | None = None, ts: float = 0.0) -> int:
        """Deliver an event to matching subscriptions of the live clients; returns how many got it."""
        node = node or self.fake.self_id
        ev = {"type": "event", "node": node, "topic": topic, "data": data, "ts": ts}
        n = 0
        for c in self.clients:
            for s in list(c.subs):
                local = s.node in (None, ".", c.node_id)
                if local:
                    hit = (topic.startswith("$cluster/") or node == c.node_id) and matches(s.topic, topic)
                else:
                    hit = node == s.node and (topic.startswith("$cluster/") or matches(s.topic, topic))
                if hit:
                    s.queue.put_nowait(ev)
                    n += 1
        return n

    async def drop(self) -> None:
        """The node went away: every client's link closes (and reconnecting fails while ``refuse``)."""
        for c in list(self.clients):
            await c.close()


# ---- helpers for Pilot tests ------------------------------------------------------------------

async def wait_for(pilot: Any, pred: Any, timeout: float = 15.0, what: str = "") -> Any:
    """Let the app run until ``pred()`` is truthy (returns its value); fail after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}; the screen:\n"
                                 + screen_text(pilot.app))
        await pilot.pause(0.05)


def screen_text(app: Any) -> str:
    """The screen as plain text, one line per row (what a terminal would show, without colours)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)


def three_nodes(now: float = 1_000_000.0) -> FakeCluster:
    """node-a (self, 61 °C), node-b (38.5 °C, the coolest), node-c (52 °C), each running ``logger``;
    every node last seen 2 s before ``now``.  Temperatures are simulated."""
    def node(nid: str, temp: float, cpu: float, mem: float, pid: int) -> dict[str, Any]:
        return {"id": nid, "online": True,
                "metrics": {"cpu_percent": cpu, "memory_percent": mem, "load": [0.4, 0.3, 0.2],
                            "disk_percent": 41.0, "temperature_c": temp, "simulated": True, "ts": now - 2},
                "processes": [{"name": "logger", "state": "running", "pid": pid, "restarts": 0}]}

    fake = FakeCluster.from_snapshot({"self": "node-a", "nodes": [
        node("node-a", 61.0, 12.0, 48.0, 4101), node("node-b", 38.5, 7.0, 35.0, 4102),
        node("node-c", 52.0, 23.0, 61.0, 4103)]})
    for n in fake.nodes.values():
        n.since = now - 2
    return fake


async def wait_for_text(pilot: Any, app: Any, *needles: str, timeout: float = 15.0) -> str:
    """Let the app run until every one of ``needles`` is on the screen; returns the screen text."""
    found: list[str] = []

    def check() -> bool:
        text = screen_text(app)
        found[:] = [text]
        return all(n in text for n in needles)

    try:
        await wait_for(pilot, check, timeout, what=f"{needles} on the screen")
    except AssertionError as e:
        raise AssertionError(f"{e}; the screen was:\n{found[0] if found else ''}") from None
    return found[0]


class LagProbe:
    """Measures how late the event loop wakes a sleeper (the app runs on this loop in ``run_test``).

    ``async with LagProbe() as lag: ...`` then ``lag.worst`` is the longest stall seen, in seconds: a UI
    that waits on the network on its loop, or blocks it, shows up here as a stall of that length.
    """

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.worst = 0.0
        self.samples = 0
        self._task: Any = None

    async def _run(self) -> None:
        import time

        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.interval)
            self.worst = max(self.worst, time.monotonic() - t0 - self.interval)
            self.samples += 1

    async def __aenter__(self) -> LagProbe:
        self._task = asyncio.create_task(self._run(), name="tui-test.lag-probe")
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass
