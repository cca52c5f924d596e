"""The agent: planner + approval + executor, with the audit log and session recording.

:class:`Agent` is what front ends (the CLI, the TUI) drive; every decision
goes to the audit log.  :func:`run_session` is the ask/replay flow: plan,
ask the operator (``decide``), revise on rejection, execute on approval.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Literal, Protocol

from cloudisense.tools import ClusterConnection

from ._audit import AuditLog, current_user
from ._executor import ExecutionReport, Executor
from ._model import Model
from ._plan import Approval, NotApproved, Plan, approve
from ._planner import PlanResult, Planner


class Recorder(Protocol):
    """What the agent records a session into: a :class:`~._session.SessionRecorder`, or a front end's tap."""

    def start(self, request: str, model: str, url: str | None = None, nonce: str | None = None) -> None: ...

    def __call__(self, kind: str, data: dict[str, Any]) -> None: ...


class Agent:
    def __init__(self, conn: ClusterConnection, model: Model, *, audit: AuditLog | None = None,
                 recorder: Recorder | None = None, user: str | None = None, max_nodes: int = 10,
                 max_turns: int = 8, max_errors: int = 3, timeout: float = 10.0, result_chars: int = 4000,
                 nonce: str | None = None, budget: float | None = None) -> None:
        self.conn = conn
        self.model = model
        self.audit = audit
        self.recorder = recorder
        self.user = user or (audit.user if audit else current_user())
        self.planner = Planner(model, conn, max_turns=max_turns, max_errors=max_errors, max_nodes=max_nodes,
                               result_chars=result_chars, timeout=timeout, nonce=nonce, record=self._record,
                               budget=budget)
        self.executor = Executor(conn, max_nodes=max_nodes, timeout=timeout, record=self._record)

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        if self.recorder is not None:
            self.recorder(kind, data)
        if self.audit is not None and kind == "step":
            self.audit.write("step", **data)

    def _audit(self, event: str, **fields: Any) -> None:
        if self.audit is not None:
            self.audit.write(event, **fields)

    def _audit_result(self, r: PlanResult) -> None:
        if r.ok and r.plan is not None:
            self._audit("plan", plan_hash=r.plan.hash, model=r.plan.model, steps=[s.model_dump(mode="json") for s in r.plan.steps],
                        summary=r.plan.summary)
        else:
            self._audit("planning_failed", error=r.error, turns=r.turns, failure=r.failure)

    async def plan(self, request: str) -> PlanResult:
        if self.recorder is not None:
            self.recorder.start(request, getattr(self.model, "name", "?"), nonce=self.planner.nonce)
        self._audit("request", request=request, model=getattr(self.model, "name", "?"))
        r = await self.planner.plan(request)
        self._audit_result(r)
        return r

    async def revise(self, feedback: str) -> PlanResult:
        r = await self.planner.revise(feedback)
        self._audit_result(r)
        return r

    def approve(self, plan: Plan, steps: list[int] | None = None, *, via: str) -> Approval:
        a = approve(plan, steps, approver=self.user, via=via)
        self._audit("approval", plan_hash=a.plan_hash, steps=list(a.steps), approver=a.approver, via=via)
        self._record("approval", a.model_dump(mode="json"))
        return a

    def reject(self, plan: Plan, feedback: str = "", *, via: str) -> None:
        self._audit("rejection", plan_hash=plan.hash, feedback=feedback, by=self.user, via=via)
        self._record("rejection", {"plan_hash": plan.hash, "feedback": feedback, "via": via})

    async def execute(self, plan: Plan, approval: Approval | None) -> ExecutionReport:
        try:
            report = await self.executor.execute(plan, approval)
        except NotApproved as e:
            self._audit("refused", plan_hash=plan.hash, reason=str(e))
            raise
        self._audit("execution", plan_hash=plan.hash, status=report.status, message=report.message,
                    results=[r.model_dump(mode="json") for r in report.results], skipped=report.skipped)
        self._record("execution", {"report": report.model_dump(mode="json")})
        return report


#: PlanResult.failure values that mean the model or its provider failed (exit 7), not the request.
MODEL_FAILURES = frozenset({"provider", "timeout", "budget", "malformed", "script", "model"})


