"""The planner loop: model ↔ tools until the model stops calling tools.

Per turn the model sees the conversation and the tool schemas.  Each tool
call is parsed and validated by the :class:`~cloudisense.tools.Toolbox`:

- read-only tools (and ``call``/``broadcast`` of read-only methods) run at
  once; their results go back delimited as untrusted data and size-capped;
- ``call``/``broadcast`` of a mutating method is validated against the live
  cluster and queued as a :class:`PlanStep`; nothing runs;
- anything wrong (unknown tool, malformed arguments, unknown node, bad
  params, a repeated call) goes back as an error result.

Budgets bound the loop: ``max_turns`` model turns and ``max_errors`` bad
tool calls; past either, planning fails with a clear message and no plan, so
nothing can be approved, let alone executed.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import Counter
from typing import Any, Callable

from pydantic import BaseModel, Field

from cloudisense.prompts import load as load_prompt
from cloudisense.tools import (BroadcastArgs, CallArgs, ClusterConnection, ClusterView, PreparedCall, SelectionError,
                               ToolError, Toolbox, openai_tools, summarize, to_text)

from ._messages import feedback_message, request_message, wrap_untrusted
from ._model import Model, ModelError, ToolCall
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
    outcome: str | None = None  # answer | clarify | refuse, when the model said so (see ModelReply)
    options: list[str] = Field(default_factory=list)


class Planner:
    """Plans one request (and its revisions after rejection) with one model over one connection."""

    def __init__(self, model: Model, conn: ClusterConnection, *, max_turns: int = 8, max_errors: int = 3,
                 max_nodes: int = 10, result_chars: int = 4000, timeout: float = 10.0,
                 max_calls_per_turn: int = 16, nonce: str | None = None, record: Recorder | None = None) -> None:
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
        self.messages: list[dict[str, Any]] = []
        self.request = ""
        self.tools = openai_tools()

    async def plan(self, request: str) -> PlanResult:
        """Start a conversation for ``request`` and run it to a plan (or a clear failure)."""
        self.request = request
        toolbox = Toolbox(self.conn, timeout=self.timeout, max_fanout=self.max_nodes)
        try:
            view = await toolbox.view()
        except ToolError as e:
            return PlanResult(ok=False, error=e.message, message=f"Cannot plan: {e.message}")
        self._bind(view)
        summary = summarize(view)
        self.messages = [{"role": "system", "content": load_prompt("system")},
                         {"role": "user", "content": request_message(request, summary)}]
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

    def _fail(self, why: str, observations: list[Observation], turns: int) -> PlanResult:
        msg = f"Planning failed: {why}. Nothing was executed."
        self.record("failure", {"error": why, "turns": turns})
        return PlanResult(ok=False, error=why, message=msg, observations=observations, turns=turns)

    async def _run(self, toolbox: Toolbox) -> PlanResult:
        steps: list[PlanStep] = []
        observations: list[Observation] = []
        errors = 0
        last_error = ""
        repeats: Counter[tuple[str, str]] = Counter()
        for turn in range(1, self.max_turns + 1):
            try:
                reply = await self.model.complete(self.messages, self.tools)
            except ModelError as e:
                return self._fail(f"the model failed: {e}", observations, turn)
            self.record("model_turn", {"turn": turn, "reply": reply.model_dump(mode="json")})
            self.messages.append(reply.message())
            if not reply.tool_calls:
                plan = Plan(request=self.request, steps=steps, summary=(reply.content or "").strip(),
                            model=getattr(self.model, "name", "?")).seal()
                self.record("plan", {"plan": plan.model_dump(mode="json")})
                return PlanResult(ok=True, plan=plan, message=plan.summary, observations=observations, turns=turn,
                                  outcome=reply.outcome, options=list(reply.options))
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
                                  observations, turn)
        return self._fail(f"the model did not finish within {self.max_turns} turns", observations, self.max_turns)

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
            return "ok", await toolbox.run(tc.name, args)
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
                        reason=prepared.reason, mutates=True, fact=fact)
        steps.append(step)
        return {"queued_step": step.index, "status": "queued for operator approval; NOT executed",
                "targets": fact.targets, "chosen": fact.why}
