"""The node-to-node protocol, whole (docs/protocol.md §2): one room for it.

``_federation`` moves bytes to and from the broker; ``_inbound`` decides what of
them may come in; this module is what the envelopes mean:

* topic names (inbox, events, presence, state, broadcast) and envelope building,
  the will and presence included;
* inbound dispatch (:meth:`Peers.on_envelopes`) and one handler per kind
  (``_h_call`` … ``_h_state``);
* membership transitions and the ``$cluster/node/…`` events they make;
* the join (:meth:`Peers.join`) and its unique-id check;
* interest leases and re-subscribing to peers that come back;
* the federation's housekeeping (:meth:`Peers.housekeeping`): expired interests,
  stale members, lease refresh.

It does no I/O of its own: it sends through a :class:`~._ports.Link` and reaches
the node only through a :class:`~._ports.Router`, so tests drive it in-process
with a recording link and a fake router (tests/unit/test_peers.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
import time
from typing import Any, Callable, Hashable, Literal, Mapping

from ._cluster import FULL, Membership, PendingTable, wire_error
from ._config import Settings
from ._envelopes import (CallBody, Envelope, Kind, ErrorBody, EventBody, LeaseBody, PresenceBody, ResultBody, StateBody,
                         SubBody, UnsubBody)
from ._errors import ConfigError, ErrorCode, NodeOffline, UnknownNode, from_wire
from ._heartbeat import heartbeat_error
from ._inbound import MAX_ENVELOPES, RETAINED, Inbound
from ._json import dumps
from ._ports import Link, Router
from ._pubsub import InterestTable, SubscriptionTable, event_text, fan_out
from ._ratelog import RateLimitedLog
from ._topics import topic_error

log = logging.getLogger(__name__)

#: How long a call's (sender, id) is remembered to drop duplicates (QoS 1 may deliver twice).
SEEN_CALLS_SECONDS = 120.0

LinkFactory = Callable[..., Link]


class Peers:
    """This node's side of the federation protocol."""

    def __init__(self, router: Router, settings: Settings, *, session: str, subs: SubscriptionTable,
                 pending: PendingTable, members: Membership | None = None,
                 interests: InterestTable | None = None, verifier: Any = None, sealer: Any = None) -> None:
        self.router = router
        self.settings = settings
        self.id = settings.id
        self.prefix = settings.broker.prefix
        self.session = session
        self.subs = subs
        self.pending = pending
        self.members = members if members is not None else Membership(
            self.id, max_members=settings.cluster.max_members)
        self.interests = interests if interests is not None else InterestTable()
        self.verifier = verifier
        self.sealer = sealer     # seals what the federation sends (MAC or signature), or None
        self.fed: Link | None = None
        self.inbound = Inbound(self.id, self._handlers, verifier)
        # Envelope ids: this process's random session prefix + a counter (unique, and cheap per message).
        self._id_prefix = session[:12] + "-"
        self._id_seq = itertools.count(1)
        self._seen_calls: dict[tuple[str, str], float] = {}
        self._valid_topics: set[str] = set()   # event topics that passed topic_error
        self._conn_ts = 0.0   # ts of the current broker connection's presence (online and will)
        self._last_lease = time.monotonic()
        # Found by the unique-id check before the join (another live process with our id).
        self._other_self: dict[str, Any] | None = None   # an envelope, as it came (not yet admitted)
        self._other_state: dict[str, Any] | None = None
        self.joined = asyncio.Event()
        self.fatal: str | None = None   # why the link gave up for good (bad credentials, TLS refused)
        # Membership changes are news, but peers (or fakes of them) decide how many there are.
        self._member_log = RateLimitedLog(log, max_keys=256)
        # After our own reconnect: peers not heard from since (see _confirm), the calls sent to
        # them (re-sent once they are heard), and the confirm window's timer per peer.
        self._unconfirmed: set[str] = set()
        self._held: dict[str, list[Envelope]] = {}
        self._confirm_timers: dict[str, asyncio.TimerHandle] = {}

    # --- topics ----------------------------------------------------------------

    def inbox(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/inbox"

    def events_topic(self, node: str, topic: str) -> str:
        return f"{self.prefix}/node/{node}/events/{topic}"

    def presence_topic(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/presence"

    def state_topic(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/state"

    @property
    def broadcast_topic(self) -> str:
        return f"{self.prefix}/broadcast"

    # --- envelopes -------------------------------------------------------------

    def envelope(self, kind: Kind, to: str | None, body: Mapping[str, Any], ts: float | None = None) -> Envelope:
        # Sealed (MAC or signature) by the federation as it goes out: one for a whole batch.
        return {"v": 1, "kind": kind, "from": self.id, "to": to, "id": f"{self._id_prefix}{next(self._id_seq):x}",
                "ts": ts if ts is not None else time.time(), "body": body}

    def _presence(self, state: Literal["online", "offline"], ts: float | None = None) -> Envelope:
        body: PresenceBody = {"state": state, "session": self.session}
        return self.envelope("presence", None, body, ts)

    def _wire(self, env: Envelope) -> bytes:
        """One envelope as an MQTT payload, sealed when signing is on (the will, the final presence)."""
        return self.sealer.wire([env]) if self.sealer is not None else dumps(env).encode()

    def will(self) -> tuple[str, bytes]:
        """The last will of the connection about to be made.

        Receivers keep a node's presence only when it is not older than the last
        one they saw, and the will is written before its connection's ``online``
        presence.  Both carry the ts of the connection (``_conn_ts``), so this
        connection's will still gets through while a late will of an earlier
        connection of ours (the broker noticed the dead link after we came back)
        does not.
        """
        self._conn_ts = time.time()
        return self.presence_topic(self.id), self._wire(self._presence("offline", self._conn_ts))

    # --- outbound: what the node asks of the cluster ----------------------------------

    @property
    def connected(self) -> bool:
        return self.fed is not None and self.fed.connected.is_set()

    def check_reachable(self, target: str) -> None:
        """Raise UnknownNode / NodeOffline unless a call to ``target`` can go out now."""
        if self.fed is None:
            raise UnknownNode(f"no node {target!r}: this node runs without federation (broker.url = none)",
                              node=target)
        if target not in self.members:
            raise UnknownNode(f"no node {target!r} has been seen in the cluster", node=target)
        if not self.members.is_online(target):
            raise NodeOffline(f"{target} is offline", node=target)
        if not self.fed.connected.is_set():
            raise NodeOffline(f"{target} is unreachable: this node is not connected to the broker", node=target)

    def send(self, target: str, env: Envelope) -> None:
        """``env`` to ``target``'s inbox (kept to send again if ``target`` is unconfirmed, see :meth:`_confirm`)."""
        assert self.fed is not None
        if target in self._unconfirmed and env["kind"] == "call":
            self._held.setdefault(target, []).append(env)
            if target not in self._confirm_timers:
                window = self.settings.cluster.confirm_window
                self._confirm_timers[target] = asyncio.get_running_loop().call_later(
                    window, self._unheard, target, window)
        self.fed.send(self.inbox(target), env)

    def _confirm(self, node: str) -> None:
        """``node`` was heard from after our reconnect: it is subscribed again.  Calls sent to it
        before may have been dropped by the broker (it was not subscribed yet): they go again
        (the receiver drops a copy it already has: calls are de-duplicated by id)."""
        self._unconfirmed.discard(node)
        timer = self._confirm_timers.pop(node, None)
        if timer is not None:
            timer.cancel()
        for env in self._held.pop(node, []):
            if env["id"] in self.pending and self.fed is not None:
                self.fed.send(self.inbox(node), env)

    def _unheard(self, node: str, window: float) -> None:
        """The confirm window passed without a word from ``node``: its calls fail now, not at their deadline."""
        self._confirm_timers.pop(node, None)
        self._held.pop(node, None)
        if node in self._unconfirmed:
            self.pending.fail_node(node, f"{node} has not been heard from since this node reconnected to the "
                                         f"broker ({window:g} s, cluster.confirm_window)")

    def online_peers(self) -> list[str]:
        """Other nodes online now (none without federation)."""
        if self.fed is None:
            return []
        return [n for n in self.members.online_ids() if n != self.id]

    def send_broadcast(self, env: Envelope) -> None:
        if self.fed is not None and self.fed.connected.is_set():
            self.fed.send(self.broadcast_topic, env)

    def wants(self, topic: str) -> bool:
        """Whether an event on ``topic`` of ours should go to the broker: a peer wants it, and we are on."""
        return self.fed is not None and self.interests.wanted(topic) and self.fed.connected.is_set()

    def send_event(self, topic: str, data: Any, ts: float) -> None:
        assert self.fed is not None
        body: EventBody = {"topic": topic, "data": data}
        self.fed.send(self.events_topic(self.id, topic), self.envelope("event", None, body, ts),
                      qos=self.settings.broker.event_qos)

    async def subscribe_remote(self, node: str, pattern: str) -> Any:
        """Subscribe to ``node``'s events on ``pattern``: the MQTT topic, then its acknowledged interest.

        Returns ``node``'s acknowledgement (the filter and its lease), or None when the subscriber left
        before the ``sub`` went out."""
        assert self.fed is not None
        await self.fed.subscribe(self.events_topic(node, pattern), qos=self.settings.broker.event_qos)
        if pattern not in self.subs.patterns(node):
            # The subscriber left while the broker answered, and its cleanup already told ``node``
            # (unsub): a ``sub`` now would overtake it and leave a stale interest there.
            return None
        self.check_reachable(node)   # it went offline meanwhile: node_offline, not a sub into the void
        body: SubBody = {"topic": pattern}
        return await self._control(node, "sub", body)

    def release_remote(self, node: str, pattern: str, failed: bool = False) -> None:
        """The last local subscriber of ``node``'s ``pattern`` left: drop the topic, tell ``node``.

        ``failed``: a subscribe that failed (timeout, ``node`` crashed): ``node`` may hold the
        interest all the same (our ``sub`` got there, or reaches it as it comes back), so it is
        told even when it looks offline."""
        if self.fed is None:
            return
        self.router.spawn(self.fed.unsubscribe(self.events_topic(node, pattern)))
        if (failed or self.members.is_online(node)) and self.fed.connected.is_set():
            body: UnsubBody = {"topic": pattern}
            self.fed.send(self.inbox(node), self.envelope("unsub", node, body))

    async def _control(self, node: str, kind: Kind, body: SubBody) -> Any:
        """Send a subscription-control envelope and wait for its acknowledgement."""
        assert self.fed is not None
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any, error: dict[str, Any] | None) -> None:
            if not fut.done():
                if error:
                    fut.set_exception(from_wire(error, node=node))
                else:
                    fut.set_result(result)

        env = self.envelope(kind, node, body)
        t = self.settings.rpc.timeout
        self.router.expect_reply(env["id"], node, fut, done, t,
                                 f"{node} did not acknowledge the subscription within {t:g} s")
        self.fed.send(self.inbox(node), env)
        return await fut

    # --- inbound -----------------------------------------------------------------------

    def on_envelopes(self, topic: str, message: Any, raw: bytes | None = None) -> None:
        """Route what one MQTT message carried (an envelope, a batch or an array), once the edge admitted it.
        ``raw``: the message's bytes (authenticators are checked over them)."""
        for env in self.inbound.admit(message, raw):
            kind, frm = env["kind"], env["from"]
            if kind in RETAINED and frm != self.id:
                # retained and verified without the replay window: keep only newer ones
                ts = env.get("ts")
                if not isinstance(ts, (int, float)) or not self.members.newer(frm, kind, ts):
                    continue
                if frm in self._unconfirmed and self.members.newer(frm, kind, ts - 1e-6):
                    self._confirm(frm)   # strictly newer: sent since we were away, not the retained copy
            elif frm in self._unconfirmed:
                self._confirm(frm)
            try:
                self._handlers[kind](self, frm, env, topic)
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                self.inbound.reject("malformed", frm, f"a {kind} envelope: {type(e).__name__}: {e}")

    def _h_call(self, frm: str, env: Envelope, topic: str) -> None:
        body: CallBody = env["body"]
        rid = env["id"]
        key = (frm, rid)
        now = time.time()
        stats = self.router.stats
        if key in self._seen_calls:
            stats.duplicates += 1
            return
        self._seen_calls[key] = now
        reply_by = float(body.get("reply_by") or now + self.settings.rpc.timeout)
        if not reply_by > now:   # (NaN too)
            stats.late_calls += 1
            return
        stats.remote_calls_in += 1
        want_reply = body.get("reply", True)
        service, method = str(body["service"]), str(body["method"])
        t0 = time.perf_counter()

        def done(result: Any, error: dict[str, Any] | None) -> None:
            stats.record(frm, self.id, service, method, (time.perf_counter() - t0) * 1000,
                         error["code"] if error else None)
            if not want_reply or self.fed is None:
                return
            if error is not None:
                ebody: ErrorBody = {"re": rid, "error": error}
                self.fed.send(self.inbox(frm), self.envelope("error", frm, ebody))
            else:
                rbody: ResultBody = {"re": rid, "result": result}
                self.fed.send(self.inbox(frm), self.envelope("result", frm, rbody))

        params = body.get("params")
        self.router.run_local(service, method, params if isinstance(params, dict) else {},
                              min(reply_by - now, self.settings.rpc.max_timeout),
                              str(body.get("role", "viewer")), done, caller=frm)

    def _h_reply(self, frm: str, env: Envelope, topic: str) -> None:
        if env["kind"] == "error":
            ebody: ErrorBody = env["body"]
            self.pending.resolve(str(ebody["re"]), frm, None, dict(ebody["error"]))
        else:
            rbody: ResultBody = env["body"]
            self.pending.resolve(str(rbody["re"]), frm, rbody.get("result"), None)

    def _ack(self, frm: str, env: Envelope, result: Any) -> None:
        assert self.fed is not None
        body: ResultBody = {"re": env["id"], "result": result}
        self.fed.send(self.inbox(frm), self.envelope("result", frm, body))

    def _h_sub(self, frm: str, env: Envelope, topic: str) -> None:
        assert self.fed is not None
        sub: SubBody = env["body"]
        pattern = sub["topic"]
        if topic_error(pattern, wildcards=True):
            self.inbound.reject("bad_topic", frm, "a subscription to an invalid topic filter")
            refusal: ErrorBody = {"re": env["id"],
                                  "error": wire_error(ErrorCode.BAD_REQUEST, f"bad topic filter {pattern!r}")}
            self.fed.send(self.inbox(frm), self.envelope("error", frm, refusal))
            return
        lease = self.settings.broker.lease_seconds
        self.interests.add(frm, pattern, time.time() + lease)
        self._ack(frm, env, {"topic": pattern, "lease": lease})

    def _h_unsub(self, frm: str, env: Envelope, topic: str) -> None:
        body: UnsubBody = env["body"]
        pattern = body["topic"]
        if isinstance(pattern, str):
            self.interests.remove(frm, pattern)

    def _h_lease(self, frm: str, env: Envelope, topic: str) -> None:
        body: LeaseBody = env["body"]
        patterns = body["topics"]
        if not isinstance(patterns, list) or any(topic_error(p, wildcards=True) for p in patterns):
            self.inbound.reject("bad_topic", frm, "a lease naming an invalid topic filter")
            return
        self.interests.refresh(frm, patterns, time.time() + self.settings.broker.lease_seconds)

    def _h_event(self, frm: str, env: Envelope, topic: str) -> None:
        body: EventBody = env["body"]
        t = body["topic"]
        if t not in self._valid_topics:
            if topic_error(t, wildcards=False):
                self.inbound.reject("bad_topic", frm, "an event on an invalid topic")
                return
            if len(self._valid_topics) < 10_000:
                self._valid_topics.add(t)
        self.router.stats.events_remote_in += 1
        subs = self.subs.match(frm, t)
        if subs:
            fan_out(subs, event_text(frm, t, body.get("data"), env.get("ts", time.time())))

    def _h_presence(self, frm: str, env: Envelope, topic: str) -> None:
        body: PresenceBody = env["body"]
        if frm == self.id:
            state, ts = body.get("state"), env.get("ts")
            if state == "online" and body.get("session") != self.session:
                self._other_self = dict(env)
            elif (state == "offline" and body.get("session") == self.session and isinstance(ts, (int, float))
                  and ts < self._conn_ts and not self.router.stopping and self.fed is not None):
                # The broker gave up an earlier connection of ours only after we were back, and
                # published its will: peers drop it (older than our presence), but it is now the
                # retained presence a later joiner reads.  Say online again.
                log.info("the broker published the will of an earlier connection of ours; announcing online again")
                self.router.spawn(self.fed.publish_retained(self.presence_topic(self.id),
                                                            self._presence("online", self._conn_ts)))
            return
        change = self.members.on_presence(frm, body["state"], str(body.get("session", "")), time.time(),
                                          env["ts"])
        if change == FULL:
            self._membership_full(frm)
        elif change == "online":
            self._node_online(frm)
        elif change == "offline":
            self.node_offline(frm, "went offline")
        elif body["state"] == "online" and self.members.is_online(frm):
            # It (re)connected to the broker without ever looking gone to us; it may have
            # given *us* up meanwhile (it judges our heartbeats by its own clock) and
            # dropped our interests.  Subscribing again costs one envelope per filter.
            self._resubscribe(frm)

    def _h_state(self, frm: str, env: Envelope, topic: str) -> None:
        body: StateBody = env["body"]
        if frm == self.id:
            return
        if (why := heartbeat_error(body)) is not None:
            # Taken in, it would break whatever reads it later: the housekeeping loop
            # (stale check on "interval"), role checks, the tools' view of the cluster.
            self.inbound.reject("bad_state", frm, f"a heartbeat that fails its model: {why}")
            return
        change = self.members.on_state(frm, body.get("session", ""), body, time.time(), env["ts"])
        if change == FULL:
            self._membership_full(frm)
        elif change == "online":
            self._node_online(frm)
        elif self.members.is_online(frm):
            m = self.members.get(frm)
            self.emit_cluster("state", frm, m.view() if m else {})

    _handlers: dict[str, Callable[..., None]] = {
        "call": _h_call, "result": _h_reply, "error": _h_reply, "sub": _h_sub, "unsub": _h_unsub,
        "lease": _h_lease, "event": _h_event, "presence": _h_presence, "state": _h_state,
    }

    # --- membership changes ------------------------------------------------------------

    def _membership_full(self, node: str) -> None:
        self.inbound.reject("membership_full", node, f"the membership table is full "
                            f"({self.members.max_members} members, cluster.max_members; none offline to replace)")

    def emit_cluster(self, what: str, node: str, data: dict[str, Any], extra: set[Hashable] | None = None) -> None:
        """``$cluster/node/<what>`` to this node's local subscribers (and ``extra``)."""
        topic = f"$cluster/node/{what}"
        subs = self.subs.match(self.id, topic)
        if extra:
            subs = subs | extra
        if subs:
            fan_out(subs, event_text(node, topic, data, time.time()))

    def _node_online(self, node: str) -> None:
        self._member_log.log(logging.INFO, ("online", node), "node %s is online", node)
        m = self.members.get(node)
        self.emit_cluster("online", node, m.view() if m else {"id": node}, self.subs.subscribers(node))
        # Re-establish our relayed subscriptions on it (it lost them when it went away).
        self._resubscribe(node)

    def _resubscribe(self, node: str) -> None:
        if self.fed is None:
            return
        for pattern in self.subs.patterns(node):
            body: SubBody = {"topic": pattern}
            self.fed.send(self.inbox(node), self.envelope("sub", node, body))

    def node_offline(self, node: str, why: str) -> None:
        self._member_log.log(logging.INFO, ("offline", node), "node %s %s", node, why)
        dropped = self.interests.drop(node)
        failed = self.pending.fail_node(node, f"{node} {why}")
        m = self.members.get(node)
        self.emit_cluster("offline", node, m.view() if m else {"id": node}, self.subs.subscribers(node))
        log.debug("node %s offline: dropped %d interests, failed %d calls", node, dropped, failed)

    # --- the join ----------------------------------------------------------------------------

    async def join(self, url: str, link: LinkFactory | None = None) -> None:
        """Connect to the broker at ``url``, check that our id is free, then take part.

        Raises ConfigError when the broker cannot be reached in time or a live node has our id.
        """
        if link is None:
            from ._federation import Federation
            link = Federation
        b = self.settings.broker
        fed = self.fed = link(
            node_id=self.id, url=url, keepalive=b.keepalive, connect_timeout=b.connect_timeout,
            attempt_timeout=b.attempt_timeout,
            will=self.will, on_envelopes=self._on_envelopes_first, on_connected=lambda: None,
            on_disconnected=self._on_disconnected, on_fatal=self._on_fatal,
            username=b.username, password=b.password, ca=b.ca, cert=b.cert, key=b.key,
            packer=self.sealer)
        await fed.__aenter__()
        try:
            async with asyncio.timeout(b.connect_timeout):
                while not fed.connected.is_set():
                    if self.fatal:
                        raise ConfigError(self.fatal)
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise ConfigError(f"cannot reach the MQTT broker at {url} within {b.connect_timeout:g} s "
                              f"({fed.explain()})") from None
        await self._check_unique_id()
        await fed.unsubscribe(self.presence_topic(self.id))
        await fed.unsubscribe(self.state_topic(self.id))
        fed.route(self.on_envelopes, self._on_connected)
        for topic, qos in ((self.inbox(self.id), 1), (self.broadcast_topic, 1),
                           (f"{self.prefix}/node/+/presence", 1), (f"{self.prefix}/node/+/state", 0)):
            await fed.subscribe(topic, qos)
        self._on_connected()

    async def _check_unique_id(self) -> None:
        """Refuse to start when a live node already uses this id."""
        assert self.fed is not None
        self._other_self = None
        self._other_state = None
        await self.fed.subscribe(self.presence_topic(self.id), qos=1)
        await self.fed.subscribe(self.state_topic(self.id), qos=0)
        try:
            async with asyncio.timeout(0.5):  # retained messages arrive right after SUBACK
                while self._other_self is None or self._other_state is None:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pass
        other = self._other_self
        if other is None:
            return
        st = self._other_state or {}
        age = time.time() - float(st.get("ts") or 0)
        alive = age < 3 * float(st.get("interval", 5.0))
        if st.get("host") == socket.gethostname() and st.get("pid"):
            try:
                os.kill(int(st["pid"]), 0)
            except (ProcessLookupError, ValueError):
                alive = False
            except PermissionError:
                pass
        if alive:
            raise ConfigError(
                f"node id {self.id!r} is already online (host {st.get('host', '?')}, pid {st.get('pid', '?')}, "
                f"ws {st.get('ws', '?')}, last heartbeat {age:.1f} s ago); choose another --id or stop that node")

    def _on_envelopes_first(self, topic: str, message: Any, raw: bytes | None = None) -> None:
        """Before we join: only look for another node with our id."""
        envs = message if isinstance(message, list) else [message]
        for env in envs[:MAX_ENVELOPES]:
            if not isinstance(env, dict):
                continue
            if self.verifier is not None and self.verifier.verify(env, fresh=False) is not None:
                continue
            if env.get("from") != self.id:
                continue
            body = env.get("body")
            if not isinstance(body, dict):
                continue
            if env.get("kind") == "presence" and body.get("state") == "online" and body.get("session") != self.session:
                self._other_self = env
            elif (env.get("kind") == "state" and body.get("session") != self.session
                  and heartbeat_error(body) is None):
                self._other_state = body

    def _on_connected(self) -> None:
        if self.joined.is_set():
            # Our own reconnect: a peer may not be subscribed again yet (the broker restarted,
            # and it reconnects after us) and would not get our calls.  Until it is heard from,
            # a call to it waits at most cluster.confirm_window (see send, _confirm, _unheard).
            self._clear_confirm()
            self._unconfirmed = set(self.online_peers())
        self.router.spawn(self._after_connect())

    def _clear_confirm(self) -> None:
        for timer in self._confirm_timers.values():
            timer.cancel()
        self._confirm_timers.clear()
        self._held.clear()
        self._unconfirmed.clear()

    async def _after_connect(self) -> None:
        fed = self.fed
        assert fed is not None
        await fed.publish_retained(self.presence_topic(self.id), self._presence("online", self._conn_ts))
        await fed.publish_retained(self.state_topic(self.id), self.envelope("state", None, self.router.heartbeat()),
                                   qos=0)
        # Restore our relayed subscriptions (the broker lost nothing of ours with a
        # clean session except subscriptions, which the adapter re-made; the remote
        # interests may have expired).
        for node in self.subs.nodes():
            if node != self.id and self.members.is_online(node):
                for pattern in self.subs.patterns(node):
                    body: SubBody = {"topic": pattern}
                    fed.send(self.inbox(node), self.envelope("sub", node, body))
        self.joined.set()

    def _on_fatal(self, message: str) -> None:
        self.fatal = message
        self.router.fail(message)

    def _on_disconnected(self, reason: str) -> None:
        self.pending.fail_all(f"lost the connection to the broker ({reason})")

    async def leave(self) -> None:
        """Say offline (retained) and close the link."""
        self._clear_confirm()
        if self.fed is not None:
            log.info("node %s: leaving the federation", self.id)
            await self.fed.close(final=(self.presence_topic(self.id), self._wire(self._presence("offline"))))

    # --- periodic work ---------------------------------------------------------------------

    async def heartbeat(self, body: dict[str, Any]) -> None:
        """Our state: into the table, to local ``$cluster`` subscribers, and (retained) to the broker."""
        self.members.set_self(self.session, body, time.time())
        me = self.members.get(self.id)
        self.emit_cluster("state", self.id, me.view() if me else {})
        if self.fed is not None and self.fed.connected.is_set():
            await self.fed.publish_retained(self.state_topic(self.id), self.envelope("state", None, body), qos=0)

    def housekeeping(self, now: float) -> None:
        """Once a second: forget old call ids, expire interests, give up silent members, renew leases."""
        # Forget old call ids (de-duplication window); insertion order is time order.
        seen, cutoff = self._seen_calls, now - SEEN_CALLS_SECONDS
        while seen:
            key = next(iter(seen))
            if seen[key] >= cutoff:
                break
            del seen[key]
        if self.fed is None:
            return
        for remote, pattern in self.interests.expire(now):
            log.info("interest of %s in %s expired (lease not renewed)", remote, pattern)
        grace = self.settings.broker.keepalive * 1.5
        for node in self.members.stale(now, grace):
            if self.members.mark_offline(node, now):
                self.node_offline(node, "stopped sending heartbeats")
        expiry = self.settings.cluster.offline_expiry
        for node in self.members.expire(now, expiry):
            self._member_log.log(logging.INFO, ("forgot", node), "forgot node %s: offline for more than "
                                 "%g s (cluster.offline_expiry)", node, expiry)
        lease = self.settings.broker.lease_seconds
        if time.monotonic() - self._last_lease >= lease / 3 and self.fed.connected.is_set():
            self._last_lease = time.monotonic()
            self.renew_leases()

    def renew_leases(self) -> None:
        """Tell every online node we relay from which of its topics we still want."""
        assert self.fed is not None
        for node in self.subs.nodes():
            if node != self.id and self.members.is_online(node):
                body: LeaseBody = {"topics": self.subs.patterns(node)}
                self.fed.send(self.inbox(node), self.envelope("lease", node, body))

    # --- numbers ---------------------------------------------------------------------------

    def rejected(self) -> dict[str, int]:
        """Inbound envelopes dropped, by reason: the verifier's and the edge's (``_inbound``)."""
        out = dict(self.verifier.counts) if self.verifier else {}
        for reason, n in self.inbound.counts.items():
            out[reason] = out.get(reason, 0) + n
        return out
