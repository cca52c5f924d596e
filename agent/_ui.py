"""Terminal rendering (rich) and the terminal approval prompt."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Callable

from ._agent import Decision, SessionOutcome
from ._executor import ExecutionReport
from ._planner import PlanResult

InputFn = Callable[[str], str]


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False)


def model_banner(model: Any) -> str:
    if getattr(model, "name", "") == "offline":
        return "model: offline — the deterministic rules planner (no LLM; set --model or CLOUDISENSE_MODEL for one)"
    return f"model: {getattr(model, 'name', model)}"


def plan_table(result: PlanResult) -> Any:
    from rich.table import Table

    plan = result.plan
    assert plan is not None
    t = Table(title=f"Plan {plan.hash[:12]} — {len(plan.steps)} step(s), needs approval", title_justify="left",
              show_lines=True)
    for col in ("step", "node", "service.method", "params", "reason", "why this node"):
        t.add_column(col, overflow="fold")
    for s in plan.steps:
        nodes = ", ".join(s.targets)
        if len(s.targets) > 1:
            nodes += f"\n(first {s.targets[0]}, then the rest if it succeeds)"
        why = s.fact.why
        if s.fact.selector:
            why = f"selector: {s.fact.selector}"
            if s.fact.key:
                vals = ", ".join(f"{n} {v}" for n, v in list(s.fact.values.items())[:6])
                more = f", +{len(s.fact.values) - 6} more" if len(s.fact.values) > 6 else ""
                why += f"\n{s.fact.key}: {vals}{more}"
        t.add_row(str(s.index), nodes, f"{s.service}.{s.method}", json.dumps(s.params, ensure_ascii=False),
                  s.reason or "—", why)
    return t


def render_plan(console: Any, result: PlanResult) -> None:
    from rich.markup import escape

    if result.message:
        console.print(escape(result.message))
    if not result.ok:
        return
    if result.plan is not None and result.plan.steps:
        console.print(plan_table(result))


def render_report(console: Any, report: ExecutionReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    if report.results:
        t = Table(title="Results", title_justify="left")
        for col in ("step", "node", "call", "ok", "result"):
            t.add_column(col, overflow="fold")
        for r in report.results:
            body = json.dumps(r.result if r.ok else r.error, ensure_ascii=False, default=str)
            t.add_row(str(r.step), r.node, f"{r.service}.{r.method}", "yes" if r.ok else "[red]no[/red]",
                      escape(body[:500]))
        console.print(t)
    style = "green" if report.status == "done" else "red"
    console.print(f"[{style}]{report.status}[/{style}]: {escape(report.message)}")
    if report.skipped:
        console.print(f"not approved, not run: step(s) {', '.join(map(str, report.skipped))}")


def _parse_steps(text: str, valid: set[int]) -> list[int] | None:
    try:
        chosen = sorted({int(x) for x in text.replace(",", " ").split()})
    except ValueError:
        return None
    return chosen if chosen and set(chosen) <= valid else None


def terminal_decider(console: Any, input_fn: InputFn = input) -> Callable[[PlanResult], Any]:
    """An async ``decide`` that asks on the terminal: approve all / reject (with words) / pick steps."""

    async def ask(prompt: str) -> str:
        try:
            return (await asyncio.to_thread(input_fn, prompt)).strip()
        except EOFError:
            return "q"

    async def decide(result: PlanResult) -> Decision:
        plan = result.plan
        assert plan is not None
        valid = {s.index for s in plan.steps}
        while True:
            a = (await ask("[a]pprove all, [r]eject, [p]ick steps, [q]uit? ")).lower()
            if a in ("a", "approve", "y", "yes"):
                return Decision("approve", None, via="terminal")
            if a in ("q", "quit", "n", "no", ""):
                return Decision("stop", via="terminal")
            if a in ("r", "reject"):
                fb = await ask("What should change? (sent to the planner for a new plan; empty: stop) ")
                return Decision("reject", feedback=fb, via="terminal") if fb else Decision("stop", via="terminal")
            if a in ("p", "pick"):
                steps = _parse_steps(await ask(f"Steps to approve ({', '.join(map(str, sorted(valid)))}): "), valid)
                if steps is not None:
                    return Decision("approve", steps, via="terminal")
                console.print("[red]give step numbers from the plan, e.g. 1,3[/red]")
                continue
            console.print("[red]answer a, r, p or q[/red]")

    return decide


def outcome_json(request: str, model: str, outcome: SessionOutcome, **extra: Any) -> dict[str, Any]:
    last = outcome.last
    plan = last.plan if last else None
    doc: dict[str, Any] = {
        "request": request, "model": model, "status": outcome.public_status, "exit_code": outcome.exit_code,
        "message": last.message if last else "", "error": last.error if last else None,
        "options": list(last.options) if last else [],
        "plan": None if plan is None else {
            "hash": plan.hash, "summary": plan.summary,
            "steps": [{"step": s.index, "node": s.targets[0] if len(s.targets) == 1 else None, "nodes": s.targets,
                       "selector": s.fact.selector, "why": s.fact.why, "service": s.service, "method": s.method,
                       "params": s.params, "reason": s.reason} for s in plan.steps]},
        "observations": [o.model_dump(mode="json") for o in (last.observations if last else [])],
        "revisions": max(0, len(outcome.results) - 1),
        "approval": outcome.approval.model_dump(mode="json") if outcome.approval else None,
        "execution": outcome.report.model_dump(mode="json") if outcome.report else None,
    }
    doc.update(extra)
    return doc
