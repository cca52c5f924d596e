"""Hostile input at scale (issue 8): fuzzing the frame parser and the envelope path, and a soak.

* hypothesis over :func:`cloudisense.node._frames.parse_frame`: any text or
  bytes, any JSON, and frames of every type with fields of any type.  A frame
  either parses into its model or raises ``BadRequest`` whose error frame can
  be sent (JSON, UTF-8 apart from lone surrogates, which the gateway refuses
  before parsing); nothing else ever escapes.
* hypothesis over the federation's inbound path: ``Node.on_envelopes`` of a
  node built from settings with ``broker.url = none`` and a recording
  stand-in for the MQTT adapter, without and with signing (``Verifier``; the
  fuzzed envelopes are signed by a trusted peer so that they reach the
  handlers too).  After each batch the node's own loops' work runs on the
  state the batch left behind (stale-heartbeat check, lease expiry, cluster
  table, stats, publishing, role checks): no exception, no ERROR log record.
* atheris over the same two entry points (a
  dependency of the test extra).
* a 60 s soak (``slow``): two real nodes on the machine's broker, clients
  sending a seeded mix of valid and invalid frames, and garbage published
  straight into a node's MQTT inbox; every request answered exactly once,
  both nodes alive and answering, and no ``Traceback`` or ``ERROR`` in their logs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudisense.node._config import Settings
from cloudisense.node._errors import BadRequest
from cloudisense.node._frames import INBOUND, parse_frame
from cloudisense.node._gateway import error_frame
from cloudisense.node._node import Node
from cloudisense.node._signing import Signer, generate_keypair

from support import async_wait_until
from test_faults_support import Peer

pytestmark = pytest.mark.timeout(240)

# FUZZ_EXAMPLES=5000 for a deeper run than CI's
FUZZ = settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "200")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------------

leaf = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True, allow_infinity=True)
        | st.text(max_size=16))
json_values = st.recursive(leaf, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=20)
FRAME_FIELDS = ["id", "node", "service", "method", "params", "timeout", "reply", "topic", "data", "token",
                "client", "protocol"]
frames = st.builds(
    lambda kind, fields: {"type": kind, **fields},
    st.sampled_from([*INBOUND, "", "CALL", "result", "event"]) | json_values,
    st.dictionaries(st.sampled_from(FRAME_FIELDS), json_values, max_size=8))
raw_frames = (st.text(max_size=200) | st.binary(max_size=200)
              | json_values.map(lambda v: json.dumps(v, allow_nan=True))
              | frames.map(lambda f: json.dumps(f, allow_nan=True))
              | frames.map(lambda f: json.dumps(f, allow_nan=True).encode()))

KINDS = ["call", "result", "error", "sub", "unsub", "lease", "event", "presence", "state", "nosuch"]
PEERS = ["peer", "other", "fz"]                  # "fz" is the node itself
SERVICES = ["node", "system", "pubsub", "nosuch"]
METHODS = ["ping", "info", "metrics", "cluster", "describe", "stats", "topics", "publish", "nosuch"]
body_values = st.fixed_dictionaries({}, optional={
    "service": st.sampled_from(SERVICES) | json_values,
    "method": st.sampled_from(METHODS) | json_values,
    "params": st.dictionaries(st.sampled_from(["topic", "data", "x"]), json_values, max_size=3) | json_values,
    "reply_by": st.floats(allow_nan=True, allow_infinity=True) | st.just(time.time() + 5) | json_values,
    "reply": json_values,
    "role": st.sampled_from(["operator", "viewer"]) | json_values,
    "re": st.text(max_size=8) | json_values,
    "result": json_values,
    "error": st.fixed_dictionaries({"code": st.sampled_from(["timeout", "internal", "x"]),
                                    "message": st.text(max_size=8)}) | json_values,
    "topic": st.sampled_from(["a/b", "#", "+", "a/#", "$sys/stats", "", "a/#/b", "x" * 600]) | json_values,
    "topics": st.lists(st.sampled_from(["a/b", "#", "+/+", "a/#/b", ""]) | json_values, max_size=4)
    | json_values,
    "data": json_values,
    "state": st.sampled_from(["online", "offline"]) | json_values,
    "session": st.sampled_from(["s1", "s2"]) | json_values,
    "interval": st.floats(allow_nan=True, allow_infinity=True) | json_values,
    "ts": st.floats(allow_nan=True, allow_infinity=True) | json_values,
    "metrics": json_values,
    "catalog": st.dictionaries(st.sampled_from(SERVICES), json_values | st.fixed_dictionaries(
        {"methods": st.dictionaries(st.sampled_from(METHODS), json_values, max_size=3)}), max_size=3)
    | json_values,
    "processes": json_values,
}) | json_values
now_ts = st.builds(time.time)
# mostly well-formed heads (so that bodies reach the handlers), now and then anything at all
envelopes = st.fixed_dictionaries({
    "v": st.just(1),
    "kind": st.sampled_from(KINDS),
    "from": st.sampled_from(PEERS),
    "id": st.uuids().map(lambda u: u.hex),
    "ts": now_ts,
    "body": body_values,
}, optional={"to": st.sampled_from([None, "fz", "*", "peer"])}) | st.fixed_dictionaries({}, optional={
    "v": st.just(1) | json_values,
    "kind": st.sampled_from(KINDS) | json_values,
    "from": st.sampled_from(PEERS) | json_values,
    "to": st.sampled_from([None, "fz", "*", "peer"]) | json_values,
    "id": st.text(min_size=1, max_size=12) | json_values,
    "ts": st.floats(allow_nan=True, allow_infinity=True) | now_ts | json_values,
    "body": body_values,
    "sig": st.text(max_size=8) | json_values,
})


# --- the frame parser -------------------------------------------------------------------------

@FUZZ
@given(raw_frames)
def test_parse_frame_never_raises_anything_but_bad_request(raw):
    try:
        frame = parse_frame(raw)
    except BadRequest as e:
        assert e.request_id is None or (isinstance(e.request_id, (str, int)) and not isinstance(e.request_id, bool))
        text = error_frame(e.request_id, e)
        assert json.loads(text)["error"]["code"] == "bad_request"
        return
    assert type(frame) in INBOUND.values()
    assert isinstance(frame.id, (str, int)) and not isinstance(frame.id, bool)
    frame.model_dump_json()           # whatever parsed can be echoed back


# --- the envelope path ----------------------------------------------------------------------

class RecordingFed:
    """Stands in for the MQTT adapter: connected, records what the node sends."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.connected.set()
        self.sent: list[tuple[str, dict]] = []
        self.subscriptions: list[str] = []
        self.url = "mqtt://fuzz"
        self.counters: dict[str, int] = {}

    def send(self, topic: str, env: dict, qos: int = 1) -> None:
        json.dumps(env)              # the adapter serialises it: it must be serialisable
        self.sent.append((topic, env))

    def send_raw(self, topic: str, payload: bytes, qos: int = 1) -> None:
        self.sent.append((topic, {"raw": len(payload)}))

    async def publish_retained(self, topic: str, env: dict, qos: int = 1) -> None:
        json.dumps(env)

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subscriptions.append(topic)

    async def unsubscribe(self, topic: str) -> None:
        pass


