"""Connections at the WebSocket edge (issue 16, finding 8), against real node processes:
a hello deadline, a connection cap, per-IP auth-failure limits, a 70,000-key params
object refused before it costs anything, and a newline in ``hello.client`` that can't
forge a log line.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus

from support import async_wait_until
from wsutil import open_ws, recv, reply_to, request, send

pytestmark = pytest.mark.timeout(90)

TOKEN = "op-token-connections"
AUTH = {"tokens": [{"sha256": hashlib.sha256(TOKEN.encode()).hexdigest(), "role": "operator"}]}


async def closed_within(ws, seconds: float) -> tuple[int | None, str | None]:
    """Read until the node closes ``ws``; fail if it is still open after ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            async for _ in ws:
                pass
    except TimeoutError:
        raise AssertionError(f"still open after {seconds} s") from None
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason


async def test_hello_deadline(cluster):
    node = cluster.start("hd", processes=[], auth=AUTH, ws={"hello_timeout": 1.0})
    silent = await open_ws(node.url)
    t = time.monotonic()
    talker = await open_ws(node.url)                       # never authenticates: only calls
    await send(talker, {"type": "call", "id": 1, "service": "node", "method": "ping"})
    assert (await recv(talker))["error"]["code"] == "unauthenticated"
    good = await open_ws(node.url)
    assert (await request(good, {"type": "hello", "id": 1, "token": TOKEN}))["type"] == "welcome"
    assert await closed_within(silent, 5) == (1008, "hello timeout")
    assert await closed_within(talker, 5) == (1008, "hello timeout")
    assert 0.8 < time.monotonic() - t < 4
    await asyncio.sleep(1.5)      # past the deadline: the authenticated client is not affected
    assert (await request(good, {"type": "call", "id": 2, "service": "node", "method": "ping"}))["type"] == "result"
    await good.close()


async def test_no_hello_deadline_without_tokens(cluster):
    """Without tokens every client is an operator from the start and ``hello`` is optional: a script may
    connect and call later (the benchmarks' control connections do), so there is no deadline;
    ``ws.max_clients`` bounds idle sockets."""
    node = cluster.start("hd2", processes=[], ws={"hello_timeout": 1.0})
    idle = await open_ws(node.url)
    watcher = await open_ws(node.url)
    # past the deadline (the watcher's own first call comes 2 s in: the node has had time to close both)
    await asyncio.sleep(2.0)
    assert (await request(watcher, {"type": "call", "id": 1, "service": "node", "method": "ping"}))["type"] \
        == "result"
    assert (await request(idle, {"type": "call", "id": 1, "service": "node", "method": "ping"}))["type"] == "result"
    await idle.close()
    await watcher.close()


async def test_connection_cap(cluster):
    node = cluster.start("cap", processes=[], ws={"max_clients": 5})
    clients = [await open_ws(node.url) for _ in range(5)]
    for i, c in enumerate(clients):
        assert (await request(c, {"type": "call", "id": i, "service": "node", "method": "ping"}))["type"] == "result"
    with pytest.raises(InvalidStatus) as e:
        await open_ws(node.url)
    assert e.value.response.status_code == 503
    await clients.pop().close()

    async def admitted() -> bool:
        try:
            clients.append(await open_ws(node.url))
            return True
        except InvalidStatus:
            return False
    await async_wait_until(admitted, 5, what="a slot to free up")
    assert (await request(clients[-1], {"type": "call", "id": 9, "service": "node", "method": "ping"}))["type"] \
        == "result"
    for c in clients:
        await c.close()
    assert "connection limit" in node.log()


async def test_auth_failures_per_ip(cluster):
    node = cluster.start("af", processes=[], auth=AUTH,
                         ws={"auth_fail_limit": 5, "auth_fail_window": 60.0, "auth_block_seconds": 2.0})
    fails = 0
    while fails < 5:                      # bad tokens, over several connections (3 close one)
        ws = await open_ws(node.url)
        try:
            for _ in range(3):
                if fails == 5:
                    break
                r = await request(ws, {"type": "hello", "id": fails, "token": f"guess-{fails}"})
                assert r["error"]["code"] == "unauthenticated"
                fails += 1
        except ConnectionClosed:
            pass
        await ws.close()
    t_blocked = time.monotonic()
    with pytest.raises(InvalidStatus) as e:        # even with the right token: refused at the handshake
        await open_ws(node.url)
    assert e.value.response.status_code == 429

    async def unblocked() -> bool:
        try:
            ws = await open_ws(node.url)
        except InvalidStatus:
            return False
        r = await request(ws, {"type": "hello", "id": "ok", "token": TOKEN})
        await ws.close()
        return r["type"] == "welcome"
    await async_wait_until(unblocked, 10, interval=0.2, what="the block to expire")
    assert time.monotonic() - t_blocked > 1.5
    assert node.log().count("authentication failures from 127.0.0.1") == 1, node.log()[-2000:]


async def test_huge_params_refused_cheaply(cluster):
    node = cluster.start("keys", processes=[])
    attacker = await open_ws(node.url)
    other = await open_ws(node.url)
    frame = json.dumps({"type": "call", "id": "big", "service": "node", "method": "ping",
                        "params": {str(i): 0 for i in range(70_000)}}, separators=(",", ":"))
    assert len(frame) < 1_048_576          # under the frame limit: it is the key count that is refused
    lat: list[float] = []
    stop = asyncio.Event()

    async def pings() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            t = time.monotonic()
            assert (await request(other, {"type": "call", "id": n, "service": "node", "method": "ping"}))["type"] \
                == "result"
            lat.append(time.monotonic() - t)
            await asyncio.sleep(0.02)
    pinger = asyncio.create_task(pings())
    took = []
    try:
        for i in range(10):
            t = time.monotonic()
            await send(attacker, frame.replace('"big"', str(i)))
            r = await reply_to(attacker, i, 10)
            took.append(time.monotonic() - t)
            assert r["type"] == "error" and r["error"]["code"] in ("too_large", "bad_request"), r
            assert r["id"] == i
    finally:
        stop.set()
        await pinger
    print(f"MEASURE 70,000-key params: refusal ms median {1000 * sorted(took)[5]:.1f}, "
          f"other client's ping ms max {1000 * max(lat):.0f} over {len(lat)} pings")
    assert sorted(took)[5] < 0.1, took
    assert max(lat) < 0.5, lat
    # an ordinary params object still works; so does one with many keys nested in a value
    r = await request(attacker, {"type": "call", "id": "ok", "service": "pubsub", "method": "publish",
                                 "params": {"topic": "k/x", "data": {str(i): i for i in range(2000)}}})
    assert r["type"] == "result", r
    await attacker.close()
    await other.close()


async def test_newline_in_client_name_cannot_forge_a_log_line(cluster):
    node = cluster.start("logs", processes=[])
    forged = "WARNING cloudisense.node._gateway: FORGED admin logged in"
    ws = await open_ws(node.url)
    r = await request(ws, {"type": "hello", "id": 1, "client": f"x\n2026-01-01 00:00:00,000 {forged}\r\x1b[2K"})
    assert r["type"] == "welcome"
    await ws.close()
    await async_wait_until(lambda: "disconnected" in node.log(), 10, what="the disconnect to be logged")
    lines = node.log().splitlines()
    assert not [ln for ln in lines if ln.startswith("2026-01-01") or "FORGED" in ln], lines
    assert any("x\\x0a2026-01-01 00:00:00,000 WARNING" in ln for ln in lines), lines   # shown, escaped
    assert not re.search(r"\x1b", node.log())
