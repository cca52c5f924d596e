"""The browser library clients/js/cloudisense.mjs, as every node serves it at /lib/cloudisense.mjs, in
Debian's Chromium (Playwright) against real node processes on the real broker.

Each page is a node's own origin (its /healthz) that imports the library; the tests drive it with
``page.evaluate`` and wait on conditions with deadlines (``wait_js``), never sleeps.  Side traffic
(publishing on node-b, calling from node-b) comes from a second page using the same library.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from support import child_env, chromium, wait_js

pytestmark = pytest.mark.timeout(90)
expect.set_options(timeout=15_000)

REPO = Path(__file__).resolve().parents[2]
LIB = REPO / "clients" / "js" / "cloudisense.mjs"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as b:
        yield b


@pytest.fixture
def pair(cluster: Any) -> dict[str, Any]:
    """node-a and node-b (no supervised processes), started in parallel."""
    spawned = {nid: cluster.spawn(nid, processes=[]) for nid in ("node-a", "node-b")}
    return {nid: node.wait_ready() for nid, node in spawned.items()}


@pytest.fixture
def lib_page(browser: Browser) -> Iterator[Callable[..., Page]]:
    """``lib_page(node)``: a page on the node's origin with the library as ``window.cs`` and a client
    ``window.c`` connected to that node (``c.log`` records its connection events)."""
    contexts, errors = [], []

    def open_(node: Any) -> Page:
        ctx = browser.new_context()
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(node.http + "healthz")
        page.evaluate("""async (url) => {
            window.cs = await import("/lib/cloudisense.mjs");
            const c = window.c = cs.connect(url, { name: "js-test", backoffMax: 1 });
            c.log = [];
            for (const name of ["connect", "disconnect"]) c.on(name, () => c.log.push(name));
        }""", node.url)
        wait_js(page, "() => c.connected && c.log.includes('connect')")
        return page

    yield open_
    for ctx in contexts:
        ctx.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def knows(page: Page, node_id: str) -> None:
    """Wait until the page's node lists ``node_id`` online (a heartbeat after both started)."""
    wait_js(page, """async (id) => {
        const r = await c.call(null, "node", "cluster");
        return r.nodes.some((n) => n.id === id && n.online !== false);
    }""", node_id)


