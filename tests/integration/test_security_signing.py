"""Signed federation against a hostile peer on the broker (issues: secure messaging; pairwise MACs).

The attacker is ``mosquitto_pub``, a client no one in this project wrote: it
injects unsigned, forged, wrong-key, wrong-pair-key, unknown-sender, tampered,
stale, misrouted and replayed envelopes and batches into a signing node's
inbox and into the broadcast topic.  The envelopes are signed and MAC'd here
with ``cryptography`` and ``hashlib`` straight from the format in
docs/security.md (not with the node's own code), so the test also pins the
documented wire format.

What must hold: nothing executes (the supervised logger keeps its PID, the
``relay`` counter does not move), every drop is counted under its reason in
``pubsub.stats`` → ``federation.rejected`` and logged once per sender and
reason, a forged ``offline`` does not evict a live node, the signed last will
still takes a crashed node offline, and signed nodes federate as usual.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from cloudisense.node.testing import stop_process
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from support import async_wait_until, independent_pairwise_key, wait_until
from wsutil import call, next_event, open_ws, request, result

pytestmark = pytest.mark.timeout(90)

PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]
HOST, PORT = "127.0.0.1", 1883
BROKER = f"mqtt://{HOST}:{PORT}"


# --- an independent implementation of the documented envelope signature ----------------------

def canonical(env: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in env.items() if k not in ("sig", "mac")}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def pair_key(key_path: Path, node_id: str, peer_pub: Path, peer_id: str) -> bytes:
    """K_AB as docs/security.md defines it, from the key files (support.independent_pairwise_key)."""
    seed = load_key(key_path).private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                            serialization.NoEncryption())
    pub = serialization.load_pem_public_key(peer_pub.read_bytes()).public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return independent_pairwise_key(seed, node_id, pub, peer_id)


def mac(env: dict[str, Any], key: bytes) -> dict[str, Any]:
    env = {k: v for k, v in env.items() if k != "sig"}
    env["mac"] = base64.b64encode(hashlib.blake2b(canonical(env), digest_size=16, key=key).digest()).decode()
    return env


def batch(frm: str, to: str | None, envs: list[dict[str, Any]], key: bytes) -> dict[str, Any]:
    """One MAC over the batch: the canonical JSON of {v, kind: batch, from, to, envs}."""
    return mac({"v": 1, "kind": "batch", "from": frm, "to": to, "envs": envs}, key)


def mac_ok(obj: dict[str, Any], key: bytes) -> bool:
    return "mac" in obj and mac(obj, key)["mac"] == obj["mac"]


def opened(obj: Any) -> list[dict[str, Any]]:
    """The envelopes of one MQTT payload: an envelope, a JSON array of them, or a batch."""
    if isinstance(obj, list):
        return obj
    return obj["envs"] if obj.get("kind") == "batch" else [obj]


def load_key(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def sign(env: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    env = dict(env)
    env["sig"] = base64.b64encode(key.sign(canonical(env))).decode()
    return env


def verify(env: dict[str, Any], pub_path: Path) -> None:
    pub = serialization.load_pem_public_key(pub_path.read_bytes())
    assert isinstance(pub, Ed25519PublicKey)
    pub.verify(base64.b64decode(env["sig"], validate=True), canonical(env))  # raises if bad


def call_env(frm: str, to: str, service: str, method: str, params: dict | None = None, *,
             ts: float | None = None, role: str = "operator") -> dict[str, Any]:
    now = time.time() if ts is None else ts
    return {"v": 1, "kind": "call", "from": frm, "to": to, "id": uuid.uuid4().hex, "ts": now,
            "body": {"service": service, "method": method, "params": params or {},
                     "reply_by": time.time() + 30, "role": role}}


# --- mosquitto_pub / mosquitto_sub ------------------------------------------------------------

def mqtt_pub(topic: str, payload: str | bytes, *, retain: bool = False) -> None:
    args = ["mosquitto_pub", "-h", HOST, "-p", str(PORT), "-q", "1", "-t", topic]
    if retain:
        args.append("-r")
    data = payload.encode() if isinstance(payload, str) else payload
    if not data:   # clears a retained message
        subprocess.run([*args, "-n"], check=True, timeout=10)
        return
    subprocess.run([*args, "-s"], input=data, check=True, timeout=10)


class Tap:
    """``mosquitto_sub -v`` on some topics, written to a file; ready once it has seen its own probe."""

    def __init__(self, tmp: Path, prefix: str, *topics: str) -> None:
        self.probe = f"{prefix}/tap-probe/{uuid.uuid4().hex[:8]}"
        self.path = tmp / f"tap-{uuid.uuid4().hex[:8]}.txt"
        self._f = open(self.path, "wb")
        args = ["mosquitto_sub", "-h", HOST, "-p", str(PORT), "-v", "-q", "1", "-t", self.probe]
        for t in topics:
            args += ["-t", t]
        self.proc = subprocess.Popen(args, stdout=self._f, stderr=subprocess.STDOUT)

    def ready(self) -> "Tap":
        def seen() -> bool:
            mqtt_pub(self.probe, "probe")
            return any(t == self.probe for t, _ in self.messages())
        wait_until(seen, 10, interval=0.2, what="mosquitto_sub to be subscribed")
        return self

    def messages(self) -> list[tuple[str, str]]:
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            out.append((topic, payload))
        return out

    def envelopes(self, topic: str) -> list[tuple[str, list[dict]]]:
        """(raw payload, envelopes in it) of every message on ``topic``."""
        return [(raw, opened(obj)) for raw, obj in self.payloads(topic)]

    def payloads(self, topic: str) -> list[tuple[str, Any]]:
        """(raw payload, parsed payload) of every message on ``topic``."""
        return [(payload, json.loads(payload)) for t, payload in self.messages() if t == topic]

    def stop(self) -> None:
        # SIGTERM, then SIGKILL: under a loaded CI run mosquitto_sub's clean disconnect has outlasted 5 s
        stop_process(self.proc, timeout=5)
        self._f.close()


@pytest.fixture
def taps(tmp_path, prefix):
    made: list[Tap] = []

    def make(*topics: str) -> Tap:
        t = Tap(tmp_path, prefix, *topics)
        made.append(t)
        return t.ready()
    yield make
    for t in made:
        t.stop()


# --- keys and nodes ----------------------------------------------------------------------------

@pytest.fixture
def keys(tmp_path) -> dict[str, Path]:
    """Trusted keys for sa, sb, sc and fx (a trusted identity no node runs: the test's own), made with
    the CLI; mallory's key is made the same way but kept out of the trust directory."""
    trust, rogue = tmp_path / "trust", tmp_path / "rogue"
    for node_id, d in (("sa", trust), ("sb", trust), ("sc", trust), ("fx", trust), ("mallory", rogue)):
        r = subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "keys", "gen", node_id, "--out", str(d)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    return {"trust": trust, **{n: trust / f"{n}.key" for n in ("sa", "sb", "sc", "fx")},
            "mallory": rogue / "mallory.key"}


def secured(keys: dict[str, Path], node_id: str) -> dict[str, Any]:
    return {"security": {"key": str(keys[node_id]), "trust": str(keys["trust"]), "replay_window": 30.0}}


async def until_online(ws, ids, timeout=15):
    async def ok():
        nodes = (await result(ws, None, "node.cluster"))["nodes"]
        return set(ids) <= {n["id"] for n in nodes if n["online"]}
    await async_wait_until(ok, timeout, interval=0.2, what=f"{ids} online")


async def rejected(ws) -> dict[str, int]:
    return (await result(ws, None, "pubsub.stats"))["federation"]["rejected"]


async def logger_pid(ws, node=None) -> int:
    (p,) = (await result(ws, node, "supervisor.list"))["processes"]
    assert p["state"] == "running", p
    return p["pid"]


def pair(cluster, keys, **kw):
    a = cluster.spawn("sa", broker=BROKER, services=PLUG, **secured(keys, "sa"), **kw)
    b = cluster.spawn("sb", broker=BROKER, services=PLUG, **secured(keys, "sb"), **kw)
    return a.wait_ready(), b.wait_ready()


# --- tests -------------------------------------------------------------------------------------

async def test_injected_envelopes_never_execute_and_are_counted_by_reason(cluster, keys, taps):
    a, b = pair(cluster, keys)
    p = cluster.prefix
    inbox_b, inbox_fx, broadcast = f"{p}/node/sb/inbox", f"{p}/node/fx/inbox", f"{p}/broadcast"
    fx, mallory = load_key(keys["fx"]), load_key(keys["mallory"])
    trust = keys["trust"]
    k_fx_sb = pair_key(keys["fx"], "fx", trust / "sb.pub", "sb")   # what fx really shares with sb
    k_fx_sa = pair_key(keys["fx"], "fx", trust / "sa.pub", "sa")   # ... and with sa
    k_sa_sb = pair_key(keys["sa"], "sa", trust / "sb.pub", "sb")   # to recognise sa's real calls
    assert k_sa_sb == pair_key(keys["sb"], "sb", trust / "sa.pub", "sa")
    tap_b = taps(inbox_b)
    tap_fx = taps(inbox_fx)

    async with await open_ws(a.url) as wa, await open_ws(b.url) as wb:
        await until_online(wa, ["sa", "sb"])
        await until_online(wb, ["sa", "sb"])
        # Signed nodes federate normally.
        assert (await result(wa, "sb", "relay.count"))["count"] == 0
        assert (await result(wa, "sb", "node.ping"))["node"] == "sb"
        pid0 = await logger_pid(wb)
        base = await rejected(wb)
        assert base == {k: 0 for k in base}, f"a clean signed cluster rejects nothing: {base}"

        # Phase 1: hostile envelopes, each a supervisor.restart and a relay.bump, into sb's
        # inbox (to = sb) and the broadcast topic (to = *).
        def variants(to: str) -> list[tuple[str, dict]]:
            out = []
            for sm, params in (("supervisor.restart", {"name": "logger"}), ("relay.bump", {})):
                svc, m = sm.split(".")
                unsigned = call_env("sa", to, svc, m, params)
                tampered = sign(call_env("fx", to, "node", "ping"), fx)
                tampered["body"] = {**tampered["body"], "service": svc, "method": m, "params": params}
                malformed = sign(call_env("sa", to, svc, m, params), mallory)
                malformed["ts"] = "yesterday"
                out += [
                    ("unsigned", unsigned),
                    ("bad_signature", sign(call_env("sa", to, svc, m, params), mallory)),   # forged
                    ("bad_signature", sign(call_env("sa", to, svc, m, params), fx)),        # wrong key
                    ("unknown_sender", sign(call_env("mallory", to, svc, m, params), mallory)),
                    ("bad_signature", tampered),
                    ("stale", sign(call_env("fx", to, svc, m, params, ts=time.time() - 300), fx)),
                    ("stale", sign(call_env("fx", to, svc, m, params, ts=time.time() + 300), fx)),
                    ("malformed", malformed),
                ]
                if to == "sb":
                    out += [
                        # validly signed by fx, but for sa: replayed across inboxes
                        ("misrouted", sign(call_env("fx", "sa", svc, m, params), fx)),
                        # MACs: fx forging sa -> sb with K(sa, fx), then with its own K(fx, sb)
                        ("bad_signature", mac(call_env("sa", to, svc, m, params), k_fx_sa)),
                        ("bad_signature", mac(call_env("sa", to, svc, m, params), k_fx_sb)),
                        ("unknown_sender", mac(call_env("mallory", to, svc, m, params), b"\1" * 32)),
                        ("stale", mac(call_env("fx", to, svc, m, params, ts=time.time() - 300), k_fx_sb)),
                        ("misrouted", mac(call_env("fx", "sa", svc, m, params), k_fx_sb)),
                        ("malformed", {**mac(call_env("fx", to, svc, m, params), k_fx_sb), "sig": "AAAA"}),
                    ]
                else:   # a MAC on a broadcast: many receivers, so only a signature will do
                    out.append(("multicast_mac", mac(call_env("fx", to, svc, m, params), k_fx_sb)))
            return out

        expected: dict[str, int] = {}
        for topic, to in ((inbox_b, "sb"), (broadcast, "*")):
            for reason, env in variants(to):
                mqtt_pub(topic, json.dumps(env))
                expected[reason] = expected.get(reason, 0) + 1
        # A batch under one MAC in which one envelope was changed after the MAC: all of it goes.
        tampered = batch("fx", "sb", [call_env("fx", "sb", "relay", "bump"),
                                      call_env("fx", "sb", "supervisor", "restart", {"name": "logger"})], k_fx_sb)
        tampered["envs"][0]["body"]["params"] = {"n": 2}
        mqtt_pub(inbox_b, json.dumps(tampered))
        expected["bad_signature"] += 2

        async def counted():
            got = await rejected(wb)
            return all(got.get(r, 0) >= n for r, n in expected.items()) and got
        got = await async_wait_until(counted, 15, what=f"sb to count {expected}")
        assert {r: n for r, n in got.items() if n} == expected
        assert await logger_pid(wb) == pid0, "a rejected supervisor.restart must not run"
        assert (await result(wb, None, "relay.count"))["count"] == 0
        assert (await result(wa, None, "relay.count"))["count"] == 0   # sa got the broadcast ones
        assert psutil.pid_exists(pid0)
        # Logged once per (sender, reason) and minute, however many arrived.
        assert b.log().count("dropped envelope from 'sa': unsigned") == 1, b.log()[-3000:]
        assert b.log().count("dropped envelope from 'mallory': unknown_sender") == 1

        # Phase 2: replay real traffic.  sa's operator really bumps and restarts on sb; the
        # captured envelopes are published again, to sb's inbox and to the broadcast topic.
        assert (await result(wa, "sb", "relay.bump"))["count"] == 1
        pid1 = (await result(wa, "sb", "supervisor.restart", {"name": "logger"}))["pid"]
        assert pid1 != pid0
        def call_of_sa(e: dict) -> bool:
            return e.get("from") == "sa" and e.get("kind") == "call" and e["body"]["method"] in ("bump", "restart")
        # sa's own messages (MAC'd with K(sa, sb), as the docs say), not the forgeries above
        captured = wait_until(lambda: [(raw, opened(obj)) for raw, obj in tap_b.payloads(inbox_b)
                                       if mac_ok(obj, k_sa_sb) and any(call_of_sa(e) for e in opened(obj))],
                              10, what="the tap to capture sa's calls")
        assert {e["body"]["method"] for _, envs in captured for e in envs if call_of_sa(e)} == {"bump", "restart"}
        n_envs = sum(len(envs) for _, envs in captured)
        for raw, _ in captured:
            mqtt_pub(inbox_b, raw)
            mqtt_pub(broadcast, raw)

        async def replays_counted():
            return (await rejected(wb))["replayed"] >= 2 * n_envs
        await async_wait_until(replays_counted, 15, what=f"sb to count {2 * n_envs} replays")
        assert (await rejected(wb))["replayed"] == 2 * n_envs
        assert (await result(wb, None, "relay.count"))["count"] == 1
        assert await logger_pid(wb) == pid1

        # Phase 3 (control): the same injection path with a valid, fresh envelope from a trusted
        # sender does execute, once, and the signed answer comes back to the sender's inbox.
        good = sign(call_env("fx", "sb", "relay", "bump"), fx)
        mqtt_pub(inbox_b, json.dumps(good))
        mqtt_pub(inbox_b, json.dumps(good))   # and once more: a replay
        replies = wait_until(lambda: [(obj, e) for _, obj in tap_fx.payloads(inbox_fx) for e in opened(obj)
                                      if e.get("body", {}).get("re") == good["id"]], 10,
                             what="sb's answer to fx")
        ((obj, reply),) = replies
        assert reply["kind"] == "result" and reply["from"] == "sb" and reply["to"] == "fx"
        assert reply["body"]["result"] == {"count": 2}
        assert mac_ok(obj, k_fx_sb) and "sig" not in obj   # answers are MAC'd with K(sb, fx)
        assert (await result(wb, None, "relay.count"))["count"] == 2

        async def one_more_replay():
            return (await rejected(wb))["replayed"] == 2 * n_envs + 1
        await async_wait_until(one_more_replay, 10, what="the second copy to count as replayed")
        assert (await result(wb, None, "relay.count"))["count"] == 2


async def test_forged_offline_presence_does_not_evict_a_live_node(cluster, keys, taps):
    a, b = pair(cluster, keys)
    p = cluster.prefix
    presence_a = f"{p}/node/sa/presence"
    fx, mallory = load_key(keys["fx"]), load_key(keys["mallory"])
    async with await open_ws(b.url) as wb:
        await until_online(wb, ["sa", "sb"])
        await request(wb, {"type": "subscribe", "id": "off", "topic": "$cluster/node/offline"})
        # sa's real, retained online presence: its session id is what a forger would copy.
        tap = taps(presence_a)
        (_, (online,)), *_ = wait_until(lambda: tap.envelopes(presence_a), 10, what="sa's retained presence")
        assert online["body"]["state"] == "online" and online["from"] == "sa"
        verify(online, keys["trust"] / "sa.pub")
        session = online["body"]["session"]

        def offline(**over) -> dict:
            env = {"v": 1, "kind": "presence", "from": "sa", "to": None, "id": uuid.uuid4().hex,
                   "ts": time.time() + 60, "body": {"state": "offline", "session": session}}
            env.update(over)
            return env

        tampered = copy.deepcopy(online)
        tampered["body"]["state"] = "offline"
        tampered["ts"] = time.time() + 60
        forged = [("unsigned", offline()), ("bad_signature", sign(offline(), mallory)),
                  ("bad_signature", sign(offline(), fx)), ("bad_signature", tampered),
                  ("unknown_sender", sign(offline(**{"from": "mallory"}), mallory))]
        before = await rejected(wb)
        for _, env in forged:
            mqtt_pub(presence_a, json.dumps(env), retain=True)   # also replaces the retained copy
        want = {r: before[r] + sum(1 for rr, _ in forged if rr == r) for r, _ in forged}

        async def counted():
            got = await rejected(wb)
            return all(got[r] >= n for r, n in want.items())
        await async_wait_until(counted, 15, what=f"sb to reject the forged presence {want}")
        nodes = {n["id"]: n for n in (await result(wb, None, "node.cluster"))["nodes"]}
        assert nodes["sa"]["online"], nodes["sa"]
        assert (await result(wb, "sa", "node.ping"))["node"] == "sa"
        with pytest.raises(TimeoutError):
            await next_event(wb, lambda m: m["node"] == "sa", timeout=0.5)

        # A node that joins now finds the forged offline retained on sa's presence topic; it
        # drops it and still sees sa online (from sa's signed state).
        c = cluster.start("sc", broker=BROKER, services=PLUG, **secured(keys, "sc"))
        async with await open_ws(c.url) as wc:
            await until_online(wc, ["sa", "sb", "sc"])
            got = await rejected(wc)
            assert got["unknown_sender"] + got["bad_signature"] + got["unsigned"] >= 1, got
            assert (await result(wc, "sa", "node.ping"))["node"] == "sa"
    mqtt_pub(presence_a, b"", retain=True)   # leave no forged retained message behind


async def test_signed_last_will_takes_a_crashed_node_offline(cluster, keys):
    # Heartbeats every 3 s make the staleness fallback take >= 12 s: only the will is faster.
    a, b = pair(cluster, keys, system={"temperature": "sim:45", "metrics_interval": 3.0})
    async with await open_ws(b.url) as wb:
        await until_online(wb, ["sa", "sb"])
        await request(wb, {"type": "subscribe", "id": "off", "topic": "$cluster/node/offline"})
        a.kill()
        t0 = time.monotonic()
        ev = await next_event(wb, lambda m: m["node"] == "sa", timeout=10)
        assert ev["topic"] == "$cluster/node/offline"
        assert time.monotonic() - t0 < 10
        assert "node sa went offline" in b.log(), b.log()[-2000:]
        got = await rejected(wb)
        assert not any(got.values()), got


async def test_unsigned_node_cannot_join_a_signed_cluster(cluster, keys):
    """A node without a key (or with an untrusted one) is invisible to the signed nodes."""
    b = cluster.start("sb", broker=BROKER, services=PLUG, **secured(keys, "sb"))
    plain = cluster.start("plain", broker=BROKER)
    async with await open_ws(b.url) as wb, await open_ws(plain.url) as wp:
        await until_online(wp, ["sb", "plain"])   # the plain node accepts anything (no trust store)

        async def counted():
            got = await rejected(wb)
            return got["unsigned"] >= 2 and got
        await async_wait_until(counted, 15, what="sb to drop plain's presence and state as unsigned")
        nodes = {n["id"] for n in (await result(wb, None, "node.cluster"))["nodes"]}
        assert "plain" not in nodes
        r = await call(wb, "plain", "node.ping")
        assert r["type"] == "error" and r["error"]["code"] == "unknown_node", r
        # and plain's calls to sb go unanswered: dropped, never executed
        r = await call(wp, "sb", "relay.bump", timeout=1.5)
        assert r["type"] == "error" and r["error"]["code"] == "timeout", r
        assert (await result(wb, None, "relay.count"))["count"] == 0
    # The node without keys said so, once, however much traffic it then had.
    assert plain.log().count("federation is UNAUTHENTICATED") == 1, plain.log()[-2000:]
    assert "federation is UNAUTHENTICATED" not in b.log()


async def test_macd_call_replayed_to_a_third_node_and_batches(cluster, keys, taps):
    """sa's real MAC'd call to sb, replayed into sc's inbox, is dropped there (K(sa, sc) doesn't check
    it); a batch under one MAC runs all its calls, and the same batch with one envelope changed runs none."""
    a, _ = pair(cluster, keys)
    c = cluster.start("sc", broker=BROKER, services=PLUG, **secured(keys, "sc"))
    p, trust = cluster.prefix, keys["trust"]
    inbox_b, inbox_c = f"{p}/node/sb/inbox", f"{p}/node/sc/inbox"
    k_sa_sb = pair_key(keys["sa"], "sa", trust / "sb.pub", "sb")
    k_fx_sc = pair_key(keys["fx"], "fx", trust / "sc.pub", "sc")
    tap_b = taps(inbox_b)
    async with await open_ws(a.url) as wa, await open_ws(c.url) as wc:
        await until_online(wa, ["sa", "sb", "sc"])
        await until_online(wc, ["sa", "sb", "sc"])
        assert (await result(wa, "sb", "relay.bump"))["count"] == 1
        captured = wait_until(lambda: [(raw, opened(obj)) for raw, obj in tap_b.payloads(inbox_b)
                                       if mac_ok(obj, k_sa_sb) and any(e["body"].get("method") == "bump"
                                                                       for e in opened(obj))],
                              10, what="sa's MAC'd call to sb")
        base = await rejected(wc)
        assert not any(base.values()), base
        n = 0
        for raw, envs in captured:
            mqtt_pub(inbox_c, raw)
            n += len(envs)

        async def counted():
            return (await rejected(wc))["bad_signature"] >= n
        await async_wait_until(counted, 15, what=f"sc to drop {n} replayed envelopes")
        assert (await result(wc, None, "relay.count"))["count"] == 0

        # A batch of three calls under one MAC, one of them changed: all rejected, all counted.
        def three() -> list[dict]:
            return [call_env("fx", "sc", "relay", "bump") for _ in range(3)]
        bad = batch("fx", "sc", three(), k_fx_sc)
        bad["envs"][1]["body"]["method"] = "count"
        before = (await rejected(wc))["bad_signature"]
        mqtt_pub(inbox_c, json.dumps(bad))

        async def batch_counted():
            return (await rejected(wc))["bad_signature"] == before + 3
        await async_wait_until(batch_counted, 15, what="sc to count the 3 envelopes of the tampered batch")
        assert (await result(wc, None, "relay.count"))["count"] == 0
        stats = (await result(wc, None, "pubsub.stats"))["federation"]
        assert stats["batches"]["rejected"] >= 1 and stats["unicast_auth"] == "mac"
        # Control: the same path with an intact batch runs every call in it, once.
        good = batch("fx", "sc", three(), k_fx_sc)
        mqtt_pub(inbox_c, json.dumps(good))
        mqtt_pub(inbox_c, json.dumps(good))   # and a replay of it

        async def ran():
            return (await result(wc, None, "relay.count"))["count"] == 3
        await async_wait_until(ran, 15, what="the intact batch's three calls to run")

        async def replay_counted():
            return (await rejected(wc))["replayed"] == 3
        await async_wait_until(replay_counted, 15, what="the second copy of the batch to count as replayed")
        assert (await result(wc, None, "relay.count"))["count"] == 3


async def test_rolling_upgrade_a_node_that_signs_unicast_talks_to_a_mac_node(cluster, keys, taps):
    """sa runs with security.unicast = "sig" (what nodes wrote before MACs: a signature on every
    envelope, a JSON array for several); sb MACs.  Calls, subscriptions and events flow both ways, and
    nothing is rejected."""
    p, trust = cluster.prefix, keys["trust"]
    inbox_a, inbox_b = f"{p}/node/sa/inbox", f"{p}/node/sb/inbox"
    tap = taps(inbox_a, inbox_b)
    old_style = secured(keys, "sa")
    old_style["security"]["unicast"] = "sig"
    a = cluster.spawn("sa", broker=BROKER, services=PLUG, **old_style).wait_ready()
    b = cluster.spawn("sb", broker=BROKER, services=PLUG, **secured(keys, "sb")).wait_ready()
    k_sa_sb = pair_key(keys["sb"], "sb", trust / "sa.pub", "sa")
    async with await open_ws(a.url) as wa, await open_ws(b.url) as wb:
        await until_online(wa, ["sa", "sb"])
        await until_online(wb, ["sa", "sb"])
        for _ in range(3):
            assert (await result(wa, "sb", "node.ping"))["node"] == "sb"
            assert (await result(wb, "sa", "node.ping"))["node"] == "sa"
        for i in range(20):   # 20 in flight: they coalesce into arrays of signed envelopes
            await wa.send(json.dumps({"type": "call", "id": f"m{i}", "node": "sb", "service": "relay",
                                      "method": "bump", "params": {}}))
        got_ids: set[str] = set()
        async with asyncio.timeout(15):
            while len(got_ids) < 20:
                m = json.loads(await wa.recv())
                if str(m.get("id", "")).startswith("m"):
                    assert m["type"] == "result", m
                    got_ids.add(m["id"])
        assert (await result(wb, None, "relay.count"))["count"] == 20
        await request(wa, {"type": "subscribe", "id": "s1", "node": "sb", "topic": "up/#"})
        await request(wb, {"type": "publish", "id": "p1", "topic": "up/x", "data": {"n": 1}})
        ev = await next_event(wa, lambda m: m.get("topic") == "up/x", timeout=10)
        assert ev["data"] == {"n": 1}
        assert (await result(wa, None, "pubsub.stats"))["federation"]["unicast_auth"] == "sig"
        for ws in (wa, wb):
            got = await rejected(ws)
            assert not any(got.values()), got
    from_a = [obj for _, obj in tap.payloads(inbox_b)]
    from_b = [obj for _, obj in tap.payloads(inbox_a)]
    assert from_a and from_b
    for obj in from_a:   # exactly the old format: every envelope signed, arrays for several
        assert isinstance(obj, list) or obj.get("kind") != "batch"
        for e in opened(obj):
            assert "mac" not in e
            verify(e, trust / "sa.pub")
    assert all(mac_ok(obj, k_sa_sb) for obj in from_b if not isinstance(obj, list))
    assert any("mac" in obj for obj in from_b)
