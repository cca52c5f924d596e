"""SIGHUP reloads tokens, processes and the log level without dropping clients or the broker link (issue 17)."""

from __future__ import annotations

import asyncio
import hashlib
import signal

import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from support import LOGGER, async_wait_until, wait_until, write_config
from wsutil import open_ws, recv, request

pytestmark = pytest.mark.timeout(120)

KEEP, GONE, NEW = "reload-keep-operator", "reload-gone-viewer", "reload-new-viewer"


def tok(secret: str, role: str) -> dict:
    return {"sha256": hashlib.sha256(secret.encode()).hexdigest(), "role": role, "name": secret}


def procs(*names: str) -> list[dict]:
    return [{**LOGGER, "name": n} for n in names]


async def hello(url: str, token: str):
    ws = await open_ws(url)
    r = await request(ws, {"type": "hello", "id": "h", "token": token})
    return ws, r


async def call(ws, method: str, params: dict | None = None, rid: str = "c") -> dict:
    return await request(ws, {"type": "call", "id": rid, "service": "supervisor", "method": method,
                              "params": params or {}})


def test_sighup_applies_tokens_and_processes_and_keeps_clients_and_the_link(cluster):
    cfg = cluster.config("rl", auth={"tokens": [tok(KEEP, "operator"), tok(GONE, "viewer")]},
                         processes=procs("steady", "doomed"))
    a = cluster.spawn("rl", cfg).wait_ready()
    b = cluster.start("rm")   # a peer: it must not see rl go offline

    async def scenario() -> None:
        keeper, r = await hello(a.url, KEEP)
        assert r["type"] == "welcome"
        viewer, r = await hello(a.url, GONE)
        assert r["type"] == "welcome" and r["role"] == "viewer"
        watcher, _ = await hello(a.url, KEEP)     # only reads events
        await request(watcher, {"type": "subscribe", "id": "s", "topic": "process/#"})
        peer, _ = await hello(b.url, "x")          # b has no tokens: anyone is an operator
        await request(peer, {"type": "subscribe", "id": "s", "topic": "$cluster/node/#"})
        before = {p["name"]: p for p in (await call(keeper, "list"))["result"]["processes"]}
        doomed_pid = before["doomed"]["pid"]

        cfg2 = {**cfg, "auth": {"tokens": [tok(KEEP, "operator"), tok(NEW, "viewer")]},
                "processes": procs("steady", "fresh"), "log": {"level": "DEBUG"},
                "ws": {**cfg["ws"], "max_clients": 7}}
        write_config(a.config, cfg2)
        a.proc.send_signal(signal.SIGHUP)
        await async_wait_until(lambda: "tokens: 1 added, 1 removed" in a.log(), 20, what="the reload to be logged")

        # the revoked token's client is closed with 1008; the kept one carries on, on the same connection
        with pytest.raises(ConnectionClosed) as e:
            async with asyncio.timeout(10):
                while True:
                    await viewer.recv()
        assert e.value.rcvd.code == 1008 and "revoked" in e.value.rcvd.reason
        after = {p["name"]: p for p in (await call(keeper, "list", rid="c2"))["result"]["processes"]}
        assert set(after) == {"steady", "fresh"}
        assert after["steady"]["pid"] == before["steady"]["pid"]          # unchanged: not restarted
        assert after["fresh"]["state"] == "running"
        assert not psutil.pid_exists(doomed_pid) or psutil.Process(doomed_pid).status() == psutil.STATUS_ZOMBIE
        # the new token works, the removed one does not
        ws, r = await hello(a.url, NEW)
        assert r["type"] == "welcome" and r["role"] == "viewer"
        await ws.close()
        ws, r = await hello(a.url, GONE)
        assert r["type"] == "error" and r["error"]["code"] == "unauthenticated"
        await ws.close()
        # a subscriber saw the process changes as events on the same connection
        seen = set()
        async with asyncio.timeout(10):
            while not {("doomed", "process/doomed/stopped"), ("fresh", "process/fresh/started")} <= seen:
                m = await recv(watcher)
                if m.get("type") == "event":
                    seen.add((m["data"].get("name"), m["topic"]))
        # nothing on b says rl went away
        try:
            async with asyncio.timeout(1.5):
                while True:
                    m = await recv(peer)
                    assert not (m.get("topic") == "$cluster/node/offline" and m["data"]["id"] == "rl"), m
        except TimeoutError:
            pass
        for w in (keeper, watcher, peer):
            await w.close()

    asyncio.run(scenario())
    log = a.log()
    assert "need a restart" in log and "ws.max_clients" in log       # named, not applied
    assert "reload: log level DEBUG" in log
    assert " DEBUG " in log.split("reload: log level DEBUG")[1]       # and took
    import urllib.request
    req = urllib.request.Request(a.http + "metrics", headers={"Authorization": f"Bearer {KEEP}"})
    text = urllib.request.urlopen(req, timeout=5).read().decode()
    assert "cloudisense_federation_reconnects_total 0" in text
    assert "cloudisense_federation_link_failures_total 0" in text
    assert a.proc.poll() is None


def test_a_config_that_does_not_load_changes_nothing(cluster):
    cfg = cluster.config("rb", processes=procs("steady"))
    a = cluster.spawn("rb", cfg).wait_ready()
    a.config.write_text(a.config.read_text() + "\nnonsense = [\n")
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "does not load" in a.log(), 20, what="the bad config to be reported")
    assert a.proc.poll() is None

    async def still() -> dict:
        ws = await open_ws(a.url)
        try:
            return await call(ws, "list")
        finally:
            await ws.close()
    assert [p["name"] for p in asyncio.run(still())["result"]["processes"]] == ["steady"]


def test_sighup_reloads_the_trust_store(cluster, tmp_path):
    import shutil
    import subprocess
    import sys
    keys = tmp_path / "keys"
    for nid in ("ta", "tb"):
        r = subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "keys", "gen", nid, "--out", str(keys)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
    trust_a, trust_b = tmp_path / "trust-a", tmp_path / "trust-b"
    trust_a.mkdir()
    trust_b.mkdir()
    shutil.copy(keys / "ta.pub", trust_a)                 # ta trusts only itself, at first
    for nid in ("ta", "tb"):
        shutil.copy(keys / f"{nid}.pub", trust_b)

    def sec(nid: str, trust) -> dict:
        return {"security": {"key": str(keys / f"{nid}.key"), "trust": str(trust)}}
    a = cluster.start("ta", **sec("ta", trust_a))
    b = cluster.start("tb", **sec("tb", trust_b))

    async def online_at_a() -> set[str]:
        ws = await open_ws(a.url)
        try:
            r = await request(ws, {"type": "call", "id": "c", "service": "node", "method": "cluster"})
            return {n["id"] for n in r["result"]["nodes"] if n["online"]}
        finally:
            await ws.close()

    wait_until(lambda: "unknown_sender" in a.log(), 20,
               what="ta to reject tb's envelopes")
    assert "tb" not in asyncio.run(online_at_a())
    shutil.copy(keys / "tb.pub", trust_a)
    a.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: "trust store: 1 added, 0 removed" in a.log(), 20, what="the trust reload")
    wait_until(lambda: "tb" in asyncio.run(online_at_a()), 20, interval=0.3, what="ta to accept tb")
    assert b.proc.poll() is None and a.proc.poll() is None
