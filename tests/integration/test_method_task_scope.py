"""A method that enters ``asyncio.timeout`` or a ``TaskGroup`` before it first waits (plug-in code does) binds
them to the task it runs in.  The node answers a method that does not wait without a task of its own
(``node/_eager.py``): such a method must still get a task of its own, or its timeout would cancel the
client's connection (a local call) or the federation's receive loop (a call from another node).
"""

from __future__ import annotations

import pytest

from support import async_wait_until
from wsutil import call, open_ws

pytestmark = pytest.mark.timeout(60)

PLUG = ["plugins.testsvc:TestService"]


async def test_a_method_s_own_timeout_and_task_group_cancel_only_the_method(cluster):
    a = cluster.spawn("ts-a", services=PLUG)
    b = cluster.spawn("ts-b", services=PLUG)
    a.wait_ready(), b.wait_ready()
    async with await open_ws(a.url) as ws:
        async def b_seen() -> bool:   # both started together: a may be ready before b's presence reaches it
            return (await call(ws, "ts-b", "node.ping"))["type"] == "result"
        await async_wait_until(b_seen, timeout=20, what="ts-b online in ts-a's view")
        for node in (None, "ts-b"):                        # local, then from another node over the federation
            for _ in range(3):                             # a second and third time: nothing was cut before
                r = await call(ws, node, "testsvc.bounded", {"seconds": 5, "limit": 0.05})
                assert r.get("result") == {"value": "own timeout"}, r
                r = await call(ws, node, "testsvc.grouped", {"seconds": 0.01})
                assert r.get("result") == {"value": 0.01}, r
                r = await call(ws, node, "node.ping")
                assert r["type"] == "result", r
    for n in (a, b):
        assert "Traceback" not in n.log(), n.log()