class ErrorRecords(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def make_keys(tmp: Path) -> Path:
    keys, trust = tmp / "keys", tmp / "trust"
    trust.mkdir()
    for nid in ("fz", "peer"):
        key, pub = generate_keypair(nid, keys)
        (trust / pub.name).write_bytes(pub.read_bytes())
    return tmp


def make_node(tmp: Path | None = None) -> tuple[Node, Signer | None]:
    security = {}
    peer = None
    if tmp is not None:
        security = {"key": str(tmp / "keys" / "fz.key"), "trust": str(tmp / "trust")}
        peer = Signer("peer", tmp / "keys" / "peer.key")
    settings_ = Settings(id="fz", broker={"url": "none", "prefix": "fuzz/v1", "keepalive": 2},
                         system={"temperature": "sim:40", "metrics_interval": 1.0}, security=security)
    node = Node(settings_)
    node.peers.fed = RecordingFed()
    return node, peer


async def exercise(node: Node, topic: str, batch: list[Any]) -> None:
    """Feed a batch, let what it started run, then do the node's periodic work on what it left."""
    node.peers.on_envelopes(topic, [e for e in batch if isinstance(e, dict)])   # as the adapter hands them
    for _ in range(3):
        await asyncio.sleep(0)
    now = time.time()
    for n in node.members.stale_on_join(now, node.settings.cluster.stale_after):
        if node.members.mark_offline(n, now):
            node.peers.node_offline(n, "is stale", "stale-on-join")
    for n in node.members.stale_on_join(now + 3600, 1.0):
        if node.members.suspect(n, None, now):
            node.peers._stale(n, "fuzz")
    for n in node.members.suspects_due(now + 3600, node.settings.cluster.suspect_timeout):
        node.members.mark_offline(n, now)
    node.interests.expire(now + 1e9)
    node.cluster_table()
    json.dumps(node.stats_snapshot())
    json.dumps(node.topics())
    node.publish("a/b", {"x": 1})
    node.publish("$sys/stats", None)
    for m in ("peer", "other"):
        for service in SERVICES:
            for method in METHODS:
                node.method_mutates(m, service, method)


def run_batches(node: Node, batches: list[tuple[str, list[Any]]]) -> None:
    errors = ErrorRecords()
    root = logging.getLogger("cloudisense")
    root.addHandler(errors)
    loop = asyncio.new_event_loop()
    try:
        for topic, batch in batches:
            loop.run_until_complete(exercise(node, topic, batch))
        pending = list(asyncio.all_tasks(loop))
        for t in pending:
            t.cancel()
        if pending:
            loop.run_until_complete(asyncio.wait(pending))
    finally:
        loop.close()
        root.removeHandler(errors)
    assert not errors.records, [r.getMessage() for r in errors.records]
    for topic, env in node.fed.sent:
        assert isinstance(topic, str)


INBOX_TOPICS = st.sampled_from(["fuzz/v1/node/fz/inbox", "fuzz/v1/broadcast", "fuzz/v1/node/peer/presence",
                                "fuzz/v1/node/peer/state", "fuzz/v1/node/peer/events/a/b"])


@FUZZ
@given(st.lists(st.tuples(INBOX_TOPICS, st.lists(envelopes | json_values, max_size=6)), max_size=4))
def test_envelope_path_without_signing(batches):
    node, _ = make_node()
    run_batches(node, batches)


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory):
    return make_keys(tmp_path_factory.mktemp("fuzzkeys"))


