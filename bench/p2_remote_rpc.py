"""P2: a remote RPC round trip, client → node A → MQTT → node B → MQTT → A → client, against a hand-written
relay (websockets + aiomqtt, QoS 1, same broker) and nats-py request/reply."""

from __future__ import annotations

from typing import Any

import _remote
from _harness import Bench, Starter, rr_cells

KEY = "P2"
ORDER = 20
INFO = {"title": "remote RPC round trip",
        "measures": "client → node A → MQTT → node B → MQTT → A → client, vs a hand-written relay "
                    "(websockets + aiomqtt, QoS 1, same broker) and nats-py request/reply",
        "target": "p50 ≤ 1.15× hand relay"}
REACH = [("A", "B")]


async def needs(b: Bench) -> dict[str, Starter]:
    return await _remote.needs(b)


async def run(b: Bench) -> None:
    p, f, n = await _remote.measure(b)
    b.rr("P2", p, {"name": _remote.RELAY, **f}, lambda r: r["p50"] <= 1.15, nats={"name": _remote.NATS, **n})
    b.tick("P2 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    return rr_cells(KEY, r)
