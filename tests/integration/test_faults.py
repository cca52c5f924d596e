"""Faults under traffic (issue 8): broker restart, node crash, partition, slow consumer.

Every test starts its own mosquitto on a free port (the machine's broker is
never touched) and real node processes; faults are injected from outside the
node: the broker is stopped and started again, a node is killed with
SIGKILL, a TCP proxy the test controls black-holes a node's link, a client
stops reading.  Recovery times are printed as ``MEASURE`` lines (run with
``-s`` to see them; docs/operations.md quotes them).
"""

from __future__ import annotations

import asyncio
import gc
import json
import socket
import time
from typing import Any

import aiomqtt
import pytest
from websockets.asyncio.client import connect

from support import async_wait_until
from test_faults_support import CutProxy, Mosquitto, Peer, RpcTraffic, mb, rss

pytestmark = pytest.mark.timeout(120)

PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]
KEEPALIVE = 2          # conftest's broker.keepalive for test nodes
# mosquitto 2.0 gives up a silent client 1.5 keepalives after its last packet, but checks lazily:
# 3 to 8 s here with a keepalive of 2 s
BROKER_GIVES_UP = KEEPALIVE * 6
RECOVERY = 5.0         # the bound: back within 5 s of the broker's return
CONNECT_TIMEOUT = 2.0  # broker.connect_timeout of nodes behind a proxy the test black-holes


def measure(what: str, value: Any) -> None:
    print(f"MEASURE {what}: {value}")


@pytest.fixture
def mosq(tmp_path):
    m = Mosquitto(tmp_path)
    m.start()
    yield m
    m.stop()


async def ticker(peer: Peer, stop: asyncio.Event, rate: float = 20.0) -> None:
    """Publish app/tick events (seq in the data) at ``rate`` per second through ``peer``'s node."""
    seq = 0
    while not stop.is_set():
        seq += 1
        await peer.ws.send(json.dumps({"type": "publish", "id": peer.new_id("p"), "topic": "app/tick",
                                       "data": {"seq": seq, "t": time.time()}}))
        await asyncio.sleep(1 / rate)


async def retained_presence(url: str, prefix: str, nodes: set[str]) -> bool:
    """True when the broker holds a retained ``online`` presence for every one of ``nodes``."""
    host, port = url.removeprefix("mqtt://").split(":")
    seen: dict[str, str] = {}
    try:
        async with aiomqtt.Client(host, int(port), timeout=2) as c:
            await c.subscribe(f"{prefix}/node/+/presence", qos=1)
            async with asyncio.timeout(0.5):   # retained messages follow the SUBACK at once
                async for msg in c.messages:
                    env = json.loads(msg.payload)
                    seen[env["from"]] = env["body"]["state"]
                    if all(seen.get(n) == "online" for n in nodes):
                        return True
    except (TimeoutError, aiomqtt.MqttError, OSError):
        pass
    return False


# --- broker restart -------------------------------------------------------------------------

