"""The LLM path's pure parts: settings layering, claims of action, secrets in records, replay matching,
the model-named node's criterion, progress on a terminal (no sockets; the HTTP side is in
tests/integration/agent/test_agent_llm_http.py)."""

from __future__ import annotations

import io
import json

import pytest

from cloudisense.agent import Agent, Decision, Planner, ScriptedModel, load_model_settings, run_session
from cloudisense.agent._model import ModelError
from cloudisense.agent._planner import claims_action
from cloudisense.agent._session import ReplayModel, RecordedTurn, filter_secrets, request_diff
from cloudisense.agent._settings import SettingsError

COOLEST = {"where": {"running": "logger"}, "sort_by": "temperature_c", "order": "asc", "limit": 3}


def restart(node):
    return ("call", {"node": node, "service": "supervisor", "method": "restart", "params_json": '{"name": "logger"}',
                     "reason": "r"})


def test_settings_layers_config_then_env_then_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[agent]\nmodel = "openai/a"\ntimeout = 5\nmax_retries = 1\nbudget = 40\n')
    s = load_model_settings(cfg, {"budget": 10, "model": None}, env={"CLOUDISENSE_MODEL_TIMEOUT": "9",
                                                                     "CLOUDISENSE_STREAM": "yes"})
    assert (s.model, s.timeout, s.max_retries, s.budget, s.stream) == ("openai/a", 9.0, 1, 10.0, True)
    assert load_model_settings(None, {}, env={}).model == "offline"
    with pytest.raises(SettingsError, match=r"api_base \(CLOUDISENSE_API_BASE\)"):
        load_model_settings(None, {}, env={"CLOUDISENSE_API_BASE": "ftp://x"})
    with pytest.raises(SettingsError, match=r"max_retries \(--retries\)"):
        load_model_settings(None, {"max_retries": -1}, env={})
    with pytest.raises(SettingsError, match="unknown|Extra inputs"):
        bad = tmp_path / "bad.toml"
        bad.write_text('[agent]\nmodle = "typo"\n')
        load_model_settings(bad, {}, env={})


@pytest.mark.parametrize("text", ["Done: I restarted logger on b.", "done.", "I've restarted the logger on node-b",
                                  "I have now stopped it.", "The logger was successfully restarted.",
                                  "logger on node-b has been restarted", "Successfully rebooted node-c."])
def test_claims_of_action(text):
    assert claims_action(text)


@pytest.mark.parametrize("text", ["node-b is the coolest node, at 38 °C.", "logger started 3 hours ago on node-a",
                                  "Which node do you mean?", "I can't do that: node-z does not exist.",
                                  "Plan: restart logger on node-b.", ""])
def test_answers_that_claim_nothing(text):
    assert not claims_action(text)


def test_secrets_are_filtered_from_records():
    doc = {"messages": [{"content": "key sk-abcdef1234567890 and Bearer abc.def.ghi123 and api_key=hunter22x"}],
           "x": ["my-own-secret-value"]}
    out = json.dumps(filter_secrets(doc, ("my-own-secret-value",)))
    assert "sk-abcdef" not in out and "abc.def.ghi123" not in out and "hunter22x" not in out
    assert "my-own-secret-value" not in out and out.count("[filtered]") == 4


async def test_replay_model_answers_only_the_recorded_request():
    req = {"messages": [{"role": "user", "content": "Request: x\nnode-b 38.0"}], "tools": [{"t": 1}]}
    m = ReplayModel([RecordedTurn(request=req, reply={"content": "ok"})], name="replay")
    with pytest.raises(ModelError) as e:
        await m.complete([{"role": "user", "content": "Request: x\nnode-b 70.0"}], [{"t": 1}])
    assert e.value.kind == "replay_mismatch" and "turn 1" in str(e.value)
    assert '-  "content": "Request: x\\nnode-b 38.0"' in e.value.diff
    assert '+  "content": "Request: x\\nnode-b 70.0"' in e.value.diff
    assert (await m.complete(req["messages"], req["tools"])).content == "ok"
    with pytest.raises(ModelError, match="was not recorded"):
        await m.complete(req["messages"], req["tools"])


def test_request_diff_is_bounded():
    a = {"messages": [{"content": str(i)} for i in range(200)]}
    b = {"messages": [{"content": f"changed {i}"} for i in range(200)]}
    d = request_diff(a, b, max_lines=20)
    assert len(d.splitlines()) == 21 and "more diff lines" in d


