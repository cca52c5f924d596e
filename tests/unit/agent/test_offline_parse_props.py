"""Properties of the offline parser, over generated clusters and generated requests (hypothesis).

A request is generated from a *meaning* (verb, process, target: ids, all, except, ranks, comparisons),
rendered in one of many phrasings, and planned through the real planner loop on a FakeCluster.  The
meaning gives the reference answer, computed here with plain Python, independent of the parser:

- a plan never touches a node outside what the target denotes (when it plans, it plans exactly that);
- a node named after a negation is never a target;
- a word that is neither in the lexicon nor a filler makes the request refused, naming the word;
- single-letter and numeric node ids work like any other.
"""

from __future__ import annotations

import asyncio
import random
import re
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cloudisense.agent import OfflineModel, Planner
from cloudisense.agent._lexicon import Lexicon
from cloudisense.tools import ClusterView, FakeCluster

pytestmark = pytest.mark.timeout(300)

ID_POOL = ["a", "b", "d", "7", "12", "3", "node-a", "node-b", "edge-1", "edge-2", "n-01", "n-02", "pi4", "x9"]
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def clusters(draw):
    ids = draw(st.lists(st.sampled_from(ID_POOL), min_size=2, max_size=7, unique=True))
    temps = draw(st.lists(st.integers(20, 80), min_size=len(ids), max_size=len(ids), unique=True))
    nodes = []
    for i, t in zip(ids, temps):
        procs = [{"name": "logger", "state": "running", "pid": 100, "restarts": 0}]
        if draw(st.booleans()):
            procs.append({"name": "worker", "state": draw(st.sampled_from(["running", "stopped"])), "pid": 101,
                          "restarts": 0})
        nodes.append({"id": i, "online": draw(st.integers(0, 5)) > 0, "host": i, "version": "0.1.0",
                      "metrics": {"cpu_percent": 10.0, "memory_percent": 50.0, "load": [1.0, 1.0, 1.0],
                                  "disk_percent": 40.0, "temperature_c": float(t), "simulated": True, "ts": 0.0},
                      "processes": procs})
    assume(any(n["online"] for n in nodes))
    return {"self": next(n["id"] for n in nodes if n["online"]), "nodes": nodes}


VERBS = {"restart": ["restart", "Restart", "please restart", "recycle", "bounce", "could you restart"],
         "stop": ["stop", "STOP", "terminate", "kill", "halt", "shut down"],
         "start": ["start", "launch", "bring up", "Start"]}
# the action elsewhere than first: the process stands inside the verb, the target follows
MOVED = {"restart": ["I need the {p} restarted", "get {p} bounced", "please have the {p} recycled"],
         "stop": ["turn the {p} off", "I want {p} stopped", "take the {p} down", "shut the {p} down"],
         "start": ["bring the {p} back up", "we need the {p} started", "spin {p} up"]}
EXCEPT = ["except", "but not", "other than", "excluding", "apart from", ", not", "except for",
          "with the exception of", ", leaving out", ", ignoring", ", sparing", ", but never on",
          "but do not touch", ", but do not restart it on"]
# the exclusion after what it leaves out: "{head} everywhere, na and nb excluded"
POSTFIX = ["excluded", "excepted", "are excluded", "left out", "must not be touched", "stay untouched"]
ALL = ["on all nodes", "everywhere", "on every node", "on all hosts", "across the cluster", "on each server"]


def _ids_text(ids: list[str], rnd: random.Random) -> str:
    words = [rnd.choice(["", "node ", "host "]) + i if not i.startswith(("node-", "n-", "edge")) else i for i in ids]
    if len(words) == 1:
        return words[0]
    return rnd.choice([", ".join(words[:-1]) + " and " + words[-1], " and ".join(words), ", ".join(words)])


