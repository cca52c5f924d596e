"""The node client's link: its one reconnect loop, ``state`` / ``on_state``, ``connect(retry=True)``.

No sockets: the client dials the in-memory node of :mod:`cloudisense.tui.testing` (``dial=``), so the
test decides when the node refuses, drops the link or wants another token.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from cloudisense.node import ConnectionLost, Forbidden, Unauthenticated
from cloudisense.node._client import Client, ClientState, _fatal, backoff
from cloudisense.tui.testing import FakeLink, three_nodes

pytestmark = pytest.mark.timeout(30)


class States:
    """The ``on_state`` hook: every state it heard, and a way to wait for one."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, float | None]] = []
        self._changed = asyncio.Event()

    def __call__(self, c: Client) -> None:
        self.seen.append((c.state.value, c.retry_in))
        self._changed.set()

    async def until(self, pred, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not pred():
                self._changed.clear()
                await self._changed.wait()

    def names(self) -> list[str]:
        return [s for s, _ in self.seen]


def client(link: FakeLink, states: States, **kw) -> Client:
    kw.setdefault("reconnect", True)
    return link.factory("ws://fake/ws", kw.pop("token", None), backoff_initial=0.01, backoff_cap=0.05,
                        on_state=states, **kw)


def test_backoff_is_capped_and_jittered():
    assert list(itertools.islice(backoff(0.25, 2.0, rnd=lambda: 1.0), 6)) == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert list(itertools.islice(backoff(0.25, 2.0, rnd=lambda: 0.0), 3)) == [0.125, 0.25, 0.5]


def test_fatal_errors_are_the_ones_another_attempt_cannot_fix():
    assert not _fatal(ConnectionLost("gone")) and not _fatal(OSError("refused")) and not _fatal(TimeoutError())
    assert _fatal(Unauthenticated("bad token")) and _fatal(Forbidden("viewer")) and _fatal(ValueError("bad uri"))


async def test_connect_with_retry_waits_for_the_node_and_says_each_attempt():
    link, states = FakeLink(three_nodes()), States()
    link.refuse = True
    c = client(link, states)
    assert c.state is ClientState.CLOSED
    connecting = asyncio.create_task(c.connect(retry=True))
    await states.until(lambda: len(states.seen) >= 3)     # connecting, then two failed attempts
    assert states.seen[0] == ("connecting", None)
    assert all(s == "connecting" and delay is not None for s, delay in states.seen[1:])
    assert isinstance(c.error, ConnectionLost) and "refused" in c.last_error and not c.connected
    with pytest.raises(ConnectionLost, match="reconnecting"):   # calls meanwhile fail at once
        await c.call(None, "node", "cluster")
    link.refuse = False
    await asyncio.wait_for(connecting, 5)
    assert c.state is ClientState.CONNECTED and states.names()[-1] == "connected" and c.retry_in is None
    assert c.node_id == "node-a" and c.reconnects == 0
    await c.close()
    assert c.state is ClientState.CLOSED and states.names()[-1] == "closed"


async def test_a_lost_link_comes_back_with_its_subscription():
    link, states = FakeLink(three_nodes()), States()
    c = client(link, states)
    await c.connect(retry=True)
    sub = await c.subscribe(None, "process/#")
    link.refuse = True
    await link.drop()
    await states.until(lambda: c.state is ClientState.RECONNECTING)
    assert "closed" in c.last_error
    await states.until(lambda: states.seen[-1][1] is not None)   # a refused attempt, with the next delay
    link.refuse = False
    await states.until(lambda: c.state is ClientState.CONNECTED)
    assert c.reconnects == 1 and len(link.clients) == 2
    assert ("process/#" in {s.topic for s in link.current.subs})   # subscribed again before "connected"
    assert link.emit("process/logger/restarted", {"pid": 7}) == 1
    ev = await sub.get(5)
    assert ev["topic"] == "process/logger/restarted"
    await c.close()


async def test_a_fatal_error_stops_the_retries_and_says_so():
    link, states = FakeLink(three_nodes(), token="s3cret"), States()
    c = client(link, states, token="wrong")
    with pytest.raises(Unauthenticated):
        await c.connect(retry=True)
    assert c.state is ClientState.FAILED and isinstance(c.error, Unauthenticated) and link.dials == 1
    assert states.names() == ["connecting", "failed"]
    await c.close()
    assert c.state is ClientState.FAILED        # close() keeps the failure on show

    # a token revoked while connected: the reconnect fails for good, subscriptions end
    states2 = States()
    c2 = client(link, states2, token="s3cret")
    await c2.connect(retry=True)
    sub = await c2.subscribe(None, "#")
    link.token = "rotated"
    await link.drop()
    await states2.until(lambda: c2.state is ClientState.FAILED)
    assert states2.names()[-2:] == ["reconnecting", "failed"] and c2.retry_in is None
    with pytest.raises(ConnectionLost):
        await sub.get(5)
    await c2.close()


async def test_close_stops_a_connect_that_is_retrying():
    link, states = FakeLink(three_nodes()), States()
    link.refuse = True
    c = client(link, states)
    connecting = asyncio.create_task(c.connect(retry=True))
    await states.until(lambda: len(states.seen) >= 2)
    await c.close()
    with pytest.raises(ConnectionLost, match="closed while connecting"):
        await asyncio.wait_for(connecting, 5)
    assert c.state is ClientState.CLOSED
    # nothing of the client is left to dial again: no task of its own outlives close()
    left = [t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("client[") and not t.done()]
    assert left == [], left


async def test_plain_connect_still_raises_and_reports_the_state():
    link, states = FakeLink(three_nodes()), States()
    link.refuse = True
    c = client(link, states, reconnect=False)
    with pytest.raises(ConnectionLost, match="cannot connect"):
        await c.connect()
    assert states.names() == ["connecting", "closed"] and link.dials == 1
    link.refuse = False
    await c.connect()
    assert c.state is ClientState.CONNECTED
    await link.drop()
    await states.until(lambda: c.state is ClientState.CLOSED)   # no reconnect: closed, as before
    await c.close()
