"""The Python ``Client`` (issue 18): reconnect with re-subscribe across a node restart and across a broker
restart, with no event lost once the subscription is back; methods it offers (``register``), called from
another node, made again after a reconnect, and gone with the client.
"""

from __future__ import annotations

import asyncio

import pytest
from pydantic import BaseModel, ConfigDict

from cloudisense.node import Client, ConnectionLost, InvalidParams, RpcError, UnknownService
from cloudisense.node._errors import NodeOffline, UnknownNode
from cloudisense.node.testing import free_port
from support import async_wait_until
from test_faults_support import Mosquitto


async def sees(client: Client, node: str) -> object:
    """A ping of ``node`` through ``client``'s node, or None while that node has not heard of it yet (both
    nodes start together: one may join before the other's presence reaches it)."""
    try:
        return await client.call(node, "node", "ping", timeout=1)
    except (UnknownNode, NodeOffline):
        return None

pytestmark = pytest.mark.timeout(90)


class SayParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


class Said(BaseModel):
    text: str
    by: str


class Ticker:
    """Publishes ``tick`` events numbered 1, 2, … as its node, through a client; ``started`` is the
    number of the publish most recently begun (whatever its outcome)."""

    def __init__(self, client: Client) -> None:
        self.client, self.started = client, 0
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.started += 1
            try:
                await self.client.publish("app/tick", {"n": self.started})
            except ConnectionLost:
                pass
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


class Collector:
    def __init__(self, sub) -> None:
        self.seen: list[int] = []
        self.task = asyncio.create_task(self._run(sub))

    async def _run(self, sub) -> None:
        async for ev in sub:
            if ev["topic"] == "app/tick":
                self.seen.append(ev["data"]["n"])

    def none_missing_after(self, mark: int, upto: int) -> list[int]:
        got = set(self.seen)
        return [n for n in range(mark + 1, upto + 1) if n not in got]

    async def stop(self) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)


async def test_node_restart_resubscribes_and_reregisters_and_methods_die_with_the_client(cluster):
    port = free_port()
    cfg_a = cluster.config("ka", listen=f"127.0.0.1:{port}")
    a = cluster.spawn("ka", cfg=cfg_a)
    b = cluster.spawn("kb")
    a.wait_ready(), b.wait_ready()
    marks: list[int] = []
    downs: list[str] = []
    ticker: Ticker | None = None

    def connected(c: Client) -> None:
        # the events published from now on must all arrive, unless a subscription is still being made again
        marks.append(-1 if c.remaking else ticker.started if ticker else 0)

    sub_client = Client(a.url, name="sub", reconnect=True, backoff_initial=0.1, backoff_cap=0.5,
                        on_connect=connected, on_disconnect=lambda c: downs.append(c.last_error))
    pub_client, caller = Client(b.url, name="pub"), Client(b.url, name="caller")
    await sub_client.connect(), await pub_client.connect(), await caller.connect()
    collector: Collector | None = None
    try:
        async def say(p: SayParams) -> Said:
            if p.text == "nope":
                raise RpcError("invalid_params", "text: nope is refused")
            return Said(text=p.text, by="sub")

        await sub_client.register("echo", "say", say, params=SayParams, mutates=False, description="echo")
        await async_wait_until(lambda: sees(caller, "ka"), 15, interval=0.2,
                               what="kb sees ka")

        async def remote_say(text: str):
            return await caller.call("ka", "echo", "say", {"text": text}, result=Said)
        r = await remote_say("hello")
        assert r == Said(text="hello", by="sub")
        with pytest.raises(InvalidParams, match="nope is refused"):   # the handler's RpcError
            await remote_say("nope")
        with pytest.raises(InvalidParams, match="text"):              # the params model refused it
            await caller.call("ka", "echo", "say", {"txt": "x"})

        sub = await sub_client.subscribe("kb", "app/#")
        collector = Collector(sub)
        ticker = Ticker(pub_client)
        await async_wait_until(lambda: len(collector.seen) > 5, 10, what="ticks before the restart")

        # the node the subscriber is connected to restarts (same port)
        a.stop()
        with pytest.raises(ConnectionLost):
            await sub_client.call(None, "node", "ping")      # while disconnected: at once
        await async_wait_until(lambda: not sub_client.connected, 10, what="the client to see ka go")
        a2 = cluster.spawn("ka", cfg=cfg_a)
        waited = await sub_client.call(None, "node", "ping", timeout=20, wait_connected=True)
        assert waited["node"] == "ka"
        a2.wait_ready()
        await async_wait_until(lambda: sub_client.reconnects >= 1 and len(marks) == 2, 20,
                               what="re-subscribed after the node restart")
        assert downs and sub_client.connected
        # kb may be unknown to the restarted ka for a moment: that subscription is then made in the background
        await async_wait_until(lambda: not sub_client.remaking, 20, what="the subscription to kb made again")
        mark = marks[-1] if marks[-1] >= 0 else ticker.started
        upto = mark + 40
        await async_wait_until(lambda: collector.seen and max(collector.seen) >= upto, 15,
                               what="ticks after the reconnect")
        assert collector.none_missing_after(mark, upto) == [], "events lost after re-subscription"

        # the registration came back with the connection: callable from kb again
        async def answered():
            try:
                return await remote_say("again")
            except UnknownService:
                return None
        assert await async_wait_until(answered, 10, interval=0.2, what="echo.say back") == Said(text="again",
                                                                                                by="sub")
        # the offering client goes: kb's callers get unknown_service within a heartbeat
        await ticker.stop()
        ticker = None
        await collector.stop()
        collector = None
        await sub_client.close()
        with pytest.raises(UnknownService):   # not CallTimeout: answered at once, not at the deadline
            await caller.call("ka", "echo", "say", {"text": "gone"}, timeout=30)
    finally:
        if ticker is not None:
            await ticker.stop()
        if collector is not None:
            await collector.stop()
        for c in (sub_client, pub_client, caller):
            await c.close()


