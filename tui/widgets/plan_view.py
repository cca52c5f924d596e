"""The plan: a table of steps to approve, then the execution view of the same steps.

Keys on the table (shown in the footer): ``a`` approve the checked steps (all
of them unless some were toggled off), ``r`` reject, ``space`` toggle a step,
``e`` edit a step's params (``escape``, the screen's key, goes back to the request box).  The buttons
under the table do the same with the mouse.  The widget only displays and
asks: it posts :class:`PlanView.Approve` / ``Reject`` / ``Edit`` / ``Back``
and the screen decides.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, DataTable, Static

from cloudisense.node._text import printable

from .._state import PlanProgress, fmt_params
from .plan_log import PlanLog

COLUMNS = (("on", "✓"), ("n", "#"), ("node", "node"), ("call", "call"), ("params", "params"),
           ("status", "status"), ("why", "why this node"), ("reason", "reason"))
_STATUS_STYLE = {"ok": "bold green", "error": "bold red", "running": "bold yellow", "queued": "yellow",
                 "skipped": "dim", "not run": "dim", "unchecked": "dim"}


class PlanTable(DataTable[Any]):
    """The steps.  Its bindings are the approval keys."""

    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("space", "toggle", "Toggle step"),
        Binding("e", "edit", "Edit params"),
        Binding("j", "cursor_down", "", show=False),
        Binding("k", "cursor_up", "", show=False),
    ]

    def __init__(self, view: PlanView, **kw: Any) -> None:
        super().__init__(cursor_type="row", **kw)
        self.plan_view = view

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("approve", "reject", "toggle", "edit"):
            return True if self.plan_view.awaiting_approval else None  # None: shown, greyed out
        return True

    def watch_scroll_x(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_x(old_value, new_value)
        self.plan_view.update_title()

    def on_resize(self) -> None:
        self.plan_view.update_title()

    def action_cursor_right(self) -> None:  # a row cursor has nowhere to go sideways: scroll by a third
        self.scroll_relative(x=max(8, self.scrollable_content_region.width // 3), animate=False)

    def action_cursor_left(self) -> None:
        self.scroll_relative(x=-max(8, self.scrollable_content_region.width // 3), animate=False)

    def columns_hidden(self) -> bool:
        """Columns to the right of what is on screen (the title says so: the scrollbar alone is easy to miss)."""
        return self.row_count > 0 and self.max_scroll_x - self.scroll_x > 2   # more than a column's padding

    def _step_index(self) -> int | None:
        if self.plan_view.plan is None or not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return int(key) if key is not None else None

    def action_approve(self) -> None:
        self.plan_view.post_message(PlanView.Approve(self.plan_view.progress.checked() if self.plan_view.progress else []))

    def action_reject(self) -> None:
        self.plan_view.post_message(PlanView.Reject())

    def action_toggle(self) -> None:  # type: ignore[override]  # the step toggle (space), not DOMNode's toggle(attr)
        i = self._step_index()
        if i is not None:
            self.plan_view.toggle(i)

    def action_edit(self) -> None:
        i = self._step_index()
        if i is not None:
            self.plan_view.post_message(PlanView.Edit(i))

    def action_back(self) -> None:
        self.plan_view.post_message(PlanView.Back())


class PlanView(Vertical):
    class Approve(Message):
        def __init__(self, steps: list[int]) -> None:
            super().__init__()
            self.steps = steps

    class Reject(Message):
        pass

    class Edit(Message):
        def __init__(self, index: int) -> None:
            super().__init__()
            self.index = index

    class Back(Message):
        pass

    def __init__(self, clock: Callable[[], float] = time.monotonic, **kw: Any) -> None:
        super().__init__(**kw)
        self.plan: Any = None
        self.progress: PlanProgress | None = None
        self.clock = clock

    @property
    def awaiting_approval(self) -> bool:
        p = self.progress
        return self.plan is not None and p is not None and not p.running and not p.finished

    def compose(self) -> ComposeResult:
        yield Static("No plan yet: type a request above and press Enter.", id="plan-title")
        yield PlanTable(self, id="plan-table")
        yield Static("", id="plan-detail")
        with Horizontal(id="plan-buttons"):
            yield Button("Approve (a)", id="btn-approve", variant="success", compact=True, disabled=True)
            yield Button("Reject (r)", id="btn-reject", variant="error", compact=True, disabled=True)
            yield Button("Toggle (space)", id="btn-toggle", compact=True, disabled=True)
            yield Button("Edit (e)", id="btn-edit", compact=True, disabled=True)
        yield PlanLog(id="exec-log")

    def on_mount(self) -> None:
        t = self.table
        for key, label in COLUMNS:
            t.add_column(label, key=key)
        self.set_interval(0.5, self._tick)

    @property
    def table(self) -> PlanTable:
        return self.query_one(PlanTable)

    @property
    def exec_log(self) -> PlanLog:
        return self.query_one("#exec-log", PlanLog)

    # ---- showing ----------------------------------------------------------------------------

    def show_plan(self, plan: Any) -> None:
        self.plan = plan
        self.progress = PlanProgress((s.index, list(s.targets)) for s in plan.steps)
        t = self.table
        t.clear()
        for s in plan.steps:
            t.add_row(*self._cells(s), key=str(s.index))
        self.update_title()
        self.call_after_refresh(self.update_title)  # the table's width is known after it is laid out
        self._update_detail()
        self._update_buttons()
        self.table.refresh_bindings()

    def clear_plan(self, title: str) -> None:
        self.plan = None
        self.progress = None
        self.table.clear()
        self.query_one("#plan-title", Static).update(Text(title))
        self.query_one("#plan-detail", Static).update("")
        self._update_buttons()
        self.table.refresh_bindings()

    def replace_plan(self, plan: Any) -> None:
        """The same steps with edited params (toggles kept)."""
        checked = set(self.progress.checked()) if self.progress else None
        self.show_plan(plan)
        if checked is not None and self.progress is not None:
            for i, s in self.progress.steps.items():
                s.checked = i in checked
            self.refresh_steps()

    def _cells(self, s: Any) -> list[Any]:
        st = self.progress.steps[s.index] if self.progress else None
        nodes = ", ".join(s.targets)
        mark = Text("✓" if st is None or st.checked else "·", style="bold green" if st is None or st.checked else "dim")
        status = st.label(self.clock()) if st else ""
        style = next((v for k, v in _STATUS_STYLE.items() if status.startswith(k)), "")
        # Text, not str: a str cell is markup, and these come from the model and the nodes.
        return [mark, str(s.index), Text(printable(nodes, limit=400)), Text(printable(f"{s.service}.{s.method}")),
                Text(printable(fmt_params(s.params), limit=400)), Text(printable(status, limit=200), style=style),
                Text(printable(s.fact.why or "—", limit=400)), Text(printable(s.reason or "—", limit=400))]

    def refresh_steps(self) -> None:
        if self.plan is None:
            return
        t = self.table
        for s in self.plan.steps:
            for (key, _), value in zip(COLUMNS, self._cells(s), strict=False):
                t.update_cell(str(s.index), key, value, update_width=key in ("status", "params"))
        self.update_title()
        self._update_buttons()
        self.table.refresh_bindings()

    def update_title(self) -> None:
        p, plan = self.progress, self.plan
        if plan is None or p is None:
            return
        n = len(plan.steps)
        head = f"Plan {plan.hash[:12]} · {n} step{'s' if n != 1 else ''}"
        if p.running:
            tail = "running…"
        elif p.finished:
            tail = "finished"
        else:
            chosen = len(p.checked())
            tail = f"needs approval ({chosen} of {n} checked)" if chosen != n else "needs approval"
        hint = (" · more columns: → scrolls", "dim italic") if self.table.columns_hidden() else ""
        self.query_one("#plan-title", Static).update(Text.assemble((head, "bold"), " · ", tail, hint))

    def _update_detail(self) -> None:
        if self.plan is None:
            return
        i = self.table._step_index()
        if i is None:
            return
        s = self.plan.step(i)
        text = Text()
        text.append(f"step {s.index}: ", style="bold")
        text.append(printable(f"{s.service}.{s.method} {fmt_params(s.params)} on {', '.join(s.targets)}",
                              limit=600) + "\n")
        text.append("why: ", style="bold")
        text.append(printable(s.fact.why or "—", limit=600) + "\n")
        text.append("reason: ", style="bold")
        text.append(printable(s.reason or "—", limit=600))
        self.query_one("#plan-detail", Static).update(text)

    def _update_buttons(self) -> None:
        waiting = self.awaiting_approval
        for bid in ("btn-approve", "btn-reject", "btn-toggle", "btn-edit"):
            self.query_one(f"#{bid}", Button).disabled = not waiting

    def _tick(self) -> None:
        """While a step runs, only its status cell moves (the elapsed time)."""
        if self.progress is None or not self.progress.running or self.plan is None:
            return
        for s in self.plan.steps:
            st = self.progress.steps[s.index]
            if st.status == "running":
                label = st.label(self.clock())
                self.table.update_cell(str(s.index), "status", Text(label, style=_STATUS_STYLE["running"]),
                                       update_width=True)

    def toggle(self, index: int) -> None:
        if self.progress is None or not self.awaiting_approval:
            return
        self.progress.toggle(index)
        self.refresh_steps()

    def note(self, *parts: Any) -> None:
        self.exec_log.write(Text.assemble(*parts))

    def begin(self, title: str) -> None:
        """A new request: its own block in the log."""
        self.exec_log.begin(title)

    # ---- events -----------------------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#plan-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._update_detail()

    @on(DataTable.RowSelected, "#plan-table")
    def _selected(self, event: DataTable.RowSelected) -> None:
        # Enter (or a click on the highlighted row) toggles it, like space.
        event.stop()
        if event.row_key.value is not None:
            self.toggle(int(event.row_key.value))

    @on(Button.Pressed, "#plan-buttons Button")
    def _button(self, event: Button.Pressed) -> None:
        event.stop()
        action = {"btn-approve": "approve", "btn-reject": "reject", "btn-toggle": "toggle",
                  "btn-edit": "edit"}[event.button.id or ""]
        self.table.focus()
        getattr(self.table, f"action_{action}")()
