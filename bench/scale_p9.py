"""P9: what N peers cost one real node, and the broker (issue 20).

    python bench/scale_p9.py [--n 100,1000,10000] [--interval 5] [--idle 15] [--legacy] [--json FILE]

For each N: a private mosquitto (``sys_interval 1``, to read its delivery
counter), one real ``cloudisense node`` and N simulated peers (``bench/sim.py``,
one process speaking the federation contract).  Measured:

* ``converge_s`` — from the first simulated announcement until the node counts
  N + 1 members online (its ``/metrics`` gauge ``cluster_members``);
* over an idle window of ``--idle`` seconds (after one heartbeat interval of settling):
  ``broker_sent_per_s`` (mosquitto's ``$SYS/broker/messages/sent``, everything it
  delivered to the node and the simulator), ``node_rx_per_s`` (MQTT messages the
  real node received), and ``cluster_per_interval`` = node_rx × interval × (N + 1):
  what a cluster of N + 1 real nodes would make the broker deliver per heartbeat
  interval, every node receiving what this one receives (the simulator subscribes
  only to what a peer answers, so the broker's own count is not that figure);
  the node's CPU % (of one core) and RSS;
* ``cluster_first_page_s`` — ``node.cluster`` as the tools ask for it (the first
  page of compact rows where the node supports paging; the whole table before), median of 3; ``cluster_cold_s`` the first of them
  (it may wait for the heartbeats' snapshot); ``cluster_bytes`` its reply size;
* ``gather_s`` — ``node.ping`` to ``"*"`` (every simulated peer answers);
* ``ask_dry_run_s`` — ``cloudisense ask --dry-run "restart logger on coolest node"``
  (the offline planner), wall time of the process.

``--legacy`` makes the simulator send the whole catalog in every heartbeat (the
contract before issue 20) for a node of that era.  Every process it starts is
stopped before it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _harness as run  # noqa: E402  (process handling and footprint helpers shared with bench/run.py)
from run import machine  # noqa: E402
from sim import Sim  # noqa: E402
from cloudisense.node.testing import free_port  # noqa: E402

ASK = "restart logger on coolest node"


async def mosquitto(procs: run.Procs) -> int:
    """A private mosquitto that publishes its counters every second (its port)."""
    url = await run.private_mosquitto(procs, "sys_interval 1\nmax_queued_messages 0\n")
    return int(url.rsplit(":", 1)[1])


class BrokerCounter:
    """mosquitto's ``$SYS/broker/messages/sent``, as it last published it."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sent: tuple[float, int] | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "BrokerCounter":
        import aiomqtt
        self._cm = aiomqtt.Client("127.0.0.1", self.port, identifier=f"p9-sys-{uuid.uuid4().hex[:6]}")
        client = await self._cm.__aenter__()
        await client.subscribe("$SYS/broker/messages/sent")

        async def rx() -> None:
            async for msg in client.messages:
                self.sent = (time.monotonic(), int(bytes(msg.payload).decode()))
        self._task = asyncio.create_task(rx())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._cm.__aexit__(None, None, None)

    async def next(self) -> tuple[float, int]:
        """The next value the broker publishes (so a window starts and ends on fresh readings)."""
        old = self.sent
        deadline = time.monotonic() + 5
        while self.sent is old or self.sent is None:
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto published no $SYS/broker/messages/sent for 5 s")
            await asyncio.sleep(0.05)
        return self.sent


def metric(url: str, name: str, labels: str) -> float:
    http = url.replace("ws://", "http://").split("/ws")[0].rstrip("/")
    text = urllib.request.urlopen(f"{http}/metrics", timeout=10).read().decode()
    m = re.search(rf"^cloudisense_{name}\{{{labels}\}} (\S+)$", text, re.M)
    if m is None:
        raise RuntimeError(f"no {name}{{{labels}}} in /metrics")
    return float(m.group(1))


async def call(url: str, service: str, method: str, params: dict[str, Any] | None = None, node: str | None = None,
               timeout: float = 60) -> tuple[float, int, dict[str, Any]]:
    """One call on a fresh connection: (seconds, reply bytes, reply)."""
    async with run.connect(url, max_size=None, open_timeout=10) as ws:
        frame = {"type": "call", "id": 1, "service": service, "method": method, "params": params or {},
                 "timeout": timeout}
        if node:
            frame["node"] = node
        t0 = time.perf_counter()
        await ws.send(json.dumps(frame))
        raw = await ws.recv()
        dt = time.perf_counter() - t0
    return dt, len(raw), json.loads(raw)


def heartbeat_catalog(services: dict[str, Any]) -> dict[str, Any]:
    """``node.describe``'s services in the heartbeat's catalog shape."""
    return {name: {"description": s["description"],
                   "methods": {k: {"description": m["description"], "mutates": m["mutates"], "params": m["params"]}
                               for k, m in s["methods"].items()}}
            for name, s in services.items()}