async def test_broker_restart_keeps_the_subscription_with_no_event_lost_after_it_is_back(cluster, tmp_path):
    mosq = Mosquitto(tmp_path)
    mosq.start()
    sub_client = pub_client = None
    ticker = collector = None
    try:
        a = cluster.spawn("ma", broker=mosq.url)
        b = cluster.spawn("mb", broker=mosq.url)
        a.wait_ready(), b.wait_ready()
        sub_client = Client(a.url, name="sub", reconnect=True)
        pub_client = Client(b.url, name="pub", reconnect=True)
        await sub_client.connect(), await pub_client.connect()
        await async_wait_until(lambda: sees(sub_client, "mb"), 15, interval=0.2,
                               what="ma sees mb")
        sub = await sub_client.subscribe("mb", "app/#")
        collector = Collector(sub)
        ticker = Ticker(pub_client)
        await async_wait_until(lambda: len(collector.seen) > 5, 10, what="ticks before the restart")

        mosq.kill()
        await asyncio.to_thread(mosq.start)

        async def interest_back():
            sa = (await sub_client.call(None, "pubsub", "stats", timeout=2))["federation"]
            sb = await pub_client.call(None, "pubsub", "stats", timeout=2)
            linked = all(f["connected"] and f["reconnects"] >= 1 for f in (sa, sb["federation"]))
            return linked and sb["pubsub"]["interests"] == {"ma": ["app/#"]}
        await async_wait_until(interest_back, 20, interval=0.1, what="mb holds ma's interest again")
        mark = ticker.started
        upto = mark + 40
        await async_wait_until(lambda: collector.seen and max(collector.seen) >= upto, 15,
                               what="ticks after the broker's return")
        assert collector.none_missing_after(mark, upto) == [], "events lost after the subscription was back"
        assert not sub.closed
    finally:
        if ticker is not None:
            await ticker.stop()
        if collector is not None:
            await collector.stop()
        for c in (sub_client, pub_client):
            if c is not None:
                await c.close()
        mosq.stop()


async def test_a_subscription_to_a_node_gone_for_good_does_not_keep_the_client_down(cluster):
    port = free_port()
    cfg = cluster.config("ga", listen=f"127.0.0.1:{port}")
    a = cluster.spawn("ga", cfg=cfg)
    b = cluster.spawn("gb")
    a.wait_ready(), b.wait_ready()
    async with Client(a.url, name="sub", reconnect=True, backoff_initial=0.1, backoff_cap=0.5) as c:
        await async_wait_until(lambda: sees(c, "gb"), 15, interval=0.2, what="ga sees gb")
        sub = await c.subscribe("gb", "app/#")
        b.stop()
        a.stop()
        await async_wait_until(lambda: not c.connected, 10, what="the client to see ga go")
        cluster.spawn("ga", cfg=cfg)
        assert (await c.call(None, "node", "ping", timeout=20, wait_connected=True))["node"] == "ga"
        assert c.remaking == {("gb", "app/#")}     # refused (gb is offline or unknown), retried meanwhile
        assert not sub.closed
        await sub.close()
        await async_wait_until(lambda: not c.remaking, 5, what="the retry to stop once unsubscribed")
