"""Membership: one heartbeat model shared with the tools, a cap, and expiry (pure)."""

from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from cloudisense.node._cluster import FULL, METRIC_KEYS, ROW_FIELDS, Membership, query
from cloudisense.node._config import Settings
from cloudisense.node._heartbeat import heartbeat_error
from cloudisense.node._node import Node
from cloudisense.tools import ClusterView

pytestmark = pytest.mark.timeout(120)


def real_heartbeat() -> dict:
    node = Node(Settings(id="hb", broker={"url": "none"}, system={"temperature": "sim:40"}))
    import json
    return json.loads(json.dumps(node._state_body()))


def test_a_real_nodes_heartbeat_passes():
    assert heartbeat_error(real_heartbeat()) is None


@pytest.mark.parametrize("change,where", [
    ({"metrics": {"load": ["high"]}}, "metrics.load.0"),
    ({"metrics": {"cpu_percent": "hot"}}, "metrics.cpu_percent"),
    ({"metrics": []}, "metrics"),
    ({"processes": [{"state": "running"}]}, "processes.0.name"),
    ({"processes": {"a": 1}}, "processes"),
    ({"catalog": {"s": {"methods": {"m": {"mutates": "maybe"}}}}}, "catalog.s.methods.m.mutates"),
    ({"catalog": {"s": {"methods": []}}}, "catalog.s.methods"),
    ({"catalog": {"s": 1}}, "catalog.s"),
    ({"host": 42}, "host"),
    ({"version": ["1"]}, "version"),
    ({"session": 7}, "session"),
    ({"interval": 0}, "interval"),
    ({"interval": -1}, "interval"),
    ({"interval": 1e300}, "interval"),
    ({"interval": "soon"}, "interval"),
])
def test_heartbeats_the_tools_cannot_read_are_refused(change, where):
    err = heartbeat_error({**real_heartbeat(), **change})
    assert err and err.startswith(where), err


def test_not_an_object():
    assert heartbeat_error([]) == "the body is not an object"


# Whatever the node lets in, the tools read: the membership view of any accepted heartbeat
# validates as the tools' ClusterView (the bug: ask and MCP failed with planning_failed).
json_leaf = st.none() | st.booleans() | st.integers(-10, 10**6) | st.floats(allow_nan=False, allow_infinity=False) \
    | st.text(max_size=6)
json_any = st.recursive(json_leaf, lambda inner: st.lists(inner, max_size=3)
                        | st.dictionaries(st.text(max_size=4), inner, max_size=3), max_leaves=8)
method = st.fixed_dictionaries({}, optional={"description": json_any, "mutates": json_any, "params": json_any})
service = st.fixed_dictionaries({}, optional={"description": json_any,
                                              "methods": st.dictionaries(st.text(max_size=4), method | json_any,
                                                                         max_size=3) | json_any})
process = st.fixed_dictionaries({}, optional={"name": json_any | st.text(max_size=5), "state": json_any,
                                              "pid": json_any, "restarts": json_any, "uptime": json_any,
                                              "exit_code": json_any, "command": json_any})
metrics = st.fixed_dictionaries({}, optional={k: json_any | st.floats(0, 100) for k in
                                              ("cpu_percent", "memory_percent", "disk_percent", "temperature_c",
                                               "simulated", "ts")} | {"load": st.lists(json_any | st.floats(0, 9),
                                                                                       max_size=4) | json_any})
bodies = st.fixed_dictionaries({}, optional={
    "session": json_any, "ts": json_any, "interval": json_any | st.floats(0.1, 10), "host": json_any,
    "version": json_any, "ws": json_any, "pid": json_any, "started": json_any,
    "metrics": metrics | json_any, "catalog": st.dictionaries(st.text(max_size=4), service | json_any, max_size=3)
    | json_any, "catalog_hash": json_any, "processes": st.lists(process | json_any, max_size=3) | json_any})


@given(bodies)
@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_the_node_accepts_the_tools_read(body):
    if heartbeat_error(body) is not None:
        return
    m = Membership("self")
    assert m.on_state("peer", body.get("session", ""), body, 1.0) == "online"
    view = ClusterView.model_validate({"self": "self", "nodes": m.table()})   # raises if the tools can't read it
    node = view.get("peer")
    assert node is not None and node.online
    node.service_names()
    m.stale_on_join(now=1e6, bound=3.0)   # the housekeeping loop's reads work too
    query(m.members(), fields=ROW_FIELDS, catalogs={}, process="logger", status="online", limit=5)
    for key in ("-host", "-version", *METRIC_KEYS):   # and node.cluster's sort reads every metric
        rows, total = query(m.members(), fields=ROW_FIELDS, catalogs={}, sort=key)
        assert total == 1 and rows[0]["id"] == "peer"
        ClusterView.model_validate({"self": "self", "nodes": rows})


