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


async def test_recorded_session_replayed_gives_the_same_plans_and_asks_again(fake):
    s = load_session(SESSION)
    asked = []

    async def operator(result):
        asked.append(result.plan.hash)
        return Decision("approve", via="test")

    before = pids(fake)
    out = await run_session(Agent(fake, s.model_for_replay()), s.request, operator, replay_feedback=s.rejections)
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


def test_replay_against_a_changed_cluster_says_so(tmp_path, capsys):
    snap = copy.deepcopy(THREE)
    snap["nodes"][0]["metrics"]["temperature_c"] = 45.0  # node-a is now cooler than node-c
    fake = FakeCluster.from_snapshot(snap)
    args = parser().parse_args(["replay", str(SESSION), "--dry-run", "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_replay(args, conn=fake) == 0
    err = capsys.readouterr().err
    assert "differs from the recording" in err
    assert fake.mutating_calls == []


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
