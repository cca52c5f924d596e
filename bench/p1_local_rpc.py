"""P1: a local RPC round trip, client → node → bench.echo service → client over one WebSocket, against a raw
websockets echo server with the same frame size."""

from __future__ import annotations

from typing import Any

from _harness import Bench, Starter, WsSide, call_frame, rr_cells

KEY = "P1"
ORDER = 10
INFO = {"title": "local RPC round trip",
        "measures": "client → node → bench.echo service → client over one WebSocket, vs a raw websockets "
                    "echo server, same frame size (~200 B)",
        "target": "p50 ≤ 1.3× floor, throughput ≥ 0.6× floor"}


async def needs(b: Bench) -> dict[str, Starter]:
    return {"L": lambda: b.procs.node("L", broker="none"), "echo": lambda: b.procs.floor("ws-echo")}


async def run(b: Bench) -> None:
    node, echo = b.running["L"], b.running["echo"]
    lat, tput = await b.both("P1", [WsSide("project", node.url, call_frame, [node.pid]),
                                    WsSide("floor", echo.url, call_frame, [echo.pid])])
    b.rr("P1", b.merge(lat[0], tput[0]), b.merge(lat[1], tput[1], name="websockets echo"),
         lambda r: r["p50"] <= 1.3 and r["throughput"] >= 0.6)
    b.tick("P1 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    return rr_cells(KEY, r)
