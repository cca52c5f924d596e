"""The planner loop: model ↔ tools until the model stops calling tools.

Per turn the model sees the conversation and the tool schemas.  Each tool
call is parsed and validated by the :class:`~cloudisense.tools.Toolbox`:

- the first user message is the operator's request and a bounded cluster
  summary; the summary (node-supplied names) is delimited as untrusted data;
- read-only tools (and ``call``/``broadcast`` of read-only methods) run at
  once; their results go back delimited as untrusted data and size-capped;
- ``call``/``broadcast`` of a mutating method is validated against the live
  cluster and queued as a :class:`PlanStep`; nothing runs;
- anything wrong (unknown tool, malformed arguments, unknown node, bad
  params, a repeated call) goes back as an error result.

Budgets bound the loop: ``max_turns`` model turns and ``max_errors`` bad
tool calls; past either, planning fails with a clear message and no plan, so
nothing can be approved, let alone executed.  ``budget`` bounds the wall
clock of one plan: every model turn runs under the plan's deadline
(:data:`~cloudisense.agent._model.DEADLINE`), retries included.

What the model says is checked, not trusted:

- a final text that claims an action ("Done: I restarted …") with no queued
  step is marked ``unverified``: nothing ran, whatever the words say;
- a node id the request did not name is marked "named by the model"; if the
  model ranked nodes (``find_nodes`` sorted) and names the first, that ranking
  becomes the step's ``criterion``, re-resolved before execution.

Every model turn is recorded with the request it answered (messages and tool
schemas), so a replay can give each reply only to that request.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections import Counter
from typing import Any, Callable, Literal

from pydantic import BaseModel, Field

from cloudisense.prompts import load as load_prompt
from cloudisense.tools import (BroadcastArgs, CallArgs, ClusterConnection, ClusterView, FindNodesArgs, NodeSelector,
                               PreparedCall, SelectionError, ToolError, Toolbox, describe_selector, openai_tools,
                               resolve, summarize, to_text)

from ._messages import feedback_message, request_message, wrap_untrusted
from ._model import DEADLINE, Model, ModelError, ToolCall, report
from ._plan import Plan, PlanStep, make_fact

log = logging.getLogger(__name__)

Recorder = Callable[[str, dict[str, Any]], None]


class Observation(BaseModel):
    """One tool call made while planning, and what came back."""

    turn: int
    tool: str
    arguments: str
    status: str  # ok | queued | error
    result: Any = None


class PlanResult(BaseModel):
    ok: bool
    plan: Plan | None = None
    message: str = ""
    error: str | None = None
    observations: list[Observation] = Field(default_factory=list)
    turns: int = 0
    failure: str | None = Field(None, description="why planning failed: provider | timeout | budget | malformed | "
                                                  "script (the model side, exit 7); replay_mismatch (exit 4); "
                                                  "turns | errors (the model misbehaved, exit 2)")
    diff: str = Field("", description="replay_mismatch: how the request differs from the recorded one")
    unverified: bool = Field(False, description="the model claimed in words to have acted, without a tool call: "
                                                "its text is shown as unverified and nothing ran")
    outcome: str | None = None  # answer | clarify | refuse, when the model said so (see ModelReply)
    options: list[str] = Field(default_factory=list)


# A model's words claiming it acted ("Done: I restarted logger on b."): planning never runs a mutating
# call, so with no queued step such a claim is always false.
_CLAIM = re.compile(
    r"^\W*(done|success|completed|finished)\b"
    r"|\bI(?:'ve| have| just)?\s+(?:\w+\s+){0,2}?(restarted|stopped|started|killed|rebooted|redeployed|deployed|"
    r"executed|applied|ran|fixed|performed|updated|changed|reset|cleared|removed|deleted|launched|terminated)\b"
    r"|\b(has|have|was|were)\s+(?:now\s+)?(?:been\s+)?(?:successfully\s+)?(restarted|stopped|killed|rebooted|"
    r"redeployed|executed|applied|terminated|launched|deleted|removed)\b"
    r"|\bsuccessfully\s+\w+ed\b", re.IGNORECASE | re.MULTILINE)


def claims_action(text: str) -> bool:
    """Does the model's text say it did something (a claim no tool call backs)?"""
    return bool(_CLAIM.search(text or ""))


