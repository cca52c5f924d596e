"""Command palette (ctrl+p) providers: go to a node, watch a topic, approve or reject, theme, dashboard.

Each hit calls a method of the app or the main screen, so the palette does
exactly what the keys do (approve and reject go through the same path as
``a`` / ``r``).  Names from the cluster are data: shown with
:func:`~cloudisense.node._text.printable`, never as markup.
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Iterator
from urllib.parse import urlsplit

from textual.command import DiscoveryHit, Hit, Hits, Provider

from cloudisense.node._text import printable

if TYPE_CHECKING:
    from .app import CloudisenseApp

WATCH_TOPICS = ("process/#", "metrics/#", "$cluster/#", "#")


def dashboard_url(ws_url: str) -> str:
    """``ws://host:8765/ws`` → ``http://host:8765/`` (the node serves its dashboard at /)."""
    parts = urlsplit(ws_url)
    scheme = "https" if parts.scheme == "wss" else "http"
    return f"{scheme}://{parts.netloc}/"


class ConsoleCommands(Provider):
    """The console's own commands, built from the live cluster and the plan on screen."""

    @property
    def console(self) -> CloudisenseApp:
        return self.app  # type: ignore[return-value]

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], Any]]]:
        app = self.console
        main = app.main_screen
        for row in app.cluster.rows():
            nid = printable(row.id, limit=80)
            yield f"Go to node {nid}", "the node's detail view: metrics, services, processes, events", partial(app.go_to_node, row.id)
            for proc in row.processes:
                if name := proc.get("name"):
                    yield (f"Logs of {printable(name, limit=60)} on {nid}", "follow its output live (same as l)",
                           partial(app.follow_logs, row.id, str(name)))
            for topic in WATCH_TOPICS:
                yield (f"Watch {topic} on {nid}", "subscribe in the Events tab",
                       partial(app.watch_topic, row.id, topic))
        if main is not None and main.plan_view.awaiting_approval and main.plan_view.plan is not None:
            h = main.plan_view.plan.hash[:12]
            yield f"Approve plan {h}", "run the checked steps (same as a)", main.plan_view.table.action_approve
            yield f"Reject plan {h}", "reject, with feedback to revise (same as r)", main.plan_view.table.action_reject
        for p in app.pending_plans():
            pid = printable(p.id, limit=40)
            yield (f"Approve pending plan {pid}", f"filed by {printable(p.requested_by or '?', limit=40)} via MCP",
                   partial(app.open_pending, p.id))
            yield f"Reject pending plan {pid}", "in the Pending tab", partial(app.open_pending, p.id)
        for name in sorted(app.available_themes):
            yield f"Switch theme: {name}", "", partial(setattr, app, "theme", name)
        url = dashboard_url(app.url)
        yield "Open the dashboard", url, partial(app.open_url, url)
        yield "Help: keys and requests", "F1 or ? on an empty Ask box", app.action_help

    async def discover(self) -> Hits:
        for name, help_text, callback in self._commands():
            if name.startswith(("Go to node", "Approve", "Reject", "Open the dashboard", "Help")):
                yield DiscoveryHit(name, callback, help=help_text or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, help_text, callback in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text or None)
