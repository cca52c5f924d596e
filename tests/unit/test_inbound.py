"""The federation's edge (``_inbound.Inbound``): what of an MQTT message may come in."""

from __future__ import annotations

import logging
import time

import pytest
from hypothesis import given, settings, strategies as st

from cloudisense.node._config import node_id_error
from cloudisense.node._inbound import MAX_ENVELOPES, Inbound
from cloudisense.node._signing import Signer, Verifier, generate_keypair, trust_from_signers

pytestmark = pytest.mark.timeout(60)

KINDS = {"call", "result", "error", "sub", "unsub", "lease", "event", "presence", "state"}


def env(frm="peer", to="me", kind="call", **extra):
    return {"v": 1, "kind": kind, "from": frm, "to": to, "id": "e1", "ts": time.time(),
            "body": {"service": "node", "method": "ping"}, **extra}


@pytest.fixture
def inbound():
    return Inbound("me", KINDS)


def test_good_envelopes_and_batches_pass(inbound):
    e = env()
    assert inbound.admit(e) == [e]
    batch = [env(), env(to="*"), env(to=None, kind="event")]
    assert inbound.admit(batch) == batch
    assert inbound.counts == {}


@pytest.mark.parametrize("frm", ["evil/#", "a/+/b", "+", "#", "", " a", "x\u0001y", "a" * 65, 7, None, ["a"], {"a": 1}])
def test_a_bad_from_is_dropped_and_counted(inbound, frm):
    assert inbound.admit(env(frm=frm)) == []
    assert inbound.counts == {"bad_from": 1}


@pytest.mark.parametrize("to,reason", [("other", "misrouted"), (["me"], "bad_to"), (5, "bad_to"), ({}, "bad_to")])
def test_a_bad_to_is_dropped_and_counted(inbound, to, reason):
    assert inbound.admit(env(to=to)) == []
    assert inbound.counts == {reason: 1}


@pytest.mark.parametrize("change,reason", [
    ({"kind": "explode"}, "unknown_kind"), ({"kind": ["call"]}, "unknown_kind"), ({"kind": None}, "unknown_kind"),
    ({"id": 5}, "malformed"), ({"id": "x" * 300}, "malformed"),
    ({"body": []}, "malformed"), ({"body": "x"}, "malformed"),
])
def test_malformed_envelopes_are_dropped_and_counted(inbound, change, reason):
    assert inbound.admit({**env(), **change}) == []
    assert inbound.counts == {reason: 1}


@pytest.mark.parametrize("message", [None, 1, "x", True, 2.5])
def test_a_message_that_is_not_an_envelope_or_a_batch(inbound, message):
    assert inbound.admit(message) == []
    assert inbound.counts == {"malformed": 1}


def test_one_bad_envelope_rejects_the_whole_batch_and_stops_there(inbound):
    bad = env(frm="evil/#")
    assert inbound.admit([env(), bad, env()]) == []
    assert inbound.admit([env(), "text"]) == []
    assert inbound.counts == {"bad_from": 1, "malformed": 1}


def test_our_own_envelopes_are_skipped_quietly_except_presence(inbound):
    ours = [env(frm="me", to="*"), env(frm="me", to=None, kind="event")]
    assert inbound.admit(ours) == []
    presence = env(frm="me", to=None, kind="presence")
    assert inbound.admit(presence) == [presence]
    assert inbound.counts == {}


def test_a_batch_over_the_bound_is_refused_before_any_envelope_is_looked_at(inbound):
    class Exploding(dict):
        def get(self, *a):   # would be called if the batch were looked into
            raise AssertionError("looked at an envelope of a batch over the bound")
    assert inbound.admit([Exploding()] * (MAX_ENVELOPES + 1)) == []
    assert inbound.counts == {"batch_too_large": MAX_ENVELOPES + 1}
    ok = [env() for _ in range(MAX_ENVELOPES)]
    assert inbound.admit(ok) == ok


@pytest.fixture(scope="module")
def signers(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for nid in ("me", "peer"):
        generate_keypair(nid, d)
        out[nid] = Signer(nid, d / f"{nid}.key")
    return out


def test_signed_a_batch_of_forgeries_costs_one_verify(signers):
    verifier = Verifier(trust_from_signers(signers.values()))
    inbound = Inbound("me", KINDS, verifier)
    good = signers["peer"].sign(env())
    forged = [{**signers["peer"].sign(env(id=f"f{i}")), "to": "*"} for i in range(MAX_ENVELOPES)]  # to changed
    t0 = time.perf_counter()
    assert inbound.admit(forged) == []
    assert verifier.counts["bad_signature"] == 1     # stopped at the first
    assert time.perf_counter() - t0 < 0.05
    assert inbound.admit([good]) == [good]


def test_rejections_log_one_line_per_reason_whatever_the_senders(inbound, caplog):
    caplog.set_level(logging.WARNING, "cloudisense.node._inbound")
    for i in range(5000):
        inbound.admit(env(frm=f"evil/{i}"))
        inbound.admit(env(to=[i]))
        inbound.reject("bad_state", f"n{i}", "metrics.load.0: Input should be a valid number")
    assert inbound.counts == {"bad_from": 5000, "bad_to": 5000, "bad_state": 5000}
    assert len(caplog.records) == 3, [r.getMessage() for r in caplog.records]
    assert all("\x01" not in r.getMessage() for r in caplog.records)


def test_outside_text_in_a_log_line_is_escaped(inbound, caplog):
    caplog.set_level(logging.WARNING, "cloudisense.node._inbound")
    inbound.admit(env(frm="\x1b]0;pwned\x07"))
    (rec,) = caplog.records
    assert "\x1b" not in rec.getMessage() and "\\x1b" in rec.getMessage()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=10)
fields = st.fixed_dictionaries({}, optional={
    "kind": st.sampled_from(sorted(KINDS)) | json_values,
    "from": st.sampled_from(["peer", "me", "evil/#"]) | json_values,
    "to": st.sampled_from(["me", "*", None, "other"]) | json_values, "id": st.text(max_size=5) | json_values,
    "body": st.just({}) | json_values})


_fuzzed = Inbound("me", KINDS)   # one for every example: its log stays rate-limited


@pytest.mark.timeout(180)   # 1,500 examples: ~15 s alone, several times that on a loaded machine
@given(st.lists(fields | json_values, max_size=4) | fields | json_values)
@settings(max_examples=1500, deadline=None)
def test_whatever_comes_in_only_well_formed_envelopes_pass(message):
    inbound = _fuzzed
    inbound.counts.clear()
    out = inbound.admit(message)
    for e in out:
        assert e["kind"] in KINDS and node_id_error(e["from"]) is None
        assert e.get("to") in (None, "me", "*") and isinstance(e["id"], str) and isinstance(e["body"], dict)
    if out and isinstance(message, list):
        assert not inbound.counts   # a batch passes whole or not at all
