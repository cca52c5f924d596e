"""The approval gate, the executor (order, canary, stop at first failure, cap) and staleness."""

from __future__ import annotations

import pytest
from agentfix import FailingConn, pids

from cloudisense.agent import (Agent, Approval, AuditLog, Executor, NotApproved, OfflineModel, Planner,
                               ScriptedModel, approve, read_audit)
from cloudisense.tools import FakeCluster


async def plan_for(fake, request: str, **kw):
    r = await Planner(OfflineModel(), fake, **kw).plan(request)
    assert r.ok and r.plan and r.plan.steps, r.message
    return r.plan


def forged_approvals(plan):
    yield None
    yield "yes"
    yield Approval(plan_hash="0" * 64, steps=(1,), approver="mallory", via="forged")
    yield Approval(plan_hash=plan.compute_hash(), steps=(), approver="op", via="empty")
    yield Approval(plan_hash=plan.compute_hash(), steps=(99,), approver="op", via="bogus step")


async def test_the_executor_refuses_without_a_valid_approval_before_any_io(fake):
    plan = await plan_for(fake, "restart logger on coolest node")
    before = pids(fake)
    for bad in forged_approvals(plan):
        fake.calls.clear()
        with pytest.raises(NotApproved):
            await Executor(fake).execute(plan, bad)
        assert fake.calls == [], f"I/O happened before the gate refused {bad!r}"
    assert pids(fake) == before


async def test_an_approval_does_not_survive_a_changed_plan(fake):
    plan = await plan_for(fake, "restart logger on coolest node")
    a = approve(plan, approver="op", via="test")
    plan.steps[0].params = {"name": "everything"}
    with pytest.raises(NotApproved, match="changed after it was sealed"):
        await Executor(fake).execute(plan, a)
    plan.seal()  # re-sealing gives a new hash: the old approval is for a different plan
    with pytest.raises(NotApproved, match="different plan"):
        await Executor(fake).execute(plan, a)
    plan.steps[0].fact.targets = ["node-a"]  # retargeting is a change too
    plan.seal()
    with pytest.raises(NotApproved):
        await Executor(fake).execute(plan, a)
    assert fake.mutating_calls == []


async def test_approved_plan_runs_on_the_resolved_node_only(fake):
    plan = await plan_for(fake, "restart logger on coolest node")
    before = pids(fake)
    report = await Executor(fake).execute(plan, approve(plan, approver="op", via="test"))
    assert report.status == "done"
    after = pids(fake)
    assert after["node-b"] != before["node-b"]
    assert after["node-a"] == before["node-a"] and after["node-c"] == before["node-c"]
    assert [(c.node, c.method) for c in fake.mutating_calls] == [("node-b", "restart")]


async def test_picked_steps_only(fake):
    model = ScriptedModel([
        [("call", {"node": n, "service": "supervisor", "method": "restart", "params_json": '{"name":"logger"}'})
         for n in ("node-a", "node-b", "node-c")], "three steps"])
    r = await Planner(model, fake).plan("restart logger on a, b and c")
    report = await Executor(fake).execute(r.plan, approve(r.plan, [1, 3], approver="op", via="pick"))
    assert report.status == "done" and report.skipped == [2]
    assert [c.node for c in fake.mutating_calls] == ["node-a", "node-c"]


async def test_fan_out_runs_on_one_node_first_and_stops_if_it_fails(fake):
    plan = await plan_for(fake, "restart logger on all nodes")
    [step] = plan.steps
    assert step.targets == ["node-a", "node-b", "node-c"]
    report = await Executor(FailingConn(fake, {"node-a"})).execute(plan, approve(plan, approver="op", via="test"))
    assert report.status == "failed"
    assert "failed on node-a (its first node" in report.message and "2 more node(s)" in report.message
    assert [r.node for r in report.results] == ["node-a"] and report.results[0].error["code"] == "timeout"
    assert fake.mutating_calls == []  # node-b and node-c were never called


