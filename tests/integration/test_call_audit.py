"""The node's audit log of state-changing WebSocket calls (node/_audit.py), on real node processes."""

from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from support import async_wait_until, wait_until
from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(60)

OPERATOR, VIEWER = "op-secret-a1", "view-secret-b2"
AUTH = {"tokens": [{"sha256": hashlib.sha256(OPERATOR.encode()).hexdigest(), "role": "operator", "name": "ann"},
                   {"sha256": hashlib.sha256(VIEWER.encode()).hexdigest(), "role": "viewer", "name": "vic"}]}
RESTART = {"type": "call", "service": "supervisor", "method": "restart", "params": {"name": "logger"}}
STATUS = {"type": "call", "service": "supervisor", "method": "status", "params": {"name": "logger"}}


def records(path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


async def hello(url: str, token: str | None, client: str):
    ws = await open_ws(url)
    frame = {"type": "hello", "id": "h", "client": client, **({"token": token} if token else {})}
    welcome = await request(ws, frame)
    assert welcome["type"] == "welcome", welcome
    return ws, welcome


async def test_mutating_calls_are_recorded_with_who_what_and_result(cluster, tmp_path):
    state = tmp_path / "state"
    node = cluster.start("audit-a", broker="none", auth=AUTH, env={"CLOUDISENSE_STATE_DIR": str(state)})
    log = state / "nodes" / "audit-a" / "audit.jsonl"
    ws, welcome = await hello(node.url, OPERATOR, "dashboard")
    assert welcome["auth"] == "token" and welcome["exposed"] is False
    r = await request(ws, {**RESTART, "id": 1})
    assert r["type"] == "result", r
    r = await request(ws, {**STATUS, "id": 2})       # read-only: not recorded
    bad = await request(ws, {"type": "call", "id": 3, "service": "supervisor", "method": "stop",
                             "params": {"name": "nosuch"}})
    assert bad["type"] == "error"
    await ws.close()
    viewer, _ = await hello(node.url, VIEWER, "dashboard")
    r = await request(viewer, {**RESTART, "id": 4})
    assert r["type"] == "error" and r["error"]["code"] == "forbidden"
    await viewer.close()

    recs = wait_until(lambda: (rs := records(log)) and len(rs) == 6 and rs, 10, what="six audit records")
    call, result, call2, result2, vcall, vresult = recs
    assert call["event"] == "call" and call["method"] == "supervisor.restart" and call["target"] == "audit-a"
    assert call["params"] == {"name": "logger"} and call["node"] == "audit-a"
    assert call["who"]["role"] == "operator" and call["who"]["name"] == "ann"
    assert call["who"]["client"].startswith("dashboard-") and call["who"]["addr"] == "127.0.0.1"
    assert result == {**result, "event": "result", "seq": call["seq"], "ok": True}
    assert call2["method"] == "supervisor.stop" and result2["ok"] is False and result2["seq"] == call2["seq"]
    assert result2["error"]["code"] in ("invalid_params", "bad_request"), result2
    assert vcall["who"] == {**vcall["who"], "role": "viewer", "name": "vic"}
    assert vresult["ok"] is False and vresult["error"]["code"] == "forbidden"
    assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(log.parent).st_mode) == 0o700


async def test_without_tokens_the_record_says_so(cluster, tmp_path):
    state = tmp_path / "state"
    node = cluster.start("audit-b", broker="none", env={"CLOUDISENSE_STATE_DIR": str(state)})
    ws, welcome = await hello(node.url, None, "cli")
    assert welcome["auth"] == "none" and welcome["role"] == "operator"
    assert (await request(ws, {**RESTART, "id": 1}))["type"] == "result"
    await ws.close()
    log = state / "nodes" / "audit-b" / "audit.jsonl"
    call = wait_until(lambda: records(log) and records(log)[0], 10, what="the audit record")
    assert call["who"]["role"] == "operator" and call["who"]["name"] == "(no tokens configured)"


async def test_a_call_that_cannot_be_audited_is_not_made(cluster, tmp_path):
    target = tmp_path / "elsewhere.jsonl"
    link = tmp_path / "audit.jsonl"
    link.symlink_to(target)                          # never written through
    node = cluster.start("audit-c", broker="none", ws={"audit_log": str(link)})
    ws, _ = await hello(node.url, None, "cli")
    before = (await request(ws, {**STATUS, "id": 1}))["result"]["pid"]
    r = await request(ws, {**RESTART, "id": 2})
    assert r["type"] == "error" and r["error"]["code"] == "internal" and "audit log" in r["error"]["message"]
    after = (await request(ws, {**STATUS, "id": 3}))["result"]["pid"]
    await ws.close()
    assert before == after                           # the logger was not restarted
    assert not target.exists()


async def test_relayed_and_broadcast_calls_are_recorded_by_the_node_the_client_used(cluster, tmp_path):
    state_a, state_b = tmp_path / "a", tmp_path / "b"
    a = cluster.start("audit-ra", env={"CLOUDISENSE_STATE_DIR": str(state_a)})
    cluster.start("audit-rb", processes=[], env={"CLOUDISENSE_STATE_DIR": str(state_b)})
    ws, _ = await hello(a.url, None, "script")
    try:
        async def both_answer() -> bool:
            r = await request(ws, {"type": "call", "id": "p", "node": "*", "service": "node", "method": "ping"})
            return len(r["result"]["results"]) == 2
        await async_wait_until(both_answer, 20, what="a to know b")
        r = await request(ws, {**RESTART, "id": "bc", "node": "*"})
        assert set(r["result"]["results"]) == {"audit-ra"} and set(r["result"]["errors"]) == {"audit-rb"}
        r = await request(ws, {**RESTART, "id": "rel", "node": "audit-rb"})
        assert r["type"] == "error"
    finally:
        await ws.close()
    log = state_a / "nodes" / "audit-ra" / "audit.jsonl"
    recs = wait_until(lambda: len(records(log)) == 4 and records(log), 10, what="four records on a")
    assert [(r["event"], r.get("target")) for r in recs] == [("call", "*"), ("result", None),
                                                              ("call", "audit-rb"), ("result", None)]
    assert recs[1]["ok"] is True and recs[1]["errors"] == ["audit-rb"]
    assert recs[3]["ok"] is False
    assert not (state_b / "nodes").exists()          # b ran (or refused) them, but its client is a's
