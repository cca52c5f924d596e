"""CloudiSENSE benchmarks, side by side with the transport floors and a peer (NATS).

    python bench/run.py [--quick] [--json FILE] [--only P1,P4] [--broker mqtt://127.0.0.1:1883]

Each scenario runs the project and its floor back to back in the same process
tree, after a warm-up, and reports p50/p99 latency (µs) and throughput
(msgs/s) for both plus their ratio.  What each scenario measures is in its
module (``bench/p1_local_rpc.py`` ...: ``INFO``) and in docs/performance.md.
Every process it starts (nodes, floors, a nats-server if none is running) is
stopped before it exits.  The client side is raw ``websockets`` for the
project and the floors alike.

A scenario module ``bench/pN_name.py`` has ``KEY``, ``INFO`` (title, measures,
target), ``ORDER`` (when it runs), ``EARLY`` (start its processes with the
others at the beginning; default true), ``REACH`` (node pairs that must see
each other first), ``async needs(bench)`` (name -> starter of each process it
uses), ``async run(bench)`` and ``cells(result)`` (its table row).  This
runner starts what the chosen scenarios need, runs them in order and stops each
process after the last scenario that uses it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _harness import Bench, Procs, Starter, nats_binary  # noqa: E402


def scenario_modules() -> list[ModuleType]:
    """Every ``bench/p<N>_*.py``, in run order."""
    mods = [importlib.import_module(f.stem) for f in HERE.glob("p[0-9]*_*.py")]
    return sorted(mods, key=lambda m: (m.ORDER, m.KEY))


MODULES = scenario_modules()
SCENARIOS: dict[str, dict[str, str]] = {m.KEY: m.INFO for m in sorted(MODULES, key=lambda m: m.KEY)}


async def run_all(b: Bench, chosen: list[ModuleType]) -> dict[str, Any]:
    b.tick("starting nodes and floors")
    await b.private_broker()
    needs: dict[str, dict[str, Starter]] = {}
    for m in chosen:
        needs[m.KEY] = await m.needs(b)
    await b.start({k: f for m in chosen if getattr(m, "EARLY", True) for k, f in needs[m.KEY].items()})
    for m in chosen:
        if getattr(m, "EARLY", True):
            for a, z in getattr(m, "REACH", ()):
                await b.reach(a, z)
    b.tick("ready", 1)
    b.startup_seconds = round(time.monotonic() - b._mark, 1)
    b._mark = time.monotonic()
    for i, m in enumerate(chosen):
        await b.start(needs[m.KEY])
        for a, z in getattr(m, "REACH", ()):
            await b.reach(a, z)
        await m.run(b)
        b.release({k for later in chosen[i + 1:] for k in needs[later.KEY]})
    return b.results


# --- reporting ------------------------------------------------------------------------------

def _tool_version(argv: list[str]) -> str | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0].strip() if text else None


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("cloudisense", "websockets", "aiomqtt", "paho-mqtt", "nats-py", "pydantic", "orjson", "pynacl",
                 "cryptography", "tiktoken"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    out["mosquitto"] = _tool_version([mosq, "-h"])
    exe = nats_binary()
    out["nats-server"] = _tool_version([exe, "--version"]) if exe else None
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": model, "cpus": os.cpu_count(),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "hostname": socket.gethostname()}



def table(results: dict[str, Any]) -> str:
    cells = {m.KEY: m.cells for m in MODULES}
    rows = ["| | scenario | project | floor | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        r = results[key]
        if "error" in r:
            rows.append(f"| {key} | {r['title']} | – | – | – | {r['target']} | error: {r['error']} |")
            continue
        pc, fc, rc = cells[key](r) if key in cells else ("?", "?", "?")
        met = {True: "yes", False: "**no**", None: "–"}[r.get("met")]
        rows.append(f"| {key} | {r['title']} | {pc} | {fc} | {rc} | {r['target']} | {met} |")
    return "\n".join(rows)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    chosen = [m for m in MODULES if not args.only or m.KEY in args.only]
    tmp = Path(tempfile.mkdtemp(prefix="cloudisense-bench-"))
    prefix = f"bench/{uuid.uuid4().hex[:10]}"
    procs = Procs(tmp, args.broker, prefix)
    t0 = time.monotonic()
    load0 = os.getloadavg()
    console = Console(stderr=True)
    total = 1 + len(chosen)
    progress = Progress(TextColumn("[bold]{task.description:<40}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                        TimeElapsedColumn(), console=console, transient=False)
    ok = False
    try:
        if load0[0] > (os.cpu_count() or 1):
            console.print(f"[yellow]note: load average {load0[0]:.1f} on {os.cpu_count()} CPUs: other work competes "
                          "for the CPUs; wall-clock figures will be noisy (ratios and CPU per call less so)")
        with progress:
            task = progress.add_task("starting", total=total)
            bench = Bench(args, procs, progress, task, SCENARIOS)
            results = await run_all(bench, chosen)
        ok = True
    finally:
        procs.stop_all()
        if ok and not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            print(f"logs kept in {tmp}", file=sys.stderr)
    return {"scenarios": results, "mode": "quick" if args.quick else "full", "seconds": round(time.monotonic() - t0, 1),
            "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]), "broker": procs.broker,
            "startup_seconds": bench.startup_seconds, "notes": bench.notes, "machine": {**machine(), "loadavg_at_start": [round(x, 2) for x in load0]},
            "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every scenario small (whole run under 60 s)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--only", type=lambda s: {x.strip().upper() for x in s.split(",") if x.strip()},
                    help="comma-separated scenarios, e.g. P1,P4")
    ap.add_argument("--broker", default=os.environ.get("CLOUDISENSE_BENCH_BROKER", "auto"),
                    help="MQTT broker for nodes and floors: mqtt://HOST:PORT, or 'auto' (default): start a private "
                         "mosquitto with set_tcp_nodelay on a free port")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    ap.add_argument("--p5-unsigned", action="store_true",
                    help="P5 with both pairs unsigned: the ratio the harness alone gives (read it beside P5's)")
    args = ap.parse_args(argv)
    out = asyncio.run(amain(args))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(table(out["scenarios"]))
    print(f"\n{out['mode']} run, {out['seconds']:g} s, {out['machine']['cpus']} CPUs; "
          + ", ".join(f"{k} {v}" for k, v in out["versions"].items() if v))
    for n in out["notes"]:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
