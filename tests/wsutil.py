"""Raw WebSocket helpers for protocol-level tests."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

from websockets.asyncio.client import ClientConnection, connect


async def open_ws(url: str) -> ClientConnection:
    return await connect(url, open_timeout=5, max_size=2 ** 24)


async def send(ws: ClientConnection, frame: dict[str, Any] | str) -> None:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))


async def recv(ws: ClientConnection, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        return json.loads(await ws.recv())


async def reply_to(ws: ClientConnection, rid: Any, timeout: float = 10.0) -> dict[str, Any]:
    """Next frame answering request ``rid`` (events in between are skipped)."""
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("id") == rid and msg.get("type") != "event":
                return msg


async def request(ws: ClientConnection, frame: dict[str, Any], timeout: float = 10.0) -> dict[str, Any]:
    await send(ws, frame)
    return await reply_to(ws, frame["id"], timeout)


async def next_event(ws: ClientConnection, pred=lambda m: True, timeout: float = 10.0) -> dict[str, Any]:
    async with asyncio.timeout(timeout):
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("type") == "event" and pred(msg):
                return msg


async def call(ws: ClientConnection, node: str | None, sm: str, params: dict[str, Any] | None = None,
               timeout: float | None = None) -> dict[str, Any]:
    """Call ``service.method`` (``sm``) on ``node`` (None: the node ``ws`` is on); the reply frame."""
    service, method = sm.split(".")
    frame: dict[str, Any] = {"type": "call", "id": uuid.uuid4().hex[:8], "service": service, "method": method,
                             "params": params or {}}
    if node is not None:
        frame["node"] = node
    if timeout is not None:
        frame["timeout"] = timeout
    return await request(ws, frame, timeout=(timeout or 10) + 5)


async def result(ws: ClientConnection, node: str | None, sm: str, params: dict[str, Any] | None = None,
                 timeout: float | None = None) -> Any:
    """:func:`call`, which must succeed: its result."""
    r = await call(ws, node, sm, params, timeout)
    assert r["type"] == "result", r
    return r["result"]
