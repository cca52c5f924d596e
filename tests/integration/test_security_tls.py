"""TLS: federation over ``mqtts://`` through a mosquitto the test starts, and ``wss://`` for clients.

Certificates come from ``cloudisense certs gen`` (the CLI, as a user runs it).
The test broker has two TLS-only listeners on free ports: one requires a
client certificate from the cluster CA (``mtls``), one only proves the
broker's identity (``tls``).  Nothing here listens in plaintext.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from support import async_wait_until, wait_until
from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(90)

PLUG = ["plugins.testsvc:TestService", "plugins.testsvc:RelayService"]


def cli(*args: str, env: dict | None = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TlsBroker:
    def __init__(self, tmp: Path) -> None:
        self.pki, self.other = tmp / "pki", tmp / "other-pki"
        r = cli("certs", "gen", "--out", str(self.pki), "--nodes", "ta,tb,tc")
        assert r.returncode == 0, r.stderr
        r = cli("certs", "gen", "--out", str(self.other), "--nodes", "ta")   # an unrelated CA
        assert r.returncode == 0, r.stderr
        self.mtls, self.tls = free_port(), free_port()
        pki = self.pki
        lines = ["per_listener_settings false", "allow_anonymous true", "set_tcp_nodelay true",
                 "persistence false", "log_dest stderr", "log_type error", "log_type warning",
                 "log_type notice", "log_type information"]
        if os.geteuid() == 0:
            lines.append("user root")   # else mosquitto drops to 'mosquitto', which can't read our 0600 key
        for port, require in ((self.mtls, "true"), (self.tls, "false")):
            lines += [f"listener {port} 127.0.0.1", f"cafile {pki / 'ca.pem'}", f"certfile {pki / 'broker.pem'}",
                      f"keyfile {pki / 'broker.key'}", f"require_certificate {require}"]
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.log_path = tmp / "mosquitto.log"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=self._log,
                                     stderr=subprocess.STDOUT)

        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited: {self.log()}")
            try:
                for port in (self.mtls, self.tls):
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return True
            except OSError:
                return False
        wait_until(listening, 10, what="the TLS mosquitto to listen")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def url(self, port: int) -> str:
        return f"mqtts://127.0.0.1:{port}"

    def broker_cfg(self, node: str | None, port: int, *, ca: Path | None = None, **extra) -> dict:
        cfg = {"url": self.url(port), "ca": str(ca or self.pki / "ca.pem"), **extra}
        if node:
            cfg["cert"], cfg["key"] = str(self.pki / f"{node}.pem"), str(self.pki / f"{node}.key")
        return cfg

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


@pytest.fixture
def tls_broker(tmp_path):
    b = TlsBroker(tmp_path)
    yield b
    b.stop()


def exits(node, timeout: float = 20.0) -> tuple[int, str]:
    """Wait for a node that must not start; its exit code and stderr."""
    wait_until(lambda: node.proc.poll() is not None, timeout, what=f"node {node.id} to give up and exit")
    return node.proc.returncode, node.log()


async def call(ws, node, sm, params=None):
    service, method = sm.split(".")
    frame = {"type": "call", "id": f"{sm}-{time.monotonic()}", "service": service, "method": method,
             "params": params or {}}
    if node:
        frame["node"] = node
    r = await request(ws, frame)
    assert r["type"] == "result", r
    return r["result"]


async def until_online(ws, ids, timeout=15):
    async def ok():
        return set(ids) <= {n["id"] for n in (await call(ws, None, "node.cluster"))["nodes"] if n["online"]}
    await async_wait_until(ok, timeout, interval=0.2, what=f"{ids} online")


@pytest.mark.parametrize("client_certs", [True, False], ids=["client-certs", "server-auth-only"])
async def test_nodes_federate_over_mqtts(cluster, tls_broker, client_certs):
    port = tls_broker.mtls if client_certs else tls_broker.tls
    a = cluster.spawn("ta", cfg=tls_cfg(cluster, "ta", **tls_broker.broker_cfg("ta" if client_certs else None, port)))
    b = cluster.spawn("tb", cfg=tls_cfg(cluster, "tb", **tls_broker.broker_cfg("tb" if client_certs else None, port)))
    a.wait_ready(), b.wait_ready()
    async with await open_ws(a.url) as ws:
        await until_online(ws, ["ta", "tb"])
        assert (await call(ws, "tb", "relay.bump"))["count"] == 1
        assert (await call(ws, "tb", "node.ping"))["node"] == "tb"
        fed = (await call(ws, None, "pubsub.stats"))["federation"]
        assert fed["connected"] and fed["broker"] == f"mqtts://127.0.0.1:{port}"


def tls_cfg(cluster, node_id, **broker) -> dict:
    cfg = cluster.config(node_id, services=PLUG)
    cfg["broker"].update(broker)
    return cfg


def tls_node(cluster, tls_broker, node_id, **broker):
    return cluster.spawn(node_id, cfg=tls_cfg(cluster, node_id, connect_timeout=5.0, **broker))


def test_wrong_ca_cannot_join(cluster, tls_broker):
    t0 = time.monotonic()
    n = tls_node(cluster, tls_broker, "ta", **tls_broker.broker_cfg("ta", tls_broker.tls, ca=tls_broker.other / "ca.pem"))
    code, log = exits(n)
    assert code == 2, log
    assert "cannot join broker mqtts://127.0.0.1" in log and "certificate verif" in log, log
    assert time.monotonic() - t0 < 15, "a certificate that will never verify is not retried until the timeout"
    assert "ready" not in n.output()


@pytest.mark.parametrize("cert", ["none", "other-ca"])
def test_broker_refuses_node_without_a_cluster_certificate(cluster, tls_broker, cert):
    cfg = tls_broker.broker_cfg(None, tls_broker.mtls)
    if cert == "other-ca":   # a certificate the broker does not trust
        cfg["cert"], cfg["key"] = str(tls_broker.other / "ta.pem"), str(tls_broker.other / "ta.key")
    n = tls_node(cluster, tls_broker, "ta", **cfg)
    code, log = exits(n)
    assert code == 2, log
    last = log.strip().splitlines()[-1]
    assert last.startswith("cloudisense: cannot join broker mqtts://"), log
    assert "client certificate" in last, last


def test_plaintext_to_a_tls_only_port_fails_clearly(cluster, tls_broker):
    n = tls_node(cluster, tls_broker, "ta", url=f"mqtt://127.0.0.1:{tls_broker.tls}")
    code, log = exits(n)
    assert code == 2, log
    last = log.strip().splitlines()[-1]
    assert f"mqtt://127.0.0.1:{tls_broker.tls}" in last and "mqtts://" in last, last


def test_tls_to_a_plaintext_broker_fails_clearly(cluster, tls_broker):
    n = tls_node(cluster, tls_broker, "ta", url="mqtts://127.0.0.1:1883", ca=str(tls_broker.pki / "ca.pem"))
    code, log = exits(n)
    assert code == 2, log
    last = log.strip().splitlines()[-1]
    assert "mqtts://127.0.0.1:1883" in last and "TLS handshake" in last and "plain MQTT" in last, last


def test_node_configured_for_tls_refuses_a_plaintext_url(cluster, tls_broker):
    n = tls_node(cluster, tls_broker, "ta", url="mqtt://127.0.0.1:1883", ca=str(tls_broker.pki / "ca.pem"),
                 cert=str(tls_broker.pki / "ta.pem"), key=str(tls_broker.pki / "ta.key"))
    code, log = exits(n)
    assert code == 2, log
    assert "broker.url" in log and "mqtts://" in log, log


async def test_wss_for_clients(cluster, tmp_path):
    pki = tmp_path / "pki"
    assert cli("certs", "gen", "--out", str(pki), "--nodes", "wss-node").returncode == 0
    n = cluster.start("wss-node", broker="none",
                      args=["--tls-cert", str(pki / "wss-node.pem"), "--tls-key", str(pki / "wss-node.key")])
    assert n.url.startswith("wss://127.0.0.1:"), n.url
    ctx = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    async with connect(n.url, ssl=ctx, open_timeout=5) as ws:
        assert (await request(ws, {"type": "hello", "id": 0}))["type"] == "welcome"
        assert (await call(ws, None, "node.ping"))["node"] == "wss-node"
    # Without the cluster CA the certificate does not verify; plaintext ws:// gets no WebSocket.
    with pytest.raises(ssl.SSLCertVerificationError):
        async with connect(n.url, ssl=ssl.create_default_context(), open_timeout=5):
            pass
    with pytest.raises(Exception) as exc:
        async with connect(n.url.replace("wss://", "ws://"), open_timeout=5):
            pass
    assert not isinstance(exc.value, AssertionError)
    # The CLI client verifies against the CA named by SSL_CERT_FILE.
    env = {**os.environ, "SSL_CERT_FILE": str(pki / "ca.pem")}
    r = cli("call", "--url", n.url, ".", "node.ping", env=env)
    assert r.returncode == 0 and '"wss-node"' in r.stdout, r.stderr
    async with connect(n.url, ssl=ctx, open_timeout=5) as ws:   # still serving
        assert (await call(ws, None, "node.ping"))["node"] == "wss-node"
