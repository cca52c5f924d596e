"""The CloudiSENSE operator console (Textual).

Built by :func:`make_app` so tests can hand it a node client factory, a
model, an audit log and clocks::

    app = make_app(url="ws://127.0.0.1:8765/ws", model="offline")
    app.run()

The app owns the link to the node (one :class:`cloudisense.node.Client` with
``reconnect=True``, and a worker that follows ``$cluster/#``, the node's own
``metrics/#`` and ``process/#``, and ``$sys/stats``, and loads ``node.cluster``
every time the client is connected; the client's reconnect loop brings the
link back when the node goes away), the cluster model the table renders, and
the agent.  The main
screen (:mod:`.screens.main`) owns the interaction.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable

from textual import events, work
from textual.app import App
from textual.binding import Binding
from textual.keys import _character_to_key
from textual.screen import Screen

from cloudisense.node._config import DEFAULT_URL
from cloudisense.node._text import printable
from cloudisense.tools._connection import CLUSTER_QUERY

from ._history import HISTORY_FILE, History
from ._link import ClientFactory, LinkState, LiveConnection, default_client_factory
from ._messages import LinkChanged, StatsArrived
from ._state import ClusterModel, model_label
from .commands import ConsoleCommands
from .screens import MainScreen

log = logging.getLogger(__name__)

# Followed on the connected node: the cluster (every node's heartbeat, online/offline),
# that node's own metrics and processes (it sends no $cluster heartbeat about itself),
# and its RPC counters.
LINK_TOPICS = ("$cluster/#", "metrics/#", "process/#", "$sys/stats")


class _StepTap:
    """Passed to the agent as its session recorder: hands ``step`` records to the screen as they happen."""

    def __init__(self, app: CloudisenseApp, forward: Any = None) -> None:
        self.app = app
        self.forward = forward  # an optional real SessionRecorder

    def start(self, request: str, model: str, url: str | None = None, nonce: str | None = None) -> None:
        if self.forward is not None:
            self.forward.start(request, model, url, nonce=nonce)

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        if self.forward is not None:
            self.forward(kind, data)
        if kind == "step":
            for listener in list(self.app.step_listeners):
                listener(data)


class CloudisenseApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "CloudiSENSE"
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    BINDINGS = [
        Binding("ctrl+q", "quit", "Quit", priority=True),
        Binding("f1", "help", "Help", priority=True),
    ]

    def __init__(self, *, url: str = DEFAULT_URL, model: Any = None, token: str | None = None,
                 client_factory: ClientFactory | None = None, audit: Any = None,
                 clock: Callable[[], float] = time.time, monotonic: Callable[[], float] = time.monotonic,
                 call_timeout: float = 10.0, backoff_cap: float = 5.0, recorder: Any = None,
                 state_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        from cloudisense.agent import Agent, AuditLog, default_audit_path, make_model

        self.url = url
        self.token = token
        self.model = model if model is not None and not isinstance(model, str) else make_model(model)
        self.model_label = model_label(self.model)
        self.client_factory = client_factory or default_client_factory
        self.clock = clock
        self.monotonic = monotonic
        self.call_timeout = call_timeout
        self.backoff_cap = backoff_cap
        self.conn = LiveConnection()
        self.cluster = ClusterModel()
        self.stats: dict[str, Any] | None = None
        self.link_state = LinkState.CONNECTING
        self.step_listeners: list[Callable[[dict[str, Any]], None]] = []
        given_audit = audit is not None
        if audit is None or isinstance(audit, (str, os.PathLike)):
            audit = AuditLog(audit or default_audit_path())
        self.agent = Agent(self.conn, self.model, audit=audit, recorder=_StepTap(self, recorder),
                           timeout=call_timeout)
        # The state directory holds the request history (and the MCP pending plans): the one given, or the
        # audit log's directory, so a console started on a scratch audit log leaves the real one alone.
        if state_dir is None:
            from cloudisense.agent.pending import default_state_dir

            state_dir = (os.environ.get("CLOUDISENSE_STATE_DIR") or
                         (Path(audit.path).parent if given_audit else default_state_dir()))
        self.state_dir = Path(state_dir)
        from cloudisense.agent.pending import PendingStore

        self.pending_store = PendingStore(self.state_dir)
        self.history = History(self.state_dir / HISTORY_FILE)
        self.main_screen: MainScreen | None = None

    def get_default_screen(self) -> Screen[None]:
        self.main_screen = MainScreen()
        return self.main_screen

    def on_mount(self) -> None:
        self.run_link()

    # ---- keys -------------------------------------------------------------------------------

    async def on_event(self, event: events.Event) -> None:
        # Escape followed quickly by a key reaches us as alt+key (the terminal sends ESC then the key, and
        # the parser joins them within ESCDELAY).  The console binds no alt+ keys, so it is both: Escape
        # (its binding runs first, e.g. back to the Ask box), then the key, delivered to what has focus now.
        if isinstance(event, events.Key) and not event.is_forwarded and (key := _escaped_key(event)) is not None \
                and event.key not in self.active_bindings:
            if not await self._check_bindings("escape", priority=True) and not await self._check_bindings("escape"):
                await super().on_event(events.Key("escape", "\x1b"))
            await super().on_event(key)
            return
        await super().on_event(event)

    def action_help(self) -> None:
        from .screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):  # F1 again closes it
            self.screen.dismiss(None)
            return
        from .screens.main import help_sections

        rows = self.cluster.rows()
        self.push_screen(HelpScreen(help_sections(type(self)), [r.id for r in rows],
                                    sorted({str(p.get("name")) for r in rows for p in r.processes if p.get("name")})))

    def go_to_node(self, node: str) -> None:
        """The node's detail view (the cluster table's cursor moves to it too)."""
        from .screens.node_detail import NodeDetailScreen

        if self.main_screen is not None:
            self.main_screen.go_to_node(node)
        self.push_screen(NodeDetailScreen(node))

    def follow_logs(self, node: str, process: str | None = None) -> None:
        """Follow ``process``'s output on ``node`` live (None: every process of the node)."""
        from .screens.logs import LogsScreen

        row = self.cluster.nodes.get(node)
        names = [str(p.get("name")) for p in (row.processes if row else []) if p.get("name")]
        if process is None and not names:
            self.notify(f"{printable(node, limit=80)} supervises no process.", severity="warning", markup=False)
            return
        self.push_screen(LogsScreen(node, names, process))

    def ask(self, request: str) -> None:
        """Plan ``request`` as if typed in the Ask box (the same plan → approval path)."""
        if self.main_screen is not None:
            self.main_screen.ask(request)

    def watch_topic(self, node: str | None, topic: str) -> None:
        if self.main_screen is not None:
            self.main_screen.watch_topic(node, topic)

    def pending_plans(self) -> list[Any]:
        """Plans filed through MCP and waiting for approval (the Pending tab's list), at most 200."""
        try:
            return self.pending_store.list("pending")[:200]
        except OSError as e:
            log.warning("cannot read pending plans in %s: %s", self.pending_store.dir, e)
            return []

    def open_pending(self, plan_id: str) -> None:
        if self.main_screen is not None:
            self.main_screen.open_pending(plan_id)

    # ---- the link ---------------------------------------------------------------------------

    def _set_link(self, state: LinkState, detail: str = "") -> None:
        self.link_state = state
        if self.main_screen is not None:
            self.main_screen.post_message(LinkChanged(state.value, self.conn.node_id, detail))

    @work(exclusive=True, group="link", exit_on_error=False)
    async def run_link(self) -> None:
        """Connect (the client retries until the node is up), then load the cluster every time it is connected."""
        from cloudisense.node import CloudisenseError, ConnectionLost
        from cloudisense.node._client import ClientState

        client = self.client_factory(self.url, self.token, name="tui", reconnect=True,
                                     backoff_cap=self.backoff_cap, on_state=self._client_changed)
        self.conn.attach(client)
        try:
            try:
                await client.connect(retry=True)
            except Exception as e:  # noqa: BLE001 - fatal (retryable ones are retried by the client): shown
                log.info("link to %s failed: %s", self.url, e)
                return
            subs: dict[str, Any] = {}
            conn, loaded = self.conn, 0
            async with asyncio.TaskGroup() as tg:
                def to_load(n: int) -> bool:   # up again since the last load, or down for good
                    return (conn.connected and conn.ups != n) or client.state in (ClientState.FAILED,
                                                                                  ClientState.CLOSED)

                while True:
                    await conn.until(functools.partial(to_load, loaded))
                    if not conn.connected:
                        return  # failed (shown) or closed
                    loaded = conn.ups
                    try:
                        for topic in LINK_TOPICS:   # once: the client subscribes again after a reconnect
                            if topic not in subs:
                                subs[topic] = await client.subscribe(None, topic)
                                tg.create_task(self._pump(subs[topic]), name=f"tui.link[{self.url}].{topic}")
                        snapshot = await client.call(None, "node", "cluster", CLUSTER_QUERY, self.call_timeout)
                    except ConnectionLost:
                        continue       # lost again already; the client is on it
                    except CloudisenseError as e:
                        log.warning("cannot load the cluster from %s: %s", self.url, e)
                        self._set_link(LinkState.CONNECTED, f"cluster not loaded: {_short(e)}")
                    else:
                        self.cluster.load(snapshot)
                        self._set_link(LinkState.CONNECTED)
        finally:
            await asyncio.shield(client.close())

    def _client_changed(self, client: Any) -> None:
        """The client's ``on_state``: show where the link is (``connected`` waits for the cluster to load)."""
        from cloudisense.node._client import ClientState

        self.conn.changed()
        state, err, delay = client.state, client.error, client.retry_in
        if state is ClientState.FAILED:
            self._set_link(LinkState.FAILED, f"{getattr(err, 'code', type(err).__name__)}: {err}")
        elif state in (ClientState.CONNECTING, ClientState.RECONNECTING):
            shown = LinkState.CONNECTING if state is ClientState.CONNECTING else LinkState.RECONNECTING
            if delay is not None:
                self._set_link(shown, f"{_short(err or client.last_error)}, retry {delay:.1f}s")
            elif state is ClientState.RECONNECTING:
                self._set_link(shown, _short(client.last_error))
            else:
                self._set_link(shown)

    async def _pump(self, sub: Any) -> None:
        async for ev in sub:
            self.on_node_event(ev)

    def on_node_event(self, ev: dict[str, Any]) -> None:
        topic = str(ev.get("topic") or "")
        if topic == "$sys/stats":
            if isinstance(ev.get("data"), dict):
                self.stats = ev["data"]
                if self.main_screen is not None:
                    self.main_screen.post_message(StatsArrived(ev["data"]))
            return
        was_online = self.cluster.nodes.get(str(ev.get("node"))) is not None and \
            self.cluster.nodes[str(ev.get("node"))].online
        self.cluster.apply(ev, self.clock())
        if topic == "$cluster/node/offline" and was_online:
            self.notify(f"{printable(ev.get('node'), limit=80)} went offline: its processes are shown as last seen",
                        severity="warning", timeout=4, markup=False)
        elif topic == "$cluster/node/online" and not was_online:
            self.notify(f"{printable(ev.get('node'), limit=80)} is online", timeout=3, markup=False)

    # ---- audit ------------------------------------------------------------------------------

    def audit_tail(self, n: int = 8) -> list[dict[str, Any]]:
        """The last ``n`` records of the audit log (read from the end of the file)."""
        from cloudisense.agent import tail_records

        audit = self.agent.audit
        return tail_records(audit.path, 64 * 1024)[-n:] if audit is not None else []

    def past_plans(self) -> list[Any]:
        """The plans of the audit log (this session's and earlier ones), newest first, with their outcome."""
        from cloudisense.agent import past_plans, tail_records

        audit = self.agent.audit
        return past_plans(tail_records(audit.path)) if audit is not None else []


