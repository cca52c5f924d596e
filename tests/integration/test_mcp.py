"""``cloudisense mcp`` driven by the ``mcp`` package's own stdio client, against real nodes.

Two node processes on the test broker (``node-a`` is the one the server
connects to; ``node-b`` is reached through it over MQTT), each supervising a
real ``logger`` child.  The MCP server is ``python -m cloudisense.node.cli
mcp`` spawned by ``mcp.client.stdio.stdio_client`` with its pending plans in
a temporary ``CLOUDISENSE_STATE_DIR``; approval is ``cloudisense approve ID``
run as another process, as an operator would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError

from cloudisense.agent import read_audit
from cloudisense.node import Client
from cloudisense.tools import TOOLS, FindNodesArgs, fetch_cluster
from cloudisense.agent.mcp_server import input_schema
from support import Cluster, async_wait_until

pytestmark = pytest.mark.timeout(90)

READ_ONLY = {"find_nodes", "get_node", "describe_service", "watch", "plan_status"}
MAY_MUTATE = {"call", "broadcast"}


# ---- helpers ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory):
    """The ``cluster`` fixture's nodes, shared by this module's tests (each test reads the state it starts from)."""
    cluster = Cluster(tmp_path_factory.mktemp("nodes"), f"test/{uuid.uuid4().hex[:12]}")
    try:
        a = cluster.spawn("node-a", temperature="sim:61")
        b = cluster.spawn("node-b", temperature="sim:38")
        yield a.wait_ready(), b.wait_ready()
    finally:
        problems = cluster.stop_all()
        assert not problems, "\n".join(problems)


async def wait_converged(url: str, ids: list[str]) -> None:
    """``url``'s node sees every node online with its logger running."""
    async def ok() -> bool:
        async with Client(url, name="test") as c:
            view = await fetch_cluster(c)
        return all((n := view.get(i)) is not None and n.online and n.process("logger") is not None
                   and n.process("logger").state == "running" for i in ids)
    await async_wait_until(ok, 30, interval=0.2, what=f"{ids} online with a running logger")


async def logger_status(url: str, node: str) -> dict[str, Any]:
    async with Client(url, name="test") as c:
        return await c.call(node, "supervisor", "status", {"name": "logger"})


def cli_env(state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    env["CLOUDISENSE_STATE_DIR"] = str(state)
    return env


async def run_cli(state: Path, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``cloudisense ARGV`` as another process (in a thread, so the MCP session keeps running)."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cloudisense.node.cli", *argv], capture_output=True, text=True,
        timeout=timeout, env=cli_env(state))


@asynccontextmanager
async def mcp_server(url: str, tmp: Path, *extra: str) -> AsyncIterator[ClientSession]:
    """``cloudisense mcp --url URL`` over stdio, through the mcp package's client."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cloudisense.node.cli", "--log-level", "WARNING", "mcp", "--url", url,
              "--audit", str(tmp / "audit.jsonl"), *extra],
        env={"CLOUDISENSE_STATE_DIR": str(tmp / "state")})
    with open(tmp / "mcp-server.log", "w") as errlog:
        try:
            async with stdio_client(params, errlog=errlog) as (read, write):
                async with ClientSession(read, write, read_timeout_seconds=30) as session:
                    await session.initialize()
                    yield session
        except BaseException:
            errlog.flush()
            print((tmp / "mcp-server.log").read_text()[-4000:], file=sys.stderr)
            raise


def payload(result: Any) -> dict[str, Any]:
    """A tool result's structured content, checked against its text content."""
    assert result.structured_content is not None, result
    assert json.loads(result.content[0].text) == result.structured_content or "…" in result.content[0].text
    return result.structured_content


RESTART_B = {"node": "node-b", "service": "supervisor", "method": "restart",
             "params_json": '{"name": "logger"}', "reason": "test: bounce the logger"}


# ---- tests --------------------------------------------------------------------------------------

