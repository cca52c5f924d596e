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
