"""Fixtures for the dashboard's browser tests (on top of ``tests/conftest.py``).

* ``dash_cluster`` — node-a, node-b, node-c: real ``cloudisense node``
  subprocesses from the shared ``cluster`` fixture (real broker, topic prefix
  unique to the test, a supervised ``logger`` each, simulated temperatures
  45/52/38 °C).  ``dash_cluster["node-b"]`` is a ``NodeProc``.
* ``dash_browser`` — Debian's Chromium (``/usr/bin/chromium``) driven by
  Playwright; never a downloaded browser.
* ``open_dashboard(node)`` — a fresh browser context on a node's dashboard;
  uncaught JavaScript errors in the page fail the test at teardown.
* ``dash_ws(node)`` — a side client speaking protocol v1 (hello, call,
  publish), to make traffic the page should show.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, sync_playwright  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

CHROMIUM = os.environ.get("CLOUDISENSE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TEMPERATURES = {"node-a": "sim:45", "node-b": "sim:52", "node-c": "sim:38"}


class DashCluster:
    """The three dashboard nodes by id, over the shared ``cluster`` factory."""

    def __init__(self, cluster: Any) -> None:
        self.cluster = cluster
        self.nodes: dict[str, Any] = {}

    def __getitem__(self, node_id: str) -> Any:
        return self.nodes[node_id]

    def start(self, node_id: str, **kw: Any) -> Any:
        node = self.cluster.start(node_id, temperature=TEMPERATURES.get(node_id, "sim:45"), **kw)
        self.nodes[node_id] = node
        return node

    def port(self, node_id: str) -> int:
        """The WebSocket/HTTP port a node listens on (from its ws://HOST:PORT/ws url)."""
        return int(self.nodes[node_id].url.rsplit(":", 1)[1].split("/")[0])


@pytest.fixture
def dash_cluster(cluster: Any) -> DashCluster:
    """node-a, node-b, node-c on the real broker (started in parallel)."""
    dc = DashCluster(cluster)
    spawned = {nid: cluster.spawn(nid, temperature=t) for nid, t in TEMPERATURES.items()}
    for nid, node in spawned.items():
        dc.nodes[nid] = node.wait_ready()
    return dc


@pytest.fixture(scope="session")
def dash_browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_dashboard(dash_browser: Browser) -> Iterator[Callable[..., Page]]:
    contexts = []
    errors: list[str] = []

    def open_(node: Any, *, width: int = 1400, height: int = 1000) -> Page:
        ctx = dash_browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda e: errors.append(f"{node.id}: {e}"))
        page.goto(node.http)
        return page

    yield open_
    for ctx in contexts:
        ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


class WsClient:
    """A minimal protocol v1 client (sync), for side traffic in tests."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self._stack = contextlib.ExitStack()
        self.ws = self._stack.enter_context(ws_connect(url, open_timeout=10))
        self.ids = itertools.count(1)
        hello: dict[str, Any] = {"type": "hello", "client": "e2e-test"}
        if token:
            hello["token"] = token
        self.welcome = self.request(hello)

    def request(self, frame: dict[str, Any], timeout: float = 15.0) -> dict[str, Any]:
        rid = str(next(self.ids))
        self.ws.send(json.dumps({**frame, "id": rid}))
        deadline = time.monotonic() + timeout
        while True:
            msg = json.loads(self.ws.recv(timeout=max(0.01, deadline - time.monotonic())))
            if msg.get("id") == rid and msg.get("type") != "event":
                return msg

    def call(self, node: str | None, service: str, method: str, params: dict | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "call", "service": service, "method": method, "params": params or {},
                                 "timeout": 5}
        if node:
            frame["node"] = node
        return self.request(frame)

    def publish(self, topic: str, data: Any) -> dict[str, Any]:
        return self.request({"type": "publish", "topic": topic, "data": data})

    def close(self) -> None:
        self._stack.close()


@pytest.fixture
def dash_ws() -> Iterator[Callable[..., WsClient]]:
    clients: list[WsClient] = []

    def make(node: Any, token: str | None = None) -> WsClient:
        c = WsClient(node.url, token)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()