@dataclass
class Decision:
    action: Literal["approve", "reject", "stop"]
    steps: list[int] | None = None  # approve: these steps (None: all)
    feedback: str = ""              # reject: the operator's words for the model
    via: str = "terminal"


Decide = Callable[[PlanResult], Awaitable[Decision]]


# The closed set of session statuses scripts see (``--json``), and what each internal status shows as.
PUBLIC_STATUSES = ("planned", "done", "answered", "clarify", "refused", "failed", "stale", "rejected")
_PUBLIC = {"not_planned": "refused", "planning_failed": "failed", "model_failed": "failed"}


@dataclass
class SessionOutcome:
    """How an ask/replay session ended; ``exit_code`` is the CLI's (see cloudisense.agent.cli).

    ``planned``: a dry run with steps; ``answered``: a question answered from
    read-only tools; ``clarify``: the planner asked a question back;
    ``not_planned``: refused by the planner (shown as ``refused``);
    ``planning_failed``: the planner loop failed (shown as ``failed``);
    ``model_failed``: the model's provider failed (shown as ``failed``, with ``failure`` saying why);
    ``refused``: the executor refused (node cap, cluster unverifiable).
    """

    status: Literal["done", "planned", "answered", "clarify", "not_planned", "rejected", "planning_failed", "failed",
                    "stale", "refused", "model_failed"]
    results: list[PlanResult] = field(default_factory=list)
    report: ExecutionReport | None = None
    approval: Approval | None = None

    @property
    def last(self) -> PlanResult | None:
        return self.results[-1] if self.results else None

    @property
    def public_status(self) -> str:
        """The status in the documented closed set (:data:`PUBLIC_STATUSES`)."""
        return _PUBLIC.get(self.status, self.status)

    @property
    def exit_code(self) -> int:
        return {"done": 0, "planned": 0, "answered": 0, "clarify": 8, "not_planned": 2, "rejected": 3,
                "planning_failed": 2, "failed": 1, "stale": 4, "refused": 5, "model_failed": 7}[self.status]


async def run_session(agent: Agent, request: str, decide: Decide, *, replay_feedback: list[str] | None = None,
                      max_revisions: int = 3, dry_run: bool = False) -> SessionOutcome:
    """Plan ``request``; on rejection revise (up to ``max_revisions``); on approval execute.

    ``replay_feedback`` are recorded rejections, re-applied in order before
    the operator is asked (replay).
    """
    pending = list(replay_feedback or [])
    out = SessionOutcome(status="planning_failed")
    r = await agent.plan(request)
    out.results.append(r)
    revisions = 0
    while True:
        if not r.ok or r.plan is None:
            out.status = ("stale" if r.failure == "replay_mismatch" else
                          "model_failed" if r.failure in MODEL_FAILURES else "planning_failed")
            return out
        if r.unverified:
            out.status = "not_planned"  # the model's words claimed an action; nothing ran
            return out
        if not r.plan.steps:
            # answered from successful reads (a question); a question back; else (a refusal, every tool
            # call failed) the request was not carried out
            if r.outcome == "clarify":
                out.status = "clarify"
            elif r.outcome != "refuse" and any(o.status == "ok" for o in r.observations):
                out.status = "answered"
            else:
                out.status = "not_planned"
            return out
        if dry_run:
            out.status = "planned"
            return out
        if pending:
            d = Decision("reject", feedback=pending.pop(0), via="replay")
        else:
            d = await decide(r)
        if d.action == "stop":
            agent.reject(r.plan, d.feedback, via=d.via)
            out.status = "rejected"
            return out
        if d.action == "reject":
            agent.reject(r.plan, d.feedback, via=d.via)
            if revisions >= max_revisions or not d.feedback.strip():
                out.status = "rejected"
                return out
            revisions += 1
            r = await agent.revise(d.feedback)
            out.results.append(r)
            continue
        plan = r.plan
        assert plan is not None   # checked at the top of the loop, and r is the same
        out.approval = agent.approve(plan, d.steps, via=d.via)
        out.report = await agent.execute(plan, out.approval)
        out.status = out.report.status
        return out
