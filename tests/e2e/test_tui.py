"""The operator console against real nodes: ``cloudisense node`` subprocesses on the real mosquitto.

Pilot drives the app as an operator would (type, Enter, keys); the assertions
are about what the nodes really did: the logger's pid (``supervisor.status``)
changes only after ``a``, never after ``r`` or a rejected edit.
"""

from __future__ import annotations

import re
import socket
import sys
import time

import pytest
from support import async_wait_until

from cloudisense.agent import read_audit
from cloudisense.node import Client
from cloudisense.tui import make_app
from cloudisense.tui._messages import ExecutionFinished, LinkChanged, PlanReady, PlanRejected
from cloudisense.tui.screens import EditParamsScreen
from cloudisense.tui.screens.main import MainScreen
from cloudisense.tui.testing import LagProbe, screen_text, wait_for, wait_for_text
from cloudisense.tui.widgets import PlanView
from cloudisense.tui.widgets.plan_view import PlanTable

pytestmark = pytest.mark.timeout(90)

TEMPS = {"node-a": "sim:61", "node-b": "sim:38", "node-c": "sim:52"}  # node-b is the coolest by far
LOGGER = {"name": "logger", "command": [sys.executable, "-m", "cloudisense.node.demo.logger", "--interval", "0.5"],
          "stop_grace": 3.0}
# Ignores SIGTERM, so a restart waits the whole stop_grace before SIGKILL: a real slow step.
STUBBORN = {"name": "stubborn", "stop_grace": 5.0,
            "command": [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                              "[time.sleep(1) for _ in iter(int, 1)]"]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def cluster_ready(url: str, ids: set[str], timeout: float = 20.0) -> None:
    """Until the node at ``url`` sees every one of ``ids`` online with a temperature and a running logger."""
    async with Client(url) as c:
        async def ready() -> bool:
            view = await c.call(None, "node", "cluster", {}, 5)
            ok = {n["id"] for n in view["nodes"] if n["online"] and (n.get("metrics") or {}).get("temperature_c")
                  and any(p["name"] == "logger" and p["state"] == "running" for p in n.get("processes", []))}
            return ids <= ok

        await async_wait_until(ready, timeout, interval=0.2, what=f"{sorted(ids)} online at {url}")


async def pids(url: str, process: str = "logger", nodes=("node-a", "node-b", "node-c")) -> dict[str, int]:
    async with Client(url) as c:
        return {n: (await c.call(n, "supervisor", "status", {"name": process}, 10))["pid"] for n in nodes}


@pytest.fixture
def trio(cluster):
    nodes = {nid: cluster.spawn(nid, temperature=t) for nid, t in TEMPS.items()}
    for n in nodes.values():
        n.wait_ready()
    return nodes


def first(seen: list, kind: type):
    return next((m for m in seen if isinstance(m, kind)), None)


def audit_events(path) -> list[str]:
    return [r["event"] for r in read_audit(path)] if path.exists() else []


async def open_console(pilot, app, n: int = 3) -> None:
    await wait_for(pilot, lambda: app.link_state == "connected", what="the link")
    await wait_for_text(pilot, app, f"Cluster {n}/{n} online", "● connected")


async def ask(pilot, seen: list, text: str):
    n = sum(isinstance(m, PlanReady) for m in seen)
    await pilot.press(*text, "enter")
    await wait_for(pilot, lambda: sum(isinstance(m, PlanReady) for m in seen) > n, what=f"a plan for {text!r}")
    return [m for m in seen if isinstance(m, PlanReady)][-1].result


async def test_approve_restarts_the_logger_on_the_coolest_node(trio, tmp_path):
    a = trio["node-a"]
    await cluster_ready(a.url, set(TEMPS))
    before = await pids(a.url)
    audit = tmp_path / "audit.jsonl"
    app = make_app(url=a.url, model="offline", audit=audit)
    seen: list = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await open_console(pilot, app)
        text = await wait_for_text(pilot, app, "node-a", "node-b", "node-c", "° sim")
        assert "node node-a" in text and "offline (rules planner)" in text
        assert app.screen.focused is app.screen.query_one("#request")
        for nid, pid in before.items():
            assert f"logger▶{pid}" in text, nid

        result = await ask(pilot, seen, "restart logger on coolest node")
        step = result.plan.steps[0]
        assert (step.targets, step.service, step.method, step.params) == (["node-b"], "supervisor", "restart",
                                                                          {"name": "logger"})
        assert isinstance(app.screen.focused, PlanTable)
        await wait_for_text(pilot, app, "supervisor.restart", "why: coolest online node with process logger")
        assert await pids(a.url) == before  # nothing ran before approval

        await pilot.press("a")
        fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished), timeout=30)
        assert fin.report.status == "done", fin.report.message
        after = await pids(a.url)
        assert after["node-b"] != before["node-b"]
        assert after["node-a"] == before["node-a"] and after["node-c"] == before["node-c"]
        assert fin.report.results[0].result["pid"] == after["node-b"]
        await wait_for_text(pilot, app, "done: 1 call(s) made", "audit: execution", f"logger▶{after['node-b']}")

    events = audit_events(audit)
    assert events[:3] == ["request", "plan", "approval"] and "step" in events and events[-1] == "execution"
    rec = read_audit(audit)[-1]
    assert rec["plan_hash"] == result.plan.hash and rec["status"] == "done"


