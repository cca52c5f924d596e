"""Browsers at the WebSocket/HTTP edge (issue 16, finding 1): cross-site WebSocket hijacking,
DNS rebinding, framing and the security headers, against real node processes.

* A page served from ANOTHER origin (a second local HTTP server) opens
  ``new WebSocket("ws://127.0.0.1:PORT/ws")`` in Debian's Chromium: the handshake
  is refused (403) and the page never gets a ``welcome``; the node's own
  dashboard, in the same browser, connects and works, under its CSP, with no
  policy violation.
* DNS rebinding: a handshake whose ``Host`` is ``evil.example:PORT`` (with the
  matching ``Origin``, as a rebound page would send) gets 403; so does the page
  itself (Chromium resolves ``evil.example`` to 127.0.0.1 through
  ``--host-resolver-rules``: a rebinding without the DNS server).
* Script clients (no ``Origin``) still connect; ``[ws] allowed_origins`` admits a
  named origin.
* Every HTTP response carries CSP (``frame-ancestors 'none'``), ``nosniff``,
  ``X-Frame-Options: DENY`` and a ``Referrer-Policy``: the dashboard can't be framed.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest


from playwright.sync_api import Browser, expect  # noqa: E402
from support import chromium  # noqa: E402
from websockets.sync.client import connect as ws_connect  # noqa: E402

pytestmark = pytest.mark.timeout(120)

SECURITY_HEADERS = ("content-security-policy", "x-content-type-options", "x-frame-options", "referrer-policy")

# The attacker's page: opens the node's socket, says hello, tries a call, and reports what happened.
EVIL_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>evil</title></head><body>
<iframe id="frame" src="http://127.0.0.1:{port}/" width="400" height="200"></iframe>
<script>
window.result = null;
const ws = new WebSocket("ws://127.0.0.1:{port}/ws");
ws.onopen = () => ws.send(JSON.stringify({{type: "hello", id: 1, client: "evil"}}));
ws.onmessage = (m) => {{
  const f = JSON.parse(m.data);
  if (f.type === "welcome") {{
    ws.send(JSON.stringify({{type: "call", id: 2, service: "node", method: "ping"}}));
  }} else if (f.id === 2) {{ window.result = "answered:" + f.type; }}
}};
ws.onerror = () => {{ window.result = window.result || "error"; }};
ws.onclose = (e) => {{ window.result = window.result || ("closed:" + e.code); }};
</script></body></html>"""


# --- fixtures ----------------------------------------------------------------------------

class EvilSite:
    """A second origin on this machine: serves EVIL_PAGE aimed at a node's port."""

    def __init__(self) -> None:
        self.target = 0
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                body = EVIL_PAGE.format(port=site.target).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.origin = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, name="evil-site", daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture
def evil() -> Iterator[EvilSite]:
    site = EvilSite()
    yield site
    site.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium("--host-resolver-rules=MAP evil.example 127.0.0.1") as b:
        yield b


@pytest.fixture
def page_of(browser: Browser):
    contexts = []

    def open_(url: str):
        ctx = browser.new_context()
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15_000)
        # every CSP violation in the page is recorded where the test can read it
        page.add_init_script("window.__csp = []; document.addEventListener('securitypolicyviolation',"
                             " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")
        page.goto(url)
        return page

    yield open_
    for ctx in contexts:
        ctx.close()


def port_of(node: Any) -> int:
    return int(node.url.rsplit(":", 1)[1].split("/")[0])


