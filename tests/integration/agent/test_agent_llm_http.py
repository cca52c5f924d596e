"""The LLM path as users run it: ``cloudisense ask --model openai/… --api-base URL`` through the real litellm
to a real OpenAI-compatible HTTP server on a free port (tests/llm_server.py), scripted per scenario.

The cluster side is an in-process FakeCluster (three nodes: node-a 61 °C, node-b 38 °C, node-c 52 °C), so
each test sees exactly what the CLI printed (fd-level capture: a library writing to stdout would show),
its exit code, what reached the cluster, and what litellm sent over HTTP.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "agent"))
from agentfix import THREE, pids  # noqa: E402
from llm_server import LLMServer, eval_brain, http_error, raw, reply, stall, tool  # noqa: E402

from cloudisense.agent import LiteLLMModel, cli  # noqa: E402
from cloudisense.tools import FakeCluster  # noqa: E402

pytestmark = pytest.mark.timeout(120)  # the first test imports litellm (5-40 s on a busy machine)
MODEL = "openai/test-model"
COOLEST = {"where": {"online": True, "ids": None, "exclude": None, "service": None, "process": "logger",
                     "running": None, "conditions": None}, "sort_by": "temperature_c", "order": "asc", "pick": "one"}
FIND_COOLEST = {"where": {"online": True, "ids": None, "exclude": None, "service": None, "process": None,
                          "running": "logger", "conditions": None}, "sort_by": "temperature_c", "order": "asc",
                "limit": 3}


def restart(node=None, selector=None, reason="restart logger"):
    return {"node": node, "selector": selector, "service": "supervisor", "method": "restart",
            "params_json": '{"name": "logger"}', "reason": reason}


@pytest.fixture(scope="module", autouse=True)
def litellm_loaded():
    LiteLLMModel._litellm()  # import once, so timings below measure waits, not the import


@pytest.fixture
def fake():
    return FakeCluster.from_snapshot(copy.deepcopy(THREE))


def run(srv, fake, tmp_path, *argv, answers=(), request="restart logger on coolest node", cmd="ask"):
    p = argparse.ArgumentParser()
    cli.add_commands(p.add_subparsers())
    args = p.parse_args([cmd, request, "--model", MODEL, "--api-base", srv.base_url,
                         "--audit", str(tmp_path / "audit.jsonl"), *argv])
    it = iter(answers)
    t0 = time.monotonic()
    code = cli.cmd_ask(args, conn=fake, input_fn=lambda prompt: next(it))
    return code, time.monotonic() - t0


def out_json(capfd):
    cap = capfd.readouterr()
    return json.loads(cap.out), cap.err  # stdout is one JSON document and nothing else


def test_happy_path_through_litellm(fake, tmp_path, capfd, monkeypatch):
    monkeypatch.setenv("MY_LLM_KEY", "sk-test-secret-123456")
    before = pids(fake)
    with LLMServer([tool("find_nodes", FIND_COOLEST), tool("call", restart(selector=COOLEST)),
                    reply("Plan: restart logger on node-b, the coolest.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--yes", "--json", "--api-key-env", "MY_LLM_KEY",
                      "--log-level", "info")
    doc, err = out_json(capfd)
    assert code == 0 and doc["status"] == "done" and doc["exit_code"] == 0
    [step] = doc["plan"]["steps"]
    assert (step["node"], step["method"], step["selector"]) == ("node-b", "restart",
                                                                "coolest online node with process logger")
    assert [c.node for c in fake.mutating_calls] == ["node-b"] and pids(fake)["node-a"] == before["node-a"]
    assert "asking openai/test-model… turn 1/8" in err and "turn 3/8" in err
    assert "LiteLLM" not in err  # litellm's own INFO lines: quiet (and never on stdout)
    # what litellm really sent: strict tools, one call at a time, our key from --api-key-env
    body = srv.requests[0]
    assert body["model"] == "test-model" and body["parallel_tool_calls"] is False
    assert all(t["function"]["strict"] is True for t in body["tools"])
    assert srv.headers[0]["authorization"] == "Bearer sk-test-secret-123456"
    assert len(srv.requests) == 3


def test_malformed_tool_arguments_go_back_to_the_model(fake, tmp_path, capfd):
    with LLMServer([tool("call", '{"node": "node-b", "service": '), tool("call", restart(selector=COOLEST)),
                    reply("Plan: restart logger on node-b.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--dry-run", "--json")
    doc, _ = out_json(capfd)
    assert code == 0 and doc["plan"]["steps"][0]["node"] == "node-b"
    sent = srv.requests[1]["messages"][-1]
    assert sent["role"] == "tool" and "status=error" in sent["content"] and "bad_arguments" in sent["content"]
    assert fake.mutating_calls == []


def test_unknown_tool_then_giving_up_is_not_planned(fake, tmp_path, capfd):
    with LLMServer([tool("restart_everything", {}), reply("I cannot do that with these tools.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--yes", "--json")
    doc, _ = out_json(capfd)
    assert code == 2 and doc["exit_code"] == 2 and doc["plan"]["steps"] == []
    assert "unknown_tool" in srv.requests[1]["messages"][-1]["content"]
    assert fake.mutating_calls == []


def test_an_invented_node_is_refused_and_nothing_runs(fake, tmp_path, capfd):
    with LLMServer([tool("call", restart(node="node-z")), reply("node-z does not exist.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--yes", "--json")
    doc, _ = out_json(capfd)
    assert code == 2 and doc["observations"][0]["result"]["code"] == "unknown_node"
    assert "never guess" in srv.requests[1]["messages"][-1]["content"].lower()
    assert fake.mutating_calls == []


def test_http_500_is_a_model_failure_after_the_retries(fake, tmp_path, capfd):
    with LLMServer([http_error(500, "upstream exploded")] * 3) as srv:
        code, secs = run(srv, fake, tmp_path, "--yes", "--json", "--retries", "2")
    doc, err = out_json(capfd)
    assert code == 7 and doc["status"] == "failed" and doc["failure"] == "provider"
    assert len(srv.requests) == 3 and "3 attempts" in doc["error"]
    assert "HTTP 500; retrying in 0.5 s (attempt 2/3)" in err and "HTTP 500; retrying in 1 s (attempt 3/3)" in err
    assert "Nothing was executed" in doc["message"] and fake.mutating_calls == []
    assert secs < 10


def test_429_retry_after_is_honoured(fake, tmp_path, capfd):
    with LLMServer([http_error(429, "slow down", {"retry-after": "1"}), tool("call", restart(selector=COOLEST)),
                    reply("Plan: restart logger on node-b.")]) as srv:
        code, secs = run(srv, fake, tmp_path, "--dry-run", "--json")
    doc, err = out_json(capfd)
    assert code == 0 and doc["plan"]["steps"][0]["node"] == "node-b"
    assert "HTTP 429; retrying in 1 s (attempt 2/3)" in err and secs >= 1.0
    assert len(srv.requests) == 3


def test_a_stalled_endpoint_is_bounded_by_model_timeout(fake, tmp_path, capfd):
    with LLMServer([stall()]) as srv:
        code, secs = run(srv, fake, tmp_path, "--yes", "--json", "--model-timeout", "3", "--retries", "0")
    doc, err = out_json(capfd)
    assert code == 7 and doc["failure"] == "timeout" and "no answer within 3 s" in doc["error"]
    assert 3.0 <= secs < 5.0, secs
    assert "asking openai/test-model… turn 1/8" in err and fake.mutating_calls == []


def test_the_budget_bounds_the_whole_plan_retries_included(fake, tmp_path, capfd):
    with LLMServer([stall()] * 6) as srv:
        code, secs = run(srv, fake, tmp_path, "--yes", "--json", "--model-timeout", "2", "--retries", "5",
                         "--budget", "3.5")
    doc, err = out_json(capfd)
    assert code == 7 and doc["failure"] == "budget" and "budget" in doc["error"]
    assert 3.0 <= secs < 5.5, secs
    assert "no answer within 2 s; retrying" in err and fake.mutating_calls == []


def test_malformed_json_from_the_provider_is_a_model_failure(fake, tmp_path, capfd):
    with LLMServer([raw(b'{"choices": [oops')] * 3) as srv:
        code, _ = run(srv, fake, tmp_path, "--yes", "--json", "--retries", "0")
    doc, _ = out_json(capfd)
    assert code == 7 and doc["status"] == "failed" and doc["plan"] is None
    assert fake.mutating_calls == []


@pytest.mark.parametrize("claim", ["Done: I restarted logger on node-b.",
                                   "I have successfully restarted the logger on node-b.",
                                   "The logger on node-b has been restarted."])
def test_a_text_only_claim_of_success_is_shown_as_unverified(fake, tmp_path, capfd, claim):
    with LLMServer([reply(claim)]) as srv:
        code, _ = run(srv, fake, tmp_path, "--yes", "--json")
    doc, _ = out_json(capfd)
    assert code == 2 and doc["status"] != "done" and doc["unverified"] is True
    assert doc["message"].startswith("The model answered without acting: nothing ran.")
    assert claim in doc["message"] and fake.mutating_calls == []


def test_a_text_only_claim_on_the_terminal(fake, tmp_path, capfd):
    with LLMServer([reply("Done: I restarted logger on node-b.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--yes")
    out = capfd.readouterr().out
    assert code == 2 and "The model answered without acting: nothing ran." in out
    assert "unverified" in out and fake.mutating_calls == []


def test_a_read_only_answer_is_not_mistaken_for_a_claim(fake, tmp_path, capfd):
    with LLMServer([tool("find_nodes", FIND_COOLEST), reply("node-b is the coolest node, at 38 °C.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--json", request="which node is coolest?")
    doc, _ = out_json(capfd)
    assert code == 0 and doc["unverified"] is False and doc["message"] == "node-b is the coolest node, at 38 °C."


def test_a_streamed_answer_appears_as_it_arrives(fake, tmp_path, capfd):
    with LLMServer([tool("call", restart(selector=COOLEST)),
                    reply("Plan: restart logger on node-b, the coolest node right now.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--dry-run", "--json", "--stream")
    doc, err = out_json(capfd)
    assert code == 0 and doc["plan"]["steps"][0]["node"] == "node-b"
    assert all(b.get("stream") is True for b in srv.requests)
    assert "Plan: restart logger on node-b, the coolest node right now." in err  # streamed to stderr
    assert doc["plan"]["summary"] == "Plan: restart logger on node-b, the coolest node right now."


def test_a_node_the_model_named_after_ranking_is_rechecked_by_that_ranking(fake, tmp_path, capfd):
    """The model ranks (coolest first: node-b), then names node-b.  Before execution node-b heats to 70 °C:
    the plan recorded the ranking, so the executor notices node-b is no longer the coolest."""

    def operator(prompt):
        fake.nodes["node-b"].metrics["temperature_c"] = 70.0
        return "a"

    with LLMServer([tool("find_nodes", FIND_COOLEST), tool("call", restart(node="node-b")),
                    reply("Plan: restart logger on node-b.")]) as srv:
        p = argparse.ArgumentParser()
        cli.add_commands(p.add_subparsers())
        args = p.parse_args(["ask", "restart logger on coolest node", "--model", MODEL, "--api-base", srv.base_url,
                             "--audit", str(tmp_path / "audit.jsonl"), "--json"])
        code = cli.cmd_ask(args, conn=fake, input_fn=operator)
    doc, _ = out_json(capfd)
    [step] = doc["plan"]["steps"]
    assert step["why"].startswith("named by the model: node-b, ranked first by its find_nodes (coolest online node")
    assert code == 4 and doc["status"] == "stale"
    assert "the model chose node-b as the coolest online node running logger; now that is node-c" in \
        doc["execution"]["message"]
    assert fake.mutating_calls == []
    audit = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    plan = next(e for e in audit if e["event"] == "plan")
    assert plan["steps"][0]["fact"]["origin"] == "model" and plan["steps"][0]["criterion"]["sort_by"] == "temperature_c"


def test_a_node_the_model_named_without_reason_is_marked(fake, tmp_path, capfd):
    with LLMServer([tool("call", restart(node="node-c")), reply("Plan: restart logger on node-c.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--dry-run", "--json")
    doc, _ = out_json(capfd)
    assert code == 0 and doc["plan"]["steps"][0]["why"].startswith("named by the model: node-c")


def test_print_config_layers_file_env_and_flags(tmp_path, capfd, monkeypatch):
    cfg = tmp_path / "agent.toml"
    cfg.write_text('[agent]\nmodel = "openai/from-file"\napi_base = "http://127.0.0.1:9/v1"\ntimeout = 7\n'
                   'budget = 50\napi_key_env = "K"\n')
    monkeypatch.setenv("CLOUDISENSE_MODEL_RETRIES", "4")
    monkeypatch.setenv("K", "sk-never-printed-123")
    p = argparse.ArgumentParser()
    cli.add_commands(p.add_subparsers())
    args = p.parse_args(["ask", "x", "--config", str(cfg), "--budget", "20", "--print-config"])
    assert cli.cmd_ask(args) == 0
    out = capfd.readouterr().out
    doc = json.loads(out)
    assert doc == {"model": "openai/from-file", "api_base": "http://127.0.0.1:9/v1", "api_key_env": "K",
                   "timeout": 7.0, "max_retries": 4, "budget": 20.0, "temperature": 0.0, "stream": False,
                   "api_key_set": True}
    assert "sk-never" not in out
    args = p.parse_args(["ask", "x", "--config", str(cfg), "--model-timeout", "-1", "--print-config"])
    assert cli.cmd_ask(args) == 2
    assert "model setting timeout (--model-timeout): Input should be greater than 0" in capfd.readouterr().err


def test_record_http_cassette_replays_with_no_server(fake, tmp_path, capfd):
    """Record the provider traffic with --record-http, then replay the cassette through litellm, server gone."""
    import vcr

    script = [tool("find_nodes", FIND_COOLEST), tool("call", restart(selector=COOLEST)),
              reply("Plan: restart logger on node-b.")]
    with LLMServer(script) as srv:
        code, _ = run(srv, fake, tmp_path, "--dry-run", "--json", "--record-http", str(tmp_path / "cassettes"),
                      "--api-key-env", "REC_KEY")
        base = srv.base_url
    recorded, _ = out_json(capfd)
    assert code == 0
    cassette = tmp_path / "cassettes" / "restart_logger_on_coolest_node.yaml"
    text = cassette.read_text()
    assert text.count("uri: " + base) == 3 and "authorization" not in text.lower()
    assert cli.FIXED_NONCE in text

    # the server is closed: only the cassette can answer, matched on the request body
    from cloudisense.agent import Planner
    from cloudisense.agent._model import LiteLLMModel as M

    litellm = M._litellm()
    old = litellm.disable_aiohttp_transport
    litellm.disable_aiohttp_transport = True
    try:
        v = vcr.VCR(record_mode="none", match_on=["method", "uri", "json_body"])
        v.register_matcher("json_body", lambda a, b: json.loads(a.body) == json.loads(b.body) or
                           (_ for _ in ()).throw(AssertionError("body differs")))
        with v.use_cassette(str(cassette)) as cas:
            import asyncio

            r = asyncio.run(Planner(M(MODEL, api_base=base, max_retries=0), FakeCluster.from_snapshot(copy.deepcopy(THREE)),
                                    nonce=cli.FIXED_NONCE).plan("restart logger on coolest node"))
            assert cas.all_played
    finally:
        litellm.disable_aiohttp_transport = old
    assert r.ok and [s.targets for s in r.plan.steps] == [["node-b"]]
    assert r.plan.hash == recorded["plan"]["hash"]


def test_eval_runs_a_set_against_the_server(tmp_path, capfd):
    # Every fourth case of each file of the repository's set (all kinds, all snapshots): the HTTP path is
    # the same for each, and the whole set (1,000+ cases through litellm) is the offline eval's job.
    full = Path(__file__).resolve().parents[2] / "agent_eval"
    set_dir = tmp_path / "set"
    shutil.copytree(full / "snapshots", set_dir / "snapshots")
    for f in full.glob("*.jsonl"):
        lines = [line for line in f.read_text().splitlines() if line.strip()]
        (set_dir / f.name).write_text("\n".join(lines[::4]) + "\n")
    with LLMServer(brain=eval_brain(set_dir)) as srv:
        p = argparse.ArgumentParser()
        cli.add_commands(p.add_subparsers())
        args = p.parse_args(["eval", "--model", MODEL, "--api-base", srv.base_url, "--set", str(set_dir), "--json",
                             "--min-accuracy", "0.9"])
        code = cli.cmd_eval(args)
        asked = len(srv.requests)
    doc = json.loads(capfd.readouterr().out)
    n = sum(1 for f in set_dir.glob("*.jsonl") for line in f.read_text().splitlines() if line.strip())
    assert doc["model"] == MODEL and doc["total"] == n and doc["unsafe"] == 0
    assert code == 0 and doc["accuracy"] >= 0.9
    assert asked >= n  # every case went over HTTP


def test_a_provider_refusing_parallel_tool_calls_gets_it_dropped(fake, tmp_path, capfd):
    refusal = http_error(400, "Unrecognized request argument supplied: parallel_tool_calls")
    with LLMServer([refusal, tool("call", restart(selector=COOLEST)), reply("Plan: restart logger on node-b.")]) as srv:
        code, _ = run(srv, fake, tmp_path, "--dry-run", "--json", "--retries", "0")
    doc, err = out_json(capfd)
    assert code == 0 and doc["plan"]["steps"][0]["node"] == "node-b"
    assert srv.requests[0]["parallel_tool_calls"] is False
    assert all("parallel_tool_calls" not in b for b in srv.requests[1:]) and len(srv.requests) == 3
    assert "the provider refused parallel_tool_calls; asking again without it" in err


def test_a_bad_key_is_not_retried(fake, tmp_path, capfd):
    with LLMServer([http_error(401, "invalid api key")] * 3) as srv:
        code, _ = run(srv, fake, tmp_path, "--yes", "--json")
    doc, _ = out_json(capfd)
    assert code == 7 and doc["failure"] == "provider" and len(srv.requests) == 1
    assert "AuthenticationError" in doc["error"]
