"""P6: the idle footprint, RSS and CPU of an idle node joined to the broker, against the idle hand relay."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

from _harness import Bench, Starter, cpu_seconds, fmt, idle_group, ratio, rss

KEY = "P6"
ORDER = 60
EARLY = False     # started after P1-P5's processes stopped, so that nothing else runs beside them
INFO = {"title": "idle footprint",
        "measures": "RSS and CPU of an idle node joined to the broker, vs the idle hand relay process",
        "target": "≤ 40 MB RSS and < 1 % CPU"}


async def needs(b: Bench) -> dict[str, Starter]:
    return idle_group(b)


async def run(b: Bench) -> None:
    cfg = b.cfg
    b.tick(f"P6 idle footprint ({cfg['idle_seconds']:g} s)")
    await asyncio.sleep(cfg["idle_settle"])
    fp = await idle_footprint({"project": b.running["I"].pid, "floor": b.running["idle-relay"].pid},
                              cfg["idle_seconds"])
    pr, fl = fp["project"], fp["floor"]
    ratios = {"rss": ratio(pr["rss_mb"], fl["rss_mb"]), "cpu": ratio(pr["cpu_percent"], fl["cpu_percent"])}
    b.record("P6", pr, {"name": "idle hand relay (websockets + aiomqtt)", **fl}, ratios,
             pr["rss_mb"] <= 40 and pr["cpu_percent"] < 1)
    b.tick("P6 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    def cell(x: dict[str, Any]) -> str:
        return f"RSS {fmt(x['rss_mb'])} MB (USS {fmt(x['uss_mb'])}) · CPU {x['cpu_percent']:.2f} %"
    return cell(r["project"]), cell(r["floor"]), f"RSS {fmt(r['ratio']['rss'])}×"


async def idle_footprint(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    c0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    out = {}
    for k, p in pids.items():
        out[k] = {"rss_mb": round(rss(p) / 2**20, 1), "uss_mb": round(psutil.Process(p).memory_full_info().uss / 2**20, 1),
                  "cpu_percent": round((cpu_seconds(p) - c0[k]) / wall * 100, 3), "seconds": round(wall, 1)}
    return out

