"""The node-to-node protocol (``_peers.Peers``) in-process: a recording link, a fake router, no broker.

As websockets tests its protocol core without sockets: feed envelopes in as
the link would hand them, read what went out of the recording link, and what
the fake router was asked to do.  Every envelope kind both ways, membership
transitions and their ``$cluster`` events, leases, the join and its unique-id
check.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
from typing import Any

import pytest

from cloudisense.node._cluster import Membership, PendingTable
from cloudisense.node._config import Settings
from cloudisense.node._errors import ConfigError, NodeOffline, UnknownNode
from cloudisense.node._heartbeat import catalog_hash
from cloudisense.node._peers import SEEN_CALLS_SECONDS, Peers
from cloudisense.node._pubsub import SubscriptionTable
from cloudisense.node._stats import Stats

pytestmark = pytest.mark.timeout(20)

PREFIX = "unit-peers/v1"


class RecordingLink:
    """Stands in for ``_federation.Federation``: records what the protocol sends, subscribes, publishes."""

    instances: list["RecordingLink"] = []

    def __init__(self, **kw: Any) -> None:
        self.kw = kw
        self.url = kw.get("url", "mqtt://fake")
        self.connected = asyncio.Event()
        self.connected.set()
        self.counters: dict[str, int] = {"rx_messages": 0}
        self.sent: list[tuple[str, dict[str, Any], int]] = []
        self.retained: list[tuple[str, dict[str, Any], int]] = []
        self.subs: dict[str, int] = {}
        self.unsubscribed: list[str] = []
        self.routed: tuple[Any, Any] | None = None
        self.closed_with: Any = "open"
        self.on_subscribe: Any = None   # called with the topic (to play back retained messages)
        self.refused: set[str] = set()   # topics the broker "refuses" (missing())
        RecordingLink.instances.append(self)

    async def __aenter__(self) -> "RecordingLink":
        return self

    def send(self, topic: str, env: dict[str, Any], qos: int = 1) -> None:
        self.sent.append((topic, json.loads(json.dumps(env)), qos))

    async def publish_retained(self, topic: str, env: dict[str, Any], qos: int = 1) -> None:
        self.retained.append((topic, env, qos))

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        self.subs[topic] = qos
        if self.on_subscribe is not None:
            self.on_subscribe(topic)

    async def unsubscribe(self, topic: str) -> None:
        self.subs.pop(topic, None)
        self.unsubscribed.append(topic)

    @property
    def subscriptions(self) -> list[str]:
        return sorted(self.subs)

    def missing(self) -> list[str]:
        return sorted(self.refused)

    def route(self, on_envelopes: Any, on_connected: Any) -> None:
        self.routed = (on_envelopes, on_connected)

    async def close(self, final: tuple[str, bytes] | None = None) -> None:
        self.closed_with = final

    def explain(self) -> str:
        return "fake"

    def kinds(self) -> list[str]:
        return [env["kind"] for _, env, _ in self.sent]


class Sink:
    """A local subscriber: keeps the event frames it was handed."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def deliver_event(self, text: str) -> None:
        self.events.append(json.loads(text))


class FakeRouter:
    """The node as ``Peers`` sees it (``_ports.Router``): records runs, spawns, expected replies."""

    id = "me"
    version = "test"

    def __init__(self) -> None:
        self.stats = Stats()
        self.runs: list[tuple[str, str, dict[str, Any], float, str, Any]] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self.expected: list[tuple[str, str, float, str]] = []
        self.failed: list[str] = []
        self.stopping = False
        self.pending: PendingTable | None = None

    def run_local(self, service: str, method: str, params: Any, t: float, role: str, done: Any,
                  caller: str | None = None) -> None:
        self.runs.append((service, method, params, t, role, done))

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def expect_reply(self, req: str, node: str, owner: Any, done: Any, t: float, why: str) -> None:
        self.expected.append((req, node, t, why))
        assert self.pending is not None
        self.pending.add_call(req, node, owner, done)

    def heartbeat(self) -> dict[str, Any]:
        return state_body("me-session")

    def catalog(self) -> dict[str, Any]:
        return CATALOG

    def fail(self, message: str) -> None:
        self.failed.append(message)


CATALOG = {"svc": {"description": "", "methods": {"get": {"description": "", "mutates": False, "params": {}}}}}


def state_body(session: str, *, interval: float = 5.0, ts: float | None = None, **extra: Any) -> dict[str, Any]:
    return {"session": session, "ts": ts if ts is not None else time.time(), "interval": interval,
            "host": "elsewhere", "pid": 1, "version": "0", "ws": "ws://x", "started": 0.0,
            "metrics": {}, "catalog_hash": catalog_hash(CATALOG), "processes": [], **extra}


_seq = iter(range(1, 1_000_000))


def env(kind: str, frm: str, body: dict[str, Any], *, to: str | None = "me", ts: float | None = None,
        id: str | None = None) -> dict[str, Any]:
    return {"v": 1, "kind": kind, "from": frm, "to": to, "id": id or f"{frm}-{next(_seq)}",
            "ts": ts if ts is not None else time.time(), "body": body}


@pytest.fixture
def parts():
    settings = Settings(id="me", broker={"url": "none", "prefix": PREFIX, "keepalive": 2, "lease_seconds": 30},
                        system={"temperature": "sim:40"})
    router = FakeRouter()
    subs = SubscriptionTable()
    pending = PendingTable()
    router.pending = pending
    peers = Peers(router, settings, session="me-session", subs=subs, pending=pending)  # type: ignore[arg-type]
    link = RecordingLink(url="mqtt://fake")
    peers.fed = link
    peers._keep_catalog(catalog_hash(CATALOG), CATALOG)   # the catalog of this build (peers of it share it)
    return peers, link, router, subs, pending


def watched_cluster(peers: Peers, subs: SubscriptionTable, pattern: str, *nodes: str) -> Sink:
    """``nodes`` online (their presence, then their heartbeat), and a local subscriber of ``pattern``."""
    sink = Sink()
    subs.add(sink, "me", pattern)
    for node in nodes:
        online(peers, node)
    return sink


def online(peers: Peers, node: str, session: str = "s1") -> None:
    """``node`` comes online the way it does on the wire: its presence, then its heartbeat."""
    peers.on_envelopes(peers.presence_topic(node), env("presence", node, {"state": "online", "session": session},
                                                      to=None))
    peers.on_envelopes(peers.state_topic(node), env("state", node, state_body(session), to=None))


# --- topic names and envelopes -------------------------------------------------------------

def test_topic_names_follow_the_wire_contract(parts):
    peers, *_ = parts
    assert peers.inbox("b") == f"{PREFIX}/node/b/inbox"
    assert peers.events_topic("b", "metrics/#") == f"{PREFIX}/node/b/events/metrics/#"
    assert peers.presence_topic("b") == f"{PREFIX}/node/b/presence"
    assert peers.state_topic("b") == f"{PREFIX}/node/b/state"
    assert peers.broadcast_topic == f"{PREFIX}/broadcast"


def test_envelopes_have_unique_ids_and_the_wire_fields(parts):
    peers, *_ = parts
    a, b = peers.envelope("call", "b", {}), peers.envelope("call", "b", {})
    assert set(a) == {"v", "kind", "from", "to", "id", "ts", "body"}
    assert a["from"] == "me" and a["v"] == 1 and a["id"] != b["id"]