def _signed(peer: Signer, env: Any) -> Any:
    if not isinstance(env, dict):
        return env
    env = {**env, "from": "peer"}
    env.pop("sig", None)
    try:
        return peer.sign(env)
    except (TypeError, ValueError, RecursionError):   # not canonical-JSON-able: goes unsigned
        return env


@FUZZ
@given(st.lists(st.tuples(INBOX_TOPICS, st.lists(envelopes | json_values, max_size=6),
                          st.lists(st.booleans(), min_size=6, max_size=6)), max_size=4))
def test_envelope_path_with_signing(key_dir, batches):
    node, peer = make_node(key_dir)
    assert node.verifier is not None and peer is not None
    signed = [(topic, [_signed(peer, e) if sign else e for e, sign in zip(batch, flags)])
              for topic, batch, flags in batches]
    run_batches(node, signed)


# --- atheris (when installed) ------------------------------------------------------------------

ATHERIS_TARGET = textwrap.dedent('''
    import json, sys, time
    import atheris
    with atheris.instrument_imports():
        from cloudisense.node._frames import parse_frame
        from cloudisense.node._errors import BadRequest
        from cloudisense.node._signing import TrustStore, Verifier
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    verifier = Verifier(TrustStore({"peer": Ed25519PrivateKey.generate().public_key()}))

    def one(data: bytes) -> None:
        fdp = atheris.FuzzedDataProvider(data)
        raw = fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 512)) if fdp.ConsumeBool() \\
            else fdp.ConsumeBytes(512)
        try:
            parse_frame(raw)
        except BadRequest:
            pass
        try:
            env = json.loads(raw)
        except (ValueError, RecursionError):
            return
        for fresh in (True, False):
            verifier.verify(env, fresh=fresh)
            if isinstance(env, dict):
                verifier.verify({**env, "from": "peer", "ts": time.time()}, fresh=fresh)

    atheris.Setup(sys.argv, one)
    atheris.Fuzz()
''')


def test_atheris_frames_and_verifier(tmp_path):
    import atheris  # noqa: F401  (a test dependency: the test extra installs it)
    script = tmp_path / "fuzz_target.py"
    script.write_text(ATHERIS_TARGET)
    proc = subprocess.run([sys.executable, str(script), "-runs=30000", "-max_total_time=10", "-rss_limit_mb=2048"],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "Done" in out, out[-2000:]


# --- soak --------------------------------------------------------------------------------------

SOAK_SECONDS = 60.0
PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]


