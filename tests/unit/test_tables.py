"""Pure routing tables: subscriptions, interests, membership, pending calls."""

import random

import pytest

from cloudisense.node._cluster import Membership, PendingTable, Prober
from cloudisense.node._pubsub import InterestTable, SubscriptionTable

pytestmark = pytest.mark.timeout(30)


def test_subscription_refcounts_one_per_node_pattern():
    t = SubscriptionTable()
    assert t.add("c1", "b", "m/#") is True
    assert t.add("c2", "b", "m/#") is False        # second browser: no new MQTT subscription
    assert t.add("c1", "a", "x/+") is True
    assert t.match("b", "m/cpu") == {"c1", "c2"}
    assert t.match("a", "x/1") == {"c1"} and t.match("a", "x/1/2") == set()
    assert t.remove("c2", "b", "m/#") is False     # c1 still wants it
    assert t.remove("c2", "b", "m/#") is False     # idempotent
    assert sorted(t.remove_all("c1")) == [("a", "x/+"), ("b", "m/#")]
    assert t.nodes() == [] and t.stats() == {"subscribers": 0, "subscriptions": 0, "filters": 0}


def test_interest_table_leases_and_drop():
    t = InterestTable()
    assert not t.wanted("m/cpu")
    t.add("a", "m/#", expiry=10)
    t.add("c", "x", expiry=20)
    assert t.wanted("m/cpu") and t.wanted("x") and not t.wanted("y")
    assert t.expire(now=15) == [("a", "m/#")]
    assert not t.wanted("m/cpu")                  # cache invalidated
    t.refresh("c", ["x", "y"], expiry=30)
    assert t.snapshot() == {"c": ["x", "y"]} and len(t) == 2
    assert t.drop("c") == 2 and len(t) == 0 and not t.wanted("x")


def test_membership_sessions_and_wills():
    m = Membership("self")
    assert m.on_presence("b", "online", "s1", 1.0) == "online"
    assert m.on_presence("b", "online", "s1", 2.0) is None
    # an old will of an earlier session does not take the live session offline
    assert m.on_presence("b", "offline", "s0", 3.0) is None and m.is_online("b")
    assert m.on_presence("b", "offline", "s1", 4.0) == "offline" and not m.is_online("b")
    # the retained last state of the dead session does not revive it
    assert m.on_state("b", "s1", {"ts": 3.5}, 5.0) is None and not m.is_online("b")
    # a new session does
    assert m.on_state("b", "s2", {"ts": 6.0}, 6.0, ts=6.0) == "online"
    # a retained online is judged by its newest word (ts) on join: fresh at 6.5, stale at 100
    assert m.stale_on_join(now=6.5, bound=3) == []
    assert m.stale_on_join(now=100, bound=3) == ["b"]
    # a suspicion of the session it has (not of an older one) makes it stale, a word from it clears that
    assert not m.suspect("b", "s1", 7.0) and m.get("b").status == "online"
    assert m.suspect("b", "s2", 7.0) and m.get("b").status == "stale" and m.is_online("b")
    assert m.suspects_due(now=12.0, after=10) == [] and m.suspects_due(now=17.5, after=10) == ["b"]
    assert m.alive("b", "s2", 8.0) and m.get("b").status == "online" and m.suspects_due(now=30, after=10) == []
    assert not m.mark_offline("b", 100, session="s1")   # a verdict on an old session does not count
    assert m.mark_offline("b", 100) and not m.mark_offline("b", 101)


