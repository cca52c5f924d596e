"""A method that enters ``asyncio.timeout`` or a ``TaskGroup`` before it first waits (plug-in code does) binds
them to the task it runs in.  The node answers a method that does not wait without a task of its own
(``node/_eager.py``): such a method must still get a task of its own, or its timeout would cancel the
client's connection (a local call) or the federation's receive loop (a call from another node).
"""

from __future__ import annotations

import pytest

from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(60)

PLUG = ["plugins.testsvc:TestService"]


def call(rid, node, sm, params=None, timeout=None):
    service, method = sm.split(".")
    f = {"type": "call", "id": rid, "service": service, "method": method, "params": params or {}}
    if node:
        f["node"] = node
    if timeout:
        f["timeout"] = timeout
    return f


async def test_a_method_s_own_timeout_and_task_group_cancel_only_the_method(cluster):
    a = cluster.spawn("ts-a", services=PLUG)
    b = cluster.spawn("ts-b", services=PLUG)
    a.wait_ready(), b.wait_ready()
    async with await open_ws(a.url) as ws:
        for node in (None, "ts-b"):                        # local, then from another node over the federation
            for i in range(3):                             # a second and third time: nothing was cut before
                r = await request(ws, call(f"t{node}{i}", node, "testsvc.bounded", {"seconds": 5, "limit": 0.05}))
                assert r.get("result") == {"value": "own timeout"}, r
                r = await request(ws, call(f"g{node}{i}", node, "testsvc.grouped", {"seconds": 0.01}))
                assert r.get("result") == {"value": 0.01}, r
                r = await request(ws, call(f"p{node}{i}", node, "node.ping"))
                assert r["type"] == "result", r
    for n in (a, b):
        assert "Traceback" not in n.log(), n.log()
