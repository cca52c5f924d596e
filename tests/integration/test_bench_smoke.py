"""Smoke test of the benchmark suite: ``python bench/run.py --quick --json FILE`` runs every scenario.

It checks only that every scenario produced figures for the project and its
floor; the targets are read from the benchmark's output (docs/performance.md),
never asserted here, since timings on a shared CI machine are noise.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"]
FIGURES = {
    "P1": ("p50_us", "p99_us", "msgs_per_s"),
    "P2": ("p50_us", "p99_us", "msgs_per_s"),
    "P3": ("p50_us", "p99_us", "msgs_per_s"),
    "P4": ("max_rate", "deliveries_per_s"),
    "P5": ("p50_us", "p99_us", "msgs_per_s"),
    "P6": ("rss_mb", "cpu_percent"),
    "P7": ("kb_per_client", "rss_before_mb", "rss_after_mb"),
    "P8": ("total_tokens", "max_tokens", "turns"),
}


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@pytest.mark.timeout(150)
def test_quick_run_produces_figures_for_every_scenario(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--json", str(out)]
    if not (shutil.which("mosquitto") or Path("/usr/sbin/mosquitto").exists()):
        # no mosquitto binary for a private broker: use the test broker
        cmd += ["--broker", os.environ.get("CLOUDISENSE_TEST_BROKER", "mqtt://127.0.0.1:1883")]
    mark = uuid.uuid4().hex   # inherited by every process the bench starts
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    env["BENCH_SMOKE_MARK"] = mark
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=145, env=env)
    assert proc.returncode == 0, f"bench failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    data = json.loads(out.read_text())

    assert sorted(data["scenarios"]) == sorted([*SCENARIOS, "P10"])
    p10 = data["scenarios"]["P10"]   # client-offered method: figures per side, local and remote
    assert "error" not in p10, p10.get("error")
    for side in ("project", "floor"):
        for where in ("local", "remote"):
            assert _number(p10[side][where]["p50_us"]) and _number(p10[side][where]["msgs_per_s"]), p10[side]
    assert _number(p10["ratio"]["p50_local"]) and _number(p10["ratio"]["p50_remote"]), p10["ratio"]
    for key in SCENARIOS:
        s = data["scenarios"][key]
        assert "error" not in s, f"{key}: {s['error']}"
        for side in ("project", "floor"):
            for fig in FIGURES[key]:
                assert _number(s[side].get(fig)), f"{key} {side} has no figure {fig!r}: {s[side]}"
        assert s["ratio"] and all(v is None or _number(v) for v in s["ratio"].values()), f"{key}: {s['ratio']}"
        assert s["met"] in (True, False)
    for key in ("P2", "P3"):
        assert _number(data["scenarios"][key]["nats"]["p50_us"])
    assert data["mode"] == "quick" and data["versions"]["websockets"] and data["machine"]["cpus"]
    # the table went to stdout, and the bench left no process behind
    assert "| P8 |" in proc.stdout
    assert not _marked(mark)


def _marked(mark: str) -> list[str]:
    left = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.environ().get("BENCH_SMOKE_MARK") == mark and p.status() != psutil.STATUS_ZOMBIE:
                left.append(" ".join(p.info["cmdline"] or []))
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return left