async def test_a_node_named_in_the_request_is_the_operators(fake):
    r = await Planner(ScriptedModel([restart("node-c"), "Plan."]), fake).plan("restart logger on node-c")
    [s] = r.plan.steps
    assert s.fact.origin == "request" and s.fact.why == "named explicitly: node-c" and s.criterion is None


async def test_a_node_the_model_ranked_first_carries_its_criterion(fake):
    r = await Planner(ScriptedModel([("find_nodes", COOLEST), restart("node-b"), "Plan."]), fake).plan(
        "restart logger on the coolest node")
    [s] = r.plan.steps
    assert s.fact.origin == "model" and s.criterion is not None and s.criterion.sort_by == "temperature_c"
    assert s.fact.values == {"node-b": 38.0, "node-c": 52.0, "node-a": 61.0}
    # a node the model did not rank first gets no criterion: it is only marked as the model's choice
    r2 = await Planner(ScriptedModel([("find_nodes", COOLEST), restart("node-c"), "Plan."]), fake).plan(
        "restart logger on the coolest node")
    assert r2.plan.steps[0].criterion is None and r2.plan.steps[0].fact.why.startswith("named by the model: node-c")
    assert r.plan.hash != r2.plan.hash


async def test_the_criterion_is_rechecked_and_a_drift_that_keeps_the_order_passes(fake):
    async def approve(result):
        fake.nodes["node-b"].metrics["temperature_c"] = 40.0  # warmer, still the coolest
        return Decision("approve", via="test")

    agent = Agent(fake, ScriptedModel([("find_nodes", COOLEST), restart("node-b"), "Plan."]))
    out = await run_session(agent, "restart logger on the coolest node", approve)
    assert out.status == "done" and [c.node for c in fake.mutating_calls] == ["node-b"]


async def test_budget_bounds_any_model(fake):
    class Slow:
        name = "slow"

        async def complete(self, messages, tools):
            import asyncio
            await asyncio.sleep(30)

    r = await Planner(Slow(), fake, budget=0.2).plan("restart logger on node-b")
    assert not r.ok and r.failure == "budget" and "budget of 0.2 s" in r.error


def test_progress_on_a_terminal_shows_a_spinner_with_seconds():
    from rich.console import Console

    from cloudisense.agent.cli import Progress

    buf = io.StringIO()
    p = Progress(Console(file=buf, force_terminal=True, width=100), live=True)
    p("status", "asking openai/x… turn 2/8")
    p.stop()
    p("text", "Plan: \x1b[31mred\x1b[0m")
    p.stop()
    text = buf.getvalue()
    import re

    assert re.search(r"asking openai/x… turn 2/8, \d+\.\d s", text), text
    assert "\x1b[31m" not in text and "\\x1b[31m" in text  # streamed model text is data: escaped


async def test_ctrl_c_while_the_provider_call_turns_the_cancel_into_an_error_still_stops():
    """SIGINT cancels the planning task; a provider library that catches the cancel and raises a connection
    error instead (which is retryable) must not make the model ask again and wait out its timeout."""
    import asyncio

    from cloudisense.agent._model import LiteLLMModel

    class APIConnectionError(Exception):   # the name litellm's lost connection has: retryable
        pass

    calls = []

    class Swallowing(LiteLLMModel):
        async def _once(self, litellm, messages, tools):
            calls.append(1)
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                raise APIConnectionError("connection lost") from None

    model = Swallowing("openai/test-model", timeout=30, max_retries=3)
    model._litellm = lambda: None   # no provider is reached: _once is ours
    task = asyncio.ensure_future(model.complete([{"role": "user", "content": "hi"}], []))
    while not calls:
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 3)
    assert len(calls) == 1   # not asked again


def test_ctrl_c_ends_the_process_even_when_cleanup_hangs(tmp_path):
    """After Ctrl-C the watchdog ends a planning process whose cleanup does not finish (exit 130, said why)."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "stuck.py"
    script.write_text(
        "import asyncio, sys\n"
        "from cloudisense.agent.cli import _interruptible\n"
        "async def stuck():\n"
        "    try:\n"
        "        print('ready', flush=True)\n"
        "        await asyncio.sleep(100)\n"
        "    finally:\n"
        "        await asyncio.shield(asyncio.sleep(100))   # a cleanup that never ends\n"
        "asyncio.run(_interruptible(stuck(), {}, grace=0.5))\n")
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
        secs = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert proc.returncode == 130 and secs < 5, (proc.returncode, secs, err)
    assert "interrupted while planning: nothing ran" in err
