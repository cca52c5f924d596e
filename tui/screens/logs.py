"""A process's output, followed live (``l`` on a node row or a process, like k9s ``l``).

The screen subscribes to ``$process/NAME/log`` on the node (any node of the
cluster: the connected node relays), then reads the last lines with
``supervisor.logs``; from then on every line the process writes arrives as an
event (the node publishes them only while someone follows).  From a node row
it follows every process of the node (``$process/+/log``), each line
prefixed with its process.  ``p`` pauses (lines keep arriving and wait), ``/``
searches (only matching lines, the match highlighted), ``c`` clears, Esc goes
back and ends the subscription.  The lines are data from the process:
escaped with :func:`printable` and never read as markup.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Input, RichLog, Static

from cloudisense.node._text import printable

from .._logtail import LogLine, LogTail
from ..widgets.events_pane import FilterInput
from ..widgets.footer import ConsoleFooter

if TYPE_CHECKING:
    from ..app import CloudisenseApp

FIRST_LINES = 200  # read from supervisor.logs when the follow starts
KEEP = 2000        # lines kept (for searching again); as many more may wait while paused


class LogView(RichLog):
    BINDINGS = [
        Binding("slash", "search", "Search"),
        Binding("p", "pause", "Pause"),
        Binding("c", "clear_lines", "Clear"),
        Binding("j", "scroll_down", "", show=False),
        Binding("k", "scroll_up", "", show=False),
        Binding("G", "scroll_end", "", show=False),
    ]

    def action_search(self) -> None:
        self.screen.open_search()  # type: ignore[attr-defined]

    def action_pause(self) -> None:
        self.screen.toggle_pause()  # type: ignore[attr-defined]

    def action_clear_lines(self) -> None:
        self.screen.clear_lines()  # type: ignore[attr-defined]


class LogsScreen(Screen[None]):
    BINDINGS = [Binding("escape,q", "close", "Back")]

    app: CloudisenseApp

    def __init__(self, node: str, processes: list[str], process: str | None = None) -> None:
        """Follow ``process`` on ``node``, or (None) every one of ``processes`` (the node's, as last seen)."""
        super().__init__()
        self.node = node
        self.process = process
        self.processes = [process] if process else list(processes)
        self.tail = LogTail()
        self.kept: deque[LogLine] = deque(maxlen=KEEP)
        self.held: deque[LogLine] = deque(maxlen=KEEP)   # arrived while paused
        self.paused = False
        self.search = ""
        self.state = "subscribing …"
        self.state_error = False

    @property
    def topic(self) -> str:
        return f"$process/{self.process or '+'}/log"

    def compose(self) -> ComposeResult:
        yield Static(id="logs-head")
        yield FilterInput(placeholder="search the lines (Enter keeps, Esc clears)", id="logs-search", compact=True)
        yield LogView(id="logs-view", wrap=True, markup=False, max_lines=KEEP)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.show_head()
        self.query_one(LogView).focus()
        self.run_follow()

    # ---- the subscription --------------------------------------------------------------------

    @work(exclusive=True, group="logs", exit_on_error=False)
    async def run_follow(self) -> None:
        from .._follow import follow

        app = self.app

        async def read_first() -> None:
            for name in self.processes:
                got = await app.conn.call(self.node, "supervisor", "logs", {"name": name, "lines": FIRST_LINES},
                                          app.call_timeout)
                if isinstance(got, dict):
                    self.show(self.tail.load(name, got.get("lines") or [], got.get("next_seq")))

        def status(state: str, detail: str) -> None:
            self.state, self.state_error = {
                "up": ("following", False),
                "lost": ("link lost; following again when the node is back", True),
            }.get(state, (f"cannot follow: {detail}", True))
            self.show_head()

        await follow(app.conn, self.node, self.topic, on_up=read_first, on_status=status,
                     on_event=lambda ev: self.show(self.tail.add(ev.get("data"))))

    # ---- showing the lines ---------------------------------------------------------------------

    def show(self, lines: list[LogLine]) -> None:
        if self.paused:
            self.held.extend(lines)
        else:
            self.kept.extend(lines)
            log = self.query_one(LogView)
            for line in lines:
                if self.matches(line):
                    log.write(self.line_text(line))
        self.show_head()

    def matches(self, line: LogLine) -> bool:
        return not self.search or self.search in line.text.lower() or line.note

    def line_text(self, line: LogLine) -> Text:
        text = printable(line.text, limit=2000)
        out = Text()
        if len(self.processes) != 1:
            out.append(f"{printable(line.process, limit=40)} ", style="bold cyan")
        if line.note:
            out.append(text, style="italic yellow")
            return out
        # The node's lines start with its timestamp (2026-11-30T13:48:18.123): dimmed, not doubled.
        stamp, sep, rest = text.partition(" ")
        if sep and len(stamp) >= 19 and stamp[:4].isdigit() and stamp[10:11] == "T":
            out.append(stamp[11:], style="dim")
            out.append(" ")
            text = rest
        out.append(text, style="dim italic" if text.startswith("[supervisor]") else "")
        if self.search:
            out.highlight_words([self.search], style="reverse", case_sensitive=False)
        return out

    def redraw(self) -> None:
        log = self.query_one(LogView)
        log.clear()
        for line in self.kept:
            if self.matches(line):
                log.write(self.line_text(line))
        self.show_head()

    def show_head(self) -> None:
        what = self.process or (", ".join(self.processes) if self.processes else "every process")
        head = Text()
        head.append(" logs ", style="bold reverse")
        head.append(f" {printable(what, limit=60)} on {printable(self.node, limit=60)}  ", style="bold")
        head.append(printable(self.state, limit=200), style="bold red" if self.state_error else "dim")
        shown = sum(1 for line in self.kept if not line.note)
        head.append(f" · {shown} line{'s' if shown != 1 else ''}", style="dim")
        if self.paused:
            head.append(f" · PAUSED ({len(self.held)} waiting, p resumes)", style="bold yellow")
        if self.search:
            head.append(f" · search {printable(self.search, limit=40)!r} (/ edits)", style="dim")
        self.query_one("#logs-head", Static).update(head)

    # ---- keys ----------------------------------------------------------------------------------

    def toggle_pause(self) -> None:
        self.paused = not self.paused
        if not self.paused:
            held = list(self.held)
            self.held.clear()
            self.show(held)
        self.show_head()

    def clear_lines(self) -> None:
        self.kept.clear()
        self.held.clear()
        self.redraw()

    def open_search(self) -> None:
        self.query_one("#logs-search", FilterInput).open()

    @on(Input.Changed, "#logs-search")
    def _search_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.search = event.value.strip().lower()
        self.redraw()

    @on(Input.Submitted, "#logs-search")
    def _search_done(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one(LogView).focus()

    def action_close(self) -> None:
        self.dismiss(None)
