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

import asyncio
import contextvars
import itertools
import json
import logging
import os
import time
import uuid
from typing import Any, Callable, Iterable, Literal, Protocol, runtime_checkable

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
    """The model backend failed: nothing was planned.

    ``kind`` says how: ``provider`` (an HTTP error or a refused request),
    ``timeout`` (no answer within the per-request timeout, retries included),
    ``budget`` (the plan's wall-clock budget ran out), ``malformed`` (an answer
    that is not a chat completion), ``replay_mismatch`` (a replayed session was
    asked something it did not record), ``script`` (a scripted model ran out).
    """

    def __init__(self, message: str, *, kind: str = "provider", diff: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.diff = diff


#: The wall-clock deadline (``time.monotonic()``) of the plan being made; a model never waits past it.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("cloudisense_model_deadline", default=None)
#: Where a model reports progress ("retrying in 2 s after HTTP 500") and streamed text; set by the front end.
PROGRESS: contextvars.ContextVar[Callable[[str, str], None] | None] = contextvars.ContextVar(
    "cloudisense_model_progress", default=None)


def report(kind: str, text: str) -> None:
    """Tell the front end (if it listens): ``kind`` is ``status`` (a line of progress) or ``text`` (streamed)."""
    cb = PROGRESS.get()
    if cb is not None:
        cb(kind, text)


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
            raise ModelError("the scripted model has no more replies", kind="script") from None
        return as_reply(nxt)

    @classmethod
    def repeating(cls, reply: Any) -> ScriptedModel:
        """The same reply forever (a model stuck in a loop)."""
        return cls(itertools.repeat(reply))


_LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "httpx", "httpcore", "openai")


def quiet_litellm(debug: bool = False) -> None:
    """litellm's loggers to stderr, and quiet unless ``debug``.

    litellm attaches its own handler that writes records below WARNING to
    *stdout*, which breaks ``--json``.  Here its handlers are removed and its
    records propagate to the root logger, which the CLI points at stderr.
    """
    for name in _LITELLM_LOGGERS:
        lg = logging.getLogger(name)
        for h in list(lg.handlers):
            lg.removeHandler(h)
        lg.propagate = True
        lg.setLevel(logging.DEBUG if debug else logging.WARNING)


def _status_of(e: BaseException) -> int | None:
    code = getattr(e, "status_code", None)
    return code if isinstance(code, int) else None


def _retry_after(e: BaseException) -> float | None:
    """Seconds from a ``retry-after`` header on the provider's error response, if any."""
    for headers in (getattr(e, "litellm_response_headers", None), getattr(getattr(e, "response", None), "headers", None)):
        try:
            v = headers.get("retry-after") if headers is not None else None
        except Exception:  # noqa: BLE001 - odd header containers
            v = None
        if v is not None:
            try:
                return max(0.0, float(v))
            except ValueError:
                return None
    return None


def _retryable(e: BaseException) -> bool:
    """Timeouts, rate limits, 5xx and lost connections are worth another try; 4xx (bad key, bad request) are not."""
    if isinstance(e, TimeoutError):
        return True
    code = _status_of(e)
    if code is not None:
        return code == 429 or code >= 500 or code == 408
    return type(e).__name__ in ("APIConnectionError", "Timeout", "APITimeoutError", "ServiceUnavailableError",
                                "InternalServerError", "RateLimitError")


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


