"""Subscription bookkeeping (pure: no I/O, no awaits).

* :class:`SubscriptionTable` — which local subscribers (WebSocket clients,
  in-process listeners) want events from which node and topic filter.  It
  reference-counts ``(node, filter)`` pairs so the federation keeps exactly one
  MQTT subscription and one remote interest per pair, however many browsers.
* :class:`InterestTable` — which *remote* nodes asked this node for which
  filters, with lease expiry, so events go to MQTT only while someone wants them.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Hashable, Iterable

from ._json import dumps
from ._topics import matches


def event_text(node: str, topic: str, data: Any, ts: float) -> str:
    """The ``event`` frame a subscriber receives, as text (built once for all its subscribers)."""
    return dumps({"type": "event", "node": node, "topic": topic, "data": data, "ts": ts})


def fan_out(subscribers: Iterable[Any], text: str) -> int:
    """Hand ``text`` to every subscriber (each has ``deliver_event``); how many."""
    n = 0
    for s in subscribers:
        s.deliver_event(text)
        n += 1
    return n


class SubscriptionTable:
    def __init__(self) -> None:
        # node -> filter -> subscribers
        self._by_node: dict[str, dict[str, set[Hashable]]] = defaultdict(dict)
        # subscriber -> {(node, filter)}
        self._by_sub: dict[Hashable, set[tuple[str, str]]] = defaultdict(set)

    def add(self, sub: Hashable, node: str, pattern: str) -> bool:
        """Add a subscription; True if it is the first for ``(node, pattern)``."""
        subs = self._by_node[node].setdefault(pattern, set())
        first = not subs
        subs.add(sub)
        self._by_sub[sub].add((node, pattern))
        return first

    def has(self, sub: Hashable, node: str, pattern: str) -> bool:
        return (node, pattern) in self._by_sub.get(sub, ())

    def remove(self, sub: Hashable, node: str, pattern: str) -> bool:
        """Remove one subscription; True if ``(node, pattern)`` now has no subscriber."""
        keys = self._by_sub.get(sub)
        if not keys or (node, pattern) not in keys:
            return False
        keys.discard((node, pattern))
        if not keys:
            del self._by_sub[sub]
        patterns = self._by_node[node]
        subs = patterns[pattern]
        subs.discard(sub)
        if subs:
            return False
        del patterns[pattern]
        if not patterns:
            del self._by_node[node]
        return True

    def remove_all(self, sub: Hashable) -> list[tuple[str, str]]:
        """Drop every subscription of ``sub``; return the pairs left without subscribers."""
        emptied = []
        for node, pattern in list(self._by_sub.get(sub, ())):
            if self.remove(sub, node, pattern):
                emptied.append((node, pattern))
        return emptied

    def match(self, node: str, topic: str) -> set[Hashable]:
        patterns = self._by_node.get(node)
        if not patterns:
            return set()
        out: set[Hashable] = set()
        for pattern, subs in patterns.items():
            if matches(pattern, topic):
                out |= subs
        return out

    def subscribers(self, node: str) -> set[Hashable]:
        out: set[Hashable] = set()
        for subs in self._by_node.get(node, {}).values():
            out |= subs
        return out

    def patterns(self, node: str) -> list[str]:
        return list(self._by_node.get(node, ()))

    def nodes(self) -> list[str]:
        return list(self._by_node)

    def count(self, sub: Hashable) -> int:
        return len(self._by_sub.get(sub, ()))

    def stats(self) -> dict[str, int]:
        return {
            "subscribers": len(self._by_sub),
            "subscriptions": sum(len(v) for v in self._by_sub.values()),
            "filters": sum(len(p) for p in self._by_node.values()),
        }


class InterestTable:
    """Remote nodes' interest in this node's events, with leases."""

    def __init__(self) -> None:
        self._by_node: dict[str, dict[str, float]] = {}  # remote -> filter -> expiry
        self._wanted: dict[str, bool] = {}               # topic -> any interest (cache)

    def _changed(self) -> None:
        self._wanted.clear()

    def add(self, remote: str, pattern: str, expiry: float) -> None:
        self._by_node.setdefault(remote, {})[pattern] = expiry
        self._changed()

    def remove(self, remote: str, pattern: str) -> bool:
        patterns = self._by_node.get(remote)
        if not patterns or patterns.pop(pattern, None) is None:
            return False
        if not patterns:
            del self._by_node[remote]
        self._changed()
        return True

    def refresh(self, remote: str, patterns: Iterable[str], expiry: float) -> None:
        """A lease: ``remote`` wants exactly these filters until ``expiry``."""
        new = {p: expiry for p in patterns}
        if new:
            self._by_node[remote] = new
        else:
            self._by_node.pop(remote, None)
        self._changed()

    def drop(self, remote: str) -> int:
        patterns = self._by_node.pop(remote, None)
        if patterns:
            self._changed()
        return len(patterns or ())

    def expire(self, now: float) -> list[tuple[str, str]]:
        gone = [(r, p) for r, ps in self._by_node.items() for p, exp in ps.items() if exp <= now]
        for r, p in gone:
            self.remove(r, p)
        return gone

    def wanted(self, topic: str) -> bool:
        hit = self._wanted.get(topic)
        if hit is None:
            hit = any(matches(p, topic) for ps in self._by_node.values() for p in ps)
            if len(self._wanted) > 10_000:
                self._wanted.clear()
            self._wanted[topic] = hit
        return hit

    def snapshot(self) -> dict[str, list[str]]:
        return {r: sorted(ps) for r, ps in self._by_node.items()}

    def __len__(self) -> int:
        return sum(len(ps) for ps in self._by_node.values())
