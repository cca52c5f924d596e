"""Plans, the facts they rely on, approvals, and the hash that binds them.

A :class:`Plan` is a list of mutating :class:`PlanStep` s, each with its
target as the model named it (a node id or a selector), the nodes that
resolved to, and the :class:`Fact` that chose them.  ``plan.hash`` covers the
steps, the *binding* part of each fact (the resolved targets, their online
state and the selector) and the plan's ``context``: for a pending plan, the
node URL it runs through (where the operator's token goes), the audit log
and session, and who asked.  The metric values that ranked the candidates are
recorded and shown ("why this node") but not hashed: live metrics drift every
few seconds, and what the operator approved is the decision they produced
("node-b is the coolest"), which :func:`recheck` verifies again right before
execution.

An :class:`Approval` names the plan hash and the step numbers it covers;
:func:`check_approval` is the gate: no approval, a different hash, a tampered
plan or an empty selection raises :class:`NotApproved`.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from cloudisense.prompts import PROMPT_VERSION
from cloudisense.tools import ClusterView, NodeSelector, SelectionError, describe_selector, resolve


class NotApproved(Exception):
    """Execution refused before any I/O: the plan (or these steps of it) were not approved."""


class Fact(BaseModel):
    """The cluster facts a step's target relies on."""

    targets: list[str]
    online: dict[str, bool] = Field(default_factory=dict)
    selector: str | None = None
    key: str | None = None
    values: dict[str, float | None] = Field(default_factory=dict)
    why: str = ""
    origin: Literal["selector", "request", "model"] | None = Field(
        None, description="who named the target: resolved from a selector, named in the request, or named by "
                          "the model (an LLM's choice, re-checked through its criterion when it has one)")

    def binding(self) -> dict[str, Any]:
        return {"targets": self.targets, "online": self.online, "selector": self.selector}


class PlanStep(BaseModel):
    index: int
    kind: Literal["call", "broadcast"] = "call"
    node: str | None = None
    selector: NodeSelector | None = None
    service: str
    method: str
    params: dict[str, Any] = Field(default_factory=dict)
    reason: str = ""
    mutates: bool = True
    fact: Fact
    criterion: NodeSelector | None = Field(
        None, description="for a node the model named after ranking nodes (find_nodes sorted, the node first): "
                          "that ranking as a selector, re-resolved before execution")

    @property
    def targets(self) -> list[str]:
        return self.fact.targets

    @property
    def target_text(self) -> str:
        return self.fact.selector or (self.node or "")

    def binding(self) -> dict[str, Any]:
        return {"index": self.index, "kind": self.kind, "node": self.node,
                "selector": self.selector.model_dump(mode="json") if self.selector else None,
                "service": self.service, "method": self.method, "params": self.params,
                "reason": self.reason, "mutates": self.mutates, "fact": self.fact.binding(),
                **({"criterion": self.criterion.model_dump(mode="json")} if self.criterion else {})}


def canonical_hash(obj: Any) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()  # a lone surrogate from a model


class Plan(BaseModel):
    request: str
    steps: list[PlanStep] = Field(default_factory=list)
    summary: str = ""
    model: str = ""
    prompt_version: str = PROMPT_VERSION
    created: float = Field(default_factory=time.time)
    context: dict[str, str] = Field(default_factory=dict, description=(
        "where a plan approved by another process runs and is recorded (pending plans: url, audit, session, "
        "requested_by); hashed, so an approval by hash also fixes these"))
    hash: str = ""

    def compute_hash(self) -> str:
        doc: dict[str, Any] = {"request": self.request, "steps": [s.binding() for s in self.steps]}
        if self.context:  # only when set: plans made and run in one process keep the hash they always had
            doc["context"] = self.context
        return canonical_hash(doc)

    def seal(self) -> Plan:
        self.hash = self.compute_hash()
        return self

    def nodes(self, steps: set[int] | None = None) -> list[str]:
        seen: dict[str, None] = {}
        for s in self.steps:
            if steps is None or s.index in steps:
                seen.update(dict.fromkeys(s.targets))
        return list(seen)

    def step(self, index: int) -> PlanStep:
        return next(s for s in self.steps if s.index == index)


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True)
    plan_hash: str
    steps: tuple[int, ...]
    approver: str
    via: str
    ts: float = Field(default_factory=time.time)


