"""Property: whatever the model emits, no mutating call reaches a node without an approval.

Hypothesis drives a ScriptedModel with arbitrary turns (valid and invalid
tool calls, selectors, broadcasts, garbage, endless loops), then tries to
execute the resulting plan with no approval and with forged ones.  The fake
cluster records every call with whether its method mutates.
"""

from __future__ import annotations

import asyncio
import copy
import json

import pytest
from agentfix import THREE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cloudisense.agent import (Agent, Approval, Decision, ModelReply, NotApproved, Planner, ScriptedModel, ToolCall,
                               approve, run_session)
from cloudisense.tools import FakeCluster

NODES = st.sampled_from(["node-a", "node-b", "node-c", "node-x", ".", "", "*"])
METHODS = st.sampled_from(["restart", "start", "stop", "status", "logs", "list", "reboot"])
SERVICES = st.sampled_from(["supervisor", "system", "node", "docker"])
PARAMS = st.one_of(st.just('{"name": "logger"}'), st.just("{}"), st.just('{"name": 3}'), st.just("nope"),
                   st.just('{"name": "logger", "lines": 5}'), st.text(max_size=20))
SELECTORS = st.one_of(st.none(), st.fixed_dictionaries({
    "where": st.fixed_dictionaries({"process": st.sampled_from([None, "logger", "ghost"]),
                                    "exclude": st.sampled_from([None, ["node-b"], ["node-a", "node-c"]])}),
    "sort_by": st.sampled_from([None, "temperature_c", "load_1m", "free_memory_percent", "bogus"]),
    "order": st.sampled_from(["asc", "desc"]),
    "pick": st.sampled_from(["one", "all"])}))

call_args = st.fixed_dictionaries({
    "node": st.one_of(st.none(), NODES), "selector": SELECTORS, "service": SERVICES, "method": METHODS,
    "params_json": PARAMS, "reason": st.text(max_size=10)})
valid_mutation = st.fixed_dictionaries({
    "node": st.sampled_from(["node-a", "node-b", "node-c"]), "selector": st.none(), "service": st.just("supervisor"),
    "method": st.sampled_from(["restart", "start", "stop"]), "params_json": st.just('{"name": "logger"}'),
    "reason": st.just("r")}) | st.fixed_dictionaries({
    "node": st.none(), "service": st.just("supervisor"), "method": st.sampled_from(["restart", "stop"]),
    "params_json": st.just('{"name": "logger"}'), "reason": st.just("r"),
    "selector": st.fixed_dictionaries({"where": st.just({"process": "logger"}),
                                       "sort_by": st.sampled_from(["temperature_c", "load_1m", None]),
                                       "order": st.sampled_from(["asc", "desc"]),
                                       "pick": st.sampled_from(["one", "all"])})})
tool_call = st.one_of(
    valid_mutation.map(lambda a: ToolCall(name="call", arguments=json.dumps(a))),
    st.sampled_from(["restart", "stop"]).map(lambda m: ToolCall(name="broadcast", arguments=json.dumps(
        {"service": "supervisor", "method": m, "params_json": '{"name": "logger"}', "reason": "all"}))),
    call_args.map(lambda a: ToolCall(name="call", arguments=json.dumps(a))),
    st.fixed_dictionaries({"service": SERVICES, "method": METHODS, "params_json": PARAMS}).map(
        lambda a: ToolCall(name="broadcast", arguments=json.dumps(a))),
    st.builds(lambda n: ToolCall(name="get_node", arguments=json.dumps({"node": n})), NODES),
    st.just(ToolCall(name="find_nodes", arguments="{}")),
    st.builds(lambda name, args: ToolCall(name=name, arguments=args),
              st.sampled_from(["call", "stop_all", "exec", "", "find_nodes"]), st.text(max_size=30)),
)
turn = st.one_of(st.lists(tool_call, min_size=1, max_size=4).map(lambda cs: ModelReply(tool_calls=cs)),
                 st.text(max_size=20).map(lambda t: ModelReply(content=t)))
raw_script = st.lists(turn, min_size=0, max_size=8)
# half the scripts end with a final answer, so plans (not just failures) get exercised often
script = st.one_of(raw_script, st.lists(turn, max_size=5).map(lambda ts: ts + [ModelReply(content="done")]))


@pytest.mark.timeout(240)
def test_the_strategy_reaches_plans_with_mutating_steps():
    """Guard against a vacuous property: the generated scripts do produce approvable plans."""
    from hypothesis import find

    def has_plan(turns):
        r = asyncio.run(Planner(ScriptedModel(turns), fresh(), max_turns=6, max_errors=3).plan("x"))
        return bool(r.ok and r.plan and len(r.plan.steps) >= 2)

    assert has_plan(find(script, has_plan, settings=settings(max_examples=500, deadline=None)))


def fresh() -> FakeCluster:
    return FakeCluster.from_snapshot(copy.deepcopy(THREE))


async def scenario(turns: list[ModelReply], subset: list[int]) -> None:
    fake = fresh()
    r = await Planner(ScriptedModel(turns), fake, max_turns=6, max_errors=3).plan("anything")
    assert fake.mutating_calls == [], "a mutating call reached the cluster while planning"
    if not (r.ok and r.plan and r.plan.steps):
        return
    plan = r.plan
    forged = [None, Approval(plan_hash="f" * 64, steps=tuple(s.index for s in plan.steps), approver="x", via="x"),
              Approval(plan_hash=plan.compute_hash(), steps=(), approver="x", via="x")]
    from cloudisense.agent import Executor
    for bad in forged:
        try:
            await Executor(fake).execute(plan, bad)
        except NotApproved:
            pass
        else:
            raise AssertionError(f"executed with {bad!r}")
    assert fake.mutating_calls == []
    # an approval of some steps lets exactly those steps (their targets and methods) through
    chosen = sorted({(i % len(plan.steps)) + 1 for i in subset}) or [1]
    await Executor(fake).execute(plan, approve(plan, chosen, approver="op", via="test"))
    allowed = {(t, s.service, s.method) for s in plan.steps if s.index in chosen for t in s.targets}
    assert {(c.node, c.service, c.method) for c in fake.mutating_calls} <= allowed


@pytest.mark.timeout(240)
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(turns=script, subset=st.lists(st.integers(0, 10), max_size=3))
def test_no_mutating_call_without_approval(turns, subset):
    asyncio.run(scenario(turns, subset))


@pytest.mark.timeout(240)
@settings(max_examples=60, deadline=None)
@given(turns=script, feedback=st.text(max_size=30))
def test_an_operator_who_rejects_never_sees_anything_executed(turns, feedback):
    async def go():
        fake = fresh()
        agent = Agent(fake, ScriptedModel(turns), max_turns=5)

        async def decide(result):
            return Decision("reject", feedback=feedback) if feedback.strip() else Decision("stop")

        out = await run_session(agent, "anything", decide)
        assert out.report is None and out.approval is None
        assert fake.mutating_calls == []

    asyncio.run(go())
