"""Profile the node processes under one benchmark's load with py-spy (not a dependency: ``pip install py-spy``).

    python bench/profile_nodes.py P1|P2|P3|P4|P5 [--seconds 5] [--out DIR] [--top 30]

Starts the same processes as ``bench/run.py`` (a private mosquitto, the nodes
with the bench plug-in), drives the scenario's load from this process, samples
every node with ``py-spy record --format raw`` and prints, per node, the
functions with the most samples (self and inclusive).  The raw files
(collapsed stacks, for flamegraph.pl or speedscope) stay in ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import _harness as run  # noqa: E402
from p4_fanout import FAN_CLIENTS, FanOut  # noqa: E402


def summarize(path: Path, top: int) -> str:
    incl: collections.Counter[str] = collections.Counter()
    self_: collections.Counter[str] = collections.Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        for f in set(frames):
            incl[f] += k
        self_[frames[-1]] += k
    out = [f"{path.name}: {total} samples (idle excluded)", "  self:"]
    out += [f"  {v * 100 / total:5.1f}%  {f}" for f, v in self_.most_common(top)]
    out += ["  inclusive:"]
    out += [f"  {v * 100 / total:5.1f}%  {f}" for f, v in incl.most_common(top + 12)[10:]]
    return "\n".join(out)


async def load(scenario: str, procs: dict[str, run.Proc], seconds: float, pipelined: bool = False) -> None:
    end = time.monotonic() + seconds
    if scenario == "P4":
        fan = FanOut(procs["A"].url, run.dumps({"type": "subscribe", "id": "s", "node": "B",
                                                "topic": "bench/fan"}), FAN_CLIENTS)
        ctl = await run.ws_connect(procs["B"].url)
        try:
            await fan.open()
            fan.begin(1)
            await run.rt(ctl, run.dumps({"type": "call", "id": "e", "service": "bench", "method": "emit",
                                           "timeout": 300, "params": {"topic": "bench/fan", "rate": 400,
                                                                      "count": int(400 * seconds), "step": 1}}))
        finally:
            await ctl.close()
            await fan.close()
        return
    url, node = {"P1": (procs.get("L"), None), "P2": (procs.get("A"), "B"), "P3": (procs.get("A"), "B"),
                 "P5": (procs.get("SA"), "SB")}[scenario]
    side = run.WsSide(scenario, url.url, lambda i: run.call_frame(i, node))
    await side.open()
    try:
        while time.monotonic() < end:
            if scenario == "P3" or pipelined:
                await side.pipelined(500, run.INFLIGHT)
            else:
                await side.sequential(200)
    finally:
        await side.close()


async def amain(args: argparse.Namespace) -> None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy is not installed (pip install py-spy)")
    tmp = Path(tempfile.mkdtemp(prefix="cloudisense-profile-"))
    out = Path(args.out or tmp)
    out.mkdir(parents=True, exist_ok=True)
    procs = run.Procs(tmp, "auto", f"bench/{uuid.uuid4().hex[:10]}")
    try:
        procs.broker = await run.private_mosquitto(procs)
        started: dict[str, run.Proc] = {}
        if args.scenario == "P1":
            started["L"] = procs.node("L", broker="none")
        elif args.scenario == "P5":
            keys = tmp / "keys"
            for nid in ("SA", "SB"):
                subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "keys", "gen", nid, "--out", str(keys)],
                               check=True, capture_output=True)
                started[nid] = procs.node(nid, signed_dir=keys)
        else:
            started["A"], started["B"] = procs.node("A"), procs.node("B")
        for p in started.values():
            await procs.ready(p)
        if "A" in started:
            await run.wait_remote(started["A"].url, "B")
        if "SA" in started:
            await run.wait_remote(started["SA"].url, "SB")
        await load(args.scenario, started, 1.0)  # warm-up
        spies = {name: subprocess.Popen([spy, "record", "--pid", str(p.pid), "-d", str(int(args.seconds)), "-r",
                                         "500", "-f", "raw", "-o", str(out / f"{args.scenario}-{name}.txt")],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for name, p in started.items()}
        await asyncio.sleep(0.5)
        await load(args.scenario, started, args.seconds - 1, args.pipelined)
        for s in spies.values():
            s.wait(30)
        for name in started:
            print(summarize(out / f"{args.scenario}-{name}.txt", args.top))
            print()
    finally:
        procs.stop_all()
        if not args.out:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=["P1", "P2", "P3", "P4", "P5"])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", help="keep the raw py-spy files here")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--pipelined", action="store_true", help="P1/P2/P5: 64 calls in flight instead of one at a time")
    asyncio.run(amain(ap.parse_args()))


if __name__ == "__main__":
    main()