class LiteLLMModel:
    """Any litellm provider.  ``model`` is a litellm model string, e.g. ``openai/gpt-4o-mini``.

    ``api_base`` points it at any OpenAI-compatible server (vLLM, llama.cpp's
    server, Ollama, LM Studio); ``api_key`` is the key (the CLI reads it from the
    variable ``api_key_env`` names).  Every request is bounded by ``timeout``
    seconds; failed requests are retried ``max_retries`` times (timeouts, 429
    with its ``retry-after``, 5xx, lost connections), never past the plan's
    deadline (:data:`DEADLINE`).  litellm's and the OpenAI SDK's own retries are
    off, so these are the only ones.

    Tools are sent in strict mode with ``parallel_tool_calls: false``;
    ``drop_params`` lets litellm drop that for providers that refuse it.  With
    ``stream`` the text is reported (:func:`report`) as it arrives.  For
    HTTP-level recording (vcrpy) set ``litellm.disable_aiohttp_transport = True``
    so requests go through httpx.
    """

    def __init__(self, model: str, *, api_base: str | None = None, api_key: str | None = None,
                 timeout: float = 30.0, max_retries: int = 2, temperature: float = 0.0, stream: bool = False,
                 **kwargs: Any) -> None:
        self.name = model
        self.timeout = timeout
        self.max_retries = max_retries
        self.stream = stream
        self.parallel_flag = True  # send parallel_tool_calls: false until the provider refuses the parameter
        self.kwargs: dict[str, Any] = {"temperature": temperature, **kwargs}
        if api_base:
            self.kwargs["api_base"] = api_base
        if api_key:
            self.kwargs["api_key"] = api_key
        elif api_base:
            # a local server needs no key, but the OpenAI client insists on one
            self.kwargs["api_key"] = os.environ.get("OPENAI_API_KEY") or "none"

    @staticmethod
    def _litellm() -> Any:
        # The cost map would otherwise be fetched from the network on import.
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        import contextlib
        import sys

        # litellm logs (and prints) while it imports, through a handler that writes to stdout
        first = "litellm" not in sys.modules
        with contextlib.redirect_stdout(sys.stderr):
            import litellm
        if first:
            import gc

            # litellm's hundreds of thousands of long-lived objects: out of every later collection, which
            # also keeps exit (and Ctrl-C) from pausing seconds to collect them
            gc.freeze()

        litellm.suppress_debug_info = True
        quiet_litellm(logging.getLogger().getEffectiveLevel() <= logging.DEBUG)
        return litellm

    async def _bounded(self, litellm: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]],
                       wait: float) -> ModelReply:
        """One request, bounded by ``wait`` seconds.  A cancel from outside (Ctrl-C) that the provider's
        library turned into an error of its own (a lost connection, which is retryable) is a cancel again:
        planning stops instead of asking the model again."""
        try:
            async with asyncio.timeout(wait):
                return await self._once(litellm, messages, tools)
        except Exception as e:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise asyncio.CancelledError() from e
            raise

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        litellm = self._litellm()
        attempts = 1 + self.max_retries
        attempt = 0
        last: BaseException | None = None
        while True:
            attempt += 1
            deadline = DEADLINE.get()
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise ModelError(f"{self.name}: the planning budget ran out"
                                 + (f" (last error: {_short(last)})" if last else ""), kind="budget")
            wait = self.timeout if left is None else min(self.timeout, left)
            try:
                return await self._bounded(litellm, messages, tools, wait)
            except TimeoutError as e:
                if left is not None and wait < self.timeout:
                    raise ModelError(f"{self.name}: no answer before the planning budget ran out", kind="budget") from e
                last, why = e, f"no answer within {self.timeout:g} s"
            except ModelError:
                raise
            except Exception as e:  # noqa: BLE001 - classified below
                if self.parallel_flag and _status_of(e) == 400 and "parallel_tool_calls" in str(e):
                    # a provider litellm believes takes the parameter refused it: drop it and ask again at
                    # once (this happens at most once, and is not a failed attempt)
                    self.parallel_flag = False
                    report("status", "the provider refused parallel_tool_calls; asking again without it")
                    attempt -= 1
                    continue
                last = e
                if not _retryable(e):
                    raise ModelError(f"{self.name}: {_short(e)}", kind="provider") from e
                code = _status_of(e)
                why = f"HTTP {code}" if code else type(e).__name__
            if attempt >= attempts:
                break
            delay = _retry_after(last) if not isinstance(last, TimeoutError) else None
            delay = min(30.0, delay if delay is not None else 0.5 * 2 ** (attempt - 1))
            deadline = DEADLINE.get()
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise ModelError(f"{self.name}: {why}; a retry in {delay:g} s would pass the planning budget",
                                 kind="budget")
            report("status", f"{why}; retrying in {delay:g} s (attempt {attempt + 1}/{attempts})")
            await asyncio.sleep(delay)
        kind = "timeout" if isinstance(last, TimeoutError) else "provider"
        detail = f"no answer within {self.timeout:g} s" if kind == "timeout" else _short(last or Exception())
        raise ModelError(f"{self.name}: {detail} ({attempts} attempt{'s' if attempts > 1 else ''})", kind=kind)

    async def _once(self, litellm: Any, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        extra: dict[str, Any] = {}
        if tools:
            extra = {"tools": tools, "tool_choice": "auto"}
            if self.parallel_flag:
                extra["parallel_tool_calls"] = False
        resp = await litellm.acompletion(model=self.name, messages=messages, timeout=self.timeout, max_retries=0,
                                         num_retries=0, drop_params=True, stream=self.stream, **extra, **self.kwargs)
        if self.stream:
            chunks = []
            async for chunk in resp:
                chunks.append(chunk)
                try:
                    delta = chunk.choices[0].delta.content
                except (AttributeError, IndexError):
                    delta = None
                if delta:
                    report("text", delta)
            resp = litellm.stream_chunk_builder(chunks, messages=messages)
            if resp is None:
                raise ModelError(f"{self.name}: the stream ended without an answer", kind="malformed")
        try:
            msg = resp.choices[0].message
        except (AttributeError, IndexError) as e:
            raise ModelError(f"{self.name}: the answer is not a chat completion", kind="malformed") from e
        calls = [ToolCall(id=c.id or f"call_{i}", name=c.function.name or "",
                          arguments=c.function.arguments or "{}")
                 for i, c in enumerate(getattr(msg, "tool_calls", None) or [])]
        return ModelReply(content=msg.content, tool_calls=calls)
