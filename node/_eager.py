"""A coroutine's first step at once, and a task only when it has to wait: Python 3.12's eager tasks, by hand.

Most methods a node runs answer without ever waiting (``node.ping``, a status read,
``bench.echo``).  Run in a task of their own, each costs a ``create_task`` and one
more turn of the event loop before its answer can go out: about a tenth of a node's
busy time answering local calls (P1 of ``bench/``, py-spy).  :func:`first_step`
runs the coroutine until it first waits; one that finished there costs no task.
One that waits is continued by :class:`Continued`, awaited in a task: to the task
it is the same coroutine, resumed where it stopped (what it waits for, its result,
its exceptions and a cancellation all pass through).

The first step runs in the caller's task and context: what it binds to "the current
task" before it first waits (``asyncio.timeout``, a ``TaskGroup``, ``current_task()``) is
the caller's, and a timeout entered there would cancel the caller.  So the node starts
this way only code that can't do that: a plain ``def`` method, its own dispatch, and a
method a client offers; an ``async def`` of a service gets a task from its first line.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["first_step", "Continued"]


def first_step(coro: Coroutine[Any, Any, Any]) -> tuple[bool, Any]:
    """Run ``coro`` until it first waits.  ``(True, result)`` when it finished (an exception it raised
    propagates); else ``(False, Continued)``, to be awaited in a task."""
    try:
        waiting = coro.send(None)
    except StopIteration as e:
        return True, e.value
    return False, Continued(coro, waiting)


class Continued:
    """The rest of a coroutine that :func:`first_step` started, awaitable once."""

    __slots__ = ("_coro", "_waiting")

    def __init__(self, coro: Coroutine[Any, Any, Any], waiting: Any) -> None:
        self._coro = coro
        self._waiting = waiting

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, waiting = self._coro, self._waiting
        while True:
            try:
                sent = yield waiting           # the task waits on what the coroutine waits on
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:         # noqa: BLE001 - a cancellation (or any throw) goes in as is
                try:
                    waiting = coro.throw(e)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    waiting = coro.send(sent)
                except StopIteration as stop:
                    return stop.value
