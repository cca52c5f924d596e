"""Cluster view and pending calls (pure: no I/O, no awaits).

* :class:`Membership` — the membership table built from presence and state
  messages: online/offline, since, last seen, metrics, service catalog;
  bounded in size, offline members expire (heartbeats are validated before,
  by ``_heartbeat.heartbeat_error``).
* :class:`PendingTable` — calls waiting for a reply from another node, and
  broadcast gathers; guarantees exactly one completion per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Hashable

from ._deadlines import Deadlines
from ._errors import ErrorCode


@dataclass
class Member:
    id: str
    online: bool = False
    since: float = 0.0
    last_seen: float = 0.0
    session: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    presence_ts: float = 0.0   # ts of the newest presence / state envelope taken (retained ones replay)
    state_ts: float = 0.0

    def view(self) -> dict[str, Any]:
        s = self.state
        return {
            "id": self.id,
            "online": self.online,
            "since": self.since,
            "last_seen": self.last_seen,
            "host": s.get("host"),
            "version": s.get("version"),
            "ws": s.get("ws"),
            "metrics": s.get("metrics", {}),
            "services": s.get("catalog", {}),
            "processes": s.get("processes", []),
        }


FULL = "full"   # what on_presence/on_state return when a new member would exceed the cap


class Membership:
    """Who is in the cluster.  Methods return the transition they caused, if any.

    Bounded: at most ``max_members`` entries, this node included.  A new node
    that finds the table full takes the place of the member that has been
    offline longest; when every member is online it is refused (the methods
    return :data:`FULL`, the node counts it).  :meth:`expire` forgets members
    offline for longer than the configured time.  Offline members are kept in
    the order they went offline, so both cost O(1) per member touched, not a
    scan of the table.

    Bodies given to :meth:`on_state` have passed :func:`heartbeat_error`
    (``_heartbeat``); the table trusts them.
    """

    def __init__(self, self_id: str, *, max_members: int = 10_000) -> None:
        if max_members < 1:
            raise ValueError("max_members must be at least 1")
        self.self_id = self_id
        self.max_members = max_members
        self._m: dict[str, Member] = {}
        self._offline: dict[str, float] = {}   # offline members -> since, oldest first

    def __len__(self) -> int:
        return len(self._m)

    def get(self, node: str) -> Member | None:
        return self._m.get(node)

    def __contains__(self, node: str) -> bool:
        return node in self._m

    def is_online(self, node: str) -> bool:
        m = self._m.get(node)
        return bool(m and m.online)

    def online_ids(self) -> list[str]:
        return [n for n, m in self._m.items() if m.online]

    def newer(self, node: str, kind: str, ts: float) -> bool:
        """Whether a retained ``kind`` (presence/state) with ``ts`` is not older than the last one taken.

        Retained messages are verified without the replay window, so only newer ones count.
        """
        m = self._m.get(node)
        if m is None:
            return True
        last = m.presence_ts if kind == "presence" else m.state_ts
        return ts >= last

    def _member(self, node: str, now: float) -> Member | None:
        """The entry of ``node``, made if there is room (see the class docstring); None if full."""
        m = self._m.get(node)
        if m is not None:
            return m
        if len(self._m) >= self.max_members and not self._evict_oldest_offline():
            return None
        m = self._m[node] = Member(node, since=now)
        self._went_offline(m)   # a new member is offline until it says otherwise
        return m

    def _evict_oldest_offline(self) -> bool:
        if not self._offline:
            return False
        oldest = next(iter(self._offline))
        del self._offline[oldest]
        del self._m[oldest]
        return True

    def _went_offline(self, m: Member) -> None:
        self._offline.pop(m.id, None)
        self._offline[m.id] = m.since

    def _went_online(self, m: Member) -> None:
        self._offline.pop(m.id, None)

    def on_presence(self, node: str, state: str, session: str, now: float, ts: float = 0.0) -> str | None:
        m = self._member(node, now)
        if m is None:
            return FULL
        m.presence_ts = max(m.presence_ts, ts)
        if state == "online":
            m.last_seen = now
            if m.online and m.session == session:
                return None
            m.online, m.session, m.since = True, session, now
            self._went_online(m)
            return "online"
        if state == "offline":
            # Only the will of the session we know may take a node offline: an old
            # retained will, or one replayed from an earlier session, does not.
            if m.session and session != m.session:
                return None
            if not m.online:
                m.session = m.session or session
                return None
            m.online, m.since = False, now
            self._went_offline(m)
            return "offline"
        return None

    def on_state(self, node: str, session: str, state: dict[str, Any], now: float, ts: float = 0.0) -> str | None:
        m = self._member(node, now)
        if m is None:
            return FULL
        m.state_ts = max(m.state_ts, ts)
        if m.online:
            if session != m.session:
                return None  # a stale retained state of an older session
            m.state, m.last_seen = state, now
            return None
        if m.session and session == m.session:
            m.state = state  # the last state of the session that went offline: facts only
            return None
        m.online, m.session, m.since, m.state, m.last_seen = True, session, now, state, now
        self._went_online(m)
        return "online"

    def mark_offline(self, node: str, now: float) -> bool:
        m = self._m.get(node)
        if not m or not m.online:
            return False
        m.online, m.since = False, now
        self._went_offline(m)
        return True

    def stale(self, now: float, grace: float) -> list[str]:
        """Online remote nodes whose heartbeat is overdue (a will that never came)."""
        out = []
        for n, m in self._m.items():
            if n == self.self_id or not m.online:
                continue
            interval = float(m.state.get("interval", 5.0) or 5.0)
            if now - m.last_seen > max(grace, 4 * interval):
                out.append(n)
        return out

    def expire(self, now: float, after: float) -> list[str]:
        """Forget the members that have been offline for more than ``after`` seconds; their ids."""
        gone = []
        offline = self._offline
        while offline:
            node, since = next(iter(offline.items()))
            if now - since <= after:
                break
            del offline[node]
            if self._m.pop(node, None) is not None:
                gone.append(node)
        return gone

    def set_self(self, session: str, state: dict[str, Any], now: float) -> None:
        m = self._m.get(self.self_id)
        if m is None:   # this node always has its place, even in a table filled by others
            if len(self._m) >= self.max_members:
                self._evict_oldest_offline()
            m = self._m[self.self_id] = Member(self.self_id)
        if not m.online:
            m.online, m.since = True, now
            self._went_online(m)
        m.session, m.state, m.last_seen = session, state, now

    def table(self) -> list[dict[str, Any]]:
        return [m.view() for m in sorted(self._m.values(), key=lambda m: m.id)]


Done = Callable[[Any, "dict[str, Any] | None"], object]   # (result, error) — exactly one is set; return ignored


@dataclass
class _Call:
    node: str
    owner: Hashable
    done: Done


@dataclass
class _Gather:
    owner: Hashable
    expected: set[str]
    done: Done
    results: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, dict[str, Any]] = field(default_factory=dict)


def wire_error(code: ErrorCode, message: str) -> dict[str, str]:
    return {"code": str(code), "message": message}


class PendingTable:
    """Calls to other nodes waiting for their reply.

    Every entry completes exactly once: by its reply, by its deadline, by its
    node going offline, or by the table being closed.  A reply that finds no
    entry is late (or a duplicate) and is counted, not delivered.

    Deadlines sit in one :class:`~._deadlines.Deadlines` heap, for one loop timer
    (``next_deadline``/``expire_due``, driven by a :class:`~._deadlines.DeadlineTimer`)
    instead of a ``call_later`` handle per call (~3 µs of every remote call, P3 of ``bench/``).
    """

    def __init__(self) -> None:
        self._calls: dict[str, _Call | _Gather] = {}
        self._deadlines = Deadlines(self._calls)
        self.late = 0

    def __len__(self) -> int:
        return len(self._calls)

    def __contains__(self, req: str) -> bool:
        return req in self._calls

    def add_call(self, req: str, node: str, owner: Hashable, done: Done) -> None:
        self._calls[req] = _Call(node, owner, done)

    def add_gather(self, req: str, expected: set[str], owner: Hashable, done: Done) -> None:
        self._calls[req] = _Gather(owner, set(expected), done)

    def set_deadline(self, req: str, when: float, why: str | Callable[[], str]) -> bool:
        """``req`` times out at ``when`` with the message ``why`` (or ``why()``, made only then).

        True when this is now the earliest deadline (the timer must be moved earlier).
        """
        return self._deadlines.add(req, when, why)

    def next_deadline(self) -> float | None:
        """The earliest deadline of a call still pending, or None."""
        return self._deadlines.next()

    def expire_due(self, now: float) -> int:
        """Time out every call whose deadline is ``now`` or earlier; how many were."""
        return sum(self.expire(req, why if isinstance(why, str) else why())
                   for req, why in self._deadlines.pop_due(now))

    def count_owner(self, owner: Hashable) -> int:
        return sum(1 for e in self._calls.values() if e.owner == owner)

    def _finish(self, req: str) -> _Call | _Gather | None:
        entry = self._calls.pop(req, None)
        self._deadlines.compact()
        return entry

    def _finish_gather(self, req: str, g: _Gather) -> None:
        self._finish(req)
        g.done({"results": g.results, "errors": g.errors}, None)

    def resolve(self, req: str, sender: str, result: Any = None, error: dict[str, Any] | None = None) -> bool:
        entry = self._calls.get(req)
        if entry is None:
            self.late += 1
            return False
        if isinstance(entry, _Gather):
            if sender not in entry.expected or sender in entry.results or sender in entry.errors:
                entry.expected.add(sender)  # a node that came online after the call went out
            if error is not None:
                entry.errors[sender] = error
            else:
                entry.results[sender] = result
            if entry.expected <= entry.results.keys() | entry.errors.keys():
                self._finish_gather(req, entry)
            return True
        if entry.node != sender:
            self.late += 1  # a reply from a node we did not ask: not ours
            return False
        self._finish(req)
        entry.done(result, error)
        return True

    def expire(self, req: str, message: str) -> bool:
        entry = self._calls.get(req)
        if entry is None:
            return False
        if isinstance(entry, _Gather):
            for n in entry.expected - entry.results.keys() - entry.errors.keys():
                entry.errors[n] = wire_error(ErrorCode.TIMEOUT, f"{n} did not answer in time")
            self._finish_gather(req, entry)
        else:
            self._finish(req)
            entry.done(None, wire_error(ErrorCode.TIMEOUT, message))
        return True

    def fail_node(self, node: str, message: str) -> int:
        """``node`` went offline: its calls fail now with ``node_offline``."""
        n = 0
        for req, entry in list(self._calls.items()):
            if isinstance(entry, _Gather):
                if node in entry.expected and node not in entry.results and node not in entry.errors:
                    entry.errors[node] = wire_error(ErrorCode.NODE_OFFLINE, message)
                    if entry.expected <= entry.results.keys() | entry.errors.keys():
                        self._finish_gather(req, entry)
                    n += 1
            elif entry.node == node:
                self._finish(req)
                entry.done(None, wire_error(ErrorCode.NODE_OFFLINE, message))
                n += 1
        return n

    def fail_all(self, message: str) -> int:
        n = 0
        for req, entry in list(self._calls.items()):
            if isinstance(entry, _Gather):
                for node in entry.expected - entry.results.keys() - entry.errors.keys():
                    entry.errors[node] = wire_error(ErrorCode.NODE_OFFLINE, message)
                self._finish_gather(req, entry)
            else:
                self._finish(req)
                entry.done(None, wire_error(ErrorCode.NODE_OFFLINE, message))
            n += 1
        return n

    def drop_owner(self, owner: Hashable) -> int:
        """The owner (a client) went away: forget its calls without answering them."""
        gone = [r for r, e in self._calls.items() if e.owner == owner]
        for r in gone:
            self._finish(r)
        return len(gone)