@st.composite
def requests(draw, cluster):
    """(text, expected targets or None when the request must not plan, negated ids, verb)."""
    rnd = random.Random(draw(st.integers(0, 10**6)))
    nodes = cluster["nodes"]
    ids = [n["id"] for n in nodes]
    verb = draw(st.sampled_from(sorted(VERBS)))
    proc = draw(st.sampled_from(["logger", "worker"]))
    domain = sorted(n["id"] for n in nodes if n["online"] and any(p["name"] == proc for p in n["processes"]))
    temp = {n["id"]: n["metrics"]["temperature_c"] for n in nodes}
    shape = draw(st.sampled_from(["ids", "all", "all_except", "rank", "rank_except", "cmp", "all_except_rank",
                                  "except_own_sentence"]))
    named = draw(st.lists(st.sampled_from(ids), min_size=1, max_size=3, unique=True))
    negated: list[str] = []
    head = f"{rnd.choice(VERBS[verb])} {rnd.choice(['', 'the '])}{proc}"
    if draw(st.booleans()):
        head = rnd.choice(MOVED[verb]).format(p=proc)

    def ranked(desc: bool) -> list[str]:
        return sorted(domain, key=lambda i: (-temp[i] if desc else temp[i], i))

    expect: list[str] | None
    if shape == "ids":
        text = f"{head} on {_ids_text(named, rnd)}"
        expect = sorted(named) if set(named) <= set(domain) else None
    elif shape == "all":
        text = f"{head} {rnd.choice(ALL)}"
        expect = domain or None
    elif shape == "all_except":
        if draw(st.booleans()):
            text = f"{head} {rnd.choice(ALL)} {rnd.choice(EXCEPT)} {_ids_text(named, rnd)}"
        else:
            text = f"{head} {rnd.choice(ALL)}, {_ids_text(named, rnd)} {rnd.choice(POSTFIX)}"
        negated = named
        expect = sorted(set(domain) - set(named)) or None
    elif shape == "except_own_sentence":   # an exclusion after the action's sentence ended: never planned
        text = (f"{head} {rnd.choice(ALL)}{rnd.choice(['.', ';', '!', ' ;'])} {_ids_text(named, rnd)} "
                f"{rnd.choice(POSTFIX)}")
        negated = named
        expect = None
    elif shape in ("rank", "rank_except"):
        desc = draw(st.booleans())
        word = rnd.choice(["hottest", "warmest"]) if desc else rnd.choice(["coolest", "coldest", "chilliest"])
        k = draw(st.integers(1, 3))
        pool = ranked(desc)
        if shape == "rank_except":
            negated = named
            pool = [i for i in pool if i not in named]
            text = f"{head} on the {word} node {rnd.choice(EXCEPT)} {_ids_text(named, rnd)}"
            expect = pool[:1] or None
        elif k == 1:
            text = f"{head} on the {word} {rnd.choice(['node', 'host', 'machine', 'one'])}"
            expect = pool[:1] or None
        else:
            text = f"{head} on the {k} {word} nodes"
            expect = sorted(pool[:k]) if len(pool) >= k else None
    elif shape == "cmp":
        v = draw(st.integers(20, 80))
        under = draw(st.booleans())
        cmp_word = rnd.choice(["under", "below", "cooler than"]) if under else rnd.choice(["over", "above",
                                                                                          "warmer than"])
        text = f"{head} on nodes {cmp_word} {v}{rnd.choice([' degrees', '°C', ' °C', ' C'])}"
        expect = sorted(i for i in domain if (temp[i] < v if under else temp[i] > v)) or None
    else:
        desc = draw(st.booleans())
        text = f"{head} {rnd.choice(ALL)} {rnd.choice(EXCEPT)} the {'hottest' if desc else 'coolest'} one"
        pool = ranked(desc)
        expect = sorted(pool[1:]) or None
    return text, expect, negated, verb


def plan(snapshot: dict, text: str):
    fake = FakeCluster.from_snapshot(snapshot)
    r = asyncio.run(Planner(OfflineModel(), fake, nonce="prop", max_nodes=10).plan(text))
    assert not fake.mutating_calls
    return r


@given(st.data())
@SETTINGS
def test_a_plan_is_exactly_what_the_target_denotes_and_never_touches_a_negated_node(data):
    cluster = data.draw(clusters())
    text, expect, negated, verb = data.draw(requests(cluster))
    r = plan(cluster, text)
    steps = r.plan.steps if r.ok and r.plan else []
    if expect is None:
        assert steps == [], (text, [s.targets for s in steps])
        return
    if steps:
        assert len(steps) == 1, (text, r.message)
        targets = steps[0].targets
        assert sorted(targets) == expect, (text, targets, expect)
        assert (steps[0].service, steps[0].method) == ("supervisor", verb), (text, steps[0].method)
        assert not set(targets) & set(negated), (text, targets, negated)
    else:  # it may ask or refuse, but a clear request of this grammar should plan
        pytest.fail(f"not planned: {text!r}: {r.message}")


