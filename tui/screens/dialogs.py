"""Small modal questions: the feedback after a rejection, and the confirmation of a wide or stopping plan.

Both return through ``dismiss``: :class:`FeedbackScreen` the feedback text
(``""``: reject without revising; None: cancelled, the plan still waits),
:class:`ConfirmScreen` True / False.  Text from the plan (node ids, process
names) is data: it is shown as ``Text``, never parsed as markup.
"""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from cloudisense.node._text import printable

from ..widgets.footer import ConsoleFooter


class FeedbackScreen(ModalScreen["str | None"]):
    BINDINGS = [Binding("escape", "cancel", "Cancel (keep the plan)")]

    def __init__(self, plan_hash: str) -> None:
        super().__init__()
        self.plan_hash = plan_hash

    def compose(self) -> ComposeResult:
        with Vertical(id="feedback-box", classes="dialog"):
            yield Static(Text.assemble(("Reject plan ", "bold"), (self.plan_hash[:12], "bold"),
                                       " — what should change?"))
            yield Input(placeholder="e.g. not node-b · node-c is in maintenance  (empty: just reject)",
                        id="feedback-input")
            yield Static("Enter: reject (and revise the plan with your words) · Esc: keep the plan", classes="hint")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#feedback-box").border_title = "Reject"
        self.query_one("#feedback-input", Input).focus()

    @on(Input.Submitted, "#feedback-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value.strip())

    def action_cancel(self) -> None:
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "Yes, run it"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, title: str, lines: list[str]) -> None:
        super().__init__()
        self.title_text = title
        self.lines = lines

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(Text(printable(self.title_text, limit=200), style="bold"))
            yield Static(Text("\n".join(printable(line, limit=400) for line in self.lines)), id="confirm-lines")
            yield Static("y: run it · n / Esc: back to the plan (nothing runs)", classes="hint")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#confirm-box").border_title = "Confirm"
        self.query_one("#confirm-box").can_focus = True
        self.query_one("#confirm-box").focus()

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