async def test_fan_out_continues_after_the_first_node_succeeds_and_stops_at_a_failure(fake):
    plan = await plan_for(fake, "restart logger on all nodes")
    before = pids(fake)
    report = await Executor(FailingConn(fake, {"node-b"})).execute(plan, approve(plan, approver="op", via="test"))
    assert report.status == "failed" and "1 more node(s) of step 1" in report.message
    assert [c.node for c in fake.mutating_calls] == ["node-a"]
    assert pids(fake)["node-c"] == before["node-c"]


async def test_a_failed_step_stops_the_rest(fake):
    model = ScriptedModel([
        [("call", {"node": "node-a", "service": "supervisor", "method": "stop", "params_json": '{"name":"logger"}'}),
         ("call", {"node": "node-b", "service": "supervisor", "method": "stop", "params_json": '{"name":"logger"}'}),
         ("call", {"node": "node-c", "service": "supervisor", "method": "stop", "params_json": '{"name":"logger"}'})],
        "ok"])
    r = await Planner(model, fake).plan("stop logger on a, b, c")
    fake.nodes["node-b"].processes.clear()
    fake.nodes["node-b"].processes["other"] = {"name": "other", "state": "running", "pid": 1}
    report = await Executor(fake).execute(r.plan, approve(r.plan, approver="op", via="test"))
    # step 2's target no longer has the process; the node call fails and step 3 never runs
    assert report.status == "failed" and "step 2 failed on node-b" in report.message and "step(s) 3" in report.message
    assert [c.node for c in fake.mutating_calls] == ["node-a", "node-b"]


async def test_the_node_cap_holds_at_execution_too(fake):
    plan = await plan_for(fake, "restart logger on all nodes")
    report = await Executor(fake, max_nodes=2).execute(plan, approve(plan, approver="op", via="test"))
    assert report.status == "refused" and fake.mutating_calls == []


# ---- staleness ---------------------------------------------------------------------------------

async def test_coolest_node_changes_between_approval_and_execution_nothing_runs(fake, tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    agent = Agent(fake, OfflineModel(), audit=audit)
    r = await agent.plan("restart logger on coolest node")
    assert r.plan.steps[0].targets == ["node-b"]
    approval = agent.approve(r.plan, via="test")
    before = pids(fake)
    fake.nodes["node-b"].metrics["temperature_c"] = 70.0  # node-c (52) is the coolest now
    report = await agent.execute(r.plan, approval)
    assert report.status == "stale" and report.results == []
    assert "was node-b, now node-c" in report.message and "nothing was executed" in report.message
    assert fake.mutating_calls == [] and pids(fake) == before
    assert [e["event"] for e in read_audit(tmp_path / "audit.jsonl")][-1] == "execution"
    assert read_audit(tmp_path / "audit.jsonl")[-1]["status"] == "stale"


async def test_a_target_that_went_offline_is_stale(fake):
    plan = await plan_for(fake, "restart logger on node-c")
    a = approve(plan, approver="op", via="test")
    fake.nodes["node-c"].online = False
    report = await Executor(fake).execute(plan, a)
    assert report.status == "stale" and "offline now: node-c" in report.message
    assert fake.mutating_calls == []


async def test_metric_drift_that_keeps_the_decision_is_not_stale(fake):
    plan = await plan_for(fake, "restart logger on coolest node")
    a = approve(plan, approver="op", via="test")
    fake.nodes["node-b"].metrics["temperature_c"] = 39.5  # drifted, still the coolest
    report = await Executor(fake).execute(plan, a)
    assert report.status == "done" and [c.node for c in fake.mutating_calls] == ["node-b"]


async def test_a_new_node_joining_a_fan_out_selection_is_stale(three):
    fake = FakeCluster.from_snapshot(three)
    plan = await plan_for(fake, "restart logger on all nodes")
    a = approve(plan, approver="op", via="test")
    three["nodes"].append({**three["nodes"][0], "id": "node-d"})
    fake2 = FakeCluster.from_snapshot(three)
    report = await Executor(fake2).execute(plan, a)
    assert report.status == "stale" and "node-d" in report.message
    assert fake2.mutating_calls == []