async def test_l_follows_a_remote_nodes_logger_live_and_only_while_watched(cluster, tmp_path):
    a, b = cluster.start("node-a"), cluster.start("node-b")
    await cluster_ready(a.url, {"node-a", "node-b"})

    async def interests_in_b() -> list[str]:
        async with Client(b.url) as c:
            return (await c.call(None, "pubsub", "topics", {}, 5))["interests"].get("node-a", [])

    def ticks() -> list[int]:
        return [int(n) for n in re.findall(r"logger tick (\d+)", screen_text(app))]

    app = make_app(url=a.url, model="offline", audit=tmp_path / "audit.jsonl")
    async with app.run_test(size=(100, 30)) as pilot:
        await open_console(pilot, app, 2)
        assert "$process/logger/log" not in await interests_in_b()    # nobody follows: node-b sends no lines
        app.go_to_node("node-b")
        await wait_for_text(pilot, app, "logger", "running")
        await pilot.press("l")     # on the process list: follow it, on another node, over the federation
        await wait_for_text(pilot, app, "logs  logger on node-b", "following")
        last = max(await wait_for(pilot, ticks, what="the lines so far"))
        await wait_for(pilot, lambda: max(ticks()) >= last + 2, what="new lines as the logger writes them")
        assert "$process/logger/log" in await interests_in_b()
        await pilot.press("escape")

        async def released() -> bool:
            return "$process/logger/log" not in await interests_in_b()
        await async_wait_until(released, 10, interval=0.2, what="node-a's interest in the lines dropped")


async def test_a_log_follow_survives_a_restart_of_the_node_the_console_is_connected_to(cluster, tmp_path):
    """One reconnect loop (the client's): after node-a comes back, the same follow subscription of node-b's
    logger (made again by the client, over the federation) brings new lines; no one re-opened the view."""
    port = free_port()
    a = cluster.start("node-a", listen=f"127.0.0.1:{port}")
    b = cluster.start("node-b")
    await cluster_ready(a.url, {"node-a", "node-b"})

    def ticks() -> list[int]:
        return [int(n) for n in re.findall(r"logger tick (\d+)", screen_text(app))]

    app = make_app(url=a.url, model="offline", audit=tmp_path / "audit.jsonl", backoff_cap=0.5)
    seen: list = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await open_console(pilot, app, 2)
        app.follow_logs("node-b", "logger")
        await wait_for_text(pilot, app, "logs  logger on node-b", "following")
        await wait_for(pilot, ticks, what="the lines so far")
        client = app.conn.client
        a.kill()
        await wait_for_text(pilot, app, "link lost", timeout=15)
        before = max(ticks())
        a2 = cluster.start("node-a", listen=f"127.0.0.1:{port}")
        assert a2.url == a.url
        await wait_for(pilot, lambda: app.link_state == "connected", timeout=30)
        await wait_for(pilot, lambda: max(ticks()) >= before + 2, timeout=30,
                       what="node-b's new lines through the restarted node-a")
        await wait_for_text(pilot, app, "following")
        assert app.conn.client is client and client.reconnects >= 1    # the same client, reconnected
        assert b.proc.poll() is None
    states = [m.state for m in seen if isinstance(m, LinkChanged)]
    assert "reconnecting" in states and states[-1] == "connected" and "failed" not in states


