"""Issue 20 with real nodes on a real broker: the catalog travels once (and again when it changes),
heartbeats reach only a node where someone watches, and a peer that stops answering goes stale,
then offline with the reason ``probe``, long before any will (and comes back when it answers)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid

import pytest

from support import BROKER, async_wait_until
from wsutil import next_event, open_ws, request, send

pytestmark = pytest.mark.timeout(60)

FAST = {"probe_interval": 0.5, "probe_timeout": 0.3, "suspect_timeout": 1.0}


async def cluster_rows(ws, **params) -> dict:
    r = await request(ws, {"type": "call", "id": uuid.uuid4().hex[:8], "service": "node", "method": "cluster",
                           "params": params})
    assert r["type"] == "result", r
    return r["result"]


class Counter:
    """A plain MQTT client counting the messages on a topic filter."""

    def __init__(self, topic: str) -> None:
        self.topic, self.by_topic = topic, {}

    async def __aenter__(self) -> "Counter":
        import aiomqtt
        host, port = BROKER.removeprefix("mqtt://").split(":")
        self.client = aiomqtt.Client(host, int(port), identifier=f"count-{uuid.uuid4().hex[:8]}")
        await self.client.__aenter__()
        await self.client.subscribe(self.topic, qos=1)

        async def rx() -> None:
            async for msg in self.client.messages:
                t = msg.topic.value.rsplit("/", 1)[-1]
                self.by_topic[t] = self.by_topic.get(t, 0) + 1
        self.task = asyncio.create_task(rx())
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.__aexit__(None, None, None)


async def test_the_catalog_travels_once_and_again_when_it_changes(cluster):
    a = cluster.start("sa", cluster=FAST)
    b = cluster.start("sb", cluster=FAST)     # heartbeats every second (the test config)
    async with Counter(f"{cluster.prefix}/node/sb/#") as seen, await open_ws(a.url) as wa:
        async def b_listed():
            r = await cluster_rows(wa, fields=["id", "online", "catalog_hash"], catalogs=True)
            row = next((n for n in r["nodes"] if n["id"] == "sb" and n["online"]), None)
            return row and row["catalog_hash"] in r["catalogs"] and r
        r = await async_wait_until(b_listed, 15, what="sb listed with its catalog")
        assert "supervisor" in r["catalogs"][next(n for n in r["nodes"] if n["id"] == "sb")["catalog_hash"]]
        assert "services" not in r["nodes"][0]    # compact rows: the catalog only beside them, once
        await async_wait_until(lambda: seen.by_topic.get("state", 0) >= 4, 15, what="4 heartbeats of sb")
        assert seen.by_topic.get("catalog") == 1, seen.by_topic   # the retained one, nothing since
        old_hash = r["nodes"][[n["id"] for n in r["nodes"]].index("sb")]["catalog_hash"]

        # sb comes back with one more service: a new catalog, announced, fetched by sa
        b.stop()
        cluster.start("sb", cluster=FAST, services=["plugins.testsvc:TestService"])

        async def new_catalog():
            r = await cluster_rows(wa, fields=["id", "online", "catalog_hash"], catalogs=True,
                                   where={"id_prefix": "sb", "online": True})
            return (r["nodes"] and r["nodes"][0]["catalog_hash"] != old_hash
                    and "testsvc" in r["catalogs"].get(r["nodes"][0]["catalog_hash"], {}) and r)
        await async_wait_until(new_catalog, 15, what="sa to hold sb's new catalog")
        # paging: a cursor walks the table
        first = await cluster_rows(wa, fields=["id"], limit=1)
        second = await cluster_rows(wa, fields=["id"], limit=1, cursor=first["next"])
        assert first["total"] == 2 and [first["nodes"][0]["id"], second["nodes"][0]["id"]] == ["sa", "sb"]
        assert second["next"] is None
        # an answer over the caller's limit is an error naming the way out, and the connection stays
        r = await request(wa, {"type": "call", "id": "big", "service": "node", "method": "cluster",
                               "params": {"max_bytes": 1024, "catalogs": True}})
        assert r["type"] == "error" and r["error"]["code"] == "too_large" and "limit" in r["error"]["message"], r
        assert (await cluster_rows(wa, fields=["id"], sort="-id"))["nodes"][0]["id"] == "sb"


async def test_a_frozen_peer_goes_stale_then_offline_by_probe_and_comes_back(cluster):
    a = cluster.start("pa", cluster=FAST)
    cluster.start("pc", cluster=FAST)         # a helper for the indirect probes
    # a long keepalive: the broker would send pb's will only ~45 s after it froze
    cfg = cluster.config("pb", cluster=FAST)
    cfg["broker"]["keepalive"] = 30
    b = cluster.spawn("pb", cfg).wait_ready()
    async with await open_ws(a.url) as wa:
        await send(wa, {"type": "subscribe", "id": "s", "topic": "$cluster/#"})

        async def all_online():
            r = await cluster_rows(wa, fields=["id", "status"])
            return [n["status"] for n in r["nodes"]] == ["online"] * 3
        await async_wait_until(all_online, 15, what="pa, pb, pc online")
        os.kill(b.proc.pid, signal.SIGSTOP)
        try:
            stale = await next_event(wa, lambda m: m.get("topic") == "$cluster/node/stale" and m["node"] == "pb", 10)
            offline = await next_event(wa, lambda m: m.get("topic") == "$cluster/node/offline"
                                       and m["node"] == "pb", 10)
            assert offline["data"]["reason"] == "probe" and offline["data"]["status"] == "offline", offline
            assert stale["data"]["status"] == "stale"
            assert offline["ts"] - stale["ts"] >= 0.9   # suspect_timeout: time to refute
            rows = {n["id"]: n["status"] for n in (await cluster_rows(wa, fields=["id", "status"]))["nodes"]}
            assert rows == {"pa": "online", "pb": "offline", "pc": "online"}
        finally:
            os.kill(b.proc.pid, signal.SIGCONT)
        # it answers again: it hears it was declared offline, refutes, and is online again
        back = await next_event(wa, lambda m: m.get("topic") == "$cluster/node/online" and m["node"] == "pb", 15)
        assert back["data"]["status"] == "online"
    assert "refuting" in b.log(), b.log()[-2000:]
