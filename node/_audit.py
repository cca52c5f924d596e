"""The node's audit log of state-changing calls its WebSocket clients make.

Every call of a mutating method (``supervisor.stop``, ``pubsub.publish``, a
plug-in method marked ``mutates`` or an unknown one) that a WebSocket client
of this node makes — the dashboard's buttons, ``cloudisense call``, a script —
gets two JSONL records, before the call goes out and when its answer comes::

    {"ts", "event": "call",   "seq", "node", "who": {"role", "name", "client", "addr"},
     "target", "method", "params"}
    {"ts", "event": "result", "seq", "node", "ok": true|false, "error": {"code", "message"}?}

``who.name`` is the ``name`` of the ``[[auth.tokens]]`` entry the client
authenticated with (``"(no tokens configured)"`` on a node without tokens);
``client`` is what its hello called it (``dashboard-3``, ``cli-7``), ``addr``
its address.  A call whose ``call`` record can't be written does not run: the
client gets ``internal`` ("audit log … cannot be written").  A viewer's
refused attempt is recorded too (``ok: false``, ``forbidden``).

The log is ``ws.audit_log`` (default ``$CLOUDISENSE_STATE_DIR/nodes/ID/audit.jsonl``,
the state directory being ``$XDG_STATE_HOME/cloudisense`` or
``~/.local/state/cloudisense`` without the variable; ``none`` turns it off),
appended through :func:`~cloudisense.node._files.open_append` (0600, never
through a symlink, its directory created 0700).  Records are written with
one ``write`` each and not fsynced: a machine crash may lose the last ones.
Strings from clients are bounded (params at 2,000 characters of JSON).
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from ._errors import ConfigError
from ._files import open_append, private_dir

__all__ = ["CallAudit", "NO_TOKENS", "default_state_dir", "token_name"]

log = logging.getLogger(__name__)

NO_TOKENS = "(no tokens configured)"
MAX_PARAMS_TEXT = 2000
MAX_TEXT = 500


def default_state_dir() -> Path:
    """``$CLOUDISENSE_STATE_DIR``, else ``$XDG_STATE_HOME/cloudisense``, else ``~/.local/state/cloudisense``."""
    env = os.environ.get("CLOUDISENSE_STATE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "cloudisense"


def token_name(tokens: Iterable[Any], token: str | None) -> str:
    """The configured ``name`` of the token entry ``token`` matches ('' when unnamed or unmatched)."""
    if not token:
        return ""
    digest = hashlib.sha256(token.encode()).hexdigest()
    for t in tokens:
        if hmac.compare_digest(t.sha256, digest):
            return t.name or ""
    return ""


def _bounded(x: Any, limit: int) -> Any:
    text = json.dumps(x, ensure_ascii=False, default=str, separators=(",", ":"))
    return x if len(text) <= limit else text[:limit] + "…"


class CallAudit:
    """Writes the ``call``/``result`` records of one node; ``path`` None means off."""

    def __init__(self, node_id: str, setting: str) -> None:
        self.node_id = node_id
        if setting == "none":
            self.path: Path | None = None
        else:
            self.path = Path(setting) if setting else default_state_dir() / "nodes" / node_id / "audit.jsonl"
        self._seq = itertools.count(1)
        self._session = os.urandom(4).hex()   # seq numbers restart with the node: this tells runs apart

    def _write(self, rec: dict[str, Any]) -> None:
        assert self.path is not None
        private_dir(self.path.parent)
        line = json.dumps({"ts": time.time(), "node": self.node_id, **rec}, ensure_ascii=False, default=str,
                          separators=(",", ":"))
        fd = open_append(self.path, 0o600)
        try:
            os.write(fd, (line + "\n").encode())
        finally:
            os.close(fd)

    def call(self, who: dict[str, str], target: str, service: str, method: str,
             params: Any) -> Callable[[Any, dict[str, Any] | None], None] | None:
        """Record a mutating call about to go out; return what records its answer (None when off).

        Raises ``OSError`` or :class:`~cloudisense.node._files.UnsafePath` (a ``ConfigError``) when the record can't be
        written: the caller must then not make the call.
        """
        if self.path is None:
            return None
        seq = f"{self._session}-{next(self._seq)}"
        self._write({"event": "call", "seq": seq, "who": who, "target": target, "method": f"{service}.{method}",
                     "params": _bounded(params, MAX_PARAMS_TEXT)})

        def answered(result: Any, error: dict[str, Any] | None) -> None:
            rec: dict[str, Any] = {"event": "result", "seq": seq, "ok": error is None}
            if error is not None:
                rec["error"] = {"code": str(error.get("code"))[:64],
                                "message": str(error.get("message"))[:MAX_TEXT]}
            elif isinstance(result, dict) and isinstance(result.get("errors"), dict) and result["errors"]:
                rec["errors"] = sorted(result["errors"])[:100]    # a broadcast: which nodes failed
            try:
                self._write(rec)
            except (OSError, ConfigError) as e:
                log.error("audit log %s cannot be written: %s", self.path, e)
        return answered

    def refused(self, who: dict[str, str], target: str, service: str, method: str, code: str, message: str) -> None:
        """Record an attempt refused before it went out (a viewer calling a mutating method)."""
        if self.path is None:
            return
        seq = f"{self._session}-{next(self._seq)}"
        try:
            self._write({"event": "call", "seq": seq, "who": who, "target": target,
                         "method": f"{service}.{method}"})
            self._write({"event": "result", "seq": seq, "ok": False,
                         "error": {"code": code, "message": message[:MAX_TEXT]}})
        except (OSError, ConfigError) as e:
            log.error("audit log %s cannot be written: %s", self.path, e)
