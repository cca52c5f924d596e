"""The agent against real nodes: ``cloudisense ask ... --model offline --yes`` through the real CLI.

Three node processes on the test broker with simulated temperatures 61, 38
and 52 °C (the simulation stays within ±2 °C of its base, so the ordering is
stable), each supervising a real ``logger`` child process.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time

import pytest

from cloudisense.node import Client
from cloudisense.tools import ClusterView, fetch_cluster

TEMPS = {"hot": 61, "cool": 38, "mid": 52}


async def logger_pids(url: str, ids: list[str]) -> dict[str, int]:
    async with Client(url, name="test") as c:
        return {n: (await c.call(n, "supervisor", "status", {"name": "logger"}))["pid"] for n in ids}


async def converged(url: str, ids: list[str]) -> ClusterView | None:
    """The connected node sees every node online with a temperature and a running logger."""
    async with Client(url, name="test") as c:
        view = await fetch_cluster(c)
    for nid in ids:
        n = view.get(nid)
        if not (n and n.online and n.metrics and n.metrics.temperature_c is not None
                and n.process("logger") and n.process("logger").state == "running"):
            return None
    return view


async def wait_converged(url: str, ids: list[str], timeout: float = 30.0) -> ClusterView:
    deadline = time.monotonic() + timeout
    while True:
        view = await converged(url, ids)
        if view is not None:
            return view
        if time.monotonic() > deadline:
            raise AssertionError(f"cluster did not converge within {timeout} s")
        await asyncio.sleep(0.2)


@pytest.fixture
def three_nodes(cluster, prefix):
    nodes = {name: cluster.start(f"{name}-{prefix.rsplit('/', 1)[-1][:6]}", temperature=f"sim:{t}")
             for name, t in TEMPS.items()}
    return nodes


def run_cli(*argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *argv], capture_output=True, text=True,
                          timeout=timeout, env=env)


@pytest.mark.timeout(120)
async def test_ask_restarts_logger_on_the_coolest_node_only(three_nodes, tmp_path):
    ids = [n.id for n in three_nodes.values()]
    url = three_nodes["hot"].url  # connected to the hottest node: the target is remote
    view = await wait_converged(url, ids)
    assert {nid: round(view.get(nid).metrics.temperature_c) for nid in ids} == pytest.approx(
        {three_nodes[k].id: t for k, t in TEMPS.items()}, abs=2.5)
    before = await logger_pids(url, ids)

    audit = tmp_path / "audit.jsonl"
    p = run_cli("ask", "restart logger on coolest node", "--model", "offline", "--yes", "--url", url,
                "--json", "--audit", str(audit))
    assert p.returncode == 0, p.stdout + p.stderr
    doc = json.loads(p.stdout)
    cool = three_nodes["cool"].id
    assert doc["status"] == "done"
    assert [s["node"] for s in doc["plan"]["steps"]] == [cool]
    assert doc["plan"]["steps"][0]["selector"] == "coolest online node with process logger"
    assert "deterministic rules planner" in p.stderr

    after = await logger_pids(url, ids)
    assert after[cool] != before[cool], "the coolest node's logger was not restarted"
    for k in ("hot", "mid"):
        nid = three_nodes[k].id
        assert after[nid] == before[nid], f"{k} node {nid} was touched"
    events = [json.loads(line)["event"] for line in audit.read_text().splitlines()]
    assert events == ["request", "plan", "approval", "step", "execution"]


@pytest.mark.timeout(120)
async def test_dry_run_and_unknown_node_touch_nothing(three_nodes, tmp_path):
    ids = [n.id for n in three_nodes.values()]
    url = three_nodes["cool"].url
    await wait_converged(url, ids)
    before = await logger_pids(url, ids)
    p = run_cli("ask", "restart logger on all nodes", "--dry-run", "--url", url, "--audit", str(tmp_path / "a"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "dry run: nothing executed" in p.stdout
    p = run_cli("ask", "restart logger on node-nowhere", "--yes", "--url", url, "--audit", str(tmp_path / "a"))
    assert p.returncode == 2 and "no node 'node-nowhere'" in p.stdout
    assert await logger_pids(url, ids) == before


def test_ask_cannot_connect_says_so(tmp_path):
    p = run_cli("ask", "status logger", "--url", "ws://127.0.0.1:9/ws", "--audit", str(tmp_path / "a"), timeout=30)
    assert p.returncode == 6 and "cannot connect" in p.stdout


@pytest.mark.timeout(120)
async def test_tools_over_a_real_node(three_nodes):
    from cloudisense.tools import Toolbox

    ids = [n.id for n in three_nodes.values()]
    url = three_nodes["mid"].url
    await wait_converged(url, ids)
    cool, hot = three_nodes["cool"].id, three_nodes["hot"].id
    async with Client(url, name="test") as c:
        tb = Toolbox(c)
        found = await tb.run("find_nodes", tb.parse("find_nodes", {"where": {"running": "logger"},
                                                                   "sort_by": "temperature_c", "order": "desc",
                                                                   "limit": 1}))
        assert found["matched"] == 3 and found["nodes"][0]["id"] == hot
        assert found["nodes"][0]["temperature_simulated"] is True
        d = await tb.run("describe_service", tb.parse("describe_service", {"node": cool, "service": "supervisor"}))
        assert d["methods"]["restart"]["mutates"] is True and d["methods"]["status"]["mutates"] is False
        prepared = await tb.prepare(tb.parse("call", {"node": cool, "service": "supervisor", "method": "restart",
                                                      "params_json": '{"name": "logger"}'}))
        assert prepared.mutates and prepared.targets == [cool]
        bad = tb.parse("call", {"node": cool, "service": "supervisor", "method": "restart",
                                "params_json": '{"name": "logger", "force": true}'})
        with pytest.raises(Exception) as e:
            await tb.prepare(bad)
        assert getattr(e.value, "code", "") == "invalid_params"
        w = await tb.run("watch", tb.parse("watch", {"node": cool, "topic": "metrics/#", "seconds": 10,
                                                     "max_events": 1}))
        assert w["stopped"] == "max_events" and w["events"][0]["topic"] == "metrics/system"
        assert w["events"][0]["node"] == cool