class FrameMix:
    """A seeded mix of valid and invalid frames; says which reply (by id) each one must get."""

    def __init__(self, seed: int, me: str) -> None:
        self.rng = random.Random(seed)
        self.me = me
        self.n = 0

    def rid(self) -> str:
        self.n += 1
        return f"{self.me}-{self.n}"

    def next(self) -> tuple[str | bytes, str | None]:
        """(frame, id its one reply will carry, or None when it carries no readable id)."""
        r, rid = self.rng, self.rid()
        choice = r.randrange(20)
        if choice == 9 and r.random() > 0.05:     # oversized frames (1.1 MB): now and then
            choice = 19
        if choice == 0:
            return r.randbytes(r.randrange(1, 64)), None                          # binary garbage
        if choice == 1:
            return "".join(chr(r.randrange(32, 0x2FFF)) for _ in range(r.randrange(1, 40))), None
        if choice == 2:
            return json.dumps([1, {"type": "call"}]), None
        if choice == 3:
            return json.dumps({"type": "call", "id": rid, "service": 7, "method": None}), rid
        if choice == 4:
            return json.dumps({"type": "nosuch", "id": rid}), rid
        if choice == 5:
            return json.dumps({"type": "publish", "id": rid, "topic": r.choice(["a/+", "#", "$x", "", "a//b"]),
                               "data": 1}), rid
        if choice == 6:
            return json.dumps({"type": "call", "id": rid, "node": r.choice(["nobody", "a/b", "#", "*x"]),
                               "service": "node", "method": "ping"}), rid
        if choice == 7:
            return json.dumps({"type": "call", "id": rid, "service": "testsvc", "method": "sleep",
                               "params": {"seconds": r.choice([-1, "x", None, 1e9])}}), rid
        if choice == 8:
            return json.dumps({"type": "call", "id": rid, "service": "nosuch", "method": "x"}), rid
        if choice == 9:
            return json.dumps({"type": "call", "id": rid, "service": "node", "method": "ping",
                               "pad": "z" * (1_100_000)}), rid                     # over max_frame_bytes
        if choice == 10:
            depth = r.choice([50, 200, 5000])
            return ('{"type":"publish","id":"' + rid + '","topic":"deep","data":' + "[" * depth + "1" + "]" * depth
                    + "}"), None
        if choice == 11:
            return json.dumps({"type": "subscribe", "id": rid, "node": r.choice([None, "fb"]),
                               "topic": r.choice(["soak/#", "a/#/b", "+", "metrics/#"])}), rid
        if choice == 12:
            return json.dumps({"type": "unsubscribe", "id": rid, "node": r.choice([None, "fb"]),
                               "topic": r.choice(["soak/#", "metrics/#", "never"])}), rid
        if choice == 13:
            return json.dumps({"type": "publish", "id": rid, "topic": f"soak/{r.randrange(5)}",
                               "data": {"v": r.random()}}), rid
        if choice == 14:
            return json.dumps({"type": "call", "id": rid, "node": r.choice(["fa", "fb", "*"]),
                               "service": r.choice(["node", "system", "relay"]),
                               "method": r.choice(["ping", "info", "count", "cluster"]), "timeout": 5}), rid
        if choice == 15:
            return json.dumps({"type": "call", "id": rid, "node": "fb", "service": "relay", "method": "bump",
                               "reply": r.choice([True, False])}), rid
        if choice == 16:
            return json.dumps({"type": "hello", "id": rid, "client": r.choice(["soak", "x" * 500, 5])}), rid
        if choice == 17:
            return '{"type":"call","id":"' + rid + '","service":"node","method":"ping","params":{"s":"\\ud800"}}', \
                None
        if choice == 18:
            return json.dumps({"type": "call", "id": rid, "service": "node", "method": "ping", "timeout": -1}), rid
        return json.dumps({"type": "call", "id": rid, "service": "system", "method": "metrics"}), rid


