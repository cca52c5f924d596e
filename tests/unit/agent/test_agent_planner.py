"""The planner loop with ScriptedModel: each failure mode ends in a clear error, never an unapproved action."""

from __future__ import annotations

import json

import pytest
from agentfix import pids

from cloudisense.agent import ModelReply, Planner, ScriptedModel, ToolCall, unwrap_untrusted

RESTART_B = ("call", {"node": "node-b", "service": "supervisor", "method": "restart",
                      "params_json": '{"name": "logger"}', "reason": "coolest"})
COOLEST = {"where": {"process": "logger"}, "sort_by": "temperature_c", "order": "asc", "pick": "one"}


def tool_results(model: ScriptedModel) -> list[dict]:
    """The tool messages of the last turn the model saw, unwrapped and parsed."""
    out = []
    for m in model.seen[-1]:
        if m["role"] == "tool":
            out.append(json.loads(unwrap_untrusted(m["content"])))
    return out


async def test_a_scripted_llm_style_session_plans_a_selector_step(fake):
    model = ScriptedModel([
        ("find_nodes", {"where": {"running": "logger"}, "sort_by": "temperature_c", "order": "asc", "limit": 1}),
        ("call", {"selector": COOLEST, "service": "supervisor", "method": "restart",
                  "params_json": '{"name": "logger"}', "reason": "coolest node"}),
        "Restart logger on the coolest node (node-b).",
    ])
    before = pids(fake)
    r = await Planner(model, fake).plan("restart logger on coolest node")
    assert r.ok and r.plan is not None
    [step] = r.plan.steps
    assert step.targets == ["node-b"] and step.fact.selector == "coolest online node with process logger"
    assert step.fact.values == {"node-b": 38.0, "node-c": 52.0, "node-a": 61.0}
    assert [o.status for o in r.observations] == ["ok", "queued"]
    assert fake.mutating_calls == [] and pids(fake) == before
    # the model saw the tool schemas, the request and a bounded cluster summary
    first = model.seen[0]
    assert first[0]["role"] == "system" and "Never guess or invent node ids" in first[0]["content"]
    assert first[1]["content"].startswith("Request: restart logger on coolest node\nCluster: <<untrusted-data id=")
    assert "\n3 nodes known" in first[1]["content"]  # the summary, delimited as node-supplied data
    assert {t["function"]["name"] for t in model.tools_seen[0]} == {"find_nodes", "get_node", "describe_service",
                                                                    "call", "broadcast", "watch"}


async def test_unknown_tool_gets_an_error_then_the_model_can_recover(fake):
    model = ScriptedModel([("restart_node", {"node": "node-b"}), RESTART_B, "done"])
    r = await Planner(model, fake).plan("restart logger on node-b")
    assert r.ok and [s.targets for s in r.plan.steps] == [["node-b"]]
    assert r.observations[0].status == "error" and r.observations[0].result["code"] == "unknown_tool"
    assert "find_nodes" in model.seen[1][-1]["content"]  # the error names the real tools
    assert fake.mutating_calls == []


@pytest.mark.parametrize("bad,code", [
    ("{not json", "bad_arguments"),
    ('{"node": "node-b"}', "bad_arguments"),                       # service/method missing
    ('{"node": "node-b", "service": "supervisor", "method": "restart", "params_json": "{\\"name\\": 5}"}',
     "invalid_params"),
    ('"just a string"', "bad_arguments"),
])
async def test_malformed_arguments_are_errors_and_bounded(fake, bad, code):
    model = ScriptedModel.repeating(ModelReply(tool_calls=[ToolCall(name="call", arguments=bad)]))
    r = await Planner(model, fake, max_errors=3).plan("restart logger on node-b")
    assert not r.ok and r.plan is None
    assert r.turns == 4 and "4 invalid tool calls" in r.error
    assert all(o.status == "error" for o in r.observations)
    assert r.observations[0].result["code"] == code
    assert {o.result["code"] for o in r.observations} <= {code, "repeated_call"}
    assert "Nothing was executed" in r.message
    assert fake.mutating_calls == []


