"""The seams of the node: what its two I/O edges may ask of it, and what the protocol needs of the link.

``_gateway`` (clients over WebSocket) and ``_peers`` (other nodes over MQTT)
reach the node only through :class:`Router`; ``_peers`` reaches the MQTT link
only through :class:`Link`, which ``_federation.Federation`` implements (and the
in-process tests fake).  Neither edge imports ``_node``: the node composes them.
"""

from __future__ import annotations

import asyncio
from typing import Any, Coroutine, Hashable, Mapping, Protocol

from ._cluster import Done
from ._offered import Offers
from ._stats import Stats


class Subscriber(Protocol):
    """Whoever takes events: a gateway session, an in-process listener."""

    def deliver_event(self, text: str) -> None: ...


class Router(Protocol):
    """What the edges may ask of the node: start calls, run methods, route events, count."""

    id: str
    version: str
    stats: Stats

    def resolve_target(self, node: str | None) -> str: ...

    def method_mutates(self, target: str, service: str, method: str) -> bool: ...

    def start_call(self, target: str, service: str, method: str, params: dict[str, Any] | None,
                   timeout: float | None, *, role: str, owner: Hashable, done: Done,
                   reply: bool = True) -> None: ...

    def run_local(self, service: str, method: str, params: dict[str, Any] | None, t: float, role: str,
                  done: Done, caller: str | None = None) -> None: ...

    offers: Offers

    def offer(self, owner: Any, service: str, method: str, params: dict[str, Any], mutates: bool,
              description: str) -> None: ...

    def withdraw(self, owner: Any, service: str, method: str) -> bool: ...

    def publish(self, topic: str, data: Any) -> tuple[int, bool]: ...

    async def subscribe(self, sub: Hashable, node: str, pattern: str) -> None: ...

    def unsubscribe(self, sub: Hashable, node: str, pattern: str) -> bool: ...

    def subscription_count(self, sub: Hashable) -> int: ...

    def client_gone(self, sub: Hashable) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    def count_dropped(self, n: int) -> None: ...

    def expect_reply(self, req: str, node: str, owner: Hashable, done: Done, t: float, why: str) -> None: ...

    def heartbeat(self) -> dict[str, Any]: ...

    def catalog(self) -> dict[str, Any]: ...

    def public_key(self) -> dict[str, str] | None: ...

    def fail(self, message: str) -> None: ...

    @property
    def stopping(self) -> bool: ...


class Link(Protocol):
    """The MQTT link as the protocol uses it (``_federation.Federation``)."""

    url: str
    connected: asyncio.Event
    counters: dict[str, int]

    def send(self, topic: str, env: Mapping[str, Any], qos: int = 1) -> None: ...

    async def publish_retained(self, topic: str, env: Mapping[str, Any], qos: int = 1) -> None: ...

    async def subscribe(self, topic: str, qos: int = 1) -> None: ...

    async def unsubscribe(self, topic: str) -> None: ...

    @property
    def subscriptions(self) -> list[str]: ...

    def missing(self) -> list[str]: ...

    def route(self, on_envelopes: Any, on_connected: Any) -> None: ...

    async def close(self, final: tuple[str, bytes] | None = None) -> None: ...

    async def __aenter__(self) -> Any: ...

    def explain(self) -> str: ...
