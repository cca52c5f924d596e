"""The console against an in-memory cluster (deterministic): keys, focus, toggles, edits, reconnect.

The same flows run against real node processes in ``test_tui.py``; here the
cluster is a :class:`~cloudisense.tools.FakeCluster` behind
:class:`~cloudisense.tui.testing.FakeLink`, so the tests can make a call slow,
drop the link or refuse reconnects exactly when they want.
"""

from __future__ import annotations

import contextlib

import pytest

from cloudisense.agent import ScriptedModel, read_audit
from cloudisense.node import Unauthenticated
from cloudisense.tools import FakeNode
from cloudisense.tui import make_app
from cloudisense.tui._messages import ExecutionFinished, LinkChanged, PlanEdited, PlanReady, PlanRejected
from cloudisense.tui.screens import EditParamsScreen
from cloudisense.tui.screens.main import MainScreen
from cloudisense.tui.testing import FakeLink, LagProbe, screen_text, three_nodes, wait_for, wait_for_text
from cloudisense.tui.widgets import ClusterTable, PlanView
from cloudisense.tui.widgets.plan_view import PlanTable

pytestmark = pytest.mark.timeout(60)

NOW = 1_000_000.0


def app_on(link: FakeLink, tmp_path, **kw):
    kw.setdefault("model", "offline")
    return make_app(url="ws://fake/ws", client_factory=link.factory, audit=tmp_path / "audit.jsonl",
                    clock=lambda: NOW, **kw)


def first(seen: list, kind: type):
    return next((m for m in seen if isinstance(m, kind)), None)


async def connected(pilot, app) -> None:
    await wait_for(pilot, lambda: app.link_state == "connected" and app.cluster.counts()[1] > 0, what="connected")


@contextlib.asynccontextmanager
async def console(tmp_path, link: FakeLink, size: tuple[int, int] = (80, 24), **kw):
    """The console on ``link``, running and connected: yields (app, pilot, messages seen so far)."""
    app = app_on(link, tmp_path, **kw)
    seen: list = []
    async with app.run_test(size=size, message_hook=seen.append) as pilot:
        await connected(pilot, app)
        yield app, pilot, seen


async def ask(pilot, app, seen: list, text: str):
    n = sum(isinstance(m, PlanReady) for m in seen)
    await pilot.press(*text, "enter")
    await wait_for(pilot, lambda: sum(isinstance(m, PlanReady) for m in seen) > n, what=f"a plan for {text!r}")
    return [m for m in seen if isinstance(m, PlanReady)][-1].result


def audit_events(tmp_path) -> list[str]:
    path = tmp_path / "audit.jsonl"
    return [r["event"] for r in read_audit(path)] if path.exists() else []


async def test_table_fills_request_box_has_focus_and_header_says_offline_rules_planner(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link) as (app, pilot, _):
        table = app.screen.query_one(ClusterTable)
        await wait_for(pilot, lambda: table.row_count == 3)
        assert app.screen.focused is app.screen.query_one("#request")
        text = await wait_for_text(pilot, app, "Cluster 3/3 online", "node-b")   # the rows drawn, not only counted
        assert "node node-a" in text and "offline (rules planner)" in text and "● connected" in text
        assert "Cluster 3/3 online" in text
        row_b = next(line for line in text.splitlines() if "node-b" in line)
        assert "38.5° sim" in row_b and "logger▶4102" in row_b and "2s" in row_b
        # Subscriptions: the cluster, this node's metrics and processes, and its RPC counters.
        assert set(link.subscribed) >= {(None, "$cluster/#"), (None, "metrics/#"), (None, "process/#"),
                                        (None, "$sys/stats")}


async def test_a_cell_drawn_before_its_column_was_measured_is_drawn_again_whole(tmp_path):
    # textual measures a changed cell's width when the table is next idle, but a paint in between (a busy
    # console) caches the cell cut to the old width, and its caches are not keyed by width: CI saw
    # "OFFLINE" cut to "OFFLIN" for good. The table draws again once the widths change.
    from rich.text import Text
    from textual.coordinate import Coordinate
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link, size=(100, 30)) as (app, pilot, _):
        table = app.screen.query_one(ClusterTable)
        row = table.coordinate_to_cell_key(Coordinate(2, 0)).row_key
        table.update_cell(row, "state", Text("OFFLINE-LONGER"), update_width=True)   # what refresh_rows does
        app.screen._compositor.reflow(app.screen, app.screen.size)
        assert "OFFLINE-LONGER" not in screen_text(app)   # a paint before the idle measurement: cut
        await wait_for(pilot, lambda: "OFFLINE-LONGER" in screen_text(app), timeout=5.0, what="the whole cell")


