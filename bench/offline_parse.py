"""Benchmark: the offline planner's parse per request on a 1,000-node cluster (target: < 50 ms).

Measures what the offline model does before it emits its tool calls: build
the lexicon from the cluster view, normalise and lex the request (with typo
correction), parse it into the intermediate form, evaluate the target
expressions on the view and choose selectors.  No I/O.

    python bench/offline_parse.py [--nodes 1000] [--rounds 20]

Prints mean, p95 and max milliseconds per request, over a mix of requests
(ids, exclusions, superlatives, comparisons, typos, multi-step, questions).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from cloudisense.agent._offline import Unplannable, interpret
from cloudisense.agent._parse import Clarification, Refusal
from cloudisense.tools import ClusterView

REQUESTS = [
    "restart logger on node-0007",
    "please restart the logger on the coolest node",
    "retsart logger on all nodes except node-0003 and node-0004",
    "stop worker on the third hottest node",
    "restart logger on the 2 hottest nodes then stop worker on the others",
    "restart logger on nodes under 40 degrees except the coolest one",
    "restart the worker on the hottest node that has it",
    "how hot is node-0500?",
    "which processes does node-0042 supervise?",
    "where is the worker running?",
    "restart logger anywhere but node-0001",
    "show the 5 coolest nodes",
    "frobnicate the logger on node-0001",
]


SERVICES = {"supervisor": {"methods": {m: {"mutates": m in ("start", "stop", "restart")}
                                      for m in ("list", "status", "logs", "start", "stop", "restart")}},
            "system": {"methods": {"metrics": {"mutates": False}, "info": {"mutates": False}}}}


def cluster(n: int, seed: int = 1) -> ClusterView:
    rnd = random.Random(seed)
    nodes = []
    for i in range(n):
        procs = [{"name": "logger", "state": "running", "pid": 100 + i}]
        if i % 3:
            procs.append({"name": "worker", "state": rnd.choice(["running", "stopped"]), "pid": 5000 + i})
        nodes.append({"id": f"node-{i:04d}", "online": i % 17 != 5, "services": SERVICES,
                      "metrics": {"cpu_percent": rnd.uniform(0, 100), "memory_percent": rnd.uniform(5, 95),
                                  "load": [rnd.uniform(0, 4)] * 3, "disk_percent": rnd.uniform(5, 95),
                                  "temperature_c": round(rnd.uniform(25, 80), 1)},
                      "processes": procs})
    return ClusterView.model_validate({"self": "node-0000", "nodes": nodes})


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--max-nodes", type=int, default=10,
                    help="the plan's node cap (default: the planner's; 1000 measures big targets)")
    a = ap.parse_args(argv)
    view = cluster(a.nodes)
    times: list[float] = []
    cpu: list[float] = []
    outcome: dict[str, str] = {}
    for _ in range(a.rounds):
        for text in REQUESTS:
            t0, c0 = time.perf_counter(), time.process_time()
            try:
                _, compiled = interpret(text, view, max_nodes=a.max_nodes)
                outcome[text] = f"{len(compiled.calls)} call(s)"
            except Clarification:
                outcome[text] = "clarify"
            except (Refusal, Unplannable) as e:
                outcome[text] = f"refused: {str(e)[:60]}"
            times.append((time.perf_counter() - t0) * 1000)
            cpu.append((time.process_time() - c0) * 1000)
    times.sort()
    cpu.sort()
    for text, o in outcome.items():
        print(f"  {text!r:75} {o}")
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"offline parse, {a.nodes} nodes, {len(times)} requests: wall mean {statistics.mean(times):.2f} ms, "
          f"p95 {p95:.2f} ms, max {times[-1]:.2f} ms; cpu mean {statistics.mean(cpu):.2f} ms, "
          f"p95 {cpu[int(0.95 * (len(cpu) - 1))]:.2f} ms (target < 50 ms)")
    return 0 if p95 < 50 else 1


if __name__ == "__main__":
    sys.exit(main())