def test_the_will_is_an_offline_presence_of_this_connection(parts):
    peers, *_ = parts
    topic, payload = peers.will()
    will = json.loads(payload)
    assert topic == peers.presence_topic("me")
    assert will["kind"] == "presence" and will["body"] == {"state": "offline", "session": "me-session",
                                                           "reason": "will"}
    assert will["ts"] == peers._conn_ts


# --- calls, both ways ----------------------------------------------------------------------

def test_an_inbound_call_runs_locally_and_its_result_goes_back(parts):
    peers, link, router, *_ = parts
    call = env("call", "b", {"service": "svc", "method": "get", "params": {"x": 1}, "role": "viewer",
                             "reply_by": time.time() + 5})
    peers.on_envelopes(peers.inbox("me"), call)
    [(service, method, params, t, role, done)] = router.runs
    assert (service, method, params, role) == ("svc", "get", {"x": 1}, "viewer") and 0 < t <= 5
    done({"ok": True}, None)
    [(topic, reply, _)] = link.sent
    assert topic == peers.inbox("b")
    assert reply["kind"] == "result" and reply["to"] == "b" and reply["body"] == {"re": call["id"],
                                                                                  "result": {"ok": True}}
    assert router.stats.remote_calls_in == 1 and router.stats.calls == 1


def test_an_inbound_call_that_fails_answers_with_an_error_envelope(parts):
    peers, link, router, *_ = parts
    call = env("call", "b", {"service": "svc", "method": "get", "reply_by": time.time() + 5})
    peers.on_envelopes(peers.inbox("me"), call)
    router.runs[0][-1](None, {"code": "forbidden", "message": "no"})
    [(_, reply, _)] = link.sent
    assert reply["kind"] == "error" and reply["body"]["error"]["code"] == "forbidden"
    assert router.stats.errors == {"forbidden": 1}


def test_a_duplicate_a_late_and_a_no_reply_call(parts):
    peers, link, router, *_ = parts
    call = env("call", "b", {"service": "svc", "method": "get", "reply_by": time.time() + 5})
    peers.on_envelopes(peers.inbox("me"), call)
    peers.on_envelopes(peers.inbox("me"), call)           # QoS 1 delivered it twice
    assert len(router.runs) == 1 and router.stats.duplicates == 1
    peers.on_envelopes(peers.inbox("me"), env("call", "b", {"service": "svc", "method": "get",
                                                            "reply_by": time.time() - 1}))
    assert len(router.runs) == 1 and router.stats.late_calls == 1
    peers.on_envelopes(peers.inbox("me"), env("call", "b", {"service": "svc", "method": "get", "reply": False,
                                                            "reply_by": time.time() + 5}))
    router.runs[-1][-1]("done", None)
    assert link.sent == []   # nobody asked for the answer


def test_a_broadcast_call_is_taken_and_a_call_for_another_node_is_not(parts):
    peers, _, router, *_ = parts
    peers.on_envelopes(peers.broadcast_topic, env("call", "b", {"service": "svc", "method": "get",
                                                                "reply_by": time.time() + 5}, to="*"))
    peers.on_envelopes(peers.inbox("me"), env("call", "b", {"service": "svc", "method": "get",
                                                            "reply_by": time.time() + 5}, to="c"))
    assert len(router.runs) == 1 and peers.rejected() == {"misrouted": 1}


def test_results_and_errors_resolve_pending_calls(parts):
    peers, _, _, _, pending = parts
    got: dict[str, Any] = {}
    pending.add_call("r1", "b", "owner", lambda r, e: got.setdefault("r1", (r, e)))
    pending.add_call("r2", "b", "owner", lambda r, e: got.setdefault("r2", (r, e)))
    peers.on_envelopes(peers.inbox("me"), env("result", "b", {"re": "r1", "result": 42}))
    peers.on_envelopes(peers.inbox("me"), env("error", "b", {"re": "r2", "error": {"code": "timeout",
                                                                                    "message": "slow"}}))
    assert got == {"r1": (42, None), "r2": (None, {"code": "timeout", "message": "slow"})}


def test_a_reply_from_the_wrong_node_does_not_resolve(parts):
    peers, _, _, _, pending = parts
    got = []
    pending.add_call("r1", "b", "owner", lambda r, e: got.append(r))
    peers.on_envelopes(peers.inbox("me"), env("result", "c", {"re": "r1", "result": 42}))
    assert got == []


def test_a_malformed_body_is_counted_not_raised(parts):
    peers, _, router, *_ = parts
    peers.on_envelopes(peers.inbox("me"), env("call", "b", {"method": "get", "reply_by": time.time() + 5}))
    assert router.runs == [] and peers.rejected() == {"malformed": 1}


# --- subscriptions: sub / unsub / lease / event, both ways ------------------------------------

def test_a_sub_registers_an_interest_with_a_lease_and_is_acknowledged(parts):
    peers, link, *_ = parts
    sub = env("sub", "b", {"topic": "metrics/#"})
    peers.on_envelopes(peers.inbox("me"), sub)
    assert peers.interests.wanted("metrics/system")
    [(topic, ack, _)] = link.sent
    assert topic == peers.inbox("b") and ack["kind"] == "result"
    assert ack["body"] == {"re": sub["id"], "result": {"topic": "metrics/#", "lease": 30}}


def test_a_sub_to_a_bad_filter_is_refused_with_bad_request(parts):
    peers, link, *_ = parts
    peers.on_envelopes(peers.inbox("me"), env("sub", "b", {"topic": "a/#/b"}))
    [(_, reply, _)] = link.sent
    assert reply["kind"] == "error" and reply["body"]["error"]["code"] == "bad_request"
    assert peers.rejected() == {"bad_topic": 1} and len(peers.interests) == 0


def test_unsub_drops_the_interest_and_a_lease_renews_it(parts):
    peers, *_ = parts
    peers.on_envelopes(peers.inbox("me"), env("sub", "b", {"topic": "t/#"}))
    peers.on_envelopes(peers.inbox("me"), env("unsub", "b", {"topic": "t/#"}))
    assert not peers.interests.wanted("t/x")
    peers.on_envelopes(peers.inbox("me"), env("lease", "b", {"topics": ["t/#"]}))
    assert peers.interests.wanted("t/x")
    peers.housekeeping(time.time() + 31)        # not renewed within lease_seconds: gone
    assert not peers.interests.wanted("t/x")


def test_a_lease_naming_a_bad_filter_is_rejected_whole(parts):
    peers, *_ = parts
    peers.on_envelopes(peers.inbox("me"), env("lease", "b", {"topics": ["ok", "bad/#/x"]}))
    assert len(peers.interests) == 0 and peers.rejected() == {"bad_topic": 1}


