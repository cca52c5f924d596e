"""The plan's log: one collapsible block per request, with its plan, approval, step results and audit under it.

A new request collapses the older blocks and opens its own; a revision after
feedback stays in the same block.  Text is kept per block (at most
``MAX_LINES`` lines, ``MAX_BLOCKS`` blocks) and rendered as a wrapped
``Static``, so it re-flows after a resize; the view follows the newest line.
``c`` (while the log has focus) clears it.
"""

from __future__ import annotations

from typing import Any

from rich.markup import escape
from rich.text import Text
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Collapsible, Static

from cloudisense.node._text import printable

MAX_BLOCKS = 30
MAX_LINES = 300


class PlanBlock(Collapsible):
    def __init__(self, title: str) -> None:
        self.lines: list[Text] = []
        self.body = Static("", classes="plan-block-body")
        super().__init__(self.body, title=escape(printable(title, limit=120)), collapsed=False)

    def add(self, text: Text) -> None:
        self.lines = (self.lines + [text])[-MAX_LINES:]
        self.body.update(Text("\n").join(self.lines))


class PlanLog(VerticalScroll):
    BINDINGS = [Binding("c", "clear", "Clear log")]

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.current: PlanBlock | None = None

    @property
    def blocks(self) -> list[PlanBlock]:
        return list(self.query(PlanBlock))

    def begin(self, title: str) -> PlanBlock:
        """A block for a new request; the older ones fold away."""
        for b in self.blocks:
            b.collapsed = True
        old = self.blocks[: max(0, len(self.blocks) - MAX_BLOCKS + 1)]
        for b in old:
            b.remove()
        self.current = PlanBlock(title)
        self.mount(self.current)
        self.call_after_refresh(self.scroll_end, animate=False)
        return self.current

    def write(self, text: Text) -> None:
        if self.current is None:
            self.begin("console")
        assert self.current is not None
        self.current.add(text)
        self.call_after_refresh(self.scroll_end, animate=False)

    def text(self) -> str:
        """Everything in the log as plain text (for tests and copy)."""
        return "\n".join(line.plain for b in self.blocks for line in b.lines)

    def action_clear(self) -> None:
        for b in self.blocks:
            b.remove()
        self.current = None