async def test_tools_schemas_annotations_and_find_nodes(two_nodes, tmp_path):
    a, b = two_nodes
    await wait_converged(a.url, [a.id, b.id])
    async with mcp_server(a.url, tmp_path) as s:
        tools = {t.name: t for t in (await s.list_tools()).tools}
        assert set(tools) == set(TOOLS) | {"plan_status"}

        for name in READ_ONLY:
            ann = tools[name].annotations
            assert ann.read_only_hint is True and ann.destructive_hint is False, name
        for name in MAY_MUTATE:  # ToolSpec.read_only is None: mutating iff the target method mutates
            assert TOOLS[name].read_only is None
            ann = tools[name].annotations
            assert ann.read_only_hint is False and ann.destructive_hint is True, name
            assert "pending plan" in tools[name].description

        fn = tools["find_nodes"].input_schema
        assert fn == input_schema(FindNodesArgs)  # generated from the planner's own argument model
        assert fn["type"] == "object" and fn["additionalProperties"] is False
        assert set(fn["properties"]) == {"where", "sort_by", "order", "limit"}
        assert "temperature_c" in fn["properties"]["sort_by"]["anyOf"][0]["enum"]
        assert "$ref" not in json.dumps(fn) and "$defs" not in fn
        call = tools["call"].input_schema
        assert {"node", "selector", "service", "method", "params_json", "reason"} == set(call["properties"])
        assert set(call["required"]) == {"service", "method"}
        assert tools["plan_status"].input_schema["properties"]["plan_id"]

        r = await s.call_tool("find_nodes", {"where": {"running": "logger"}, "sort_by": "temperature_c",
                                             "order": "asc", "limit": 5})
        assert not r.is_error, r
        found = payload(r)
        assert found["matched"] == 2
        assert [n["id"] for n in found["nodes"]] == ["node-b", "node-a"]  # 38 °C before 61 °C
        assert found["nodes"][0]["temperature_simulated"] is True
        assert found["nodes"][0]["processes"] == {"logger": "running"}

        r = await s.call_tool("get_node", {"node": "node-nowhere"})
        assert r.is_error and payload(r)["error"]["code"] == "unknown_node"
        r = await s.call_tool("find_nodes", {"bogus": 1})
        assert r.is_error and payload(r)["error"]["code"] == "bad_arguments"


async def test_mutating_call_is_pending_until_cloudisense_approve(two_nodes, tmp_path):
    a, b = two_nodes
    await wait_converged(a.url, [a.id, b.id])
    before = await logger_status(a.url, "node-b")
    state = tmp_path / "state"
    async with mcp_server(a.url, tmp_path) as s:
        # a read-only method through `call` runs at once
        r = await s.call_tool("call", {"node": "node-b", "service": "supervisor", "method": "status",
                                       "params_json": '{"name": "logger"}', "reason": "look"})
        assert not r.is_error and payload(r)["results"]["node-b"]["pid"] == before["pid"]

        r = await s.call_tool("call", RESTART_B)
        assert not r.is_error, r
        pending = payload(r)
        plan_id = pending["plan_id"]
        assert pending["status"] == "pending" and "NOT executed" in pending["message"]
        assert pending["approve_with"] == f"cloudisense approve {plan_id}"
        assert pending["steps"] == [{"step": 1, "nodes": ["node-b"], "service": "supervisor", "method": "restart",
                                     "params": {"name": "logger"}, "reason": "test: bounce the logger",
                                     "target": "node-b", "why": "named explicitly: node-b"}]
        # nothing ran: same logger process, and the plan says pending
        assert (await logger_status(a.url, "node-b"))["pid"] == before["pid"]
        st = payload(await s.call_tool("plan_status", {"plan_id": plan_id}))
        assert st["status"] == "pending" and "execution" not in st
        listed = payload(await s.call_tool("plan_status", {}))
        assert [p["plan_id"] for p in listed["pending"]] == [plan_id]

        p = await run_cli(state, "pending", "--json")
        assert p.returncode == 0, p.stderr
        assert [d["plan_id"] for d in json.loads(p.stdout)] == [plan_id]

        # the operator approves it from another process
        p = await run_cli(state, "approve", plan_id, "--url", a.url, "--json")
        assert p.returncode == 0, p.stdout + p.stderr
        done = json.loads(p.stdout)
        assert done["status"] == "done" and done["approval"]["via"] == "cloudisense approve"
        [step] = done["execution"]["results"]
        assert step["node"] == "node-b" and step["ok"] and step["result"]["pid"] != before["pid"]

        async def restarted() -> dict[str, Any] | None:
            now = await logger_status(a.url, "node-b")
            return now if now["pid"] != before["pid"] and now["state"] == "running" else None
        after = await async_wait_until(restarted, 15, interval=0.1, what="node-b's logger to have a new pid")
        assert after["pid"] == step["result"]["pid"]
        assert (await logger_status(a.url, "node-a"))["state"] == "running"

        st = payload(await s.call_tool("plan_status", {"plan_id": plan_id}))
        assert st["status"] == "done" and st["execution"]["results"][0]["ok"]
        assert payload(await s.call_tool("plan_status", {}))["pending"] == []

        # a plan runs once
        p = await run_cli(state, "approve", plan_id, "--url", a.url)
        assert p.returncode == 2 and "is done, not pending" in p.stderr

    records = read_audit(tmp_path / "audit.jsonl")
    assert [r["event"] for r in records] == ["request", "plan", "approval", "step", "execution"]
    assert len({r["session"] for r in records}) == 1, "one audit session from the MCP call to the execution"
    assert records[1]["plan_hash"] == records[2]["plan_hash"] == done["hash"]
    assert records[2]["via"] == "cloudisense approve" and records[4]["status"] == "done"