def test_an_event_reaches_the_local_subscribers_of_that_node(parts):
    peers, _, router, subs, _ = parts
    sink, other = Sink(), Sink()
    subs.add(sink, "b", "metrics/#")
    subs.add(other, "c", "metrics/#")
    peers.on_envelopes(peers.events_topic("b", "metrics/system"),
                       env("event", "b", {"topic": "metrics/system", "data": {"cpu": 1}}, to=None, ts=123.0))
    assert sink.events == [{"type": "event", "node": "b", "topic": "metrics/system", "data": {"cpu": 1},
                            "ts": 123.0}]
    assert other.events == [] and router.stats.events_remote_in == 1
    peers.on_envelopes(peers.events_topic("b", "x"), env("event", "b", {"topic": "a/+", "data": 1}, to=None))
    assert len(sink.events) == 1 and peers.rejected() == {"bad_topic": 1}


async def test_outbound_subscribe_sends_sub_and_waits_for_the_ack(parts):
    peers, link, router, subs, _ = parts
    online(peers, "b")
    link.sent.clear()
    subs.add(Sink(), "b", "metrics/#")
    task = asyncio.create_task(peers.subscribe_remote("b", "metrics/#"))
    for _ in range(10):
        await asyncio.sleep(0)
    assert link.subs == {peers.events_topic("b", "metrics/#"): 0}
    [(topic, sub, _)] = link.sent
    assert topic == peers.inbox("b") and sub["kind"] == "sub" and sub["body"] == {"topic": "metrics/#"}
    assert router.expected[0][:2] == (sub["id"], "b")
    peers.on_envelopes(peers.inbox("me"), env("result", "b", {"re": sub["id"], "result": {"lease": 30}}))
    assert await asyncio.wait_for(task, 2) == {"lease": 30}


async def test_release_remote_unsubscribes_and_tells_an_online_node(parts):
    peers, link, router, *_ = parts
    online(peers, "b")
    link.sent.clear()
    peers.release_remote("b", "t/#")
    await asyncio.wait_for(asyncio.gather(*router.tasks), 2)
    assert link.unsubscribed == [peers.events_topic("b", "t/#")]
    assert [(t, e["kind"], e["body"]) for t, e, _ in link.sent] == [(peers.inbox("b"), "unsub", {"topic": "t/#"})]


def test_send_event_goes_to_our_events_topic_only_when_wanted(parts):
    peers, link, *_ = parts
    assert not peers.wants("metrics/system")
    peers.on_envelopes(peers.inbox("me"), env("sub", "b", {"topic": "metrics/#"}))
    link.sent.clear()
    assert peers.wants("metrics/system")
    peers.send_event("metrics/system", {"cpu": 3}, 5.0)
    [(topic, ev, qos)] = link.sent
    assert topic == peers.events_topic("me", "metrics/system") and ev["kind"] == "event" and ev["to"] is None
    assert ev["body"] == {"topic": "metrics/system", "data": {"cpu": 3}} and ev["ts"] == 5.0
    link.connected.clear()
    assert not peers.wants("metrics/system")


# --- membership -----------------------------------------------------------------------------

def test_presence_and_state_make_a_member_online_with_cluster_events(parts):
    peers, _, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/#")
    online(peers, "b")
    assert peers.members.is_online("b")
    assert [e["topic"] for e in sink.events] == ["$cluster/node/online", "$cluster/node/state"]
    assert sink.events[0]["node"] == "b"


def test_offline_presence_fails_pending_calls_and_drops_interests(parts):
    peers, _, _, subs, pending = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/node/offline")
    online(peers, "b")
    peers.on_envelopes(peers.inbox("me"), env("sub", "b", {"topic": "t"}))
    got = []
    pending.add_call("r1", "b", "owner", lambda r, e: got.append(e))
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s1"},
                                                     to=None))
    assert not peers.members.is_online("b")
    assert got and got[0]["code"] == "node_offline"
    assert len(peers.interests) == 0
    assert [e["topic"] for e in sink.events] == ["$cluster/node/offline"]


def test_an_older_presence_does_not_undo_a_newer_one(parts):
    peers, *_ = parts
    online(peers, "b")
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s0"},
                                                     to=None, ts=time.time() - 60))
    assert peers.members.is_online("b")


async def test_a_member_that_stops_answering_probes_goes_stale_then_offline(parts):
    peers, link, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/#")
    online(peers, "b")
    online(peers, "c")
    link.sent.clear()
    t = time.time()
    peers.housekeeping(t)                     # probe_interval 5: b, our successor, is probed now
    [(topic, probe, _)] = link.sent
    assert topic == peers.inbox("b") and probe["kind"] == "probe" and probe["to"] == "b"
    link.sent.clear()
    peers.housekeeping(t + 1.1)               # probe_timeout 1: no ack, so c is asked to probe b for us
    [(topic, ask, _)] = link.sent
    assert topic == peers.inbox("c") and ask["body"] == {"target": "b"} and ask["id"] == probe["id"]
    link.sent.clear()
    peers.housekeeping(t + 2.1)               # nor through c: b is stale, and everyone is told once
    assert peers.members.get("b").status == "stale" and peers.members.is_online("b")
    [(topic, told, _)] = link.sent
    assert topic == peers.members_topic and told["body"] == {"node": "b", "state": "suspect", "session": "s1"}
    link.sent.clear()
    peers.housekeeping(t + 2.1 + 10.1)        # suspect_timeout 10 without a refutation: offline
    assert not peers.members.is_online("b")
    assert [e["body"]["state"] for _, e, _ in link.sent if e["kind"] == "member"] == ["offline"]
    events = [(e["topic"], e["node"], e["data"].get("reason")) for e in sink.events if e["node"] == "b"]
    assert events[-2:] == [("$cluster/node/stale", "b", "it did not answer a probe, nor the indirect probes"),
                           ("$cluster/node/offline", "b", "probe")]


def test_an_offline_verdict_is_told_again_so_a_node_that_was_reconnecting_learns_it(parts):
    """CI: c2 was between two broker connections when c3 declared c0 offline, missed the one ``member``
    message, and listed dead c0 online for over a minute (nothing else would tell it).  The declarer
    sends its verdict again five times, the gaps doubling from one probe interval, with its age; it stops
    when the node answers again."""
    peers, link, *_ = parts
    online(peers, "b")
    online(peers, "c")
    link.sent.clear()
    t = time.time()
    peers.housekeeping(t)
    peers.housekeeping(t + 1.1)
    peers.housekeeping(t + 2.1)
    peers.housekeeping(t + 12.2)              # b: stale, then offline by our verdict
    verdicts = lambda: [(e["body"]["state"], e["body"].get("age")) for tp, e, _ in link.sent
                        if tp == peers.members_topic and e["body"]["node"] == "b"]
    assert verdicts() == [("suspect", None), ("offline", None)]
    link.sent.clear()
    for dt in (1.0, 4.9):
        peers.housekeeping(t + 12.2 + dt)
    assert verdicts() == []                   # not before an interval has passed
    # meanwhile c, our next successor, does not answer either: offline by our verdict too.  It comes back
    # (it refutes, same session) and answers from then on: the declarer stops telling its verdict on c.
    c_back = False
    after_refute: list[dict] = []
    for k in range(1, 40):
        peers.housekeeping(t + 12.2 + 5.0 * k)
        if c_back:
            after_refute += [e["body"] for tp, e, _ in link.sent if tp == peers.members_topic
                             and e["body"]["node"] == "c" and e["body"]["state"] == "offline"]
            for tp, e, _ in list(link.sent):
                if tp == peers.inbox("c") and e["kind"] == "probe" and not e["body"]:
                    peers.on_envelopes(peers.inbox("me"), env("ack", "c", {"re": e["id"], "target": "c",
                                                                           "session": "s1"}))
        elif not peers.members.is_online("c"):
            peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "c", "state": "alive",
                                                                        "session": "s1"}, to=None))
            assert peers.members.is_online("c")
            c_back = True
        if c_back:
            link.sent[:] = [x for x in link.sent if not (x[0] == peers.members_topic and x[1]["body"]["node"] == "c")]
    told = verdicts()
    assert [s for s, _ in told] == ["offline"] * 5 and [round(a) for _, a in told] == [5, 15, 35, 75, 155]
    assert all(e["body"]["session"] == "s1" for tp, e, _ in link.sent if tp == peers.members_topic)
    assert c_back and after_refute == [] and peers.members.is_online("c")


