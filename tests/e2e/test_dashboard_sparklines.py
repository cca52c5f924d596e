"""Dashboard: per-node sparklines (CPU, temperature, calls/s) from live events, drawn with the vendored
uPlot, and the Metrics link (issue 17).  Real nodes, Debian's Chromium (fixtures from test_dashboard)."""

from __future__ import annotations

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

from test_dashboard import (card, dash_browser, dash_cluster, dash_ws, open_dashboard,  # noqa: E402,F401
                            wait_cluster, wait_js)

pytestmark = pytest.mark.timeout(120)


def spark(page, node_id: str, key: str):
    return card(page, node_id).locator(f'[data-testid="spark-{key}"]')


def points(page, node_id: str, key: str) -> int:
    return int(spark(page, node_id, key).get_attribute("data-points") or 0)


def test_sparklines_grow_from_live_events_for_every_node(dash_cluster, open_dashboard, dash_ws):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, "node-a", "node-b", "node-c")
    for nid in ("node-a", "node-b", "node-c"):
        for key in ("cpu", "temp"):
            expect(spark(page, nid, key)).to_have_count(1)
            wait_js(page, "([n, k]) => Number(document.querySelector(`[data-node='${n}'] [data-testid=spark-${k}]`)"
                          "?.dataset.points) >= 3", [nid, key])
            # uPlot drew it: a canvas inside the row
            expect(spark(page, nid, key).locator("canvas")).to_have_count(1)
    # the simulated temperatures show as the sparkline's last value (45/52/38 °C ± the simulation's swing)
    temp_b = float(spark(page, "node-b", "temp").locator(".spark-val").text_content())
    assert 40 < temp_b < 65
    n0 = points(page, "node-a", "cpu")
    wait_js(page, "([n, k, p]) => Number(document.querySelector(`[data-node='${n}'] [data-testid=spark-${k}]`)"
                  "?.dataset.points) > p", ["node-a", "cpu", n0])

    # calls/s: this node from its $sys/stats, a remote node from its own $sys/stats
    for nid in ("node-a", "node-b"):
        c = dash_ws(dash_cluster[nid])
        val = spark(page, nid, "calls").locator(".spark-val")
        deadline_calls = 0
        while True:
            for _ in range(20):
                assert c.call(None, "system", "metrics")["type"] == "result"
            deadline_calls += 1
            text = val.text_content() or ""
            if text not in ("", "—") and float(text) > 0:
                break
            assert deadline_calls < 60, f"calls/s of {nid} never went above 0 (last {text!r})"
            page.wait_for_timeout(200)


def test_metrics_link_shows_this_nodes_metrics(dash_cluster, open_dashboard):
    page = open_dashboard(dash_cluster["node-a"])
    wait_cluster(page, "node-a")
    link = page.get_by_test_id("metrics-link")
    expect(link).to_have_attribute("href", "/metrics")
    expect(link).to_be_visible()
    text = page.evaluate("fetch('/metrics').then((r) => r.text())")
    assert "cloudisense_calls_total" in text and "cloudisense_ws_clients 1" in text