@pytest.mark.parametrize("how, outage", [("kill", 1.0), ("stop", 6.0)], ids=["crash-1s", "stop-6s"])
async def test_broker_restart_under_traffic(mosq, cluster, how, outage):
    """Stop the broker under RPC and event traffic, start it again on the same port.

    ``crash-1s``: SIGKILL, back after 1 s: the nodes never notice each other
    missing.  ``stop-6s``: SIGTERM (mosquitto sends every client's will as it
    goes), back after 6 s (past the heartbeat grace too): the nodes mark each
    other offline and drop the other's interests, so everything has to be
    rebuilt from presence after the return.
    """
    a = cluster.spawn("fa", broker=mosq.url, services=PLUG)
    b = cluster.spawn("fb", broker=mosq.url, services=PLUG)
    a.wait_ready(), b.wait_ready()
    pa, pb = await Peer.open(a.url, "pa"), await Peer.open(b.url, "pb")
    probe_a, probe_b = await Peer.open(a.url, "probe-a"), await Peer.open(b.url, "probe-b")
    await async_wait_until(lambda: _both_online(probe_a, probe_b), 15, interval=0.2, what="fa and fb online")
    assert (await pa.subscribe("fb", "app/#"))["type"] == "subscribed"
    stop_ticks = asyncio.Event()
    tick_task = asyncio.create_task(ticker(pb, stop_ticks))
    await async_wait_until(lambda: pa.events_on("app/tick"), 10, what="the first tick on fa")
    rpc = RpcTraffic(pa, "fb").start()
    await async_wait_until(lambda: list(rpc.outcome.values()).count("ok") >= 20, 10, what="calls flowing")
    prefix = cluster.prefix

    mosq.kill() if how == "kill" else mosq.stop()
    await asyncio.sleep(outage)              # the outage itself, under traffic
    await asyncio.to_thread(mosq.start)
    t_up = time.monotonic()

    async def connected() -> bool:
        sa, sb = await probe_a.stats(), await probe_b.stats()
        return all(s["federation"]["connected"] and s["federation"]["reconnects"] >= 1 for s in (sa, sb))
    await async_wait_until(connected, RECOVERY, what="both nodes reconnected")
    t_conn = time.monotonic() - t_up
    await async_wait_until(lambda: retained_presence(mosq.url, prefix, {"fa", "fb"}), RECOVERY,
                           interval=0.1, what="presence re-announced on the restarted broker")
    t_presence = time.monotonic() - t_up
    await async_wait_until(lambda: _both_online(probe_a, probe_b), RECOVERY, interval=0.1,
                           what="fa and fb online in each other's view")
    t_view = time.monotonic() - t_up

    async def interest_back() -> bool:
        sb = await probe_b.stats()
        return sb["pubsub"]["interests"] == {"fa": ["app/#"]}
    await async_wait_until(interest_back, RECOVERY, interval=0.1, what="fb to hold fa's interest again")
    t_interest = time.monotonic() - t_up
    since = time.monotonic()
    await async_wait_until(lambda: pa.events_on("app/tick", since), RECOVERY, interval=0.05,
                           what="the tick stream to resume on fa")
    t_events = time.monotonic() - t_up

    async def calls_ok() -> bool:
        return (await probe_a.call("fb", "node.ping", timeout=1))["type"] == "result"
    await async_wait_until(calls_ok, RECOVERY, interval=0.1, what="calls to fb to succeed again")
    t_rpc = time.monotonic() - t_up
    assert max(t_conn, t_presence, t_view, t_interest, t_events, t_rpc) <= RECOVERY
    ok_before = list(rpc.outcome.values()).count("ok")
    await async_wait_until(lambda: list(rpc.outcome.values()).count("ok") >= ok_before + 20, 10,
                           what="steady calls after the return")

    counts = await rpc.finish()
    stop_ticks.set()
    await tick_task
    await probe_a.call(None, "node.ping")          # a barrier: anything doubled would have arrived by now
    rpc.check_exactly_once()
    assert counts.get("node_offline", 0) >= 1, counts   # the outage was seen, and answered, not hung
    # the event stream is one MQTT subscription and one interest, as before the restart
    sa, sb = await probe_a.stats(), await probe_b.stats()
    assert sa["pubsub"]["mqtt_subscriptions"] == [f"{prefix}/node/fb/events/app/#"]
    assert sa["pubsub"]["remote_subscriptions"] == {"fb": ["app/#"]}
    assert sb["pubsub"]["interests"] == {"fa": ["app/#"]}
    assert sa["rpc"]["pending"] == 0
    measure(f"broker restart ({how}, {outage:g} s outage) calls", counts)
    measure(f"broker restart ({how}, {outage:g} s outage) recovery s after broker return",
            {"connected": round(t_conn, 2), "presence": round(t_presence, 2), "view": round(t_view, 2),
             "interest": round(t_interest, 2), "events": round(t_events, 2), "rpc": round(t_rpc, 2)})
    for p in (pa, pb, probe_a, probe_b):
        await p.close()
    for n in (a, b):
        assert "Traceback" not in n.log(), n.log()[-3000:]


async def _both_online(pa: Peer, pb: Peer) -> bool:
    return {"fa", "fb"} <= await pa.online() and {"fa", "fb"} <= await pb.online()


