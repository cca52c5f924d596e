"""Federation input is validated at the edge, and nothing from outside can silence the link (issue 16, 4 and 5).

The attacker is ``mosquitto_pub`` on the machine's mosquitto: one unsigned call whose ``from`` is
``evil/#`` made the reply topic a wildcard, paho raised ValueError in the send task, and the link
died silently while reporting ``connected: true``; on the broadcast topic it silenced every node.
A viewer that subscribed to a remote topic holding a control character made mosquitto drop the node
as a malformed packet.  Here both attacks run against real node processes, and afterwards the
nodes must still call each other, count what they dropped, and never have left the broker.
The send loop's own failure handling is shown on a real :class:`Federation` against mosquitto.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest

from support import async_wait_until
from wsutil import call, open_ws, request, result

pytestmark = pytest.mark.timeout(90)

HOST, PORT = "127.0.0.1", 1883
BROKER = f"mqtt://{HOST}:{PORT}"
VIEWER = "viewer-secret-16"
OPERATOR = "operator-secret-16"
AUTH = {"tokens": [{"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "role": "viewer"},
                   {"sha256": hashlib.sha256(OPERATOR.encode()).hexdigest(), "role": "operator"}]}


def mqtt_pub(topic: str, payload: str) -> None:
    subprocess.run(["mosquitto_pub", "-h", HOST, "-p", str(PORT), "-q", "1", "-t", topic, "-s"],
                   input=payload.encode(), check=True, timeout=10)


def call_env(frm, to, service="node", method="ping", **extra):
    return {"v": 1, "kind": "call", "from": frm, "to": to, "id": uuid.uuid4().hex, "ts": time.time(),
            "body": {"service": service, "method": method, "params": {}, "reply_by": time.time() + 30,
                     "role": "operator"}, **extra}


async def hello(ws, token):
    r = await request(ws, {"type": "hello", "id": "h", "token": token})
    assert r["type"] == "welcome", r


async def fed_stats(ws) -> dict:
    return (await result(ws, None, "pubsub.stats"))["federation"]


async def until_online(ws, ids, timeout=15):
    async def ok():
        nodes = (await result(ws, None, "node.cluster"))["nodes"]
        return set(ids) <= {n["id"] for n in nodes if n["online"]}
    await async_wait_until(ok, timeout, interval=0.2, what=f"{ids} online")


async def federation_works(wa, wb):
    """Remote calls both ways, and each node says it is connected with no reconnect behind it."""
    assert (await result(wa, "eb", "node.ping"))["node"] == "eb"
    assert (await result(wb, "ea", "node.ping"))["node"] == "ea"
    for ws in (wa, wb):
        fed = await fed_stats(ws)
        assert fed["connected"] is True and fed["reconnects"] == 0, fed


def start_pair(cluster, **kw):
    a = cluster.spawn("ea", broker=BROKER, **kw)
    b = cluster.spawn("eb", broker=BROKER, **kw)
    return a.wait_ready(), b.wait_ready()


@pytest.mark.parametrize("bad_from", ["evil/#", "evil/+/x", "a b", "x\u0001y", "", 7, None, ["eb"]],
                         ids=["hash", "plus", "space", "control", "empty", "int", "null", "list"])
async def test_a_call_from_a_bad_id_is_dropped_and_federation_lives(cluster, bad_from):
    a, b = start_pair(cluster)
    p = cluster.prefix
    async with await open_ws(a.url) as wa, await open_ws(b.url) as wb:
        await until_online(wa, ["ea", "eb"])
        await until_online(wb, ["ea", "eb"])
        await federation_works(wa, wb)

        # The attack: one unsigned call from "evil/#" into eb's inbox, one on the broadcast topic.
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps(call_env(bad_from, "eb")))
        mqtt_pub(f"{p}/broadcast", json.dumps(call_env(bad_from, "*")))

        async def dropped(ws, n):
            got = (await fed_stats(ws))["rejected"].get("bad_from", 0)
            assert got <= n, got
            return got == n
        await async_wait_until(lambda: dropped(wb, 2), 10, what="eb to count both calls as bad_from")
        await async_wait_until(lambda: dropped(wa, 1), 10, what="ea to count the broadcast as bad_from")

        # Federation still works both ways, and nobody had to reconnect.
        await federation_works(wa, wb)
        # A second round of the same: still counted, still alive (the first did not leave a wreck).
        mqtt_pub(f"{p}/broadcast", json.dumps(call_env(bad_from, "*")))
        await async_wait_until(lambda: dropped(wb, 3), 10, what="eb to count the second broadcast")
        await federation_works(wa, wb)
    for node in (a, b):
        assert "Traceback" not in node.log(), node.log()[-3000:]
        assert "bad_from" in node.log() or "not a valid node id" in node.log()


async def test_bad_to_and_batches_with_a_bad_envelope_are_dropped_whole(cluster):
    a, b = start_pair(cluster, services=["plugins.testsvc:RelayService"])
    p = cluster.prefix
    async with await open_ws(a.url) as wa, await open_ws(b.url) as wb:
        await until_online(wb, ["ea", "eb"])
        base = await fed_stats(wb)
        # `to` of the wrong type; a batch of a good bump and a bad one: nothing of the batch runs.
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps(call_env("ea", ["eb"], "relay", "bump")))
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps([call_env("ea", "eb", "relay", "bump"),
                                                   call_env("evil/#", "eb", "relay", "bump")]))
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps([call_env("ea", "eb", "relay", "bump"), "not an envelope"]))

        async def counted():
            r = (await fed_stats(wb))["rejected"]
            return r.get("bad_to", 0) >= 1 and r.get("bad_from", 0) >= 1 and r.get("malformed", 0) >= 1 and r
        r = await async_wait_until(counted, 10, what="eb to count bad_to, bad_from and malformed")
        assert r["bad_to"] == 1 and r["bad_from"] == 1 and r["malformed"] == 1, r
        assert (await result(wb, None, "relay.count"))["count"] == 0, "no envelope of a bad batch may run"
        assert base["reconnects"] == (await fed_stats(wb))["reconnects"] == 0
        # The same good bump alone does run: the batch was dropped for its bad member only.
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps(call_env("ea", "eb", "relay", "bump")))

        async def bumped():
            return (await result(wb, None, "relay.count"))["count"] == 1
        await async_wait_until(bumped, 10, what="a lone good call to run")


@pytest.mark.parametrize("topic", ["x\u0001y", "x\x7fy", "x\u0085y", "metrics/\ufffe", "a/\U0010ffff", "\x1b[2J"],
                         ids=["C0", "DEL", "C1", "nonchar", "nonchar-plane16", "escape"])
async def test_a_control_character_topic_never_reaches_the_broker(cluster, topic):
    a, b = start_pair(cluster, auth=AUTH)
    async with await open_ws(a.url) as viewer, await open_ws(b.url) as wb, await open_ws(a.url) as op:
        await hello(viewer, VIEWER)
        await hello(wb, OPERATOR)
        await hello(op, OPERATOR)
        await until_online(viewer, ["ea", "eb"])
        await until_online(wb, ["ea", "eb"])
        offline = await request(wb, {"type": "subscribe", "id": "off", "topic": "$cluster/node/offline"})
        assert offline["type"] == "subscribed", offline

        # A viewer subscribes to the topic on the remote node, then on its own node.
        for node in ("eb", None):
            frame = {"type": "subscribe", "id": f"s-{node}", "topic": topic}
            if node:
                frame["node"] = node
            r = await request(viewer, frame)
            assert r["type"] == "error" and r["error"]["code"] == "bad_request", r
        # An operator publishes on it, directly and through pubsub.publish.
        r = await request(op, {"type": "publish", "id": "p", "topic": topic, "data": 1})
        assert r["type"] == "error" and r["error"]["code"] == "bad_request", r
        r = await call(op, None, "pubsub.publish", {"topic": topic, "data": 1})
        assert r["type"] == "error" and r["error"]["code"] in ("bad_request", "invalid_params"), r
        # An unsubscribe names the topic too: refused, not sent anywhere.
        r = await request(viewer, {"type": "unsubscribe", "id": "u", "node": "eb", "topic": topic})
        assert r["type"] == "error" and r["error"]["code"] == "bad_request", r

        # ea never left the broker: a round trip through it works, nothing reconnected, and eb
        # never announced ea offline.
        await federation_works(viewer, wb)
        try:
            async with asyncio.timeout(0.5):
                while True:
                    ev = json.loads(await wb.recv())
                    assert not (ev.get("type") == "event" and ev.get("node") == "ea"), f"eb saw ea go: {ev}"
        except TimeoutError:
            pass
    assert "Traceback" not in a.log()


async def test_a_relayed_subscription_with_a_control_character_is_refused_by_the_remote(cluster, prefix):
    """A peer (an MQTT client playing one) asks eb for events on a control-character topic."""
    a, b = start_pair(cluster)
    p = cluster.prefix
    async with await open_ws(b.url) as wb, await open_ws(a.url) as wa, MqttWatch(f"{p}/node/fx/inbox") as fx:
        await until_online(wb, ["ea", "eb"])
        env = {"v": 1, "kind": "sub", "from": "fx", "to": "eb", "id": uuid.uuid4().hex, "ts": time.time(),
               "body": {"topic": "metrics/\u0001#"}}
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps(env))
        lease = {"v": 1, "kind": "lease", "from": "fx", "to": "eb", "id": uuid.uuid4().hex, "ts": time.time(),
                 "body": {"topics": ["a/\u0001", "#"]}}
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps(lease))

        def answered():
            return [e for _, e in fx.envelopes() if e.get("kind") == "error"]
        (err,) = await async_wait_until(answered, 10, what="eb to answer fx's sub with an error")
        assert err["body"]["re"] == env["id"] and err["body"]["error"]["code"] == "bad_request", err
        assert (await result(wb, None, "pubsub.topics"))["interests"] == {}
        await federation_works(wa, wb)


class MqttWatch:
    """An MQTT client of the test's own, collecting what arrives on ``filter`` (JSON payloads)."""

    def __init__(self, filter: str) -> None:
        self.filter = filter
        self.got: list[tuple[str, object]] = []

    async def __aenter__(self) -> "MqttWatch":
        import aiomqtt
        self.client = aiomqtt.Client(HOST, PORT, identifier=f"watch-{uuid.uuid4().hex[:8]}")
        await self.client.__aenter__()
        await self.client.subscribe(self.filter, qos=1)
        self.task = asyncio.create_task(self._receive())
        return self

    async def _receive(self) -> None:
        async for m in self.client.messages:
            self.got.append((m.topic.value, json.loads(m.payload)))

    def envelopes(self) -> list[tuple[str, dict]]:
        return [(t, e) for t, obj in self.got for e in (obj if isinstance(obj, list) else [obj])]

    async def __aexit__(self, *exc: object) -> None:
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.client.__aexit__(None, None, None)