# --- the cap ------------------------------------------------------------------------------------

def test_the_table_is_capped_and_refuses_new_members_when_all_are_online():
    m = Membership("self", max_members=4)
    m.set_self("s", {}, 1.0)
    for i in range(3):
        assert m.on_state(f"n{i}", "s", {}, 1.0) == "online"
    assert m.on_state("n3", "s", {}, 2.0) == FULL
    assert m.on_presence("n4", "online", "s", 2.0) == FULL
    assert m.on_presence("n5", "offline", "s", 2.0) == FULL
    assert len(m) == 4 and "n3" not in m
    # known members keep working
    assert m.on_state("n0", "s", {"x": 1}, 3.0) is None and m.get("n0").state == {"x": 1}


def test_a_new_member_takes_the_place_of_the_longest_offline_one():
    m = Membership("self", max_members=4)
    m.set_self("s", {}, 1.0)
    for i in range(3):
        m.on_state(f"n{i}", "s", {}, 1.0)
    m.mark_offline("n1", 5.0)
    m.mark_offline("n0", 6.0)
    assert m.on_state("new", "s", {}, 7.0) == "online"
    assert "n1" not in m and "n0" in m and len(m) == 4
    assert m.on_state("new2", "s", {}, 8.0) == "online"
    assert "n0" not in m and len(m) == 4
    assert m.on_state("new3", "s", {}, 9.0) == FULL


def test_a_flood_of_new_ids_at_a_full_table_costs_o1_each():
    m = Membership("self", max_members=10_000)
    m.set_self("s", {}, 0.0)
    for i in range(9_999):
        m.on_state(f"n{i}", "s", {}, 0.0)
    t0 = time.perf_counter()
    for i in range(20_000):
        assert m.on_state(f"x{i}", "s", {}, 1.0) == FULL
    assert time.perf_counter() - t0 < 1.0   # no scan of 10,000 members per refusal


def test_this_node_always_has_its_place():
    m = Membership("self", max_members=2)
    m.on_presence("a", "offline", "s", 1.0)
    m.on_state("b", "s", {}, 1.0)
    m.set_self("s", {}, 2.0)
    assert "self" in m and m.is_online("self")


# --- expiry -------------------------------------------------------------------------------------

def test_offline_members_expire_after_the_configured_time():
    m = Membership("self")
    m.set_self("s", {}, 0.0)
    m.on_state("a", "s1", {}, 0.0)
    m.on_state("b", "s1", {}, 0.0)
    m.on_presence("a", "offline", "s1", 10.0, ts=10.0)
    m.mark_offline("b", 20.0)
    assert m.expire(now=70.0, after=60.0) == []   # exactly 60 s: not yet
    assert m.expire(now=70.5, after=60.0) == ["a"]
    assert "a" not in m and "b" in m
    assert m.expire(now=80.0, after=60.0) == []
    # b came back before its time: it is not expired
    m.on_state("b", "s2", {}, 75.0)
    assert m.expire(now=1000.0, after=60.0) == []
    assert sorted(n for n in ["self", "a", "b"] if n in m) == ["b", "self"]


def test_a_member_first_seen_offline_expires_too_and_the_old_retained_state_stays_facts():
    m = Membership("self")
    m.on_presence("dead", "offline", "s9", 100.0, ts=50.0)      # retained will of a dead node
    assert m.on_state("dead", "s9", {"x": 1}, 100.0, ts=49.0) is None and not m.is_online("dead")
    assert m.expire(now=150.0, after=60.0) == []
    assert m.expire(now=161.0, after=60.0) == ["dead"]


def test_newer_keeps_only_newer_retained_messages_per_member():
    m = Membership("self")
    assert m.newer("a", "presence", 5.0)       # unknown: anything
    m.on_presence("a", "online", "s", 1.0, ts=5.0)
    assert not m.newer("a", "presence", 4.0) and m.newer("a", "presence", 5.0)
    assert m.newer("a", "state", 1.0)
    m.on_state("a", "s", {}, 1.0, ts=7.0)
    assert not m.newer("a", "state", 6.9)
