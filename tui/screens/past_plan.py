"""One past plan from the audit log, read-only: request, steps, who decided, outcome, each step's result."""

from __future__ import annotations

import json
import time
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from cloudisense.agent import step_targets
from cloudisense.node._text import printable

from .._state import fmt_params
from ..widgets.footer import ConsoleFooter
from ..widgets.history_pane import OUTCOME_STYLE


def past_plan_text(p: Any) -> Text:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(p.ts)) if p.ts else "?"
    out = Text()
    out.append("request  ", style="bold")
    out.append(printable(p.request or "(not recorded)", limit=400) + "\n")
    out.append("plan     ", style="bold")
    out.append(f"{p.plan_hash[:12]}  {when}  by {printable(p.user, limit=40)}  session {printable(p.session, limit=20)}\n")
    if p.summary:
        out.append("summary  ", style="bold")
        out.append(printable(p.summary, limit=400) + "\n")
    out.append("\n")
    for s in p.steps:
        targets = ", ".join(printable(t, limit=60) for t in step_targets(s))
        params = fmt_params(s.get("params") if isinstance(s.get("params"), dict) else {})
        out.append(f"step {s.get('index', '?')}  ", style="bold")
        out.append(printable(f"{s.get('service')}.{s.get('method')} {params} on {targets}", limit=300) + "\n")
        why = (s.get("fact") or {}).get("why") if isinstance(s.get("fact"), dict) else ""
        if why:
            out.append(f"        why: {printable(why, limit=300)}\n", style="dim")
        if s.get("reason"):
            out.append(f"        reason: {printable(s.get('reason'), limit=300)}\n", style="dim")
    out.append("\noutcome  ", style="bold")
    out.append(printable(p.outcome, limit=20), style=OUTCOME_STYLE.get(p.outcome, ""))
    who = f" by {printable(p.by, limit=40)}" if p.by else ""
    via = f" via {printable(p.via, limit=20)}" if p.via else ""
    out.append(f"{who}{via}")
    if p.detail:
        out.append(f": {printable(p.detail, limit=400)}")
    out.append("\n")
    for r in p.results:
        head = f"step {r.get('step')} {r.get('node')} {r.get('service')}.{r.get('method')} "
        out.append(printable(head, limit=200), style="bold")
        if r.get("ok"):
            out.append("ok ", style="green")
            out.append(printable(json.dumps(r.get("result"), ensure_ascii=False, default=str), limit=300), style="dim")
        else:
            err = r.get("error") or {}
            out.append("error ", style="red")
            out.append(printable(f"{err.get('code')}: {err.get('message')}", limit=300))
        out.append("\n")
    return out


class PastPlanScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q", "close", "Close")]

    def __init__(self, plan: Any) -> None:
        super().__init__()
        self.plan = plan

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="past-box", classes="dialog"):
            yield Static(past_plan_text(self.plan), id="past-plan")
        yield ConsoleFooter()

    def on_mount(self) -> None:
        box = self.query_one("#past-box")
        box.border_title = f"Past plan {self.plan.plan_hash[:12]} (read-only)"
        box.focus()

    def action_close(self) -> None:
        self.dismiss(None)