async def test_a_repeated_verdict_counts_unless_the_node_was_heard_from_since(parts):
    """A node that missed the first ``offline`` takes a repeat as a verdict.  A repeat older than the
    last word this node heard from the accused (by this node's own clock: ``age``, not a timestamp, so
    skewed clocks do not matter) says nothing: the accused spoke after it.  A retained presence replayed
    on a resubscribe is not a word from the node."""
    peers, link, _, subs, _ = parts
    sink = watched_cluster(peers, subs, "$cluster/#", "b", "c")
    # a retained replay of b's presence (on our resubscribe after a reconnect) is not news from b
    old = peers.members.get("b").last_seen
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=peers.members.get("b").presence_ts))
    assert peers.members.get("b").last_seen == old
    # a repeat from c, 12 s after its verdict: b was last heard before that
    peers.members.get("b").heard = time.time() - 30
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "b", "state": "offline", "session": "s1",
                                                                "age": 12.0}, to=None))
    assert not peers.members.is_online("b")
    assert [(e["node"], e["data"].get("reason")) for e in sink.events if e["topic"] == "$cluster/node/offline"] \
        == [("b", "probe")]
    # c was heard from 2 s ago; a verdict made 12 s ago is out of date
    peers.members.get("c").heard = time.time() - 2
    peers.on_envelopes(peers.members_topic, env("member", "b", {"node": "c", "state": "offline", "session": "s1",
                                                                "age": 12.0}, to=None))
    assert peers.members.is_online("c")
    # a node that joins after the verdict reads the accused's retained presence and heartbeat (news to it,
    # but old: not a word from the accused); a repeat then counts
    peers.on_envelopes(peers.presence_topic("d"), env("presence", "d", {"state": "online", "session": "s4"},
                                                      to=None, ts=time.time() - 20))
    peers.on_envelopes(peers.state_topic("d"), env("state", "d", state_body("s4"), to=None, ts=time.time() - 18))
    assert peers.members.is_online("d")
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "d", "state": "offline", "session": "s4",
                                                                "age": 5.0}, to=None))
    assert not peers.members.is_online("d")
    # nonsense ages are no verdict at all
    for age in (-1, "soon", 1e9):
        peers.on_envelopes(peers.members_topic, env("member", "b", {"node": "c", "state": "offline",
                                                                    "session": "s1", "age": age}, to=None))
        assert peers.members.is_online("c")


@pytest.mark.parametrize("deaf_to", ["inbox", "members"])
def test_a_node_that_cannot_hear_accuses_no_one(parts, deaf_to):
    """The broker refused our inbox (acks) or the members topic (refutations): b's silence says nothing."""
    peers, link, *_ = parts
    online(peers, "b")
    online(peers, "c")
    link.sent.clear()
    t = time.time()
    peers.housekeeping(t)                                   # a probe of b goes out
    assert [e["kind"] for _, e, _ in link.sent] == ["probe"]
    link.refused = {peers.inbox("me") if deaf_to == "inbox" else peers.members_topic}
    link.sent.clear()
    for dt in (1.1, 2.1, 5.1, 7.2, 12.5, 30.0):             # every timeout passes, more than once
        peers.housekeeping(t + dt)
    assert link.sent == []                                  # no probes, no helpers asked, no suspicion
    assert peers.members.get("b").status == "online"
    link.refused = set()                                    # it hears again: it probes again, on stretched
    peers.housekeeping(t + 60.0)                            # timeouts (it was the one in trouble)
    [(_, probe, _)] = link.sent
    assert probe["kind"] == "probe" and peers.prober.multiplier > 1
    link.sent.clear()
    peers.housekeeping(t + 60.0 + 1.1)                      # 1 s is no longer long enough to give up on b
    assert link.sent == []
    peers.on_envelopes(peers.inbox("me"), env("ack", "b", {"re": probe["id"], "target": "b", "session": "s1"}))
    assert peers.members.get("b").status == "online"


def test_a_suspected_node_waits_longer_before_its_own_verdicts(parts):
    """Lifeguard: a node that had to refute a suspicion may be the slow one; it stretches its suspicion
    timeout, so a peer it suspects has longer to refute."""
    peers, link, *_ = parts
    online(peers, "b")
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "me", "state": "suspect",
                                                                "session": "me-session"}, to=None))
    assert peers.prober.multiplier == 2
    t = time.time()
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "b", "state": "suspect", "session": "s1"},
                                                to=None))
    link.sent.clear()
    peers.housekeeping(t + 10.5)           # the usual suspect_timeout (10 s) has passed: not yet
    assert peers.members.get("b").status == "stale" and "offline" not in [
        e["body"].get("state") for _, e, _ in link.sent if e["kind"] == "member"]
    peers.housekeeping(t + 20.5)           # twice as long: offline
    assert not peers.members.is_online("b")


def test_an_ack_keeps_a_member_online_and_a_refutation_clears_a_suspicion(parts):
    peers, link, *_ = parts
    online(peers, "b")
    link.sent.clear()
    t = time.time()
    peers.housekeeping(t)
    [(_, probe, _)] = link.sent
    peers.on_envelopes(peers.inbox("me"), env("ack", "b", {"re": probe["id"], "target": "b", "session": "s1"}))
    peers.housekeeping(t + 3)
    assert peers.members.get("b").status == "online"
    # another node suspects b: stale here too, until b says it is alive
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "b", "state": "suspect", "session": "s1"},
                                                to=None))
    assert peers.members.get("b").status == "stale"
    peers.on_envelopes(peers.members_topic, env("member", "b", {"node": "b", "state": "alive", "session": "s1"},
                                                to=None))
    assert peers.members.get("b").status == "online"


def test_a_suspected_node_refutes_once_and_helps_probe_others(parts):
    peers, link, *_ = parts
    online(peers, "b")
    link.sent.clear()
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "me", "state": "suspect",
                                                                "session": "me-session"}, to=None))
    [(topic, refute, _)] = link.sent
    assert topic == peers.members_topic and refute["body"] == {"node": "me", "state": "alive", "session": "me-session"}
    link.sent.clear()
    # c asks us to probe b; b's ack goes back to c under c's id
    peers.on_envelopes(peers.inbox("me"), env("probe", "c", {"target": "b"}, id="c-7"))
    [(topic, probe, _)] = link.sent
    assert topic == peers.inbox("b") and probe["kind"] == "probe"
    link.sent.clear()
    peers.on_envelopes(peers.inbox("me"), env("ack", "b", {"re": probe["id"], "target": "b", "session": "s1"}))
    [(topic, ack, _)] = link.sent
    assert topic == peers.inbox("c") and ack["body"] == {"re": "c-7", "target": "b", "session": "s1"}
    # and a direct probe is answered with our session
    link.sent.clear()
    peers.on_envelopes(peers.inbox("me"), env("probe", "c", {}, id="c-8"))
    [(topic, ack, _)] = link.sent
    assert topic == peers.inbox("c") and ack["body"] == {"re": "c-8", "target": "me", "session": "me-session"}


