"""The events pane: subscribe to a topic on any node and watch what arrives.

Heartbeats and other ``$``-topics (``$cluster/node/state`` every 2 s, ``$sys/stats``) are hidden by default
(``h`` shows them); ``/`` filters by text, ``p`` pauses (what arrives meanwhile is kept and shown on resume),
``c`` clears.  These keys work while the event list has focus (Tab from the topic box).
Events are data: node, topic and payload go through :func:`printable` before the terminal sees them.
"""

from __future__ import annotations

import json
import time
from collections import deque
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, RichLog, Static

from cloudisense.node._text import printable

from .._state import parse_watch

KEEP = 1000  # events kept for re-filtering


def event_line(ev: dict[str, Any]) -> Text:
    ts = ev.get("ts")
    when = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "--:--:--"
    data = json.dumps(ev.get("data"), ensure_ascii=False, separators=(",", ":"), default=str)
    return Text.assemble((when, "dim"), " ", (printable(ev.get("node"), limit=80), "bold"), " ",
                         (printable(ev.get("topic"), limit=200), "cyan"), " ", printable(data, limit=300))


class FilterInput(Input):
    """A ``/`` filter box: typing filters at once, Enter keeps the filter (an empty one closes the box), Escape
    clears and closes it."""

    BINDINGS = [Binding("enter", "submit", "Keep filter"), Binding("escape", "clear_filter", "Clear filter")]

    def open(self) -> None:
        self.add_class("-open")
        self.focus()

    async def action_submit(self) -> None:
        if not self.value.strip():
            self.remove_class("-open")
        await super().action_submit()

    def action_clear_filter(self) -> None:
        self.value = ""
        self.remove_class("-open")
        self.post_message(Input.Submitted(self, ""))


class EventLog(RichLog):
    BINDINGS = [
        Binding("slash", "filter", "Filter"),
        Binding("h", "toggle_system", "$-topics"),
        Binding("p", "pause", "Pause"),
        Binding("c", "clear_events", "Clear"),
        Binding("j", "scroll_down", "", show=False),
        Binding("k", "scroll_up", "", show=False),
    ]

    def action_filter(self) -> None:
        self.parent.open_filter()  # type: ignore[union-attr]

    def action_toggle_system(self) -> None:
        self.parent.toggle_system()  # type: ignore[union-attr]

    def action_pause(self) -> None:
        self.parent.toggle_pause()  # type: ignore[union-attr]

    def action_clear_events(self) -> None:
        self.parent.clear_events()  # type: ignore[union-attr]


class EventsPane(Vertical):
    class Watch(Message):
        """Subscribe to ``topic`` on ``node`` (None: the connected node)."""

        def __init__(self, node: str | None, topic: str) -> None:
            super().__init__()
            self.node = node
            self.topic = topic

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.kept: deque[dict[str, Any]] = deque(maxlen=KEEP)
        self.held: deque[dict[str, Any]] = deque(maxlen=KEEP)  # arrived while paused
        self.show_system = False
        self.paused = False
        self.text_filter = ""
        self.hidden = 0
        self._status = ("not watching anything", False)

    def compose(self) -> ComposeResult:
        yield Input(placeholder="NODE TOPIC, e.g. node-b process/#  (Enter subscribes)", id="watch-input",
                    compact=True)
        yield FilterInput(placeholder="filter events (Enter keeps, Esc clears)", id="events-filter", compact=True)
        yield Static("not watching anything", id="watch-status")
        yield EventLog(id="events-log", wrap=False, markup=False, max_lines=KEEP)

    @property
    def log_view(self) -> EventLog:
        return self.query_one(EventLog)

    @on(Input.Submitted, "#watch-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            node, topic = parse_watch(event.value)
        except ValueError as e:
            self.status(str(e), error=True)
            return
        self.post_message(self.Watch(node, topic))  # focus stays here, to adjust the topic; Tab: the list

    def watching(self, topic: str) -> None:
        """A new watch: $-topics are shown when the watch asked for them (``$cluster/#``), hidden otherwise."""
        self.show_system = topic.startswith("$")
        self.redraw()

    def prefill(self, node: str, topic: str = "process/#") -> None:
        inp = self.query_one("#watch-input", Input)
        inp.value = f"{node} {topic}"
        inp.cursor_position = len(inp.value)

    # ---- filter, pause, clear -----------------------------------------------------------------

    def open_filter(self) -> None:
        self.query_one("#events-filter", FilterInput).open()

    @on(Input.Changed, "#events-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.text_filter = event.value.strip().lower()
        self.redraw()

    @on(Input.Submitted, "#events-filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.log_view.focus()

    def toggle_system(self) -> None:
        self.show_system = not self.show_system
        self.redraw()

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            while self.held:
                self._keep(self.held.popleft())
        self._show_status()

    def clear_events(self) -> None:
        self.kept.clear()
        self.held.clear()
        self.redraw()

    def _shows(self, ev: dict[str, Any], line: Text | None = None) -> bool:
        if not self.show_system and str(ev.get("topic") or "").startswith("$"):
            return False
        if self.text_filter:
            return self.text_filter in (line or event_line(ev)).plain.lower()
        return True

    def redraw(self) -> None:
        log = self.log_view
        log.clear()
        self.hidden = 0
        for ev in self.kept:
            line = event_line(ev)
            if self._shows(ev, line):
                log.write(line)
            else:
                self.hidden += 1
        self._show_status()

    # ---- arriving events ----------------------------------------------------------------------

    def add_event(self, ev: dict[str, Any]) -> None:
        if self.paused:
            self.held.append(ev)
            self._show_status()
            return
        self._keep(ev)

    def _keep(self, ev: dict[str, Any]) -> None:
        self.kept.append(ev)
        line = event_line(ev)
        if self._shows(ev, line):
            self.log_view.write(line)
        else:
            self.hidden += 1
            self._show_status()

    def status(self, text: str, error: bool = False) -> None:
        self._status = (printable(text, limit=300), error)
        self._show_status()

    def _show_status(self) -> None:
        text, error = self._status
        out = Text(text, style="bold red" if error else "dim")
        extra = []
        if self.paused:
            extra.append((f"PAUSED ({len(self.held)} waiting, p resumes)", "bold yellow"))
        if self.hidden:
            why = "filtered" if self.text_filter else "$-topics"
            extra.append((f"{self.hidden} hidden ({why}; {'/ edits' if self.text_filter else 'h shows'})", "dim"))
        elif self.show_system:
            extra.append(("showing $-topics (h hides)", "dim"))
        for part, style in extra:
            out.append(" · ")
            out.append(part, style=style)
        self.query_one("#watch-status", Static).update(out)