async def test_cluster_events_update_the_table_without_polling(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link, size=(100, 30)) as (app, pilot, _):
        calls_before = len(link.fake.calls)
        entry = link.fake.cluster_view()["nodes"][2]
        entry["metrics"]["temperature_c"] = 70.25
        link.emit("$cluster/node/state", entry, node="node-c", ts=NOW)
        await wait_for(pilot, lambda: "70.2° sim" in screen_text(app) or "70.3° sim" in screen_text(app))
        link.fake.nodes["node-c"].online = False     # the cluster agrees with its events (as a real node's would)
        link.emit("$cluster/node/offline", {**entry, "online": False}, node="node-c", ts=NOW)
        await wait_for(pilot, lambda: "OFFLINE" in screen_text(app) and "Cluster 2/3 online" in screen_text(app), what="offline row")
        link.fake.nodes["node-c"].online = True
        link.emit("$cluster/node/online", entry, node="node-c", ts=NOW)
        await wait_for(pilot, lambda: "Cluster 3/3 online" in screen_text(app))
        # the connected node's own processes come as process/* events
        link.emit("process/logger/restarted", {"name": "logger", "pid": 5555, "old_pid": 4101, "node": "node-a"})
        await wait_for(pilot, lambda: "logger▶5555" in screen_text(app))
        link.emit("$sys/stats", {"rpc": {"calls": 42, "calls_per_s": 2.5, "errors": {"timeout": 1},
                                         "latency_ms": {"p50": 1.25, "p99": 9.5}, "recent": []}})
        await wait_for(pilot, lambda: "2.5 calls/s · 42 calls · 1 errors (timeout 1)" in screen_text(app))
        assert len(link.fake.calls) == calls_before  # all of it from events: no node.cluster polling


async def test_plan_focus_keys_and_approve_runs_only_then(tmp_path):
    link = FakeLink(three_nodes(NOW))
    # 40 rows: the execution log shows its last lines, and at 24 rows the audit line may scroll above them
    async with console(tmp_path, link, size=(100, 40)) as (app, pilot, seen):
        result = await ask(pilot, app, seen, "restart logger on coolest node")
        assert result.plan.steps[0].targets == ["node-b"]
        assert isinstance(app.screen.focused, PlanTable)
        text = screen_text(app)
        assert "supervisor.restart" in text and "coolest online node with process logger" in text
        assert not link.fake.mutating_calls
        await pilot.press("escape")
        assert app.screen.focused is app.screen.query_one("#request")
        assert not link.fake.mutating_calls
        await pilot.click("#plan-table")
        assert isinstance(app.screen.focused, PlanTable)
        await pilot.press("a")
        fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished))
        assert fin.report.status == "done"
        assert [(c.node, c.method, c.params) for c in link.fake.mutating_calls] == [("node-b", "restart",
                                                                                     {"name": "logger"})]
        await wait_for(pilot, lambda: "ok " in screen_text(app) and "audit: execution" in screen_text(app))
        events = audit_events(tmp_path)
        assert events[:4] == ["request", "plan", "approval", "step"] and events[-1] == "execution"
        # the table shows the new pid from the step's result at once
        new_pid = link.fake.nodes["node-b"].processes["logger"]["pid"]
        await wait_for(pilot, lambda: f"logger▶{new_pid}" in screen_text(app))


async def test_reject_runs_nothing_and_returns_to_the_request_box(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link) as (app, pilot, seen):
        await ask(pilot, app, seen, "restart logger on all nodes")
        await pilot.press("r", "enter")  # the feedback dialog: empty, just reject
        await wait_for(pilot, lambda: first(seen, PlanRejected))
        assert app.screen.focused is app.screen.query_one("#request")
        assert "Rejected plan" in screen_text(app)
        await pilot.press("a")  # typed into the request box now, approves nothing
        await pilot.pause(0.2)
        assert not link.fake.mutating_calls
        assert "approval" not in audit_events(tmp_path) and "rejection" in audit_events(tmp_path)


async def test_toggled_off_step_is_not_run(tmp_path):
    fake = three_nodes(NOW)
    link = FakeLink(fake)
    model = ScriptedModel([
        [("call", {"node": "node-b", "service": "supervisor", "method": "restart",
                   "params_json": '{"name": "logger"}', "reason": "first"}),
         ("call", {"node": "node-c", "service": "supervisor", "method": "restart",
                   "params_json": '{"name": "logger"}', "reason": "second"})],
        "two restarts",
    ])
    async with console(tmp_path, link, model=model, size=(100, 30)) as (app, pilot, seen):
        await ask(pilot, app, seen, "restart two")
        assert "model scripted" in screen_text(app)
        await pilot.press("down", "space")
        assert "1 of 2 checked" in screen_text(app)
        await pilot.press("a")
        fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished))
        assert fin.report.status == "done" and fin.report.skipped == [2]
        assert [c.node for c in fake.mutating_calls] == ["node-b"]
        pv = app.screen.query_one(PlanView)
        assert pv.progress.steps[2].status == "skipped" and pv.progress.steps[1].status == "ok"


