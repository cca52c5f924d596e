"""A client of protocol v1: what scripts, the agent, the TUI and the CLI use.

::

    async with Client("ws://127.0.0.1:8765/ws") as c:
        info = await c.call("node-b", "system", "metrics")
        async with await c.subscribe("node-b", "metrics/#") as sub:
            async for event in sub:
                ...
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from ._errors import CallTimeout, CloudisenseError, NodeOffline, TooLarge, from_wire
from ._json import dumps, loads
from ._topics import matches
from ._config import DEFAULT_URL

log = logging.getLogger(__name__)


#: The largest frame this client reads; node.cluster's default max_bytes stays under it.
MAX_FRAME = 2 ** 24


class ConnectionLost(NodeOffline):
    """The WebSocket to the node closed."""


class Subscription:
    """Events of one subscription; iterate it, ``close()`` it (or use ``async with``)."""

    def __init__(self, client: "Client", node: str | None, topic: str, maxsize: int = 10_000) -> None:
        self.client, self.node, self.topic = client, node, topic
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize)
        self.closed = False

    def _put(self, event: dict[str, Any] | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = await self.queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def get(self, timeout: float | None = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            event = await self.queue.get()
        if event is None:
            raise ConnectionLost("subscription ended: connection closed")
        return event

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.client._subs.get((self.client._norm(self.node), self.topic), set()).discard(self)
        if not self.client._subs.get((self.client._norm(self.node), self.topic)):
            self.client._subs.pop((self.client._norm(self.node), self.topic), None)
            if not self.client.closed:
                try:
                    await self.client._request({"type": "unsubscribe", "node": self.node, "topic": self.topic})
                except CloudisenseError:
                    pass
        self._put(None)

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, name: str = "script",
                 open_timeout: float = 5.0, default_timeout: float = 10.0) -> None:
        self.url, self.token, self.name = url, token, name
        self.open_timeout = open_timeout
        self.default_timeout = default_timeout
        self.ws: ClientConnection | None = None
        self.node_id: str = ""
        self.role: str = ""
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future] = {}
        self._subs: dict[tuple[str, str], set[Subscription]] = {}
        self._reader: asyncio.Task | None = None
        self.closed = True
        self.dropped = 0

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        if not self.closed:
            raise RuntimeError("client is already connected")
        try:
            self.ws = await connect(self.url, open_timeout=self.open_timeout, max_size=MAX_FRAME,
                                    compression=None, ping_interval=20)
        except (OSError, TimeoutError) as e:
            raise ConnectionLost(f"cannot connect to {self.url}: {e}") from None
        self.closed = False
        self._reader = asyncio.create_task(self._read(), name=f"client[{self.url}].reader")
        try:
            welcome = await self._request({"type": "hello", "token": self.token, "client": self.name},
                                          timeout=self.open_timeout)
        except BaseException:
            await self.close()
            raise
        self.node_id = welcome["node"]
        self.role = welcome["role"]

    async def close(self) -> None:
        if self.closed and self._reader is None:
            return
        self.closed = True
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except asyncio.CancelledError:
                pass
            self._reader = None
        self._fail_all("connection closed")

    def _fail_all(self, why: str, too_large: bool = False) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(TooLarge(why) if too_large else ConnectionLost(why))
        self._waiting.clear()
        for subs in self._subs.values():
            for s in subs:
                s._put(None)
        self._subs.clear()

    @staticmethod
    def _norm(node: str | None) -> str:
        return node or "."

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for raw in self.ws:
                msg = loads(raw)
                kind = msg.get("type")
                if kind == "event":
                    self._on_event(msg)
                elif kind == "dropped":
                    self.dropped += msg.get("count", 0)
                else:
                    fut = self._waiting.pop(str(msg.get("id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except ConnectionClosed as e:
            if (e.sent and e.sent.code == 1009) or (e.rcvd and e.rcvd.code == 1009):
                # a frame over our limit (ours) or over the node's: the reply is what was too large
                self.closed = True
                self._fail_all(f"a frame was larger than the limit ({MAX_FRAME / 2**20:g} MiB here); the "
                               f"connection was closed: ask for less (node.cluster: limit and cursor, fields)",
                               too_large=True)
        finally:
            self.closed = True
            self._fail_all("connection to the node closed")

    def _on_event(self, msg: dict[str, Any]) -> None:
        node, topic = msg.get("node"), msg.get("topic", "")
        cluster = topic.startswith("$cluster/")
        for (snode, pattern), subs in self._subs.items():
            if snode == ".":
                # $cluster events name the node they are about, not the one we are connected to
                hit = (cluster or node == self.node_id) and matches(pattern, topic)
            else:
                # a remote subscription also hears that its node went offline / came back
                hit = node == snode and (cluster or matches(pattern, topic))
            if hit:
                for s in subs:
                    s._put(msg)

    async def _request(self, frame: dict[str, Any], timeout: float | None = None) -> dict[str, Any]:
        if self.closed or self.ws is None:
            raise ConnectionLost("not connected")
        rid = str(next(self._ids))
        frame["id"] = rid
        fut = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            await self.ws.send(dumps({k: v for k, v in frame.items() if v is not None}))
            async with asyncio.timeout(timeout if timeout is not None else self.default_timeout + 5):
                msg = await fut
        except ConnectionClosed:
            raise ConnectionLost("connection to the node closed") from None
        except TimeoutError:
            raise CallTimeout(f"no reply from the node to {frame['type']} within the deadline") from None
        finally:
            self._waiting.pop(rid, None)
        if msg.get("type") == "error":
            raise from_wire(msg.get("error") or {}, node=msg.get("node"), request_id=rid)
        return msg

    async def call(self, node: str | None, service: str, method: str, params: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        """Call ``service.method`` on ``node`` (None or "." is the connected node)."""
        t = timeout or self.default_timeout
        msg = await self._request({"type": "call", "node": None if node in (None, ".") else node,
                                   "service": service, "method": method, "params": params or {},
                                   "timeout": t}, timeout=t + 5)
        return msg.get("result")

    async def broadcast(self, service: str, method: str, params: dict[str, Any] | None = None,
                        timeout: float | None = None) -> dict[str, Any]:
        return await self.call("*", service, method, params, timeout)

    async def subscribe(self, node: str | None, topic: str) -> Subscription:
        sub = Subscription(self, node, topic)
        key = (self._norm(node), topic)
        first = key not in self._subs
        self._subs.setdefault(key, set()).add(sub)
        if first:
            try:
                await self._request({"type": "subscribe", "node": None if node in (None, ".") else node,
                                     "topic": topic})
            except BaseException:
                self._subs.pop(key, None)
                raise
        return sub

    async def publish(self, topic: str, data: Any = None) -> None:
        await self._request({"type": "publish", "topic": topic, "data": data})
