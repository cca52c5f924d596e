"""Node core over a real WebSocket against a real node process (issue: node core)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys

import psutil
import pytest
from websockets.exceptions import ConnectionClosed

from support import async_wait_until
from wsutil import next_event, open_ws, recv, request, send

pytestmark = pytest.mark.timeout(60)

PLUGIN = {"services": ["plugins.testsvc:TestService"]}


async def test_hello_and_local_calls(cluster):
    a = cluster.start("core-a", temperature="sim:41.5", broker="none")
    async with await open_ws(a.url) as ws:
        welcome = await request(ws, {"type": "hello", "id": "0", "client": "pytest"})
        assert welcome == {"type": "welcome", "id": "0", "node": "core-a", "role": "operator", "protocol": 1,
                           "auth": "none", "exposed": False}
        pong = await request(ws, {"type": "call", "id": 1, "service": "node", "method": "ping"})
        assert pong["type"] == "result" and pong["id"] == 1 and pong["node"] == "core-a"
        assert pong["result"]["node"] == "core-a"
        # the node's own id works like no node at all
        info = await request(ws, {"type": "call", "id": "2", "node": "core-a", "service": "system", "method": "info"})
        assert info["result"]["node"] == "core-a" and info["result"]["uptime"] >= 0
        m = await request(ws, {"type": "call", "id": "3", "service": "system", "method": "metrics"})
        metrics = m["result"]
        assert metrics["simulated"] is True and metrics["temperature_source"] == "simulated"
        assert 39.5 <= metrics["temperature_c"] <= 43.5
        for key in ("cpu_percent", "memory_percent", "disk_percent"):
            assert 0 <= metrics[key] <= 100
        assert len(metrics["load"]) == 3
        desc = await request(ws, {"type": "call", "id": "4", "service": "node", "method": "describe"})
        services = desc["result"]["services"]
        assert {"node", "system", "pubsub", "supervisor"} <= set(services)
        assert services["supervisor"]["methods"]["restart"]["mutates"] is True
        assert services["system"]["methods"]["metrics"]["mutates"] is False
        assert services["supervisor"]["methods"]["restart"]["params"]["required"] == ["name"]


async def test_fixed_temperature_is_not_simulated(cluster):
    a = cluster.start("core-fixed", temperature="fixed:41.5", broker="none")
    async with await open_ws(a.url) as ws:
        m = (await request(ws, {"type": "call", "id": 1, "service": "system", "method": "metrics"}))["result"]
        assert m["temperature_c"] == 41.5 and m["simulated"] is False and m["temperature_source"] == "fixed"


async def test_local_pubsub_with_wildcards(cluster):
    a = cluster.start("core-ps", broker="none")
    async with await open_ws(a.url) as sub, await open_ws(a.url) as pub:
        assert (await request(sub, {"type": "subscribe", "id": "s1", "topic": "alerts/+/disk"}))["type"] == "subscribed"
        assert (await request(sub, {"type": "subscribe", "id": "s2", "topic": "logs/#"}))["type"] == "subscribed"
        for topic in ("alerts/web/cpu", "alerts/web/disk", "logs", "logs/a/b", "other"):
            r = await request(pub, {"type": "publish", "id": topic, "topic": topic, "data": {"t": topic}})
            assert r == {"type": "published", "id": topic}
        got = [await next_event(sub, lambda m: not m["topic"].startswith("metrics")) for _ in range(3)]
        assert [g["topic"] for g in got] == ["alerts/web/disk", "logs", "logs/a/b"]
        assert all(g["node"] == "core-ps" and g["data"] == {"t": g["topic"]} and g["ts"] > 0 for g in got)
        assert (await request(sub, {"type": "unsubscribe", "id": "u1", "topic": "logs/#"}))["type"] == "unsubscribed"
        await request(pub, {"type": "publish", "id": "p", "topic": "logs/x", "data": 1})
        await request(pub, {"type": "publish", "id": "q", "topic": "alerts/db/disk", "data": 2})
        ev = await next_event(sub)
        assert ev["topic"] == "alerts/db/disk"   # logs/x did not arrive after unsubscribe
        # the pubsub service publishes too, and reports counters
        r = await request(pub, {"type": "call", "id": "c", "service": "pubsub", "method": "publish",
                                "params": {"topic": "alerts/svc/disk", "data": 3}})
        assert r["result"]["delivered_local"] == 1
        assert (await next_event(sub))["data"] == 3
        stats = (await request(pub, {"type": "call", "id": "st", "service": "pubsub", "method": "stats"}))["result"]
        assert stats["pubsub"]["events"] >= 5 and stats["pubsub"]["local_subscribers"] == 1
        topics = (await request(pub, {"type": "call", "id": "tp", "service": "pubsub", "method": "topics"}))["result"]
        assert topics["local"] == ["alerts/+/disk"]


async def test_node_publishes_metrics(cluster):
    a = cluster.start("core-m", broker="none", temperature="sim:50")
    async with await open_ws(a.url) as ws:
        await request(ws, {"type": "subscribe", "id": 1, "topic": "metrics/#"})
        ev = await next_event(ws, timeout=5)
        assert ev["topic"] == "metrics/system" and ev["data"]["simulated"] is True


async def test_every_error_code_reachable(cluster):
    token_op, token_view = "op-secret", "view-secret"
    auth = {"tokens": [{"sha256": hashlib.sha256(token_op.encode()).hexdigest(), "role": "operator"},
                       {"sha256": hashlib.sha256(token_view.encode()).hexdigest(), "role": "viewer"}]}
    a = cluster.start("err-a", **PLUGIN, auth=auth,
                      ws={"listen": "127.0.0.1:0", "max_frame_bytes": 4096, "rate_limit": 50.0, "rate_burst": 60})
    b = cluster.start("err-b")
    seen: set[str] = set()

    async def expect(ws, frame, code, *, contains=""):
        r = await request(ws, frame)
        assert r["type"] == "error", r
        assert r["error"]["code"] == code, r
        assert contains.lower() in r["error"]["message"].lower(), r
        seen.add(code)
        return r

    async with await open_ws(a.url) as ws:
        await expect(ws, {"type": "call", "id": 1, "service": "node", "method": "ping"}, "unauthenticated")
        await expect(ws, {"type": "hello", "id": 2, "token": "wrong"}, "unauthenticated", contains="invalid token")
        assert (await request(ws, {"type": "hello", "id": 3, "token": token_view}))["role"] == "viewer"
        await expect(ws, {"type": "call", "id": 4, "service": "supervisor", "method": "restart",
                          "params": {"name": "logger"}}, "forbidden", contains="supervisor.restart")
        await expect(ws, {"type": "publish", "id": 5, "topic": "x", "data": 1}, "forbidden")
        # viewers may read
        assert (await request(ws, {"type": "call", "id": 6, "service": "system", "method": "metrics"}))["type"] == "result"

    async with await open_ws(a.url) as ws:
        await request(ws, {"type": "hello", "id": 0, "token": token_op})
        await send(ws, "{not json")
        r = await recv(ws)
        assert r["error"]["code"] == "bad_request" and "JSON" in r["error"]["message"] and r["id"] is None
        await expect(ws, {"type": "dance", "id": 7}, "bad_request", contains="unknown frame type")
        await expect(ws, {"type": "call", "id": 8, "method": "ping"}, "bad_request", contains="service")
        await send(ws, {"type": "call", "service": "node", "method": "ping"})
        assert (await recv(ws))["error"]["message"] == "missing field 'id'"
        await expect(ws, {"type": "subscribe", "id": 9, "topic": "a/#/b"}, "bad_request", contains="#")
        await expect(ws, {"type": "call", "id": 10, "service": "node", "method": "ping",
                          "params": {"x": "y" * 5000}}, "too_large", contains="4096")
        await expect(ws, {"type": "call", "id": 11, "node": "nobody", "service": "node", "method": "ping"},
                     "unknown_node", contains="nobody")
        await expect(ws, {"type": "call", "id": 12, "service": "nosuch", "method": "x"}, "unknown_service",
                     contains="nosuch")
        await expect(ws, {"type": "call", "id": 13, "service": "system", "method": "nosuch"}, "unknown_method",
                     contains="nosuch")
        r = await expect(ws, {"type": "call", "id": 14, "service": "testsvc", "method": "sleep",
                              "params": {"seconds": "soon"}}, "invalid_params", contains="seconds")
        await expect(ws, {"type": "call", "id": 15, "service": "supervisor", "method": "restart",
                          "params": {"name": "nope"}}, "invalid_params", contains="nope")
        await expect(ws, {"type": "call", "id": 16, "service": "testsvc", "method": "sleep",
                          "params": {"seconds": 5}, "timeout": 0.3}, "timeout")
        r = await expect(ws, {"type": "call", "id": 17, "service": "testsvc", "method": "crash"}, "internal")
        assert "boom" not in r["error"]["message"]          # no internals over the wire
        assert "boom: secret internal detail" in a.log()    # but logged with its traceback
        await expect(ws, {"type": "register", "id": "reg", "service": "system", "method": "metrics"},
                     "conflict", contains="system.metrics")
        # node_offline: b is known, then gone
        assert (await request(ws, {"type": "call", "id": 18, "node": "err-b", "service": "node",
                                   "method": "ping"}))["type"] == "result"
        b.stop()
        async def b_offline():
            r = await request(ws, {"type": "call", "id": "probe", "node": "err-b", "service": "node",
                                   "method": "ping", "timeout": 1})
            return r["type"] == "error" and r["error"]["code"] == "node_offline"
        await async_wait_until(b_offline, 10, what="err-b to be seen offline")
        seen.add("node_offline")
        # overloaded: flood faster than 50 frames/s beyond the burst
        for i in range(120):
            await send(ws, {"type": "call", "id": f"f{i}", "service": "node", "method": "ping"})
        codes = []
        for _ in range(120):
            m = await recv(ws)
            codes.append(m.get("error", {}).get("code") if m["type"] == "error" else m["type"])
            assert m["id"] is not None
        assert "overloaded" in codes and "result" in codes, codes
        seen.add("overloaded")
        # the connection is still usable after all these errors (wait for the bucket to refill)
        async def pings():
            await send(ws, {"type": "call", "id": "after", "service": "node", "method": "ping"})
            got = []
            try:
                async with asyncio.timeout(3):
                    while True:
                        got.append(await recv(ws))
                        if got[-1].get("id") == "after":
                            break
            except TimeoutError:
                raise AssertionError(f"no reply; got {got}; codes {codes}")
            return got[-1]["type"] == "result"
        await async_wait_until(pings, 5, interval=0.3, what="ping to succeed again")

    from cloudisense.node import ErrorCode
    assert seen == {c.value for c in ErrorCode}


async def test_restart_logger_changes_pid(cluster):
    a = cluster.start("core-sup", broker="none")
    async with await open_ws(a.url) as ws:
        lst = (await request(ws, {"type": "call", "id": 1, "service": "supervisor", "method": "list"}))["result"]
        (logger,) = lst["processes"]
        assert logger["name"] == "logger" and logger["state"] == "running"
        old = logger["pid"]
        assert psutil.Process(old).ppid() == a.pid
        await request(ws, {"type": "subscribe", "id": 2, "topic": "process/logger/#"})
        r = await request(ws, {"type": "call", "id": 3, "service": "supervisor", "method": "restart",
                               "params": {"name": "logger"}})
        new = r["result"]["pid"]
        assert r["result"]["state"] == "running" and new != old
        assert not psutil.pid_exists(old), "the old logger must be gone and reaped"
        assert psutil.Process(new).ppid() == a.pid
        logs = (await request(ws, {"type": "call", "id": 4, "service": "supervisor", "method": "logs",
                                   "params": {"name": "logger", "lines": 5}}))["result"]
        assert logs


async def test_sigterm_closes_clients_with_1001_and_stops_children(cluster):
    a = cluster.start("core-stop", broker="none")
    ws = await open_ws(a.url)
    await request(ws, {"type": "hello", "id": 0})
    a.remember_children()
    assert a.children, "the logger should run as a child"
    a.proc.terminate()
    with pytest.raises(ConnectionClosed) as exc:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert exc.value.rcvd.code == 1001
    assert await asyncio.to_thread(a.proc.wait, 10) == 0
    for c in a.children:
        assert not c.is_running() or c.status() == psutil.STATUS_ZOMBIE


def run_cli(*args: str, timeout: float = 20, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_cli_call_and_sub(cluster):
    a = cluster.start("core-cli", broker="none")
    r = run_cli("call", "--url", a.url, ".", "system.metrics")
    assert r.returncode == 0, r.stderr
    assert "cpu_percent" in json.loads(r.stdout)
    r = run_cli("call", "--url", a.url, ".", "system.nosuch")
    assert r.returncode == 1 and "unknown_method" in r.stderr
    r = run_cli("call", "--url", a.url, ".", "supervisor.status", "{bad")
    assert r.returncode == 2 and "not valid JSON" in r.stderr
    sub = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "sub", "--url", a.url, "--count", "2",
                            "metrics/#"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = sub.communicate(timeout=20)
    assert sub.returncode == 0, err
    lines = [json.loads(x) for x in out.splitlines()]
    assert len(lines) == 2 and all(x["topic"] == "metrics/system" for x in lines)


def test_bad_config_names_key_and_exits(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('id = "has/slash"\n[ws]\nlisten = "nowhere"\n[system]\ntemperature = "hot"\nbogus = 1\n')
    r = run_cli("node", "--config", str(bad))
    assert r.returncode == 2
    for needle in ("id:", "ws.listen", "system.temperature", "system.bogus", "unknown key"):
        assert needle in r.stderr, r.stderr
    r = run_cli("node", "--config", str(tmp_path / "missing.toml"))
    assert r.returncode == 2 and "does not exist" in r.stderr


def test_print_config_merges_file_env_and_flags(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('id = "from-file"\n[broker]\nprefix = "file/prefix"\nkeepalive = 7\n')
    env = {"CLOUDISENSE_BROKER__PREFIX": "env/prefix", "PATH": "/usr/bin:/bin"}
    r = run_cli("node", "--config", str(cfg), "--id", "from-flag", "--print-config", env=env)
    assert r.returncode == 0, r.stderr
    eff = json.loads(r.stdout)
    assert eff["id"] == "from-flag" and eff["broker"]["prefix"] == "env/prefix" and eff["broker"]["keepalive"] == 7


def test_embedded_port_taken_says_how_to_join(cluster):
    cfg = cluster.config("core-emb", broker="embedded")
    cfg["broker"]["embedded_listen"] = "127.0.0.1:1883"   # mosquitto is there
    n = cluster.spawn("core-emb", cfg=cfg)
    assert n.proc.wait(20) == 2
    assert "--broker mqtt://127.0.0.1:1883" in n.log()


def test_help_explains_commands():
    r = run_cli("--help")
    assert r.returncode == 0
    for cmd in ("node", "call", "sub", "keys", "certs", "demo"):
        assert cmd in r.stdout
    r = run_cli("node", "--help")
    assert "--broker" in r.stdout and "embedded" in r.stdout
