"""Helpers shared by the bench orchestrator, the floors and the bench plug-in service."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

PAD_EVENT = 140   # event data ≈ 200 bytes of JSON


def event_data(step: int, seq: int, size: int = PAD_EVENT) -> dict[str, Any]:
    """One fan-out event; ``t0`` is the wall clock at publish (same machine, so comparable across processes)."""
    return {"t0": time.time(), "step": step, "seq": seq, "pad": "x" * size}


async def paced(rate: float, count: int, fn: Callable[[int], Awaitable[Any] | None]) -> None:
    """Call ``fn(i)`` for i in 0..count-1 on the schedule start + i/rate (catching up in bursts if late)."""
    start = time.monotonic()
    i = 0
    while i < count:
        due = min(count, int((time.monotonic() - start) * rate) + 1)
        while i < due:
            r = fn(i)
            if r is not None:
                await r
            i += 1
        if i < count:
            await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
