"""Signed federation against a hostile peer on the broker (issue: secure messaging).

The attacker is ``mosquitto_pub``, a client no one in this project wrote: it
injects unsigned, forged, wrong-key, unknown-sender, tampered, stale,
misrouted and replayed envelopes into a signing node's inbox and into the
broadcast topic.  The envelopes are signed here with ``cryptography`` straight
from the format in docs/security.md (not with the node's own signer), so the
test also pins the documented wire format.

What must hold: nothing executes (the supervised logger keeps its PID, the
``relay`` counter does not move), every drop is counted under its reason in
``pubsub.stats`` → ``federation.rejected`` and logged once per sender and
reason, a forged ``offline`` does not evict a live node, the signed last will
still takes a crashed node offline, and signed nodes federate as usual.
"""

from __future__ import annotations

import base64
import copy
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from support import async_wait_until, wait_until
from wsutil import next_event, open_ws, request

pytestmark = pytest.mark.timeout(90)

PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]
HOST, PORT = "127.0.0.1", 1883
BROKER = f"mqtt://{HOST}:{PORT}"


# --- an independent implementation of the documented envelope signature ----------------------

def canonical(env: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in env.items() if k != "sig"}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode("utf-8")


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
        out = []
        for t, payload in self.messages():
            if t == topic:
                obj = json.loads(payload)
                out.append((payload, obj if isinstance(obj, list) else [obj]))
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(5)
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


async def call(ws, node, sm, params=None, timeout=None):
    service, method = sm.split(".")
    frame = {"type": "call", "id": uuid.uuid4().hex[:8], "service": service, "method": method,
             "params": params or {}}
    if node is not None:
        frame["node"] = node
    if timeout is not None:
        frame["timeout"] = timeout
    return await request(ws, frame, timeout=(timeout or 10) + 5)


async def result(ws, node, sm, params=None):
    r = await call(ws, node, sm, params)
    assert r["type"] == "result", r
    return r["result"]


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
                if to == "sb":   # validly signed by fx, but for sa: replayed across inboxes
                    out.append(("misrouted", sign(call_env("fx", "sa", svc, m, params), fx)))
            return out

        expected: dict[str, int] = {}
        for topic, to in ((inbox_b, "sb"), (broadcast, "*")):
            for reason, env in variants(to):
                mqtt_pub(topic, json.dumps(env))
                expected[reason] = expected.get(reason, 0) + 1

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
        def genuine(e: dict) -> bool:   # sa's own envelopes, not the forgeries above
            try:
                verify(e, keys["trust"] / "sa.pub")
            except Exception:
                return False
            return e.get("kind") == "call" and e["body"]["method"] in ("bump", "restart")
        captured = wait_until(lambda: [(raw, envs) for raw, envs in tap_b.envelopes(inbox_b)
                                       if any(genuine(e) for e in envs)],
                              10, what="the tap to capture sa's calls")
        assert {e["body"]["method"] for _, envs in captured for e in envs if genuine(e)} == {"bump", "restart"}
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
        replies = wait_until(lambda: [e for _, envs in tap_fx.envelopes(inbox_fx) for e in envs
                                      if e.get("body", {}).get("re") == good["id"]], 10,
                             what="sb's answer to fx")
        (reply,) = replies
        assert reply["kind"] == "result" and reply["from"] == "sb" and reply["to"] == "fx"
        assert reply["body"]["result"] == {"count": 2}
        verify(reply, keys["trust"] / "sb.pub")   # answers are signed too
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
