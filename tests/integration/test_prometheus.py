"""A real Prometheus scrapes a 3-node cluster (issue 17).

Debian's ``prometheus`` (installed by scripts/test) runs on a free port with a
1 s scrape interval and the alert rules of ``deploy/cloudisense-alerts.yml``
(their ``for:`` shortened to 0 s, so they fire within seconds), scraping
``/metrics`` with a viewer token.  The test asks Prometheus' HTTP API for
``up``, for the exact call counter and for ``rate()`` after traffic; then kills
the test's own broker and waits for the readiness series and the
federation-down alert to fire, and for both to clear when the broker is back.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml

from support import free_port, stop_process, wait_until
from test_faults_support import Mosquitto
from test_ops_http import AUTH, VIEWER, calls

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(shutil.which("prometheus") is None,
                                 reason="Debian's prometheus is not installed (scripts/test installs it)")]

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


class Prometheus:
    def __init__(self, tmp: Path, targets: list[str]) -> None:
        self.port = free_port()
        self.dir = tmp / "prometheus"
        self.dir.mkdir()
        (self.dir / "token").write_text(VIEWER)
        rules = yaml.safe_load((DEPLOY / "cloudisense-alerts.yml").read_text())
        for group in rules["groups"]:
            group["interval"] = "1s"
            for rule in group["rules"]:
                rule["for"] = "0s"
        (self.dir / "cloudisense-alerts.yml").write_text(yaml.safe_dump(rules))
        cfg = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
        cfg["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s", "scrape_timeout": "1s"}
        [job] = cfg["scrape_configs"]
        job["authorization"]["credentials_file"] = str(self.dir / "token")
        job["static_configs"] = [{"targets": targets}]
        (self.dir / "prometheus.yml").write_text(yaml.safe_dump(cfg))
        self.log = self.dir / "prometheus.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "wb") as f:
            self.proc = subprocess.Popen(
                ["prometheus", f"--config.file={self.dir / 'prometheus.yml'}",
                 f"--storage.tsdb.path={self.dir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}"],
                stdout=f, stderr=f, cwd=self.dir)

        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=2) as r:
                    return r.status == 200
            except OSError:
                return False
        wait_until(ready, 30, interval=0.2, what="prometheus to be ready")

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, 10)

    def query(self, expr: str) -> dict[str, float]:
        """Instant query: {instance: value}."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        with urllib.request.urlopen(url, timeout=5) as r:
            doc = json.load(r)
        assert doc["status"] == "success", doc
        return {s["metric"].get("instance", ""): float(s["value"][1]) for s in doc["data"]["result"]}

    def firing(self, alert: str) -> set[str]:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/v1/alerts", timeout=5) as r:
            doc = json.load(r)
        return {a["labels"].get("instance", "") for a in doc["data"]["alerts"]
                if a["labels"]["alertname"] == alert and a["state"] == "firing"}


def test_prometheus_scrapes_a_cluster_and_alerts_when_the_broker_dies(cluster, tmp_path):
    broker = Mosquitto(tmp_path)
    broker.start()
    prom = None
    try:
        nodes = [cluster.start(n, broker=broker.url, auth=AUTH) for n in ("px", "py", "pz")]
        hostports = [n.http.removeprefix("http://").rstrip("/") for n in nodes]
        prom = Prometheus(tmp_path, hostports)
        prom.start()
        x = hostports[0]
        wait_until(lambda: prom.query('up{job="cloudisense"}') == {h: 1.0 for h in hostports}, 30, interval=0.3,
                   what="all three nodes up in Prometheus")
        wait_until(lambda: prom.query("cloudisense_cluster_members{state='online'}") == {h: 3.0 for h in hostports},
                   30, interval=0.3, what="every node to see three online")

        # one call makes the series (rate() needs it to exist before the traffic), then the traffic
        sel = f'cloudisense_calls_total{{instance="{x}",kind="local",service="system",method="metrics",code="ok"}}'
        asyncio.run(calls(nodes[0].url, 1, {"service": "system", "method": "metrics"}))
        wait_until(lambda: prom.query(sel).get(x) == 1, 20, interval=0.3, what="Prometheus to see the first call")
        n = 25
        replies = asyncio.run(calls(nodes[0].url, n, {"service": "system", "method": "metrics"}))
        assert all(r["type"] == "result" for r in replies)
        wait_until(lambda: prom.query(sel).get(x) == 1 + n, 20, interval=0.3,
                   what=f"Prometheus to see exactly {1 + n} calls on x")
        rate = wait_until(lambda: prom.query(f"rate({sel}[30s])").get(x), 20, interval=0.3,
                          what="a non-zero rate() of calls")
        assert 0 < rate <= n
        # the other nodes made none of those
        assert all(v == 0 for h, v in prom.query(f"sum by (instance) (rate(cloudisense_calls_total"
                                                 f'{{kind="local",service="system",method="metrics"}}[30s]))').items()
                   if h != x)
        assert prom.firing("CloudisenseFederationDown") == set()

        broker.kill()
        wait_until(lambda: prom.query("cloudisense_ready") == {h: 0.0 for h in hostports}, 40, interval=0.3,
                   what="the readiness series to drop on every node")
        wait_until(lambda: prom.firing("CloudisenseFederationDown") == set(hostports), 30, interval=0.3,
                   what="the federation-down alert to fire for every node")
        assert prom.firing("CloudisenseNotReady") == set(hostports)
        assert prom.query('up{job="cloudisense"}') == {h: 1.0 for h in hostports}   # alive, just not ready

        broker.start()
        wait_until(lambda: prom.query("cloudisense_ready") == {h: 1.0 for h in hostports}, 60, interval=0.3,
                   what="readiness back on every node")
        wait_until(lambda: prom.firing("CloudisenseFederationDown") == set(), 30, interval=0.3,
                   what="the alert to clear")
    finally:
        if prom is not None:
            prom.stop()
        broker.stop()