async def soak_client(url: str, seed: int, me: str, until: float, stats: dict[str, int]) -> None:
    peer = await Peer.open(url, me, keep_events=False)
    mix = FrameMix(seed, me)
    expected: list[str] = []
    try:
        while time.monotonic() < until and peer.closed is None:
            frame, rid = mix.next()
            if rid is None:
                await peer.ws.send(frame)
                await asyncio.sleep(0.002)
            else:
                expected.append(rid)
                fut = asyncio.get_running_loop().create_future()
                peer._futs[rid] = fut
                await peer.ws.send(frame)
                async with asyncio.timeout(15):     # every request is answered: none hangs
                    await fut
            stats["frames"] += 1
        await peer.call(None, "node.ping")                    # a barrier
        for rid in expected:
            assert len(peer.replies.get(rid, ())) == 1, (rid, peer.replies.get(rid))
        stats["requests"] += len(expected)
    finally:
        await peer.close()


async def mqtt_garbage(prefix: str, until: float, seed: int, stats: dict[str, int]) -> None:
    r = random.Random(seed)
    async with aiomqtt.Client("127.0.0.1", 1883, timeout=5) as c:
        while time.monotonic() < until:
            topic = r.choice([f"{prefix}/node/fb/inbox", f"{prefix}/broadcast", f"{prefix}/node/zz/state",
                              f"{prefix}/node/zz/presence"])
            choice = r.randrange(6)
            if choice == 0:
                payload: bytes = r.randbytes(r.randrange(1, 100))
            elif choice == 1:
                payload = json.dumps([1, "x", None]).encode()
            elif choice == 2:
                payload = json.dumps({"v": 1, "kind": r.choice(KINDS), "from": "zz", "to": "fb",
                                      "id": uuid.uuid4().hex, "ts": time.time(), "body": r.choice(
                                          [None, [], "x", {"service": "node"}, {"interval": "soon"},
                                           {"state": "online", "session": 5}, {"re": None},
                                           {"topics": "abc"}, {"topic": ["x"]}])}).encode()
            elif choice == 3:
                payload = b"[" + b",".join([b'{"kind":"call"}'] * 5) + b"]"
            elif choice == 4:
                payload = json.dumps({"v": 1, "kind": "state", "from": "zz", "ts": time.time(),
                                      "body": {"session": "s", "interval": r.choice([0, -1, "x", None, 1e308]),
                                               "catalog": r.choice([[], "x", {"node": []},
                                                                    {"node": {"methods": []}}]),
                                               "metrics": r.choice([[], 3])}}).encode()
            else:
                payload = b'{"v":1,"kind":"presence","from":"zz","ts":' + str(time.time()).encode() + \
                    b',"body":{"state":"' + r.choice([b"online", b"offline", b"?"]) + b'","session":"s"}}'
            await c.publish(topic, payload, qos=r.choice([0, 1]))
            stats["mqtt"] += 1
            await asyncio.sleep(0.01)


@pytest.mark.slow
async def test_soak_mixed_traffic(cluster):
    a = cluster.spawn("fa", services=PLUG, processes=[])
    b = cluster.spawn("fb", services=PLUG, processes=[])
    a.wait_ready(), b.wait_ready()
    probe = await Peer.open(a.url, "probe")

    async def both() -> bool:
        return {"fa", "fb"} <= await probe.online()
    await async_wait_until(both, 15, interval=0.2, what="fa and fb online")
    until = time.monotonic() + SOAK_SECONDS
    stats = {"frames": 0, "requests": 0, "mqtt": 0}
    clients = [soak_client(n.url, seed, f"{n.id}c{seed}", until, stats)
               for seed, n in enumerate([a, a, a, b, b, b])]
    await asyncio.gather(*clients, mqtt_garbage(cluster.prefix, until, 99, stats))
    for n in (a, b):
        assert n.proc.poll() is None, f"{n.id} died"
        async with asyncio.timeout(10):
            p = await Peer.open(n.url, "after")
            assert (await p.call(None, "node.ping"))["type"] == "result"
            await p.close()
        # the node's own loops survived whatever the soak left in its tables
        p = await Peer.open(n.url, "loops")
        assert (await p.subscribe(None, "$sys/stats"))["type"] == "subscribed"
        assert (await p.subscribe(None, "metrics/system"))["type"] == "subscribed"
        await async_wait_until(lambda: {m["topic"] for _, m in p.events} >= {"$sys/stats", "metrics/system"}, 5,
                               what=f"{n.id}'s stats and metrics loops to publish")
        await p.close()
        log = n.log()
        bad = [line for line in log.splitlines() if "Traceback" in line or " ERROR " in line]
        assert not bad, "\n".join(bad[:20]) + "\n" + log[-3000:]
    print(f"MEASURE soak {SOAK_SECONDS:g} s: {stats}")
    await probe.close()