async def test_a_nonexistent_node_is_an_error_with_a_hint(fake):
    model = ScriptedModel([("call", {**RESTART_B[1], "node": "node-bee"}), "giving up"])
    r = await Planner(model, fake).plan("restart logger on node-bee")
    assert r.ok and r.plan.steps == []  # the model gave up: an empty plan, nothing to approve
    [err] = tool_results(model)
    assert err["code"] == "unknown_node" and "node-b" in err["message"] and "never guess" in err["message"]
    assert fake.mutating_calls == []


async def test_a_model_that_never_stops_is_bounded(fake):
    model = ScriptedModel.repeating(ModelReply(tool_calls=[ToolCall(
        name="find_nodes", arguments='{"where": {}, "sort_by": null, "order": "asc", "limit": 1}')]))
    r = await Planner(model, fake, max_turns=6, max_errors=10).plan("restart logger on coolest node")
    assert not r.ok and r.plan is None
    assert "did not finish within 6 turns" in r.error
    assert len(model.seen) == 6
    # after two identical calls, the third is answered with an error, not run again
    assert [o.status for o in r.observations][:3] == ["ok", "ok", "error"]
    assert fake.mutating_calls == []


async def test_queued_mutations_of_a_failed_session_are_never_returned(fake):
    # a valid mutating call, then garbage until the error budget is spent
    model = ScriptedModel([RESTART_B] + [("nope", {})] * 5)
    r = await Planner(model, fake, max_errors=2).plan("restart logger on node-b")
    assert not r.ok and r.plan is None
    assert [o.status for o in r.observations][0] == "queued"
    assert fake.mutating_calls == []


async def test_a_script_that_runs_out_fails_cleanly(fake):
    r = await Planner(ScriptedModel([RESTART_B]), fake).plan("x")
    assert not r.ok and "no more replies" in r.error and fake.mutating_calls == []


async def test_duplicate_steps_and_the_node_cap(fake):
    model = ScriptedModel([RESTART_B, RESTART_B,
                           ("call", {"selector": {"pick": "all"}, "service": "supervisor", "method": "stop",
                                     "params_json": '{"name": "logger"}', "reason": "all"}),
                           "ok"])
    r = await Planner(model, fake, max_nodes=2).plan("x")
    assert r.ok and len(r.plan.steps) == 1
    codes = [o.result.get("code") for o in r.observations if o.status == "error"]
    assert codes == ["duplicate_step", "too_many_nodes"]


async def test_read_only_calls_run_at_once_and_mutating_calls_are_only_queued(fake):
    model = ScriptedModel([
        [("call", {"node": "node-c", "service": "supervisor", "method": "status", "params_json": '{"name":"logger"}'}),
         RESTART_B],
        "planned",
    ])
    r = await Planner(model, fake).plan("x")
    status, queued = tool_results(model)
    assert status["results"]["node-c"]["state"] == "running"
    assert queued["status"].startswith("queued for operator approval; NOT executed")
    assert [(c.node, c.method) for c in fake.calls if c.service == "supervisor"] == [("node-c", "status")]
    assert r.plan.steps[0].method == "restart"


async def test_revise_continues_the_conversation_with_the_operators_words(fake):
    model = ScriptedModel([RESTART_B, "plan 1", ("call", {**RESTART_B[1], "node": "node-c"}), "plan 2"])
    p = Planner(model, fake)
    r1 = await p.plan("restart logger on coolest node")
    r2 = await p.revise("not node-b, it's in maintenance")
    assert r1.plan.steps[0].targets == ["node-b"] and r2.plan.steps[0].targets == ["node-c"]
    assert r1.plan.hash != r2.plan.hash
    fb = [m for m in model.seen[2] if m["role"] == "user"][-1]["content"]
    assert fb.startswith("The operator rejected the plan: not node-b, it's in maintenance")


async def test_too_many_calls_in_one_turn_are_refused_not_run(fake):
    many = [("call", {"node": "node-b", "service": "supervisor", "method": "status", "params_json": '{"name":"logger"}',
                      "reason": str(i)}) for i in range(40)]
    model = ScriptedModel([many, "done"])
    r = await Planner(model, fake, max_calls_per_turn=5).plan("x")
    assert r.ok
    assert [o.status for o in r.observations].count("ok") == 5
    assert [o.status for o in r.observations][5:7] == ["error", "skipped"]
    assert len([m for m in model.seen[1] if m["role"] == "tool"]) == 40  # every call id is answered
    assert len([c for c in fake.calls if c.service == "supervisor"]) == 5
