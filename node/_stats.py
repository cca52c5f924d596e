"""The node's counters, for ``$sys/stats`` and ``pubsub.stats`` (written by the node and both edges)."""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from ._metrics import CallMetrics


class Stats:
    """Counters for ``$sys/stats`` and ``pubsub.stats``."""

    def __init__(self) -> None:
        self.calls = 0
        self.remote_calls_out = 0
        self.remote_calls_in = 0
        self.errors: dict[str, int] = {}
        self.latency: deque[float] = deque(maxlen=2000)   # ms, recent calls
        self._recent: deque[tuple[str, str, str, str, float, str | None, float]] = deque(maxlen=20)   # made into dicts when read (``recent``)
        self.events = 0
        self.events_remote_out = 0
        self.events_remote_in = 0
        self.dropped = 0
        self.duplicates = 0
        self.late_calls = 0
        self._window: deque[tuple[float, int, int]] = deque(maxlen=120)  # (t, calls, events)
        self.by_call = CallMetrics()   # /metrics: calls by kind/service/method/code, latency histogram

    def record(self, src: str, dst: str, service: str, method: str, ms: float, code: str | None) -> None:
        self.calls += 1
        self.latency.append(ms)
        if code:
            self.errors[code] = self.errors.get(code, 0) + 1
        self._recent.append((src, dst, service, method, ms, code, time.time()))
        self.by_call.observe(src == dst, service, method, code, ms)

    @property
    def recent(self) -> list[dict[str, Any]]:
        """The last calls, newest last."""
        return [{"from": src, "to": dst, "service": service, "method": method, "ms": round(ms, 3),
                 "ok": code is None, "code": code, "ts": ts}
                for src, dst, service, method, ms, code, ts in self._recent]

    def rates(self) -> tuple[float, float]:
        now = time.monotonic()
        self._window.append((now, self.calls, self.events))
        while len(self._window) > 2 and now - self._window[0][0] > 5:
            self._window.popleft()
        t0, c0, e0 = self._window[0]
        dt = now - t0
        if dt <= 0:
            return 0.0, 0.0
        return (self.calls - c0) / dt, (self.events - e0) / dt

    def percentiles(self) -> dict[str, float]:
        if not self.latency:
            return {"p50": 0.0, "p99": 0.0}
        xs = sorted(self.latency)
        return {"p50": round(xs[len(xs) // 2], 3), "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 3)}