def raw_http(port: int, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """One HTTP/1.1 request with exactly these headers (a browser can't forge Host; an attacker's
    rebound page makes the browser send its own name)."""
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "Connection: close", "", ""]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall("\r\n".join(lines).encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    hdrs = {}
    for h in header_lines:
        k, _, v = h.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return int(status_line.split()[1]), hdrs, body


def upgrade_headers(host: str, origin: str | None = None) -> dict[str, str]:
    h = {"Host": host, "Upgrade": "websocket", "Connection": "Upgrade",
         "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(), "Sec-WebSocket-Version": "13"}
    if origin is not None:
        h["Origin"] = origin
    return h


# --- tests -------------------------------------------------------------------------------

def test_page_on_another_origin_cannot_use_the_socket(cluster, evil, page_of):
    node = cluster.start("orig", processes=[])
    port = port_of(node)
    evil.target = port

    attack = page_of(evil.origin + "/")
    attack.wait_for_function("window.result !== null")
    result = attack.evaluate("window.result")
    assert not result.startswith("answered"), f"a page on {evil.origin} drove the node: {result}"
    assert result in ("error", "closed:1006"), result
    # the framed dashboard did not render inside the attacker's page
    framed = attack.frame_locator("#frame").locator("[data-testid=conn-status]")
    expect(framed).to_have_count(0)
    assert "403" in node.log() or "refused" in node.log(), node.log()[-2000:]

    # the node's own dashboard, in the same browser, connects and works under its CSP
    for host in ("127.0.0.1", "localhost"):
        page = page_of(f"http://{host}:{port}/")
        expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
        expect(page.get_by_test_id("self-node")).to_have_text("orig")
        expect(page.get_by_test_id("role")).to_have_text("operator (no tokens configured)")
        expect(page.locator('[data-testid="node-card"][data-node="orig"]')).to_have_attribute("data-online", "true")
        assert page.evaluate("window.__csp") == [], page.evaluate("window.__csp")


def test_configured_origin_is_admitted(cluster, evil, page_of):
    cfg = cluster.config("orig2", processes=[], ws={"listen": "127.0.0.1:0", "allowed_origins": [evil.origin]})
    node = cluster.spawn("orig2", cfg=cfg).wait_ready()
    evil.target = port_of(node)
    attack = page_of(evil.origin + "/")
    attack.wait_for_function("window.result !== null")
    assert attack.evaluate("window.result") == "answered:result"


def test_dns_rebinding_is_refused(cluster, page_of):
    node = cluster.start("rebind", processes=[])
    port = port_of(node)
    # the rebound page's own handshake: Host and Origin agree, both name the attacker's domain
    status, hdrs, _ = raw_http(port, "/ws", upgrade_headers(f"evil.example:{port}", f"http://evil.example:{port}"))
    assert status == 403
    assert hdrs["x-content-type-options"] == "nosniff"
    status, _, _ = raw_http(port, "/ws", upgrade_headers(f"evil.example:{port}"))
    assert status == 403
    status, _, _ = raw_http(port, "/", {"Host": f"evil.example:{port}"})
    assert status == 403
    # the right port matters: a loopback name on another port is not this node
    status, _, _ = raw_http(port, "/ws", upgrade_headers(f"127.0.0.1:{port + 1}"))
    assert status == 403
    # what the node's own names get
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
        status, _, _ = raw_http(port, "/ws", upgrade_headers(host))
        assert status == 101, host
    status, _, _ = raw_http(port, "/ws", upgrade_headers(f"127.0.0.1:{port}", f"http://localhost:{port}"))
    assert status == 101
    status, _, _ = raw_http(port, "/ws", upgrade_headers(f"127.0.0.1:{port}", "http://evil.example"))
    assert status == 403
    status, _, _ = raw_http(port, "/ws", upgrade_headers(f"127.0.0.1:{port}", "null"))
    assert status == 403

    # in a browser: evil.example resolves to 127.0.0.1, as after a rebinding
    page = page_of(f"http://evil.example:{port}/")
    assert "forbidden" in (page.content() or "").lower()
    expect(page.get_by_test_id("conn-status")).to_have_count(0)


def test_script_client_without_origin_still_works(cluster):
    node = cluster.start("script", processes=[])
    with ws_connect(node.url, open_timeout=10) as ws:       # websockets sends no Origin
        ws.send(json.dumps({"type": "hello", "id": 1, "client": "script"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "welcome"
        ws.send(json.dumps({"type": "call", "id": 2, "service": "node", "method": "ping"}))
        assert json.loads(ws.recv(timeout=10))["type"] == "result"


def test_security_headers_on_every_response(cluster):
    node = cluster.start("hdrs", processes=[])
    port = port_of(node)
    host = {"Host": f"127.0.0.1:{port}"}
    seen = {}
    for path in ("/", "/static/index.html", "/static/app.js", "/static/style.css", "/healthz", "/nope",
                 "/static/../x", "/ws"):                       # /ws without an upgrade: websockets' own 426
        status, hdrs, _ = raw_http(port, path, host)
        seen[path] = status
        for h in SECURITY_HEADERS:
            assert h in hdrs, (path, status, h, hdrs)
        csp = hdrs["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp, csp
        assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp, csp
        assert hdrs["x-content-type-options"] == "nosniff"
        assert hdrs["x-frame-options"] == "DENY"
        assert hdrs["referrer-policy"] == "no-referrer"
    assert seen["/"] == 200 and seen["/static/app.js"] == 200 and seen["/nope"] == 404 and seen["/ws"] == 426
    status, hdrs, _ = raw_http(port, "/ws", upgrade_headers(f"127.0.0.1:{port}", "http://evil.example"))
    assert status == 403 and "frame-ancestors 'none'" in hdrs["content-security-policy"]