def test_the_prober_probes_its_successor_then_through_helpers_then_suspects():
    m = Membership("m")
    for n in ("a", "k", "x", "z"):
        m.on_presence(n, "online", "s", 1.0)
    assert m.ring_successor() == "x"          # the next id after ours
    m.mark_offline("x", 2.0)
    assert m.ring_successor() == "z"
    m.mark_offline("z", 2.0)
    assert m.ring_successor() == "a"          # wrapping round
    p = Prober(interval=5, timeout=1, indirect=2, rng=random.Random(1))
    assert p.start(10.0, "r1", "a") and not p.start(12.0, "r2", "a")   # one round per interval
    assert p.due(10.5, ["a", "k"]) == ([], [])
    ask, suspects = p.due(11.0, ["a", "k"])
    assert ask == [("r1", "k")] and suspects == []   # the helpers exclude the target
    assert p.acked("r1", "k", "x") is None           # an ack for another target is not one
    assert p.acked("r1", "k", "a") == "a"            # through a helper: a is alive
    assert p.start(15.0, "r3", "a")
    p.due(16.0, ["a"])
    assert p.due(17.0, ["a"]) == ([], ["a"]) and len(p) == 0
    # a probe we make for someone else: its ack goes back to them
    p.relay("r9", "c", "c-1", "a", 20.0)
    assert p.acked("r9", "a", "a") == ("c", "c-1", "a") and len(p) == 0


def test_the_probers_local_health_stretches_its_timeouts_while_it_is_the_one_in_trouble():
    """Lifeguard's local health: a node that was suspected itself, or cannot hear, judges others slower;
    answered probes bring it back.  A dead target alone does not make the prober doubt itself."""
    p = Prober(interval=5, timeout=1, indirect=1, rng=random.Random(1))
    assert p.multiplier == 1 and p.suspect_after(10) == 10
    assert p.start(0.0, "r1", "a")
    p.due(1.0, ["a", "b"])
    assert p.due(2.0, ["a", "b"]) == ([], ["a"])      # a dead target: suspected on the usual timeouts
    assert p.multiplier == 1
    p.strained()                                    # a peer suspects us: we refute, and doubt ourselves
    p.strained()
    assert p.multiplier == 3 and p.suspect_after(10) == 30
    assert p.start(5.0, "r2", "a")
    assert p.due(5.0 + 2.9, ["a", "b"]) == ([], [])   # the ack may be late: 3 × 1 s before helpers
    assert p.due(5.0 + 3.0, ["a", "b"])[0] == [("r2", "b")]
    assert p.acked("r2", "b", "a") == "a"            # answered: health improves by one
    assert p.multiplier == 2
    assert not p.start(5.0 + 4.9, "r3", "b") and p.start(5.0 + 5.0, "r3", "b")   # still once per interval
    for _ in range(20):
        p.strained()
    assert p.multiplier == Prober.MAX_HEALTH + 1      # bounded
    assert p.start(100.0, "r4", "a")
    p.health = 0
    p.deaf(101.0)                                    # we cannot hear: outstanding probes say nothing
    assert len(p) == 0 and p.due(200.0, ["a", "b"]) == ([], [])
    assert p.multiplier == 1                         # within the round already started: no new sign
    p.deaf(105.0)                                    # an interval later: one sign per interval
    p.deaf(106.0)
    assert p.multiplier == 2


def test_a_prober_that_hears_its_helpers_nacks_recovers_even_when_its_target_is_dead():
    """Lifeguard's nacks: a helper that got no ack from the target says so.  The prober heard it, so the
    silence was not its own fault: one sign of trouble away, even though its only target is dead (the
    ring gives it no other to hear from).  A nack from a member it did not ask, or a second one for the
    same probe, is no such sign; a helper sends one nack per request, after its own probe timeout."""
    p = Prober(interval=5, timeout=1, indirect=2, rng=random.Random(1))
    for _ in range(4):
        p.strained()                                   # suspected four times during a broker's election
    assert p.multiplier == 5
    assert p.start(0.0, "r1", "dead")
    ask, _ = p.due(5.0, ["dead", "h1", "h2"])         # 5 × 1 s: the helpers are asked
    assert sorted(h for _, h in ask) == ["h1", "h2"]
    assert not p.nacked("r1", "stranger")            # not asked: says nothing about us
    assert p.nacked("r1", "h1") and p.multiplier == 4
    assert not p.nacked("r1", "h2") and p.multiplier == 4   # one sign per probe, as an ack
    assert p.due(8.0, ["dead", "h1", "h2"]) == ([], ["dead"])   # 2 × 4 s: suspected
    # the next rounds: each nack, even one that comes after the verdict, brings it one step back
    for i, t in enumerate((10.0, 15.0, 20.0)):
        assert p.start(t, f"q{i}", "dead")
        p.due(t + p.timeout * p.multiplier, ["dead", "h1", "h2"])
        p.due(t + 2 * p.timeout * p.multiplier, ["dead", "h1", "h2"])
        assert p.nacked(f"q{i}", "h2")
    assert p.multiplier == 1 and p.suspect_after(10) == 10
    # a helper: one nack per request it relayed, after its own (unstretched) timeout; a late ack still goes back
    p.relay("x1", "c", "c-1", "dead", 30.0)
    assert p.nacks_due(30.9) == []
    assert p.nacks_due(31.0) == [("c", "c-1", "dead")] and p.nacks_due(31.5) == []
    assert p.acked("x1", "dead", "dead") == ("c", "c-1", "dead")


