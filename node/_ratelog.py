"""Warnings that a flood can't turn into a flood of log lines.

Anything that logs because of outside input (a malformed envelope, a bad
frame, a refused connection) logs through :class:`RateLimitedLog`: the first
occurrence of a *reason* is logged at once, later ones of the same reason
are counted and summarised at most once per ``interval`` ("… (412 more like
this in the last 60 s)"). The number of distinct reasons remembered is
bounded too, so an attacker who varies the text cannot grow memory or the
log: past ``max_keys`` reasons in one interval, one line says so and the rest
is only counted.

The reason is a short key chosen by the caller (``"bad_origin"``,
``("malformed_state", sender)``), never raw outside text; the message's
arguments may hold outside text, which the caller escapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable
from types import TracebackType

# what Logger.log takes as exc_info
ExcInfo = bool | BaseException | tuple[type[BaseException], BaseException, TracebackType | None] | None

__all__ = ["RateLimitedLog"]


class RateLimitedLog:
    """Log a message per reason at most once per ``interval`` seconds, counting the rest."""

    def __init__(self, logger: logging.Logger, *, interval: float = 60.0, max_keys: int = 256,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval
        self.max_keys = max_keys
        self.clock = clock
        self.counts: dict[Hashable, int] = {}        # reason -> occurrences ever (for stats)
        self._window: dict[Hashable, list[float | int]] = {}  # reason -> [logged_at, suppressed, level]
        self._overflow_at = -float("inf")

    def log(self, level: int, reason: Hashable, msg: str, *args: object, exc_info: ExcInfo = None,
            extra: dict[str, object] | None = None) -> bool:
        """Count one occurrence of ``reason``; log ``msg % args`` unless rate-limited. True if logged.

        ``exc_info`` is passed to the logger (a traceback with the line that is logged)."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if len(self.counts) > 4 * self.max_keys:   # keep the totals table bounded as well
            self.counts.clear()
        now = self.clock()
        self._prune(now)
        slot = self._window.get(reason)
        if slot is not None:
            slot[1] = int(slot[1]) + 1
            return False
        if len(self._window) >= self.max_keys:
            if now - self._overflow_at >= self.interval:
                self._overflow_at = now
                self.logger.log(level, "more than %d kinds of this problem within %.0f s; "
                                "further ones are counted but not logged", self.max_keys, self.interval)
            return False
        self._window[reason] = [now, 0, level]
        self.logger.log(level, msg, *args, exc_info=exc_info, extra={"reason": _name(reason), **(extra or {})})
        return True

    def warning(self, reason: Hashable, msg: str, *args: object, extra: dict[str, object] | None = None) -> bool:
        return self.log(logging.WARNING, reason, msg, *args, extra=extra)

    def _prune(self, now: float) -> None:
        window = self._window
        while window:  # insertion order = age order: the front is the oldest
            reason, (at, suppressed, level) = next(iter(window.items()))
            if now - at < self.interval:
                break
            del window[reason]
            if suppressed:   # at the level of what it summarises: routine INFO stays INFO
                self.logger.log(int(level), "%d more like %r in the last %.0f s (not logged)",
                                    suppressed, reason, self.interval,
                                    extra={"reason": _name(reason), "suppressed": suppressed})


def _name(reason: Hashable) -> str:
    """The kind of a reason key, for structured logs: ``("refused", 403, why)`` -> ``"refused"``."""
    head = reason[0] if isinstance(reason, tuple) and reason else reason
    return head if isinstance(head, str) else type(head).__name__
