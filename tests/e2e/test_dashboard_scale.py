"""The dashboard at 1,000 nodes (issue 20): one real ``cloudisense node`` among 1,000 simulated peers
(``bench/sim.py``: one MQTT connection speaking the federation contract, a heartbeat each every 5 s,
so 200 ``$cluster/node/state`` events a second reach the page), watched in Debian's Chromium.

Over one 60 s window the test asserts what a user of the page would see:

* every row in view that shows a newer heartbeat shows it within 2 s of the heartbeat's own
  timestamp (the page's ``debug.lag``: measured when the row is drawn, not when the event came in);
* the page's connection never drops, the node drops no event for it and never closes it as a slow
  consumer;
* a click on a row shows that node in the detail panel within 300 ms (measured in the page, from
  the click event's timestamp to the frame that shows it: no Playwright round trip in it);
* the search box narrows the table to the matching rows, and says how many match;
* the summary counts every member and the table sorts by a column.

Marked ``serial`` (it bounds wall times, like the other modules in ``tests/conftest.py``'s SERIAL).
"""

from __future__ import annotations

import asyncio
import importlib.util
import re
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Page, expect  # noqa: E402

from support import BROKER, http_get, wait_until  # noqa: E402
from test_dashboard import WsClient, dash_browser, open_dashboard  # noqa: E402,F401

REPO = Path(__file__).resolve().parents[2]
# bench/sim.py by its path: bench/ on sys.path would put its run.py, sim.py … before every other module
_spec = importlib.util.spec_from_file_location("bench_sim", REPO / "bench" / "sim.py")
assert _spec and _spec.loader
bench_sim = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_sim)
Sim = bench_sim.Sim

pytestmark = [pytest.mark.timeout(300), pytest.mark.serial]

N = 1_000
INTERVAL = 5.0        # s between two heartbeats of one peer: N / INTERVAL = 200 events/s
WINDOW = 60.0         # s of observation
MAX_LAG = 2.0         # s from a heartbeat to the row that shows it
MAX_CLICK_MS = 300.0  # from a click on a row to the frame that shows its detail