def test_a_helper_nacks_a_probe_it_could_not_get_answered_and_the_prober_takes_it_as_a_sign_it_hears(parts):
    """Lifeguard's nacks on the wire: c asks us to probe b, b stays silent: after our probe timeout c gets
    ``nack {re, target}`` under its own id, once.  As the prober, a nack from a helper we asked lowers
    our local health; one from a member we did not ask, or a malformed one, does not."""
    peers, link, *_ = parts
    online(peers, "b")
    online(peers, "c")
    link.sent.clear()
    t = time.time()
    peers.on_envelopes(peers.inbox("me"), env("probe", "c", {"target": "b"}, id="c-7"))
    [(topic, probe, _)] = link.sent
    assert topic == peers.inbox("b") and probe["kind"] == "probe"
    link.sent.clear()
    peers.housekeeping(t + 0.5)
    assert [e for _, e, _ in link.sent if e["kind"] == "nack"] == []
    peers.housekeeping(t + 1.2)
    peers.housekeeping(t + 1.7)
    nacks = [(tp, e) for tp, e, _ in link.sent if e["kind"] == "nack"]
    assert [(tp, e["to"], e["body"]) for tp, e in nacks] == [(peers.inbox("c"), "c", {"re": "c-7", "target": "b"})]
    for own in [e for _, e, _ in link.sent if e["kind"] == "probe" and not e["body"]]:   # our own round: b answers it
        peers.on_envelopes(peers.inbox("me"), env("ack", "b", {"re": own["id"], "target": "b", "session": "s1"}))

    # now we are the prober, doubting ourselves; b does not answer; c, asked to help, nacks
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "me", "state": "suspect",
                                                                "session": "me-session"}, to=None))
    peers.on_envelopes(peers.members_topic, env("member", "b", {"node": "me", "state": "suspect",
                                                                "session": "me-session"}, to=None))
    assert peers.prober.multiplier == 3
    link.sent.clear()
    t = time.time() + 10
    peers.housekeeping(t)
    [probe] = [e for _, e, _ in link.sent if e["kind"] == "probe"]
    assert probe["to"] == "b"
    link.sent.clear()
    peers.housekeeping(t + 3.1)                        # 3 × 1 s: helpers asked, under our probe's id
    asked = [e["to"] for _, e, _ in link.sent if e["kind"] == "probe"]
    assert asked == ["c"] and all(e["id"] == probe["id"] for _, e, _ in link.sent if e["kind"] == "probe")
    peers.on_envelopes(peers.inbox("me"), env("nack", "x", {"re": probe["id"], "target": "b"}))
    assert peers.prober.multiplier == 3               # x was not asked
    peers.on_envelopes(peers.inbox("me"), env("nack", "c", {"re": 7, "target": "b"}))
    assert peers.prober.multiplier == 3               # not a nack of ours
    peers.on_envelopes(peers.inbox("me"), env("nack", "c", {"re": probe["id"], "target": "b"}))
    assert peers.prober.multiplier == 2
    assert peers.members.get("b").status == "online"  # a nack says nothing good about b


async def test_a_retained_online_older_than_the_stale_bound_is_not_trusted_on_join(parts):
    peers, _, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/#")
    t = time.time()
    old = t - 100                                       # stale_after 30
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=old))
    peers.on_envelopes(peers.state_topic("b"), env("state", "b", state_body("s1", ts=old), to=None, ts=old))
    online(peers, "c")                                  # fresh
    peers._stale_check_at = t + 2                       # as join() sets it
    peers.housekeeping(t + 1)
    assert peers.members.is_online("b")                 # the snapshot is still coming in
    peers.housekeeping(t + 2)
    assert not peers.members.is_online("b") and peers.members.is_online("c")
    [offline] = [e for e in sink.events if e["topic"] == "$cluster/node/offline"]
    assert offline["node"] == "b" and offline["data"]["reason"] == "stale-on-join"


def test_a_will_and_a_clean_stop_are_told_apart(parts):
    peers, _, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/node/offline")
    online(peers, "b")
    online(peers, "c")
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s1",
                                                                        "reason": "will"}, to=None))
    peers.on_envelopes(peers.presence_topic("c"), env("presence", "c", {"state": "offline", "session": "s1",
                                                                        "reason": "left"}, to=None))
    assert [(e["node"], e["data"]["reason"]) for e in sink.events] == [("b", "will"), ("c", "left")]


async def test_failure_detection_does_not_wait_on_the_brokers_qos_1_storage(parts):
    """Probes, acks, nacks and verdicts go at QoS 0 (nats-server holds QoS 1 while JetStream elects
    leaders, and closes a client whose QoS 1 publish it could not store); calls and their replies stay
    at QoS 1."""
    peers, link, router, *_ = parts
    online(peers, "b")
    online(peers, "c")
    link.sent.clear()
    t = time.time()
    peers.housekeeping(t)                                              # our probe of b
    peers.housekeeping(t + 1.1)                                        # c asked to probe b for us
    peers.housekeeping(t + 2.1)                                        # b suspected, everyone told
    peers.on_envelopes(peers.inbox("me"), env("probe", "c", {}))       # c probes us: our ack
    peers.on_envelopes(peers.inbox("me"), env("probe", "c", {"target": "b"}, id="c-9"))   # we help c
    peers.housekeeping(t + 2.1 + 10.1)                                 # b offline: the verdict, and c's nack
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "me", "state": "suspect",
                                                                "session": "me-session"}, to=None))  # refute
    kinds = {(e["kind"], e["body"].get("state")) for _, e, _ in link.sent}
    assert {("probe", None), ("ack", None), ("nack", None), ("member", "suspect"), ("member", "alive"),
            ("member", "offline")} <= kinds, kinds
    assert [(e["kind"], qos) for _, e, qos in link.sent if qos != 0] == []
    link.sent.clear()
    peers.on_envelopes(peers.inbox("me"), env("call", "c", {"service": "svc", "method": "get", "params": {},
                                                            "reply_by": time.time() + 5}))
    router.runs[-1][-1]({"ok": True}, None)
    assert [(e["kind"], qos) for _, e, qos in link.sent] == [("result", 1)]


