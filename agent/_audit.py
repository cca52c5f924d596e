"""An append-only JSONL audit log of agent decisions.

One record per line: ``{"ts", "event", "session", "user", "host", ...}``.
Events: ``request``, ``plan``, ``planning_failed``, ``approval``,
``rejection``, ``execution``, ``stale``, ``step``.  The file is opened in
append mode for each record and flushed to disk before returning, so a crash
loses at most the record being written and never rewrites older ones.

The log is created 0600 (an existing log of ours that is wider, as older
versions made it, is narrowed to 0600) and its directory, if this creates
it, 0700, whatever the umask.  It is never written through a symlink and
must be a regular file (:class:`~cloudisense.node._files.UnsafePath`
otherwise).
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloudisense.node._files import open_append, private_dir


def default_audit_path() -> Path:
    env = os.environ.get("CLOUDISENSE_AUDIT")
    if env:
        return Path(env)
    state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return state / "cloudisense" / "audit.jsonl"


def current_user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no passwd entry in some containers
        return os.environ.get("USER", "unknown")


class AuditLog:
    def __init__(self, path: str | os.PathLike[str], *, user: str | None = None, session: str | None = None) -> None:
        self.path = Path(path)
        self.user = user or current_user()
        self.session = session or uuid.uuid4().hex[:12]
        self.host = socket.gethostname()
        private_dir(self.path.parent)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        rec = {"ts": time.time(), "event": event, "session": self.session, "user": self.user,
               "host": self.host, **fields}
        line = json.dumps(rec, ensure_ascii=False, default=str, separators=(",", ":"))
        fd = open_append(self.path, 0o600)
        try:
            os.write(fd, (line + "\n").encode())  # one write: O_APPEND keeps concurrent writers' lines whole
            os.fsync(fd)
        finally:
            os.close(fd)
        return rec


def read_audit(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


TAIL_BYTES = 1 << 20  # the end of the log read for the console's history (a long log is not read whole)


def tail_records(path: str | os.PathLike[str], max_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The records in the last ``max_bytes`` of the log, oldest first (a line cut by the start, or one
    that is not a JSON object, is left out); [] when there is no log."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read(max_bytes)
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > max_bytes:
        lines = lines[1:]
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


@dataclass
class PastPlan:
    """One plan of the audit log, with what became of it (the console's History tab)."""

    plan_hash: str
    ts: float
    session: str
    user: str
    request: str
    steps: list[dict[str, Any]]
    summary: str = ""
    outcome: str = "not decided"   # done / failed / stale / refused / rejected / superseded / edited / approved
    detail: str = ""               # the outcome's message, the rejection's feedback, the edited plan's hash
    results: list[dict[str, Any]] = field(default_factory=list)
    by: str = ""                   # who approved or rejected it
    via: str = ""


def step_targets(step: dict[str, Any]) -> list[str]:
    """The nodes a step of an audit ``plan`` record runs on (its fact's targets, else its node)."""
    fact = step.get("fact")
    targets = fact.get("targets") if isinstance(fact, dict) else None
    if not isinstance(targets, list):
        targets = None
    return [str(t) for t in targets] if targets is not None else ([str(step["node"])] if step.get("node") else [])


def past_plans(records: list[dict[str, Any]], limit: int = 200) -> list[PastPlan]:
    """The plans in ``records`` (oldest first, as the log holds them), newest first, with their outcome.

    A plan's request is the last ``request`` of its session before it (a revision keeps its request).
    """
    plans: dict[str, PastPlan] = {}
    request: dict[str, str] = {}
    for r in records:
        ev, session, h = r.get("event"), str(r.get("session") or ""), r.get("plan_hash")
        if ev == "request":
            request[session] = str(r.get("request") or "")
        elif ev == "plan" and isinstance(h, str):
            steps = r.get("steps")
            if not isinstance(steps, list):
                steps = []
            plans.pop(h, None)   # the same plan made again: the newest one counts
            plans[h] = PastPlan(h, float(r.get("ts") or 0), session, str(r.get("user") or ""),
                                request.get(session, ""), [s for s in steps if isinstance(s, dict)],
                                str(r.get("summary") or ""), via=str(r.get("via") or ""))
        elif isinstance(h, str) and (p := plans.get(h)) is not None:
            _decided(p, ev, r)
    return list(reversed(plans.values()))[:limit]


def _decided(p: PastPlan, ev: Any, r: dict[str, Any]) -> None:
    if ev == "approval":
        p.outcome, p.by, p.via = "approved", str(r.get("approver") or ""), str(r.get("via") or p.via)
    elif ev == "execution":
        p.outcome, p.detail = str(r.get("status") or "?"), str(r.get("message") or "")
        p.results = [x for x in r.get("results") or [] if isinstance(x, dict)]
    elif ev == "refused":
        p.outcome, p.detail = "refused", str(r.get("reason") or "")
    elif ev == "rejection":
        feedback = str(r.get("feedback") or "")
        p.outcome = "superseded" if feedback.startswith("superseded") else "rejected"
        p.detail, p.by, p.via = feedback, str(r.get("by") or ""), str(r.get("via") or p.via)
    elif ev == "edit":
        p.outcome, p.detail = "edited", f"became plan {str(r.get('new_plan_hash') or '?')[:12]}"