async def test_reject_runs_nothing(trio, tmp_path):
    a = trio["node-a"]
    await cluster_ready(a.url, set(TEMPS))
    before = await pids(a.url)
    audit = tmp_path / "audit.jsonl"
    app = make_app(url=a.url, model="offline", audit=audit)
    calls: list = []
    app.conn.observers.append(lambda node, service, method, params: calls.append((node, service, method)))
    seen: list = []
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await open_console(pilot, app)
        result = await ask(pilot, seen, "restart logger on all nodes")
        assert sorted(result.plan.steps[0].targets) == ["node-a", "node-b", "node-c"]
        await pilot.press("r", "enter")  # the feedback dialog: empty, just reject
        await wait_for(pilot, lambda: first(seen, PlanRejected))
        await wait_for_text(pilot, app, "Rejected plan", "nothing was executed")
        assert app.screen.focused is app.screen.query_one("#request")
        await pilot.press("a", "e", "space")  # now plain typing in the request box
        assert app.screen.query_one("#request").value == "ae "
    assert not [c for c in calls if c[1] == "supervisor"]
    assert await pids(a.url) == before
    events = audit_events(audit)
    assert "rejection" in events and "approval" not in events and "execution" not in events


async def test_bad_param_edit_is_refused_and_nothing_runs(trio, tmp_path):
    a = trio["node-a"]
    await cluster_ready(a.url, set(TEMPS))
    before = await pids(a.url)
    audit = tmp_path / "audit.jsonl"
    app = make_app(url=a.url, model="offline", audit=audit)
    seen: list = []
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await open_console(pilot, app)
        result = await ask(pilot, seen, "restart logger on coolest node")
        await pilot.press("e")
        modal = await wait_for(pilot, lambda: isinstance(app.screen, EditParamsScreen) and app.screen)
        # the schema comes from the node (node.describe), not from the console
        await wait_for_text(pilot, app, "name: string, required — the process name")
        await pilot.press("home", "ctrl+k", *'{"name": 42}', "enter")
        await wait_for_text(pilot, app, "invalid_params", "42 is not of type 'string'")
        assert app.screen is modal
        await pilot.press("home", "ctrl+k", *'{"name": "logger", "lines": 5}', "enter")
        await wait_for_text(pilot, app, "Additional properties are not allowed")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, MainScreen))
        pv = app.screen.query_one(PlanView)
        assert pv.plan.hash == result.plan.hash and pv.awaiting_approval
        assert not first(seen, ExecutionFinished)
    assert await pids(a.url) == before
    assert not {"edit", "approval", "execution"} & set(audit_events(audit))


