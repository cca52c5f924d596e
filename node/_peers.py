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

from ._cluster import FULL, Membership, PendingTable, Prober, wire_error
from ._config import Settings
from ._envelopes import (AckBody, CallBody, CatalogEnvBody, Envelope, Kind, ErrorBody, EventBody, LeaseBody,
                         MemberBody, NackBody, PresenceBody, ProbeBody, ResultBody, StateBody, SubBody, UnsubBody)
from ._errors import ConfigError, ErrorCode, NodeOffline, UnknownNode, from_wire
from ._heartbeat import CatalogBody, body_error, catalog_hash, heartbeat_error
from ._inbound import MAX_ENVELOPES, RETAINED, Inbound
from ._json import dumps
from ._ports import Link, Router
from ._pubsub import InterestTable, SubscriptionTable, event_text, fan_out
from ._ratelog import RateLimitedLog
from ._topics import topic_error

log = logging.getLogger(__name__)

#: How long a call's (sender, id) is remembered to drop duplicates (QoS 1 may deliver twice).
SEEN_CALLS_SECONDS = 120.0
#: Distinct service catalogs kept (by hash); nodes of one build share one.
MAX_CATALOGS = 1024
#: How long a catalog fetch waits for the retained catalog.
CATALOG_FETCH_SECONDS = 5.0
#: After a join, the retained heartbeats that come in this long are the snapshot the stale-on-join check reads.
JOIN_SNAPSHOT_SECONDS = 2.0
#: An offline verdict of ours goes out this many times more, 1, 3, 7, 15 and 31 probe intervals after it
#: (the gaps double; see Peers._tell_verdicts_again); a repeat says how old the verdict is ("age", s).
VERDICT_REPEATS = 5
VERDICT_AGE_MAX = 3600.0
#: The failure detector's traffic (probe, ack, nack, member) and the copy of a new connection's presence go
#: at QoS 0, as memberlist's go over UDP: a lost one is what indirect probes, suspicion, refutation and the
#: repeated verdicts are for.  At QoS 1 they would wait on the broker's persistence: nats-server stores
#: QoS 1 messages in JetStream, holds them while JetStream elects leaders after a server died, and closes a
#: client whose QoS 1 publish it could not store within 5 s (publishing the will of a live node); at QoS 0
#: they go through its core routing, which the election does not stop.
LIVENESS_QOS = 0
#: The reasons ``$cluster/node/offline`` carries.
OfflineReason = Literal["will", "left", "probe", "stale-on-join", "disconnected"]

LinkFactory = Callable[..., Link]


