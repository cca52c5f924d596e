"""Cluster view and pending calls (pure: no I/O, no awaits).

* :class:`Membership` — the membership table built from presence and state
  messages: online/stale/offline, since, last seen, metrics, the hash of the
  service catalog; bounded in size, offline members expire (heartbeats are
  validated before, by ``_heartbeat.heartbeat_error``).
* :class:`Prober` — the failure detector (SWIM-style, docs/protocol.md §2
  "Liveness"): which peer to probe, and what a missed acknowledgement means.
* :class:`PendingTable` — calls waiting for a reply from another node, and
  broadcast gathers; guarantees exactly one completion per call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import random
from typing import Any, Callable, Hashable, Mapping

from ._deadlines import Deadlines
from ._errors import ErrorCode


@dataclass
class Member:
    id: str
    online: bool = False
    since: float = 0.0
    last_seen: float = 0.0
    heard: float = 0.0         # when it last spoke to us live: an ack, a refutation, a newer presence or heartbeat
    session: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    presence_ts: float = 0.0   # ts of the newest presence / state envelope taken (retained ones replay)
    state_ts: float = 0.0
    catalog_hash: str = ""
    suspect_since: float = 0.0  # when it was suspected (stale), 0 if not
    judged: bool = False        # offline by a verdict on it (probe, will, stale on join), not by our own outage

    @property
    def status(self) -> str:
        """``online``, ``stale`` (suspected: it missed its probes, or a peer says so) or ``offline``."""
        if not self.online:
            return "offline"
        return "stale" if self.suspect_since else "online"

    def view(self, catalogs: Mapping[str, Any] | None = None, services: bool = True) -> dict[str, Any]:
        """The whole row (``node.cluster`` without ``fields``, ``$cluster`` events); without ``services``
        (heartbeats: the catalog changes rarely, ``catalog_hash`` says when) the row is compact."""
        s = self.state
        row = {
            "id": self.id,
            "online": self.online,
            "status": self.status,
            "since": self.since,
            "last_seen": self.last_seen,
            "host": s.get("host"),
            "version": s.get("version"),
            "ws": s.get("ws"),
            "metrics": s.get("metrics", {}),
            "catalog_hash": self.catalog_hash or None,
            "services": (catalogs or {}).get(self.catalog_hash, {}),
            "processes": s.get("processes", []),
        }
        if not services:
            del row["services"]
        return row


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

    def on_presence(self, node: str, state: str, session: str, now: float, ts: float = 0.0,
                    catalog_hash: str | None = None) -> str | None:
        m = self._member(node, now)
        if m is None:
            return FULL
        fresh = not ts or ts > m.presence_ts   # not a retained one replayed on a resubscribe
        newest = max(m.presence_ts, m.state_ts)  # the node's own clock: a new connection is newer than both
        if not ts or (newest and ts > newest):   # a live word (a joiner's first read is not)
            m.heard = now
        m.presence_ts = max(m.presence_ts, ts)
        if state == "online":
            if fresh:
                m.last_seen = now
            if catalog_hash:
                m.catalog_hash = catalog_hash
            if m.online and m.session == session:
                if fresh:
                    m.suspect_since = 0.0   # it spoke: not stale
                return None
            if not m.online and m.judged and m.session == session and ts and ts <= newest:
                return None   # the retained presence of a session judged dead, replayed on a resubscribe
            m.online, m.session, m.since, m.suspect_since, m.judged = True, session, now, 0.0, False
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
            m.online, m.since, m.judged = False, now, True
            self._went_offline(m)
            return "offline"
        return None

    def on_state(self, node: str, session: str, state: dict[str, Any], now: float, ts: float = 0.0) -> str | None:
        m = self._member(node, now)
        if m is None:
            return FULL
        fresh = not ts or ts > m.state_ts
        if fresh and (not ts or m.state_ts):
            m.heard = now
        m.state_ts = max(m.state_ts, ts)
        h = state.get("catalog_hash")
        if m.online:
            if session != m.session:
                return None  # a stale retained state of an older session
            m.state = state
            if fresh:
                m.last_seen, m.suspect_since = now, 0.0
            if h:
                m.catalog_hash = h
            return None
        if m.session and session == m.session:
            m.state = state  # the last state of the session that went offline: facts only
            return None
        m.online, m.session, m.since, m.state, m.last_seen, m.judged = True, session, now, state, now, False
        m.suspect_since = 0.0
        if h:
            m.catalog_hash = h
        self._went_online(m)
        return "online"

    def suspect(self, node: str, session: str | None, now: float) -> bool:
        """``node`` (of ``session``, if given) missed its probes: stale.  True if it was online and not yet stale."""
        m = self._m.get(node)
        if not m or not m.online or m.suspect_since or node == self.self_id:
            return False
        if session and m.session and session != m.session:
            return False
        m.suspect_since = now
        return True

    def alive(self, node: str, session: str, now: float) -> bool:
        """``node`` answered a probe or refuted a suspicion: not stale.  True if it was stale."""
        m = self._m.get(node)
        if not m or not m.online or (session and m.session and session != m.session):
            return False
        m.last_seen = m.heard = now
        was, m.suspect_since = m.suspect_since, 0.0
        return bool(was)

    def suspects_due(self, now: float, after: float) -> list[str]:
        """Stale members suspected for more than ``after`` seconds (to be declared offline)."""
        return [n for n, m in self._m.items() if m.online and m.suspect_since and now - m.suspect_since > after]

    def stale_on_join(self, now: float, bound: float) -> list[str]:
        """Online members whose newest word (presence or heartbeat ts, sender's clock) is older than ``bound``.

        Run once, after the retained presence and state messages of a join came in: a retained
        ``online`` whose heartbeat is that old is left from a session that died without a will.
        """
        return [n for n, m in self._m.items()
                if n != self.self_id and m.online and now - max(m.presence_ts, m.state_ts) > bound]

    def mark_offline(self, node: str, now: float, session: str | None = None, *, judged: bool = True) -> bool:
        """``node`` is offline: ``judged`` by a verdict on it, or (not judged) out of reach because this
        node lost the broker, when the replayed retained presences of the reconnect bring it back."""
        m = self._m.get(node)
        if not m or not m.online or node == self.self_id or (session and m.session and session != m.session):
            return False
        m.online, m.since, m.suspect_since, m.judged = False, now, 0.0, judged
        self._went_offline(m)
        return True


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
        m.catalog_hash = state.get("catalog_hash") or m.catalog_hash
        m.state_ts = max(m.state_ts, now)

    def table(self, catalogs: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return [m.view(catalogs) for m in sorted(self._m.values(), key=lambda m: m.id)]

    def members(self) -> list[Member]:
        return list(self._m.values())

    def ring_successor(self) -> str | None:
        """The online member after this node in id order (wrapping): the peer this node probes."""
        ids = [n for n, m in self._m.items() if m.online and n != self.self_id]
        if not ids:
            return None
        after = [n for n in ids if n > self.self_id]
        return min(after) if after else min(ids)


@dataclass
class _Probe:
    target: str
    sent: float
    indirect: bool = False
    helpers: frozenset[str] = frozenset()   # the members asked to probe the target for us
    heard: bool = False                     # an ack or a nack of it already counted (local health)


@dataclass
class _Relay:
    origin: str      # who asked us to probe
    origin_req: str  # the id of its request, echoed in our ack to it
    target: str
    sent: float
    nacked: bool = False


class Prober:
    """The failure detector's bookkeeping (pure): SWIM with a ring for the choice of target.

    Every ``interval`` a node probes one peer, its successor in id order among the
    members it sees online (:meth:`Membership.ring_successor`): so every member is
    probed by its predecessor once per interval, a deterministic bound where
    SWIM's random choice gives an expected one.  No ``ack`` within ``timeout``:
    the node asks ``indirect`` other members to probe it (``probe`` with a
    ``target``); still none after another ``timeout``: the target is suspected
    (stale) and the suspicion is disseminated once.  The caller does the sending;
    this class says what to send (:meth:`due`) and takes the answers
    (:meth:`acked`).

    **Local health** (Lifeguard's, as memberlist's "awareness"): a missed ack may be
    the prober's own fault (it is overloaded, or it does not hear).  ``health`` counts
    the signs that it is: being suspected by a peer, or having lost a subscription it
    needs to hear answers (:meth:`strained`); each answer to its own probe takes one away:
    an ack, or a helper's nack (Lifeguard's: "I asked the target for you, it was silent"),
    which shows the prober hears its inbox even when its target is dead.  Nacks matter more
    here than in memberlist: the ring gives a prober one target, so without them a prober
    whose successor died would never hear an ack and would stay stretched.
    Its probe timeout and the suspicion timeout it applies are multiplied by
    ``health + 1`` (:attr:`multiplier`), so a struggling node is slow to accuse others
    instead of accusing them wrongly; it still probes every interval (as memberlist).  A target that does not
    answer, or a helper that sends no nack, does not count against the prober: a healthy node must find the
    dead within the documented bound.
    """

    #: Most the timeouts are stretched: (MAX_HEALTH + 1) ×, memberlist's awareness_max_multiplier.
    MAX_HEALTH = 8

    def __init__(self, *, interval: float, timeout: float, indirect: int, rng: random.Random | None = None) -> None:
        self.interval, self.timeout, self.indirect = interval, timeout, indirect
        self._rng = rng or random.Random()
        self._out: dict[str, _Probe] = {}    # our probe id -> what it probes
        self._relays: dict[str, _Relay] = {}   # a probe we sent on behalf of another node
        self._suspected: dict[str, _Probe] = {}   # probes that ended in a suspicion: their nacks may still come
        self._next = 0.0
        self.health = 0                      # 0: healthy … MAX_HEALTH: see the class doc

    def __len__(self) -> int:
        return len(self._out) + len(self._relays)

    @property
    def multiplier(self) -> int:
        return self.health + 1

    def strained(self) -> None:
        """A sign that this node is the one in trouble (suspected by a peer; cannot hear)."""
        self.health = min(self.MAX_HEALTH, self.health + 1)

    def suspect_after(self, timeout: float) -> float:
        """How long a suspicion this node holds waits for a refutation before its verdict."""
        return timeout * self.multiplier

    def deaf(self, now: float) -> None:
        """This node cannot hear answers: its probes in flight mean nothing, and each interval of it
        is a sign of trouble (as a failed probe is to memberlist)."""
        self._out.clear()
        if now >= self._next:
            self._next = now + self.interval
            self.strained()

    def start(self, now: float, req: str, target: str | None) -> bool:
        """Whether a new round starts now (then ``req`` probes ``target``, which the caller sends)."""
        if now < self._next or target is None or any(p.target == target for p in self._out.values()):
            return False
        self._next = now + self.interval
        self._out[req] = _Probe(target, now)
        return True

    def relay(self, req: str, origin: str, origin_req: str, target: str, now: float) -> None:
        """We probe ``target`` (with ``req``) for ``origin``; its ack goes back to it."""
        self._relays[req] = _Relay(origin, origin_req, target, now)

    def acked(self, req: str, frm: str, target: str | None) -> tuple[str, str, str] | str | None:
        """An ``ack`` of ``req`` from ``frm``.

        Returns the target now known alive (a str), or ``(origin, origin_req, target)`` when it
        answers a probe we made for someone else (the caller passes the ack on), or None.
        """
        p = self._out.get(req)
        if p is not None and (frm == p.target or (p.indirect and target == p.target)):
            del self._out[req]
            if not p.heard:
                self.health = max(0, self.health - 1)
            return p.target
        r = self._relays.get(req)
        if r is not None and frm == r.target:
            del self._relays[req]
            return (r.origin, r.origin_req, r.target)
        return None

    def nacked(self, req: str, frm: str) -> bool:
        """A ``nack`` of our probe ``req`` from ``frm``: True if it counts (a helper we asked, the first
        answer to that probe), and then local health improves by one."""
        p = self._out.get(req) or self._suspected.get(req)
        if p is None or p.heard or frm not in p.helpers:
            return False
        p.heard = True
        self.health = max(0, self.health - 1)
        return True

    def nacks_due(self, now: float) -> list[tuple[str, str, str]]:
        """``(origin, origin_req, target)`` for each probe we made for another node that got no ack
        within our probe timeout: the caller sends ``nack``, once.  The relay is kept until
        :meth:`due` drops it, so a late ack still goes back."""
        out = []
        for r in self._relays.values():
            if not r.nacked and now - r.sent >= self.timeout:
                r.nacked = True
                out.append((r.origin, r.origin_req, r.target))
        return out

    def due(self, now: float, online: list[str]) -> tuple[list[tuple[str, str]], list[str]]:
        """Timeouts: ``(indirect, suspects)``.

        ``indirect``: (probe id, member) pairs, the members to ask to probe for us (each a
        different member than the target); ``suspects``: targets that missed the indirect round too.
        """
        ask: list[tuple[str, str]] = []
        suspects: list[str] = []
        timeout = self.timeout * self.multiplier
        for req, p in list(self._out.items()):
            if not p.indirect and now - p.sent >= timeout:
                p.indirect = True
                others = [n for n in online if n != p.target]
                p.helpers = frozenset(self._rng.sample(others, min(self.indirect, len(others))))
                ask.extend((req, helper) for helper in sorted(p.helpers))
            elif p.indirect and now - p.sent >= 2 * timeout:
                del self._out[req]
                suspects.append(p.target)
                if p.helpers:
                    self._suspected[req] = p
        for req, p in list(self._suspected.items()):   # a nack comes within a helper's timeout: an interval is plenty
            if now - p.sent >= self.interval + 2 * timeout:
                del self._suspected[req]
        for req, r in list(self._relays.items()):
            if now - r.sent >= 2 * self.timeout:
                del self._relays[req]
        return ask, suspects

    def target_of(self, req: str) -> str | None:
        p = self._out.get(req)
        return p.target if p else None

    def forget(self, node: str) -> None:
        """``node`` went offline: stop probing it."""
        for req in [r for r, p in self._out.items() if p.target == node]:
            del self._out[req]


Done = Callable[[Any, "dict[str, Any] | None"], object]   # (result, error) — exactly one is set; return ignored


@dataclass
class _Call:
    node: str
    owner: Hashable
    done: Done


@dataclass
class _Gather:
    """A broadcast waiting for its answers: ``waiting`` holds the nodes that have not answered yet,
    so each answer costs O(1) and the gather O(N) (a set union per answer made it O(N²): 1.5 s at 10,000)."""

    owner: Hashable
    waiting: set[str]
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
            # a node that came online after the call went out is taken too; a second answer replaces the first
            entry.waiting.discard(sender)
            if error is not None:
                entry.results.pop(sender, None)
                entry.errors[sender] = error
            else:
                entry.errors.pop(sender, None)
                entry.results[sender] = result
            if not entry.waiting:
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
            for n in entry.waiting:
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
                if node in entry.waiting:
                    entry.waiting.discard(node)
                    entry.errors[node] = wire_error(ErrorCode.NODE_OFFLINE, message)
                    if not entry.waiting:
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
                for node in entry.waiting:
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


# --- node.cluster queries ------------------------------------------------------------------

#: What a ``node.cluster`` row may hold (``fields``); ``services`` is the whole catalog, asked for by name.
ROW_FIELDS = ("id", "online", "status", "since", "last_seen", "host", "version", "ws", "metrics", "processes",
              "catalog_hash", "services")
COMPACT_FIELDS = tuple(f for f in ROW_FIELDS if f != "services")
#: Sort keys: a row field, or a metric (``cpu_percent`` …, ``load_1m``); ``-`` in front: highest first.
METRIC_KEYS = ("cpu_percent", "memory_percent", "disk_percent", "temperature_c", "load_1m")


def _sort_value(m: Member, key: str) -> Any:
    if key in METRIC_KEYS:
        metrics = m.state.get("metrics") or {}
        v = (metrics.get("load") or [None])[0] if key == "load_1m" else metrics.get(key)
        return (0, v) if isinstance(v, (int, float)) else (1, 0)   # unknown last
    if key in ("since", "last_seen"):
        return (0, getattr(m, key))
    if key == "status":
        return (0, m.status)
    if key in ("host", "version"):
        v = m.state.get(key)
        return (0, v) if isinstance(v, str) else (1, "")
    return (0, m.id)


def sort_error(key: str) -> str | None:
    k = key[1:] if key.startswith("-") else key
    if k in ("id", "since", "last_seen", "status", "host", "version") or k in METRIC_KEYS:
        return None
    return (f"cannot sort by {key!r}: use one of id, since, last_seen, status, host, version, "
            f"{', '.join(METRIC_KEYS)} (a leading '-' sorts highest first)")


def query(members: list[Member], *, fields: tuple[str, ...], catalogs: Mapping[str, Any],
          online: bool | None = None, status: str | None = None, id_prefix: str | None = None,
          service: str | None = None, process: str | None = None, sort: str = "id",
          offset: int = 0, limit: int | None = None) -> tuple[list[dict[str, Any]], int]:
    """One page of the membership table: the matching members' ``fields``, sorted; and how many match.

    O(N log N) in the members for the sort, O(page) for the rows: only the page is built.
    """
    sel = members
    if online is not None:
        sel = [m for m in sel if m.online == online]
    if status is not None:
        sel = [m for m in sel if m.status == status]
    if id_prefix:
        sel = [m for m in sel if m.id.startswith(id_prefix)]
    if service is not None:
        sel = [m for m in sel if service in catalogs.get(m.catalog_hash, {})]
    if process is not None:
        sel = [m for m in sel if any(isinstance(p, dict) and p.get("name") == process
                                     for p in m.state.get("processes", []))]
    desc = sort.startswith("-")
    key = sort[1:] if desc else sort
    if key == "id":
        sel = sorted(sel, key=lambda m: m.id, reverse=desc)
    else:
        # unknown values last whatever the order; ties by id
        known = sorted((m for m in sel if _sort_value(m, key)[0] == 0),
                       key=lambda m: (_sort_value(m, key)[1], m.id), reverse=desc)
        sel = known + sorted((m for m in sel if _sort_value(m, key)[0] != 0), key=lambda m: m.id)
    total = len(sel)
    page = sel[offset:offset + limit if limit is not None else None]
    return [_row(m, fields, catalogs) for m in page], total


def _row(m: Member, fields: tuple[str, ...], catalogs: Mapping[str, Any]) -> dict[str, Any]:
    full = m.view(catalogs) if "services" in fields else None
    if full is not None:
        return {f: full[f] for f in fields}
    s = m.state
    out: dict[str, Any] = {}
    for f in fields:
        if f == "id":
            out[f] = m.id
        elif f == "online":
            out[f] = m.online
        elif f == "status":
            out[f] = m.status
        elif f in ("since", "last_seen"):
            out[f] = getattr(m, f)
        elif f == "catalog_hash":
            out[f] = m.catalog_hash or None
        elif f == "metrics":
            out[f] = s.get("metrics", {})
        elif f == "processes":
            out[f] = s.get("processes", [])
        else:
            out[f] = s.get(f)
    return out
