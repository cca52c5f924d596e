"""Every printer of the agent, MCP and node CLIs, fed random control sequences and markup (hypothesis).

Text from outside — a model's reason and summary, node and process names,
process logs, params, results, errors, an MCP client's request — goes
through each terminal printer as the operator would run it (the command
handlers with their output captured), and what comes out must hold no
character a terminal acts on (C0 but newline and tab, DEL, C1, bidi
controls, non-characters, lone surrogates) and must not crash (a ``[/]``
crashed the rich plan table).  JSON output must still parse back to the
same data.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudisense.agent import cli as agent_cli
from cloudisense.agent._executor import ExecutionReport, StepResult
from cloudisense.agent._plan import Fact, Plan, PlanStep
from cloudisense.agent._planner import PlanResult
from cloudisense.agent._ui import model_banner, render_plan, render_report
from cloudisense.agent.pending import PendingStore
from cloudisense.node._text import UNSAFE, json_text
from cloudisense.node.cli import main as node_main
from cloudisense.tools import FakeCluster, FakeNode
from cloudisense.agent import mcp_cli

pytestmark = pytest.mark.timeout(300)

NASTY = ["\x1b]0;pwned\x07", "\x1b]8;;http://evil.example\x1b\\", "\r", "\x1b[2K", "\x1b[1A", "\x1b[31m", "\x9b31m",
         "\x1bP", "\x07", "\x08", "\x00", "\x7f", "\x85", "\u202e", "\u2066", "\u200b", "\ufeff", "\ufdd0",
         "\U0010ffff", "\n", "\t", "[/]", "[bold]", "[/bold]", "[link=http://evil.example]", "[red", "]", "\\",
         ":smile:", "{", "%s", "—", "°C", "step 1: supervisor.status", "<<end-untrusted-data x>>"]
# Everything a JSON document or a Python str can carry; lone surrogates only where they can't reach a file.
piece = st.one_of(st.sampled_from(NASTY), st.text(max_size=6))
hostile = st.lists(piece, max_size=8).map("".join)
hostile_any = st.lists(st.one_of(piece, st.just("\ud800"), st.just("\udfff")), max_size=8).map("".join)

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def assert_safe(text: str) -> None:
    bad = sorted({repr(c) for c in UNSAFE.findall(text)})
    assert not bad, f"raw control characters in the output: {bad}\n{text!r}"


@contextlib.contextmanager
def captured():
    """stdout and stderr as strings (rich's consoles write to whatever sys.stdout/err is at print time)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        yield out, err
    assert_safe(out.getvalue())
    assert_safe(err.getvalue())


def console() -> Any:
    from rich.console import Console

    return Console(file=io.StringIO(), width=100, highlight=False, emoji=False)


def a_plan(text: str, text2: str) -> Plan:
    step = PlanStep(index=1, node=text or "n", service=text2 or "supervisor", method=text or "restart",
                    params={text: text2, "k": [text]}, reason=text2,
                    fact=Fact(targets=[text, text2], online={text: True}, selector=text2 or None, key=text,
                              values={text: 1.0, text2: None}, why=text))
    return Plan(request=text, steps=[step], summary=text2).seal()


# ---- agent/_ui.py: the rich printers --------------------------------------------------------------

@SETTINGS
@given(hostile_any, hostile_any)
def test_plan_table_and_message(text: str, text2: str) -> None:
    c = console()
    render_plan(c, PlanResult(ok=True, plan=a_plan(text, text2), message=text + "\n" + text2))
    render_plan(c, PlanResult(ok=False, message=text2, error=text))
    shown = c.file.getvalue()
    assert_safe(shown)
    assert "why this node" in shown


@SETTINGS
@given(hostile_any, hostile_any, st.sampled_from(["done", "failed", "stale", "refused"]))
def test_report(text: str, text2: str, status: str) -> None:
    c = console()
    report = ExecutionReport(status=status, message=text, skipped=[2],
                             results=[StepResult(step=1, node=text, service=text2, method=text, ok=True,
                                                 result={text: text2}),
                                      StepResult(step=1, node=text2, service=text, method=text2, ok=False,
                                                 error={"code": text, "message": text2})])
    render_report(c, report)
    assert_safe(c.file.getvalue())


@SETTINGS
@given(hostile_any)
def test_model_banner(name: str) -> None:
    class M:
        pass
    m = M()
    m.name = name  # type: ignore[attr-defined]
    c = console()
    c.print(model_banner(m), markup=False)
    assert_safe(c.file.getvalue())


# ---- agent/cli.py: ask and replay end to end, on a cluster whose nodes say hostile things ------------

def hostile_cluster(name: str, line: str) -> FakeCluster:
    procs = {"logger": {"name": "logger", "state": "running", "pid": 101},
             name: {"name": name, "state": "running", "pid": 102}}
    logs = {"logger": [line, f"12:00:00 {name} {line}"], name: [line]}
    return FakeCluster([FakeNode(id="node-a", processes=procs, logs=logs,
                                 metrics={"temperature_c": 40.0, "load": [0.1, 0.1, 0.1]}),
                        FakeNode(id="node-b", processes=dict(procs), logs=logs, metrics={"temperature_c": 30.0})])


def agent_args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    agent_cli.add_commands(p.add_subparsers())
    return p.parse_args(list(argv))


@SETTINGS
@given(hostile, hostile, st.booleans())
def test_ask_logs_and_restart_through_the_cli(name: str, line: str, as_json: bool) -> None:
    fake = hostile_cluster(name, line)
    with tempfile.TemporaryDirectory() as tmp:
        audit = ["--audit", str(Path(tmp) / "audit.jsonl")] + (["--json"] if as_json else [])
        for request in ("logs logger on node-a", f"logs {name} on node-b", "restart logger on coolest node",
                        f"status {name} on all nodes"):
            with captured() as (out, _):
                agent_cli.cmd_ask(agent_args("ask", request, "--yes", *audit), conn=fake)
            if as_json:
                json.loads(out.getvalue())


@SETTINGS
@given(hostile, hostile, st.booleans())
def test_replayed_model_with_hostile_reason_and_summary(reason: str, summary: str, yes: bool) -> None:
    args = {"node": "node-b", "service": "supervisor", "method": "restart", "params_json": '{"name": "logger"}',
            "reason": reason}
    events = [{"kind": "session", "version": 1, "request": "r", "model": summary, "url": None},
              {"kind": "model_turn", "turn": 1, "reply": {"content": None, "tool_calls": [
                  {"id": "c1", "name": "call", "arguments": json.dumps(args)}]}},
              {"kind": "model_turn", "turn": 2, "reply": {"content": summary, "tool_calls": []}},
              {"kind": "plan", "plan": {"hash": summary}}]
    with tempfile.TemporaryDirectory() as tmp:
        session = Path(tmp) / "s.jsonl"
        session.write_text("".join(json.dumps(e) + "\n" for e in events))
        extra = ["--yes"] if yes else ["--dry-run"]
        with captured():
            agent_cli.cmd_replay(agent_args("replay", str(session), "--audit", str(Path(tmp) / "a.jsonl"), *extra),
                                 conn=hostile_cluster("x", "y"))


# ---- agent/mcp_cli.py: pending, approve's outcome, reject ----------------------------------------------

@SETTINGS
@given(hostile, hostile, hostile)
def test_pending_and_reject(text: str, text2: str, text3: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = PendingStore(Path(tmp) / "state")
        rec = store.add(a_plan(text, text2), url=text3, requested_by=text, audit=str(Path(tmp) / "audit.jsonl"),
                        session=text2)
        ns = argparse.Namespace(state_dir=str(store.root), all=True, json=False, id=rec.id, reason=text3)
        with captured():
            mcp_cli.cmd_pending(ns)
            mcp_cli.cmd_reject(ns)
            mcp_cli.cmd_pending(ns)
        ns.json = True
        with captured() as (out, _):
            mcp_cli.cmd_pending(ns)
        [doc] = json.loads(out.getvalue())
        assert doc["steps"][0]["reason"] == text2 and doc["message"].endswith(text3)


@SETTINGS
@given(hostile_any, hostile_any)
def test_describe_and_approve_outcome_lines(text: str, text2: str) -> None:
    doc = {"plan_id": text, "status": text2, "hash": text + text2, "requested_by": text, "url": text2,
           "steps": [{"step": text, "service": text, "method": text2, "params": {text: [text2]}, "nodes": [text],
                      "reason": text2, "why": text}],
           "message": text2,
           "execution": {"results": [{"node": text, "service": text2, "method": text, "ok": True, "result": {text: 1}},
                                     {"node": text2, "service": text, "method": text2, "ok": False,
                                      "error": {"code": text, "message": text2}}]}}
    shown = mcp_cli.describe(doc) + "\n" + "\n".join(mcp_cli.outcome_lines(doc, text, text2))
    assert_safe(shown)
    # one line per field: nothing from outside can add a line (url and message lines only when set)
    assert len(mcp_cli.describe(doc).splitlines()) == 3 + bool(text2) + bool(text2)


# ---- node/cli.py: JSON output and errors ----------------------------------------------------------------

@SETTINGS
@given(st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), hostile_any),
                    lambda kids: st.one_of(st.lists(kids, max_size=4),
                                           st.dictionaries(hostile_any, kids, max_size=4)), max_leaves=12))
def test_json_output_is_safe_and_the_same_document(doc: Any) -> None:
    for kw in ({}, {"indent": 2}):
        text = json_text(doc, **kw)
        assert_safe(text)
        assert json.loads(text) == json.loads(json.dumps(doc))  # the document plain json.dumps writes


@SETTINGS
@given(hostile_any)
def test_node_cli_errors(text: str) -> None:
    arg = "x" + text  # never taken for an option by argparse
    with tempfile.TemporaryDirectory() as tmp:
        with captured():
            assert node_main(["keys", "gen", arg, "--out", tmp]) in (0, 2)
        with captured():
            assert node_main(["call", ".", arg, "{"]) == 2
        with captured():
            assert node_main(["certs", "gen", "--out", os.path.join(tmp, "c"), "--nodes", arg]) in (0, 2)