async def test_resources_cluster_table_and_service_catalogs(two_nodes, tmp_path):
    a, b = two_nodes
    await wait_converged(a.url, [a.id, b.id])
    async with mcp_server(a.url, tmp_path) as s:
        uris = {str(r.uri) for r in (await s.list_resources()).resources}
        assert uris == {"cloudisense://cluster", "cloudisense://node/node-a/services",
                        "cloudisense://node/node-b/services"}
        [tpl] = (await s.list_resource_templates()).resource_templates
        assert tpl.uri_template == "cloudisense://node/{node}/services"

        res = await s.read_resource("cloudisense://cluster")
        assert res.contents[0].mime_type == "application/json"
        table = json.loads(res.contents[0].text)
        assert table["self"] == "node-a" and table["online"] == 2
        rows = {n["id"]: n for n in table["nodes"]}
        assert rows["node-b"]["online"] and rows["node-b"]["processes"] == {"logger": "running"}
        assert 36 <= rows["node-b"]["temperature_c"] <= 40

        res = await s.read_resource("cloudisense://node/node-b/services")
        cat = json.loads(res.contents[0].text)
        assert cat["node"] == "node-b" and cat["online"] is True
        sup = cat["services"]["supervisor"]["methods"]
        assert sup["restart"]["mutates"] is True and sup["status"]["mutates"] is False
        assert "name" in sup["restart"]["params"]["properties"]

        with pytest.raises(MCPError, match="unknown_node"):
            await s.read_resource("cloudisense://node/node-nowhere/services")


async def test_allow_runs_the_named_method_at_once_and_only_it(two_nodes, tmp_path):
    a, b = two_nodes
    await wait_converged(a.url, [a.id, b.id])
    before = await logger_status(a.url, "node-b")
    async with mcp_server(a.url, tmp_path, "--allow", "supervisor.restart") as s:
        r = await s.call_tool("call", RESTART_B)
        assert not r.is_error, r
        done = payload(r)
        assert done["status"] == "done" and "--allow supervisor.restart" in done["message"]
        assert done["approval"]["via"] == "mcp --allow supervisor.restart"
        assert (await logger_status(a.url, "node-b"))["pid"] != before["pid"]

        r = await s.call_tool("call", {**RESTART_B, "method": "stop", "reason": "not allowed"})
        assert payload(r)["status"] == "pending"
        assert (await logger_status(a.url, "node-b"))["state"] == "running"
    events = [(r["event"], r.get("via")) for r in read_audit(tmp_path / "audit.jsonl")]
    assert events == [("request", "mcp"), ("plan", "mcp"), ("approval", "mcp --allow supervisor.restart"),
                      ("step", None), ("execution", None), ("request", "mcp"), ("plan", "mcp")]


async def test_unreachable_node_is_a_tool_error_not_a_dead_server(tmp_path):
    async with mcp_server("ws://127.0.0.1:9/ws", tmp_path) as s:
        assert len((await s.list_tools()).tools) == 7
        r = await s.call_tool("find_nodes", {})
        assert r.is_error and payload(r)["error"]["code"] == "cannot_connect"
        r = await s.call_tool("plan_status", {"plan_id": "nope"})
        assert r.is_error and payload(r)["error"]["code"] == "unknown_plan"
        [res] = (await s.list_resources()).resources  # the cluster table is still offered
        assert str(res.uri) == "cloudisense://cluster"
