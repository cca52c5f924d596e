"""An in-memory node for the console's client, over :class:`cloudisense.tools.FakeCluster`, for tests and snapshots.

``make_app(client_factory=FakeLink(fake).factory)`` gives the console a real
:class:`cloudisense.node.Client` (its reconnect loop, its subscriptions) whose
transport is in memory: ``node.cluster`` and every service answer from the
fake, and the test decides which events arrive (:meth:`FakeLink.emit`), when
the link drops (:meth:`FakeLink.drop`), whether the node takes connections
(``refuse``) and which token it wants (``token``).  ``delays`` makes chosen
methods slow, as a transport wrapper would.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from websockets.exceptions import ConnectionClosed

from cloudisense.node import CloudisenseError, Unauthenticated
from cloudisense.node._client import Client
from cloudisense.node._errors import to_wire
from cloudisense.node._topics import matches
from cloudisense.tools import FakeCluster


class FakeSubscription:
    """A subscription the fake node holds for one connection."""

    def __init__(self, conn: FakeConnection, node: str | None, topic: str) -> None:
        self.conn, self.node, self.topic = conn, node, topic


class FakeConnection:
    """One client connection, both ends: the client reads and sends frames, the fake node answers them."""

    def __init__(self, link: FakeLink) -> None:
        self.link = link
        self.node_id = link.fake.self_id
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.subs: set[FakeSubscription] = set()
        self.close_code: int | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    @property
    def closed(self) -> bool:
        return self.close_code is not None

    # the client's side (cloudisense.node._client.Connection)

    async def send(self, message: str) -> None:
        if self.closed:
            raise ConnectionClosed(None, None)
        self.answer(json.loads(message))

    def __aiter__(self) -> FakeConnection:
        return self

    async def __anext__(self) -> str:
        frame = await self.inbox.get()
        if frame is None:
            raise StopAsyncIteration
        return frame

    async def close(self) -> None:
        self.shut(1000)

    # the fake node's side

    def shut(self, code: int) -> None:
        if self.closed:
            return
        self.close_code = code
        self.subs.clear()
        for t in list(self.tasks):
            t.cancel()
        self.inbox.put_nowait(None)

    def deliver(self, frame: dict[str, Any]) -> None:
        if not self.closed:
            self.inbox.put_nowait(json.dumps(frame))

    def answer(self, f: dict[str, Any]) -> None:
        kind, rid = f.get("type"), f.get("id")
        if kind == "hello":
            if self.link.token is not None and f.get("token") != self.link.token:
                self.deliver({"type": "error", "id": rid, "error": to_wire(Unauthenticated("invalid token"))})
                return
            self.link.clients.append(self)
            self.deliver({"type": "welcome", "id": rid, "node": self.node_id, "role": "operator"})
        elif kind == "subscribe":
            self.subs.add(FakeSubscription(self, f.get("node"), f["topic"]))
            self.link.subscribed.append((f.get("node"), f["topic"]))
            self.deliver({"type": "subscribed", "id": rid})
        elif kind == "unsubscribe":
            self.subs -= {s for s in self.subs if (s.node, s.topic) == (f.get("node"), f["topic"])}
            self.deliver({"type": "unsubscribed", "id": rid})
        elif kind == "call":
            t = asyncio.get_running_loop().create_task(self._call(f), name=f"fake-node.call {rid}")
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        else:
            self.deliver({"type": "error", "id": rid, "error": {"code": "bad_request",
                                                                 "message": f"the fake node does not do {kind}"}})

    async def _call(self, f: dict[str, Any]) -> None:
        node, service, method = f.get("node"), f["service"], f["method"]
        try:
            delay = self.link.delays.get(f"{service}.{method}")
            if delay:
                await asyncio.sleep(delay)
            if node == "*":
                result = await self.link.fake.broadcast(service, method, f.get("params"), f.get("timeout"))
            else:
                result = await self.link.fake.call(node, service, method, f.get("params"), f.get("timeout"))
        except CloudisenseError as e:
            self.deliver({"type": "error", "id": f["id"], "node": node, "error": to_wire(e)})
            return
        self.deliver({"type": "result", "id": f["id"], "node": node or self.node_id, "result": result})


class FakeLink:
    """The fake node at the far end of every client :attr:`factory` makes."""

    def __init__(self, fake: FakeCluster, *, delays: dict[str, float] | None = None,
                 token: str | None = None) -> None:
        self.fake = fake
        self.delays = dict(delays or {})
        self.token = token
        self.clients: list[FakeConnection] = []       # every connection the node welcomed, in order
        self.subscribed: list[tuple[str | None, str]] = []
        self.dials = 0
        self.refuse = False

    async def dial(self, url: str) -> FakeConnection:
        self.dials += 1
        if self.refuse:
            raise ConnectionRefusedError("connection refused: the fake node is down")
        return FakeConnection(self)

    def factory(self, url: str, token: str | None = None, **options: Any) -> Client:
        """A real client (``options``: its keyword arguments) connected through :meth:`dial`."""
        return Client(url, token=token, dial=self.dial, **options)

    @property
    def current(self) -> FakeConnection | None:
        live = [c for c in self.clients if not c.closed]
        return live[-1] if live else None

    def emit(self, topic: str, data: Any, node: str | None = None, ts: float = 0.0) -> int:
        """Send an event to every live connection with a matching subscription (once each, as a node does:
        the client hands it to its subscriptions); returns how many connections got it."""
        node = node or self.fake.self_id
        ev = {"type": "event", "node": node, "topic": topic, "data": data, "ts": ts}
        n = 0
        for c in self.clients:
            if any(self._hears(c, s, node, topic) for s in c.subs):
                c.deliver(ev)
                n += 1
        return n

    @staticmethod
    def _hears(c: FakeConnection, s: FakeSubscription, node: str, topic: str) -> bool:
        if s.node in (None, ".", c.node_id):
            return (topic.startswith("$cluster/") or node == c.node_id) and matches(s.topic, topic)
        return node == s.node and (topic.startswith("$cluster/") or matches(s.topic, topic))

    async def drop(self) -> None:
        """The node went away: every connection closes (1006, abnormal) and reconnecting fails while ``refuse``."""
        for c in list(self.clients):
            c.shut(1006)


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