async def test_broker_restart_with_uneven_heartbeats(mosq, cluster):
    """fb beats every 5 s (the default), fa every second; fb comes back from the outage after fa.

    During the outage fb gives fa up (4 missed beats: 4 s) and drops its
    interest, while fa still counts fb online (20 s of grace for a 5 s beat).
    fa re-sends its subscription on reconnecting, but fb is not back yet; fb's
    return is not a change in fa's view.  The subscription must come back
    anyway, within RECOVERY s of fb's return, not at the next lease refresh
    (the lease here is long so that the refresh cannot hide it).
    """
    with CutProxy(mosq.port) as proxy:
        cfg_a = cluster.config("fa", broker=mosq.url)
        cfg_b = cluster.config("fb", broker=proxy.url, services=PLUG, system={"metrics_interval": 5.0})
        for cfg in (cfg_a, cfg_b):
            cfg["broker"]["lease_seconds"] = 120.0
        cfg_b["broker"]["connect_timeout"] = CONNECT_TIMEOUT
        a, b = cluster.spawn("fa", cfg=cfg_a), cluster.spawn("fb", cfg=cfg_b)
        a.wait_ready(), b.wait_ready()
        pa, pb = await Peer.open(a.url, "pa"), await Peer.open(b.url, "pb")
        await async_wait_until(lambda: _both_online(pa, pb), 15, interval=0.2, what="fa and fb online")
        assert (await pa.subscribe("fb", "app/#"))["type"] == "subscribed"
        stop_ticks = asyncio.Event()
        ticks = asyncio.create_task(ticker(pb, stop_ticks, rate=10))
        await async_wait_until(lambda: pa.events_on("app/tick"), 10, what="ticks from fb on fa")

        proxy.partition()            # fb stays away a little longer than the broker
        mosq.kill()                  # a crash: a broker stopping cleanly would send every will first

        async def fb_gave_fa_up() -> bool:
            return "fa" not in await pb.online() and (await pb.stats())["pubsub"]["interests"] == {}
        await async_wait_until(fb_gave_fa_up, 10, interval=0.1, what="fb to give fa up")
        assert "fb" in await pa.online()
        await asyncio.to_thread(mosq.start)

        async def fa_back() -> bool:
            st = (await pa.stats())["federation"]
            return st["connected"] and st["reconnects"] >= 1
        await async_wait_until(fa_back, RECOVERY, interval=0.05, what="fa to reconnect")
        proxy.heal()

        async def fb_back() -> bool:
            st = (await pb.stats())["federation"]
            return st["connected"] and st["reconnects"] >= 1
        await async_wait_until(fb_back, CONNECT_TIMEOUT + 2 + RECOVERY, interval=0.05, what="fb to reconnect")
        t_back = time.monotonic()
        assert "fb" in await pa.online()       # fa never saw fb go: fb's return changes nothing in its view

        async def interest_back() -> bool:
            return (await pb.stats())["pubsub"]["interests"] == {"fa": ["app/#"]}
        await async_wait_until(interest_back, RECOVERY, interval=0.1, what="fb to hold fa's interest again")
        since = time.monotonic()
        await async_wait_until(lambda: pa.events_on("app/tick", since), RECOVERY, interval=0.05,
                               what="ticks from fb on fa again")
        measure("broker restart, uneven heartbeats: events back after fb's return (s)",
                round(time.monotonic() - t_back, 2))
        stop_ticks.set()
        await ticks
        for p in (pa, pb):
            await p.close()


# --- node crash ----------------------------------------------------------------------------

