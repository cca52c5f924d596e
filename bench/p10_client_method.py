"""P10: a call to a method a client offers (``register``), local and remote, vs a node-hosted method.

The same request (a ~200 B echo) goes to ``cbench.echo``, offered by a Python ``Client`` connected
to node A (a process of its own: ``python bench/p10_client_method.py offer URL``), and to the
node-hosted ``bench.echo`` of A (the floor).  Local: the caller is a client of A.  Remote: a client
of B calls node A.  A client-offered call crosses one more WebSocket round trip (node → offering
client → node) than the floor, so the ratio is what that hop costs.

A scenario module of ``bench/run.py`` (``KEY``, ``INFO``, ``needs``, ``run``, ``cells``).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

from _harness import Bench, Starter, WsSide, call_frame, fmt, ratio

KEY = "P10"
ORDER = 45   # after P5, while nodes A and B still run
INFO = {"title": "client-offered method call",
        "measures": "client → node A → the offering client → A → client (local), and the same from a client "
                    "of node B (remote, over MQTT), vs bench.echo hosted by node A, same frame size",
        "target": "p50 ≤ 1.3× node-hosted, local and remote"}
REACH = [("B", "A")]
TARGET = 1.3


def _frame(service: str, node: str | None) -> Any:
    def frame(i: int) -> str:
        return call_frame(i, node).replace('"service":"bench"', f'"service":"{service}"', 1)
    return frame


async def needs(b: Bench) -> dict[str, Starter]:
    return b.pair()


async def run(b: Bench) -> None:
    a, bb = b.running["A"], b.running["B"]
    offerer = b.procs.spawn("p10-offerer", [sys.executable, str(Path(__file__).resolve()), "offer", a.url])
    await b.procs.ready(offerer)
    try:
        figures: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
        for where, url, node, pids in (("local", a.url, None, [a.pid]),
                                       ("remote", bb.url, "A", [a.pid, bb.pid, *b.broker_pids])):
            lat, tput = await b.both(f"P10 {where}", [
                WsSide("client-offered", url, _frame("cbench", node), [*pids, offerer.pid]),
                WsSide("node-hosted", url, _frame("bench", node), pids)])
            figures[where] = (b.merge(lat[0], tput[0]), b.merge(lat[1], tput[1]))
    finally:
        b.procs.stop(offerer)
    project = {w: p for w, (p, _) in figures.items()}
    floor = {"name": "bench.echo hosted by node A", **{w: f for w, (_, f) in figures.items()}}
    ratios = {f"{k}_{w}": ratio(p[m], f[m]) for w, (p, f) in figures.items()
              for k, m in (("p50", "p50_us"), ("p99", "p99_us"), ("throughput", "msgs_per_s"))}
    met = all(ratios[f"p50_{w}"] is not None and ratios[f"p50_{w}"] <= TARGET for w in figures)
    b.record(KEY, project, floor, ratios, met)
    b.tick("P10 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    """The table's project, floor and ratio cells."""
    def cell(x: dict[str, Any]) -> str:
        return "<br>".join(f"{w}: p50 {fmt(x[w]['p50_us'])} µs · p99 {fmt(x[w]['p99_us'])} µs · "
                           f"{fmt(x[w]['msgs_per_s'])}/s" for w in ("local", "remote") if w in x)
    q = r["ratio"]
    rc = "<br>".join(f"{w}: p50 {fmt(q[f'p50_{w}'])}× · tput {fmt(q[f'throughput_{w}'])}×" for w in ("local", "remote")
                     if f"p50_{w}" in q)
    return cell(r["project"]), cell(r["floor"]), rc


async def _offer(url: str) -> None:
    """The offering client: ``cbench.echo`` answers with its params until the process is stopped."""
    from cloudisense.node import Client

    async def echo(params: Any) -> Any:
        return params

    async with Client(url, name="p10-offerer", reconnect=True) as c:
        await c.register("cbench", "echo", echo, mutates=False, description="P10: echo the params")
        print("READY 0", flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "offer":
        sys.exit("usage: p10_client_method.py offer WS_URL")
    try:
        asyncio.run(_offer(sys.argv[2]))
    except KeyboardInterrupt:
        pass
