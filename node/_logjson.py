"""Log set-up for the ``cloudisense`` command: plain text or one JSON object a line.

``--log-format json`` writes records as single-line JSON objects with stable keys::

    {"ts": "2026-11-30T11:24:09.123Z", "level": "INFO", "logger": "cloudisense.node._node",
     "msg": "node a serving ...", "node": "a", "client": "client-3", "reason": "slow_consumer"}

``ts``, ``level``, ``logger``, ``msg`` and ``node`` are always there (``node`` is null until the
node's id is known); fields a call passes in ``extra`` (:data:`FIELDS`) follow; ``exc`` holds a
traceback.  Text from outside (a peer's id, a frame) is a JSON string, so it can't break the line.
"""

from __future__ import annotations

import json
import logging
import sys
import time

FORMATS = ("text", "json")
#: ``extra`` fields copied into a JSON line when a log call sets them.
FIELDS = ("client", "peer", "reason", "suppressed", "remote", "topic", "code")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

_node_id: str | None = None


def set_node(node_id: str | None) -> None:
    """The id every JSON line carries as ``node``."""
    global _node_id
    _node_id = node_id


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        t = record.created
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
            "node": _node_id,
        }
        for k in FIELDS:
            v = record.__dict__.get(k)
            if v is not None:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str)


def level_of(name: str) -> int:
    """A level name (any case) or number; ValueError if it is neither."""
    level = logging.getLevelName(str(name).upper())
    if isinstance(level, int):
        return level
    if str(name).isdigit():
        return int(name)
    raise ValueError(f"unknown log level {name!r}: use DEBUG, INFO, WARNING or ERROR")


def setup(level: str, fmt: str) -> None:
    """Configure the root logger: one stderr handler, text or JSON."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root.addHandler(handler)
    root.setLevel(level_of(level))
    logging.getLogger("websockets").setLevel(logging.WARNING)
    logging.captureWarnings(True)
