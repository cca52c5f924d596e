"""Session recording (``--record FILE``) and replay.

A session file is JSONL, one event per line, in order::

    {"kind": "session", "version": 1, "request": ..., "model": ..., "prompt_version": ...}
    {"kind": "model_turn", "turn": 1, "reply": {"content": ..., "tool_calls": [...]}}
    {"kind": "tool", "turn": 1, "name": ..., "arguments": ..., "status": ..., "result": ...}
    {"kind": "plan", "plan": {...}}
    {"kind": "approval", ...} | {"kind": "rejection", "feedback": ...}
    {"kind": "step", ...} ... {"kind": "execution", "report": {...}}

Replay re-runs the model side from the recorded ``model_turn`` replies (a
:class:`ScriptedModel`) against a live cluster, re-applies recorded
rejections (their feedback drives the same revisions) and asks for approval
again: a recorded approval is never reused.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from cloudisense.prompts import PROMPT_VERSION

from ._model import ModelReply, ScriptedModel

SESSION_VERSION = 1


class SessionRecorder:
    """Writes a session as JSONL, one flushed line per event."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", encoding="utf-8")

    def __call__(self, kind: str, data: dict[str, Any]) -> None:
        self._f.write(json.dumps({"kind": kind, "ts": time.time(), **data}, ensure_ascii=False, default=str) + "\n")
        self._f.flush()

    def start(self, request: str, model: str, url: str | None = None) -> None:
        self("session", {"version": SESSION_VERSION, "request": request, "model": model, "url": url,
                         "prompt_version": PROMPT_VERSION})

    def close(self) -> None:
        if not self._f.closed:
            self._f.close()

    def __enter__(self) -> SessionRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordedSession(BaseModel):
    request: str
    model: str = ""
    url: str | None = None
    prompt_version: str = ""
    replies: list[ModelReply] = Field(default_factory=list)
    rejections: list[str] = Field(default_factory=list)
    plans: list[dict[str, Any]] = Field(default_factory=list)
    approvals: list[dict[str, Any]] = Field(default_factory=list)
    executions: list[dict[str, Any]] = Field(default_factory=list)
    events: list[dict[str, Any]] = Field(default_factory=list)

    def model_for_replay(self) -> ScriptedModel:
        return ScriptedModel(list(self.replies), name=f"replay of {self.model or 'a session'}")


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
    if head.get("version") != SESSION_VERSION:
        raise ValueError(f"{path}: session format version {head.get('version')}, expected {SESSION_VERSION}")
    return RecordedSession(
        request=head["request"], model=head.get("model", ""), url=head.get("url"),
        prompt_version=head.get("prompt_version", ""),
        replies=[ModelReply.model_validate(e["reply"]) for e in events if e.get("kind") == "model_turn"],
        rejections=[e.get("feedback", "") for e in events if e.get("kind") == "rejection"],
        plans=[e["plan"] for e in events if e.get("kind") == "plan"],
        approvals=[e for e in events if e.get("kind") == "approval"],
        executions=[e["report"] for e in events if e.get("kind") == "execution"],
        events=events)