def _escaped_key(event: events.Key) -> events.Key | None:
    """For ``alt+x`` made of Escape then ``x``: the key ``x`` (None for any other key)."""
    ch = event.character
    if not event.key.startswith("alt+") or not ch or len(ch) != 1 or not ch.isprintable():
        return None
    name = ch if ch.isalnum() else _character_to_key(ch)
    return events.Key(name, ch)


def _short(e: BaseException | str) -> str:
    """A few words for the header: 'connection refused', not the whole errno text with the URL."""
    text = str(getattr(e, "message", "") or e) or type(e).__name__
    if "Connect call failed" in text or "Errno 111" in text or "refused" in text.lower():
        return "refused"
    if text.startswith("cannot connect to "):
        text = text.split(": ", 1)[-1]
    return text if len(text) <= 40 else text[:39] + "…"


def make_app(*, url: str = DEFAULT_URL, model: Any = None, token: str | None = None,
             client_factory: ClientFactory | None = None, audit: Any = None, **kw: Any) -> CloudisenseApp:
    """The console app.  ``model``: a model object or a spec (``offline``, ``openai/…``; None: offline);
    ``client_factory(url, token)`` makes node clients (default: :class:`cloudisense.node.Client`);
    ``audit``: an AuditLog or a path (default: ``CLOUDISENSE_AUDIT`` or ~/.local/state/cloudisense/audit.jsonl)."""
    return CloudisenseApp(url=url, model=model, token=token, client_factory=client_factory, audit=audit, **kw)


def run_tui(url: str = DEFAULT_URL, model: Any = None, token: str | None = None, audit: Any = None,
            state_dir: Any = None) -> int:
    """Run the console in this terminal until the operator quits (blocking; not inside an event loop).

    Textual installs signal handlers, so this must run on the main thread; from a coroutine use
    ``await run_tui_async(...)`` instead of ``asyncio.to_thread(run_tui, ...)``.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_tui() must run on the main thread (Textual installs signal handlers); "
                           "inside an event loop use: await cloudisense.tui.run_tui_async(url, model)")
    make_app(url=url, model=model, token=token, audit=audit, state_dir=state_dir).run()
    return 0


async def run_tui_async(url: str = DEFAULT_URL, model: Any = None, token: str | None = None,
                        audit: Any = None, state_dir: Any = None) -> int:
    """:func:`run_tui` for callers already inside an event loop (``cloudisense demo``)."""
    await make_app(url=url, model=model, token=token, audit=audit, state_dir=state_dir).run_async()
    return 0
