"""The executor: approved steps, in order, against the live cluster.

Order of checks, all before the first mutating call:

1. the approval gate (:func:`check_approval`), before any I/O at all;
2. the node cap (distinct nodes the approved steps touch);
3. freshness: the cluster view is read again and every approved step's
   facts re-derived (:func:`recheck`); any difference stops everything.

Then steps run in order.  A step that fans out runs on its first node alone,
and on the others (one by one) only if that succeeded.  The first failure
stops the rest.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field

from cloudisense.tools import ClusterConnection, error_dict, fetch_cluster

from ._plan import Approval, NotApproved, Plan, PlanStep, check_approval, recheck

log = logging.getLogger(__name__)


class StepResult(BaseModel):
    step: int
    node: str
    service: str
    method: str
    ok: bool
    result: Any = None
    error: dict[str, str] | None = None
    seconds: float = 0.0


class ExecutionReport(BaseModel):
    status: Literal["done", "failed", "stale", "refused"]
    message: str
    results: list[StepResult] = Field(default_factory=list)
    skipped: list[int] = Field(default_factory=list, description="steps the operator did not approve")

    @property
    def ok(self) -> bool:
        return self.status == "done"


class Executor:
    def __init__(self, conn: ClusterConnection, *, max_nodes: int = 10, timeout: float = 10.0,
                 record: Callable[[str, dict[str, Any]], None] | None = None) -> None:
        self.conn = conn
        self.max_nodes = max_nodes
        self.timeout = timeout
        self.record = record or (lambda kind, data: None)

    async def execute(self, plan: Plan, approval: Approval | None) -> ExecutionReport:
        approved = check_approval(plan, approval)  # raises NotApproved: no I/O before this line
        skipped = [s.index for s in plan.steps if s.index not in approved]
        nodes = plan.nodes(approved)
        if len(nodes) > self.max_nodes:
            return ExecutionReport(status="refused", skipped=skipped,
                                   message=f"the approved steps touch {len(nodes)} nodes; the cap is {self.max_nodes}")
        try:
            view = await fetch_cluster(self.conn, self.timeout)
        except Exception as e:  # noqa: BLE001 - cannot re-check: refuse to execute, say why
            return ExecutionReport(status="refused", skipped=skipped,
                                   message=f"could not re-check the cluster before executing: {error_dict(e)['message']}")
        problems = recheck(plan, approved, view)
        if problems:
            return ExecutionReport(status="stale", skipped=skipped,
                                   message="the cluster changed since the plan was approved; nothing was executed: "
                                           + "; ".join(problems))
        results: list[StepResult] = []
        for step in plan.steps:
            if step.index not in approved:
                continue
            first, *rest = step.targets
            for i, node in enumerate([first, *rest]):
                r = await self._call(step, node, approved)
                results.append(r)
                self.record("step", r.model_dump(mode="json"))
                if not r.ok:
                    later = [s.index for s in plan.steps if s.index in approved and s.index > step.index]
                    left = []
                    if len(rest) - i > 0 and i < len(rest):
                        left.append(f"{len(rest) - i} more node(s) of step {step.index}")
                    if later:
                        left.append(f"step(s) {', '.join(map(str, later))}")
                    err = r.error or {"code": "?", "message": ""}
                    first_note = " (its first node, so no other node was touched)" if i == 0 and rest else ""
                    return ExecutionReport(
                        status="failed", results=results, skipped=skipped,
                        message=f"step {step.index} failed on {node}{first_note}: {err['code']}: {err['message']}; "
                                f"stopped, not run: {', '.join(left) or 'nothing else'}")
        return ExecutionReport(status="done", results=results, skipped=skipped,
                               message=f"{len(results)} call(s) made, all succeeded")

    async def _call(self, step: PlanStep, node: str, approved: set[int]) -> StepResult:
        if step.index not in approved:  # the gate once more, right at the I/O
            raise NotApproved(f"step {step.index} is not approved")
        t0 = time.monotonic()
        try:
            result = await self.conn.call(node, step.service, step.method, step.params, self.timeout)
            return StepResult(step=step.index, node=node, service=step.service, method=step.method, ok=True,
                              result=result, seconds=round(time.monotonic() - t0, 3))
        except Exception as e:  # noqa: BLE001 - a failed step is a result
            return StepResult(step=step.index, node=node, service=step.service, method=step.method, ok=False,
                              error=error_dict(e), seconds=round(time.monotonic() - t0, 3))