class SimCluster:
    """``bench/sim.py``'s peers on their own event loop in a thread this object owns: entered, they
    are announced and beating; on exit they stop, clear their retained topics and disconnect."""

    def __init__(self, prefix: str, n: int, catalog: dict[str, Any], real: str) -> None:
        host, port = BROKER.removeprefix("mqtt://").rsplit(":", 1)
        self.sim = Sim(host, int(port), prefix, n, catalog, interval=INTERVAL)
        self.real = real
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run, name="sim-cluster", daemon=True)
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._stop: asyncio.Event | None = None

    def _run(self) -> None:
        try:
            self.loop.run_until_complete(self._main())
        except BaseException as e:  # noqa: BLE001 - reported by __enter__/__exit__ in the test's thread
            self.error = e
        finally:
            self.ready.set()
            self.loop.close()

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        async with self.sim:
            await self.sim.announce()
            self.sim.start_heartbeats(probe=[self.real])
            self.ready.set()
            await self._stop.wait()

    def __enter__(self) -> "SimCluster":
        self.thread.start()
        if not self.ready.wait(60) or self.error:
            self.__exit__()
            raise AssertionError(f"the simulated peers did not start: {self.error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            try:
                self.loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:   # the loop already ended (the peers failed): nothing to stop
                pass
        self.thread.join(60)
        assert not self.thread.is_alive(), "the simulated peers did not stop within 60 s"


def heartbeat_catalog(services: dict[str, Any]) -> dict[str, Any]:
    """``node.describe``'s services in the heartbeat's catalog shape (as bench/scale_p9.py)."""
    return {name: {"description": s["description"],
                   "methods": {k: {"description": m["description"], "mutates": m["mutates"], "params": m["params"]}
                               for k, m in s["methods"].items()}}
            for name, s in services.items()}


def metric(node: Any, sample: str) -> float:
    status, text, _ = http_get(node.http, "/metrics")
    assert status == 200, text
    m = re.search(rf"^cloudisense_{re.escape(sample)} (\S+)$", text, re.M)
    assert m, f"no {sample} in /metrics"
    return float(m.group(1))


def page_debug(page: Page) -> dict[str, Any]:
    return page.evaluate("""() => { const d = window.cloudisense.debug;
        return {events: d.events, dropped: d.dropped, disconnects: d.disconnects, lag: {...d.lag},
                clicks: d.clicks.slice(), conn: window.cloudisense.state.conn}; }""")


def rows(page: Page):
    return page.get_by_test_id("node-table").get_by_test_id("node-row")


def click_row(page: Page, node_id: str) -> float:
    """Click ``node_id``'s row; the detail panel shows it. Returns the page's click-to-frame ms."""
    before = len(page_debug(page)["clicks"])
    rows(page).and_(page.locator(f'[data-node="{node_id}"]')).click()
    expect(page.get_by_test_id("detail-node")).to_have_text(node_id)
    expect(page.get_by_test_id("detail-status")).to_contain_text("online")
    clicks = wait_until(lambda: page_debug(page)["clicks"][before:] or None, 5, what="the click's timing")
    assert clicks[-1]["node"] == node_id
    return float(clicks[-1]["ms"])


def test_dashboard_at_1000_nodes(cluster, open_dashboard):
    real = cluster.start("real", processes=[], system={"metrics_interval": INTERVAL},
                         cluster={"max_members": 2 * N})
    side = WsClient(real.url)
    try:
        catalog = heartbeat_catalog(side.call(None, "node", "describe")["result"]["services"])
    finally:
        side.close()

    with SimCluster(cluster.prefix, N, catalog, real.id):
        wait_until(lambda: metric(real, 'cluster_members{state="online"}') >= N + 1, 60, interval=0.5,
                   what=f"{N + 1} members online at the node")
        page = open_dashboard(real)
        expect(page.get_by_test_id("sum-online")).to_have_text(str(N + 1), timeout=30_000)
        expect(page.get_by_test_id("node-table")).to_be_visible()
        expect(page.get_by_test_id("nodes")).to_be_hidden()   # no cards at this size
        # Virtualised: the rows in view (+ a few), not a thousand.
        expect(rows(page).first).to_be_visible()
        assert 10 <= rows(page).count() <= 40
        # The first heartbeats drawn in place: the window starts from here, with fresh counters.
        wait_until(lambda: page_debug(page)["lag"]["n"] > 0, 15, what="a row updated by a heartbeat")
        page.evaluate("() => Object.assign(window.cloudisense.debug.lag, {n: 0, max: 0, sum: 0})")
        d0 = page_debug(page)
        dropped0 = metric(real, "events_dropped_total")
        t0 = time.monotonic()

        clicks = [click_row(page, "sim-00003")]

        # Search narrows the table (rows in view and the count), and clearing it brings every row back.
        search = page.get_by_test_id("node-search")
        search.fill("SIM-0099")
        expect(page.get_by_test_id("node-matches")).to_have_text(f"10 of {N + 1} match")
        expect(rows(page)).to_have_count(10)
        ids = rows(page).get_by_test_id("node-id").all_text_contents()
        assert ids == [f"sim-{i:05d}" for i in range(990, 1000)], ids
        clicks.append(click_row(page, "sim-00995"))
        search.fill("")
        expect(page.get_by_test_id("node-matches")).to_have_text("")
        expect(rows(page).first.get_by_test_id("node-id")).to_have_text("real")

        # Sorted by temperature, hottest first: the first row is the summary's hottest node (one read of
        # the page, so both come from the same render).
        page.locator('#node-table [data-sort="temp"]').click()
        expect(page.locator('#node-table [data-sort="temp"]')).to_have_attribute("aria-sort", "descending")
        first, hottest = page.evaluate("""() => {
            const top = [...document.querySelectorAll('#nt-viewport [data-testid=node-row]')]
                .find((r) => r.style.transform === 'translateY(0px)');
            return [top && top.dataset.node, document.querySelector('[data-testid=sum-hottest]').dataset.node];
        }""")
        assert first == hottest, (first, hottest)
        page.locator('#node-table [data-sort="id"]').click()
        expect(rows(page).first.get_by_test_id("node-id")).to_have_text("real")

        # The rest of the window: the page stays connected while the heartbeats flow.
        while (left := t0 + WINDOW - time.monotonic()) > 0:
            page.wait_for_timeout(min(1000.0, left * 1000))   # observing for a fixed time, not waiting on it
            d = page_debug(page)
            assert d["conn"] == "connected" and d["disconnects"] == d0["disconnects"], d
        clicks.append(click_row(page, "sim-00010"))
        d1 = page_debug(page)
        elapsed = time.monotonic() - t0

    rate = (d1["events"] - d0["events"]) / elapsed
    lag = d1["lag"]
    report = (f"{N} simulated nodes, {elapsed:.0f} s: {rate:.0f} events/s handled, {lag['n']} row updates drawn, "
              f"lag max {lag['max']:.3f} s mean {lag['sum'] / max(1, lag['n']):.3f} s, "
              f"click to detail {', '.join(f'{c:.0f}' for c in clicks)} ms")
    print(report)
    assert d1["disconnects"] == d0["disconnects"] and d1["conn"] == "connected", report
    assert d1["dropped"] == d0["dropped"] and metric(real, "events_dropped_total") == dropped0, report
    assert "slow consumer" not in real.log(), report
    assert lag["n"] >= 100, f"too few row updates to judge: {report}"
    assert lag["max"] <= MAX_LAG, report
    assert max(clicks) <= MAX_CLICK_MS, report
    assert rate >= 0.5 * N / INTERVAL, f"the heartbeats did not flow at scale: {report}"