async def test_node_crash_under_traffic(mosq, cluster):
    """kill -9 fb while fa's clients call it and follow its events, and fb's clients follow fa and fc."""
    a = cluster.spawn("fa", broker=mosq.url, services=PLUG)
    b = cluster.spawn("fb", broker=mosq.url, services=PLUG)
    c = cluster.spawn("fc", broker=mosq.url, services=PLUG)
    for n in (a, b, c):
        n.wait_ready()
    pa, pb, pc = await Peer.open(a.url, "pa"), await Peer.open(b.url, "pb"), await Peer.open(c.url, "pc")
    await async_wait_until(lambda: _all_online((pa, pb, pc), {"fa", "fb", "fc"}), 15, interval=0.2,
                           what="fa, fb, fc online everywhere")
    before = {p.name: len((await p.stats())["pubsub"]["interests"]) for p in (pa, pc)}
    # fa's client follows fb; fb's client follows fa and fc (so fa and fc hold interests of fb)
    assert (await pa.subscribe("fb", "app/#"))["type"] == "subscribed"
    assert (await pb.subscribe("fa", "metrics/#"))["type"] == "subscribed"
    assert (await pb.subscribe("fc", "metrics/#"))["type"] == "subscribed"

    async def interests_held() -> bool:
        return [(await p.stats())["pubsub"]["interests"] for p in (pa, pc)] == [{"fb": ["metrics/#"]}] * 2
    await async_wait_until(interests_held, 10, what="fa and fc to hold fb's interests")
    rpc = RpcTraffic(pa, "fb", workers=4).start()
    await async_wait_until(lambda: list(rpc.outcome.values()).count("ok") >= 10, 10, what="calls flowing")
    # calls that will still be in flight when fb dies
    slow_ids = [pa.new_id("slow") for _ in range(5)]
    slow = [asyncio.create_task(pa.call("fb", "testsvc.sleep", {"seconds": 8}, timeout=10, rid=rid))
            for rid in slow_ids]

    async def pending() -> bool:
        return (await pa.stats())["rpc"]["pending"] >= 5
    await async_wait_until(pending, 5, what="the slow calls to be pending on fa")

    t0 = time.monotonic()
    b.kill()
    bound = KEEPALIVE * 1.5 + 0.5        # the broker's keepalive check, plus slack for the broker's timer
    await async_wait_until(lambda: [m for m in pa.events_on("$cluster/node/offline") if m["node"] == "fb"],
                           bound, interval=0.02, what="fa's subscriber to be told fb went offline")
    t_told = time.monotonic() - t0
    results = await asyncio.gather(*slow)
    t_failed = time.monotonic() - t0
    assert [r["error"]["code"] for r in results] == ["node_offline"] * 5, results
    assert t_failed <= bound, f"pending calls failed after {t_failed:.2f} s"

    async def offline_everywhere() -> bool:
        return not any(["fb" in await p.online() for p in (pa, pc)])
    await async_wait_until(offline_everywhere, bound, interval=0.05, what="fb offline in fa's and fc's view")
    t_view = time.monotonic() - t0

    async def interests_back() -> bool:
        return [len((await p.stats())["pubsub"]["interests"]) for p in (pa, pc)] == [before["pa"], before["pc"]]
    await async_wait_until(interests_back, bound, interval=0.05, what="interest tables back to their size")
    t_interests = time.monotonic() - t0
    counts = await rpc.finish()
    rpc.check_exactly_once()
    r = await pa.call("fb", "node.ping", timeout=2)
    assert r["type"] == "error" and r["error"]["code"] == "node_offline"   # at once, no timeout
    sa = await pa.stats()
    assert sa["rpc"]["pending"] == 0
    assert sa["pubsub"]["remote_subscriptions"] == {"fb": ["app/#"]}        # kept for fb's return
    measure("node crash: calls", counts)
    measure("node crash: seconds after kill -9", {"subscribers_told": round(t_told, 2),
                                                 "pending_failed": round(t_failed, 2),
                                                 "view_offline": round(t_view, 2),
                                                 "interests_dropped": round(t_interests, 2)})
    for p in (pa, pb, pc):
        await p.close()


async def _all_online(peers, ids: set[str]) -> bool:
    for p in peers:
        if not ids <= await p.online():
            return False
    return True


# --- partitions ----------------------------------------------------------------------------

