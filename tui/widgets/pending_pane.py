"""The Pending tab: plans an MCP client filed, waiting for an operator (``cloudisense pending`` on screen).

Read from the state directory's :class:`~cloudisense.agent.pending.PendingStore`
(every 2 s, and at once after an action).  ``a`` approves the highlighted plan
through the same gate as ``cloudisense approve`` (the screen confirms first,
naming the nodes), ``r`` rejects it with feedback.  MCP plans are not
re-planned here: their requester revises them.  Everything shown is data
(:func:`printable`, Text cells).
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Static

from cloudisense.node._text import printable

from .._state import fmt_params


class PendingTable(DataTable[Text]):
    BINDINGS = [
        Binding("a", "decide('approve')", "Approve"),
        Binding("r", "decide('reject')", "Reject"),
        Binding("j", "cursor_down", "", show=False),
        Binding("k", "cursor_up", "", show=False),
    ]

    def action_decide(self, what: str) -> None:
        if not self.row_count:
            return
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        if key:
            self.post_message(PendingPane.Decide(what, str(key)))


class PendingPane(Vertical):
    class Decide(Message):
        def __init__(self, what: str, plan_id: str) -> None:
            super().__init__()
            self.what = what
            self.plan_id = plan_id

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.shown: list[tuple[str, str]] = []

    def compose(self) -> ComposeResult:
        yield Static("", id="pending-status")
        yield PendingTable(id="pending-table", cursor_type="row")

    def on_mount(self) -> None:
        t = self.query_one(PendingTable)
        for col in ("id", "requested by", "steps", "why this node", "request"):
            t.add_column(col, key=col)
        self.reload()
        self.set_interval(2.0, self.reload)

    def reload(self) -> None:
        plans = self.app.pending_plans()  # type: ignore[attr-defined]
        key = [(p.id, p.plan.hash) for p in plans]
        status = self.query_one("#pending-status", Static)
        status.update(Text(f"{len(plans)} plan(s) filed through MCP wait for approval · a approve · r reject"
                           if plans else "No pending plans (an MCP client's mutating calls wait here).",
                           style="dim"))
        if key == self.shown:
            return
        self.shown = key
        t = self.query_one(PendingTable)
        cursor = t.cursor_row
        t.clear()
        for p in plans:
            steps = "; ".join(f"{s.service}.{s.method} {fmt_params(s.params)} on {', '.join(s.targets)}"
                              for s in p.plan.steps)
            why = "; ".join(s.fact.why or "—" for s in p.plan.steps)
            t.add_row(*(Text(printable(c, limit=300)) for c in (p.id, p.requested_by or "?", steps, why,
                                                                 p.plan.request)), key=p.id)
        if t.row_count:
            t.move_cursor(row=min(cursor, t.row_count - 1), animate=False)
