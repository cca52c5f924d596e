"""How a method a Python ``Client`` offers answers (issue 18), whatever its handler does: answers at once,
waits, waits too long, raises before or after waiting, returns what JSON can't hold, or returns an
awaitable that is not a coroutine.  A real node; the caller is another client of it.
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from cloudisense.node import CallTimeout, Client, CloudisenseError, RpcError
from support import async_wait_until

pytestmark = pytest.mark.timeout(60)


async def test_every_kind_of_handler_is_answered_once_with_its_result_or_its_error(cluster, caplog):
    node = cluster.spawn("hh")
    node.wait_ready()
    cancelled: list[str] = []

    async def at_once(p):
        return {"echo": p}

    async def waits(p):
        await asyncio.sleep(0.05)
        return {"waited": p}

    async def too_long(p):
        try:
            await asyncio.sleep(30)
        finally:
            cancelled.append("too_long")

    async def raises_at_once(p):
        raise ValueError("broken before waiting")

    async def raises_later(p):
        await asyncio.sleep(0)
        raise RpcError("conflict", "taken after waiting")

    async def not_json(p):
        return {1, 2}

    async def own_timeout(p):   # asyncio.timeout and a TaskGroup bind to the task they start in
        async with asyncio.timeout(0.05):
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.append("own_timeout")
                raise
        return "unreachable"

    async def own_group(p):
        async with asyncio.TaskGroup() as tg:
            t = tg.create_task(asyncio.sleep(0.01, result={"grouped": p}))
        return t.result()

    def a_future(p):
        fut = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.01, fut.set_result, {"future": p})
        return fut

    offerer, caller = Client(node.url, name="offerer"), Client(node.url, name="caller")
    await offerer.connect(), await caller.connect()
    try:
        for name, h in (("at_once", at_once), ("waits", waits), ("too_long", too_long),
                        ("raises_at_once", raises_at_once), ("raises_later", raises_later),
                        ("not_json", not_json), ("a_future", a_future), ("own_timeout", own_timeout),
                        ("own_group", own_group)):
            await offerer.register("hh", name, h, mutates=False)

        assert await caller.call(None, "hh", "at_once", {"n": 1}) == {"echo": {"n": 1}}
        assert await caller.call(None, "hh", "waits", {"n": 2}) == {"waited": {"n": 2}}
        assert await caller.call(None, "hh", "a_future", {"n": 3}) == {"future": {"n": 3}}
        # many at once, answered each with its own result
        got = await asyncio.gather(*(caller.call(None, "hh", "at_once" if i % 2 else "waits", {"i": i})
                                     for i in range(40)))
        assert got == [{"echo" if i % 2 else "waited": {"i": i}} for i in range(40)]

        with caplog.at_level(logging.ERROR, logger="cloudisense.node._client"):
            with pytest.raises(CloudisenseError) as e:
                await caller.call(None, "hh", "raises_at_once", {})
            assert e.value.code == "internal"
            with pytest.raises(CloudisenseError) as e:
                await caller.call(None, "hh", "raises_later", {})
            assert e.value.code == "conflict" and "taken after waiting" in str(e.value)
            with pytest.raises(CloudisenseError) as e:
                await caller.call(None, "hh", "not_json", {})
            assert e.value.code == "internal" and "not JSON" in str(e.value)
        assert "handler of hh.raises_at_once failed" in caplog.text        # the offering client logs its bug
        assert "broken before waiting" in caplog.text

        # past its deadline: the caller is answered timeout, and the handler is cancelled in the offering client
        with pytest.raises(CallTimeout):
            await caller.call(None, "hh", "too_long", {}, timeout=0.5)
        await async_wait_until(lambda: cancelled == ["too_long"], timeout=5, what="the slow handler cancelled")

        # a handler's own timeout cancels the handler (not the client's reader), and is answered timeout
        with pytest.raises(CloudisenseError) as e:
            await caller.call(None, "hh", "own_timeout", {}, timeout=5)
        assert e.value.code == "timeout" and "own_timeout" in cancelled
        assert await caller.call(None, "hh", "own_group", {"n": 5}) == {"grouped": {"n": 5}}

        # and the offering client still answers, on the same connection
        assert offerer.connected
        assert await caller.call(None, "hh", "at_once", {"n": 4}) == {"echo": {"n": 4}}
    finally:
        await caller.close()
        await offerer.close()
