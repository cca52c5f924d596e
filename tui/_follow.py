"""Follow a topic on a node over the console's link, again after every reconnect (no Textual here).

:func:`follow` is the body of the workers that watch events (the Events tab)
and follow process logs (the log view): subscribe, optionally read what came
before (``on_up``, after subscribing so nothing falls in between), hand every
event to ``on_event``, and when the link drops wait for it and subscribe
again.  It returns only when the node refuses (a bad topic, an unknown node);
the worker that runs it cancels it, and the ``finally`` closes the
subscription.
"""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

RETRY = 0.25  # seconds between attempts while the link is coming back


async def follow(conn: Any, node: str | None, topic: str, *, on_event: Callable[[dict[str, Any]], None],
                 on_status: Callable[[str, str], None], on_up: Callable[[], Awaitable[None]] | None = None) -> None:
    """``on_status(state, detail)``: ``up`` (subscribed), ``lost`` (link lost, trying again) or ``failed``
    (the node refused: ``detail`` says why; nothing is retried)."""
    from cloudisense.node import CloudisenseError, ConnectionLost

    while True:
        await conn.connected.wait()
        try:
            sub = await conn.subscribe(node, topic)
        except ConnectionLost:
            await asyncio.sleep(RETRY)
            continue
        except CloudisenseError as e:
            on_status("failed", f"{getattr(e, 'code', '')} {e}".strip())
            return
        try:
            if on_up is not None:
                await on_up()
            on_status("up", "")
            async for ev in sub:
                on_event(ev)
        except ConnectionLost:
            pass
        except CloudisenseError as e:
            on_status("failed", f"{getattr(e, 'code', '')} {e}".strip())
            return
        finally:
            await sub.close()
        on_status("lost", "")
        await asyncio.sleep(RETRY)
