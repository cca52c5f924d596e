"""The History tab: plans from the audit log, this session's and earlier ones, with what became of them.

Read from the end of the audit log (:func:`~cloudisense.agent.tail_records`,
the last MiB) when the tab opens and after each plan is decided.  Enter
opens one read-only: its steps, who decided, and each step's result.
Everything shown is data (:func:`printable`, Text cells).
"""

from __future__ import annotations

import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from cloudisense.agent import step_targets
from cloudisense.node._text import printable

OUTCOME_STYLE = {"done": "green", "failed": "bold red", "refused": "red", "stale": "yellow", "rejected": "yellow",
                 "superseded": "dim yellow", "edited": "dim", "approved": "cyan", "not decided": "dim"}


class HistoryTable(DataTable[Any]):
    BINDINGS = [
        Binding("enter", "select_cursor", "Open"),
        Binding("j", "cursor_down", "", show=False),
        Binding("k", "cursor_up", "", show=False),
    ]


class HistoryPane(Vertical):
    class Open(Message):
        def __init__(self, plan_hash: str) -> None:
            super().__init__()
            self.plan_hash = plan_hash

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.plans: dict[str, Any] = {}

    def compose(self) -> ComposeResult:
        yield Static("", id="history-status")
        yield HistoryTable(id="history-table", cursor_type="row")

    def on_mount(self) -> None:
        t = self.query_one(HistoryTable)
        for col in ("when", "by", "outcome", "steps", "request"):
            t.add_column(col, key=col)

    def reload(self) -> None:
        plans = self.app.past_plans()  # type: ignore[attr-defined]
        self.plans = {p.plan_hash: p for p in plans}
        session = getattr(getattr(self.app, "agent", None), "audit", None)
        mine = getattr(session, "session", None)
        earlier = sum(p.session != mine for p in plans)
        self.query_one("#history-status", Static).update(Text(
            f"{len(plans)} plan(s) in the audit log, {earlier} from earlier sessions · Enter opens one (read-only)"
            if plans else "No plans in the audit log yet.", style="dim"))
        t = self.query_one(HistoryTable)
        cursor = t.cursor_row
        t.clear()
        for p in plans:
            when = time.strftime("%m-%d %H:%M", time.localtime(p.ts)) if p.ts else "?"
            steps = "; ".join(f"{s.get('service')}.{s.get('method')} on {', '.join(step_targets(s))}"
                              for s in p.steps) or "(none)"
            t.add_row(Text(when), Text(printable(p.user, limit=30)),
                      Text(printable(p.outcome, limit=20), style=OUTCOME_STYLE.get(p.outcome, "")),
                      Text(printable(steps, limit=120)), Text(printable(p.request, limit=200)), key=p.plan_hash)
        if t.row_count:
            t.move_cursor(row=min(cursor, t.row_count - 1), animate=False)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.Open(str(event.row_key.value)))
