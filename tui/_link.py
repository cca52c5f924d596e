"""The console's link to one node: a view of its one client (no Textual here).

The console makes one :class:`cloudisense.node.Client` with ``reconnect=True``:
its reconnect loop is the only one, and its subscriptions live across
reconnects.  :class:`LiveConnection` is the ``ClusterConnection`` the agent and
the panes use over that client: a plan made before a reconnect still executes
over it, and the console watches the calls going out (the execution view marks
a step *running* when its call leaves).  While the link is down a call raises
``ConnectionLost`` at once instead of waiting.  :meth:`LiveConnection.until`
waits for the link to reach a state (the client's ``on_state`` hook calls
:meth:`LiveConnection.changed`); ``ups`` counts the times it came up, so a
drop and a reconnect between two looks are not missed.
"""

from __future__ import annotations

import asyncio
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from cloudisense.node._client import Client


class LinkState(StrEnum):
    """What the console shows: ``connected`` once the cluster is loaded, not when the socket opens."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    FAILED = "failed"          # fatal (bad token, forbidden): no retry


#: ``factory(url, token, **options)`` makes the console's client; ``options`` are
#: :class:`cloudisense.node.Client` keyword arguments (``reconnect``, ``on_state``, ``backoff_cap``…).
ClientFactory = Callable[..., "Client"]


def default_client_factory(url: str, token: str | None, **options: Any) -> Client:
    from cloudisense.node._client import Client as NodeClient

    return NodeClient(url, token=token, **options)


def _lost(why: str) -> Exception:
    from cloudisense.node._client import ConnectionLost

    return ConnectionLost(why)


CallObserver = Callable[[str | None, str, str, dict[str, Any]], None]


class LiveConnection:
    """A ``ClusterConnection`` over the console's client, with the link's state to wait on."""

    def __init__(self) -> None:
        self.client: Client | None = None
        self.observers: list[CallObserver] = []
        #: how many times the link came up (a connection, then every reconnection)
        self.ups = 0
        self._was_up = False
        self._change = asyncio.Event()

    def attach(self, client: Client) -> None:
        self.client = client
        self.changed()

    def changed(self) -> None:
        """The link's state changed: count it coming up, wake whoever waits in :meth:`until`."""
        if self.connected and not self._was_up:
            self.ups += 1
        self._was_up = self.connected
        ev, self._change = self._change, asyncio.Event()
        ev.set()

    async def until(self, pred: Callable[[], bool]) -> None:
        """Wait until ``pred()`` holds, checking it at every change of the link."""
        while not pred():
            await self._change.wait()

    @property
    def connected(self) -> bool:
        return self.client is not None and self.client.connected

    @property
    def failed(self) -> bool:
        """The client gave up (a fatal error): the link will not come back."""
        return self.client is not None and self.client.state == "failed"

    @property
    def why(self) -> str:
        c = self.client
        return c.last_error if c is not None else ""

    @property
    def node_id(self) -> str:
        return self.client.node_id if self.client is not None else ""

    def _current(self) -> Client:
        c = self.client
        if c is None or not c.connected:
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
