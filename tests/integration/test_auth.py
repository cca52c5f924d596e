"""WebSocket client auth: every role × kind of request, on real node processes (issue: secure messaging).

Roles are ``viewer`` and ``operator`` (plus no hello at all).  Kinds: a
read-only call, a mutating call (``relay.bump``, ``supervisor.restart``,
``pubsub.publish``), subscribe/unsubscribe, publish, the same calls on a remote
node and on every node (``"*"``).  The effect is checked where it would
happen (the ``relay`` counter, the logger's PID), not only the answer.  The
remote node enforces roles on its own: a call that reaches it over MQTT with
a viewer's role (or none) is refused there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import time
import uuid

import pytest
from cloudisense.node.testing import stop_process
from websockets.exceptions import ConnectionClosed

from support import async_wait_until, wait_until
from wsutil import next_event, open_ws, recv, request, send

pytestmark = pytest.mark.timeout(90)

PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]
OPERATOR, VIEWER = "operator-secret-1", "viewer-secret-2"
AUTH = {"tokens": [{"sha256": hashlib.sha256(OPERATOR.encode()).hexdigest(), "role": "operator", "name": "ops"},
                   {"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "role": "viewer", "name": "dash"}]}

# (what, frame, kind) — kind: "read" (viewer allowed) or "mutate" (operator only)
REQUESTS = [
    ("local read-only call", {"type": "call", "service": "system", "method": "metrics"}, "read"),
    ("local read-only call (plug-in)", {"type": "call", "service": "relay", "method": "count"}, "read"),
    ("local mutating call", {"type": "call", "service": "relay", "method": "bump"}, "mutate"),
    ("local mutating call (built-in)", {"type": "call", "service": "pubsub", "method": "publish",
                                        "params": {"topic": "t/x", "data": 1}}, "mutate"),
    ("unknown local method", {"type": "call", "service": "relay", "method": "nosuch"}, "unknown"),
    ("subscribe", {"type": "subscribe", "topic": "t/#"}, "read"),
    ("publish", {"type": "publish", "topic": "t/y", "data": {"v": 1}}, "mutate"),
    ("remote read-only call", {"type": "call", "node": "ab", "service": "relay", "method": "count"}, "read"),
    ("remote mutating call", {"type": "call", "node": "ab", "service": "relay", "method": "bump"}, "mutate"),
    ("remote supervisor.restart", {"type": "call", "node": "ab", "service": "supervisor", "method": "restart",
                                   "params": {"name": "logger"}}, "mutate"),
    ("remote subscribe", {"type": "subscribe", "node": "ab", "topic": "t/#"}, "read"),
    ("broadcast read-only call", {"type": "call", "node": "*", "service": "relay", "method": "count"}, "read"),
    ("broadcast mutating call", {"type": "call", "node": "*", "service": "relay", "method": "bump"}, "mutate"),
]


def expected(role: str | None, kind: str) -> str:
    if role is None:
        return "unauthenticated"
    if kind == "unknown":   # refused as unknown, for either role, before anything runs
        return "unknown_method"
    if role == "viewer" and kind == "mutate":
        return "forbidden"
    return "ok"


@pytest.fixture
def pair(cluster):
    a = cluster.spawn("aa", services=PLUG, auth=AUTH)
    b = cluster.spawn("ab", services=PLUG, auth=AUTH)
    return a.wait_ready(), b.wait_ready()


async def call(ws, node, sm, params=None, **extra):
    service, method = sm.split(".")
    frame = {"type": "call", "id": uuid.uuid4().hex[:8], "service": service, "method": method,
             "params": params or {}, **extra}
    if node is not None:
        frame["node"] = node
    r = await request(ws, frame)
    assert r["type"] == "result", r
    return r["result"]


async def hello(ws, token):
    return await request(ws, {"type": "hello", "id": "h", "token": token, "client": "pytest"})


async def counts(ws) -> dict[str, int]:
    r = await call(ws, "*", "relay.count")
    return {n: v["count"] for n, v in r["results"].items()}


async def logger_pid(ws, node) -> int:
    (p,) = (await call(ws, node, "supervisor.list"))["processes"]
    return p["pid"]


async def test_every_role_and_kind_of_request(pair):
    a, b = pair
    async with await open_ws(a.url) as admin:
        assert (await hello(admin, OPERATOR))["role"] == "operator"

        async def both_online():
            nodes = (await call(admin, None, "node.cluster"))["nodes"]
            return {"aa", "ab"} <= {n["id"] for n in nodes if n["online"]}
        await async_wait_until(both_online, 15, interval=0.2, what="aa and ab online")
        pid_b = await logger_pid(admin, "ab")
        table: list[tuple[str | None, str, str, str]] = []

        for role, token in ((None, None), ("viewer", VIEWER), ("operator", OPERATOR)):
            async with await open_ws(a.url) as ws:
                if token:
                    w = await hello(ws, token)
                    assert w == {"type": "welcome", "id": "h", "node": "aa", "role": role, "protocol": 1,
                                     "auth": "token", "exposed": False}
                for i, (what, frame, kind) in enumerate(REQUESTS):
                    before = await counts(admin)
                    r = await request(ws, {**frame, "id": f"{role}-{i}"})
                    got = r["error"]["code"] if r["type"] == "error" else "ok"
                    table.append((role, what, expected(role, kind), got))
                    if got != "ok":
                        assert r["id"] == f"{role}-{i}", r
                        if role is not None:
                            assert frame.get("method", frame["type"]) in r["error"]["message"] or \
                                role in r["error"]["message"], r
                        # refused means not run anywhere
                        assert await counts(admin) == before, (role, what)
                if role is not None:   # unsubscribe is allowed to whoever could subscribe
                    r = await request(ws, {"type": "unsubscribe", "id": "u", "topic": "t/#"})
                    assert r["type"] == "unsubscribed", r
                    r = await request(ws, {"type": "unsubscribe", "id": "u2", "node": "ab", "topic": "t/#"})
                    assert r["type"] == "unsubscribed", r
                else:
                    r = await request(ws, {"type": "unsubscribe", "id": "u", "topic": "t/#"})
                    assert r["error"]["code"] == "unauthenticated", r

        wrong = [row for row in table if row[2] != row[3]]
        assert not wrong, "\n".join(f"{r!s:>9} {w:40} want {e:16} got {g}" for r, w, e, g in wrong)
        # the operator's run bumped each node once locally/remotely and once by broadcast
        assert await counts(admin) == {"aa": 2, "ab": 2}
        assert await logger_pid(admin, "ab") != pid_b   # only the operator's restart ran


async def test_viewer_sees_events_but_cannot_publish_them(pair):
    a, b = pair
    async with await open_ws(a.url) as viewer, await open_ws(b.url) as op:
        await hello(viewer, VIEWER)
        await hello(op, OPERATOR)

        async def ab_online():
            return any(n["id"] == "ab" and n["online"] for n in (await call(viewer, None, "node.cluster"))["nodes"])
        await async_wait_until(ab_online, 15, interval=0.2)
        assert (await request(viewer, {"type": "subscribe", "id": 1, "node": "ab", "topic": "alerts/#"}))[
            "type"] == "subscribed"

        async def delivered():
            await request(op, {"type": "publish", "id": str(time.monotonic()), "topic": "alerts/disk",
                               "data": {"pct": 97}})
            try:
                return await next_event(viewer, lambda m: m["topic"] == "alerts/disk", timeout=0.5)
            except TimeoutError:
                return None
        ev = await async_wait_until(delivered, 15, what="the viewer to get ab's event")
        assert ev["node"] == "ab" and ev["data"] == {"pct": 97}
        r = await request(viewer, {"type": "publish", "id": 2, "topic": "alerts/disk", "data": {}})
        assert r["type"] == "error" and r["error"]["code"] == "forbidden", r


@pytest.mark.parametrize("role", ["viewer", None, "operator"], ids=["viewer", "no-role", "operator"])
def test_remote_node_enforces_the_role_carried_in_the_call(cluster, role):
    """The calling node checks first; the called node checks again, on its own catalog.

    ``mosquitto_pub`` plays a node that relays a viewer's call anyway (a buggy or older
    node, or one that doesn't know the method mutates): the target refuses it.
    """
    b = cluster.start("ab", services=PLUG, auth=AUTH)
    inbox, reply_inbox = f"{cluster.prefix}/node/ab/inbox", f"{cluster.prefix}/node/ax/inbox"
    probe = f"{cluster.prefix}/probe"
    out = cluster.tmp / "replies.txt"
    with open(out, "wb") as f:
        sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-v", "-t", reply_inbox, "-t", probe],
                               stdout=f)
    try:
        def subscribed():
            subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-t", probe, "-m", "x"], check=True, timeout=10)
            return probe in out.read_text()
        wait_until(subscribed, 10, interval=0.2, what="mosquitto_sub to be ready")
        body = {"service": "relay", "method": "bump", "params": {}, "reply_by": time.time() + 30}
        if role is not None:
            body["role"] = role
        env = {"v": 1, "kind": "call", "from": "ax", "to": "ab", "id": uuid.uuid4().hex, "ts": time.time(),
               "body": body}
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-q", "1", "-t", inbox, "-m", json.dumps(env)],
                       check=True, timeout=10)

        def reply():
            for line in out.read_text().splitlines():
                topic, _, payload = line.partition(" ")
                if topic == reply_inbox:
                    obj = json.loads(payload)
                    for e in obj if isinstance(obj, list) else [obj]:
                        if e.get("body", {}).get("re") == env["id"]:
                            return e
            return None
        r = wait_until(reply, 10, what="ab's answer")
    finally:
        stop_process(sub, timeout=5)
    if role == "operator":   # control: the same path runs an operator's call
        assert r["kind"] == "result" and r["body"]["result"] == {"count": 1}, r
        return
    assert r["kind"] == "error" and r["body"]["error"]["code"] == "forbidden", r

    async def count():
        async with await open_ws(b.url) as ws:
            await hello(ws, VIEWER)
            return (await call(ws, None, "relay.count"))["count"]
    assert asyncio.run(count()) == 0


async def test_three_bad_hellos_close_with_1008_and_a_good_one_recovers(pair):
    a, _ = pair
    async with await open_ws(a.url) as ws:
        r = await hello(ws, "nope")
        assert r["error"]["code"] == "unauthenticated" and "invalid token" in r["error"]["message"]
        r = await request(ws, {"type": "hello", "id": "h2"})
        assert r["error"]["code"] == "unauthenticated" and "requires a token" in r["error"]["message"]
        assert (await hello(ws, VIEWER))["role"] == "viewer"   # the right token still works
        r = await request(ws, {"type": "hello", "id": "h3", "token": 12345})
        assert r["error"]["code"] == "bad_request" and "token" in r["error"]["message"]
    async with await open_ws(a.url) as ws:
        for i in range(3):
            await send(ws, {"type": "hello", "id": i, "token": f"guess-{i}"})
        codes = [(await recv(ws))["error"]["code"] for _ in range(3)]
        assert codes == ["unauthenticated"] * 3
        with pytest.raises(ConnectionClosed) as exc:
            await recv(ws, timeout=5)
        assert exc.value.rcvd.code == 1008 and "authentication" in exc.value.rcvd.reason
    assert "guess-" not in a.log(), "tokens are never logged"
    assert OPERATOR not in a.log() and VIEWER not in a.log()


async def test_auth_on_http_is_not_bypassed_through_the_dashboard(pair):
    """The dashboard's static files carry no secrets and no way around /ws auth."""
    a, _ = pair
    import urllib.request
    body = await asyncio.to_thread(lambda: urllib.request.urlopen(a.http, timeout=5).read().decode())
    assert OPERATOR not in body and VIEWER not in body
    async with await open_ws(a.url + "?token=" + OPERATOR) as ws:   # no token in the URL either
        r = await request(ws, {"type": "call", "id": 1, "service": "node", "method": "ping"})
        assert r["error"]["code"] == "unauthenticated"


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
def test_non_loopback_listener_without_tokens_is_refused_at_start(cluster, listen):
    n = cluster.spawn("open", broker="none", listen=listen)
    wait_until(lambda: n.proc.poll() is not None, 20, what="the node to refuse to start")
    assert n.proc.returncode == 2
    msg = n.log().strip().splitlines()[-1]
    assert "not a loopback address" in msg and "auth.tokens" in msg and "require_auth_remote" in msg, msg


def test_non_loopback_listener_with_tokens_starts_and_requires_hello(cluster):
    n = cluster.start("guarded", broker="none", listen="0.0.0.0:0", auth=AUTH)
    port = n.url.rsplit(":", 1)[1].split("/")[0]

    async def go():
        async with await open_ws(f"ws://127.0.0.1:{port}/ws") as ws:
            r = await request(ws, {"type": "call", "id": 1, "service": "node", "method": "ping"})
            assert r["error"]["code"] == "unauthenticated"
            assert (await hello(ws, VIEWER))["role"] == "viewer"
            assert (await call(ws, None, "node.ping"))["node"] == "guarded"
    asyncio.run(go())
