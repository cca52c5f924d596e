"""Terminal rendering (rich) and the terminal approval prompt.

Everything shown here that came from a model, a node or an MCP client —
requests, reasons, summaries, process logs, node and process names, params,
results, errors — is data.  It reaches rich as a :class:`rich.text.Text`
built by :func:`safe`, never as a markup string: control characters become
visible escapes (``\\x1b``, ``\\x0d``, via
:func:`cloudisense.node._text.printable`) and ``[bold]`` or ``[/]`` is shown
as written instead of parsed (a stray ``[/]`` used to crash the plan table).
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from cloudisense.node._text import json_text, printable

from ._agent import Decision, SessionOutcome
from ._executor import ExecutionReport
from ._planner import PlanResult

InputFn = Callable[[str], str]


MESSAGE_CHARS = 20_000  # the most of one model/planner message shown (the rest is cut with "…")
CELL_CHARS = 2_000


def _console(stderr: bool = False) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)


def safe(text: Any, *, lines: bool = False, limit: int | None = CELL_CHARS, style: str = "") -> Any:
    """``text`` from outside as a rich ``Text``: control characters escaped visibly, markup not parsed.

    ``lines``: multi-line text (a summary, log lines) keeps its newlines; anything else is one line.
    """
    from rich.text import Text

    return Text(printable(text, keep_newlines=lines, limit=limit), style=style)


def model_banner(model: Any) -> str:
    if getattr(model, "name", "") == "offline":
        return "model: offline — the deterministic rules planner (no LLM; set --model or CLOUDISENSE_MODEL for one)"
    return f"model: {printable(getattr(model, 'name', model), limit=200)}"


def plan_table(result: PlanResult) -> Any:
    from rich.table import Table

    plan = result.plan
    assert plan is not None
    t = Table(title=safe(f"Plan {plan.hash[:12]} — {len(plan.steps)} step(s), needs approval"), title_justify="left",
              show_lines=True)
    for col in ("step", "node", "service.method", "params", "reason", "why this node"):
        t.add_column(col, overflow="fold")
    for s in plan.steps:
        # one line per field from outside, then the lines we add (so a newline in a name can't forge a row)
        nodes = printable(", ".join(s.targets), limit=CELL_CHARS)
        if len(s.targets) > 1:
            nodes += f"\n(first {printable(s.targets[0], limit=200)}, then the rest if it succeeds)"
        why = printable(s.fact.why, limit=CELL_CHARS)
        if s.fact.selector:
            why = f"selector: {printable(s.fact.selector, limit=CELL_CHARS)}"
            if s.fact.key:
                vals = ", ".join(f"{n} {v}" for n, v in list(s.fact.values.items())[:6])
                more = f", +{len(s.fact.values) - 6} more" if len(s.fact.values) > 6 else ""
                why += f"\n{printable(s.fact.key, limit=200)}: {printable(vals, limit=CELL_CHARS)}{more}"
        t.add_row(safe(s.index), safe(nodes, lines=True, limit=None), safe(f"{s.service}.{s.method}"),
                  safe(json_text(s.params)), safe(s.reason or "—"), safe(why, lines=True, limit=None))
    return t


def render_plan(console: Any, result: PlanResult) -> None:
    if result.message:
        console.print(safe(result.message, lines=True, limit=MESSAGE_CHARS))
    if not result.ok:
        return
    if result.plan is not None and result.plan.steps:
        console.print(plan_table(result))


def render_report(console: Any, report: ExecutionReport) -> None:
    from rich.table import Table
    from rich.text import Text

    if report.results:
        t = Table(title="Results", title_justify="left")
        for col in ("step", "node", "call", "ok", "result"):
            t.add_column(col, overflow="fold")
        for r in report.results:
            body = json_text(r.result if r.ok else r.error, default=str)
            t.add_row(safe(r.step), safe(r.node), safe(f"{r.service}.{r.method}"),
                      Text("yes") if r.ok else Text("no", style="red"), safe(body, limit=500))
        console.print(t)
    style = "green" if report.status == "done" else "red"
    console.print(Text.assemble(safe(report.status, style=style), ": ", safe(report.message, lines=True,
                                                                              limit=MESSAGE_CHARS)))
    if report.skipped:
        console.print(safe(f"not approved, not run: step(s) {', '.join(map(str, report.skipped))}"))


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