class Done:
    def __init__(self):
        self.calls = []

    def __call__(self, result, error):
        self.calls.append((result, error))


def test_pending_completes_exactly_once():
    p = PendingTable()
    d = Done()
    p.add_call("r1", "b", "client", d)
    assert p.resolve("r1", "b", {"ok": 1}) is True
    assert p.resolve("r1", "b", {"ok": 2}) is False      # duplicate reply: late, not delivered
    assert p.expire("r1", "late") is False
    assert d.calls == [({"ok": 1}, None)] and p.late == 1
    d2 = Done()
    p.add_call("r2", "b", "client", d2)
    assert p.resolve("r2", "c", {"spoof": 1}) is False   # reply from another node: ignored
    assert p.expire("r2", "b did not answer") is True
    assert p.resolve("r2", "b", {}) is False
    assert d2.calls == [(None, {"code": "timeout", "message": "b did not answer"})]


def test_pending_gather_and_node_failures():
    p = PendingTable()
    d = Done()
    p.add_gather("g", {"a", "b", "c"}, "client", d)
    p.resolve("g", "a", 1)
    p.resolve("g", "b", None, {"code": "unknown_service", "message": "x"})
    assert d.calls == []
    assert p.fail_node("c", "c went offline") == 1
    assert d.calls == [({"results": {"a": 1}, "errors": {"b": {"code": "unknown_service", "message": "x"},
                                                          "c": {"code": "node_offline", "message": "c went offline"}}},
                        None)]
    d2, d3 = Done(), Done()
    p.add_call("x", "b", "c1", d2)
    p.add_call("y", "b", "c2", d3)
    assert p.drop_owner("c1") == 1 and d2.calls == []
    assert p.fail_all("broker lost") == 1 and d3.calls[0][1]["code"] == "node_offline"
    assert len(p) == 0


def test_deadlines_expire_each_pending_call_once_in_order():
    p = PendingTable()
    out: list = []
    for req, when in (("r1", 10.0), ("r2", 5.0), ("r3", 7.0)):
        p.add_call(req, "b", "owner", lambda r, e, req=req: out.append((req, e and e["message"])))
    assert p.set_deadline("r1", 10.0, "r1 late") is True     # the first is the earliest
    assert p.set_deadline("r2", 5.0, lambda: "r2 late") is True
    assert p.set_deadline("r3", 7.0, "r3 late") is False
    assert p.next_deadline() == 5.0
    assert p.resolve("r2", "b", result=1) is True             # answered: its deadline no longer counts
    assert p.next_deadline() == 7.0
    assert p.expire_due(6.9) == 0
    assert p.expire_due(10.0) == 2
    assert out == [("r2", None), ("r3", "r3 late"), ("r1", "r1 late")]
    assert p.next_deadline() is None and len(p) == 0


def test_deadline_heap_stays_within_twice_the_pending_calls():
    p = PendingTable()
    for i in range(10_000):
        req = f"r{i}"
        p.add_call(req, "b", "owner", lambda r, e: None)
        p.set_deadline(req, 30.0 + i, "late")
        p.resolve(req, "b", result=i)
    assert len(p) == 0
    assert len(p._deadlines) <= 2 * len(p) + 65
