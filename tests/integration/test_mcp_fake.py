"""The MCP server's rules over the ``mcp`` package's in-memory transport and a ``FakeCluster`` (no broker).

What the real-node test can't show cheaply: selectors and fan-outs become
pending plans with the planner's facts; a plan runs once however many
approvers race; expired, rejected and re-hashed plans never run; a plan whose
facts changed before approval is stale and nothing runs (the executor's
re-check, as for ``cloudisense ask``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from mcp import Client

from cloudisense.agent import read_audit
from cloudisense.agent.pending import PendingError, PendingStore, execute_pending
from cloudisense.tools import FakeCluster, FakeNode, TOOLS
from cloudisense.agent.mcp_cli import add_commands
from cloudisense.agent.mcp_server import ClusterMcp, McpSettings, build_server, tool_definitions

pytestmark = pytest.mark.timeout(30)

COOLEST = {"where": {"process": "logger"}, "sort_by": "temperature_c", "order": "asc", "pick": "one"}


def fake() -> FakeCluster:
    def node(i: str, t: float) -> FakeNode:
        return FakeNode(id=i, metrics={"temperature_c": t, "simulated": True, "load": [0.1, 0.1, 0.1]},
                        processes={"logger": {"name": "logger", "state": "running", "pid": 100 + int(t)}})
    return FakeCluster([node("n1", 61), node("n2", 38), node("n3", 52)])


@pytest.fixture
def setup(tmp_path):
    cluster = fake()
    app = ClusterMcp(McpSettings(state_dir=str(tmp_path / "state"), audit=str(tmp_path / "audit.jsonl")), conn=cluster)
    return cluster, app, tmp_path


def data(r: Any) -> dict[str, Any]:
    assert r.structured_content is not None
    return r.structured_content


def restart(target: dict[str, Any], reason: str = "test") -> dict[str, Any]:
    return {**target, "service": "supervisor", "method": "restart", "params_json": '{"name": "logger"}',
            "reason": reason}


async def test_selector_and_fanout_become_pending_plans_with_the_planners_facts(setup):
    cluster, app, tmp = setup
    async with Client(build_server(app)) as c:
        p = data(await c.call_tool("call", restart({"selector": COOLEST})))
        assert p["status"] == "pending" and p["steps"][0]["nodes"] == ["n2"]
        assert p["steps"][0]["target"] == "coolest online node with process logger"
        assert p["steps"][0]["why"].startswith("coolest online node with process logger: temperature_c n2 38")

        p = data(await c.call_tool("broadcast", {"service": "supervisor", "method": "restart",
                                                 "params_json": '{"name": "logger"}', "reason": "all"}))
        assert p["status"] == "pending" and sorted(p["steps"][0]["nodes"]) == ["n1", "n2", "n3"]

        # read-only methods run at once, through call and broadcast alike
        r = data(await c.call_tool("broadcast", {"service": "supervisor", "method": "list", "params_json": "{}"}))
        assert set(r["results"]) == {"n1", "n2", "n3"}
        # bad calls are tool errors, validated before anything is stored
        r = await c.call_tool("call", restart({"node": "n9"}))
        assert r.is_error and data(r)["error"]["code"] == "unknown_node"
        r = await c.call_tool("call", {**restart({"node": "n1"}), "params_json": '{"name": "ghost"}'})
        assert r.is_error and data(r)["error"]["code"] == "invalid_params"
    assert cluster.mutating_calls == []
    assert len(app.store.list("pending")) == 2


async def test_a_plan_runs_once_however_many_approvers_race(setup):
    cluster, app, tmp = setup
    plan_id = (await app.call_tool("call", restart({"node": "n1"}))).data["plan_id"]
    outcomes = await asyncio.gather(*(execute_pending(app.store, plan_id, cluster, via="race") for _ in range(4)),
                                    return_exceptions=True)
    done = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, PendingError)]
    assert len(done) == 1 and len(refused) == 3 and done[0].status == "done"
    assert [(m.node, m.method) for m in cluster.mutating_calls] == [("n1", "restart")]
    events = [r["event"] for r in read_audit(tmp / "audit.jsonl")]
    assert events == ["request", "plan", "approval", "step", "execution"]


async def test_expired_rejected_and_rehashed_plans_never_run(setup, tmp_path):
    cluster, app, tmp = setup
    short = ClusterMcp(McpSettings(state_dir=str(tmp / "state"), audit=str(tmp / "audit.jsonl"), ttl=-1),
                       conn=cluster)
    expired = (await short.call_tool("call", restart({"node": "n1"}))).data
    assert expired["status"] == "expired"
    with pytest.raises(PendingError, match="expired"):
        await execute_pending(app.store, expired["plan_id"], cluster, via="t")

    rejected = (await app.call_tool("call", restart({"node": "n2"}))).data["plan_id"]
    app.store.reject(rejected, by="op", feedback="not now", via="test")
    with pytest.raises(PendingError, match="rejected, not pending"):
        await execute_pending(app.store, rejected, cluster, via="t")

    other = (await app.call_tool("call", restart({"node": "n3"}))).data
    with pytest.raises(PendingError) as e:
        await execute_pending(app.store, other["plan_id"], cluster, via="t", expect_hash="0000")
    assert e.value.code == "hash_mismatch"
    assert app.store.get(other["plan_id"]).status == "pending"  # still approvable with the right hash
    rec = await execute_pending(app.store, other["plan_id"], cluster, via="t", expect_hash=other["hash"][:8])
    assert rec.status == "done"
    assert [m.node for m in cluster.mutating_calls] == ["n3"]
    assert "rejection" in [r["event"] for r in read_audit(tmp / "audit.jsonl")]

    with pytest.raises(PendingError, match="no plan"):
        PendingStore(tmp / "state").get("deadbeef")
    with pytest.raises(PendingError, match="not a plan id"):
        PendingStore(tmp / "state").get("../etc/passwd")


async def test_facts_changed_before_approval_means_stale_and_nothing_runs(setup):
    cluster, app, tmp = setup
    plan = (await app.call_tool("call", restart({"selector": COOLEST}))).data
    assert plan["steps"][0]["nodes"] == ["n2"]
    cluster.nodes["n3"].metrics["temperature_c"] = 20.0  # n3 is now the coolest
    rec = await execute_pending(app.store, plan["plan_id"], cluster, via="t")
    assert rec.status == "stale" and "was n2, now n3" in rec.message
    assert cluster.mutating_calls == []
    st = (await app.call_tool("plan_status", {"plan_id": plan["plan_id"]})).data
    assert st["status"] == "stale" and st["execution"]["results"] == []


async def test_allow_policy_runs_directly_and_audits_it(setup):
    cluster, _, tmp = setup
    app = ClusterMcp(McpSettings(state_dir=str(tmp / "s2"), audit=str(tmp / "a2.jsonl"),
                                 allow=frozenset({"supervisor.restart"})), conn=cluster)
    out = (await app.call_tool("call", restart({"selector": COOLEST}))).data
    assert out["status"] == "done" and out["execution"]["results"][0]["node"] == "n2"
    assert out["approval"]["via"] == "mcp --allow supervisor.restart"
    assert [(m.node, m.method) for m in cluster.mutating_calls] == [("n2", "restart")]
    assert [r["event"] for r in read_audit(tmp / "a2.jsonl")] == ["request", "plan", "approval", "step", "execution"]
    with pytest.raises(ValueError, match="SERVICE.METHOD"):
        McpSettings(allow=frozenset({"restart"}))


def test_tool_definitions_follow_the_planners_flags():
    defs = {d["name"]: d for d in tool_definitions()}
    for name, spec in TOOLS.items():
        a = defs[name]["annotations"]
        assert a["readOnlyHint"] is (spec.read_only is True)
        assert a["destructiveHint"] is (spec.read_only is not True)
        assert "$ref" not in json.dumps(defs[name]["inputSchema"])


def test_cli_commands_parse_and_the_cli_does_not_import_mcp():
    import argparse
    import subprocess
    import sys

    parser = argparse.ArgumentParser()
    add_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["mcp", "--allow", "supervisor.restart", "system.info", "--url", "ws://x/ws"])
    assert args.allow == ["supervisor.restart", "system.info"] and args.url == "ws://x/ws"
    assert parser.parse_args(["approve", "abcd1234", "--hash", "00ff"]).hash == "00ff"
    assert parser.parse_args(["pending", "--all"]).all
    code = ("import sys, cloudisense.node.cli as c; p = c.build_parser(); p.parse_args(['mcp']); "
            "assert 'mcp' not in sys.modules, 'mcp imported by the CLI'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
