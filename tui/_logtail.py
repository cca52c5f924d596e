"""The lines of followed process logs (pure: no Textual, no I/O).

The node numbers every captured line of a process (``supervisor.logs``
answers ``next_seq``; each ``$process/NAME/log`` event carries the ``seq`` of
its first line).  :class:`LogTail` keeps the lines the console shows, one
number line per process: lines already shown are dropped (the events that
arrived before the ``logs`` read, a re-read after a reconnect), a jump ahead is
reported as missed lines, a number going back (the node restarted) as a
restart.  Lines are handed on as the node sent them (cut at
:data:`MAX_LINE`); the screen keeps and escapes them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeGuard

MAX_LINE = 2000        # characters of one line shown


@dataclass(frozen=True)
class LogLine:
    process: str
    text: str
    note: bool = False  # the console's own line (missed lines, a restart), not the process's


class LogTail:
    def __init__(self) -> None:
        self.next: dict[str, int] = {}    # process -> the number of the next line not yet kept
        self._live: set[str] = set()      # processes whose events went past their last read

    def load(self, process: str, lines: list[Any], next_seq: Any) -> list[LogLine]:
        """The answer of ``supervisor.logs`` (read after subscribing): the lines not kept yet."""
        lines = [x for x in lines if isinstance(x, str)]
        self._live.discard(process)   # events that arrived before this read may repeat its lines
        first = next_seq - len(lines) if _is_int(next_seq) else None
        expected = self.next.get(process)
        restarted = first is not None and expected is not None and next_seq < expected
        return self._take(process, first, lines, 0, restarted)

    def add(self, data: Any) -> list[LogLine]:
        """A ``$process/NAME/log`` event's data: the lines not kept yet."""
        if not isinstance(data, dict) or not isinstance(data.get("name"), str) or \
                not isinstance(data.get("lines"), list):
            return []
        process, first = data["name"], data.get("seq")
        first = first if _is_int(first) else None
        lines = [x for x in data["lines"] if isinstance(x, str)]
        expected = self.next.get(process)
        # In order, an event starts where the last one ended; one that starts before it is a new count
        # (the node restarted) once the events went past the last read.
        restarted = first is not None and expected is not None and process in self._live and first < expected
        skipped = data["skipped"] if _is_int(data.get("skipped")) else 0
        out = self._take(process, first, lines, skipped, restarted)
        if first is not None and expected is not None and first + len(lines) > expected:
            self._live.add(process)
        return out

    def _take(self, process: str, first: int | None, lines: list[str], skipped: int,
              restarted: bool) -> list[LogLine]:
        out: list[LogLine] = []
        expected = None if restarted else self.next.get(process)
        if restarted:
            out.append(LogLine(process, f"— {process}: the node started numbering its output again "
                                        "(it restarted); lines from the new start —", True))
        missed = skipped
        if first is not None and expected is not None:
            drop = max(0, expected - first)   # already kept
            lines, first = lines[drop:], first + drop
            missed = first - expected
        if missed > 0 and lines:
            out.append(LogLine(process, f"… {missed} line{'s' if missed != 1 else ''} of {process} not shown "
                                        "(a burst bigger than one event, or the link dropped)", True))
        out.extend(LogLine(process, text[:MAX_LINE]) for text in lines)
        if first is not None:
            self.next[process] = max(first + len(lines), expected or 0)
        return out


def _is_int(x: Any) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)
