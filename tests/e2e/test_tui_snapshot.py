"""Snapshots of the console (pytest-textual-snapshot) on fixed data.

The cluster is a :class:`~cloudisense.tools.FakeCluster` with fixed metrics and
pids, the clock is frozen and ``$sys/stats`` is one fixed sample, so the
screens are the same on every run.  Update with ``--snapshot-update`` only
after looking at the report.
"""

from __future__ import annotations

import pytest

from cloudisense.tui import make_app
from cloudisense.tui.screens import EditParamsScreen
from cloudisense.tui.testing import FakeLink, three_nodes, wait_for, wait_for_text
from cloudisense.tui.widgets import PlanView

pytestmark = pytest.mark.timeout(60)

NOW = 1_000_000.0
STATS = {"node": "node-a", "rpc": {"calls": 1284, "calls_per_s": 3.2, "errors": {"timeout": 2},
                                   "latency_ms": {"p50": 1.4, "p99": 12.5}, "recent": []}}


def console(tmp_path) -> tuple:
    link = FakeLink(three_nodes(NOW))
    app = make_app(url="ws://127.0.0.1:8765/ws", model="offline", client_factory=link.factory,
                   audit=tmp_path / "audit.jsonl", clock=lambda: NOW)
    return app, link


#: The cluster table's header once its columns have their widths (a frame after the rows come): every
#: snapshot of the main screen waits for it, or CI catches the frame between (twice, in two tests).
HEADER = "node      state   temp"


def plan_pending(link: FakeLink):
    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_for(pilot, lambda: app.link_state == "connected", what="the fake link")
        link.emit("$sys/stats", STATS, ts=NOW)
        await wait_for_text(pilot, app, "Cluster 3/3 online", "3.2 calls/s", HEADER)
        await pilot.press(*"restart logger on coolest node", "enter")
        await wait_for(pilot, lambda: app.screen.query_one(PlanView).awaiting_approval, what="the plan")
        await wait_for_text(pilot, app, "needs approval", "why: coolest online node")
    return run_before


def test_main_screen_plan_pending_80x24(snap_compare, tmp_path):
    """80x24: cluster table, RPC line, the plan for 'restart logger on coolest node' waiting for approval."""
    app, link = console(tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=plan_pending(link))


def test_main_screen_plan_pending_100x30(snap_compare, tmp_path):
    """100x30: the same, with room for the 'why this node' column."""
    app, link = console(tmp_path)
    assert snap_compare(app, terminal_size=(100, 30), run_before=plan_pending(link))


def test_main_screen_plan_pending_120x35(snap_compare, tmp_path):
    """120x35: the issue's middle size; the cluster table and the detail grow, the log has room."""
    app, link = console(tmp_path)
    assert snap_compare(app, terminal_size=(120, 35), run_before=plan_pending(link))


def test_main_screen_plan_pending_200x50(snap_compare, tmp_path):
    """200x50: the processes column takes the width; nothing is capped at 80-column sizes."""
    app, link = console(tmp_path)
    assert snap_compare(app, terminal_size=(200, 50), run_before=plan_pending(link))


def test_help_screen_80x24(snap_compare, tmp_path):
    """F1: the keys (from the widgets' bindings) over the main screen."""
    app, link = console(tmp_path)

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: pilot.app.link_state == "connected", what="the fake link")
        await wait_for_text(pilot, pilot.app, "Cluster 3/3 online")
        await pilot.press("f1")
        await wait_for_text(pilot, pilot.app, "Close help")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_fan_out_confirmation_80x24(snap_compare, tmp_path):
    """'restart logger on all nodes', a: the confirmation naming the three nodes."""
    app, link = console(tmp_path)

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: pilot.app.link_state == "connected", what="the fake link")
        link.emit("$sys/stats", STATS, ts=NOW)
        # before the confirmation opens over the table (CI: once it opened first, the screen under it was
        # not drawn again and the header stayed narrow)
        await wait_for_text(pilot, pilot.app, "Cluster 3/3 online", "3.2 calls/s", HEADER)
        await pilot.press(*"restart logger on all nodes", "enter")
        await wait_for(pilot, lambda: pilot.app.screen.query_one(PlanView).awaiting_approval, what="the plan")
        await pilot.press("a")
        await wait_for_text(pilot, pilot.app, "Run on 3 nodes", HEADER)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_edit_params_with_a_schema_error_80x24(snap_compare, tmp_path):
    """The params editor over the plan, showing the node's schema and the error for {"name": 42}."""
    app, link = console(tmp_path)

    async def run_before(pilot) -> None:
        await plan_pending(link)(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditParamsScreen), what="the editor")
        pilot.app.screen.query_one("#params-input").cursor_blink = False
        await pilot.press("home", "ctrl+k", *'{"name": 42}', "enter")
        await wait_for_text(pilot, pilot.app, "invalid_params")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_log_view_80x24(snap_compare, tmp_path):
    """l on node-b's row: its logger's lines so far and one that arrived live, paused with one waiting."""
    app, link = console(tmp_path)
    link.fake.nodes["node-b"].logs["logger"] = [
        "2026-11-30T10:00:00.000 [supervisor] started pid 4102: python -m cloudisense.node.demo.logger",
        "2026-11-30T10:00:00.400 logger: started pid 4102, a line every 0.5 s",
        "2026-11-30T10:00:00.900 logger tick 1", "2026-11-30T10:00:01.400 \x1b[31mlogger tick 2 [b]not bold[/b]"]

    async def run_before(pilot) -> None:
        await wait_for(pilot, lambda: pilot.app.link_state == "connected", what="the fake link")
        await wait_for_text(pilot, pilot.app, "Cluster 3/3 online")
        await pilot.press("shift+tab", "j", "l")
        await wait_for_text(pilot, pilot.app, "following", "logger tick 2")
        link.emit("$process/logger/log", {"name": "logger", "node": "node-b", "seq": 4, "skipped": 0,
                                          "lines": ["2026-11-30T10:00:01.900 logger tick 3"]}, node="node-b")
        await wait_for_text(pilot, pilot.app, "logger tick 3")
        await pilot.press("p")
        link.emit("$process/logger/log", {"name": "logger", "node": "node-b", "seq": 5, "skipped": 0,
                                          "lines": ["2026-11-30T10:00:02.400 logger tick 4"]}, node="node-b")
        await wait_for_text(pilot, pilot.app, "PAUSED (1 waiting")

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)