def test_the_served_file_then_call_local_remote_broadcast_and_errors(pair, lib_page):
    # the node serves the package's own file, importable from other origins, the other headers kept
    with urllib.request.urlopen(pair["node-a"].http + "lib/cloudisense.mjs", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/javascript")
        assert r.headers.get_all("Cross-Origin-Resource-Policy") == ["cross-origin"]
        assert "frame-ancestors 'none'" in r.headers["Content-Security-Policy"]
        assert r.read() == LIB.read_bytes()
    page = lib_page(pair["node-a"])
    knows(page, "node-b")
    out = page.evaluate("""async () => {
        const local = await c.call(null, "node", "ping");
        const remote = await c.call("node-b", "system", "info", {}, { timeout: 5 });
        const all = await c.broadcast("node", "ping");
        let err = null;
        try { await c.call("node-b", "nope", "x"); } catch (e) { err = { cls: e.constructor.name, code: e.code, node: e.node }; }
        return { self: c.node, local, remote, nodes: Object.keys(all.results).sort(), err };
    }""")
    assert out["self"] == "node-a"
    assert out["local"]["node"] == "node-a"
    assert out["remote"]["node"] == "node-b" and out["remote"]["pid"] == pair["node-b"].pid
    assert out["nodes"] == ["node-a", "node-b"]
    assert out["err"] == {"cls": "RpcError", "code": "unknown_service", "node": "node-b"}


def test_subscribe_to_a_remote_node_and_unsubscribe(pair, lib_page):
    page = lib_page(pair["node-a"])
    knows(page, "node-b")
    side = lib_page(pair["node-b"])
    page.evaluate("""async () => {
        window.got = [];
        window.off = await c.subscribe("node-b", "js/#", (ev) => got.push(ev));
    }""")
    side.evaluate("() => c.publish('js/x', {n: 1})")
    ev = wait_js(page, "() => got.find((e) => e.data && e.data.n === 1)")
    assert (ev["node"], ev["topic"]) == ("node-b", "js/x") and ev["ts"] > 0

    # Unsubscribed: a later event of node-b no longer arrives (the marker on another subscription,
    # published after it by the same client, shows that it would have by now).
    page.evaluate("""async () => {
        await off();
        window.marks = [];
        await c.subscribe("node-b", "mark/#", (ev) => marks.push(ev));
    }""")
    assert page.evaluate("() => c.subscriptions().map((s) => s.topic)") == ["mark/#"]
    side.evaluate("async () => { await c.publish('js/x', {n: 2}); await c.publish('mark/x', {}); }")
    wait_js(page, "() => marks.length > 0")
    assert page.evaluate("() => got.map((e) => e.data.n)") == [1]


def test_reconnects_after_the_node_restarts_and_resumes_subscriptions_and_methods(cluster, pair, lib_page):
    a = pair["node-a"]
    page = lib_page(a)
    knows(page, "node-b")
    page.evaluate("""async () => {
        window.got = [];
        await c.subscribe("node-b", "js/#", (ev) => got.push(ev));
        await c.subscribe(null, "local/#", (ev) => got.push(ev));
        await c.register("jsecho", "say", (params) => ({ said: params.text }), { mutates: false });
    }""")
    page.evaluate("() => c.on('error', (e) => c.log.push('error:' + e.code))")
    # node-a restarts while node-b is down too: back on node-a, the page's subscription to node-b is
    # refused at first (node-a has not heard from it) and tried again until node-b is back.
    port = int(a.url.rsplit(":", 1)[1].split("/")[0])
    pair["node-b"].stop()
    a.stop()
    wait_js(page, "() => c.log.includes('disconnect') && c.state !== 'connected'")
    # a call made while the node is away waits for it, within its timeout
    page.evaluate("() => { window.early = c.call(null, 'node', 'ping', {}, { timeout: 30 }); }")
    a2 = cluster.start("node-a", processes=[], listen=f"127.0.0.1:{port}")
    wait_js(page, "() => c.log.filter((e) => e === 'connect').length === 2", timeout=20)
    assert page.evaluate("() => early.then((r) => r.node)") == "node-a"
    assert page.evaluate("() => c.subscriptions().filter((s) => !s.active).map((s) => s.topic)") == ["js/#"]
    assert {"error:unknown_node", "error:node_offline"} & set(page.evaluate("() => c.log"))
    b2 = cluster.start("node-b", processes=[])
    wait_js(page, "() => c.subscriptions().every((s) => s.active)", timeout=20)

    # Both subscriptions came back: events of node-b and of node-a arrive.
    side_b = lib_page(b2)
    side_a = lib_page(a2)
    side_b.evaluate("() => c.publish('js/after', {from: 'b'})")
    side_a.evaluate("() => c.publish('local/after', {from: 'a'})")
    wait_js(page, "() => got.some((e) => e.node === 'node-b' && e.topic === 'js/after')", timeout=20)
    wait_js(page, "() => got.some((e) => e.node === 'node-a' && e.topic === 'local/after')")
    # ... and so did the method the page offers.
    assert page.evaluate("() => c.registrations()") == [{"service": "jsecho", "method": "say", "active": True}]
    assert side_a.evaluate("() => c.call(null, 'jsecho', 'say', {text: 'again'})") == {"said": "again"}


def test_a_method_registered_from_the_page_is_called_from_another_node_its_dashboard_and_the_cli(pair, lib_page):
    page = lib_page(pair["node-a"])
    knows(page, "node-b")
    page.evaluate("""async () => {
        window.calls = [];
        window.withdraw = await c.register("jsecho", "say", (params, { caller }) => {
            calls.push(caller);
            if (params.fail) throw new cs.RpcError("invalid_params", "asked to fail");
            return { said: params.text, by: "page" };
        }, { params: { type: "object", properties: { text: { type: "string" } } }, mutates: false,
             description: "says it back, from a browser" });
    }""")
    other = lib_page(pair["node-b"])
    # node-b hears of node-a's new catalog within a heartbeat; until then the method is unknown there
    out = wait_js(other, """async () => {
        try { return await c.call("node-a", "jsecho", "say", { text: "hi" }); }
        catch (e) { if (e.code === "unknown_service") return null; throw e; }
    }""", timeout=20)
    assert out == {"said": "hi", "by": "page"}
    err = other.evaluate("""async () => {
        try { await c.call("node-a", "jsecho", "say", { fail: true }); } catch (e) { return e.code; }
    }""")
    assert err == "invalid_params"
    described = other.evaluate("async () => (await c.call('node-a', 'node', 'describe')).services.jsecho")
    assert described["methods"]["say"]["mutates"] is False

    # node-b's dashboard lists it under node-a, marked as a client's, and calls it
    other.goto(pair["node-b"].http)
    other.locator('[data-testid="node-card"][data-node="node-a"]').click()
    method = other.locator('[data-testid="method"][data-method="jsecho.say"]')
    expect(method.get_by_test_id("offered-by-client")).to_have_text("client")
    method.get_by_test_id("method-call").click()
    expect(other.get_by_test_id("call-result")).to_have_attribute("data-ok", "true")
    expect(other.get_by_test_id("call-result")).to_contain_text('"by": "page"')

    cli = subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "call", "--url", pair["node-b"].url,
                          "node-a", "jsecho.say", json.dumps({"text": "from the cli"})],
                         capture_output=True, text=True, timeout=30, env=child_env())
    assert cli.returncode == 0, cli.stderr
    assert json.loads(cli.stdout) == {"said": "from the cli", "by": "page"}
    assert page.evaluate("() => calls.length") == 4

    # The page goes: its method goes with it.
    page.evaluate("() => c.close()")
    other = lib_page(pair["node-b"])
    code = wait_js(other, """async () => {
        try { await c.call("node-a", "jsecho", "say", { text: "gone?" }); return null; }
        catch (e) { return e.code === "unknown_service" ? e.code : null; }
    }""", timeout=20)
    assert code == "unknown_service"


