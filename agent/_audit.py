"""An append-only JSONL audit log of agent decisions.

One record per line: ``{"ts", "event", "session", "user", "host", ...}``.
Events: ``request``, ``plan``, ``planning_failed``, ``approval``,
``rejection``, ``execution``, ``stale``, ``step``.  The file is opened in
append mode for each record and flushed to disk before returning, so a crash
loses at most the record being written and never rewrites older ones.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any


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
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        rec = {"ts": time.time(), "event": event, "session": self.session, "user": self.user,
               "host": self.host, **fields}
        line = json.dumps(rec, ensure_ascii=False, default=str, separators=(",", ":"))
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())
        return rec


def read_audit(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