async def test_approving_with_every_step_unchecked_runs_nothing(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link) as (app, pilot, seen):
        await ask(pilot, app, seen, "restart logger on coolest node")
        await pilot.press("space", "a")
        await pilot.pause(0.2)
        assert not first(seen, ExecutionFinished) and not link.fake.mutating_calls
        assert app.screen.query_one(PlanView).awaiting_approval


async def test_bad_edit_shows_the_schema_error_and_nothing_runs(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link) as (app, pilot, seen):
        result = await ask(pilot, app, seen, "restart logger on coolest node")
        await pilot.press("e")
        modal = await wait_for(pilot, lambda: isinstance(app.screen, EditParamsScreen) and app.screen)
        assert "name: string, required" in screen_text(app)
        await pilot.press("home", "ctrl+k", *'{"name": 42}', "enter")
        await wait_for(pilot, lambda: "invalid_params" in screen_text(app))
        assert "42 is not of type 'string'" in screen_text(app)
        assert app.screen is modal  # the editor stays open on an error
        await pilot.press("home", "ctrl+k", *'{"name": "logger", "force": true}', "enter")
        await wait_for(pilot, lambda: "Additional properties are not allowed" in screen_text(app))
        await pilot.press("home", "ctrl+k", *'{"name": ', "enter")
        await wait_for(pilot, lambda: "not valid JSON" in screen_text(app))
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        pv = app.screen.query_one(PlanView)
        assert pv.plan.hash == result.plan.hash and pv.plan.steps[0].params == {"name": "logger"}
        assert not link.fake.mutating_calls and not first(seen, PlanEdited)
        assert "edit" not in audit_events(tmp_path)


async def test_good_edit_changes_the_plan_and_the_new_params_run(tmp_path):
    fake = three_nodes(NOW)
    fake.nodes["node-b"].processes["worker"] = {"name": "worker", "state": "running", "pid": 4200, "restarts": 0}
    link = FakeLink(fake)
    async with console(tmp_path, link, size=(100, 30)) as (app, pilot, seen):
        result = await ask(pilot, app, seen, "restart logger on coolest node")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditParamsScreen))
        await pilot.press("home", "ctrl+k", *'{"name": "worker"}', "enter")
        edited = await wait_for(pilot, lambda: first(seen, PlanEdited))
        assert edited.plan.hash != result.plan.hash
        assert isinstance(app.screen, MainScreen) and isinstance(app.screen.focused, PlanTable)
        assert '{"name": "worker"}' in screen_text(app)
        await pilot.press("a")
        fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished))
        assert fin.report.status == "done"
        assert [(c.node, c.params) for c in fake.mutating_calls] == [("node-b", {"name": "worker"})]
        recs = read_audit(tmp_path / "audit.jsonl")
        edit = next(r for r in recs if r["event"] == "edit")
        assert edit["plan_hash"] == result.plan.hash and edit["new_plan_hash"] == edited.plan.hash
        assert next(r for r in recs if r["event"] == "approval")["plan_hash"] == edited.plan.hash


async def test_read_only_request_answers_without_a_plan(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link) as (app, pilot, seen):
        await ask(pilot, app, seen, "status logger on node-c")
        await wait_for(pilot, lambda: "node-c: logger running (pid 4103" in screen_text(app))
        assert "Answer (read-only, nothing to approve)" in screen_text(app)
        assert app.screen.focused is app.screen.query_one("#request")
        assert not link.fake.mutating_calls


async def test_slow_step_keeps_the_console_responsive(tmp_path):
    link = FakeLink(three_nodes(NOW), delays={"supervisor.restart": 4.0})
    async with console(tmp_path, link) as (app, pilot, seen):
        await ask(pilot, app, seen, "restart logger on coolest node")
        pv = app.screen.query_one(PlanView)
        async with LagProbe() as lag:
            await pilot.press("a")
            await wait_for(pilot, lambda: pv.progress.steps[1].status == "running")
            # keys are handled while the call is out: focus moves, text is typed
            await pilot.press("escape", *"ls")
            assert app.screen.query_one("#request").value == "ls"
            assert pv.progress.steps[1].status == "running"
            # a new request waits for the running plan; it stays in the box
            await pilot.press("enter")
            assert app.screen.query_one("#request").value == "ls"
            # cluster events still land in the table
            link.emit("$cluster/node/offline", {"id": "node-c", "online": False}, node="node-c", ts=NOW)
            await wait_for_text(pilot, app, "Cluster 2/3 online", "running")
            assert pv.progress.steps[1].status == "running" and not first(seen, ExecutionFinished)
            fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished), timeout=10)
        assert fin.report.status == "done"
        assert lag.worst < 2.0, f"the event loop stalled for {lag.worst:.2f} s"


