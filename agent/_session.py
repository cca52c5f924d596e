"""Session recording (``--record FILE``) and replay.

A session file is JSONL, one event per line, in order::

    {"kind": "session", "version": 2, "request": ..., "model": ..., "prompt_version": ..., "nonce": ...}
    {"kind": "model_turn", "turn": 1, "request": {"messages": [...], "tools": [...]},
     "reply": {"content": ..., "tool_calls": [...]}}
    {"kind": "tool", "turn": 1, "name": ..., "arguments": ..., "status": ..., "result": ...}
    {"kind": "plan", "plan": {...}}
    {"kind": "approval", ...} | {"kind": "rejection", "feedback": ...}
    {"kind": "step", ...} ... {"kind": "execution", "report": {...}}

Each ``model_turn`` holds the request sent to the model (messages and tool
schemas, secrets filtered) and its reply.  Replay re-runs the real planner
loop against a live cluster with a :class:`ReplayModel`: each recorded reply
is given only to the request it answered.  If the live request differs (the
cluster changed, so a tool result or the cluster summary differs; or the
prompt or the tools changed), replay stops with a diff of the first request
that differs: a recorded answer to another question proves nothing.  The
session's nonce is recorded so the untrusted-data markers match.  Recorded
rejections are re-applied (their feedback drives the same revisions) and
approval is asked again: a recorded approval is never reused.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cloudisense.prompts import PROMPT_VERSION

from ._model import ModelError, ModelReply, ScriptedModel

SESSION_VERSION = 2
_SECRETS = re.compile(r"(sk-[A-Za-z0-9_-]{8,}|Bearer\s+[A-Za-z0-9._~+/=-]{8,}|(?i:api[_-]?key)[\"']?\s*[:=]\s*[\"']?[^\s\"',}]{6,})")


def filter_secrets(obj: Any, secrets: tuple[str, ...] = ()) -> Any:
    """``obj`` with API keys (known values, ``sk-…``, bearer tokens, ``api_key=…``) replaced by ``[filtered]``."""
    if isinstance(obj, str):
        for v in secrets:
            if v and len(v) >= 6:
                obj = obj.replace(v, "[filtered]")
        return _SECRETS.sub("[filtered]", obj)
    if isinstance(obj, list):
        return [filter_secrets(x, secrets) for x in obj]
    if isinstance(obj, dict):
        return {k: filter_secrets(v, secrets) for k, v in obj.items()}
    return obj


class SessionRecorder:
    """Writes a session as JSONL, one flushed line per event."""

    def __init__(self, path: str | os.PathLike[str], *, secrets: tuple[str, ...] = ()) -> None:
        self.path = Path(path)
        self.secrets = tuple(s for s in secrets if s)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", encoding="utf-8")

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        event = filter_secrets({"kind": kind, "ts": time.time(), **data}, self.secrets)
        self._f.write(json.dumps(event, ensure_ascii=False, default=str) + "\n")
        self._f.flush()

    def start(self, request: str, model: str, url: str | None = None, nonce: str | None = None) -> None:
        self("session", {"version": SESSION_VERSION, "request": request, "model": model, "url": url,
                         "prompt_version": PROMPT_VERSION, "nonce": nonce})

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordedTurn(BaseModel):
    request: dict[str, Any]
    reply: ModelReply


def _lines(obj: Any) -> list[str]:
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False, default=str).splitlines()


def request_diff(recorded: dict[str, Any], live: dict[str, Any], max_lines: int = 60) -> str:
    """A unified diff of a recorded model request and a live one (messages first, then tools)."""
    out: list[str] = []
    for part in ("messages", "tools"):
        a, b = recorded.get(part), live.get(part)
        if a != b:
            out += list(difflib.unified_diff(_lines(a), _lines(b), f"recorded {part}", f"live {part}", n=2,
                                             lineterm=""))
    if len(out) > max_lines:
        out = out[:max_lines] + [f"... ({len(out) - max_lines} more diff lines)"]
    return "\n".join(out)


class ReplayModel:
    """Answers with the recorded replies, each only to the very request it answered when recorded."""

    def __init__(self, turns: list[RecordedTurn], *, name: str, secrets: tuple[str, ...] = ()) -> None:
        self.turns = turns
        self.name = name
        self.secrets = secrets
        self.used = 0

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        n = self.used + 1
        if self.used >= len(self.turns):
            raise ModelError(f"replay: turn {n} was not recorded (the recording ends after {len(self.turns)} "
                             "model turns): the conversation went further than when it was recorded",
                             kind="replay_mismatch")
        turn = self.turns[self.used]
        live = filter_secrets(json.loads(json.dumps({"messages": messages, "tools": tools}, default=str)),
                              self.secrets)
        recorded = {"messages": turn.request.get("messages"), "tools": turn.request.get("tools")}
        if live != recorded:
            raise ModelError(f"replay: the request of model turn {n} differs from the recording (the cluster or "
                             "the prompt changed), so the recorded answer does not apply", kind="replay_mismatch",
                             diff=request_diff(recorded, live))
        self.used += 1
        return turn.reply


class RecordedSession(BaseModel):
    request: str
    model: str = ""
    url: str | None = None
    prompt_version: str = ""
    nonce: str | None = None
    turns: list[RecordedTurn] = Field(default_factory=list)
    replies: list[ModelReply] = Field(default_factory=list)
    rejections: list[str] = Field(default_factory=list)
    plans: list[dict[str, Any]] = Field(default_factory=list)
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    executions: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)

    def model_for_replay(self) -> ReplayModel:
        """The model side of the session: each recorded reply answers only its recorded request."""
        return ReplayModel(self.turns, name=f"replay of {self.model or 'a session'}")

    def scripted(self) -> ScriptedModel:
        """The recorded replies in order, whatever is asked (for tests of the loop, not evidence of anything)."""
        return ScriptedModel(list(self.replies), name=f"replies of {self.model or 'a session'}")


def load_session(path: str | os.PathLike[str]) -> RecordedSession:
    events = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                try:
                    events.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: not JSON ({e.msg})") from None
    head = next((e for e in events if e.get("kind") == "session"), None)
    if head is None:
        raise ValueError(f"{path}: no session record (is this a --record file?)")
    if head.get("version") == 1:
        raise ValueError(f"{path}: session format 1 holds the model's replies but not the requests they "
                         "answered, so a replay would prove nothing; record it again with ask --record")
    if head.get("version") != SESSION_VERSION:
        raise ValueError(f"{path}: session format version {head.get('version')}, expected {SESSION_VERSION}")
    turns = [e for e in events if e.get("kind") == "model_turn"]
    return RecordedSession(
        request=head["request"], model=head.get("model", ""), url=head.get("url"),
        prompt_version=head.get("prompt_version", ""), nonce=head.get("nonce"),
        turns=[RecordedTurn(request=e.get("request") or {}, reply=ModelReply.model_validate(e["reply"]))
               for e in turns],
        replies=[ModelReply.model_validate(e["reply"]) for e in turns],
        rejections=[e.get("feedback", "") for e in events if e.get("kind") == "rejection"],
        plans=[e["plan"] for e in events if e.get("kind") == "plan"],
        approvals=[e for e in events if e.get("kind") == "approval"],
        executions=[e["report"] for e in events if e.get("kind") == "execution"],
        events=events)