async def test_a_reconnection_says_online_first_with_the_connections_ts(parts):
    """What the link publishes first on a reconnection (``hello``, before its subscriptions, at QoS 0):
    this connection's online presence, with the ts its will has too; the retained one follows."""
    peers, link, router, *_ = parts
    will_topic, will = peers.will()                   # a new connection: its will and its ts
    topic, payload = peers.hello()
    hello = json.loads(payload)
    assert topic == will_topic == peers.presence_topic("me")
    assert hello["kind"] == "presence" and hello["body"] == {"state": "online", "session": "me-session"}
    assert hello["ts"] == json.loads(will)["ts"] == peers._conn_ts
    _reconnect(peers)
    await asyncio.wait_for(asyncio.gather(*router.tasks), 2)
    assert [(t, e["ts"]) for t, e, _ in link.retained if e["kind"] == "presence"] == [(topic, peers._conn_ts)]
    RecordingLink.instances.clear()
    await asyncio.wait_for(peers.join("mqtt://fake", link=RecordingLink), 5)
    assert RecordingLink.instances[0].kw["hello"] == peers.hello


def test_a_will_of_a_live_node_lasts_until_its_new_connection_says_online_whichever_comes_first(parts):
    """As a peer: b's will (connection 1) and b's presence on connection 2, not retained, in either
    order.  b is offline only between the two, and the retained copy of that presence adds nothing."""
    peers, _, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/node/#")
    t1 = time.time() - 10
    t2 = t1 + 5
    for first_the_will in (True, False):
        node = "b" if first_the_will else "c"
        peers.on_envelopes(peers.presence_topic(node), env("presence", node, {"state": "online", "session": "s1"},
                                                          to=None, ts=t1))
        assert peers.members.is_online(node)
        will = env("presence", node, {"state": "offline", "session": "s1", "reason": "will"}, to=None, ts=t1)
        again = env("presence", node, {"state": "online", "session": "s1"}, to=None, ts=t2)
        for e in ([will, again] if first_the_will else [again, will]):
            peers.on_envelopes(peers.presence_topic(node), e)
        peers.on_envelopes(peers.presence_topic(node), dict(again, id=f"{node}-retained"))   # the retained copy
        assert peers.members.is_online(node)
        seen = [e["topic"].rsplit("/", 1)[1] for e in sink.events if e["node"] == node]
        assert seen == (["online", "offline", "online"] if first_the_will else ["online"]), seen


async def test_a_will_read_on_a_new_subscription_makes_a_listed_node_stale_not_offline(parts):
    """A retained will the broker replays on a new subscription of ours (nats-server: the will of a link it
    closed, while that node's live link could not speak yet) is not taken as death for a node listed
    online: it is stale until it speaks (a newer presence: online again, never offline) ..."""
    peers, _, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/node/#")
    t1 = time.time() - 10
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=t1))
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s1",
                                                                        "reason": "will"}, to=None, ts=t1 + 1),
                       None, True)
    assert peers.members.is_online("b") and peers.members.get("b").status == "stale"
    peers.housekeeping(time.time())
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=t1 + 2))
    assert peers.members.get("b").status == "online"
    seen = [(e["topic"].rsplit("/", 1)[1], e["data"].get("reason")) for e in sink.events if e["node"] == "b"]
    assert [w for w, _ in seen] == ["online", "stale", "online"], seen
    # ... while the same will published live (the broker saw the link die) is taken at once
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s1",
                                                                        "reason": "will"}, to=None, ts=t1 + 2))
    assert not peers.members.is_online("b")
    assert (sink.events[-1]["topic"], sink.events[-1]["data"]["reason"]) == ("$cluster/node/offline", "will")
    # a clean stop's presence is the node's own word: taken at once, replayed or not
    online(peers, "c")
    peers.on_envelopes(peers.presence_topic("c"), env("presence", "c", {"state": "offline", "session": "s1",
                                                                        "reason": "left"}, to=None), None, True)
    assert not peers.members.is_online("c")
    assert (sink.events[-1]["node"], sink.events[-1]["data"]["reason"]) == ("c", "left")


async def test_a_will_read_on_a_new_subscription_and_not_contradicted_is_offline_as_a_will(parts):
    """... and offline (reason ``will``) once it has been silent for cluster.suspect_timeout; this node's
    doubt was its own, so no verdict goes to the others (they saw the will live, or will read it too)."""
    peers, link, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/node/offline")
    online(peers, "b")
    t = time.time()
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s1",
                                                                        "reason": "will"}, to=None), None, True)
    link.sent.clear()
    peers.housekeeping(t + 5)
    assert peers.members.is_online("b")
    peers.housekeeping(t + peers.settings.cluster.suspect_timeout + 0.5)
    assert not peers.members.is_online("b")
    assert [(e["node"], e["data"]["reason"]) for e in sink.events] == [("b", "will")]
    assert [e for _, e, _ in link.sent if e["kind"] == "member"] == []


def test_a_catalog_is_fetched_once_per_hash_and_checked(parts):
    peers, link, *_ = parts
    other = {"x": {"description": "", "methods": {}}}
    h = catalog_hash(other)
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1",
                                                                        "catalog_hash": h}, to=None))
    peers.on_envelopes(peers.presence_topic("c"), env("presence", "c", {"state": "online", "session": "s1",
                                                                        "catalog_hash": h}, to=None))
    assert peers._wanted == {h: "b"}                   # one fetch for both (started by housekeeping here)
    assert peers.catalog_of("b") == {}
    peers.on_envelopes(peers.catalog_topic("b"), env("catalog", "b", {"hash": h, "catalog": {"y": {}}}, to=None))
    assert peers.rejected() == {"bad_catalog": 1} and peers.catalog_of("b") == {}
    peers.on_envelopes(peers.catalog_topic("b"), env("catalog", "b", {"hash": h, "catalog": other}, to=None))
    assert peers.catalog_of("b") == peers.catalog_of("c") == other and not peers._wanted


def test_a_heartbeat_that_fails_its_model_is_rejected(parts):
    peers, *_ = parts
    peers.on_envelopes(peers.state_topic("b"), env("state", "b", state_body("s1", host=42), to=None))
    assert "b" not in peers.members and peers.rejected() == {"bad_state": 1}


def test_a_full_membership_table_rejects_newcomers(parts):
    peers, *_ = parts
    peers.members = Membership("me", max_members=1)   # self not yet in it: room for one peer
    online(peers, "b")
    online(peers, "c")
    assert "c" not in peers.members and peers.rejected().get("membership_full", 0) >= 1


def test_a_node_coming_back_gets_our_subscriptions_again(parts):
    peers, link, _, subs, _ = parts
    subs.add(Sink(), "b", "metrics/#")
    online(peers, "b")
    assert [(t, e["kind"], e["body"]) for t, e, _ in link.sent] == [(peers.inbox("b"), "sub",
                                                                     {"topic": "metrics/#"})]
    link.sent.clear()
    # a fresh online presence of a node we still think online: it may have dropped our interests
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                     to=None))
    assert link.kinds() == ["sub"]


def test_reachability_errors_name_the_cause(parts):
    peers, link, *_ = parts
    with pytest.raises(UnknownNode):
        peers.check_reachable("b")
    online(peers, "b")
    peers.check_reachable("b")
    link.connected.clear()
    with pytest.raises(NodeOffline):
        peers.check_reachable("b")
    peers.fed = None
    with pytest.raises(UnknownNode, match="without federation"):
        peers.check_reachable("b")


# --- leases ----------------------------------------------------------------------------------