async def test_reconnects_when_the_node_comes_back(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link, backoff_cap=0.2) as (app, pilot, seen):
        link.refuse = True
        await link.drop()
        await wait_for(pilot, lambda: app.link_state == "reconnecting" and "reconnecting" in screen_text(app))
        await pilot.press(*"restart logger on coolest node")  # still typing while the node is away
        assert app.screen.query_one("#request").value == "restart logger on coolest node"
        await pilot.pause(0.5)  # several refused attempts
        link.refuse = False
        await wait_for(pilot, lambda: app.link_state == "connected" and "● connected" in screen_text(app))
        states = [m.state for m in seen if isinstance(m, LinkChanged)]
        assert states[:2] == ["connecting", "connected"] and "reconnecting" in states and states[-1] == "connected"
        assert len(link.clients) == 2 and link.current is link.clients[-1]
        await pilot.press("enter")
        result = await wait_for(pilot, lambda: first(seen, PlanReady))
        assert result.result.plan.steps[0].targets == ["node-b"]


async def test_bad_token_is_fatal_not_retried(tmp_path):
    link = FakeLink(three_nodes(NOW), token="s3cret")
    app = make_app(url="ws://fake/ws", client_factory=link.factory, token="wrong", audit=tmp_path / "a.jsonl",
                   backoff_cap=0.05)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: app.link_state == "failed")
        await pilot.pause(0.3)     # several backoff delays: no second attempt
        assert link.dials == 1 and link.clients == []
        assert app.conn.client is not None and isinstance(app.conn.client.error, Unauthenticated)
        assert "failed" in screen_text(app) and "invalid token" in screen_text(app)


async def test_events_pane_subscribes_on_any_node_and_f2_cycles_tabs(tmp_path):
    link = FakeLink(three_nodes(NOW))
    async with console(tmp_path, link, size=(100, 30)) as (app, pilot, _):
        await pilot.press("f2")
        assert app.screen.focused is app.screen.query_one("#watch-input")
        await pilot.press(*"node-b process/#", "enter")
        await wait_for(pilot, lambda: ("node-b", "process/#") in link.subscribed)
        await wait_for(pilot, lambda: "watching process/# on node-b" in screen_text(app))
        link.emit("process/logger/restarted", {"name": "logger", "pid": 77}, node="node-b", ts=NOW)
        await wait_for(pilot, lambda: "process/logger/restarted" in screen_text(app))
        await pilot.press("home", "ctrl+k", *"too many words here", "enter")
        await wait_for(pilot, lambda: "two words" in screen_text(app))
        await pilot.press("f2")
        assert app.screen.query_one("#tabs").active == "tab-rpc"
        # choosing a node in the cluster table watches its processes: the box and the status line agree
        table = app.screen.query_one(ClusterTable)
        table.focus()
        await pilot.press("down", "enter")
        assert app.screen.query_one("#tabs").active == "tab-events"
        assert app.screen.query_one("#watch-input").value == "node-b process/#"
        await wait_for(pilot, lambda: "watching process/# on node-b" in screen_text(app))


async def test_mouse_toggles_approves_and_switches_tabs(tmp_path):
    fake = three_nodes(NOW)
    link = FakeLink(fake)
    async with console(tmp_path, link, model=ScriptedModel([
        [("call", {"node": "node-b", "service": "supervisor", "method": "restart",
                   "params_json": '{"name": "logger"}', "reason": "first"}),
         ("call", {"node": "node-c", "service": "supervisor", "method": "restart",
                   "params_json": '{"name": "logger"}', "reason": "second"})],
        "two restarts"]), size=(100, 30)) as (app, pilot, seen):
        await ask(pilot, app, seen, "two")
        table = app.screen.query_one(PlanTable)
        await pilot.click(PlanTable, offset=(2, 2))  # the second step's row: highlight…
        await pilot.click("#btn-toggle")               # …and toggle it with the button
        await wait_for_text(pilot, app, "1 of 2 checked")
        assert table.cursor_row == 1
        await pilot.click("#btn-approve")
        fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished))
        assert fin.report.skipped == [2] and [c.node for c in fake.mutating_calls] == ["node-b"]
        await pilot.click("#--content-tab-tab-rpc")
        assert app.screen.query_one("#tabs").active == "tab-rpc"
        await pilot.click("#--content-tab-tab-events")
        assert app.screen.query_one("#tabs").active == "tab-events"


def test_a_fake_node_has_the_services_the_console_expects():
    """The fake gives supervisor.restart a schema, so the edit test checks params as a node would."""
    fake = three_nodes(NOW)
    assert isinstance(fake.nodes["node-b"], FakeNode)
    desc = fake._describe(fake.nodes["node-b"])
    assert desc["services"]["supervisor"]["methods"]["restart"]["params"]["required"] == ["name"]
