"""``ask`` through the CLI handler on a fake cluster: approval paths, --yes, --dry-run, --json, audit, exit codes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from agentfix import pids

from cloudisense.agent import AuditLog, cli, read_audit


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    cli.add_commands(p.add_subparsers())
    return p


def ask(fake, tmp_path: Path, *argv: str, answers: list[str] | None = None) -> int:
    args = parser().parse_args(["ask", *argv, "--audit", str(tmp_path / "audit.jsonl")])
    it = iter(answers or [])
    prompts = []

    def input_fn(prompt: str) -> str:
        prompts.append(prompt)
        return next(it)

    code = cli.cmd_ask(args, conn=fake, input_fn=input_fn)
    assert next(it, None) is None, f"unused answers; prompts were {prompts}"
    return code


def test_commands_and_defaults(monkeypatch):
    monkeypatch.setenv("CLOUDISENSE_URL", "ws://example:1/ws")
    monkeypatch.setenv("CLOUDISENSE_MODEL", "ollama/llama3")
    a = parser().parse_args(["ask", "status logger"])
    assert (a.url, cli.model_settings(a).model, a.yes, a.dry_run, a.json, a.record) == (
        "ws://example:1/ws", "ollama/llama3", False, False, False, None)
    assert a.func is cli.cmd_ask
    assert parser().parse_args(["replay", "f.jsonl"]).func is cli.cmd_replay
    assert parser().parse_args(["eval"]).func is cli.cmd_eval
    monkeypatch.delenv("CLOUDISENSE_URL")
    monkeypatch.delenv("CLOUDISENSE_MODEL")
    a = parser().parse_args(["ask", "x"])
    assert (a.url, cli.model_settings(a).model) == ("ws://127.0.0.1:8765/ws", "offline")


def test_yes_restarts_the_coolest_and_audits_every_decision(fake, tmp_path, capsys):
    before = pids(fake)
    assert ask(fake, tmp_path, "restart logger on coolest node", "--yes") == 0
    after = pids(fake)
    assert after["node-b"] != before["node-b"] and after["node-a"] == before["node-a"] == 100 \
        and after["node-c"] == before["node-c"]
    out = capsys.readouterr().out
    assert "offline — the deterministic rules planner" in out
    assert "why this node" in out and "approved by --yes" in out
    events = read_audit(tmp_path / "audit.jsonl")
    assert [e["event"] for e in events] == ["request", "plan", "approval", "step", "execution"]
    assert events[0]["request"] == "restart logger on coolest node" and events[0]["user"]
    assert events[2]["via"] == "--yes" and events[2]["plan_hash"] == events[1]["plan_hash"]
    assert events[4]["status"] == "done"


def test_dry_run_plans_only(fake, tmp_path, capsys):
    assert ask(fake, tmp_path, "restart logger on all nodes", "--dry-run", "--yes") == 0
    assert fake.mutating_calls == []
    assert "dry run: nothing executed" in capsys.readouterr().out


def test_json_output_is_for_scripts(fake, tmp_path, capsys):
    assert ask(fake, tmp_path, "stop logger on the hottest node", "--json", "--dry-run") == 0
    cap = capsys.readouterr()
    doc = json.loads(cap.out)  # stdout is pure JSON; the banner went to stderr
    [step] = doc["plan"]["steps"]
    assert {k: step[k] for k in ("node", "service", "method", "params")} == {
        "node": "node-a", "service": "supervisor", "method": "stop", "params": {"name": "logger"}}
    assert step["reason"] and step["selector"] == "hottest online node with process logger"
    assert "deterministic rules planner" in cap.err


def test_json_includes_results(fake, tmp_path, capsys):
    assert ask(fake, tmp_path, "restart logger on node-c", "--json", "--yes") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "done" and doc["execution"]["results"][0]["node"] == "node-c"
    assert doc["approval"]["via"] == "--yes"


def test_terminal_approve_all(fake, tmp_path):
    assert ask(fake, tmp_path, "restart logger on coolest node", answers=["a"]) == 0
    assert [c.node for c in fake.mutating_calls] == ["node-b"]


def test_terminal_quit_runs_nothing(fake, tmp_path):
    assert ask(fake, tmp_path, "restart logger on coolest node", answers=["q"]) == 3
    assert fake.mutating_calls == []
    assert [e["event"] for e in read_audit(tmp_path / "audit.jsonl")][-1] == "rejection"


def test_terminal_pick_steps_and_bad_answers(fake, tmp_path):
    assert ask(fake, tmp_path, "restart logger on all nodes", answers=["maybe", "p", "7", "p", "1"]) == 0
    assert [c.node for c in fake.mutating_calls] == ["node-a", "node-b", "node-c"]  # one step, fan-out


def test_reject_with_words_replans(fake, tmp_path, capsys):
    code = ask(fake, tmp_path, "restart logger on coolest node",
               answers=["r", "not node-b, it's in maintenance", "a"])
    assert code == 0
    assert [c.node for c in fake.mutating_calls] == ["node-c"]
    events = [e["event"] for e in read_audit(tmp_path / "audit.jsonl")]
    assert events == ["request", "plan", "rejection", "plan", "approval", "step", "execution"]


def test_feedback_the_offline_model_cannot_use_ends_without_action(fake, tmp_path):
    assert ask(fake, tmp_path, "restart logger on coolest node", answers=["r", "hmm, do it tomorrow"]) == 2
    assert fake.mutating_calls == []


@pytest.mark.parametrize("text", ["restart logger on node-zzz", "make me a sandwich", "stop ghost on node-a"])
def test_requests_that_name_nothing_real_are_not_planned(fake, tmp_path, text, capsys):
    assert ask(fake, tmp_path, text, "--yes") == 2
    assert fake.mutating_calls == []
    out = capsys.readouterr().out
    assert "Not planned" in out or "Could not do that" in out


def test_a_request_without_a_target_gets_a_question_with_options(fake, tmp_path, capsys):
    assert ask(fake, tmp_path, "restart logger", "--json") == 8
    assert fake.mutating_calls == []
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "clarify" and doc["plan"]["steps"] == []
    assert "which node should I restart logger on?" in doc["message"]
    assert doc["options"] == ["node-a", "node-b", "node-c", "all nodes"]


def test_json_status_is_one_of_the_closed_set(fake, tmp_path, capsys):
    from cloudisense.agent._agent import PUBLIC_STATUSES

    cases = [("restart logger on node-a", ["--dry-run"], "planned", 0),
             ("how hot is node-a?", [], "answered", 0),
             ("restart it", [], "clarify", 8),
             ("make me a sandwich", [], "refused", 2),
             ("restart logger on node-c", ["--yes"], "done", 0)]
    for text, flags, status, code in cases:
        assert ask(fake, tmp_path, text, "--json", *flags) == code, text
        doc = json.loads(capsys.readouterr().out)
        assert doc["status"] == status and doc["status"] in PUBLIC_STATUSES, (text, doc["status"])
    assert ask(fake, tmp_path, "restart logger on node-a", "--json", answers=["q"]) == 3
    assert json.loads(capsys.readouterr().out)["status"] == "rejected"


def test_explain_shows_the_intermediate_form(fake, tmp_path, capsys):
    assert ask(fake, tmp_path, "retsart logger on all nodes except the hottest", "--explain", "--dry-run",
               "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    form = doc["explain"]["form"]
    assert form["corrections"] == ["read 'retsart' as 'restart'"]
    assert form["steps"] == [{"verb": "restart", "processes": ["logger"],
                              "target": "except(all, rank(all, hottest, top 1))"}]
    assert doc["status"] == "planned" and doc["plan"]["steps"][0]["nodes"] == ["node-b", "node-c"]
    assert "read 'retsart' as 'restart'" in doc["message"] or "retsart" in doc["plan"]["steps"][0]["reason"]


def test_read_only_requests_answer_without_approval(fake, tmp_path, capsys):
    assert ask(fake, tmp_path, "status logger on all nodes") == 0  # no answers needed: nothing to approve
    out = capsys.readouterr().out
    assert "node-b: logger running" in out
    assert fake.mutating_calls == []


def test_stale_exit_code(fake, tmp_path):
    def answer(prompt: str) -> str:  # the operator approves; meanwhile node-b heats up
        fake.nodes["node-b"].metrics["temperature_c"] = 90.0
        return "a"

    args = parser().parse_args(["ask", "restart logger on coolest node", "--audit", str(tmp_path / "a.jsonl")])
    assert cli.cmd_ask(args, conn=fake, input_fn=answer) == 4
    assert fake.mutating_calls == []


def test_audit_log_is_append_only(tmp_path):
    path = tmp_path / "audit.jsonl"
    AuditLog(path, user="alice").write("request", request="one")
    first = path.read_text()
    AuditLog(path, user="bob").write("request", request="two")
    assert path.read_text().startswith(first)
    assert [e["user"] for e in read_audit(path)] == ["alice", "bob"]
