"""Reply flood (issue 16, finding 3): a viewer that sends read-only calls with large replies
(``node.describe``, ~15 KB each) and never reads, against a real node process.

Before the fix the node queued every reply: RSS went 39 → 310 MB in 15 s and stayed
high after the disconnect.  Now replies, events and frames share one per-client
outbound budget in bytes (``ws.send_buffer_bytes``), a pending call counts against
``ws.max_pending_calls`` until its reply is written, and a client over budget is
closed with 1008 "slow consumer" and its queues dropped.

The flooder's socket has a tiny receive buffer and its websockets client reads at
most one frame ahead (``max_queue=1``): after the kernel buffers fill, it reads
nothing.  Numbers are printed as ``MEASURE`` lines (``-s``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import time

import psutil
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from support import async_wait_until
from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(120)

VIEWER = "viewer-token-flood"
AUTH = {"tokens": [{"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "role": "viewer"}]}
FLOOD_SECONDS = 15.0


def mb(n: float) -> float:
    return round(n / 1048576, 1)


def measure(what: str, value: object) -> None:
    print(f"MEASURE {what}: {value}")


async def slow_reader(url: str):
    """A websockets client that reads (almost) nothing: 4 KB socket buffer, one frame of read-ahead."""
    host, port = url.split("//")[1].split("/")[0].rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, int(port)))
    return await connect(url, sock=s, max_queue=1, max_size=2 ** 24, open_timeout=10, ping_interval=None)


async def test_reply_flood_is_bounded_and_the_flooder_closed(cluster):
    node = cluster.start("flood", processes=[], auth=AUTH)
    proc = psutil.Process(node.pid)
    pinger = await open_ws(node.url)
    await request(pinger, {"type": "hello", "id": "h", "token": VIEWER})
    size = len(json.dumps((await request(pinger, {"type": "call", "id": "d", "service": "node",
                                                  "method": "describe"}))["result"]))
    rss0 = proc.memory_info().rss

    flooder = await slow_reader(node.url)
    await flooder.send(json.dumps({"type": "hello", "id": "h", "token": VIEWER, "client": "flooder"}))
    samples = [rss0]
    pings: list[float] = []
    sent = 0
    stop = asyncio.Event()

    async def flood() -> None:
        nonlocal sent
        frame = json.dumps({"type": "call", "id": 0, "service": "node", "method": "describe"})
        try:
            while not stop.is_set():
                for _ in range(50):
                    await flooder.send(frame)
                    sent += 1
                await asyncio.sleep(0.03)      # ~1,600 calls/s: under the node's frame rate limit
        except (ConnectionClosed, OSError):
            pass

    async def sample() -> None:
        while not stop.is_set():
            samples.append(proc.memory_info().rss)
            await asyncio.sleep(0.2)

    async def ping() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            t = time.monotonic()
            r = await request(pinger, {"type": "call", "id": f"p{n}", "service": "node", "method": "ping"}, 10)
            assert r["type"] == "result", r
            pings.append(time.monotonic() - t)
            await asyncio.sleep(0.1)

    t0 = time.monotonic()
    tasks = [asyncio.create_task(c()) for c in (flood, sample, ping)]
    try:
        await async_wait_until(lambda: "slow consumer" in node.log() or time.monotonic() - t0 > FLOOD_SECONDS,
                               FLOOD_SECONDS + 5, interval=0.1, what="the flood to end")
        t_closed = time.monotonic() - t0
        evicted = "slow consumer" in node.log()
        # the offender reads now: what the node had handed to the socket, then its close frame
        got = {"result": 0, "error": 0}
        try:
            async with asyncio.timeout(20):
                async for raw in flooder:
                    got[json.loads(raw).get("type", "?")] = got.get(json.loads(raw).get("type", "?"), 0) + 1
        except ConnectionClosed:
            pass
        await asyncio.sleep(1.0)    # keep sampling and pinging just after the close
    finally:
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    peak = max(samples)
    measure("reply flood: describe reply bytes", size)
    measure("reply flood: calls sent / replies read by the flooder / seconds to close", (sent, got, round(t_closed, 1)))
    measure("reply flood: node RSS MB before / peak / after the close", (mb(rss0), mb(peak), mb(samples[-1])))
    measure("reply flood: other client's ping ms p50 / max",
            (round(1000 * sorted(pings)[len(pings) // 2]), round(1000 * max(pings))))
    assert evicted, f"the flooder was not closed within {FLOOD_SECONDS} s:\n{node.log()[-2000:]}"
    assert flooder.close_code == 1008 and flooder.close_reason == "slow consumer", \
        (flooder.close_code, flooder.close_reason)
    # the budget (4 MiB) and 256 unwritten replies of 16 KB, plus the allocator's slack
    assert peak - rss0 < 24 * 1048576, f"RSS grew {mb(peak - rss0)} MB during the flood"
    assert pings and max(pings) < 2.0, pings

    # the flooder's queues are gone with it.  CPython keeps some freed memory in its allocator rather
    # than returning it to the OS, so RSS need not fall back to where it began: what is asserted is that
    # nothing near the flood's volume (thousands of 16 KB replies) stays held
    stats = await request(pinger, {"type": "call", "id": "s", "service": "pubsub", "method": "stats"})
    assert stats["result"]["clients"] == 1, stats
    rss_after = proc.memory_info().rss
    measure("reply flood: node RSS MB after the flooder left", mb(rss_after))
    assert rss_after - rss0 < 16 * 1048576
    await pinger.close()
    log = node.log()
    assert "Traceback" not in log and " ERROR " not in log, log[-3000:]


async def test_a_call_is_pending_until_its_reply_is_written(cluster):
    """``ws.max_pending_calls`` counts replies the client has not taken: once its socket is full,
    further calls are refused with ``overloaded`` (instead of queueing without end), and the client,
    which stays within its budget, is not closed."""
    node = cluster.start("pend", processes=[], ws={"max_pending_calls": 8})
    client = await slow_reader(node.url)
    n = 800                                   # 800 × 16 KB: far more than the socket buffers hold
    for i in range(0, n, 2):                  # two at a time, paced: each pair is answered before the next,
        for j in (i, i + 1):                  # so only replies left unwritten can reach the limit of 8
            await client.send(json.dumps({"type": "call", "id": j, "service": "node", "method": "describe"}))
        await asyncio.sleep(0.01)
    got: dict[str, int] = {}
    answered: set[int] = set()
    async with asyncio.timeout(60):
        while len(answered) < n:
            msg = json.loads(await client.recv())
            kind = msg["type"] if msg["type"] == "result" else msg["error"]["code"]
            got[kind] = got.get(kind, 0) + 1
            answered.add(msg["id"])
    measure("pending until written: answers to 800 paced describe calls, max_pending_calls = 8", got)
    assert set(got) == {"result", "overloaded"}, got
    assert got["overloaded"] > n // 4, got
    r = await request(client, {"type": "call", "id": "after", "service": "node", "method": "ping"})
    assert r["type"] == "result"
    await client.close()
