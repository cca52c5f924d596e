"""The "secure cluster in five commands" of docs/security.md, run from the doc's own config blocks.

mosquitto with client certificates and the ACL, three signing nodes with
tokens serving ``wss://``.  Paths and ports are the only things changed (the
broker gets a free port, the nodes port 0; ``user root`` stands in for the
``chown`` when the tests run as root).  If the doc's files stop working,
this fails.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import ssl
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from support import async_wait_until, wait_until
from wsutil import request

pytestmark = pytest.mark.timeout(120)

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
NODES = ["node-a", "node-b", "node-c"]


def block_after(text: str, label: str) -> str:
    """The first fenced code block after the line that starts with ``label``."""
    i = text.index("\n" + label)
    m = re.compile(r"```[a-z]*\n(.*?)```", re.S).search(text, i)
    assert m, f"no code block after {label!r} in {DOC}"
    return m.group(1)


def cli(*args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *args], cwd=cwd, capture_output=True,
                       text=True, timeout=30, env=env)
    return r


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker(tmp_path):
    doc = DOC.read_text()
    port = free_port()
    # 1.-3. as in the doc (the token's hash computed here instead of with sha256sum)
    assert cli("certs", "gen", "--out", "pki", "--nodes", ",".join(NODES), cwd=tmp_path).returncode == 0
    for n in NODES:
        assert cli("keys", "gen", n, "--out", "keys", cwd=tmp_path).returncode == 0
    conf = block_after(doc, "`mosquitto.conf`").replace("/path/to/", f"{tmp_path}/").replace("8883", str(port))
    acl = block_after(doc, "`acl`")
    (tmp_path / "acl").write_text(acl)
    extra = ["set_tcp_nodelay true", "log_dest stderr"] + (["user root"] if os.geteuid() == 0 else [])
    (tmp_path / "mosquitto.conf").write_text(conf + "\n".join(extra) + "\n")
    log = open(tmp_path / "mosquitto.log", "wb")
    proc = subprocess.Popen(["mosquitto", "-c", str(tmp_path / "mosquitto.conf")], stdout=log,
                            stderr=subprocess.STDOUT)

    def listening():
        assert proc.poll() is None, (tmp_path / "mosquitto.log").read_text()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return True
        except OSError:
            return False
    try:
        wait_until(listening, 10, what="mosquitto to listen")
        yield tmp_path, port, doc
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def mqtt_pub(tmp: Path, port: int, topic: str, payload: str, cert: str | None) -> subprocess.CompletedProcess:
    args = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "--cafile", str(tmp / "pki/ca.pem"),
            "-q", "1", "-t", topic, "-m", payload]
    if cert:
        args += ["--cert", str(tmp / f"pki/{cert}.pem"), "--key", str(tmp / f"pki/{cert}.key")]
    return subprocess.run(args, capture_output=True, text=True, timeout=10)


async def test_the_documented_secure_cluster(cluster, broker):
    tmp, port, doc = broker
    token = secrets.token_hex(24)
    node_a = tomllib.loads(block_after(doc, "`node-a.toml`"))
    nodes = {}
    for n in NODES:
        cfg = json.loads(json.dumps(node_a).replace("node-a", n))
        b, sec = cfg["broker"], cfg["security"]
        b["url"] = b["url"].replace("8883", str(port))
        for k in ("ca", "cert", "key"):
            b[k] = str(tmp / b[k])
        sec["key"], sec["trust"] = str(tmp / sec["key"]), str(tmp / sec["trust"])
        cfg["ws"]["listen"] = "127.0.0.1:0"
        cfg["auth"]["tokens"][0]["sha256"] = hashlib.sha256(token.encode()).hexdigest()
        cfg.update(processes=[], system={"temperature": "sim:45", "metrics_interval": 1.0})
        assert b.get("prefix") is None   # the doc's ACL is written for the default prefix
        nodes[n] = cluster.spawn(n, cfg=cfg, args=["--tls-cert", str(tmp / f"pki/{n}.pem"),
                                                   "--tls-key", str(tmp / f"pki/{n}.key")])
    for n in nodes.values():
        n.wait_ready()
        assert n.url.startswith("wss://")
    ctx = ssl.create_default_context(cafile=str(tmp / "pki/ca.pem"))

    async def call(ws, node, sm, params=None):
        service, method = sm.split(".")
        r = await request(ws, {"type": "call", "id": f"{sm}-{time.monotonic()}", "node": node, "service": service,
                               "method": method, "params": params or {}})
        assert r["type"] == "result", r
        return r["result"]

    async with connect(nodes["node-a"].url, ssl=ctx, open_timeout=5) as wa, \
            connect(nodes["node-b"].url, ssl=ctx, open_timeout=5) as wb:
        r = await request(wa, {"type": "call", "id": 0, "service": "node", "method": "ping"})
        assert r["error"]["code"] == "unauthenticated"
        assert (await request(wa, {"type": "hello", "id": 1, "token": token}))["role"] == "operator"
        assert (await request(wb, {"type": "hello", "id": 1, "token": token}))["role"] == "operator"

        async def all_online():
            table = (await call(wa, None, "node.cluster"))["nodes"]
            return set(NODES) <= {n["id"] for n in table if n["online"]}
        await async_wait_until(all_online, 20, interval=0.2, what="the three nodes online")
        for other in ("node-b", "node-c"):
            assert (await call(wa, other, "node.ping"))["node"] == other
        stats = await call(wb, None, "pubsub.stats")
        assert stats["federation"]["signing"] and not any(stats["federation"]["rejected"].values()), stats

        # The ACL: node-c's certificate can't publish node-a's presence (mosquitto drops it), but may
        # write to node-b's inbox, where the signature check drops junk.  Published in that order, so
        # once the second has been counted the first would have been too.
        forged = json.dumps({"v": 1, "kind": "presence", "from": "node-a", "to": None, "id": "x",
                             "ts": time.time() + 60, "body": {"state": "offline", "session": "?"}})
        assert mqtt_pub(tmp, port, "cloudisense/v1/node/node-a/presence", forged, "node-c").returncode == 0
        junk = json.dumps({"v": 1, "kind": "call", "from": "node-c", "to": "node-b", "id": "y", "ts": time.time(),
                           "body": {"service": "node", "method": "ping", "params": {}}})
        assert mqtt_pub(tmp, port, "cloudisense/v1/node/node-b/inbox", junk, "node-c").returncode == 0

        async def junk_counted():
            return (await call(wb, None, "pubsub.stats"))["federation"]["rejected"]["unsigned"] >= 1
        await async_wait_until(junk_counted, 10, what="node-b to drop the unsigned junk")
        assert (await call(wb, None, "pubsub.stats"))["federation"]["rejected"]["unsigned"] == 1
        table = {n["id"]: n for n in (await call(wb, None, "node.cluster"))["nodes"]}
        assert table["node-a"]["online"]

    # "Check it": no client certificate, no connection.
    r = mqtt_pub(tmp, port, "x", "x", None)
    assert r.returncode != 0
    # The CLI, as the doc shows it.
    env = {**os.environ, "SSL_CERT_FILE": str(tmp / "pki/ca.pem")}
    r = cli("call", "--url", nodes["node-a"].url, "--token", token, "node-b", "system.metrics", cwd=tmp, env=env)
    assert r.returncode == 0 and "cpu_percent" in r.stdout, r.stderr
    r = cli("call", "--url", nodes["node-a"].url, "--token", "wrong", "node-b", "system.metrics", cwd=tmp, env=env)
    assert r.returncode != 0 and "unauthenticated" in r.stderr, r.stderr