# --- the page of docs/clients.md, "Browser" ----------------------------------------------------

def guide_page() -> str:
    """The HTML block of the Browser section of docs/clients.md, as a reader would copy it."""
    text = (REPO / "docs" / "clients.md").read_text()
    section = text[text.index("\n## Browser\n"):]
    return section.split("```html\n", 1)[1].split("```", 1)[0]


class Site:
    """A web server on another origin than the nodes', serving ``pages`` (path -> HTML)."""

    def __init__(self) -> None:
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = pages.get(self.path.split("?", 1)[0], "").encode()
                self.send_response(200 if body else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="guide-site", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def site() -> Iterator[Site]:
    s = Site()
    yield s
    s.close()


def test_the_guides_page_shows_a_remote_nodes_events_live(cluster, site, browser, lib_page):
    a = cluster.spawn("node-a", processes=[], ws={"allowed_origins": [site.origin]})
    b = cluster.spawn("node-b", processes=[])
    a.wait_ready()
    b.wait_ready()
    knows(lib_page(a), "node-b")
    # The guide's page as written; only the node's address is this test's.
    site.pages["/live.html"] = guide_page().replace("127.0.0.1:8765", a.url.split("//", 1)[1].split("/", 1)[0])

    ctx = browser.new_context()
    errors: list[str] = []
    try:
        page = ctx.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(site.origin + "/live.html")
        expect(page.locator("#watched")).to_have_text("node-b")
        expect(page.locator("#status")).to_have_text("(via node-a)")
        # node-b's metrics, every second, relayed through node-a
        expect(page.locator('#events tr[data-topic="metrics/system"]').first).to_contain_text("cpu_percent")
        # an event published on node-b, shown as text (event data is never HTML)
        lib_page(b).evaluate("() => c.publish('door/1', {note: '<img src=x onerror=alert(1)>'})")
        row = page.locator('#events tr[data-topic="door/1"]')
        expect(row).to_contain_text('"note":"<img src=x onerror=alert(1)>"')
        expect(page.locator("#events img")).to_have_count(0)
    finally:
        ctx.close()
    assert not errors, errors