async def _subscribe_all(fed: Link, topics: tuple[tuple[str, int], ...]) -> None:
    """Subscribe to every ``(topic, qos)`` at once: a broker electing leaders (nats-server after a server
    died) holds each SUBACK up to 5 s, and one after the other they made a join take over 30 s."""
    async with asyncio.TaskGroup() as tg:
        for topic, qos in topics:
            tg.create_task(fed.subscribe(topic, qos))


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
        cl = settings.cluster
        self.prober = Prober(interval=cl.probe_interval, timeout=cl.probe_timeout, indirect=cl.indirect_probes)
        # Service catalogs by hash (members hold only the hash), the fetches under way, what we published.
        self.catalogs: dict[str, dict[str, Any]] = {}
        self._fetching: dict[str, asyncio.Event] = {}   # hash -> set when it came
        self._wanted: dict[str, str] = {}                # hash -> a node that has it (fetch not yet started)
        self._catalog_published = ""
        # Peers' heartbeats ({p}/node/+/state) come in only while someone needs their metrics.
        self._metrics_subscribed = False
        self._metrics_until = 0.0        # linger after a node.cluster that asked for metrics (or the join)
        self._stale_check_at = 0.0       # when the stale-on-join check runs (0: done)
        self._states_seen = 0            # heartbeats taken since the state subscription was made
        self._lost_at = 0.0              # when we lost the broker (0: connected)
        # Our own offline verdicts, told again (see probe_round): node -> (session, when, repeats left)
        self._verdicts: dict[str, tuple[str, float, int]] = {}
        self._replayed = False   # the message being routed was replayed by the broker (retained, new subscription)
        self._doubted_wills: dict[str, float] = {}   # node -> when a replayed will of it made it stale

    # --- topics ----------------------------------------------------------------

    def inbox(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/inbox"

    def events_topic(self, node: str, topic: str) -> str:
        return f"{self.prefix}/node/{node}/events/{topic}"

    def presence_topic(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/presence"

    def state_topic(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/state"

    def catalog_topic(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/catalog"

    @property
    def broadcast_topic(self) -> str:
        return f"{self.prefix}/broadcast"

    @property
    def members_topic(self) -> str:
        """Suspicions, deaths and refutations, once each (not retained)."""
        return f"{self.prefix}/members"

    @property
    def states_topic(self) -> str:
        return f"{self.prefix}/node/+/state"

    # --- envelopes -------------------------------------------------------------

    def envelope(self, kind: Kind, to: str | None, body: Mapping[str, Any], ts: float | None = None) -> Envelope:
        # Sealed (MAC or signature) by the federation as it goes out: one for a whole batch.
        return {"v": 1, "kind": kind, "from": self.id, "to": to, "id": f"{self._id_prefix}{next(self._id_seq):x}",
                "ts": ts if ts is not None else time.time(), "body": body}

    def _presence(self, state: Literal["online", "offline"], ts: float | None = None,
                  reason: Literal["will", "left"] = "will") -> Envelope:
        body: PresenceBody = {"state": state, "session": self.session}
        if state == "online" and self._catalog_published:
            body["catalog_hash"] = self._catalog_published
        if state == "offline":
            body["reason"] = reason
        return self.envelope("presence", None, body, ts)

    def _online(self) -> Envelope:
        """The online presence of the current connection (its ts is the connection's, as its will's)."""
        return self._presence("online", self._conn_ts)

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

    def hello(self) -> tuple[str, bytes]:
        """What a reconnection publishes first, before its subscriptions (at QoS 0, not retained): the
        online presence of the connection whose will was just set, so a peer that took the will of a
        link of ours the broker closed while we were alive lists us online again as soon as we are
        connected, not once the broker has stored the retained presence (see :meth:`_say_online`)."""
        return self.presence_topic(self.id), self._wire(self._online())

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

    def on_envelopes(self, topic: str, message: Any, raw: bytes | None = None, replayed: bool = False) -> None:
        """Route what one MQTT message carried (an envelope, a batch or an array), once the edge admitted it.
        ``raw``: the message's bytes (authenticators are checked over them); ``replayed``: the broker sent it
        from its retained store, for a subscription just made (MQTT's RETAIN flag on delivery)."""
        self._replayed = replayed
        for env in self.inbound.admit(message, raw):
            kind, frm = env["kind"], env["from"]
            if kind in RETAINED and kind != "catalog" and frm != self.id:
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
                self._say_online()
            return
        if (body["state"] == "offline" and self._replayed and body.get("reason") != "left"
                and self._doubt_will(frm, str(body.get("session", "")))):
            return   # (a clean stop's presence is the node's own word: taken as it comes)
        h = body.get("catalog_hash")
        h = h if isinstance(h, str) and len(h) <= 64 else None
        m = self.members.get(frm)
        was_stale = m is not None and m.online and bool(m.suspect_since)
        change = self.members.on_presence(frm, body["state"], str(body.get("session", "")), time.time(),
                                          env["ts"], h)
        if h and body["state"] == "online":
            self.want_catalog(frm, h)
        if change == FULL:
            self._membership_full(frm)
        elif change == "online":
            self._node_online(frm)
        elif change == "offline":
            self.prober.forget(frm)
            # its will, or the presence of a clean stop: the same envelope, told apart by its ts
            self.node_offline(frm, "went offline", "left" if body.get("reason") == "left" else "will")
        elif body["state"] == "online" and self.members.is_online(frm):
            if was_stale and m is not None and not m.suspect_since:
                self._no_longer_stale(frm)   # a newer presence: it spoke
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
        if body.get("catalog") is not None:   # a node from before the catalog split: its catalog is here
            cat = body.pop("catalog")
            body["catalog_hash"] = legacy = catalog_hash(cat)
            self._keep_catalog(legacy, cat)
        elif isinstance(named := body.get("catalog_hash"), str) and named:
            self.want_catalog(frm, named)
        self._states_seen += 1
        m = self.members.get(frm)
        if m is not None and not m.online and m.session and body.get("session") == m.session \
                and env["ts"] > m.since + 1:
            self._alive(frm, m.session)   # a heartbeat made after we gave it up (stale-on-join, probe): back
        change = self.members.on_state(frm, body.get("session", ""), body, time.time(), env["ts"])
        if change == FULL:
            self._membership_full(frm)
        elif change == "online":
            self._node_online(frm)
        elif self.members.is_online(frm):
            m = self.members.get(frm)
            self.emit_cluster("state", frm, m.view(services=False) if m else {})

    def _h_catalog(self, frm: str, env: Envelope, topic: str) -> None:
        body: CatalogEnvBody = env["body"]
        if (why := body_error(CatalogBody, body)) is not None:
            self.inbound.reject("bad_catalog", frm, f"a catalog that fails its model: {why}")
            return
        if catalog_hash(body["catalog"]) != body["hash"]:
            self.inbound.reject("bad_catalog", frm, "a catalog whose hash does not match it")
            return
        self._keep_catalog(body["hash"], body["catalog"])

    def _h_probe(self, frm: str, env: Envelope, topic: str) -> None:
        assert self.fed is not None
        body: ProbeBody = env["body"]
        target = body.get("target")
        if not target or target == self.id:
            ack: AckBody = {"re": env["id"], "target": self.id, "session": self.session}
            self.fed.send(self.inbox(frm), self.envelope("ack", frm, ack), LIVENESS_QOS)
            return
        if not isinstance(target, str) or target not in self.members:
            return   # we can't help: the asker's other helpers will
        probe = self.envelope("probe", target, {})
        self.prober.relay(probe["id"], frm, env["id"], target, time.time())
        self.fed.send(self.inbox(target), probe, LIVENESS_QOS)

    def _h_ack(self, frm: str, env: Envelope, topic: str) -> None:
        body: AckBody = env["body"]
        got = self.prober.acked(str(body["re"]), frm, body.get("target"))
        if isinstance(got, tuple):   # an ack of a probe we made for someone else: pass it on
            assert self.fed is not None
            origin, origin_req, target = got
            fwd: AckBody = {"re": origin_req, "target": target, "session": str(body.get("session", ""))}
            self.fed.send(self.inbox(origin), self.envelope("ack", origin, fwd), LIVENESS_QOS)
        elif got is not None:
            self._alive(got, str(body.get("session", "")))

    def _h_nack(self, frm: str, env: Envelope, topic: str) -> None:
        body: NackBody = env["body"]
        if isinstance(re_ := body.get("re"), str):
            self.prober.nacked(re_, frm)   # it heard us and we heard it: a sign of our health, not the target's

    def _h_member(self, frm: str, env: Envelope, topic: str) -> None:
        body: MemberBody = env["body"]
        node, state, session = body["node"], body["state"], str(body.get("session", ""))
        if node == self.id:
            if state in ("suspect", "offline") and session == self.session:
                self._refute()
            return
        if state == "alive":
            if frm == node:   # only a node can say it is alive
                self._alive(node, session)
        elif state == "suspect":
            if self.members.suspect(node, session, time.time()):
                self._stale(node, f"suspected by {frm}")
        elif state == "offline":
            now = time.time()
            age = body.get("age")
            if age is not None:   # a verdict told again: out of date if the node spoke since (our clock)
                if type(age) not in (int, float) or not 0 <= age <= VERDICT_AGE_MAX:
                    return
                m = self.members.get(node)
                if m is not None and m.heard > now - age:
                    return
            if self.members.mark_offline(node, now, session):
                self.prober.forget(node)
                self.node_offline(node, f"stopped answering probes (declared by {frm})", "probe")

    _handlers: dict[str, Callable[..., None]] = {
        "call": _h_call, "result": _h_reply, "error": _h_reply, "sub": _h_sub, "unsub": _h_unsub,
        "lease": _h_lease, "event": _h_event, "presence": _h_presence, "state": _h_state,
        "catalog": _h_catalog, "probe": _h_probe, "ack": _h_ack, "nack": _h_nack,
        "member": _h_member,
    }

    # --- catalogs ----------------------------------------------------------------------

    def _keep_catalog(self, h: str, catalog: dict[str, Any]) -> None:
        if h not in self.catalogs:
            if len(self.catalogs) >= MAX_CATALOGS:
                del self.catalogs[next(iter(self.catalogs))]
            self.catalogs[h] = catalog
        self._wanted.pop(h, None)
        came = self._fetching.get(h)
        if came is not None:
            came.set()

    def want_catalog(self, node: str, h: str) -> None:
        """``node``'s catalog has hash ``h``: fetch it unless it is known or on its way."""
        if h in self.catalogs or h in self._fetching or h in self._wanted or self.fed is None:
            return
        self._wanted[h] = node
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return   # (driven without a loop, as the in-process tests do: housekeeping starts it)
        self._start_fetches()

    def _start_fetches(self) -> None:
        for h, node in list(self._wanted.items()):
            del self._wanted[h]
            self._fetching[h] = asyncio.Event()
            self.router.spawn(self._fetch_catalog(node, h))

    async def _fetch_catalog(self, node: str, h: str) -> None:
        """Subscribe to ``node``'s retained catalog until it came (or ``CATALOG_FETCH_SECONDS``), then let go."""
        assert self.fed is not None
        came = self._fetching[h]
        topic = self.catalog_topic(node)
        try:
            await self.fed.subscribe(topic, qos=1)
            async with asyncio.timeout(CATALOG_FETCH_SECONDS):
                await came.wait()
        except TimeoutError:
            log.info("the catalog of %s (hash %s) did not come within %g s; asking again on its next mention",
                     node, h[:12], CATALOG_FETCH_SECONDS)
        finally:
            self._fetching.pop(h, None)
            if self.fed is not None:
                await self.fed.unsubscribe(topic)

    def catalog_of(self, node: str) -> dict[str, Any]:
        """The service catalog of ``node`` as far as known ({} until fetched)."""
        if node == self.id:
            return self.router.catalog()
        m = self.members.get(node)
        return self.catalogs.get(m.catalog_hash, {}) if m else {}

    # --- liveness ------------------------------------------------------------------------

    def _alive(self, node: str, session: str) -> None:
        m = self.members.get(node)
        if m is not None and not m.online and session and session == m.session:
            # declared offline (a probe verdict, stale-on-join) yet it answers: it is back
            if self.members.on_presence(node, "online", session, time.time()) == "online":
                self._node_online(node)
            return
        if self.members.alive(node, session, time.time()):
            self._no_longer_stale(node)

    def _no_longer_stale(self, node: str) -> None:
        self._member_log.log(logging.INFO, ("alive", node), "node %s answers again: no longer stale", node)
        m = self.members.get(node)
        self.emit_cluster("online", node, m.view(self.catalogs) if m else {"id": node})

    def _doubt_will(self, node: str, session: str) -> bool:
        """A will of ``node`` replayed from the broker's retained store on a subscription of ours that is new
        (a reconnect, or one set up late) while we list ``node`` online in that session: stale, not offline.

        The broker published it for a link it closed; the node may be alive on another link that cannot
        speak yet (nats-server, electing JetStream leaders, closes clients whose QoS 1 publish it could not
        store, and holds the new link's reads while it sets up its subscriptions), and the ``online`` it
        said first went out before this subscription was there.  It is offline (reason ``will``) if it has
        not spoken within ``cluster.suspect_timeout``.  True: taken as doubt (or already doubted)."""
        m = self.members.get(node)
        if m is None or not m.online or m.session != session:
            return False
        now = time.time()
        if self.members.suspect(node, session, now):
            self._doubted_wills[node] = now
            self._stale(node, "its will, read from the broker's retained store: offline unless it speaks")
        return True

    def _stale(self, node: str, why: str) -> None:
        self._member_log.log(logging.INFO, ("stale", node), "node %s is stale: %s", node, why)
        m = self.members.get(node)
        self.emit_cluster("stale", node, {**(m.view(self.catalogs) if m else {"id": node}), "reason": why})

    def _refute(self) -> None:
        """A peer suspects us: say we are alive, once, to everyone."""
        if self.fed is None or not self.fed.connected.is_set():
            return
        log.info("a peer suspects this node; refuting")
        self.prober.strained()
        body: MemberBody = {"node": self.id, "state": "alive", "session": self.session}
        self.fed.send(self.members_topic, self.envelope("member", None, body), LIVENESS_QOS)

    def _disseminate(self, node: str, state: Literal["suspect", "offline"], age: float | None = None) -> None:
        assert self.fed is not None
        m = self.members.get(node)
        body: MemberBody = {"node": node, "state": state, "session": m.session if m else ""}
        if age is not None:
            body["age"] = round(age, 3)
        self.fed.send(self.members_topic, self.envelope("member", None, body), LIVENESS_QOS)

    def _tell_verdicts_again(self, now: float) -> None:
        """Each of our ``offline`` verdicts goes out again VERDICT_REPEATS times, the gaps doubling from one
        probe interval (2.6 min in all by default), while the node stays offline in our view with the same
        session: a node that was between two broker connections, or refused ``{p}/members`` for a while,
        when it first went out (so missed it) learns it too (SWIM's retransmission; memberlist
        piggybacks each update a few times for the same reason)."""
        interval = self.settings.cluster.probe_interval
        for node, (session, when, left) in list(self._verdicts.items()):
            m = self.members.get(node)
            if m is None or m.online or m.session != session or left <= 0:
                del self._verdicts[node]
            elif now >= when + interval * (2 ** (VERDICT_REPEATS - left + 1) - 1):
                self._verdicts[node] = (session, when, left - 1)
                self._disseminate(node, "offline", age=now - when)

    def probe_round(self, now: float) -> None:
        """Probe this node's successor once per interval; ask helpers, suspect, declare offline when it's time.

        Not while this node cannot hear: when the broker does not give it its inbox (acks) or the
        members topic (refutations), a silence says nothing about the others; its probes in flight
        are forgotten, no verdict is made, and its local health worsens (see :class:`Prober`).
        """
        assert self.fed is not None
        missing = self.fed.missing()
        if missing and (self.inbox(self.id) in missing or self.members_topic in missing):
            self.prober.deaf(now)
            return
        for origin, origin_req, silent in self.prober.nacks_due(now):   # we probed for them, in vain
            nack: NackBody = {"re": origin_req, "target": silent}
            self.fed.send(self.inbox(origin), self.envelope("nack", origin, nack), LIVENESS_QOS)
        online = self.online_peers()
        req_env = self.envelope("probe", None, {})
        target = self.members.ring_successor()
        if self.prober.start(now, req_env["id"], target):
            assert target is not None
            req_env["to"] = target
            self.fed.send(self.inbox(target), req_env, LIVENESS_QOS)
        self._tell_verdicts_again(now)
        ask, suspects = self.prober.due(now, online)
        for req, helper in ask:
            target = self.prober.target_of(req)
            if target is None:
                continue
            body: ProbeBody = {"target": target}
            env = self.envelope("probe", helper, body)
            env["id"] = req   # the helper's ack echoes our id
            self.fed.send(self.inbox(helper), env, LIVENESS_QOS)
        for node in suspects:
            if self.members.suspect(node, None, now):
                self._stale(node, "it did not answer a probe, nor the indirect probes")
                self._disseminate(node, "suspect")
        for node in self.members.suspects_due(now, self.prober.suspect_after(self.settings.cluster.suspect_timeout)):
            m = self.members.get(node)
            if m is not None and self._doubted_wills.pop(node, None) == m.suspect_since:
                if self.members.mark_offline(node, now):   # our own doubt, cleared: no verdict to tell
                    self.prober.forget(node)
                    self.node_offline(node, "went offline (its will, read from the retained store, stood)", "will")
                continue
            if self.members.mark_offline(node, now):
                self.prober.forget(node)
                self._disseminate(node, "offline")
                m = self.members.get(node)
                self._verdicts[node] = (m.session if m else "", now, VERDICT_REPEATS)
                self.node_offline(node, "stopped answering probes", "probe")

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
        self.emit_cluster("online", node, m.view(self.catalogs) if m else {"id": node}, self.subs.subscribers(node))
        # Re-establish our relayed subscriptions on it (it lost them when it went away).
        self._resubscribe(node)

    def _resubscribe(self, node: str) -> None:
        if self.fed is None:
            return
        for pattern in self.subs.patterns(node):
            body: SubBody = {"topic": pattern}
            self.fed.send(self.inbox(node), self.envelope("sub", node, body))

    def node_offline(self, node: str, why: str, reason: OfflineReason) -> None:
        """``node`` is offline (``reason``: will, left, probe, stale-on-join, disconnected): tell whoever cares."""
        self._member_log.log(logging.INFO, ("offline", node), "node %s %s", node, why)
        self._doubted_wills.pop(node, None)
        dropped = self.interests.drop(node)
        failed = self.pending.fail_node(node, f"{node} {why}")
        m = self.members.get(node)
        self.emit_cluster("offline", node, {**(m.view(self.catalogs) if m else {"id": node}), "reason": reason},
                          self.subs.subscribers(node))
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
            will=self.will, hello=self.hello, on_envelopes=self._on_envelopes_first, on_connected=lambda: None,
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
        await _subscribe_all(fed, ((self.inbox(self.id), 1), (self.broadcast_topic, 1), (self.members_topic, 1),
                                   (f"{self.prefix}/node/+/presence", 1)))
        # The retained heartbeats are the join's snapshot: metrics, and the liveness timestamps the
        # stale-on-join check reads.  Afterwards they come in only while someone watches.
        now = time.time()
        self._metrics_until = max(self._metrics_until, now + JOIN_SNAPSHOT_SECONDS)
        self._stale_check_at = now + JOIN_SNAPSHOT_SECONDS
        await self._metrics_subscription(now)
        # Announced before join returns: the node says it is ready only when /readyz agrees.
        await self._after_connect()

    async def _check_unique_id(self) -> None:
        """Refuse to start when a live node already uses this id."""
        assert self.fed is not None
        self._other_self = None
        self._other_state = None
        await _subscribe_all(self.fed, ((self.presence_topic(self.id), 1), (self.state_topic(self.id), 0)))
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

    def _on_envelopes_first(self, topic: str, message: Any, raw: bytes | None = None, replayed: bool = False) -> None:
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

    def _say_online(self) -> None:
        """This connection's presence, to everyone at once: not retained, at LIVENESS_QOS.

        The retained copy follows, but the broker may hold it (nats-server stores it in JetStream, which
        stops while it elects leaders), and a peer that took a will of ours (the broker closed a link of
        ours that was alive) would list us offline until then.  Both carry the connection's ts, so a
        receiver keeps whichever comes first and a late will of an earlier connection stays older.
        A reconnection says it in its ``hello`` (before its subscriptions); this is for the will of an
        earlier connection that the broker published after we were back: both copies, the retained one
        (what a later joiner reads) in a task.
        """
        if self.fed is not None:
            self.fed.send(self.presence_topic(self.id), self._online(), LIVENESS_QOS)
            self.router.spawn(self.fed.publish_retained(self.presence_topic(self.id), self._online()))

    def _clear_confirm(self) -> None:
        for timer in self._confirm_timers.values():
            timer.cancel()
        self._confirm_timers.clear()
        self._held.clear()
        self._unconfirmed.clear()

    async def _after_connect(self) -> None:
        fed = self.fed
        assert fed is not None
        self._lost_at = 0.0
        await self._publish_catalog()
        await fed.publish_retained(self.presence_topic(self.id), self._online())
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
        self._lost_at = self._lost_at or time.time()
        self.pending.fail_all(f"lost the connection to the broker ({reason})")

    async def leave(self) -> None:
        """Say offline (retained) and close the link."""
        self._clear_confirm()
        if self.fed is not None:
            log.info("node %s: leaving the federation", self.id)
            await self.fed.close(final=(self.presence_topic(self.id),
                                        self._wire(self._presence("offline", reason="left"))))

    # --- periodic work ---------------------------------------------------------------------

    async def _publish_catalog(self) -> None:
        """Our catalog (retained) if it is not the one published: on connect, and when services change."""
        assert self.fed is not None
        catalog = self.router.catalog()
        h = catalog_hash(catalog)
        self._keep_catalog(h, catalog)
        if h == self._catalog_published and self.fed.connected.is_set():
            return
        body: CatalogEnvBody = {"hash": h, "catalog": catalog}
        # Marked before the await: the join and the first heartbeat both get here, and one publish will do.
        self._catalog_published = h
        try:
            await self.fed.publish_retained(self.catalog_topic(self.id), self.envelope("catalog", None, body),
                                            qos=1)
        except BaseException:
            if self._catalog_published == h:
                self._catalog_published = ""   # not published: the next heartbeat tries again
            raise

    async def heartbeat(self, body: dict[str, Any]) -> None:
        """Our state: into the table, to local ``$cluster`` subscribers, and (retained) to the broker.

        Retained, so whoever subscribes later reads it; delivered to the nodes that hold the
        state subscription now (someone watches there).  A changed catalog is published,
        and announced in a new presence (that one goes to everyone).
        """
        h = body.get("catalog_hash")
        if isinstance(h, str) and h not in self.catalogs:   # our own: known here even with no broker
            self._keep_catalog(h, self.router.catalog())
        self.members.set_self(self.session, body, time.time())
        me = self.members.get(self.id)
        self.emit_cluster("state", self.id, me.view(services=False) if me else {})
        if self.fed is not None and self.fed.connected.is_set():
            if body.get("catalog_hash") and body["catalog_hash"] != self._catalog_published:
                await self._publish_catalog()
                await self.fed.publish_retained(self.presence_topic(self.id), self._online())
            await self.fed.publish_retained(self.state_topic(self.id), self.envelope("state", None, body), qos=0)

    # --- metrics on demand ---------------------------------------------------------------

    def metrics_watched(self) -> bool:
        """Whether someone here needs peers' heartbeats now: a local or relayed subscriber of
        ``$cluster/node/state``."""
        t = "$cluster/node/state"
        return bool(self.subs.match(self.id, t)) or self.interests.wanted(t)

    async def want_metrics(self, wait: float = 2.0) -> None:
        """Fresh metrics for a ``node.cluster`` that asks for them: hold the state subscription for
        ``cluster.metrics_linger`` s; when it is new, wait (at most ``wait`` s) for the retained snapshot."""
        now = time.time()
        self._metrics_until = max(self._metrics_until, now + self.settings.cluster.metrics_linger)
        if self._metrics_subscribed or self.fed is None or not self.fed.connected.is_set():
            return
        await self._metrics_subscription(now)
        want = len(self.online_peers())
        deadline = time.monotonic() + wait
        last, quiet = -1, 0
        while self._states_seen < want and time.monotonic() < deadline:
            quiet = quiet + 1 if self._states_seen == last else 0
            if quiet >= 10:   # 0.2 s without a new one: the broker has sent what it holds
                break
            last = self._states_seen
            await asyncio.sleep(0.02)

    async def _metrics_subscription(self, now: float) -> None:
        """Hold ``{p}/node/+/state`` exactly while it is wanted."""
        fed = self.fed
        if fed is None:
            return
        want = now < self._metrics_until or self.metrics_watched()
        if want and not self._metrics_subscribed:
            self._metrics_subscribed = True
            self._states_seen = 0
            await fed.subscribe(self.states_topic, 0)
        elif not want and self._metrics_subscribed:
            self._metrics_subscribed = False
            await fed.unsubscribe(self.states_topic)

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
        expiry = self.settings.cluster.offline_expiry
        for node in self.members.expire(now, expiry):
            self._member_log.log(logging.INFO, ("forgot", node), "forgot node %s: offline for more than "
                                 "%g s (cluster.offline_expiry)", node, expiry)
        if not self.fed.connected.is_set():
            # No probes, no verdicts on anyone in particular; but after the heartbeat grace of each
            # (4 of its intervals) every peer is out of reach from here (their retained presences bring
            # them back when we reconnect).
            if self._lost_at:
                floor = 1.5 * self.settings.broker.keepalive
                for node in self.online_peers():
                    m = self.members.get(node)
                    interval = float((m.state.get("interval") if m else None) or 5.0)
                    if now - self._lost_at > max(floor, 4 * interval) and self.members.mark_offline(
                            node, now, judged=False):
                        self.prober.forget(node)
                        self.node_offline(node, "is unreachable: this node lost the broker", "disconnected")
            return
        if self._stale_check_at and now >= self._stale_check_at:
            self._stale_check_at = 0.0
            bound = self.settings.cluster.stale_after
            for node in self.members.stale_on_join(now, bound):
                if self.members.mark_offline(node, now):
                    self.node_offline(node, f"is offline: its retained presence and heartbeat are older than "
                                      f"{bound:g} s (cluster.stale_after)", "stale-on-join")
        self.probe_round(now)
        if self._wanted:
            self._start_fetches()
        if (now < self._metrics_until or self.metrics_watched()) != self._metrics_subscribed:
            self.router.spawn(self._metrics_subscription(now))
        lease = self.settings.broker.lease_seconds
        if time.monotonic() - self._last_lease >= lease / 3:
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
