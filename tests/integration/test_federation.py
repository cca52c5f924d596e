"""Federation flows across real node processes on a real broker (issue: federation).

Parametrised over brokers: the machine's mosquitto and the embedded broker
(the nats-server wheel, started the way ``--broker embedded`` starts it).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
import uuid

import pytest

from support import async_wait_until
from wsutil import next_event, open_ws, recv, reply_to, request, send

pytestmark = pytest.mark.timeout(90)

PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]


@pytest.fixture(params=["mosquitto", "embedded"])
def broker(request, tmp_path):
    if request.param == "mosquitto":
        yield "mqtt://127.0.0.1:1883"
        return
    from cloudisense.node._broker import EmbeddedBroker
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = EmbeddedBroker(f"127.0.0.1:{port}")
    loop = asyncio.new_event_loop()
    loop.run_until_complete(b.start())
    try:
        yield b.url
    finally:
        loop.run_until_complete(b.stop())
        loop.close()


def trio(cluster, broker, **kw):
    a = cluster.spawn("fa", broker=broker, services=PLUG, temperature="sim:61", **kw)
    b = cluster.spawn("fb", broker=broker, services=PLUG, temperature="sim:38", **kw)
    c = cluster.spawn("fc", broker=broker, temperature="sim:52", **kw)
    for n in (a, b, c):
        n.wait_ready()
    return a, b, c


async def call(ws, rid, node, sm, params=None, timeout=None, **extra):
    service, method = sm.split(".")
    frame = {"type": "call", "id": rid, "service": service, "method": method, "params": params or {}}
    if node is not None:
        frame["node"] = node
    if timeout is not None:
        frame["timeout"] = timeout
    frame.update(extra)
    return await request(ws, frame, timeout=(timeout or 10) + 5)


async def until_online(ws, ids, timeout=15):
    async def ok():
        r = await call(ws, f"cl-{time.monotonic()}", None, "node.cluster")
        online = {n["id"] for n in r["result"]["nodes"] if n["online"]}
        return set(ids) <= online
    await async_wait_until(ok, timeout, interval=0.2, what=f"{ids} online")


async def stats(ws, node=None):
    r = await call(ws, f"st-{time.monotonic()}", node, "pubsub.stats")
    assert r["type"] == "result", r
    return r["result"]


async def test_remote_rpc_relay_and_cluster_view(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as ws:
        await until_online(ws, ["fa", "fb", "fc"])
        # 1. browser -> A -> B -> A -> browser
        r = await call(ws, "1", "fb", "system.metrics")
        assert r["type"] == "result" and r["node"] == "fb"
        assert r["result"]["simulated"] and 36 <= r["result"]["temperature_c"] <= 40
        r = await call(ws, "2", "fc", "supervisor.status", {"name": "logger"})
        assert r["result"]["state"] == "running"
        # remote errors come back with their code
        r = await call(ws, "3", "fc", "testsvc.sleep", {"seconds": 0})
        assert r["type"] == "error" and r["error"]["code"] == "unknown_service" and r["node"] == "fc"
        r = await call(ws, "4", "fb", "testsvc.sleep", {"seconds": "x"})
        assert r["error"]["code"] == "invalid_params" and "seconds" in r["error"]["message"]
        # 7. cluster view: membership with metrics, services and processes
        table = (await call(ws, "5", None, "node.cluster"))["result"]
        assert table["self"] == "fa"
        nodes = {n["id"]: n for n in table["nodes"]}
        assert set(nodes) == {"fa", "fb", "fc"}
        assert all(n["online"] for n in nodes.values())
        assert nodes["fb"]["metrics"]["temperature_c"] < nodes["fc"]["metrics"]["temperature_c"]
        assert nodes["fc"]["services"]["supervisor"]["methods"]["restart"]["mutates"] is True
        assert nodes["fb"]["processes"][0]["name"] == "logger"


async def test_remote_timeout_exactly_once_and_late_reply_dropped(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as ws:
        await until_online(ws, ["fb"])
        r = await call(ws, "slow", "fb", "testsvc.sleep", {"seconds": 1.5}, timeout=0.5)
        assert r["type"] == "error" and r["error"]["code"] == "timeout" and "fb" in r["error"]["message"]
        # B still answers after 1.5 s; the late reply is counted and never reaches the client
        async def late():
            return (await stats(ws))["rpc"]["late_replies"] >= 1
        await async_wait_until(late, 10, what="the late reply to be counted")
        await send(ws, {"type": "call", "id": "after", "service": "node", "method": "ping"})
        nxt = await recv(ws)
        assert nxt["id"] == "after", f"a second reply to 'slow' leaked: {nxt}"


async def test_remote_to_local_and_programmatic_rpc(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(b.url) as ws:
        await until_online(ws, ["fa", "fc"])
        # B's own code calls C (programmatic RPC), as asked by a client of B
        r = await call(ws, "1", None, "relay.via", {"node": "fc", "service_method": "system.info"})
        assert r["type"] == "result" and r["result"]["value"]["node"] == "fc"
        # and A's code calls B's service
    async with await open_ws(a.url) as wa:
        r = await call(wa, "2", "fa", "relay.via", {"node": "fb", "service_method": "relay.bump"})
        assert r["result"]["value"] == {"count": 1}
        r = await call(wa, "3", None, "relay.via", {"node": "nobody", "service_method": "node.ping"})
        assert r["error"]["code"] == "unknown_node"


async def test_broadcast_gather_and_fire_and_forget(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as ws:
        await until_online(ws, ["fa", "fb", "fc"])
        r = await call(ws, "b1", "*", "system.metrics")
        assert r["type"] == "result" and r["node"] == "*"
        assert set(r["result"]["results"]) == {"fa", "fb", "fc"} and r["result"]["errors"] == {}
        # per-node errors: fc has no relay service
        r = await call(ws, "b2", "*", "relay.count")
        assert set(r["result"]["results"]) == {"fa", "fb"}
        assert r["result"]["errors"]["fc"]["code"] == "unknown_service"
        # fire-and-forget: acknowledged at once, runs everywhere
        r = await call(ws, "b3", "*", "relay.bump", reply=False)
        assert r["type"] == "result" and r["result"] is None
        async def bumped():
            r = await call(ws, f"b4-{time.monotonic()}", "*", "relay.count")
            return {k: v["count"] for k, v in r["result"]["results"].items()} == {"fa": 1, "fb": 1}
        await async_wait_until(bumped, 10, what="fire-and-forget broadcast to run on fa and fb")
        # a node that dies mid-gather is reported, not waited for past the deadline
        c.kill()
        r = await call(ws, "b5", "*", "node.ping", timeout=4)
        assert set(r["result"]["results"]) >= {"fa", "fb"}
        assert "fc" not in r["result"]["results"] or r["result"]["errors"] == {}


async def test_remote_events_to_browsers_one_mqtt_subscription(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as w1, await open_ws(a.url) as w2, await open_ws(b.url) as wb:
        await until_online(w1, ["fb"])
        # B sends nothing to MQTT while nobody wants it
        await call(wb, "p0", None, "pubsub.publish", {"topic": "app/temp", "data": 0})
        assert (await stats(wb))["pubsub"]["events_remote_out"] == 0
        for w in (w1, w2):
            r = await request(w, {"type": "subscribe", "id": "s", "node": "fb", "topic": "app/#"})
            assert r["type"] == "subscribed", r
        sa = await stats(w1)
        assert sa["pubsub"]["mqtt_subscriptions"] == [f"{cluster.prefix}/node/fb/events/app/#"]
        assert sa["pubsub"]["remote_subscriptions"] == {"fb": ["app/#"]}
        sb = await stats(wb)
        assert sb["pubsub"]["interests"] == {"fa": ["app/#"]}
        await call(wb, "p1", None, "pubsub.publish", {"topic": "app/temp", "data": {"v": 1}})
        await call(wb, "p2", None, "pubsub.publish", {"topic": "other/x", "data": 2})
        for w in (w1, w2):
            ev = await next_event(w, timeout=10)
            assert ev["node"] == "fb" and ev["topic"] == "app/temp" and ev["data"] == {"v": 1}
        # one MQTT publish served both browsers
        assert (await stats(wb))["pubsub"]["events_remote_out"] == 1
        # one browser leaves: the relay stays for the other
        assert (await request(w2, {"type": "unsubscribe", "id": "u", "node": "fb", "topic": "app/#"}))["type"] \
            == "unsubscribed"
        assert (await stats(wb))["pubsub"]["interests"] == {"fa": ["app/#"]}
    # every browser gone: A releases the MQTT subscription and B drops the interest
    async with await open_ws(a.url) as wa, await open_ws(b.url) as wb:
        async def released():
            sa, sb = await stats(wa), await stats(wb)
            return sa["pubsub"]["mqtt_subscriptions"] == [] and sb["pubsub"]["interests"] == {}
        await async_wait_until(released, 10, what="interest released after the browsers disconnected")


async def test_cleanup_when_subscriber_node_is_killed(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as wa:
        await until_online(wa, ["fb"])
        assert (await request(wa, {"type": "subscribe", "id": "s", "node": "fb", "topic": "metrics/#"}))["type"] \
            == "subscribed"
    # (the client left, so A released it; subscribe again and keep the client while A is killed)
    wa = await open_ws(a.url)
    await request(wa, {"type": "subscribe", "id": "s2", "node": "fb", "topic": "metrics/#"})
    async with await open_ws(b.url) as wb:
        async def has_interest():
            return (await stats(wb))["pubsub"]["interests"] == {"fa": ["metrics/#"]}
        await async_wait_until(has_interest, 10, what="fb to hold fa's interest")
        t0 = time.monotonic()
        a.kill()
        async def dropped():
            return (await stats(wb))["pubsub"]["interests"] == {}
        await async_wait_until(dropped, 2 * 1.5 + 3, interval=0.1, what="fb to drop fa's interest")
        assert time.monotonic() - t0 <= 2 * 1.5 + 3   # keepalive 2 s × 1.5, plus the broker's check
    await wa.close()


async def test_cleanup_and_resubscribe_when_publisher_node_dies_and_returns(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as wa:
        await until_online(wa, ["fb"])
        assert (await request(wa, {"type": "subscribe", "id": "s", "node": "fb", "topic": "metrics/#"}))["type"] \
            == "subscribed"
        await next_event(wa, lambda m: m["topic"] == "metrics/system", timeout=10)
        b.kill()
        ev = await next_event(wa, lambda m: m["topic"] == "$cluster/node/offline", timeout=10)
        assert ev["node"] == "fb"
        r = await call(wa, "x", "fb", "node.ping")
        assert r["error"]["code"] == "node_offline"     # at once, not after a timeout
        # the subscription survives; when fb is back, events flow again without resubscribing
        cluster.spawn("fb", broker=broker, services=PLUG, temperature="sim:38").wait_ready()
        ev = await next_event(wa, lambda m: m["topic"] == "$cluster/node/online", timeout=15)
        assert ev["node"] == "fb"
        ev = await next_event(wa, lambda m: m["topic"] == "metrics/system", timeout=15)
        assert ev["node"] == "fb"


async def test_cluster_events_online_offline(cluster, broker):
    a = cluster.start("fa", broker=broker)
    async with await open_ws(a.url) as wa:
        await request(wa, {"type": "subscribe", "id": "s", "topic": "$cluster/#"})
        b = cluster.start("fb", broker=broker)
        ev = await next_event(wa, lambda m: m["topic"] == "$cluster/node/online" and m["node"] == "fb")
        assert ev["data"]["id"] == "fb" and ev["data"]["online"] is True
        ev = await next_event(wa, lambda m: m["topic"] == "$cluster/node/state" and m["node"] == "fb")
        assert "metrics" in ev["data"]
        b.stop()   # a clean stop publishes offline at once
        ev = await next_event(wa, lambda m: m["topic"] == "$cluster/node/offline", timeout=10)
        assert ev["node"] == "fb" and ev["data"]["online"] is False


async def test_client_disconnect_drops_its_pending_calls(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as ws:
        await until_online(ws, ["fb"])
    ws = await open_ws(a.url)
    await send(ws, {"type": "call", "id": "p", "node": "fb", "service": "testsvc", "method": "sleep",
                    "params": {"seconds": 1}})
    async with await open_ws(a.url) as probe:
        async def pending_one():
            return (await stats(probe))["rpc"]["pending"] >= 1
        await async_wait_until(pending_one, 5, what="the remote call to be pending")
        await ws.close()
        async def pending_none():
            return (await stats(probe))["rpc"]["pending"] == 0
        await async_wait_until(pending_none, 5, what="the pending call to go with its client")
        # its reply arrives later and is dropped as late, not sent anywhere
        async def counted():
            return (await stats(probe))["rpc"]["late_replies"] >= 1
        await async_wait_until(counted, 10, what="the orphan reply to be counted as late")
    assert a.proc.poll() is None


async def test_shutdown_answers_pending_calls_node_offline(cluster, broker):
    a, b, c = trio(cluster, broker)
    async with await open_ws(a.url) as ws:
        await until_online(ws, ["fb"])
        await send(ws, {"type": "call", "id": "p", "node": "fb", "service": "testsvc", "method": "sleep",
                        "params": {"seconds": 5}})
        async with await open_ws(a.url) as probe:
            async def pending_one():
                return (await stats(probe))["rpc"]["pending"] >= 1
            await async_wait_until(pending_one, 5)
        a.proc.terminate()
        r = await reply_to(ws, "p", timeout=10)
        assert r["error"]["code"] == "node_offline" and "shutting down" in r["error"]["message"]


def test_duplicate_node_id_refused(cluster):
    cluster.start("dup", broker="mqtt://127.0.0.1:1883")
    second = cluster.spawn("dup", broker="mqtt://127.0.0.1:1883")
    assert second.proc.wait(20) == 2
    assert "already online" in second.log() and "pid" in second.log()


def test_redelivered_call_runs_once(cluster):
    """A call envelope delivered twice (QoS 1 redelivery) runs once; mosquitto_pub plays the peer."""
    b = cluster.start("fb", broker="mqtt://127.0.0.1:1883", services=PLUG)
    inbox = f"{cluster.prefix}/node/fb/inbox"
    reply_inbox = f"{cluster.prefix}/node/fx/inbox"
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-t", reply_inbox, "-C", "1", "-W", "10"],
                           stdout=subprocess.PIPE, text=True)
    env = {"v": 1, "kind": "call", "from": "fx", "to": "fb", "id": uuid.uuid4().hex, "ts": time.time(),
           "body": {"service": "relay", "method": "bump", "params": {}, "reply_by": time.time() + 30,
                    "role": "operator"}}
    time.sleep(0.3)  # mosquitto_sub has no ready signal; the node's answer is what we wait for below
    for _ in range(2):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", inbox, "-m", json.dumps(env)],
                       check=True, timeout=10)
    out, _ = sub.communicate(timeout=15)
    reply = json.loads(out)
    assert reply["kind"] == "result" and reply["body"]["re"] == env["id"]

    async def check():
        async with await open_ws(b.url) as ws:
            async def dup_seen():
                return (await stats(ws))["rpc"]["duplicates"] == 1
            await async_wait_until(dup_seen, 10, what="the second delivery to be recognised as a duplicate")
            return (await call(ws, "c", None, "relay.count"))["result"]["count"]
    assert asyncio.run(check()) == 1


def test_embedded_broker_node_and_a_joiner(cluster):
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = cluster.config("emb", broker="embedded")
    cfg["broker"]["embedded_listen"] = f"127.0.0.1:{port}"
    host = cluster.spawn("emb", cfg=cfg).wait_ready()
    joiner = cluster.start("joiner", broker=f"mqtt://127.0.0.1:{port}")

    async def go():
        async with await open_ws(joiner.url) as ws:
            await until_online(ws, ["emb", "joiner"])
            r = await call(ws, "1", "emb", "node.ping")
            assert r["result"]["node"] == "emb"
    asyncio.run(go())
    host.remember_children()
    assert any("nats-server" in " ".join(p.cmdline()) for p in host.children)
