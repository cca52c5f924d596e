"""The Ask box's history: the operator's past requests, kept in the state directory.

One JSON string per line (``tui-history.jsonl``), newest last, at most
``limit`` entries (the file is rewritten when it grows to twice that).  A
browsing cursor walks it like a shell: ``older()`` / ``newer()``; what was
typed before browsing comes back at the end.  Pure apart from the file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

HISTORY_FILE = "tui-history.jsonl"
MAX_ENTRY = 2000  # characters; longer requests are kept cut


class History:
    def __init__(self, path: str | os.PathLike[str] | None, limit: int = 500) -> None:
        self.path = Path(path) if path is not None else None
        self.limit = limit
        self.entries: list[str] = self._load()
        self._cursor: int | None = None  # index into entries while browsing
        self._draft = ""

    def _load(self) -> list[str]:
        if self.path is None:
            return []
        try:
            lines = self.path.read_text("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        except OSError as e:
            log.warning("cannot read the request history %s: %s", self.path, e)
            return []
        out = []
        for line in lines[-self.limit:]:
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, str) and entry.strip():
                out.append(entry[:MAX_ENTRY])
        return out

    def add(self, text: str) -> None:
        """Remember a submitted request (not twice in a row) and append it to the file."""
        self._cursor = None
        text = text.strip()[:MAX_ENTRY]
        if not text or (self.entries and self.entries[-1] == text):
            return
        self.entries.append(text)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if len(self.entries) > 2 * self.limit:
                self.entries = self.entries[-self.limit:]
                tmp = self.path.with_suffix(".tmp")
                tmp.write_text("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self.entries), "utf-8")
                os.replace(tmp, self.path)
            else:
                with open(self.path, "a", encoding="utf-8") as f:
                    f.write(json.dumps(text, ensure_ascii=False) + "\n")
        except OSError as e:
            log.warning("cannot write the request history %s: %s", self.path, e)

    def older(self, current: str) -> str | None:
        """The entry before the one shown (None: nothing older)."""
        if not self.entries:
            return None
        if self._cursor is None:
            self._draft = current
            self._cursor = len(self.entries)
        if self._cursor == 0:
            return None
        self._cursor -= 1
        return self.entries[self._cursor]

    def newer(self) -> str | None:
        """The entry after the one shown; past the newest, what was being typed (None: not browsing)."""
        if self._cursor is None:
            return None
        self._cursor += 1
        if self._cursor >= len(self.entries):
            self._cursor = None
            return self._draft
        return self.entries[self._cursor]

    def reset(self) -> None:
        self._cursor = None