# --- the adapter: a send that fails never kills the link silently -------------------------------------

class _Link:
    """A real Federation on mosquitto, and a watcher of everything under the test's prefix."""

    def __init__(self, prefix: str, cls=None, url: str = BROKER, hello=None) -> None:
        self.prefix = prefix
        self.cls = cls
        self.url = url
        self.hello = hello
        self.received: list[tuple[str, object, bool]] = []
        self.events: list[tuple[str, bool]] = []   # (what happened, connected at that moment)

    async def __aenter__(self) -> "_Link":
        from cloudisense.node._federation import Federation
        self.watch = await MqttWatch(f"{self.prefix}/#").__aenter__()
        self.fed = fed = (self.cls or Federation)(
            node_id="lk", url=self.url, keepalive=5, connect_timeout=5,
            will=lambda: (f"{self.prefix}/node/lk/presence", b"offline"), hello=self.hello,
            on_envelopes=lambda topic, obj, raw, replayed: self.received.append((topic, obj, replayed)),
            on_connected=lambda: self.events.append(("connected", fed.connected.is_set())),
            on_disconnected=lambda why: self.events.append((f"disconnected: {why}", fed.connected.is_set())),
            on_fatal=lambda why: self.events.append((f"fatal: {why}", fed.connected.is_set())))
        await fed.__aenter__()
        await async_wait_until(fed.connected.is_set, 10, what="the link to connect")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.fed.close()
        await self.watch.__aexit__()

    async def delivered(self, topic: str, env: dict) -> None:
        self.fed.send(topic, env)
        await async_wait_until(lambda: (topic, env) in self.watch.got, 10, what=f"{env} on {topic}")