def _junk(rnd: random.Random, lx: Lexicon) -> str:
    while True:
        w = "".join(rnd.choice("qxzjvk") for _ in range(2)) + "".join(rnd.choice(string.ascii_lowercase)
                                                                      for _ in range(rnd.randint(2, 6)))
        if not lx.known(w) and lx.correct(w)[0] is None:
            return w


@given(st.data())
@SETTINGS
def test_a_word_the_parser_does_not_know_is_never_dropped(data):
    cluster = data.draw(clusters())
    text, expect, _, _ = data.draw(requests(cluster))
    assume(expect is not None)
    rnd = random.Random(data.draw(st.integers(0, 10**6)))
    lx = Lexicon.from_view(ClusterView.model_validate(cluster))
    words = text.split()
    junk = _junk(rnd, lx)
    words.insert(data.draw(st.integers(0, len(words))), junk)
    r = plan(cluster, " ".join(words))
    assert not (r.plan and r.plan.steps)
    assert r.outcome == "refuse" and junk in r.message, (words, r.message)


@given(st.data())
@SETTINGS
def test_exclusions_of_any_shape_hold_in_multi_step_requests(data):
    cluster = data.draw(clusters())
    ids = [n["id"] for n in cluster["nodes"]]
    ex = data.draw(st.lists(st.sampled_from(ids), min_size=1, max_size=2, unique=True))
    other = data.draw(st.sampled_from(ids))
    rnd = random.Random(data.draw(st.integers(0, 10**6)))
    text = (f"restart logger {rnd.choice(ALL)} {rnd.choice(EXCEPT)} {_ids_text(ex, rnd)} "
            f"{rnd.choice(['then', 'and then', ', then'])} stop logger on {_ids_text([other], rnd)}")
    r = plan(cluster, text)
    steps = r.plan.steps if r.ok and r.plan else []
    if steps:
        assert len(steps) == 2, (text, r.message)
        assert not set(steps[0].targets) & set(ex), (text, steps[0].targets)
        assert steps[1].targets == [other]


@given(st.lists(st.sampled_from(["restart", "logger", "on", "all", "nodes", "except", "not", "the", "hottest",
                                 "a", "7", "and", "then", "it", "2", "degrees", "under", ",", "but", "others",
                                 "stop", "worker", "every", "process", "which", "is", "running", "how", "hot",
                                 "?", "nb", "x9", "°C", "third", "coolest", "or", "only", "just", "no"]),
                min_size=1, max_size=12))
@SETTINGS
def test_any_word_salad_ends_in_a_plan_an_answer_a_question_or_a_refusal_never_a_crash(words):
    cluster = {"self": "a", "nodes": [
        {"id": i, "online": True, "metrics": {"temperature_c": t, "load": [1.0, 1.0, 1.0]},
         "processes": [{"name": "logger", "state": "running"}, {"name": "worker", "state": "running"}]}
        for i, t in (("a", 50.0), ("7", 40.0), ("nb", 60.0), ("x9", 45.0))]}
    text = " ".join(words)
    r = plan(cluster, text)
    assert r.ok, (text, r.message)
    if r.plan and r.plan.steps:
        lowered = re.sub(r"[^\w\s-]", " ", text.lower()).split()
        # a node that follows a negation word in the same step is not a target of that step
        for k, step_words in enumerate(" ".join(lowered).split(" then ")):
            ws = step_words.split()
            cut = next((j for j, w in enumerate(ws) if w in ("except", "not", "but", "no")), None)
            if cut is None or k >= len(r.plan.steps):
                continue
            negated = {w for w in ws[cut:] if w in ("a", "7", "nb", "x9")}
            assert not negated & set(r.plan.steps[k].targets), (text, r.plan.steps[k].targets)


@pytest.mark.parametrize("text,targets", [
    ("restart logger on a", ["a"]), ("stop worker on 7", ["7"]), ("restart logger on 7 and 12", ["7", "12"]),
    ("restart logger on all nodes except a", ["7", "12"]), ("restart logger on node 12", ["12"]),
    ("restart logger on the 2 coolest nodes", ["7", "a"])])
def test_single_letter_and_numeric_ids(text, targets):
    cluster = {"self": "a", "nodes": [
        {"id": i, "online": True, "metrics": {"temperature_c": t},
         "processes": [{"name": "logger", "state": "running"}, {"name": "worker", "state": "running"}]}
        for i, t in (("a", 50.0), ("7", 40.0), ("12", 60.0))]}
    r = plan(cluster, text)
    assert r.plan and [sorted(s.targets) for s in r.plan.steps] == [sorted(targets)], (text, r.message)