class Planner:
    """Plans one request (and its revisions after rejection) with one model over one connection."""

    def __init__(self, model: Model, conn: ClusterConnection, *, max_turns: int = 8, max_errors: int = 3,
                 max_nodes: int = 10, result_chars: int = 4000, timeout: float = 10.0,
                 max_calls_per_turn: int = 16, nonce: str | None = None, record: Recorder | None = None,
                 budget: float | None = None) -> None:
        self.model = model
        self.conn = conn
        self.max_turns = max_turns
        self.max_errors = max_errors
        self.max_nodes = max_nodes
        self.result_chars = result_chars
        self.timeout = timeout
        self.max_calls_per_turn = max_calls_per_turn
        self.nonce = nonce or secrets.token_hex(6)
        self.record = record or (lambda kind, data: None)
        self.budget = budget
        self.messages: list[dict[str, Any]] = []
        self._ranked: list[tuple[FindNodesArgs, list[str]]] = []  # find_nodes calls: the query, the ids returned
        self.request = ""
        self.tools = openai_tools()

    async def plan(self, request: str) -> PlanResult:
        """Start a conversation for ``request`` and run it to a plan (or a clear failure)."""
        self.request = request
        self._ranked = []
        toolbox = Toolbox(self.conn, timeout=self.timeout, max_fanout=self.max_nodes)
        try:
            view = await toolbox.view()
        except ToolError as e:
            return PlanResult(ok=False, error=e.message, message=f"Cannot plan: {e.message}")
        self._bind(view)
        summary = summarize(view)
        # The summary holds node-supplied names (processes, services, the node id): data, inside the markers.
        cluster = wrap_untrusted(summary, nonce=self.nonce, tool="cluster_summary", status="ok")
        self.messages = [{"role": "system", "content": load_prompt("system")},
                         {"role": "user", "content": request_message(request, cluster)}]
        return await self._run(toolbox)

    async def revise(self, feedback: str) -> PlanResult:
        """Continue after the operator rejected the plan, with their words."""
        if not self.messages:
            raise RuntimeError("revise() before plan()")
        self.messages.append({"role": "user", "content": feedback_message(feedback)})
        toolbox = Toolbox(self.conn, timeout=self.timeout, max_fanout=self.max_nodes)
        try:
            self._bind(await toolbox.view())
        except ToolError as e:
            return PlanResult(ok=False, error=e.message, message=f"Cannot plan: {e.message}")
        return await self._run(toolbox)

    def _bind(self, view: ClusterView) -> None:
        """A model that reads the cluster itself (the offline parser's lexicon) gets the same view."""
        bind = getattr(self.model, "bind_view", None)
        if callable(bind):
            bind(view, max_nodes=self.max_nodes)

    def _fail(self, why: str, observations: list[Observation], turns: int, failure: str = "model",
              diff: str = "") -> PlanResult:
        msg = f"Planning failed: {why}. Nothing was executed."
        self.record("failure", {"error": why, "turns": turns, "failure": failure})
        return PlanResult(ok=False, error=why, message=msg, observations=observations, turns=turns, failure=failure,
                          diff=diff)

    async def _ask(self, turn: int, deadline: float | None) -> Any:
        """One model turn, bounded by the plan's deadline whatever the model does."""
        name = getattr(self.model, "name", "?")
        report("status", f"asking {name}… turn {turn}/{self.max_turns}")
        token = DEADLINE.set(deadline)
        try:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                async with asyncio.timeout(left):
                    return await self.model.complete(self.messages, self.tools)
            except TimeoutError:
                raise ModelError(f"{name}: no answer before the planning budget of {self.budget:g} s ran out",
                                 kind="budget") from None
        finally:
            DEADLINE.reset(token)

    async def _run(self, toolbox: Toolbox) -> PlanResult:
        deadline = None if self.budget is None else time.monotonic() + self.budget
        steps: list[PlanStep] = []
        observations: list[Observation] = []
        errors = 0
        last_error = ""
        repeats: Counter[tuple[str, str]] = Counter()
        for turn in range(1, self.max_turns + 1):
            asked = json.loads(json.dumps(self.messages, default=str))
            try:
                reply = await self._ask(turn, deadline)
            except ModelError as e:
                if e.kind == "replay_mismatch":
                    return self._fail(str(e), observations, turn, "replay_mismatch", e.diff)
                return self._fail(f"the model failed: {e}", observations, turn, e.kind)
            self.record("model_turn", {"turn": turn, "request": {"messages": asked, "tools": self.tools},
                                       "reply": reply.model_dump(mode="json")})
            self.messages.append(reply.message())
            if not reply.tool_calls:
                text = (reply.content or "").strip()
                unverified = not steps and claims_action(text)
                plan = Plan(request=self.request, steps=steps, summary=text,
                            model=getattr(self.model, "name", "?")).seal()
                self.record("plan", {"plan": plan.model_dump(mode="json"), "unverified": unverified})
                message = plan.summary
                if unverified:
                    message = ("The model answered without acting: nothing ran. Its text, unverified: "
                               f"\u201c{text}\u201d")
                return PlanResult(ok=True, plan=plan, message=message, observations=observations, turns=turn,
                                  unverified=unverified, outcome=reply.outcome, options=list(reply.options))
            for i, tc in enumerate(reply.tool_calls):
                if i < self.max_calls_per_turn:
                    status, payload = await self._handle(tc, toolbox, steps, repeats)
                else:  # every call needs an answer; the excess is refused, once counted as an error
                    status, payload = "error", {"code": "too_many_calls", "message": f"at most {self.max_calls_per_turn} "
                                                "tool calls per turn; this one was not run"}
                    if i > self.max_calls_per_turn:
                        payload = {"code": "too_many_calls", "message": "not run"}
                        status = "skipped"
                if status == "error":
                    errors += 1
                    last_error = payload.get("message", "")
                text = to_text(payload, self.result_chars)
                self.messages.append({"role": "tool", "tool_call_id": tc.id,
                                      "content": wrap_untrusted(text, nonce=self.nonce, tool=tc.name, status=status)})
                observations.append(Observation(turn=turn, tool=tc.name, arguments=tc.arguments,
                                                status=status, result=payload))
                self.record("tool", {"turn": turn, "id": tc.id, "name": tc.name, "arguments": tc.arguments,
                                     "status": status, "result": json.loads(json.dumps(payload, default=str))})
            if errors > self.max_errors:
                return self._fail(f"the model made {errors} invalid tool calls (last: {last_error})",
                                  observations, turn, "errors")
        return self._fail(f"the model did not finish within {self.max_turns} turns", observations, self.max_turns,
                          "turns")

    async def _handle(self, tc: ToolCall, toolbox: Toolbox, steps: list[PlanStep],
                      repeats: Counter[tuple[str, str]]) -> tuple[str, dict[str, Any]]:
        try:
            args = toolbox.parse(tc.name, tc.arguments)
            key = (tc.name, args.model_dump_json())
            repeats[key] += 1
            if repeats[key] > 2:
                raise ToolError("repeated_call", f"this exact {tc.name} call was already made {repeats[key] - 1} "
                                                 "times; use its result or finish")
            if isinstance(args, (CallArgs, BroadcastArgs)):
                prepared = await toolbox.prepare(args)
                if not prepared.mutates:
                    return "ok", (await toolbox.execute(prepared)).model_dump(mode="json", exclude_none=True)
                return "queued", self._queue(prepared, steps, await toolbox.view())
            result = await toolbox.run(tc.name, args)
            if isinstance(args, FindNodesArgs):
                ids = [n.get("id") for n in result.get("nodes", []) if isinstance(n, dict)]
                self._ranked.append((args, [i for i in ids if isinstance(i, str)]))
            return "ok", result
        except ToolError as e:
            return "error", e.to_dict()
        except Exception as e:  # noqa: BLE001 - a bug in a tool must not end the loop
            log.exception("tool %s crashed", tc.name)
            return "error", {"code": "internal", "message": f"{type(e).__name__}: {e}"}

    def _queue(self, prepared: PreparedCall, steps: list[PlanStep], view: ClusterView) -> dict[str, Any]:
        try:
            fact = make_fact(view, prepared.node, prepared.selector)
        except SelectionError as e:
            raise ToolError("no_match", str(e)) from None
        criterion = None
        if prepared.selector is not None:
            fact.origin = "selector"
        elif prepared.node:
            fact.origin, criterion = self._named(prepared.node, view, fact)
        for s in steps:
            if (s.service, s.method, s.params, s.targets) == (prepared.service, prepared.method,
                                                              prepared.params, fact.targets):
                raise ToolError("duplicate_step", f"this action is already queued as step {s.index}")
        touched = set().union(*(s.targets for s in steps), fact.targets) if steps else set(fact.targets)
        if len(touched) > self.max_nodes:
            raise ToolError("too_many_nodes", f"the plan would touch {len(touched)} nodes; at most "
                                              f"{self.max_nodes} per plan. Narrow the targets.")
        step = PlanStep(index=len(steps) + 1, kind=prepared.kind, node=prepared.node, selector=prepared.selector,
                        service=prepared.service, method=prepared.method, params=prepared.params,
                        reason=prepared.reason, mutates=True, fact=fact, criterion=criterion)
        steps.append(step)
        return {"queued_step": step.index, "status": "queued for operator approval; NOT executed",
                "targets": fact.targets, "chosen": fact.why}

    def _named(self, node: str, view: ClusterView, fact: Any) -> tuple[Literal["request", "model"],
                                                                        NodeSelector | None]:
        """Who named ``node``, and the criterion to re-check when the model chose it by ranking.

        A node id the operator wrote in the request is theirs.  Otherwise the model named it; if the model had ranked nodes
        (``find_nodes`` sorted by a metric) and this node came first, that
        ranking is the model's reason, recorded as a selector and re-resolved
        before execution, so "b is the coolest" is checked again, not trusted.
        """
        if re.search(rf"(?<![\w.-]){re.escape(node)}(?![\w-])", self.request):
            fact.why = f"named explicitly: {node}"
            return "request", None
        for q, ids in reversed(self._ranked):
            if not ids or ids[0] != node or q.sort_by in (None, "id"):
                continue
            sel = NodeSelector(where=q.where, sort_by=q.sort_by, order=q.order, pick="one")
            try:
                r = resolve(view, sel)
            except SelectionError:
                continue
            if r.targets == [node]:
                fact.key = r.key
                fact.values = {t: r.values.get(t) for t in r.candidates}
                fact.why = (f"named by the model: {node}, ranked first by its find_nodes "
                            f"({describe_selector(sel)}); re-checked before execution")
                return "model", sel
        fact.why = f"named by the model: {node} (not named in the request; check it)"
        return "model", None