async def test_partition_and_heal(mosq, cluster):
    """fc reaches the broker through a proxy; the proxy black-holes its link for a while, then heals.

    Both sides only learn of it from keepalives: the broker publishes fc's will,
    fc stops hearing heartbeats.  After the heal the cluster view and the
    subscriptions in both directions come back by themselves.
    """
    with CutProxy(mosq.port) as proxy:
        a = cluster.spawn("fa", broker=mosq.url, services=PLUG)
        b = cluster.spawn("fb", broker=mosq.url)
        cfg = cluster.config("fc", broker=proxy.url, services=PLUG)
        cfg["broker"]["connect_timeout"] = CONNECT_TIMEOUT   # an attempt into the partition waits this long
        c = cluster.spawn("fc", cfg=cfg)
        for n in (a, b, c):
            n.wait_ready()
        pa, pc = await Peer.open(a.url, "pa"), await Peer.open(c.url, "pc")
        pb = await Peer.open(b.url, "pb")
        everyone = {"fa", "fb", "fc"}
        await async_wait_until(lambda: _all_online((pa, pb, pc), everyone), 15, interval=0.2, what="all online")
        assert (await pa.subscribe("fc", "app/#"))["type"] == "subscribed"
        assert (await pc.subscribe("fa", "metrics/#"))["type"] == "subscribed"
        assert (await pa.subscribe(None, "$cluster/#"))["type"] == "subscribed"
        stop_ticks = asyncio.Event()
        ticks = asyncio.create_task(ticker(pc, stop_ticks, rate=10))
        await async_wait_until(lambda: pa.events_on("app/tick"), 10, what="ticks from fc on fa")
        await async_wait_until(lambda: pc.events_on("metrics/"), 10, what="fa's metrics on fc")

        t0 = time.monotonic()
        proxy.partition()
        # the rest of the cluster sees fc go (its will, after the broker's keepalive check)
        await async_wait_until(lambda: [m for m in pa.events_on("$cluster/node/offline") if m["node"] == "fc"],
                               BROKER_GIVES_UP, interval=0.05, what="fa to see fc offline")
        t_seen = time.monotonic() - t0

        async def fb_sees_it() -> bool:
            return "fc" not in await pb.online()
        await async_wait_until(fb_sees_it, 2, interval=0.05, what="fb to see fc offline too")

        async def fa_dropped_fc() -> bool:
            return (await pa.stats())["pubsub"]["interests"] == {}
        await async_wait_until(fa_dropped_fc, 3, what="fa to drop fc's interest")

        # fc, cut off, loses its link and stops hearing the others' heartbeats
        async def fc_alone() -> bool:
            st = await pc.stats()
            return not st["federation"]["connected"] and await pc.online() == {"fc"}
        await async_wait_until(fc_alone, 10, interval=0.1, what="fc to notice the partition")
        t_alone = time.monotonic() - t0
        r = await pc.call("fa", "node.ping", timeout=2)
        assert r["type"] == "error" and r["error"]["code"] == "node_offline"

        proxy.heal()
        t_heal = time.monotonic()
        # fc's connect attempt in flight at the heal only gives up after connect_timeout, then backs off
        await async_wait_until(lambda: _all_online((pa, pb, pc), everyone), CONNECT_TIMEOUT + 2 + RECOVERY,
                               interval=0.1, what="the cluster view to converge after the heal")
        t_view = time.monotonic() - t_heal

        async def interests_converged() -> bool:
            sa, sc = await pa.stats(), await pc.stats()
            return sa["pubsub"]["interests"] == {"fc": ["metrics/#"]} and sc["pubsub"]["interests"] == {
                "fa": ["app/#"]}
        await async_wait_until(interests_converged, RECOVERY, interval=0.1, what="interests on both sides")
        since = time.monotonic()
        await async_wait_until(lambda: pa.events_on("app/tick", since) and pc.events_on("metrics/", since),
                               RECOVERY, interval=0.05, what="events flowing both ways again")
        t_events = time.monotonic() - t_heal
        assert (await pa.call("fc", "node.ping"))["type"] == "result"
        stop_ticks.set()
        await ticks
        measure("partition: seconds after the cut", {"others_see_fc_offline": round(t_seen, 2),
                                                    "fc_sees_itself_alone": round(t_alone, 2)})
        measure("partition: seconds after the heal", {"view": round(t_view, 2), "events": round(t_events, 2)})
        for p in (pa, pb, pc):
            await p.close()


async def test_node_side_reset_and_the_late_will(mosq, cluster):
    """A middlebox resets fb's link: fb reconnects at once, the broker only drops the old link later.

    The old link's last will (``offline``) then reaches everyone after fb's new
    ``online``: peers must not take fb offline for it, and the retained
    presence a later joiner reads must say online.
    """
    with CutProxy(mosq.port) as proxy:
        a = cluster.spawn("fa", broker=mosq.url)
        b = cluster.spawn("fb", broker=proxy.url, services=PLUG)
        a.wait_ready(), b.wait_ready()
        pa, pb = await Peer.open(a.url, "pa"), await Peer.open(b.url, "pb")
        await async_wait_until(lambda: _all_online((pa, pb), {"fa", "fb"}), 15, interval=0.2, what="online")
        assert (await pa.subscribe(None, "$cluster/node/offline"))["type"] == "subscribed"

        proxy.reset_node_side()
        t0 = time.monotonic()

        async def reconnected() -> bool:
            st = (await pb.stats())["federation"]
            return st["connected"] and st["reconnects"] >= 1
        await async_wait_until(reconnected, RECOVERY, interval=0.05, what="fb to reconnect")
        await async_wait_until(lambda: proxy.upstream_closed >= 1, BROKER_GIVES_UP + 2, interval=0.05,
                               what="the broker to give up fb's old link (and publish its will)")
        t_will = time.monotonic() - t0
        assert (await pa.call("fb", "node.ping"))["type"] == "result"   # a round trip after the will
        assert "fb" in await pa.online()
        assert not [m for m in pa.events_on("$cluster/node/offline") if m["node"] == "fb"]
        await async_wait_until(lambda: retained_presence(mosq.url, cluster.prefix, {"fa", "fb"}), RECOVERY,
                               interval=0.1, what="the retained presence of fb to say online again")
        c = cluster.start("fc", broker=mosq.url)
        pc = await Peer.open(c.url, "pc")
        await async_wait_until(lambda: _all_online((pc,), {"fa", "fb", "fc"}), RECOVERY, interval=0.1,
                               what="a later joiner to see fb online")
        measure("node-side reset: old link's will published after (s)", round(t_will, 2))
        for p in (pa, pb, pc):
            await p.close()


