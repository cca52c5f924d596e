"""One node in detail (``d`` on a cluster row, or "Go to node" in the palette).

Metrics with sparklines (the samples the console has seen since it
connected), services and their methods (mutating ones marked), processes
with their state, and the node's recent events.  Process actions (``r``
restart, ``s`` start, ``x`` stop) do not call the node: they put the request
("restart logger on node-b") through the same plan → approval path as typed
requests, so nothing runs before the operator approves it.  Everything shown
is data from the node: escaped with :func:`printable`, never markup.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, RichLog, Sparkline, Static

from cloudisense.node._text import printable

from .._state import SPARK_METRICS, fmt_age
from ..widgets.footer import ConsoleFooter

if TYPE_CHECKING:
    from ..app import CloudisenseApp

_LABEL = {"temperature_c": ("temp", "°C"), "cpu_percent": ("cpu", "%"), "memory_percent": ("mem", "%"),
          "disk_percent": ("disk", "%")}


class ProcessTable(DataTable[Text]):
    BINDINGS = [
        Binding("r", "act('restart')", "Restart…"),
        Binding("s", "act('start')", "Start…"),
        Binding("x", "act('stop')", "Stop…"),
        Binding("l", "logs", "Logs"),
        Binding("j", "cursor_down", "", show=False),
        Binding("k", "cursor_up", "", show=False),
    ]

    def action_act(self, verb: str) -> None:
        self.screen.act(verb)  # type: ignore[attr-defined]

    def action_logs(self) -> None:
        self.screen.logs()  # type: ignore[attr-defined]


class NodeDetailScreen(Screen[None]):
    BINDINGS = [Binding("escape,q", "close", "Back")]

    app: CloudisenseApp

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node
        self._shown_version = -1

    def compose(self) -> ComposeResult:
        yield Static(id="detail-head")
        with Horizontal(id="detail-top"):
            with Vertical(id="detail-metrics"):
                for key in SPARK_METRICS:
                    with Horizontal(classes="metric-row"):
                        yield Static(id=f"m-{key}", classes="metric-label")
                        yield Sparkline([], id=f"s-{key}", classes="metric-spark")
            yield VerticalScroll(Static(id="detail-services"), id="detail-services-box")
        yield ProcessTable(id="detail-procs", cursor_type="row")
        yield RichLog(id="detail-events", wrap=False, markup=False, max_lines=200)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        t = self.query_one(ProcessTable)
        for col in ("process", "state", "pid", "restarts", "exit"):
            t.add_column(col, key=col)
        self.query_one("#detail-services-box").border_title = "services"
        self.query_one("#detail-procs").border_title = "processes  (r restart · s start · x stop: planned, then approved · l logs)"
        self.query_one("#detail-events").border_title = "recent events from this node"
        self.refresh_view()
        self.set_interval(0.5, self.refresh_view)
        t.focus()

    def refresh_view(self) -> None:
        model = self.app.cluster
        if model.version == self._shown_version:
            return
        self._shown_version = model.version
        row = model.nodes.get(self.node)
        head = Text()
        head.append(f" {printable(self.node, limit=80)} ", style="bold reverse")
        if row is None:
            head.append("  not in the cluster any more", style="bold red")
            self.query_one("#detail-head", Static).update(head)
            return
        now = self.app.clock()
        head.append("  online" if row.online else "  OFFLINE", style="green" if row.online else "bold red")
        if row.last_seen:
            head.append(f"  last seen {fmt_age(now - row.last_seen)} ago", style="dim")
        self.query_one("#detail-head", Static).update(head)
        for key in SPARK_METRICS:
            label, unit = _LABEL[key]
            hist = row.history.get(key, [])
            v = row.metrics.get(key)
            value = f"{v:.1f}{unit}" if isinstance(v, (int, float)) and not isinstance(v, bool) else "—"
            rng = f" {min(hist):.0f}–{max(hist):.0f}" if len(hist) > 1 else ""
            self.query_one(f"#m-{key}", Static).update(Text.assemble((f"{label:5}", "bold"), f"{value:>8}",
                                                                     (rng, "dim")))
            self.query_one(f"#s-{key}", Sparkline).data = list(hist) or [0.0]
        svc = Text()
        for name, info in sorted(row.services.items()):
            methods = (info or {}).get("methods") or {} if isinstance(info, dict) else {}
            svc.append(printable(name, limit=60), style="bold")
            svc.append("  ")
            for m, minfo in sorted(methods.items()):
                mut = isinstance(minfo, dict) and minfo.get("mutates")
                svc.append(printable(m, limit=60) + ("*" if mut else "") + " ", style="yellow" if mut else "")
            svc.append("\n")
        svc.append("* changes state (needs approval)", style="dim")
        self.query_one("#detail-services", Static).update(svc)
        t = self.query_one(ProcessTable)
        cursor = t.cursor_row
        t.clear()
        for p in row.processes:
            state = str(p.get("state")) if row.online else f"last seen {p.get('state')}"
            cells = (p.get("name"), state, (p.get("pid") or "—") if row.online else "—", p.get("restarts", "—"),
                     p.get("exit_code") if p.get("exit_code") is not None else "—")
            t.add_row(*(Text(printable(c, limit=80)) for c in cells), key=str(p.get("name")))
        if t.row_count:
            t.move_cursor(row=min(cursor, t.row_count - 1), animate=False)
        log = self.query_one("#detail-events", RichLog)
        log.clear()
        for ev in row.recent[-50:]:
            ts = ev.get("ts")
            when = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "--:--:--"
            data = json.dumps(ev.get("data"), ensure_ascii=False, separators=(",", ":"), default=str)
            log.write(Text.assemble((when, "dim"), " ", (printable(ev.get("topic"), limit=200), "cyan"), " ",
                                    printable(data, limit=200)))

    def selected_process(self) -> str | None:
        t = self.query_one(ProcessTable)
        if not t.row_count:
            return None
        key = t.coordinate_to_cell_key(t.cursor_coordinate).row_key.value
        return str(key) if key is not None else None

    def act(self, verb: str) -> None:
        name = self.selected_process()
        if name is None:
            self.notify("No process on this node.", severity="warning")
            return
        self.dismiss(None)
        self.app.ask(f"{verb} {name} on {self.node}")

    def logs(self) -> None:
        name = self.selected_process()
        if name is None:
            self.notify("No process on this node.", severity="warning")
            return
        self.app.follow_logs(self.node, name)

    def action_close(self) -> None:
        self.dismiss(None)
