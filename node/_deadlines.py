"""Deadlines: one heap and one loop timer for many of them (calls waiting for a peer, local runs).

``asyncio.timeout()`` or ``call_later`` per call (a timer handle with a context
copy, a heap push and a cancel each) was ~6 % of a node's time answering local
calls (P1 of ``bench/``) and ~3 µs of every remote call (P3).  Here a deadline
is one ``heappush`` and, only when it is the new earliest, one timer reset.

* :class:`Deadlines` — the pure heap: keys with deadlines, earliest first.
* :class:`DeadlineTimer` — the one loop timer over such a heap: armed for the
  earliest deadline, it hands whatever is due to its owner and re-arms.
* :class:`TaskDeadlines` — local method runs: a run that outlasts its deadline
  is cancelled (and answered as a timeout by its runner).

``_cluster.PendingTable`` keeps its own :class:`Deadlines` (its entries are its
own table) and the node drives it with a :class:`DeadlineTimer`.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from typing import Any, Callable, Container

__all__ = ["Deadlines", "DeadlineTimer", "TaskDeadlines", "SLACK"]

#: A loop may run a timer up to its clock resolution early: what is due this much later counts as due.
SLACK = 0.001


class Deadlines:
    """Keys with deadlines, earliest first: one loop timer for all of them instead of one per key.

    A key counts while it is in ``live`` (its owner's own table).  Entries of keys that
    left it are dropped lazily, and the heap is rebuilt (in place) when they are over
    half of it, so it holds at most about twice the live keys.
    """

    def __init__(self, live: Container[Any]) -> None:
        self._heap: list[tuple[float, int, Any, Any]] = []
        self._live: Any = live
        self._seq = itertools.count()   # tie-breaker: keys need not compare

    def __len__(self) -> int:
        return len(self._heap)

    def add(self, key: Any, when: float, data: Any = None) -> bool:
        """``key`` is due at ``when``; True when that is now the earliest deadline."""
        seq = next(self._seq)
        heapq.heappush(self._heap, (when, seq, key, data))
        return self._heap[0][1] == seq

    def next(self) -> float | None:
        """The earliest deadline of a live key, or None."""
        h, live = self._heap, self._live
        while h and h[0][2] not in live:
            heapq.heappop(h)
        return h[0][0] if h else None

    def pop_due(self, now: float) -> list[tuple[Any, Any]]:
        """(key, data) of every live key due at ``now`` or earlier, removed, earliest first."""
        h, live, out = self._heap, self._live, []
        while h and h[0][0] <= now:
            _, _, key, data = heapq.heappop(h)
            if key in live:
                out.append((key, data))
        return out

    def compact(self) -> None:
        """Call after a key leaves ``live``."""
        h, live = self._heap, self._live
        if len(h) > 64 and len(h) > 2 * len(live):
            h[:] = [x for x in h if x[2] in live]
            heapq.heapify(h)


class DeadlineTimer:
    """One loop timer for a set of deadlines.

    ``arm(loop, when)`` after adding a deadline (cheap when the timer already fires
    no later); at the time, ``expire(now)`` hands the owner everything due and
    ``next_due()`` tells when to fire again.
    """

    __slots__ = ("_next_due", "_expire", "_handle")

    def __init__(self, next_due: Callable[[], float | None], expire: Callable[[float], object]) -> None:
        self._next_due = next_due
        self._expire = expire
        self._handle: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop, when: float) -> None:
        """Fire no later than ``when`` (loop time)."""
        handle = self._handle
        if handle is not None:
            if handle.when() <= when:
                return   # already set to fire no later than needed
            handle.cancel()
        self._handle = loop.call_at(when, self._fire, loop)

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        self._expire(loop.time() + SLACK)
        nxt = self._next_due()
        if nxt is not None:
            self._handle = loop.call_at(nxt, self._fire, loop)

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class TaskDeadlines:
    """Cancels local method runs that outlast their deadline: one :class:`Deadlines` heap, one timer."""

    def __init__(self) -> None:
        self._live: set[asyncio.Task[Any]] = set()
        self._heap = Deadlines(self._live)
        self._expired: set[asyncio.Task[Any]] = set()
        self._timer = DeadlineTimer(self._heap.next, self._cancel_due)

    def add(self, task: asyncio.Task[Any], t: float) -> None:
        """``task`` is cancelled if it still runs in ``t`` seconds."""
        loop = task.get_loop()
        when = loop.time() + t
        self._live.add(task)
        if self._heap.add(task, when):   # the new earliest: otherwise the timer fires no later already
            self._timer.arm(loop, when)

    def finished(self, task: asyncio.Task[Any]) -> bool:
        """Forget ``task``; True if its deadline is what cancelled it."""
        self._live.discard(task)
        self._heap.compact()
        if self._expired and task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _cancel_due(self, now: float) -> None:
        for task, _ in self._heap.pop_due(now):
            if not task.done():
                self._expired.add(task)
                task.cancel()

    def close(self) -> None:
        self._timer.close()
