"""The events pane: subscribe to a topic on any node and watch what arrives."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import Input, RichLog, Static

from .._state import parse_watch


class EventsPane(Vertical):
    class Watch(Message):
        """Subscribe to ``topic`` on ``node`` (None: the connected node)."""

        def __init__(self, node: str | None, topic: str) -> None:
            super().__init__()
            self.node = node
            self.topic = topic

    def compose(self) -> ComposeResult:
        yield Input(placeholder="NODE TOPIC, e.g. node-b process/#  (Enter subscribes)", id="watch-input",
                    compact=True)
        yield Static("not watching anything", id="watch-status")
        yield RichLog(id="events-log", wrap=False, markup=False, max_lines=1000)

    @on(Input.Submitted, "#watch-input")
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            node, topic = parse_watch(event.value)
        except ValueError as e:
            self.status(str(e), error=True)
            return
        self.post_message(self.Watch(node, topic))

    def prefill(self, node: str) -> None:
        inp = self.query_one("#watch-input", Input)
        inp.value = f"{node} "
        inp.cursor_position = len(inp.value)

    def status(self, text: str, error: bool = False) -> None:
        self.query_one("#watch-status", Static).update(Text(text, style="bold red" if error else "dim"))

    def add_event(self, ev: dict[str, Any]) -> None:
        ts = ev.get("ts")
        when = time.strftime("%H:%M:%S", time.localtime(ts)) if isinstance(ts, (int, float)) else "--:--:--"
        data = json.dumps(ev.get("data"), ensure_ascii=False, separators=(",", ":"), default=str)
        if len(data) > 300:
            data = data[:300] + "…"
        self.query_one("#events-log", RichLog).write(
            Text.assemble((when, "dim"), " ", (str(ev.get("node")), "bold"), " ", (str(ev.get("topic")), "cyan"),
                          " ", data))