async def test_an_unsendable_envelope_is_dropped_and_counted_the_link_stays_up(prefix, caplog):
    async with _Link(prefix) as link:
        fed = link.fed
        # paho refuses these topics (ValueError) and these payloads (TypeError): each used to end the
        # send task, and with it the link, silently.
        fed.send(f"{prefix}/node/evil/#/inbox", {"n": 1})
        fed.send(f"{prefix}/node/+/inbox", {"n": 2})
        fed.send(f"{prefix}/\ud800", {"n": 3})
        await link.delivered(f"{prefix}/ok", {"n": 4})
        assert fed.counters["unsendable"] == 3, fed.counters
        assert fed.connected.is_set() and fed.counters["reconnects"] == 0
        assert link.events == [("connected", True)]
        # In one flush with good envelopes for other topics: those still go out.
        fed.send(f"{prefix}/a/#", {"n": 5})
        fed.send(f"{prefix}/good", {"n": 6})
        await link.delivered(f"{prefix}/good2", {"n": 7})
        assert (f"{prefix}/good", {"n": 6}) in link.watch.got
        assert fed.counters["unsendable"] == 4 and fed.counters["reconnects"] == 0
    warnings = [r for r in caplog.records if "could not send" in r.getMessage()]
    assert 1 <= len(warnings) <= 3, [r.getMessage() for r in warnings]


