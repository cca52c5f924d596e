"""Load and footprint (issue 8): 1,000 WebSocket clients on one node; an idle node's RSS and CPU.

Numbers are printed as ``MEASURE`` lines (run with ``-s``); docs/operations.md
quotes them.  Both tests are ``slow`` (``.ci/run`` still runs them).
"""

from __future__ import annotations

import asyncio
import resource
import time

import pytest

from support import async_wait_until
from test_faults_support import Peer, cpu_seconds, mb, rss

pytestmark = [pytest.mark.timeout(180), pytest.mark.slow]

CLIENTS = 1000
CALLS_EACH = 3
EVENTS = 5
IDLE_SECONDS = 30.0


def measure(what: str, value) -> None:
    print(f"MEASURE {what}: {value}")


@pytest.fixture
def enough_fds():
    """A descriptor per client, in this process and in the node (which inherits the limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = CLIENTS + 512
    if soft < need:
        if hard != resource.RLIM_INFINITY and hard < need:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {need}: raise it (ulimit -Hn) for the 1,000-client test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_thousand_clients(enough_fds, cluster):
    """1,000 concurrent clients, each subscribed and calling: every call answered, every event delivered."""
    node = cluster.start("many", processes=[], ws={"max_pending_calls": 64})
    probe = await Peer.open(node.url, "probe")
    await probe.call(None, "node.ping")
    rss_before = rss(node.pid)
    t0 = time.monotonic()
    sem = asyncio.Semaphore(64)

    async def one(i: int) -> Peer:
        async with sem:
            p = await Peer.open(node.url, f"c{i}")
            r = await p.subscribe(None, "load/#")
            assert r["type"] == "subscribed", r
            return p
    peers = await asyncio.gather(*(one(i) for i in range(CLIENTS)))
    t_connect = time.monotonic() - t0

    async def clients_seen() -> bool:
        return (await probe.stats())["clients"] >= CLIENTS + 1
    await async_wait_until(clients_seen, 10, what="the node to count every client")

    # every client calls at once, several times
    t1 = time.monotonic()

    async def calls(p: Peer) -> list[dict]:
        out = []
        for sm in ("node.ping", "system.info", "pubsub.topics")[:CALLS_EACH]:
            out.append(await p.call(None, sm, wait=60))
        return out
    replies = await asyncio.gather(*(calls(p) for p in peers))
    t_calls = time.monotonic() - t1
    errors = [r for rs in replies for r in rs if r["type"] != "result"]
    assert not errors, errors[:5]
    rss_loaded = rss(node.pid)

    # and every client gets every event
    t2 = time.monotonic()
    for k in range(EVENTS):
        r = await probe.call(None, "pubsub.publish", {"topic": "load/x", "data": {"k": k}})
        assert r["result"]["delivered_local"] == CLIENTS, r
    await async_wait_until(lambda: all(p.event_count >= EVENTS for p in peers), 30, interval=0.1,
                           what="every client to get every event")
    t_events = time.monotonic() - t2
    for p in peers:
        assert [m["data"]["k"] for _, m in p.events] == list(range(EVENTS)), p.name
        assert not p.other and p.closed is None, (p.name, p.other, p.closed)
    st = await probe.stats()
    assert st["pubsub"]["dropped"] == 0 and not st["rpc"]["errors"], st
    per_client = (rss_loaded - rss_before) / CLIENTS
    measure("1,000 clients: node RSS MB before / with 1,000 clients subscribed and served",
            (mb(rss_before), mb(rss_loaded)))
    measure("1,000 clients: RSS per client KB", round(per_client / 1024, 1))
    measure("1,000 clients: seconds to connect+subscribe / 3,000 calls / 5 events to all",
            (round(t_connect, 2), round(t_calls, 2), round(t_events, 2)))
    assert per_client < 200 * 1024, f"{per_client / 1024:.0f} KB per client"
    await asyncio.gather(*(p.close() for p in peers))

    async def all_gone() -> bool:
        return (await probe.stats())["clients"] == 1
    await async_wait_until(all_gone, 20, what="the node to release every client")
    assert (await probe.stats())["pubsub"]["local_subscribers"] == 0
    measure("1,000 clients: node RSS MB after they left", mb(rss(node.pid)))
    await probe.close()
    log = node.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


async def test_idle_footprint(cluster):
    """RSS and CPU of a node with the default timings, joined to the broker, doing nothing for 30 s."""
    cfg = cluster.config("idle", processes=[], system={"metrics_interval": 5.0})
    cfg["broker"].update({"keepalive": 10, "lease_seconds": 60.0})
    node = cluster.spawn("idle", cfg=cfg).wait_ready()
    probe = await Peer.open(node.url, "probe")
    await probe.call(None, "node.ping")
    await probe.close()       # no client left: idle is idle

    async def settled() -> bool:       # first heartbeats out, imports done
        return time.monotonic() - t_start > 5
    t_start = time.monotonic()
    await async_wait_until(settled, 10, interval=0.5, what="the node to settle")
    rss0, cpu0, t0 = rss(node.pid), cpu_seconds(node.pid), time.monotonic()
    samples = [rss0]
    await async_wait_until(lambda: samples.append(rss(node.pid)) or time.monotonic() - t0 >= IDLE_SECONDS,
                           IDLE_SECONDS + 5, interval=1.0, what="the idle window")
    cpu = (cpu_seconds(node.pid) - cpu0) / (time.monotonic() - t0)
    measure("idle node (joined to mosquitto, metrics every 5 s): RSS MB start / max / end",
            (mb(rss0), mb(max(samples)), mb(samples[-1])))
    measure("idle node: CPU % of one core over 30 s", round(cpu * 100, 2))
    assert max(samples) < 120 * 1048576
    assert max(samples) - rss0 < 5 * 1048576, "an idle node's memory grows"
    assert cpu < 0.03