async def test_console_stays_responsive_while_a_slow_step_runs(cluster, tmp_path):
    a = cluster.spawn("node-a", temperature="sim:61")
    b = cluster.spawn("node-b", temperature="sim:38", processes=[dict(LOGGER), dict(STUBBORN)])
    a.wait_ready(), b.wait_ready()
    await cluster_ready(a.url, {"node-a", "node-b"})
    before = (await pids(a.url, "stubborn", ("node-b",)))["node-b"]
    app = make_app(url=a.url, model="offline", audit=tmp_path / "audit.jsonl")
    seen: list = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await open_console(pilot, app, 2)
        await ask(pilot, seen, "restart stubborn on node-b")
        t_approve = time.monotonic()
        pv = app.screen.query_one(PlanView)
        async with LagProbe() as lag:
            await pilot.press("a")
            await wait_for(pilot, lambda: pv.progress.steps[1].status == "running", what="the step to start")
            await wait_for_text(pilot, app, "running 1.")  # the elapsed time ticks while the call is out
            # keys are handled while the call is out: type in the request box, switch to the events
            # pane and subscribe there
            await pilot.press("escape", *"ls")
            assert app.screen.query_one("#request").value == "ls"
            await pilot.press("f2", *"node-b process/#", "enter")
            await wait_for_text(pilot, app, "watching process/# on node-b")
            assert pv.progress.steps[1].status == "running" and not first(seen, ExecutionFinished)
            fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished), timeout=30)
        took = time.monotonic() - t_approve
        assert lag.samples > 50 and lag.worst < 2.0, f"the event loop stalled for {lag.worst:.2f} s"
        assert fin.report.status == "done", fin.report.message
        assert took > 4.5  # it really was slow (stop_grace 5 s before SIGKILL)
        await wait_for_text(pilot, app, "process/stubborn/restarted")  # seen in the events pane
    after = (await pids(a.url, "stubborn", ("node-b",)))["node-b"]
    assert after != before


async def test_console_stays_responsive_when_a_node_disappears(trio, tmp_path):
    a, c = trio["node-a"], trio["node-c"]
    await cluster_ready(a.url, set(TEMPS))
    app = make_app(url=a.url, model="offline", audit=tmp_path / "audit.jsonl")
    seen: list = []
    async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
        await open_console(pilot, app)
        async with LagProbe() as lag:
            c.kill()  # SIGKILL: no goodbye; the broker publishes its last will
            await pilot.press(*"restart logger on all nodes")
            assert app.screen.query_one("#request").value == "restart logger on all nodes"
            text = await wait_for_text(pilot, app, "Cluster 2/3 online", "OFFLINE", timeout=20)
        assert lag.worst < 2.0, f"the event loop stalled for {lag.worst:.2f} s"
        assert "OFFLINE" in next(line for line in text.splitlines() if "node-c" in line)
        assert app.link_state == "connected"
        await pilot.press("enter")
        result = await wait_for(pilot, lambda: first(seen, PlanReady))
        assert sorted(result.result.plan.steps[0].targets) == ["node-a", "node-b"]


async def test_reconnects_when_the_node_restarts(cluster, tmp_path):
    port = free_port()
    a = cluster.start("node-a", temperature="sim:61", listen=f"127.0.0.1:{port}")
    b = cluster.start("node-b", temperature="sim:38")
    await cluster_ready(a.url, {"node-a", "node-b"})
    app = make_app(url=a.url, model="offline", audit=tmp_path / "audit.jsonl", backoff_cap=0.5)
    seen: list = []
    async with app.run_test(size=(80, 24), message_hook=seen.append) as pilot:
        await open_console(pilot, app, 2)
        a.kill()
        await wait_for(pilot, lambda: app.link_state == "reconnecting", timeout=10)
        await wait_for_text(pilot, app, "reconnecting")
        await pilot.press(*"restart logger on coolest node")
        assert app.screen.query_one("#request").value == "restart logger on coolest node"
        a2 = cluster.start("node-a", temperature="sim:61", listen=f"127.0.0.1:{port}")
        assert a2.url == a.url
        await wait_for(pilot, lambda: app.link_state == "connected", timeout=30)
        await wait_for_text(pilot, app, "● connected", "Cluster 2/2 online", timeout=20)
        await cluster_ready(a2.url, {"node-a", "node-b"})
        await pilot.press("enter")
        result = await wait_for(pilot, lambda: first(seen, PlanReady), timeout=20)
        assert result.result.ok and result.result.plan.steps[0].targets == ["node-b"]
        await pilot.press("a")
        fin = await wait_for(pilot, lambda: first(seen, ExecutionFinished), timeout=30)
        assert fin.report.status == "done", fin.report.message
    states = [m.state for m in seen if isinstance(m, LinkChanged)]
    assert "reconnecting" in states and states[-1] == "connected"
    assert b.proc.poll() is None
