"""The browser dashboard, end to end: real node processes on the real broker,
Debian's Chromium driven by Playwright.

Every wait is a condition with a deadline (Playwright's ``expect``); nothing
sleeps.  ``CLOUDISENSE_UPDATE_SCREENSHOT=1`` makes ``test_screenshot`` write
``docs/dashboard.png``.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

pytestmark = pytest.mark.timeout(120)

expect.set_options(timeout=15_000)

REPO = Path(__file__).resolve().parents[2]
NODES = ("node-a", "node-b", "node-c")


def card(page: Page, node_id: str):
    return page.locator(f'[data-testid="node-card"][data-node="{node_id}"]')


def wait_cluster(page: Page, *ids: str) -> None:
    """Wait for the page to be connected and to show ``ids`` online."""
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    for nid in ids:
        expect(card(page, nid)).to_have_attribute("data-online", "true")


def int_text(page: Page, testid: str) -> int:
    text = page.get_by_test_id(testid).text_content() or ""
    return int(text) if text.isdigit() else -1


# --- cluster overview ---------------------------------------------------------------------

def test_overview_shows_every_node(dash_cluster, open_dashboard):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, *NODES)
    expect(page.get_by_test_id("node-card")).to_have_count(3)
    expect(page.get_by_test_id("self-node")).to_have_text("node-a")
    expect(page.get_by_test_id("role")).to_have_text("operator")
    expect(page.get_by_test_id("node-count")).to_have_text("3/3 online")

    for nid in NODES:
        c = card(page, nid)
        expect(c.get_by_test_id("node-status")).to_have_text(re.compile(r"^online · \d+"))
        # Temperatures are simulated in this cluster, and the page says so.
        expect(c.get_by_test_id("node-temp")).to_have_text(re.compile(r"^\d+\.\d °C$"))
        expect(c.get_by_test_id("node-temp-sim")).to_be_visible()
        expect(c.get_by_test_id("node-cpu")).to_have_text(re.compile(r"^\d+%$"))
        expect(c.get_by_test_id("node-mem")).to_have_text(re.compile(r"^\d+%$"))
        expect(c.get_by_test_id("node-summary")).to_have_text(re.compile(r"\d+ services · 1/1 process running"))
    # node-b runs at sim:52, node-c at sim:38 (±2 drift): the cards show each node's own value.
    b = float(card(page, "node-b").get_by_test_id("node-temp").text_content().split()[0])
    c = float(card(page, "node-c").get_by_test_id("node-temp").text_content().split()[0])
    assert b > c


def test_killed_node_turns_offline(dash_cluster, open_dashboard):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, *NODES)

    dash_cluster["node-c"].kill()   # SIGKILL: only the MQTT last will tells the cluster

    c = card(page, "node-c")
    expect(c).to_have_attribute("data-online", "false")
    expect(c).to_have_class(re.compile(r"\boffline\b"))
    expect(c.get_by_test_id("node-status")).to_have_text(re.compile(r"^offline · \d+s"))
    expect(page.get_by_test_id("node-count")).to_have_text("2/3 online")
    # The others stay online, and the greyed-out node is still listed.
    expect(card(page, "node-b")).to_have_attribute("data-online", "true")
    expect(page.get_by_test_id("node-card")).to_have_count(3)


# --- per-node detail ----------------------------------------------------------------------

def test_node_detail_and_calls_from_the_page(dash_cluster, open_dashboard):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, *NODES)

    card(page, "node-b").click()
    expect(card(page, "node-b")).to_have_class(re.compile(r"\bselected\b"))
    expect(page.get_by_test_id("detail-node")).to_have_text("node-b")
    detail = page.get_by_test_id("detail")
    expect(detail.get_by_test_id("detail-cpu")).to_have_text(re.compile(r"^\d+%$"))
    expect(detail.get_by_test_id("detail-temp")).to_have_text(re.compile(r"°C \(sim\)$"))

    row = detail.locator('[data-testid="process-row"][data-process="logger"]')
    expect(row.get_by_test_id("process-state")).to_have_text("running")
    expect(row.get_by_test_id("process-pid")).to_have_text(re.compile(r"^\d+$"))
    expect(row.get_by_test_id("process-restarts")).to_have_text("0")
    old_pid = row.get_by_test_id("process-pid").text_content()

    for svc in ("node", "system", "supervisor"):
        expect(detail.locator(f'[data-testid="service"][data-service="{svc}"]')).to_have_count(1)
    # The catalog's `mutates` drives the buttons: restart mutates, metrics does not.
    restart = detail.locator('[data-testid="method"][data-method="supervisor.restart"]')
    expect(restart.get_by_test_id("method-call")).to_have_attribute("data-mutates", "true")
    metrics = detail.locator('[data-testid="method"][data-method="system.metrics"]')
    expect(metrics.get_by_test_id("method-call")).to_have_attribute("data-mutates", "false")

    # A read-only call on a remote node, relayed by node-a.
    metrics.get_by_test_id("method-call").click()
    result = detail.get_by_test_id("call-result")
    expect(result).to_have_attribute("data-ok", "true")
    expect(result).to_contain_text("node-b system.metrics")
    expect(result).to_contain_text('"cpu_percent"')

    # An operator may restart the remote logger; the new pid shows up live.
    button = row.get_by_test_id("process-restart")
    expect(button).to_be_enabled()
    button.click()
    expect(result).to_contain_text("node-b supervisor.restart")
    expect(result).to_have_attribute("data-ok", "true")
    expect(row.get_by_test_id("process-state")).to_have_text("running")
    expect(row.get_by_test_id("process-pid")).not_to_have_text(old_pid)


# --- RPC activity and pub/sub stats ---------------------------------------------------------

def test_rpc_counters_move(dash_cluster, open_dashboard, dash_ws):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, *NODES)
    expect(page.get_by_test_id("rpc-calls")).to_have_text(re.compile(r"^\d+$"))
    before = int_text(page, "rpc-calls")

    side = dash_ws(dash_cluster["node-a"])
    for _ in range(5):
        assert side.call("node-b", "system", "metrics")["type"] == "result"
    err = side.call("ghost", "system", "metrics")
    assert err["type"] == "error" and err["error"]["code"] == "unknown_node"

    page.wait_for_function(
        "n => Number(document.getElementById('rpc-calls').textContent) >= n", arg=before + 6)
    expect(page.get_by_test_id("rpc-rate")).not_to_have_text(re.compile(r"^(0\.0|—)$"))
    expect(page.get_by_test_id("rpc-p50")).to_have_text(re.compile(r"ms$"))
    expect(page.get_by_test_id("rpc-p99")).to_have_text(re.compile(r"ms$"))
    expect(page.get_by_test_id("rpc-errors").locator('[data-code="unknown_node"]')).to_contain_text("unknown_node 1")

    recent = page.get_by_test_id("rpc-recent")
    relayed = recent.get_by_test_id("rpc-call").filter(has_text="node-a → node-b").filter(has_text="system.metrics")
    expect(relayed.first).to_contain_text("ok")
    expect(recent.get_by_test_id("rpc-call").filter(has_text="ghost").first).to_contain_text("unknown_node")

    # Pub/sub stats are filled in, and the chart has samples to draw.
    expect(page.get_by_test_id("ps-events")).to_have_text(re.compile(r"^\d+$"))
    expect(page.get_by_test_id("ps-local")).to_have_text(re.compile(r"^[1-9]\d*$"))
    expect(page.get_by_test_id("ps-clients")).to_have_text(re.compile(r"^[2-9]$"))   # the page + the side client
    expect(page.get_by_test_id("fed-connected")).to_have_text("connected")
    page.wait_for_function("window.cloudisense.state.series.length >= 3")


# --- event inspector ----------------------------------------------------------------------

def test_inspector_subscribe_see_events_unsubscribe(dash_cluster, open_dashboard, dash_ws):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, *NODES)
    events = page.get_by_test_id("insp-events").get_by_test_id("insp-event")

    # Metrics of a remote node, relayed through node-a.
    page.get_by_test_id("insp-node").select_option("node-b")
    page.get_by_test_id("insp-topic").fill("metrics/#")
    page.get_by_test_id("insp-subscribe").click()
    sub = page.locator('[data-testid="insp-sub"][data-node="node-b"][data-topic="metrics/#"]')
    expect(sub).to_have_class(re.compile(r"\bactive\b"))
    expect(page.locator('[data-testid="insp-event"][data-node="node-b"][data-topic="metrics/system"]').first) \
        .to_contain_text('"cpu_percent"')

    # An event published on node-c by another client shows up with its data.
    page.get_by_test_id("insp-node").select_option("node-c")
    page.get_by_test_id("insp-topic").fill("alerts/#")
    page.get_by_test_id("insp-subscribe").click()
    expect(page.locator('[data-testid="insp-sub"][data-node="node-c"][data-topic="alerts/#"]')) \
        .to_have_class(re.compile(r"\bactive\b"))
    publisher = dash_ws(dash_cluster["node-c"])
    assert publisher.publish("alerts/disk", {"disk_percent": 97, "mark": "e2e"})["type"] == "published"
    alert = page.locator('[data-testid="insp-event"][data-node="node-c"][data-topic="alerts/disk"]')
    expect(alert).to_have_count(1)
    expect(alert).to_contain_text('"mark":"e2e"')
    expect(page.get_by_test_id("insp-count")).not_to_have_text("0")

    # Unsubscribe: the chip goes, and so does the subscription on the wire.
    sub.get_by_test_id("insp-unsub").click()
    expect(sub).to_have_count(0)
    page.wait_for_function(
        "!window.cloudisense.subscriptions().some(s => s.node === 'node-b' && s.topic === 'metrics/#')")
    # A bad filter is refused with the node's error, not silently.
    page.get_by_test_id("insp-node").select_option("node-b")
    page.get_by_test_id("insp-topic").fill("metrics/#/x")
    page.get_by_test_id("insp-subscribe").click()
    expect(page.get_by_test_id("insp-error")).to_contain_text("bad_request")


def test_page_reconnects_and_resubscribes(dash_cluster, open_dashboard, dash_ws):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, *NODES)
    page.get_by_test_id("insp-node").select_option("node-b")
    page.get_by_test_id("insp-topic").fill("alerts/#")
    page.get_by_test_id("insp-subscribe").click()
    expect(page.locator('[data-testid="insp-sub"][data-node="node-b"]')).to_have_class(re.compile(r"\bactive\b"))

    port = dash_cluster.port("node-a")
    dash_cluster["node-a"].stop()
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "disconnected")
    dash_cluster.start("node-a", listen=f"127.0.0.1:{port}")
    wait_cluster(page, *NODES)

    # The page's own streams and the inspector's subscription came back with it.
    n = page.evaluate("window.cloudisense.state.series.length")
    page.wait_for_function("n => window.cloudisense.state.series.length > n", arg=n)
    page.wait_for_function("""() => window.cloudisense.subscriptions()
        .some(s => s.node === 'node-b' && s.topic === 'alerts/#' && s.active)""")
    publisher = dash_ws(dash_cluster["node-b"])
    publisher.publish("alerts/x", {"after": "reconnect"})
    alert = page.locator('[data-testid="insp-event"][data-node="node-b"][data-topic="alerts/x"]')
    expect(alert).to_contain_text('"after":"reconnect"')


# --- auth -----------------------------------------------------------------------------------

def test_token_prompt_and_viewer_role(cluster, open_dashboard):
    tokens = [{"sha256": hashlib.sha256(t.encode()).hexdigest(), "role": role}
              for t, role in (("op-secret", "operator"), ("view-secret", "viewer"))]
    node = cluster.start("node-auth", auth={"tokens": tokens})
    page = open_dashboard(node)

    dialog = page.get_by_test_id("token-dialog")
    expect(dialog).to_be_visible()
    page.get_by_test_id("token-input").fill("wrong")
    page.get_by_test_id("token-submit").click()
    expect(page.get_by_test_id("token-error")).to_contain_text("not accepted")

    page.get_by_test_id("token-input").fill("view-secret")
    page.get_by_test_id("token-submit").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("role")).to_have_text("viewer")
    expect(card(page, "node-auth")).to_have_attribute("data-online", "true")

    # Viewers see everything, but every mutating action is disabled.
    card(page, "node-auth").click()
    detail = page.get_by_test_id("detail")
    expect(detail.get_by_test_id("process-restart")).to_be_disabled()
    expect(detail.get_by_test_id("process-stop")).to_be_disabled()
    expect(detail.locator('[data-testid="method"][data-method="supervisor.restart"]')
           .get_by_test_id("method-call")).to_be_disabled()
    mutating = detail.locator('[data-testid="method-call"][data-mutates="true"]')
    assert mutating.count() > 0
    for i in range(mutating.count()):
        expect(mutating.nth(i)).to_be_disabled()
    read_only = detail.locator('[data-method="system.metrics"]').get_by_test_id("method-call")
    expect(read_only).to_be_enabled()
    read_only.click()
    expect(detail.get_by_test_id("call-result")).to_have_attribute("data-ok", "true")

    # The token lives in sessionStorage: a reload does not ask again.
    page.reload()
    expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "connected")
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("role")).to_have_text("viewer")


# --- 50 nodes ------------------------------------------------------------------------------

def test_fifty_nodes_render_coalesced(dash_cluster, open_dashboard):
    """Feed 50 nodes' state at ~5,000 events/s for 2 s: the page renders ≤ ~4 times a second
    and ends up showing the latest value of every node."""
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, *NODES)
    stats = page.evaluate("""() => new Promise((resolve) => {
        const cs = window.cloudisense;
        const r0 = cs.debug.renders, t0 = performance.now();
        let round = 0, busy = 0;
        const timer = setInterval(() => {
            const s = performance.now();
            round++;
            for (let i = 0; i < 50; i++) {
                const id = 'sim-' + String(i).padStart(2, '0');
                cs.inject({type: 'event', node: id, topic: '$cluster/node/state', ts: Date.now() / 1000,
                    data: {id, online: true, since: Date.now() / 1000 - 60, last_seen: Date.now() / 1000,
                           metrics: {cpu_percent: round % 100, memory_percent: 40, temperature_c: 40 + i / 10,
                                     simulated: true},
                           services: {}, processes: []}});
            }
            busy += performance.now() - s;
            if (performance.now() - t0 > 2000) {
                clearInterval(timer);
                resolve({rounds: round, renders: cs.debug.renders - r0, ms: performance.now() - t0, busy,
                         last: round % 100});
            }
        }, 10);
    })""")
    assert stats["rounds"] >= 20, stats
    # At most one render per 250 ms (+1 for the frame in flight when the burst started).
    assert stats["renders"] <= stats["ms"] / 250 + 2, stats
    expect(page.get_by_test_id("node-card")).to_have_count(53)
    expect(card(page, "sim-49").get_by_test_id("node-cpu")).to_have_text(f"{stats['last']}%")
    expect(page.get_by_test_id("node-count")).to_have_text("53/53 online")


# --- screenshot ----------------------------------------------------------------------------

def test_screenshot(dash_cluster, open_dashboard, dash_ws, tmp_path):
    """The dashboard on a live 3-node cluster with some traffic; written to docs/dashboard.png
    when CLOUDISENSE_UPDATE_SCREENSHOT=1 (look at it before committing)."""
    page = open_dashboard(dash_cluster["node-a"], width=1440, height=1100)
    wait_cluster(page, *NODES)
    side = dash_ws(dash_cluster["node-a"])
    card(page, "node-b").click()
    page.get_by_test_id("insp-node").select_option("node-c")
    page.get_by_test_id("insp-topic").fill("metrics/#")
    page.get_by_test_id("insp-subscribe").click()
    # Some traffic, spread over ~15 $sys/stats samples so the chart has a shape:
    # relayed calls, local ones, and a few failing ones.
    for i in range(15):
        n = page.evaluate("window.cloudisense.state.series.length")
        for j in range(i % 5 + 1):
            side.call(NODES[(i + j) % 3], "system", "metrics")
        if i % 6 == 5:
            side.call("node-c", "supervisor", "status", {"name": "nope"})
        page.wait_for_function("n => window.cloudisense.state.series.length > n", arg=n)
    page.get_by_test_id("detail").locator('[data-method="system.metrics"]').get_by_test_id("method-call").click()
    expect(page.get_by_test_id("call-result")).to_have_attribute("data-ok", "true")
    expect(page.get_by_test_id("insp-events").get_by_test_id("insp-event")).not_to_have_count(0)
    expect(page.get_by_test_id("rpc-recent").get_by_test_id("rpc-call")).not_to_have_count(0)
    page.evaluate("window.scrollTo(0, 0)")
    out = tmp_path / "dashboard.png"
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 10_000
    if os.environ.get("CLOUDISENSE_UPDATE_SCREENSHOT") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        page.screenshot(path=str(REPO / "docs" / "dashboard.png"), full_page=True)
