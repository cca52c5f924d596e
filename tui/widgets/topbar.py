"""The header: which node, which model, and the state of the link."""

from __future__ import annotations

from rich.text import Text
from textual.reactive import reactive
from textual.widgets import Static

_CONN_STYLE = {"connected": "bold green", "connecting": "yellow", "reconnecting": "bold yellow",
               "failed": "bold red"}


class TopBar(Static):
    node: reactive[str] = reactive("")
    model: reactive[str] = reactive("")
    conn: reactive[str] = reactive("connecting")
    detail: reactive[str] = reactive("")
    url: reactive[str] = reactive("")

    def render(self) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(" CloudiSENSE ", style="bold reverse")
        t.append("  node ", style="dim")
        t.append(self.node or self.url.removeprefix("ws://").removeprefix("wss://").removesuffix("/ws") or "?",
                 style="bold")
        t.append("  model ", style="dim")
        t.append(self.model or "?", style="bold")
        t.append("  ")
        t.append("● " if self.conn == "connected" else "○ ", style=_CONN_STYLE.get(self.conn, ""))
        t.append(self.conn, style=_CONN_STYLE.get(self.conn, ""))
        if self.detail:
            t.append(f": {self.detail}", style="dim")
        return t
