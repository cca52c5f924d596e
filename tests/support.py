"""Test support: real node processes on a real broker, waits with deadlines.

Imported as ``support`` (a unique module name: every folder's conftest.py is
called ``conftest``, so importing helpers from it is ambiguous).

``cluster`` is a factory: ``a = cluster.start("a", temperature="sim:61")`` runs
``cloudisense node`` as a subprocess with its own TOML config on the test
broker (mosquitto on 127.0.0.1:1883 unless ``broker=`` says otherwise) under a
topic prefix unique to the test, and waits until it prints its ready line.
Teardown stops every node (SIGTERM, then SIGKILL) and asserts that no node
left a child process behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import psutil

from cloudisense.node.testing import (READY_RE, async_wait_until, child_env, free_port, toml_value,  # noqa: F401 (re-exported)
                                       stop_process, wait_until, write_config)

BROKER = os.environ.get("CLOUDISENSE_TEST_BROKER", "mqtt://127.0.0.1:1883")
CHROMIUM = os.environ.get("CLOUDISENSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def chromium(*extra_args: str) -> Iterator[Any]:
    """Debian's Chromium under Playwright (sync API), closed on exit; fails, never skips, when it is missing."""
    import pytest
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: ./scripts/test installs it (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, *extra_args])
        try:
            yield b
        finally:
            b.close()


def wait_js(page: Any, expr: str, arg: Any = None, timeout: float = 15.0) -> Any:
    """``page.wait_for_function`` by polling ``page.evaluate``: the node's CSP (no 'unsafe-eval')
    blocks the eval Playwright's own wait repeats on every poll.  Returns the truthy value."""
    import time
    deadline = time.monotonic() + timeout
    while not (value := page.evaluate(expr, arg)):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {expr}")
        page.wait_for_timeout(50)
    return value


LOGGER = {"name": "logger", "command": ["python", "-m", "cloudisense.node.demo.logger", "--interval", "0.5"],
          "stop_grace": 3.0}


def http_get(base: str, path: str, token: str | None = None) -> tuple[int, str, dict[str, str]]:
    """GET ``path`` of a node's HTTP side: (status, body, headers), an error status included."""
    req = urllib.request.Request(base.rstrip("/") + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


class NodeProc:
    def __init__(self, node_id: str, proc: subprocess.Popen, out: Path, err: Path, config: Path) -> None:
        self.id = node_id
        self.proc = proc
        self.out_path, self.err_path, self.config = out, err, config
        self.url = ""
        self.children: list[psutil.Process] = []

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def http(self) -> str:
        return self.url.replace("ws://", "http://").replace("wss://", "https://").removesuffix("/ws") + "/"

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def log(self) -> str:
        return self.err_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> "NodeProc":
        def ready() -> Any:
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.id} exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            return READY_RE.search(self.output())
        m = wait_until(ready, timeout, what=f"node {self.id} to be ready")
        self.url = m.group(2)
        return self

    def remember_children(self) -> None:
        try:
            self.children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            self.children = []

    def kill(self) -> None:
        """kill -9, as a crash would."""
        self.remember_children()
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.remember_children()
            if not stop_process(self.proc, timeout):
                raise AssertionError(f"node {self.id} did not stop within {timeout} s on SIGTERM; its log ends:\n"
                                     + "\n".join(self.log().splitlines()[-15:]))
        return self.proc.returncode


def leftover(children: list[psutil.Process], timeout: float = 5.0) -> list[psutil.Process]:
    """Children still running ``timeout`` s after their node went (a crashed node's children get a
    death signal; give them the moment it takes to act on it)."""
    _, alive = psutil.wait_procs(children, timeout=timeout)
    out = []
    for c in alive:
        try:
            if c.status() != psutil.STATUS_ZOMBIE:
                out.append(c)
        except psutil.NoSuchProcess:
            pass
    return out


class Cluster:
    def __init__(self, tmp: Path, prefix: str) -> None:
        self.tmp = tmp
        self.prefix = prefix
        self.nodes: dict[str, NodeProc] = {}
        self._n = 0

    def config(self, node_id: str, *, broker: str = BROKER, temperature: str = "sim:45",
               processes: list[dict] | None = None, listen: str = "127.0.0.1:0", **extra: Any) -> dict[str, Any]:
        cfg: dict[str, Any] = {
            "id": node_id,
            "ws": {"listen": listen},
            "broker": {"url": broker, "prefix": self.prefix, "keepalive": 2, "lease_seconds": 30.0},
            "system": {"temperature": temperature, "metrics_interval": 1.0},
            "processes": [dict(LOGGER)] if processes is None else processes,
        }
        for k, v in extra.items():
            if isinstance(v, dict) and isinstance(cfg.get(k), dict):
                cfg[k] = {**cfg[k], **v}
            else:
                cfg[k] = v
        return cfg

    def spawn(self, node_id: str, cfg: dict[str, Any] | None = None, args: list[str] | None = None,
              env: dict[str, str] | None = None, **kw: Any) -> NodeProc:
        self._n += 1
        cfg = cfg or self.config(node_id, **kw)
        path = write_config(self.tmp / f"{node_id}-{self._n}.toml", cfg)
        out = self.tmp / f"{node_id}-{self._n}.out"
        err = self.tmp / f"{node_id}-{self._n}.log"
        full_env = child_env([Path(__file__).parent], env)
        with open(out, "wb") as fo, open(err, "wb") as fe:
            proc = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "node", "--config", str(path),
                                     *(args or [])], stdout=fo, stderr=fe, env=full_env)
        node = NodeProc(node_id, proc, out, err, path)
        self.nodes[f"{node_id}-{self._n}"] = node
        return node

    def start(self, node_id: str, **kw: Any) -> NodeProc:
        return self.spawn(node_id, **kw).wait_ready()

    def stop_all(self) -> list[str]:
        problems = []
        for key, node in self.nodes.items():
            try:
                node.stop()
            except AssertionError as e:
                problems.append(str(e))
            if left := leftover(node.children):
                problems.append(f"node {node.id} left child processes behind: {[c.pid for c in left]}")
                for c in left:
                    c.kill()
        return problems




# ---- the pairwise MAC key, written out independently of node/_signing.py (docs/security.md) -------------

MAC_CONTEXT = b"cloudisense/v1 pairwise envelope MAC key"
_P = 2**255 - 19


def independent_pairwise_key(seed: bytes, node_id: str, peer_pub: bytes, peer_id: str) -> bytes:
    """K_AB as documented, without libsodium: RFC 7748 X25519 of the Ed25519 scalar (SHA-512 of the 32-byte
    ``seed``, first half) and the peer's Montgomery u = (1 + y) / (1 - y) from its raw public key
    ``peer_pub``, then BLAKE2b-256 keyed with the context over both ids in sorted order, each NUL-ended."""
    import hashlib

    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

    y = int.from_bytes(peer_pub, "little") & ((1 << 255) - 1)
    u = (1 + y) * pow(1 - y, _P - 2, _P) % _P
    shared = X25519PrivateKey.from_private_bytes(hashlib.sha512(seed).digest()[:32]).exchange(
        X25519PublicKey.from_public_bytes(u.to_bytes(32, "little")))
    lo, hi = sorted((node_id, peer_id))
    return hashlib.blake2b(shared + lo.encode() + b"\0" + hi.encode() + b"\0", digest_size=32,
                           key=MAC_CONTEXT).digest()
