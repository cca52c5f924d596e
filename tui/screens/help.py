"""The help screen (``?`` on an empty Ask box, or F1 anywhere): every key, and what the planner understands.

The key table is read from the widgets' own ``BINDINGS``, so it cannot
drift from what the keys do; the planner examples come from
:mod:`cloudisense.tui._grammar` (each one accepted by the planner's parser)
with the live cluster's names.
"""

from __future__ import annotations

from typing import Any, Iterable

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .._grammar import examples, grammar_text
from ..widgets.footer import ConsoleFooter

# Keys that are not a Binding of one of the console's widgets (Textual's own, or typed text).
EXTRA_KEYS = (
    ("Everywhere", "tab / shift+tab", "next / previous widget"),
    ("Everywhere", "ctrl+p", "command palette: go to node, watch a topic, approve/reject, theme, dashboard"),
    ("Everywhere", "escape", "back to the Ask box (Escape then a letter types the letter there)"),
    ("Tables", "↑ ↓ j k", "move the cursor (PgUp PgDn Home End too)"),
)


def _key_name(key: str) -> str:
    names = {"question_mark": "?", "slash": "/", "space": "space", "escape": "esc", "enter": "enter",
             "ctrl+q": "ctrl+q"}
    return " / ".join(names.get(k.strip(), k.strip()) for k in key.split(","))


def key_rows(sections: Iterable[tuple[str, Any]]) -> list[tuple[str, str, str]]:
    """(section, keys, what) from each class's BINDINGS, skipping bindings without a description."""
    rows: list[tuple[str, str, str]] = []
    for section, cls in sections:
        for b in getattr(cls, "BINDINGS", []):
            if isinstance(b, Binding) and b.description:
                rows.append((section, _key_name(b.key), b.description))
    return rows


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,f1,q,question_mark", "close", "Close help")]

    def __init__(self, sections: list[tuple[str, Any]], nodes: list[str], processes: list[str]) -> None:
        super().__init__()
        self.sections = sections
        self.nodes = nodes
        self.processes = processes

    def compose(self) -> ComposeResult:
        keys = Table(box=None, show_header=False, pad_edge=False, expand=True)
        keys.add_column(style="dim", no_wrap=True, max_width=14)
        keys.add_column(style="bold cyan", max_width=16)
        keys.add_column(ratio=1)
        last = ""
        for section, key, what in [*key_rows(self.sections), *EXTRA_KEYS]:
            keys.add_row(section if section != last else "", key, what)
            last = section
        planner = Text()
        planner.append("Ask in plain words; nothing runs before you approve the plan.\n", style="bold")
        grammar = grammar_text()
        if grammar:
            planner.append(grammar + "\n")
        planner.append("\nFor example (with this cluster's names):\n", style="bold")
        for ex in examples(self.nodes, self.processes):
            planner.append("  " + ex + "\n", style="green")
        planner.append("\nAfter Reject, type what was wrong (\"not node-b\", \"node-c is in maintenance\") and "
                       "the planner revises the plan.", style="dim")
        with VerticalScroll(id="help-box") as box:
            box.border_title = "Help — keys and requests  (esc closes)"
            yield Static(Text("Keys", style="bold underline"))
            yield Static(keys, id="help-keys")
            yield Static(Text("\nRequests", style="bold underline"))
            yield Static(planner, id="help-planner")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()

    def action_close(self) -> None:
        self.dismiss(None)


__all__ = ["HelpScreen"]
