"""Session recording and replay: the committed recorded session, and record → replay round trips."""

from __future__ import annotations

import argparse
import copy
import json
from pathlib import Path

import pytest
from agentfix import THREE, pids

from cloudisense.agent import Agent, Decision, load_session, run_session
from cloudisense.agent import cli
from cloudisense.tools import FakeCluster

SESSION = Path(__file__).resolve().parents[2] / "cassettes" / "sessions" / "restart_coolest_rejected_once.jsonl"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    cli.add_commands(p.add_subparsers())
    return p


def test_the_recorded_session_loads():
    s = load_session(SESSION)
    assert s.request == "restart logger on coolest node"
    assert len(s.replies) == 5 and s.rejections == ["not node-b, it's in maintenance"]
    assert [p["steps"][0]["fact"]["targets"] for p in s.plans] == [["node-b"], ["node-c"]]
    # every reply is stored with the request it answered: the whole conversation and the tool schemas
    assert len(s.turns) == 5 and s.model == "openai/recorded-model" and s.nonce
    first = s.turns[0].request
    assert [m["role"] for m in first["messages"]] == ["system", "user"]
    assert first["messages"][1]["content"].startswith("Request: restart logger on coolest node")
    assert {t["function"]["name"] for t in first["tools"]} >= {"find_nodes", "call"}
    assert s.turns[1].request["messages"][-1]["role"] == "tool"  # turn 2 was asked with the find_nodes result
    assert "node-b" in s.turns[1].request["messages"][-1]["content"]


async def test_recorded_session_replayed_gives_the_same_plans_and_asks_again(fake):
    s = load_session(SESSION)
    asked = []

    async def operator(result):
        asked.append(result.plan.hash)
        return Decision("approve", via="test")

    before = pids(fake)
    out = await run_session(Agent(fake, s.model_for_replay(), nonce=s.nonce), s.request, operator, replay_feedback=s.rejections)
    assert [r.plan.hash for r in out.results] == [p["hash"] for p in s.plans]  # same plans, same facts
    assert asked == [s.plans[-1]["hash"]]  # the recorded rejection was re-applied; approval asked again
    assert out.status == "done"
    after = pids(fake)
    assert after["node-c"] != before["node-c"] and after["node-a"] == before["node-a"] and after["node-b"] == before["node-b"]


def test_replay_cli_yes_json(fake, tmp_path, capsys):
    args = parser().parse_args(["replay", str(SESSION), "--yes", "--json", "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_replay(args, conn=fake) == 0
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["status"] == "done" and doc["revisions"] == 1
    assert doc["plan"]["steps"][0]["node"] == "node-c"
    assert "replay: same plan as recorded" in out.err
    assert [c.node for c in fake.mutating_calls] == ["node-c"]


def test_replay_never_reuses_the_recorded_approval(fake, tmp_path):
    args = parser().parse_args(["replay", str(SESSION), "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_replay(args, conn=fake, input_fn=lambda prompt: "q") == 3
    assert fake.mutating_calls == []


def test_replay_against_a_changed_cluster_refuses_with_a_diff(tmp_path, capsys):
    """b is now 70 °C: the recorded "restart the coolest (b)" answered another question, so replay refuses."""
    snap = copy.deepcopy(THREE)
    snap["nodes"][1]["metrics"]["temperature_c"] = 70.0
    fake = FakeCluster.from_snapshot(snap)
    args = parser().parse_args(["replay", str(SESSION), "--yes", "--json", "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_replay(args, conn=fake) == 4
    out = capsys.readouterr()
    doc = json.loads(out.out)
    assert doc["status"] == "stale" and doc["failure"] == "replay_mismatch" and doc["plan"] is None
    assert "request of model turn 2 differs from the recording" in doc["error"]
    # the diff shows the find_nodes result that changed: node-b was 38 °C, is 70 °C
    assert "-" in doc["diff"] and "38.0" in doc["diff"] and "70.0" in doc["diff"]
    assert "recorded messages" in out.err and "Nothing ran" in out.err
    assert "same plan" not in out.err
    assert fake.mutating_calls == []


def test_replay_of_a_changed_prompt_refuses(fake, tmp_path, capsys, monkeypatch):
    from cloudisense.agent import _planner

    monkeypatch.setattr(_planner, "load_prompt", lambda name: "You are a different agent.")
    args = parser().parse_args(["replay", str(SESSION), "--yes", "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_replay(args, conn=fake) == 4
    cap = capsys.readouterr()
    assert "request of model turn 1 differs from the recording" in cap.out
    assert "+ \"content\": \"You are a different agent.\"" in cap.err.replace("  ", " ")
    assert fake.mutating_calls == []


def test_a_format_1_session_is_refused(tmp_path, capsys):
    f = tmp_path / "old.jsonl"
    f.write_text('{"kind": "session", "version": 1, "request": "x"}\n'
                 '{"kind": "model_turn", "turn": 1, "reply": {"content": "Done."}}\n')
    assert cli.cmd_replay(parser().parse_args(["replay", str(f)])) == 2
    assert "would prove nothing" in capsys.readouterr().err


def test_ask_record_then_replay_round_trip(tmp_path, capsys):
    rec = tmp_path / "s.jsonl"
    fake = FakeCluster.from_snapshot(copy.deepcopy(THREE))
    args = parser().parse_args(["ask", "restart logger on the least loaded node", "--yes", "--record", str(rec),
                                "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_ask(args, conn=fake) == 0
    assert [c.node for c in fake.mutating_calls] == ["node-a"]
    kinds = [json.loads(line)["kind"] for line in rec.read_text().splitlines()]
    assert kinds == ["session", "model_turn", "tool", "model_turn", "plan", "approval", "step", "execution"]
    fake2 = FakeCluster.from_snapshot(copy.deepcopy(THREE))
    capsys.readouterr()
    args = parser().parse_args(["replay", str(rec), "--yes", "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_replay(args, conn=fake2) == 0
    assert [c.node for c in fake2.mutating_calls] == ["node-a"]
    assert "same plan as recorded" in capsys.readouterr().err


@pytest.mark.parametrize("text,msg", [("not json\n", "not JSON"), ('{"kind": "tool"}\n', "no session record")])
def test_bad_session_files(tmp_path, text, msg, capsys):
    f = tmp_path / "bad.jsonl"
    f.write_text(text)
    with pytest.raises(ValueError, match=msg):
        load_session(f)
    assert cli.cmd_replay(parser().parse_args(["replay", str(f)])) == 2
    assert msg in capsys.readouterr().err