def test_housekeeping_renews_our_leases_on_online_nodes(parts):
    peers, link, _, subs, _ = parts
    subs.add(Sink(), "b", "t/#")
    subs.add(Sink(), "c", "u")       # c never came online: no lease for it
    online(peers, "b")
    link.sent.clear()
    peers._last_lease -= 11          # lease_seconds 30: renewed every 10 s
    peers.housekeeping(time.time())
    assert [(t, e["kind"], e["body"]) for t, e, _ in link.sent if e["kind"] == "lease"] == [
        (peers.inbox("b"), "lease", {"topics": ["t/#"]})]
    link.sent.clear()
    peers.housekeeping(time.time())  # not due again yet
    assert [e for _, e, _ in link.sent if e["kind"] == "lease"] == []


def test_housekeeping_forgets_old_call_ids(parts):
    peers, _, router, *_ = parts
    call = env("call", "b", {"service": "svc", "method": "get", "reply_by": time.time() + 500})
    peers.on_envelopes(peers.inbox("me"), call)
    peers.housekeeping(time.time() + SEEN_CALLS_SECONDS + 1)
    peers.on_envelopes(peers.inbox("me"), call)
    assert len(router.runs) == 2


# --- the join and the unique-id check ----------------------------------------------------------

async def test_join_checks_the_id_then_subscribes_and_announces(parts):
    peers, _, router, *_ = parts
    RecordingLink.instances.clear()
    await asyncio.wait_for(peers.join("mqtt://fake", link=RecordingLink), 5)
    [link] = RecordingLink.instances
    assert link.kw["will"] == peers.will and link.routed == (peers.on_envelopes, peers._on_connected)
    # the heartbeats only for the join's snapshot (JOIN_SNAPSHOT_SECONDS), then while someone watches
    assert set(link.subs) == {peers.inbox("me"), peers.broadcast_topic, f"{PREFIX}/node/+/presence",
                              peers.members_topic, f"{PREFIX}/node/+/state"}
    assert link.unsubscribed == [peers.presence_topic("me"), peers.state_topic("me")]
    await asyncio.wait_for(peers.joined.wait(), 2)
    kinds = [(t, e["kind"]) for t, e, _ in link.retained]
    assert kinds == [(peers.catalog_topic("me"), "catalog"), (peers.presence_topic("me"), "presence"),
                     (peers.state_topic("me"), "state")]
    assert link.retained[0][1]["body"] == {"hash": catalog_hash(CATALOG), "catalog": CATALOG}
    link.retained = link.retained[1:]
    peers.housekeeping(time.time() + 3)
    await asyncio.wait_for(asyncio.gather(*router.tasks), 2)
    assert f"{PREFIX}/node/+/state" not in link.subs
    assert link.retained[0][1]["body"] == {"state": "online", "session": "me-session",
                                           "catalog_hash": catalog_hash(CATALOG)}


def _other_process(link: RecordingLink, peers: Peers, *, pid: int, age: float) -> None:
    """Play back the retained presence and heartbeat of another process with our id."""
    def replay(topic: str) -> None:
        if topic == peers.presence_topic("me"):
            link.kw["on_envelopes"](topic, env("presence", "me", {"state": "online", "session": "other"}, to=None))
        elif topic == peers.state_topic("me"):
            body = state_body("other", ts=time.time() - age)
            body.update(host=socket.gethostname(), pid=pid)
            link.kw["on_envelopes"](topic, env("state", "me", body, to=None))
    link.on_subscribe = replay


class ReplayingLink(RecordingLink):
    pid = os.getpid()
    age = 0.0

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.peers: Peers | None = None

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        if self.on_subscribe is None and self.peers is not None:
            _other_process(self, self.peers, pid=self.pid, age=self.age)
        await super().subscribe(topic, qos)


async def test_join_refuses_an_id_a_live_process_holds(parts):
    peers, *_ = parts

    def factory(**kw: Any) -> ReplayingLink:
        link = ReplayingLink(**kw)
        link.peers = peers
        return link

    ReplayingLink.pid, ReplayingLink.age = os.getpid(), 0.0    # this very process: alive
    with pytest.raises(ConfigError, match="already online"):
        await asyncio.wait_for(peers.join("mqtt://fake", link=factory), 5)


async def test_join_takes_over_an_id_whose_process_is_gone(parts):
    peers, *_ = parts

    def factory(**kw: Any) -> ReplayingLink:
        link = ReplayingLink(**kw)
        link.peers = peers
        return link

    ReplayingLink.pid, ReplayingLink.age = 2 ** 22 + 12345, 0.0   # no such pid
    await asyncio.wait_for(peers.join("mqtt://fake", link=factory), 5)
    assert peers.fed is not None and peers.fed.routed is not None   # type: ignore[attr-defined]


async def test_join_gives_up_when_the_link_reports_a_fatal_error(parts):
    peers, _, router, *_ = parts

    class Refused(RecordingLink):
        def __init__(self, **kw: Any) -> None:
            super().__init__(**kw)
            self.connected.clear()
            kw["on_fatal"]("the broker refused our credentials")

    with pytest.raises(ConfigError, match="refused our credentials"):
        await asyncio.wait_for(peers.join("mqtt://fake", link=Refused), 5)
    assert router.failed == ["the broker refused our credentials"]


async def test_our_own_late_will_is_answered_with_online_again(parts):
    peers, link, router, *_ = parts
    peers.will()                                  # this connection's ts
    peers.on_envelopes(peers.presence_topic("me"),
                       env("presence", "me", {"state": "offline", "session": "me-session"}, to=None,
                           ts=peers._conn_ts - 10))
    await asyncio.wait_for(asyncio.gather(*router.tasks), 2)
    [(topic, again, _)] = link.retained
    assert topic == peers.presence_topic("me") and again["body"]["state"] == "online"
    # and at once, not retained at QoS 0, for peers that took that will (the broker may hold the retained one)
    [(topic, now, qos)] = link.sent
    assert topic == peers.presence_topic("me") and qos == 0 and now["body"]["state"] == "online"
    assert now["ts"] == again["ts"] == peers._conn_ts


async def test_heartbeat_and_leave(parts):
    peers, link, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/node/state")
    await peers.heartbeat(state_body("me-session"))
    assert [e["topic"] for e in sink.events] == ["$cluster/node/state"]
    # the first: the catalog, a presence naming its hash, the heartbeat; then only heartbeats
    assert [(t, e["kind"]) for t, e, _ in link.retained] == [
        (peers.catalog_topic("me"), "catalog"), (peers.presence_topic("me"), "presence"),
        (peers.state_topic("me"), "state")]
    link.retained.clear()
    await peers.heartbeat(state_body("me-session"))
    assert [(t, e["kind"]) for t, e, _ in link.retained] == [(peers.state_topic("me"), "state")]
    await peers.leave()
    topic, payload = link.closed_with
    assert topic == peers.presence_topic("me") and json.loads(payload)["body"]["state"] == "offline"


# --- recovery (issue 20) -----------------------------------------------------------------------

async def test_a_subscriber_gone_during_the_suback_sends_no_sub(parts):
    """The cleanup's unsub went out while the broker answered: a sub now would overtake it."""
    peers, link, router, subs, _ = parts
    online(peers, "b")
    link.sent.clear()
    sink = Sink()
    subs.add(sink, "b", "t/#")
    link.on_subscribe = lambda topic: subs.remove(sink, "b", "t/#")   # the client drops meanwhile
    assert await asyncio.wait_for(peers.subscribe_remote("b", "t/#"), 2) is None
    assert "sub" not in link.kinds()