async def test_qos_0_envelopes_do_not_wait_behind_a_puback_the_broker_holds(prefix):
    """The broker holds the PUBACK of a QoS 1 publish (nats-server does while JetStream elects leaders):
    envelopes sent at QoS 0 meanwhile (the failure detector's probes and acks) still go out at once, and
    the QoS 1 ones queued behind the held publish go out, coalesced, once it completes."""
    from test_faults_support import CutProxy

    with CutProxy(PORT) as proxy:
        async with _Link(prefix, url=proxy.url) as link:
            fed = link.fed
            await link.delivered(f"{prefix}/calls", {"n": 0})
            proxy.hold_pubacks(True)
            fed.send(f"{prefix}/calls", {"n": 1})              # its PUBACK is held: the QoS 1 writer waits
            await async_wait_until(lambda: proxy.held >= 1, 10, what="the broker's PUBACK to be held")
            fed.send(f"{prefix}/calls", {"n": 2})              # queued behind it
            for i in range(3):
                fed.send(f"{prefix}/probes", {"p": i}, qos=0)
                await async_wait_until(lambda: (f"{prefix}/probes", {"p": i}) in link.watch.envelopes(), 5,
                                       what=f"probe {i} to go out while a PUBACK is held")
            assert (f"{prefix}/calls", {"n": 2}) not in link.watch.envelopes()
            proxy.hold_pubacks(False)
            await async_wait_until(lambda: (f"{prefix}/calls", {"n": 2}) in link.watch.envelopes(), 10,
                                   what="the queued QoS 1 envelope once the PUBACK came")
            assert fed.connected.is_set() and fed.counters["reconnects"] == 0


async def test_a_reconnection_publishes_its_hello_before_it_subscribes(prefix):
    """A reconnection's first message is its ``hello`` (the node's online presence), before the
    SUBSCRIBEs a broker may take seconds over; the first connection sends none (the node has not
    checked yet that its id is free)."""
    from test_faults_support import CutProxy

    hellos = iter(range(1, 100))
    with CutProxy(PORT) as proxy:
        async with _Link(prefix, url=proxy.url,
                         hello=lambda: (f"{prefix}/node/lk/presence", json.dumps({"hello": next(hellos)}).encode())
                         ) as link:
            fed = link.fed
            await fed.subscribe(f"{prefix}/node/lk/inbox")
            await link.delivered(f"{prefix}/first", {"n": 1})
            assert 3 not in proxy.sent[0][:proxy.sent[0].index(8)], proxy.sent   # no PUBLISH before it subscribed
            proxy.reset_node_side()
            await async_wait_until(lambda: fed.counters["reconnects"] >= 1 and fed.connected.is_set(), 10,
                                   what="the link to reconnect")
            await async_wait_until(lambda: (f"{prefix}/node/lk/presence", {"hello": 1}) in link.watch.got, 5,
                                   what="the hello")
            types = proxy.sent[-1]
            assert types[0] == 1 and types[1] == 3 and 8 in types, proxy.sent   # CONNECT, the hello, SUBSCRIBE
            assert fed.subscriptions == [f"{prefix}/node/lk/inbox"] and not fed.missing()