async def one(n: int, args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    procs = run.Procs(tmp, "", f"p9/{uuid.uuid4().hex[:8]}")
    out: dict[str, Any] = {"n": n}
    try:
        port = await mosquitto(procs)
        broker = f"mqtt://127.0.0.1:{port}"
        cfg = tmp / f"real-{n}.toml"
        cfg.write_text("\n".join([
            'id = "real"', "[ws]", 'listen = "127.0.0.1:0"', "max_frame_bytes = 67108864",
            "send_buffer_bytes = 268435456", "[broker]", f'url = "{broker}"', f'prefix = "{procs.prefix}"',
            "[system]", 'temperature = "sim:45"', f"metrics_interval = {args.interval}", "[cluster]",
            f"max_members = {max(10_000, n + 10)}"]) + "\n")
        node = await procs.ready(procs.spawn("node-real", [sys.executable, "-m", "cloudisense.node.cli", "node",
                                                           "--config", str(cfg)]))
        _, _, described = await call(node.url, "node", "describe")
        catalog = heartbeat_catalog(described["result"]["services"])
        async with BrokerCounter(port) as counter, \
                Sim("127.0.0.1", port, procs.prefix, n, catalog, interval=args.interval, legacy=args.legacy) as sim:
            t0 = time.monotonic()
            await sim.announce()
            sim.start_heartbeats(probe=["real"])
            deadline = t0 + max(60.0, n / 50)
            while (online := metric(node.url, "cluster_members", 'state="online"')) < n + 1:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"not converged after {deadline - t0:.0f} s: {online:.0f} online")
                await asyncio.sleep(0.1)
            out["converge_s"] = round(time.monotonic() - t0, 2)
            await asyncio.sleep(args.interval)   # settle: one full heartbeat round
            b0t, b0 = await counter.next()
            r0t, rx0, c0 = time.monotonic(), metric(node.url, "mqtt_messages_total", 'direction="in"'), \
                run.cpu_seconds(node.pid)
            await asyncio.sleep(args.idle)
            b1t, b1 = await counter.next()
            r1t, rx1, c1 = time.monotonic(), metric(node.url, "mqtt_messages_total", 'direction="in"'), \
                run.cpu_seconds(node.pid)
            wall = r1t - r0t
            out["broker_sent_per_s"] = round((b1 - b0) / (b1t - b0t), 1)
            out["node_rx_per_s"] = round((rx1 - rx0) / wall, 3)
            out["cluster_per_interval"] = round((rx1 - rx0) / wall * args.interval * (n + 1))
            out["target_per_interval"] = 2 * n
            out["node_cpu_percent"] = round((c1 - c0) / wall * 100, 2)
            out["node_rss_mb"] = round(run.rss(node.pid) / 2**20, 1)

            # what a table view asks for: a page of compact rows, the catalogs beside them once
            page: dict[str, Any] = {"fields": ["id", "online", "status", "metrics", "catalog_hash"], "limit": 100,
                                    "catalogs": True}
            times, size = [], 0
            for _ in range(3):
                dt, size, reply = await call(node.url, "node", "cluster", page)
                if reply.get("type") == "error" and reply["error"].get("code") == "invalid_params":
                    page = {}   # a node before paging: the whole table is the first page
                    dt, size, reply = await call(node.url, "node", "cluster", page)
                if reply.get("type") != "result":
                    raise RuntimeError(f"node.cluster failed: {reply}")
                times.append(dt)
            out["cluster_first_page_s"] = round(statistics.median(times), 3)
            out["cluster_cold_s"] = round(times[0], 3)   # the first one: may wait for the metrics snapshot
            out["cluster_bytes"] = size
            out["cluster_paged"] = bool(page)

            times = []
            for _ in range(3):
                dt, _, reply = await call(node.url, "node", "ping", node="*", timeout=60)
                res = reply.get("result", {})
                if len(res.get("results", {})) != n + 1:
                    raise RuntimeError(f"gather: {len(res.get('results', {}))} answered of {n + 1}; "
                                       f"errors {list(res.get('errors', {}).items())[:3]}")
                times.append(dt)
            out["gather_s"] = round(statistics.median(times), 3)

            # (a subprocess of the event loop: the simulated peers must go on answering meanwhile)
            t = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cloudisense.node.cli", "ask", "--dry-run", "--url", node.url,
                "--audit", str(tmp / "audit.jsonl"), ASK, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, env=run.child_env([HERE]))
            text, _ = await asyncio.wait_for(proc.communicate(), 300)
            out["ask_dry_run_s"] = round(time.perf_counter() - t, 2)
            out["sim_refutations"] = sim.refutations   # simulated peers suspected (one process answers for all)
            out["ask_exit"] = proc.returncode
            if proc.returncode != 0:
                out["ask_error"] = text.decode(errors="replace")[-400:]
    finally:
        procs.stop_all()
    return out


def table(rows: list[dict[str, Any]]) -> str:
    cols = ["n", "converge_s", "broker_sent_per_s", "node_rx_per_s", "cluster_per_interval", "target_per_interval",
            "node_cpu_percent", "node_rss_mb", "cluster_first_page_s", "cluster_bytes", "gather_s", "ask_dry_run_s"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, r.get("error", "–") if c == "converge_s" else "–"))
                                       for c in cols) + " |")
    return "\n".join(lines)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="100,1000", help="comma-separated peer counts (default %(default)s)")
    ap.add_argument("--interval", type=float, default=5.0, help="heartbeat interval, s (default %(default)s)")
    ap.add_argument("--idle", type=float, default=15.0, help="idle measuring window, s (default %(default)s)")
    ap.add_argument("--legacy", action="store_true", help="simulate the contract before issue 20 (catalog in "
                                                          "every heartbeat)")
    ap.add_argument("--json", help="write the results here too")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="p9-") as d:
        for n in (int(x) for x in args.n.split(",")):
            try:
                rows.append(await one(n, args, Path(d)))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
                rows.append({"n": n, "error": str(e)[:500]})
            print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"legacy": args.legacy, "interval": args.interval, "rows": rows,
                                               "machine": machine()}, indent=1) + "\n")
    return 0 if all("error" not in r for r in rows) else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