# --- slow consumer -------------------------------------------------------------------------

FAST_CLIENTS = 50
STREAM_RATE = 100          # events per second to every client
PAYLOAD = 2048             # bytes of filler per event (2 KB × 100/s × 51 clients)
SEND_QUEUE = 64            # ws.send_queue of the node under test
SLOW_CLOSE = 2.0           # ws.slow_close_seconds
BULK = 32768               # the stalled clients also follow bulk/#: 32 KB events at STREAM_RATE


async def _stalled_client(url: str) -> Any:
    """A client whose socket has a tiny receive buffer; it reads nothing until told to."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    host, port = url.removeprefix("ws://").split("/")[0].split(":")
    sock.connect((host, int(port)))
    sock.setblocking(False)
    return await connect(url, sock=sock, max_queue=4, open_timeout=5, close_timeout=5)


async def _stream(pub: Peer, stop: asyncio.Event, sent: list[int], bulk: asyncio.Event) -> None:
    filler, bulk_filler = "x" * PAYLOAD, "y" * BULK
    seq = 0
    start = time.monotonic()
    while not stop.is_set():
        seq += 1
        await pub.ws.send(json.dumps({"type": "publish", "id": seq, "topic": "load/stream",
                                      "data": {"seq": seq, "t": time.monotonic(), "fill": filler}}))
        sent.append(seq)
        if bulk.is_set():
            await pub.ws.send(json.dumps({"type": "publish", "id": f"b{seq}", "topic": "bulk/x",
                                          "data": {"fill": bulk_filler}}))
        # paced against the clock, so a slow loop catches up instead of lowering the rate
        await asyncio.sleep(max(0.0, start + seq / STREAM_RATE - time.monotonic()))


def _latencies(peers: list[Peer], lo: int, hi: int) -> list[float]:
    out = []
    for p in peers:
        for t, m in p.events:
            if lo <= m["data"]["seq"] <= hi:
                out.append((t - m["data"]["t"]) * 1000)
    return sorted(out)


def _p(xs: list[float], q: float) -> float:
    return round(xs[min(len(xs) - 1, int(len(xs) * q))], 1) if xs else 0.0


async def test_slow_consumer_does_not_hurt_the_others(cluster):
    """50 clients follow a 100 events/s stream while two clients stop reading.

    Before the node's queue for a client sees anything, the kernel fills that
    client's socket buffers (on loopback the send buffer autotunes up to
    net.ipv4.tcp_wmem's maximum, 4 MB here), so the stalled clients also follow
    a bulk topic that gets them there within a second or two.  One of them
    resumes reading as soon as the node drops events for it (it must get a
    ``dropped`` notice and stay connected); the other never reads again (it must
    be closed with 1008 after ``slow_close_seconds`` of dropping).
    """
    node = cluster.start("slow", broker="none", processes=[],
                         ws={"send_queue": SEND_QUEUE, "slow_close_seconds": SLOW_CLOSE})
    fast = [await Peer.open(node.url, f"fast{i}") for i in range(FAST_CLIENTS)]
    for p in fast:
        assert (await p.subscribe(None, "load/#"))["type"] == "subscribed"
    pub, probe = await Peer.open(node.url, "pub"), await Peer.open(node.url, "probe")
    stop, sent, bulk = asyncio.Event(), [], asyncio.Event()
    # The latencies are measured in this process, which also holds ~50,000 received events:
    # a full collection of those would show up as the node's latency.
    gc.disable()
    try:
        await _slow_consumer_phases(node, fast, pub, probe, stop, sent, bulk)
    finally:
        gc.enable()


async def _slow_consumer_phases(node, fast, pub, probe, stop, sent, bulk) -> None:
    stream = asyncio.create_task(_stream(pub, stop, sent, bulk))
    # phase A: everyone keeps up
    await async_wait_until(lambda: len(sent) >= 3 * STREAM_RATE, 10, what="3 s of baseline stream")
    a_last = sent[-1]
    rss_a = rss(node.pid)

    # phase B: two clients subscribe and stop reading
    stalled = [await _stalled_client(node.url) for _ in range(2)]
    for i, ws in enumerate(stalled):
        await ws.send(json.dumps({"type": "subscribe", "id": f"st{i}", "topic": "load/#"}))
        await ws.send(json.dumps({"type": "subscribe", "id": f"sb{i}", "topic": "bulk/#"}))
    b_first = sent[-1] + 1
    bulk.set()

    async def dropping() -> bool:
        return (await probe.stats())["pubsub"]["dropped"] > 0
    await async_wait_until(dropping, 10, interval=0.05, what="the node to drop events for the stalled clients")
    t_drop = time.monotonic()
    # the first one catches up at once: it gets the newest events and a dropped notice, and stays
    brief = stalled[0]
    notice = None
    async with asyncio.timeout(10):
        while notice is None:
            text = await brief.recv()
            if '"type":"dropped"' in text[:40]:
                notice = json.loads(text)
    assert notice["count"] > 0 and notice["total"] >= notice["count"]
    assert time.monotonic() - t_drop < SLOW_CLOSE
    # the second one never reads: closed with 1008 after SLOW_CLOSE s of continuous dropping
    rss_b = [rss(node.pid)]

    def closing_logged() -> bool:
        rss_b.append(rss(node.pid))
        return "closing slow consumer" in node.log()
    await async_wait_until(closing_logged, SLOW_CLOSE + 5, interval=0.1, what="the node to close the stalled client")
    t_close = time.monotonic() - t_drop
    stuck = stalled[1]
    async with asyncio.timeout(10):
        try:
            while True:
                await stuck.recv()
        except Exception:
            pass
    assert stuck.close_code == 1008 and stuck.close_reason == "slow consumer", (stuck.close_code,
                                                                               stuck.close_reason)
    # the brief one is still served
    async with asyncio.timeout(10):
        await brief.send(json.dumps({"type": "call", "id": "alive", "service": "node", "method": "ping"}))
        while json.loads(await brief.recv()).get("id") != "alive":
            pass
    b_last = sent[-1]
    bulk.clear()
    stop.set()
    await stream
    last = sent[-1]

    async def all_in() -> bool:
        return all(p.events and p.events[-1][1]["data"]["seq"] == last for p in fast)
    await async_wait_until(all_in, 10, what="every fast client to get the last event")
    # every fast client got every event, in order, and no dropped notice
    for p in fast:
        assert [m["data"]["seq"] for _, m in p.events] == list(range(1, last + 1)), p.name
        assert not [m for m in p.other if m.get("type") == "dropped"], p.name
    lat_a, lat_b = _latencies(fast, 1, a_last), _latencies(fast, b_first, b_last)
    p99_a, p99_b = _p(lat_a, 0.99), _p(lat_b, 0.99)
    assert p99_b <= max(3 * p99_a, p99_a + 100) and p99_b < 500, (p99_a, p99_b)
    grew = max(rss_b) - rss_a
    assert grew < 30 * 1048576, f"node RSS grew by {mb(grew)} MB while two clients stalled"
    measure("slow consumer: fast clients' latency ms (baseline p50/p99, with stalled clients p50/p99)",
            (_p(lat_a, 0.5), p99_a, _p(lat_b, 0.5), p99_b))
    measure("slow consumer: closed after dropping for (s)", round(t_close, 2))
    measure("slow consumer: node RSS MB before / max during stall", (mb(rss_a), mb(max(rss_b))))
    for p in (*fast, pub, probe):
        await p.close()
    await brief.close()
