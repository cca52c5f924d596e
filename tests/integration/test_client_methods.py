"""Client-offered methods (``register`` / ``invoke`` / ``yield``, issue 18) on real nodes and the real broker.

The wire tests speak raw frames (the contract in docs/protocol.md); the Python client's ``register``
is tested in test_client_reconnect.py.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time

import pytest

from support import async_wait_until
from wsutil import open_ws, recv, request, send

pytestmark = pytest.mark.timeout(90)

OPERATOR, VIEWER = "op-secret-18", "viewer-secret-18"
AUTH = {"tokens": [{"sha256": hashlib.sha256(OPERATOR.encode()).hexdigest(), "role": "operator", "name": "ops"},
                   {"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "role": "viewer", "name": "dash"}]}
SCHEMA = {"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}


async def hello(ws, token=OPERATOR):
    r = await request(ws, {"type": "hello", "id": "h", "token": token, "client": "t"})
    assert r["type"] == "welcome", r
    return r


async def next_frame(ws, kind, timeout=10.0):
    async with asyncio.timeout(timeout):
        while True:
            msg = await recv(ws, timeout)
            if msg.get("type") == kind:
                return msg


def call(rid, service, method, params=None, node=None, timeout=None):
    f = {"type": "call", "id": rid, "service": service, "method": method, "params": params or {}}
    if node:
        f["node"] = node
    if timeout:
        f["timeout"] = timeout
    return f


async def catalog_of(ws, node):
    r = await request(ws, call(f"c{time.monotonic()}", "node", "cluster"))
    entry = next((n for n in r["result"]["nodes"] if n["id"] == node), None)
    return (entry or {}).get("services", {})


async def test_register_call_locally_and_remotely_and_die_with_the_client(cluster):
    a = cluster.spawn("ra", auth=AUTH)
    b = cluster.spawn("rb", auth=AUTH)
    a.wait_ready(), b.wait_ready()
    offerer, local, remote = await open_ws(a.url), await open_ws(a.url), await open_ws(b.url)
    viewer = await open_ws(a.url)
    try:
        for ws in (offerer, local, remote):
            await hello(ws)
        await hello(viewer, VIEWER)

        # a viewer may not offer; bad names and taken names are refused
        r = await request(viewer, {"type": "register", "id": 1, "service": "echo", "method": "say"})
        assert r["error"]["code"] == "forbidden", r
        r = await request(offerer, {"type": "register", "id": 2, "service": "echo.x", "method": "say"})
        assert r["error"]["code"] == "bad_request" and "service" in r["error"]["message"], r
        r = await request(offerer, {"type": "register", "id": 2, "service": "echo", "method": "say",
                                    "description": "\x1b[2Jgotcha"})
        assert r["error"]["code"] == "bad_request" and "U+001B" in r["error"]["message"], r
        r = await request(offerer, {"type": "register", "id": 3, "service": "node", "method": "reboot"})
        assert r["error"]["code"] == "conflict", r
        r = await request(offerer, {"type": "register", "id": 4, "service": "echo", "method": "say",
                                    "params": SCHEMA, "mutates": False, "description": "echo the text"})
        assert r == {"type": "registered", "id": 4, "service": "echo", "method": "say"}, r
        r = await request(local, {"type": "register", "id": 5, "service": "echo", "method": "say"})
        assert r["error"]["code"] == "conflict" and "another client" in r["error"]["message"], r
        r = await request(offerer, {"type": "register", "id": 6, "service": "echo", "method": "shout"})
        assert r["type"] == "registered", r   # mutates by default

        # listed by node.describe, and by the other node's node.cluster within a heartbeat
        d = await request(local, call("d", "node", "describe"))
        say = d["result"]["services"]["echo"]["methods"]["say"]
        assert say["offered_by"] == "client" and say["mutates"] is False and say["params"] == SCHEMA, say
        assert say["description"] == "echo the text"

        async def b_lists_it():
            methods = (await catalog_of(remote, "ra")).get("echo", {}).get("methods", {})
            return methods.get("say", {}).get("offered_by") == "client" and methods["shout"]["mutates"] is True
        await async_wait_until(b_lists_it, 5, interval=0.1, what="rb lists echo.say of ra")

        # a viewer may call the read-only method, not the mutating one
        await send(viewer, call("v1", "echo", "shout"))
        r = await next_frame(viewer, "error")
        assert r["error"]["code"] == "forbidden", r

        # called locally: invoke → yield → result
        await send(local, call("l1", "echo", "say", {"text": "hi"}, timeout=4))
        inv = await next_frame(offerer, "invoke")
        assert inv["service"] == "echo" and inv["method"] == "say" and inv["params"] == {"text": "hi"}, inv
        assert inv["caller"]["node"] == "ra" and inv["caller"]["client"].startswith("t-"), inv
        assert 0 < inv["timeout"] <= 4
        await send(offerer, {"type": "yield", "invocation": inv["invocation"], "result": {"text": "hi"}})
        r = await next_frame(local, "result")
        assert r["id"] == "l1" and r["result"] == {"text": "hi"} and r["node"] == "ra", r
        # a second yield for the same invocation is ignored: no frame to anyone
        await send(offerer, {"type": "yield", "invocation": inv["invocation"], "result": 2})
        r = await request(local, call("l1b", "echo", "nope"))
        assert r["error"]["code"] == "unknown_method" and "say" in r["error"]["message"], r
        stats = (await request(local, call("st", "pubsub", "stats")))["result"]["rpc"]
        assert stats["client_methods"] == 2 and stats["ignored_yields"] == 1, stats

        # called from the other node: the caller is rb
        await send(remote, call("r1", "echo", "say", {"text": "far"}, node="ra"))
        inv = await next_frame(offerer, "invoke")
        assert inv["caller"] == {"node": "rb"}, inv
        await send(offerer, {"type": "yield", "invocation": inv["invocation"],
                             "error": {"code": "invalid_params", "message": "text: too far"}})
        r = await next_frame(remote, "error")
        assert r["id"] == "r1" and r["error"] == {"code": "invalid_params", "message": "text: too far"}, r

        # an error code outside the closed set becomes internal
        await send(local, call("l2", "echo", "say", {"text": "x"}))
        inv = await next_frame(offerer, "invoke")
        await send(offerer, {"type": "yield", "invocation": inv["invocation"],
                             "error": {"code": "teapot", "message": "no"}})
        r = await next_frame(local, "error")
        assert r["error"]["code"] == "internal", r

        # no yield before the caller's deadline: timeout
        await send(local, call("l3", "echo", "say", {"text": "x"}, timeout=0.5))
        inv_late = await next_frame(offerer, "invoke")
        r = await next_frame(local, "error")
        assert r["id"] == "l3" and r["error"]["code"] == "timeout", r

        # unregister: only what this client holds
        r = await request(local, {"type": "unregister", "id": 7, "service": "echo", "method": "shout"})
        assert r["error"]["code"] == "bad_request", r
        r = await request(offerer, {"type": "unregister", "id": 8, "service": "echo", "method": "shout"})
        assert r == {"type": "unregistered", "id": 8}, r
        await send(offerer, {"type": "yield", "invocation": inv_late["invocation"], "result": "late"})  # ignored

        # the offerer goes while a remote call waits on it: unknown_service at once, not a timeout
        await send(remote, call("r2", "echo", "say", {"text": "bye"}, node="ra", timeout=20))
        await next_frame(offerer, "invoke")
        await offerer.close()
        r = await next_frame(remote, "error", timeout=15)
        assert r["id"] == "r2" and r["error"]["code"] == "unknown_service", r   # at its deadline it'd be timeout

        # later calls: unknown_service; rb's catalog drops it within a heartbeat (metrics_interval 1 s)
        r = await request(local, call("l4", "echo", "say", {"text": "x"}))
        assert r["error"]["code"] == "unknown_service", r

        async def b_dropped_it():
            return "echo" not in await catalog_of(remote, "ra")
        await async_wait_until(b_dropped_it, 2.5, interval=0.1, what="rb drops echo of ra")
        r = await request(remote, call("r3", "echo", "say", {"text": "x"}, node="ra"))
        assert r["error"]["code"] == "unknown_service", r
    finally:
        for ws in (offerer, local, remote, viewer):
            await ws.close()


async def test_a_yield_over_the_frame_limit_answers_too_large(cluster):
    a = cluster.start("rl", broker="none", ws={"max_frame_bytes": 4096})
    offerer, caller = await open_ws(a.url), await open_ws(a.url)
    try:
        r = await request(offerer, {"type": "register", "id": 1, "service": "big", "method": "get", "mutates": False})
        assert r["type"] == "registered", r
        await send(caller, call("c1", "big", "get"))
        inv = await next_frame(offerer, "invoke")
        await send(offerer, json.dumps({"type": "yield", "invocation": inv["invocation"], "result": "x" * 10_000}))
        r = await next_frame(caller, "error")
        assert r["id"] == "c1" and r["error"]["code"] == "too_large", r
        # the offerer stays connected and keeps answering
        await send(caller, call("c2", "big", "get"))
        inv = await next_frame(offerer, "invoke")
        await send(offerer, {"type": "yield", "invocation": inv["invocation"], "result": "ok"})
        r = await next_frame(caller, "result")
        assert r["result"] == "ok", r
    finally:
        await offerer.close()
        await caller.close()