async def test_a_target_gone_during_the_suback_is_node_offline(parts):
    peers, link, router, subs, _ = parts
    online(peers, "b")
    link.sent.clear()
    subs.add(Sink(), "b", "t/#")
    link.on_subscribe = lambda topic: peers.on_envelopes(
        peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s1"}, to=None))
    with pytest.raises(NodeOffline):
        await asyncio.wait_for(peers.subscribe_remote("b", "t/#"), 2)
    assert "sub" not in link.kinds()


async def test_a_failed_subscribe_tells_the_target_even_when_it_looks_offline(parts):
    peers, link, router, *_ = parts
    peers.release_remote("b", "t/#", failed=True)
    await asyncio.wait_for(asyncio.gather(*router.tasks), 2)
    assert [(t, e["kind"]) for t, e, _ in link.sent] == [(peers.inbox("b"), "unsub")]


def _reconnect(peers: Peers) -> None:
    peers.joined.set()
    peers._on_connected()


async def test_after_a_reconnect_a_call_to_an_unheard_peer_fails_within_the_confirm_window(parts):
    peers, link, router, subs, pending = parts
    peers.settings.cluster.confirm_window = 0.2
    online(peers, "b")
    _reconnect(peers)
    failed: list[Any] = []
    call = peers.envelope("call", "b", {"service": "svc", "method": "get", "params": {}})
    pending.add_call(call["id"], "b", None, lambda r, e: failed.append(e))
    t0 = time.monotonic()
    peers.send("b", call)
    await asyncio.wait_for(_until(lambda: failed), 2)
    assert failed[0]["code"] == "node_offline" and "confirm_window" in failed[0]["message"]
    assert time.monotonic() - t0 < 1.0


async def test_a_call_sent_before_the_peer_was_back_goes_again_when_it_is_heard(parts):
    peers, link, router, subs, pending = parts
    online(peers, "b")
    _reconnect(peers)
    call = peers.envelope("call", "b", {"service": "svc", "method": "get", "params": {}})
    pending.add_call(call["id"], "b", None, lambda r, e: None)
    peers.send("b", call)
    # the retained copy of its presence (the same ts as before) does not confirm it
    m = peers.members.get("b")
    assert m is not None
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=m.presence_ts))
    assert [e["id"] for _, e, _ in link.sent if e["kind"] == "call"] == [call["id"]]
    # its new presence (it reconnected too) does: the call goes again, once
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=m.presence_ts + 0.5))
    assert [e["id"] for _, e, _ in link.sent if e["kind"] == "call"] == [call["id"], call["id"]]
    peers.send("b", peers.envelope("call", "b", {"service": "svc", "method": "get", "params": {}}))
    assert not peers._held and not peers._confirm_timers


async def _until(pred: Any) -> None:
    while not pred():
        await asyncio.sleep(0.01)
def test_a_node_that_lost_the_broker_lists_its_peers_offline_after_the_grace(parts):
    peers, link, _, subs, _ = parts
    sink = Sink()
    subs.add(sink, "me", "$cluster/node/offline")
    online(peers, "b")
    link.connected.clear()
    t = time.time()
    peers._on_disconnected("keepalive timeout")
    peers.housekeeping(t + 3.5)                # grace: max(1.5 × keepalive 2, 4 × b's interval 5) = 20 s
    assert peers.members.is_online("b") and link.sent == []   # no probes, no verdicts while cut off
    peers.housekeeping(t + 21)
    assert not peers.members.is_online("b")
    assert [(e["node"], e["data"]["reason"]) for e in sink.events] == [("b", "disconnected")]


async def test_a_replayed_presence_revives_no_node_judged_dead_but_brings_back_those_we_lost(parts):
    """CI: c1's presence subscription, refused during nats-server's election, was granted after c3's
    verdict on dead c0; the broker replayed c0's retained ``online`` and c1 listed c0 online again.  A
    replay (no newer than what we took) is old news: it revives no node judged offline (probe, stale on
    join).  A peer listed offline only because this node lost the broker is not judged: the replays of
    the reconnect bring it back, as before."""
    peers, link, _, subs, _ = parts
    sink = watched_cluster(peers, subs, "$cluster/node/#", "b", "c")
    b_ts = peers.members.get("b").presence_ts
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "b", "state": "offline", "session": "s1"},
                                                to=None))
    assert not peers.members.is_online("b")
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=b_ts))
    assert not peers.members.is_online("b")
    assert [e["topic"] for e in sink.events if e["node"] == "b"][-1] == "$cluster/node/offline"
    # a node first known by its retained heartbeat (its presence subscription refused a while): the
    # presence's replay comes after the verdict, with no presence taken before; it is older than the
    # heartbeat we hold, so it is no new connection either
    t0 = time.time() - 30
    peers.on_envelopes(peers.state_topic("e"), env("state", "e", state_body("s5"), to=None, ts=t0 + 20))
    assert peers.members.is_online("e")
    peers.on_envelopes(peers.members_topic, env("member", "c", {"node": "e", "state": "offline", "session": "s5",
                                                                "age": 15.0}, to=None))
    assert not peers.members.is_online("e")
    peers.on_envelopes(peers.presence_topic("e"), env("presence", "e", {"state": "online", "session": "s5"},
                                                      to=None, ts=t0))
    assert not peers.members.is_online("e")
    # b really restarts (a new connection: a newer presence): back
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "online", "session": "s1"},
                                                      to=None, ts=b_ts + 30))
    assert peers.members.is_online("b")

    # we lose the broker: c is listed offline after the grace; the reconnect's replay brings it back
    c_ts = peers.members.get("c").presence_ts
    link.connected.clear()
    t = time.time()
    peers._on_disconnected("keepalive timeout")
    peers.housekeeping(t + 21)
    assert not peers.members.is_online("c")
    link.connected.set()
    peers.on_envelopes(peers.presence_topic("c"), env("presence", "c", {"state": "online", "session": "s1"},
                                                      to=None, ts=c_ts))
    assert peers.members.is_online("c")


def test_a_member_given_up_that_answers_or_beats_again_is_back(parts):
    peers, *_ = parts
    online(peers, "b")
    t = time.time()
    assert peers.members.mark_offline("b", t - 10)     # e.g. stale-on-join while its heartbeat was on its way
    peers.on_envelopes(peers.state_topic("b"), env("state", "b", state_body("s1"), to=None, ts=t))
    assert peers.members.is_online("b")
    assert peers.members.mark_offline("b", t - 10)     # a probe verdict; then it refutes
    peers.on_envelopes(peers.members_topic, env("member", "b", {"node": "b", "state": "alive", "session": "s1"},
                                                to=None))
    assert peers.members.is_online("b")
    # a heartbeat from before it was given up (its last one, then its will) does not revive it
    peers.on_envelopes(peers.presence_topic("b"), env("presence", "b", {"state": "offline", "session": "s1"},
                                                      to=None))
    peers.on_envelopes(peers.state_topic("b"), env("state", "b", state_body("s1"), to=None, ts=t + 0.5))
    assert not peers.members.is_online("b")