def approve(plan: Plan, steps: list[int] | None = None, *, approver: str, via: str) -> Approval:
    """The operator's approval of ``steps`` (all when None) of exactly this plan."""
    chosen = tuple(sorted({s.index for s in plan.steps} if steps is None else set(steps)))
    unknown = set(chosen) - {s.index for s in plan.steps}
    if unknown:
        raise ValueError(f"the plan has no step {', '.join(map(str, sorted(unknown)))}")
    return Approval(plan_hash=plan.compute_hash(), steps=chosen, approver=approver, via=via)


def check_approval(plan: Plan, approval: Approval | None) -> set[int]:
    """The approved step numbers; raises :class:`NotApproved` unless the approval is for this very plan."""
    if not isinstance(approval, Approval):
        raise NotApproved("no approval: mutating steps run only after the operator approves them")
    actual = plan.compute_hash()
    if plan.hash and plan.hash != actual:
        raise NotApproved("the plan was changed after it was sealed; approve it again")
    if approval.plan_hash != actual:
        raise NotApproved("the approval is for a different plan (hash mismatch); approve this plan")
    indices = {s.index for s in plan.steps}
    chosen = set(approval.steps)
    if not chosen:
        raise NotApproved("the approval covers no step")
    if not chosen <= indices:
        raise NotApproved(f"the approval names steps the plan doesn't have: {sorted(chosen - indices)}")
    return chosen


def make_fact(view: ClusterView, node: str | None, selector: NodeSelector | None) -> Fact:
    """The facts for a target, from a cluster view (raises SelectionError when nothing matches)."""
    if selector is not None:
        r = resolve(view, selector)
        shown = {t: r.values.get(t) for t in r.candidates} if r.key else {}
        return Fact(targets=r.targets, online={t: True for t in r.targets}, selector=r.text,
                    key=r.key, values=shown, why=r.why())
    n = view.get(node or "")
    if n is None:
        raise SelectionError(f"node {node!r} is not in the cluster any more")
    return Fact(targets=[n.id], online={n.id: n.online}, why=f"named explicitly: {n.id}")


def recheck(plan: Plan, steps: set[int], view: ClusterView) -> list[str]:
    """Why the approved steps no longer hold on ``view`` (empty: they still hold)."""
    problems = []
    for s in plan.steps:
        if s.index not in steps:
            continue
        label = f"step {s.index} ({s.service}.{s.method} on {s.target_text})"
        try:
            now = make_fact(view, s.node, s.selector)
        except SelectionError as e:
            problems.append(f"{label}: {e}")
            continue
        if now.binding() != s.fact.binding():
            if now.targets != s.fact.targets:
                detail = f"was {', '.join(s.fact.targets)}, now {', '.join(now.targets)}"
                if now.key:
                    detail += f" ({now.why})"
            else:
                off = [t for t, up in now.online.items() if not up]
                detail = f"offline now: {', '.join(off)}" if off else "its facts changed"
            problems.append(f"{label}: {detail}")
            continue
        if s.criterion is not None and s.selector is None:
            gone = criterion_problem(s, view)
            if gone:
                problems.append(f"{label}: {gone}")
                continue
        for t in now.targets:
            n = view.get(t)
            if n is None or n.method(s.service, s.method) is None:
                problems.append(f"{label}: {t} no longer offers {s.service}.{s.method}")
    return problems


def criterion_problem(step: PlanStep, view: ClusterView) -> str:
    """Why a model-named node no longer meets the criterion the model chose it by ("" if it still does)."""
    assert step.criterion is not None
    text = describe_selector(step.criterion)
    try:
        r = resolve(view, step.criterion)
    except SelectionError as e:
        return f"the model chose {', '.join(step.targets)} as the {text}; now {e}"
    if r.targets != step.targets:
        return f"the model chose {', '.join(step.targets)} as the {text}; now that is {', '.join(r.targets)} ({r.why()})"
    return ""
