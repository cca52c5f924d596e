"""P8: the agent's prompt size, tokens the planner sends for one request on a simulated 1,000-node cluster
against a 10-node one. No processes."""

from __future__ import annotations

from typing import Any

from _harness import Bench, Starter, fmt, ratio

KEY = "P8"
ORDER = 80
EARLY = False
INFO = {"title": "agent prompt size",
        "measures": "tokens the planner sends for 'restart logger on coolest node' on a simulated 1,000-node "
                    "cluster (project) vs a 10-node one (floor)",
        "target": "≤ 1.5×"}


async def needs(b: Bench) -> dict[str, Starter]:
    return {}


async def run(b: Bench) -> None:
    b.tick("P8 agent prompt size")
    request = "restart logger on coolest node"
    try:
        from cloudisense.agent import measure_prompt_size
    except ImportError as e:
        b.results["P8"] = {**INFO, "error": f"cloudisense.agent.measure_prompt_size: {e}"}
        return
    small = await measure_prompt_size(request, 10)
    big = await measure_prompt_size(request, 1000)
    fields = ("nodes", "turns", "max_tokens", "total_tokens", "tokens_per_turn")
    pr = {k: getattr(big, k) for k in fields}
    fl = {"name": "same request, 10 nodes", **{k: getattr(small, k) for k in fields}}
    ratios = {"total_tokens": ratio(big.total_tokens, small.total_tokens),
              "max_tokens": ratio(big.max_tokens, small.max_tokens)}
    b.record("P8", pr, fl, ratios, ratios["total_tokens"] <= 1.5, method=big.method, request=request)
    b.tick("P8 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    def cell(x: dict[str, Any]) -> str:
        return f"{x['nodes']} nodes: {fmt(x['total_tokens'])} tokens in {x['turns']} turns"
    return cell(r["project"]), cell(r["floor"]), f"{fmt(r['ratio']['total_tokens'])}×"
