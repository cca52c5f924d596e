"""The console's pure parts: the cluster model, plan progress, formatting, the link's view, CLI wiring.

(The reconnect policy is the node client's: tests/unit/test_client_states.py.)"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys

import pytest

from cloudisense.node import ConnectionLost
from cloudisense.tui._link import LiveConnection
from cloudisense.tui._state import (ClusterModel, PlanProgress, fmt_age, fmt_processes, fmt_stats, fmt_temp,
                                    model_label, parse_watch)
from cloudisense.tui.screens.edit_params import schema_summary
from cloudisense.tui.testing import FakeLink, three_nodes

pytestmark = pytest.mark.timeout(30)


def entry(nid: str, online: bool = True, temp: float = 40.0, pid: int = 10) -> dict:
    return {"id": nid, "online": online, "since": 1.0, "last_seen": 5.0,
            "metrics": {"temperature_c": temp, "simulated": True, "cpu_percent": 3.0, "memory_percent": 20.0},
            "services": {"supervisor": {}, "system": {}},
            "processes": [{"name": "logger", "state": "running", "pid": pid}]}


def test_cluster_model_loads_a_snapshot_and_follows_events():
    m = ClusterModel()
    m.load({"self": "a", "nodes": [entry("a"), entry("b", temp=30.0)]})
    assert m.self_id == "a" and [r.id for r in m.rows()] == ["a", "b"] and m.counts() == (2, 2)
    v = m.version
    assert m.apply({"topic": "$cluster/node/state", "node": "b", "data": {**entry("b", temp=31.5), "last_seen": 9.0},
                    "ts": 9.0}, now=10.0)
    assert m.nodes["b"].metrics["temperature_c"] == 31.5 and m.version > v
    m.apply({"topic": "$cluster/node/offline", "node": "b", "data": {"id": "b"}, "ts": 11.0}, now=11.0)
    assert not m.nodes["b"].online and m.nodes["b"].since == 11.0 and m.counts() == (1, 2)
    # metrics are kept from before it went away (shown dimmed, not dropped)
    assert m.nodes["b"].metrics["temperature_c"] == 31.5
    m.apply({"topic": "$cluster/node/online", "node": "c", "data": entry("c"), "ts": 12.0}, now=12.0)
    assert m.counts() == (2, 3)
    # the connected node's own metrics and processes
    m.apply({"topic": "metrics/system", "node": "a", "data": {"temperature_c": 44.0, "cpu_percent": 9.0},
             "ts": 13.0}, now=13.0)
    assert m.nodes["a"].metrics["temperature_c"] == 44.0 and m.nodes["a"].last_seen == 13.0
    m.apply({"topic": "process/logger/restarted", "node": "a", "data": {"name": "logger", "pid": 99}}, now=14.0)
    assert m.nodes["a"].processes[0] == {"name": "logger", "state": "running", "pid": 99}
    m.apply({"topic": "process/logger/exited", "node": "a", "data": {"name": "logger", "restart_in": 1.0}}, now=15)
    assert m.nodes["a"].processes[0]["state"] == "backoff"
    # unknown topics and nodes change nothing
    v = m.version
    assert not m.apply({"topic": "alerts/disk", "node": "a", "data": {}}, now=16.0)
    assert not m.apply({"topic": "metrics/system", "node": "zz", "data": {"cpu_percent": 1}}, now=16.0)
    assert m.version == v
    # a fresh snapshot (after a reconnect) drops nodes the cluster no longer knows
    m.load({"self": "a", "nodes": [entry("a")]})
    assert [r.id for r in m.rows()] == ["a"]


def test_row_cells():
    m = ClusterModel()
    m.load({"self": "a", "nodes": [entry("a"), entry("b", online=False)]})
    assert m.nodes["a"].cells(now=7.0, self_id="a") == ("a *", "online", "40.0° sim", "3%", "20%", "2",
                                                        "logger▶10", "2s")
    assert m.nodes["b"].cells(now=7.0, self_id="a")[1] == "OFFLINE"


def test_formatting():
    assert model_label(type("M", (), {"name": "offline"})()) == "offline (rules planner)"
    assert model_label("openai/gpt-4o-mini") == "openai/gpt-4o-mini"
    assert fmt_temp({"temperature_c": 41.25}) == "41.2°" and fmt_temp({}) == "—"
    assert fmt_temp({"temperature_c": 41.0, "simulated": True}) == "41.0° sim"
    assert [fmt_age(x) for x in (None, 0.4, 59, 61, 7200, 90000)] == ["—", "0s", "59s", "1m", "2h", "1d"]
    procs = [{"name": f"p{i}", "state": "running", "pid": 1000 + i} for i in range(6)]
    assert fmt_processes(procs[:1]) == "p0▶1000"
    text = fmt_processes(procs, width=26)
    assert len(text) <= 26 and text == "p0▶1000 p1▶1001 p2▶1002 +3"
    assert fmt_processes([{"name": "web", "state": "stopped", "pid": None}]) == "web■"
    assert fmt_processes([]) == "—"
    line = fmt_stats({"rpc": {"calls": 10, "calls_per_s": 1.25, "errors": {"timeout": 2, "forbidden": 1},
                              "latency_ms": {"p50": 1.0, "p99": 8.0}}})
    assert line == "RPC  1.2 calls/s · 10 calls · 3 errors (timeout 2, forbidden 1) · p50 1.0 ms · p99 8.0 ms"
    assert "waiting" in fmt_stats(None)


def test_parse_watch():
    assert parse_watch("node-b metrics/#") == ("node-b", "metrics/#")
    assert parse_watch("process/#") == (None, "process/#")
    assert parse_watch(". process/#") == (None, "process/#")
    for bad in ("", "a b c"):
        with pytest.raises(ValueError):
            parse_watch(bad)


def test_plan_progress_through_a_fan_out_and_a_failure():
    p = PlanProgress([(1, ["a", "b"]), (2, ["c"]), (3, ["d"])])
    assert p.checked() == [1, 2, 3]
    assert p.toggle(3) is False and p.checked() == [1, 2]
    assert p.steps[3].label() == "unchecked" and p.steps[1].label() == "approve?"
    p.start([1, 2])
    assert [s.status for s in p.steps.values()] == ["queued", "queued", "skipped"]
    assert p.on_call("a", now=10.0) is p.steps[1]
    assert p.steps[1].label(now=11.5) == "running a 1.5s"
    p.on_result(1, True, 0.5)
    assert p.steps[1].status == "running"          # one of two targets done
    p.on_call("b", now=12.0)
    p.on_result(1, True, 0.25)
    assert p.steps[1].status == "ok" and p.steps[1].label() == "ok 2/2"
    p.on_call("c", now=13.0)
    p.on_result(2, False, 0.1, "timeout: c did not answer")
    p.finish()
    assert p.steps[2].label() == "error: timeout: c did not answer"
    assert p.steps[3].status == "skipped" and p.finished and not p.running


def test_plan_progress_marks_unfinished_steps_not_run():
    p = PlanProgress([(1, ["a"]), (2, ["b"])])
    p.start([1, 2])
    p.on_call("a", now=0.0)
    p.on_result(1, False, 0.1, "internal: boom")
    p.finish()
    assert [s.status for s in p.steps.values()] == ["error", "not run"]


async def test_live_connection_fails_fast_while_down_reports_calls_and_counts_ups():
    conn = LiveConnection()
    with pytest.raises(ConnectionLost):
        await conn.call(None, "node", "ping")
    link = FakeLink(three_nodes())
    client = link.factory("ws://fake/ws", None, reconnect=True, backoff_initial=0.01, backoff_cap=0.05,
                          on_state=lambda c: conn.changed())
    conn.attach(client)
    seen = []
    conn.observers.append(lambda *a: seen.append(a))
    await client.connect()
    assert conn.connected and conn.node_id == "node-a" and conn.ups == 1
    got = await conn.call("node-b", "supervisor", "status", {"name": "logger"})
    assert got["pid"] == 4102 and seen == [("node-b", "supervisor", "status", {"name": "logger"})]
    link.refuse = True
    await link.drop()
    await asyncio.wait_for(conn.until(lambda: not conn.connected), 5)
    with pytest.raises(ConnectionLost, match="reconnecting"):
        await conn.call("node-b", "supervisor", "restart", {"name": "logger"})
    assert len(seen) == 1        # a call that could not leave is not shown as going out
    link.refuse = False
    await asyncio.wait_for(conn.until(lambda: conn.connected), 5)   # the client's own loop brought it back
    assert conn.ups == 2 and not conn.failed
    await client.close()


def test_schema_summary():
    schema = {"type": "object", "additionalProperties": False, "required": ["name"],
              "properties": {"name": {"type": "string", "description": "process name"},
                             "lines": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}}}
    assert schema_summary(schema).splitlines() == ["name: string, required — process name",
                                                   "lines: integer, 1..1000, default 50", "(no other params)"]
    assert "no schema" in schema_summary(None)
    assert schema_summary({"type": "object", "properties": {}}) == "(takes no params)"


def test_cli_adds_tui_and_imports_nothing_heavy():
    from cloudisense.tui.cli import add_commands, cmd_tui

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tui", "--url", "ws://h:1/ws", "--model", "offline", "--token", "t"])
    assert (args.url, args.model, args.token, args.func) == ("ws://h:1/ws", "offline", "t", cmd_tui)
    code = ("import sys, cloudisense.tui.cli, cloudisense.tui; "
            "heavy = [m for m in ('textual', 'litellm', 'cloudisense.agent', 'rich') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=20)
    assert out.stdout.strip() == "[]", out.stderr


def test_run_tui_refuses_a_worker_thread():
    import threading

    from cloudisense.tui import run_tui

    errors = []
    t = threading.Thread(target=lambda: errors.append(pytest.raises(RuntimeError, run_tui, "ws://x/ws")))
    t.start()
    t.join(10)
    assert errors and "run_tui_async" in str(errors[0].value)


def test_log_tail_joins_the_read_and_the_events_by_line_number():
    from cloudisense.tui._logtail import LogTail

    t = LogTail()

    def texts(lines):
        return [(x.text, x.note) for x in lines]

    def ev(seq, *lines, skipped=0):
        return {"name": "p", "seq": seq, "lines": list(lines), "skipped": skipped}

    early = ev(1, "b", "c")                        # arrived between subscribing and reading
    assert texts(t.load("p", ["a", "b", "c"], 3)) == [("a", False), ("b", False), ("c", False)]
    assert t.add(early) == []                      # already read
    assert texts(t.add(ev(2, "c", "d"))) == [("d", False)]
    assert texts(t.add(ev(6, "g", skipped=2))) == [("… 2 lines of p not shown (a burst bigger than one event, or "
                                                    "the link dropped)", True), ("g", False)]
    assert texts(t.load("p", ["f", "g", "h"], 8)) == [("h", False)]   # read again after a reconnect
    out = t.add(ev(0, "x"))                        # before the live events went past the read: a repeat
    assert out == []
    t.add(ev(8, "i"))
    out = t.add(ev(0, "new start"))                # the node restarted: numbering starts again
    assert out[0].note and "restarted" in out[0].text and out[1].text == "new start"
    assert t.add({"name": "p", "lines": "not a list"}) == [] and t.add("junk") == []
