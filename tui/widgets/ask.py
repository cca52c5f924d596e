"""The Ask box: the request line, with history (up/down) and Tab completion from the live cluster.

Its placeholder is a hint in dim italics that starts with ``e.g.``, never a
request that looks typed.  Up/down walk the persisted
:class:`~cloudisense.tui._history.History`; Tab completes the word at the
cursor from the planner's verbs and the cluster's node ids and process
names (and moves focus on when there is nothing to complete); ``?`` on an
empty box opens the help.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from textual import events
from textual.binding import Binding
from textual.widgets import Input

from .._grammar import common_prefix, completions
from .._history import History

PLACEHOLDER = "e.g. restart logger on the coolest node   ·  ? help  ↑ history"


class AskInput(Input):
    BINDINGS = [
        Binding("enter", "submit", "Plan it"),
        Binding("up", "history_older", "History"),
        Binding("down", "history_newer", "Newer", show=False),
        Binding("tab", "complete", "Complete"),
    ]

    DEFAULT_CSS = """
    AskInput > .input--placeholder { color: $text-muted 70%; text-style: italic; }
    """

    def __init__(self, history: History, names: Callable[[], tuple[Iterable[str], Iterable[str]]], **kw: Any) -> None:
        super().__init__(placeholder=PLACEHOLDER, **kw)
        self.history = history
        self.names = names  # () -> (node ids, process names) of the live cluster
        self.last_candidates: list[str] = []

    async def _on_key(self, event: events.Key) -> None:
        # '?' on an empty box opens the help; once something is typed it is a character.
        if event.character == "?" and not self.value:
            event.stop()
            event.prevent_default()
            await self.run_action("app.help")
        # Anything else: Textual goes on to Input._on_key (handlers run down the MRO unless prevented).

    def remember(self, text: str) -> None:
        self.history.add(text)

    def action_history_older(self) -> None:
        entry = self.history.older(self.value)
        if entry is not None:
            self.value = entry
            self.cursor_position = len(entry)

    def action_history_newer(self) -> None:
        entry = self.history.newer()
        if entry is not None:
            self.value = entry
            self.cursor_position = len(entry)

    def action_complete(self) -> None:
        before, after = self.value[: self.cursor_position], self.value[self.cursor_position:]
        start = len(before) - len(before.split(" ")[-1]) if before and not before.endswith(" ") else len(before)
        word = before[start:]
        if not word:
            self.last_candidates = []
            self.screen.focus_next()
            return
        nodes, procs = self.names()
        cands = completions(word, nodes=nodes, processes=procs, first=not before[:start].strip())
        self.last_candidates = cands
        if not cands:
            self.app.bell()
            return
        if len(cands) == 1:
            fill = cands[0] + ("" if after.startswith(" ") else " ")
        else:
            fill = common_prefix(cands) if len(common_prefix(cands)) > len(word) else word
            self.app.notify("  ".join(cands[:12]) + ("  …" if len(cands) > 12 else ""), title="Tab: one of", markup=False,
                            timeout=3)
        self.value = before[:start] + fill + after
        self.cursor_position = start + len(fill)
