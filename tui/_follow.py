"""Follow a topic on a node over the console's link, across reconnects (no Textual here).

:func:`follow` is the body of the workers that watch events (the Events tab)
and follow process logs (the log view): subscribe once the link is up,
optionally read what came before (``on_up``, after subscribing so nothing falls
in between, and again after every reconnect), and hand every event to
``on_event``.  The subscription is the client's: it lives across reconnects
(the client subscribes again before the link is reported up), so nothing here
retries.  It returns when the node refuses (a bad topic, an unknown node) or
the link fails for good; the worker that runs it cancels it, and the
``finally`` closes the subscription.
"""

from __future__ import annotations

import logging
from asyncio import TaskGroup
from typing import Any, Awaitable, Callable

log = logging.getLogger(__name__)


class _Refused(Exception):
    """The first ``on_up`` was refused by the node: said through ``on_status``, nothing more to do."""


async def follow(conn: Any, node: str | None, topic: str, *, on_event: Callable[[dict[str, Any]], None],
                 on_status: Callable[[str, str], None], on_up: Callable[[], Awaitable[None]] | None = None) -> None:
    """``on_status(state, detail)``: ``up`` (subscribed), ``lost`` (link lost, back by itself) or ``failed``
    (the node refused, or the link failed for good: ``detail`` says why; nothing is retried)."""
    from cloudisense.node import CloudisenseError, ConnectionLost

    def refused(e: BaseException) -> str:
        return f"{getattr(e, 'code', '')} {e}".strip()

    while True:
        await conn.until(lambda: conn.connected or conn.failed)
        if conn.failed:
            on_status("failed", conn.why)
            return
        try:
            sub = await conn.subscribe(node, topic)
            break
        except ConnectionLost:
            await conn.until(lambda: not conn.connected)     # lost meanwhile: subscribe when it is back
        except CloudisenseError as e:
            on_status("failed", refused(e))
            return

    async def watch_link() -> None:
        first, seen = True, 0
        while True:
            await conn.until(lambda s=seen: conn.connected and conn.ups != s)
            seen = conn.ups
            if on_up is not None:
                try:
                    await on_up()
                except ConnectionLost:
                    continue      # lost again: read when it is back
                except CloudisenseError as e:
                    if first:
                        on_status("failed", refused(e))
                        raise _Refused from None
                    # after a reconnect (a remote node not heard from again yet): the events go on,
                    # and what was missed shows as a gap
                    log.info("re-reading before following %s on %s failed: %s", topic, node, e)
            first = False
            on_status("up", "")
            await conn.until(lambda s=seen: not conn.connected or conn.ups != s)
            if not conn.connected:
                on_status("lost", "")

    try:
        async with TaskGroup() as tg:
            watcher = tg.create_task(watch_link(), name=f"tui.follow[{node}:{topic}].link")
            async for ev in sub:
                on_event(ev)
            watcher.cancel()   # the subscription ended: the client gave up on the link
        on_status("failed", conn.why or "the link is closed")
    except* _Refused:
        pass
    finally:
        await sub.close()
