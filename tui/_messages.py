"""Messages the console posts about the outside world (the link, the agent), for handlers and tests."""

from __future__ import annotations

from typing import Any

from textual.message import Message


class LinkChanged(Message):
    """The link to the node changed state (connecting, connected, reconnecting, failed)."""

    def __init__(self, state: str, node: str = "", detail: str = "") -> None:
        super().__init__()
        self.state = state
        self.node = node
        self.detail = detail


class StatsArrived(Message):
    """A ``$sys/stats`` sample from the connected node."""

    def __init__(self, stats: dict[str, Any]) -> None:
        super().__init__()
        self.stats = stats


class PlanReady(Message):
    """The agent answered a request (``result`` is a :class:`cloudisense.agent.PlanResult`)."""

    def __init__(self, request: str, result: Any) -> None:
        super().__init__()
        self.request = request
        self.result = result


class ModelProgress(Message):
    """While planning: ``kind`` ``status`` (a line of progress: "asking M… turn 2/8") or ``text`` (the
    model's words as they stream in, one piece per message)."""

    bubble = False   # the screen shows it; nothing above needs every piece

    def __init__(self, kind: str, text: str) -> None:
        super().__init__()
        self.kind = kind
        self.text = text


class PlanRejected(Message):
    def __init__(self, plan_hash: str) -> None:
        super().__init__()
        self.plan_hash = plan_hash


class PlanEdited(Message):
    def __init__(self, plan: Any, index: int) -> None:
        super().__init__()
        self.plan = plan
        self.index = index


class StepUpdate(Message):
    """One call of an approved step finished (``result`` is a StepResult as a dict)."""

    def __init__(self, result: dict[str, Any]) -> None:
        super().__init__()
        self.result = result


class ExecutionFinished(Message):
    """The executor returned (``report`` is an :class:`cloudisense.agent.ExecutionReport`, None if refused)."""

    def __init__(self, plan_hash: str, report: Any, error: str = "") -> None:
        super().__init__()
        self.plan_hash = plan_hash
        self.report = report
        self.error = error
