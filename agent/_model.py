"""Model backends: one small protocol, three implementations.

A model gets the conversation (OpenAI chat-completions messages) and the tool
schemas and returns a :class:`ModelReply`: text, tool calls, or both.  The
planner loop is the same for every backend:

- :class:`LiteLLMModel`: any provider litellm knows (``openai/gpt-4o-mini``,
  ``anthropic/…``, ``ollama/…``); keys from the usual environment variables;
  litellm is imported on first use (it is heavy).
- :class:`~cloudisense.agent.OfflineModel`: the deterministic rules planner.
- :class:`ScriptedModel`: queued replies, for tests and session replay.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from typing import Any, Iterable, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field


class ToolCall(BaseModel):
    id: str = Field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")
    name: str
    arguments: str = "{}"  # JSON text, as providers send it (possibly malformed)


class ModelReply(BaseModel):
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    # What a final reply is, when the model says so (the offline planner does; an LLM leaves it None):
    # an answer to a question, a question back (with options), or a refusal.
    outcome: Literal["answer", "clarify", "refuse"] | None = None
    options: list[str] = Field(default_factory=list)

    def message(self) -> dict[str, Any]:
        """The assistant message for the conversation (OpenAI format)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [{"id": c.id, "type": "function",
                                  "function": {"name": c.name, "arguments": c.arguments}}
                                 for c in self.tool_calls]
        return msg


class ModelError(Exception):
    """The model backend failed (provider error, exhausted script)."""


@runtime_checkable
class Model(Protocol):
    name: str

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply: ...


def as_reply(x: Any) -> ModelReply:
    """Coerce the shorthand ScriptedModel accepts into a :class:`ModelReply`.

    ``"text"`` → a final answer; ``("tool", {args})`` or ``("tool", "raw json")``
    → one tool call; a list of such tuples → several; a dict → ``ModelReply``.
    """
    if isinstance(x, ModelReply):
        return x
    if isinstance(x, str):
        return ModelReply(content=x)
    if isinstance(x, tuple):
        return ModelReply(tool_calls=[_tc(x)])
    if isinstance(x, list):
        return ModelReply(tool_calls=[_tc(t) for t in x])
    if isinstance(x, dict):
        return ModelReply.model_validate(x)
    raise TypeError(f"can't make a model reply of {x!r}")


def _tc(t: Any) -> ToolCall:
    if isinstance(t, ToolCall):
        return t
    name, args = t[0], t[1] if len(t) > 1 else {}
    return ToolCall(name=name, arguments=args if isinstance(args, str) else json.dumps(args))


class ScriptedModel:
    """A model that replays queued replies, in order (any iterable, even an endless one).

    ``seen`` keeps the messages each turn was given, for assertions.  When the
    script runs out, :class:`ModelError` says so.
    """

    name = "scripted"

    def __init__(self, replies: Iterable[Any], *, name: str = "scripted") -> None:
        self._replies = iter(replies)
        self.name = name
        self.seen: list[list[dict[str, Any]]] = []
        self.tools_seen: list[list[dict[str, Any]]] = []

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        self.seen.append(json.loads(json.dumps(messages)))
        self.tools_seen.append(tools)
        try:
            nxt = next(self._replies)
        except StopIteration:
            raise ModelError("the scripted model has no more replies") from None
        return as_reply(nxt)

    @classmethod
    def repeating(cls, reply: Any) -> ScriptedModel:
        """The same reply forever (a model stuck in a loop)."""
        return cls(itertools.repeat(reply))


class LiteLLMModel:
    """Any litellm provider.  ``model`` is a litellm model string, e.g. ``openai/gpt-4o-mini``.

    Extra keyword arguments go to ``litellm.acompletion`` (``api_base``,
    ``temperature``, ...).  Tools are sent in strict mode; ``tool_choice`` is
    ``auto``.  Note: for HTTP-level recording (vcrpy) set
    ``litellm.disable_aiohttp_transport = True`` so requests go through httpx.
    """

    def __init__(self, model: str, **kwargs: Any) -> None:
        self.name = model
        self.kwargs = {"temperature": 0, "timeout": 60.0, **kwargs}

    @staticmethod
    def _litellm() -> Any:
        # The cost map would otherwise be fetched from the network on import.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import litellm

        litellm.suppress_debug_info = True
        return litellm

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        litellm = self._litellm()
        try:
            resp = await litellm.acompletion(model=self.name, messages=messages, tools=tools or None,
                                             tool_choice="auto" if tools else None, **self.kwargs)
        except Exception as e:  # noqa: BLE001 - every provider error ends the same way
            raise ModelError(f"{self.name}: {type(e).__name__}: {e}") from e
        msg = resp.choices[0].message
        calls = [ToolCall(id=c.id or f"call_{i}", name=c.function.name or "",
                          arguments=c.function.arguments or "{}")
                 for i, c in enumerate(getattr(msg, "tool_calls", None) or [])]
        return ModelReply(content=msg.content, tool_calls=calls)
