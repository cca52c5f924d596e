"""Tools: strict schemas, selection, validation against the live view, compact results."""

from __future__ import annotations

import json

import jsonschema
import pytest

from cloudisense.tools import (TOOLS, CallArgs, FakeCluster, NodeFilter, NodeSelector, SelectionError, ToolError,
                               Toolbox, describe_selector, openai_tools, resolve, strict_problems, strict_schema,
                               summarize, to_text)
from cloudisense.tools._cluster import ClusterView

from agentfix import node


# ---- schemas ------------------------------------------------------------------------------------

def test_every_tool_schema_is_valid_for_openai_strict_mode():
    tools = openai_tools()
    assert [t["function"]["name"] for t in tools] == list(TOOLS)
    for t in tools:
        f = t["function"]
        assert t["type"] == "function" and f["strict"] is True
        assert f["description"].strip(), f"{f['name']} has no description"
        assert strict_problems(f["parameters"]) == [], f["name"]
        jsonschema.Draft202012Validator.check_schema(f["parameters"])


def test_strict_checker_rejects_what_strict_mode_rejects():
    from pydantic import BaseModel

    class Loose(BaseModel):
        a: int = 3
        b: dict = {}

    raw = Loose.model_json_schema()
    problems = strict_problems(raw)
    assert any("every property must be required" in p for p in problems)
    assert any("additionalProperties" in p for p in problems)
    assert any("'default'" in p for p in problems)
    # a free-form dict can't be strict: refused, not silently closed (call takes params as JSON text)
    with pytest.raises(ValueError, match="free-form"):
        strict_schema(Loose)


def test_strict_schema_accepts_a_full_call_and_rejects_extras():
    schema = strict_schema(CallArgs)
    full = {"node": None, "service": "supervisor", "method": "restart", "params_json": '{"name": "logger"}',
            "reason": "r", "selector": {"where": {"online": True, "ids": None, "exclude": None, "service": None,
                                                  "process": "logger", "running": None, "conditions": None},
                                        "sort_by": "temperature_c", "order": "asc", "pick": "one"}}
    jsonschema.validate(full, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**full, "extra": 1}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({k: v for k, v in full.items() if k != "reason"}, schema)


# ---- selection ----------------------------------------------------------------------------------

def test_selector_resolution_is_deterministic_and_explained(three):
    view = ClusterView.model_validate(FakeCluster.from_snapshot(three).cluster_view())
    sel = NodeSelector(where=NodeFilter(process="logger"), sort_by="temperature_c", order="asc")
    r = resolve(view, sel)
    assert r.targets == ["node-b"]
    assert r.candidates == ["node-b", "node-c", "node-a"]
    assert r.values == {"node-b": 38.0, "node-c": 52.0, "node-a": 61.0}
    assert describe_selector(sel) == "coolest online node with process logger"
    assert resolve(view, sel.model_copy(update={"order": "desc"})).targets == ["node-a"]
    assert resolve(view, NodeSelector(sort_by="free_memory_percent", order="desc")).targets == ["node-c"]
    assert resolve(view, NodeSelector(sort_by="load_1m")).targets == ["node-a"]
    assert resolve(view, NodeSelector(pick="all", where=NodeFilter(exclude=["node-a"]))).targets == ["node-b", "node-c"]


def test_selector_skips_offline_nodes_and_nodes_without_the_metric():
    view = ClusterView.model_validate({"self": "a", "nodes": [node("a", 70.0), node("b", 20.0, online=False),
                                                               node("c", None), node("d", 50.0)]})
    assert resolve(view, NodeSelector(sort_by="temperature_c")).targets == ["d"]
    ties = ClusterView.model_validate({"nodes": [node("z", 40.0), node("y", 40.0)]})
    assert resolve(ties, NodeSelector(sort_by="temperature_c")).targets == ["y"]  # ties: by id


def test_selector_that_matches_nothing_says_why():
    view = ClusterView.model_validate({"nodes": [node("a", 40.0, procs={})]})
    with pytest.raises(SelectionError, match="online nodes with process logger: none"):
        resolve(view, NodeSelector(where=NodeFilter(process="logger"), sort_by="temperature_c"))


def test_cluster_summary_does_not_grow_with_the_cluster():
    small = summarize(ClusterView.model_validate(FakeCluster.simulated(10).cluster_view()))
    big = summarize(ClusterView.model_validate(FakeCluster.simulated(1000).cluster_view()))
    assert "1000 nodes known" in big
    assert len(big) <= len(small) + 4


# ---- the toolbox ---------------------------------------------------------------------------------

async def test_find_nodes_is_compact_and_capped():
    fake = FakeCluster.simulated(200)
    tb = Toolbox(fake)
    out = await tb.run("find_nodes", tb.parse("find_nodes", {"where": {"online": True}, "sort_by": "temperature_c",
                                                             "order": "asc", "limit": 500}))
    assert out["matched"] == 200 and out["returned"] == 20 == len(out["nodes"])
    temps = [n["temperature_c"] for n in out["nodes"]]
    assert temps == sorted(temps)
    assert set(out["nodes"][0]) <= {"id", "online", "temperature_c", "temperature_simulated", "cpu_percent",
                                    "memory_percent", "load_1m", "disk_percent", "processes", "services"}


