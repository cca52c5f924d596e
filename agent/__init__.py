"""CloudiSENSE operations agent: models, planner loop, plans and approval, executor, audit, sessions.

Flat public API over private modules::

    from cloudisense.agent import Agent, OfflineModel, approve
    agent = Agent(client, OfflineModel(), audit=AuditLog("audit.jsonl"))
    result = await agent.plan("restart logger on coolest node")
    approval = agent.approve(result.plan, via="terminal")     # the operator's decision
    report = await agent.execute(result.plan, approval)

Heavy dependencies (litellm, rich) are imported only when used.
"""

from ._agent import Agent, Decision, SessionOutcome, run_session
from ._audit import AuditLog, PastPlan, default_audit_path, past_plans, read_audit, step_targets, tail_records
from ._bench import PromptSize, count_tokens, measure_prompt_size
from ._executor import ExecutionReport, Executor, StepResult
from ._messages import defang, unwrap_untrusted, wrap_untrusted
from ._model import LiteLLMModel, Model, ModelError, ModelReply, ScriptedModel, ToolCall, as_reply
from ._offline import GRAMMAR_HELP, OfflineModel, ParseError, explain_request, parse_command
from ._plan import Approval, Fact, NotApproved, Plan, PlanStep, approve, check_approval, make_fact, recheck
from ._planner import Observation, PlanResult, Planner
from ._session import RecordedSession, ReplayModel, SessionRecorder, load_session
from ._settings import ModelSettings, SettingsError, build_model, load_model_settings


def make_model(spec: str | None) -> Model:
    """``offline`` (or empty) → :class:`OfflineModel`; anything else is a litellm model string, with the other
    model settings (api_base, timeout, retries, ...) from the ``CLOUDISENSE_*`` variables (see ``_settings``)."""
    if not spec or spec == "offline":
        return OfflineModel()
    model: Model = build_model(load_model_settings(None, {"model": spec}))
    return model


__all__ = [
    "Agent", "Approval", "AuditLog", "Decision", "ExecutionReport", "Executor", "Fact", "GRAMMAR_HELP",
    "LiteLLMModel", "Model", "ModelError", "ModelReply", "NotApproved", "Observation", "OfflineModel",
    "ModelSettings", "ParseError", "Plan", "PlanResult", "PlanStep", "Planner", "PromptSize", "RecordedSession",
    "ReplayModel", "SettingsError", "build_model", "load_model_settings",
    "ScriptedModel", "SessionOutcome", "SessionRecorder", "StepResult", "ToolCall", "approve", "as_reply",
    "check_approval", "count_tokens", "default_audit_path", "defang", "load_session", "make_fact", "make_model",
    "measure_prompt_size", "explain_request", "parse_command", "read_audit", "recheck", "run_session", "unwrap_untrusted",
    "wrap_untrusted", "PastPlan", "past_plans", "step_targets", "tail_records",
]
