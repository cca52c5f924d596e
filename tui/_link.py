"""The console's link to one node: a connection proxy, reconnect policy (no Textual here).

:class:`LiveConnection` is the ``ClusterConnection`` the agent and the panes
use.  It forwards to whatever client is current, so a plan made before a
reconnect still executes over the new connection, and it lets the console
watch the calls going out (the execution view marks a step *running* when
its call leaves).  Without a current client it raises ``ConnectionLost`` at
once instead of waiting.

:func:`backoff` is the pure, capped, jittered delay generator; :func:`retryable`
sorts errors into "try again" and "stop, tell the operator".
"""

from __future__ import annotations

import asyncio
import random
from enum import StrEnum
from typing import Any, Callable, Iterator, Protocol


class LinkState(StrEnum):
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"          # fatal (bad token, forbidden): no retry


class Client(Protocol):
    """What the console needs of a node client (``cloudisense.node.Client`` is one)."""

    node_id: str
    closed: bool

    async def connect(self) -> None: ...

    async def close(self) -> None: ...

    async def call(self, node: str | None, service: str, method: str,
                   params: dict[str, Any] | None = None, timeout: float | None = None) -> Any: ...

    async def broadcast(self, service: str, method: str, params: dict[str, Any] | None = None,
                        timeout: float | None = None) -> dict[str, Any]: ...

    async def subscribe(self, node: str | None, topic: str) -> Any: ...


ClientFactory = Callable[[str, "str | None"], Client]


def default_client_factory(url: str, token: str | None) -> Client:
    from cloudisense.node._client import Client as NodeClient

    return NodeClient(url, token=token, name="tui")


def backoff(initial: float = 0.25, cap: float = 5.0, factor: float = 2.0,
            rnd: Callable[[], float] = random.random) -> Iterator[float]:
    """Delays before reconnect attempts: the node client's (``cloudisense.node._client.backoff``)."""
    from cloudisense.node._client import backoff as client_backoff

    return client_backoff(initial, cap, factor, rnd)


def retryable(exc: BaseException) -> bool:
    """False for errors another attempt can't fix (bad token, wrong role, bad URL)."""
    from cloudisense.node import Forbidden, Unauthenticated

    if isinstance(exc, (Unauthenticated, Forbidden)):
        return False
    if isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, OSError):
        return False  # e.g. websockets' InvalidURI is a ValueError
    return True


def _lost(why: str) -> Exception:
    from cloudisense.node._client import ConnectionLost

    return ConnectionLost(why)


CallObserver = Callable[[str | None, str, str, dict[str, Any]], None]


class LiveConnection:
    """A ``ClusterConnection`` over the current client of the console's link."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.observers: list[CallObserver] = []
        self.connected = asyncio.Event()

    def attach(self, client: Client | None) -> None:
        self.client = client
        if client is None:
            self.connected.clear()
        else:
            self.connected.set()

    @property
    def node_id(self) -> str:
        return self.client.node_id if self.client is not None else ""

    def _current(self) -> Client:
        c = self.client
        if c is None or c.closed:
            raise _lost("not connected to the node (reconnecting)")
        return c

    async def call(self, node: str | None, service: str, method: str,
                   params: dict[str, Any] | None = None, timeout: float | None = None) -> Any:
        c = self._current()
        for obs in list(self.observers):
            obs(node, service, method, params or {})
        return await c.call(node, service, method, params, timeout)

    async def broadcast(self, service: str, method: str, params: dict[str, Any] | None = None,
                        timeout: float | None = None) -> dict[str, Any]:
        c = self._current()
        for obs in list(self.observers):
            obs("*", service, method, params or {})
        return await c.broadcast(service, method, params, timeout)

    async def subscribe(self, node: str | None, topic: str) -> Any:
        return await self._current().subscribe(node, topic)