async def test_parse_errors_are_tool_errors(fake):
    tb = Toolbox(fake)
    with pytest.raises(ToolError) as e:
        tb.parse("reboot_everything", "{}")
    assert e.value.code == "unknown_tool" and "find_nodes" in e.value.message
    with pytest.raises(ToolError) as e:
        tb.parse("get_node", '{"node": ')
    assert e.value.code == "bad_arguments"
    with pytest.raises(ToolError) as e:
        tb.parse("get_node", {"nodes": "x"})
    assert e.value.code == "bad_arguments" and "unknown field" in e.value.message


@pytest.mark.parametrize("args,code,needle", [
    ({"node": "node-x", "service": "supervisor", "method": "restart", "params_json": '{"name":"logger"}'},
     "unknown_node", "never guess"),
    ({"node": "node-b", "service": "docker", "method": "restart", "params_json": "{}"}, "unknown_service", "services:"),
    ({"node": "node-b", "service": "supervisor", "method": "reboot", "params_json": "{}"}, "unknown_method", "restart"),
    ({"node": "node-b", "service": "supervisor", "method": "restart", "params_json": '{"nam": "logger"}'},
     "invalid_params", "name"),
    ({"node": "node-b", "service": "supervisor", "method": "restart", "params_json": "[1]"}, "invalid_params", "object"),
    ({"node": None, "selector": None, "service": "supervisor", "method": "restart", "params_json": "{}"},
     "bad_arguments", "exactly one"),
])
async def test_prepare_validates_against_the_live_cluster(fake, args, code, needle):
    tb = Toolbox(fake)
    with pytest.raises(ToolError) as e:
        await tb.prepare(tb.parse("call", args))
    assert e.value.code == code and needle in e.value.message
    assert fake.mutating_calls == []


async def test_prepare_refuses_offline_nodes_and_too_wide_calls(three):
    three["nodes"][1]["online"] = False
    fake = FakeCluster.from_snapshot(three)
    tb = Toolbox(fake, max_fanout=1)
    with pytest.raises(ToolError) as e:
        await tb.prepare(tb.parse("call", {"node": "node-b", "service": "supervisor", "method": "restart",
                                           "params_json": '{"name":"logger"}'}))
    assert e.value.code == "node_offline"
    with pytest.raises(ToolError) as e:
        await tb.prepare(tb.parse("call", {"selector": {"pick": "all"}, "service": "supervisor", "method": "status",
                                           "params_json": '{"name":"logger"}'}))
    assert e.value.code == "too_many_nodes"


async def test_call_is_mutating_iff_the_method_mutates(fake):
    tb = Toolbox(fake)
    status = tb.parse("call", {"node": "node-b", "service": "supervisor", "method": "status", "params": {"name": "logger"}})
    restart = tb.parse("call", {"node": "node-b", "service": "supervisor", "method": "restart",
                                "params_json": '{"name":"logger"}'})
    assert await tb.is_mutating("call", status) is False
    assert await tb.is_mutating("call", restart) is True
    assert await tb.is_mutating("find_nodes", tb.parse("find_nodes", {})) is False
    assert [(t, s.read_only) for t, s in TOOLS.items()] == [
        ("find_nodes", True), ("get_node", True), ("describe_service", True), ("call", None), ("broadcast", None),
        ("watch", True)]
    assert fake.mutating_calls == []


async def test_get_node_and_describe_service(fake):
    tb = Toolbox(fake)
    n = await tb.run("get_node", tb.parse("get_node", {"node": "node-b"}))
    assert n["services"]["supervisor"]["restart"] == "mutating"
    assert n["services"]["supervisor"]["status"] == "read-only"
    d = await tb.run("describe_service", tb.parse("describe_service", {"node": None, "service": "supervisor"}))
    assert d["node"] == "node-a" and d["methods"]["restart"]["mutates"] is True
    assert d["methods"]["logs"]["params"]["properties"]["lines"]["type"] == "integer"


async def test_watch_collects_events_and_unsubscribes(fake):
    fake.events[("node-b", "metrics/cpu")] = [{"node": "node-b", "topic": "metrics/cpu", "data": i, "ts": i}
                                              for i in range(5)]
    tb = Toolbox(fake)
    out = await tb.run("watch", tb.parse("watch", {"node": "node-b", "topic": "metrics/#", "seconds": 5,
                                                   "max_events": 3}))
    assert [e["data"] for e in out["events"]] == [0, 1, 2] and out["stopped"] == "max_events"
    assert all(s.closed for s in fake.subscriptions)
    out = await tb.run("watch", tb.parse("watch", {"node": "node-c", "topic": "metrics/#", "seconds": 0.2,
                                                   "max_events": 3}))
    assert out["events"] == [] and out["stopped"] == "time"
    assert all(s.closed for s in fake.subscriptions)


def test_results_are_size_capped_with_a_note():
    lines = [f"line {i} " + "x" * 100 for i in range(5000)]
    text = to_text({"name": "logger", "lines": lines}, 4000)
    assert len(text) <= 4000
    assert "line 4999" in text  # logs keep their tail
    assert "earlier items cut" in text
    doc = json.loads(text)
    assert doc["name"] == "logger"