async def test_the_node_is_told_which_messages_the_broker_replayed_from_its_retained_store(prefix):
    """A retained message the broker sends for a subscription just made is marked replayed (MQTT's RETAIN
    flag on delivery); one published while the subscription stands is not, retained or not."""
    import aiomqtt

    async with aiomqtt.Client(HOST, PORT, identifier=f"pub-{uuid.uuid4().hex[:8]}") as pub:
        await pub.publish(f"{prefix}/node/x/presence", b'{"state": "old"}', qos=1, retain=True)
        async with _Link(prefix) as link:
            await link.fed.subscribe(f"{prefix}/node/+/presence")
            await async_wait_until(lambda: link.received, 10, what="the retained message")
            await pub.publish(f"{prefix}/node/x/presence", b'{"state": "live"}', qos=1, retain=True)
            await async_wait_until(lambda: len(link.received) >= 2, 10, what="the live message")
            assert [(o, r) for _, o, r in link.received] == [({"state": "old"}, True), ({"state": "live"}, False)]
        await pub.publish(f"{prefix}/node/x/presence", b"", qos=1, retain=True)   # clear it


async def test_a_failed_send_loop_is_logged_reports_disconnected_and_reconnects(prefix, caplog):
    """Whatever else breaks the send loop (here a wrapper that fails one flush): the link says it is
    down while it is, logs why with the traceback, reconnects, and sends again."""
    from cloudisense.node._federation import Federation

    class FailingOnce(Federation):
        armed = True

        async def _flush(self, client, lane):
            if self.armed:
                self.armed = False
                seen_connected.append(self.connected.is_set())
                raise RuntimeError("injected: the send loop broke")
            await super()._flush(client, lane)

    seen_connected: list[bool] = []
    with caplog.at_level(logging.INFO, "cloudisense.node._federation"):
        async with _Link(prefix, FailingOnce) as link:
            fed = link.fed
            fed.send(f"{prefix}/x", {"n": 1})   # the flush that fails
            await async_wait_until(lambda: any(e.startswith("disconnected") for e, _ in link.events), 10,
                                   what="the link to report the failure")
            (down, connected_then), = [e for e in link.events if e[0].startswith("disconnected")]
            assert "injected: the send loop broke" in down and connected_then is False, link.events
            await async_wait_until(lambda: fed.connected.is_set() and fed.counters["reconnects"] == 1, 10,
                                   what="the link to reconnect")
            assert link.events[-1] == ("connected", True)
            await link.delivered(f"{prefix}/after", {"n": 2})
    assert seen_connected == [True]
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors and errors[0].exc_info and "send loop broke" in str(errors[0].exc_info[1]), \
        [r.getMessage() for r in caplog.records]


# --- batches: one MQTT message of 50,000 forged envelopes ---------------------------------------------

@pytest.fixture
def keys(tmp_path):
    trust = tmp_path / "trust"
    for node_id in ("ea", "eb", "fx"):
        r = subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "keys", "gen", node_id, "--out", str(trust)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    return trust


async def test_a_message_of_50000_forged_envelopes_costs_no_verification(cluster, keys):
    def secured(node_id):
        return {"security": {"key": str(keys / f"{node_id}.key"), "trust": str(keys)}}
    a = cluster.spawn("ea", broker=BROKER, **secured("ea"))
    b = cluster.spawn("eb", broker=BROKER, services=["plugins.testsvc:RelayService"], **secured("eb"))
    a.wait_ready(), b.wait_ready()
    p = cluster.prefix

    def forged(i):   # from a trusted id, with a signature that is 64 random bytes
        return {**call_env("fx", "eb", "relay", "bump"), "id": f"forged-{i}",
                "sig": base64.b64encode(os.urandom(64)).decode()}
    async with await open_ws(a.url) as wa, await open_ws(b.url) as wb:
        await until_online(wb, ["ea", "eb"])
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps([forged(i) for i in range(50_000)]))   # ~15 MB
        mqtt_pub(f"{p}/node/eb/inbox", json.dumps([forged(i) for i in range(200)]))      # under the bound

        async def counted():
            r = (await fed_stats(wb))["rejected"]
            return r.get("batch_too_large", 0) >= 50_000 and r.get("bad_signature", 0) >= 1 and r
        r = await async_wait_until(counted, 30, what="eb to refuse both batches")
        # The big one was refused before any envelope of it was verified; the small one stopped at its
        # first forgery: one Ed25519 verification for 50,200 forged envelopes.
        assert r["batch_too_large"] == 50_000 and r["bad_signature"] == 1, r
        assert (await result(wb, None, "relay.count"))["count"] == 0
        await federation_works(wa, wb)
    assert b.log().count("batch_too_large") == 1
