"""RPC activity from ``$sys/stats``: a one-line summary and a panel with the recent calls."""

from __future__ import annotations

import time
from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Sparkline, Static

from .._state import fmt_stats


class RpcLine(Static):
    """``RPC 1.0 calls/s · 42 calls · 0 errors · p50 0.8 ms · p99 3.1 ms``."""

    def show(self, stats: dict[str, Any] | None) -> None:
        self.update(fmt_stats(stats))


class RpcPanel(Vertical):
    """Calls per second over the last two minutes, and the node's most recent calls."""

    HISTORY = 120

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.rates: list[float] = []

    def compose(self) -> ComposeResult:
        yield Static("calls/s: waiting for $sys/stats", id="rpc-scale")
        yield Sparkline([], id="rpc-spark")
        yield DataTable(id="rpc-recent", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        t = self.query_one("#rpc-recent", DataTable)
        for col in ("time", "from", "to", "call", "ms", "result"):
            t.add_column(col, key=col)

    def show(self, stats: dict[str, Any]) -> None:
        rpc = stats.get("rpc") or {}
        self.rates = (self.rates + [float(rpc.get("calls_per_s") or 0.0)])[-self.HISTORY:]
        self.query_one("#rpc-spark", Sparkline).data = list(self.rates)
        self.query_one("#rpc-scale", Static).update(
            f"calls/s over the last {len(self.rates)} samples: now {self.rates[-1]:.1f} · "
            f"min {min(self.rates):.1f} · max {max(self.rates):.1f} (bars span min … max)")
        t = self.query_one("#rpc-recent", DataTable)
        t.clear()
        for r in reversed(list(rpc.get("recent") or [])[-20:]):
            ts = r.get("ts")
            when = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "?"
            t.add_row(when, str(r.get("from") or ""), str(r.get("to") or ""),
                      f"{r.get('service')}.{r.get('method')}", f"{float(r.get('ms') or 0):.1f}",
                      "ok" if r.get("ok") else str(r.get("code") or "error"))
