"""P3: remote RPC throughput with 64 calls in flight on one client, the P2 path against the same hand relay
(and NATS); reported from the same run as P2."""

from __future__ import annotations

from typing import Any

import _remote
from _harness import Bench, Starter, rr_cells

KEY = "P3"
ORDER = 30
INFO = {"title": "remote RPC throughput, 64 in flight",
        "measures": "the P2 path with 64 calls in flight on one client, vs the same hand relay (and NATS)",
        "target": "throughput ≥ 4× hand relay (stretch: NATS)"}
REACH = [("A", "B")]


async def needs(b: Bench) -> dict[str, Starter]:
    return await _remote.needs(b)


async def run(b: Bench) -> None:
    p, f, n = await _remote.measure(b)

    def inflight(x: dict[str, Any]) -> dict[str, Any]:
        return {**x, "p50_us": x["inflight_p50_us"], "p99_us": x["inflight_p99_us"]}
    b.rr("P3", inflight(p), {"name": _remote.RELAY, **inflight(f)}, lambda r: r["throughput"] >= 4,
         nats={"name": _remote.NATS, **inflight(n)})
    b.tick("P3 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    return rr_cells(KEY, r)
