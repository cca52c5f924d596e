"""Methods that clients offer (``register``): the node's table of them, and the calls in flight to them.

A client that registers ``service.method`` answers its calls itself: the node sends it an
``invoke`` frame and the client's ``yield`` is the reply.  To every caller, local or on
another node, the method looks like any other: it is in ``node.describe`` and the
catalog of the heartbeat (marked ``offered_by: "client"``), and the usual deadline,
role check and error codes apply.  When the client goes, its methods go with it and the
calls waiting on it are answered ``unknown_service`` at once.

An offerer is whatever implements :class:`Offerer` (a gateway session).
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any, Protocol

from ._errors import Conflict, Overloaded, TooLarge, UnknownService, from_wire
from ._json import dumps

#: Methods one client may offer, and all clients of a node together (the catalog rides in every heartbeat).
MAX_PER_CLIENT = 64
MAX_PER_NODE = 128


class Offerer(Protocol):
    """Who answers an offered method's calls: sends the ``invoke`` frame."""

    name: str

    def send_invoke(self, text: str) -> None: ...


@dataclass
class Offer:
    service: str
    method: str
    params: dict[str, Any]
    mutates: bool
    description: str
    owner: Offerer = field(repr=False)

    def describe(self) -> dict[str, Any]:
        return {"description": self.description, "mutates": self.mutates, "params": self.params,
                "result": {}, "offered_by": "client"}


class Offers:
    """The methods clients offer on this node, and their invocations in flight."""

    def __init__(self) -> None:
        self._by_name: dict[tuple[str, str], Offer] = {}
        self._ids = itertools.count(1)
        self._waiting: dict[str, tuple[Offerer, asyncio.Future[Any]]] = {}
        self.ignored_yields = 0   # yields for no invocation in flight (late, unknown or repeated)
        self.version = 0          # bumped on every change of the table (catalog cache key)

    def __len__(self) -> int:
        return len(self._by_name)

    def get(self, service: str, method: str) -> Offer | None:
        return self._by_name.get((service, method)) if self._by_name else None

    def methods_of(self, service: str) -> list[str]:
        """The methods clients offer under ``service`` (none: it is not a client-offered service)."""
        return sorted(m for s, m in self._by_name if s == service) if self._by_name else []

    def add(self, offer: Offer, *, taken: bool) -> None:
        """Add ``offer``; ``taken``: a service of the node holds the name.  Raises Conflict or Overloaded."""
        name = f"{offer.service}.{offer.method}"
        if taken:
            raise Conflict(f"{name} is held by a service of this node")
        held = self._by_name.get((offer.service, offer.method))
        if held is not None and held.owner is not offer.owner:
            raise Conflict(f"{name} is offered by another client")
        if held is None:
            mine = sum(1 for o in self._by_name.values() if o.owner is offer.owner)
            if mine >= MAX_PER_CLIENT:
                raise Overloaded(f"a client may offer {MAX_PER_CLIENT} methods")
            if len(self._by_name) >= MAX_PER_NODE:
                raise Overloaded(f"this node holds {MAX_PER_NODE} client-offered methods already")
        self._by_name[(offer.service, offer.method)] = offer
        self.version += 1

    def remove(self, owner: Offerer, service: str, method: str) -> bool:
        held = self._by_name.get((service, method))
        if held is None or held.owner is not owner:
            return False
        del self._by_name[(service, method)]
        self.version += 1
        return True

    def drop_owner(self, owner: Offerer) -> bool:
        """The client went: its methods go, its invocations are answered ``unknown_service``."""
        gone = [k for k, o in self._by_name.items() if o.owner is owner]
        for k in gone:
            del self._by_name[k]
        for inv, (who, fut) in list(self._waiting.items()):
            if who is owner:
                del self._waiting[inv]
                if not fut.done():
                    fut.set_exception(UnknownService("the client that offered this method disconnected"))
        if gone:
            self.version += 1
        return bool(gone)

    def describe(self) -> dict[str, Any]:
        """``{service: {description, methods: {name: {description, mutates, params, offered_by}}}}``."""
        out: dict[str, Any] = {}
        for o in self._by_name.values():
            svc = out.setdefault(o.service, {"description": "offered by a client", "methods": {}})
            svc["methods"][o.method] = o.describe()
        return out

    def pending(self, owner: Offerer) -> int:
        return sum(1 for who, _ in self._waiting.values() if who is owner)

    async def invoke(self, offer: Offer, params: dict[str, Any], caller: dict[str, Any], timeout: float,
                     limit: int) -> Any:
        """Send an ``invoke`` to the offering client and wait for its ``yield`` (the caller's deadline
        cancels this wait).  ``limit``: invocations one client may have in flight."""
        owner = offer.owner
        if self.pending(owner) >= limit:
            raise Overloaded(f"{offer.service}.{offer.method}: its client has {limit} calls in flight")
        inv = str(next(self._ids))
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting[inv] = (owner, fut)
        try:
            owner.send_invoke(dumps({"type": "invoke", "invocation": inv, "service": offer.service,
                                     "method": offer.method, "params": params, "caller": caller,
                                     "timeout": round(timeout, 3)}))
            return await fut
        finally:
            self._waiting.pop(inv, None)

    def answer(self, owner: Offerer, invocation: str, result: Any, error: dict[str, Any] | None) -> None:
        """A ``yield`` from ``owner``; ignored (counted) unless it answers one of its invocations in flight."""
        entry = self._waiting.get(invocation)
        if entry is None or entry[0] is not owner or entry[1].done():
            self.ignored_yields += 1
            return
        del self._waiting[invocation]
        fut = entry[1]
        if error is not None:
            fut.set_exception(from_wire(error))   # a code outside the closed set becomes internal
        else:
            fut.set_result(result)

    def too_large(self, owner: Offerer, invocation: Any, why: str) -> bool:
        """A yield was refused for its size: its caller gets ``too_large``.  False if no such invocation."""
        entry = self._waiting.get(invocation) if isinstance(invocation, str) else None
        if entry is None or entry[0] is not owner or entry[1].done():
            return False
        del self._waiting[invocation]
        entry[1].set_exception(TooLarge(f"the client's answer was refused: {why}"))
        return True

