"""P7: many clients, the RSS growth per connected, subscribed WebSocket client, against the gateway floor."""

from __future__ import annotations

import asyncio
from typing import Any

from websockets.asyncio.client import ClientConnection

from _harness import Bench, Starter, dumps, fmt, idle_group, loads, ratio, rss, ws_connect

KEY = "P7"
ORDER = 70
EARLY = False     # shares P6's processes
INFO = {"title": "many clients",
        "measures": "RSS growth per connected, subscribed WebSocket client, vs the gateway floor",
        "target": "≤ 50 KB per client"}


async def needs(b: Bench) -> dict[str, Starter]:
    return idle_group(b)


async def run(b: Bench) -> None:
    cfg = b.cfg
    node, gateway = b.running["I"], b.running["idle-gateway"]
    b.tick(f"P7 {cfg['clients']} clients")
    pr = await per_client_rss(node.pid, node.url, dumps({"type": "subscribe", "id": "s", "topic": "bench/p7"}),
                              cfg["clients"])
    fl = await per_client_rss(gateway.pid, gateway.url, dumps({"type": "subscribe", "id": "s"}), cfg["clients"])
    b.record("P7", pr, {"name": "websockets gateway", **fl},
             {"kb_per_client": ratio(pr["kb_per_client"], fl["kb_per_client"])}, pr["kb_per_client"] <= 50)
    b.tick("P7 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    def cell(x: dict[str, Any]) -> str:
        return f"{fmt(x['kb_per_client'])} KB/client ({x['clients']} clients)"
    return cell(r["project"]), cell(r["floor"]), f"{fmt(r['ratio']['kb_per_client'])}×"


async def per_client_rss(pid: int, url: str, subscribe: str, n: int) -> dict[str, float]:
    async def open_one() -> ClientConnection:
        ws = await ws_connect(url)
        await ws.send(subscribe)
        r = loads(await ws.recv())
        if r.get("type") != "subscribed":
            raise RuntimeError(f"subscribe failed: {r}")
        return ws

    async def open_many(k: int) -> list[ClientConnection]:
        out: list[ClientConnection] = []
        for i in range(0, k, 50):
            out += await asyncio.gather(*(open_one() for _ in range(min(50, k - i))))
        return out

    # warm-up: a first batch connects and leaves, so one-off allocations are not counted
    for ws in await open_many(50):
        await ws.close()
    await asyncio.sleep(0.5)
    before = rss(pid)
    clients = await open_many(n)
    await asyncio.sleep(1.0)
    after = rss(pid)
    for ws in clients:
        await ws.close()
    return {"clients": n, "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
            "kb_per_client": round((after - before) / 1024 / n, 1)}

