"""Envelope signing: keys, trust store, and every reason the verifier drops an envelope."""

from __future__ import annotations

import base64
import copy
import json
import logging
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cloudisense.node._errors import ConfigError
from cloudisense.node._signing import (
    Reason,
    Signer,
    TrustStore,
    Verifier,
    _SeenCache,
    canonical,
    generate_keypair,
    trust_from_signers,
)

pytestmark = pytest.mark.timeout(30)

T0 = 1_764_240_000.0


class Clock:
    """An injected clock the test moves by hand."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture(scope="module")
def keydir(tmp_path_factory):
    d = tmp_path_factory.mktemp("keys")
    for node in ("node-a", "node-b", "mallory"):
        generate_keypair(node, d)
    return d


@pytest.fixture(scope="module")
def signer_a(keydir):
    return Signer("node-a", keydir / "node-a.key")


@pytest.fixture(scope="module")
def signer_b(keydir):
    return Signer("node-b", keydir / "node-b.key")


@pytest.fixture(scope="module")
def trust(signer_a, signer_b):
    return trust_from_signers([signer_a, signer_b])  # mallory is not trusted


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def verifier(trust, clock):
    return Verifier(trust, window=30.0, clock=clock)


def envelope(sender="node-a", id_="a1b2c3", ts=T0, **body) -> dict:
    return {"v": 1, "kind": "call", "from": sender, "to": "node-b", "id": id_, "ts": ts,
            "body": body or {"service": "supervisor", "method": "restart",
                             "params": {"name": "logger"}, "reply_by": ts + 5}}


# --------------------------------------------------------------------------- canonical

def test_canonical_is_sorted_compact_utf8_without_sig():
    env = {"b": 1, "a": {"y": "é", "x": [1, 2.5]}, "sig": "zzz"}
    assert canonical(env) == '{"a":{"x":[1,2.5],"y":"é"},"b":1}'.encode()


def test_canonical_does_not_depend_on_key_order_or_sig():
    a = envelope()
    b = dict(reversed(list(a.items())))
    b["sig"] = "whatever"
    assert canonical(a) == canonical(b)


# --------------------------------------------------------------------------- round trip

def test_sign_then_verify_accepts(signer_a, verifier):
    env = signer_a.sign(envelope())
    assert set(env) == {"v", "kind", "from", "to", "id", "ts", "body", "sig"}
    assert len(base64.b64decode(env["sig"], validate=True)) == 64
    assert verifier.verify(env) is None
    assert verifier.accepted == 1
    assert sum(verifier.counts.values()) == 0


def test_verify_accepts_an_envelope_that_went_over_the_wire(signer_a, verifier):
    env = signer_a.sign(envelope(**{"text": "grüße ✓ \u2028", "n": 0.1 + 0.2, "big": 2**60}))
    wire = json.dumps(env, indent=2)  # any sender formatting; the receiver parses it back
    assert verifier.verify(json.loads(wire)) is None


def test_signatures_are_plain_ed25519_either_way(keydir, signer_a, verifier):
    """libsodium signs and verifies; any RFC 8032 implementation (here OpenSSL) agrees."""
    env = signer_a.sign(envelope(**{"big": 2**70, "text": "é"}))
    pub = serialization.load_pem_public_key((keydir / "node-a.pub").read_bytes())
    pub.verify(base64.b64decode(env["sig"]), canonical(env))   # raises InvalidSignature if not
    priv = serialization.load_pem_private_key((keydir / "node-a.key").read_bytes(), None)
    env2 = envelope(**{"n": 1})
    env2["sig"] = base64.b64encode(priv.sign(canonical(env2))).decode()
    assert verifier.verify(env2) is None
    env2["body"]["n"] = 2
    assert verifier.verify(env2) is Reason.BAD_SIGNATURE


def test_sign_refuses_an_envelope_from_another_node(signer_a):
    with pytest.raises(ValueError, match="node-b"):
        signer_a.sign(envelope(sender="node-b"))


def test_resigning_replaces_the_old_signature(signer_a, verifier):
    env = signer_a.sign(envelope())
    env["body"] = {"changed": True}
    signer_a.sign(env)
    assert verifier.verify(env) is None


def test_public_key_b64_is_the_raw_key_in_the_pub_file(keydir, signer_a):
    pub = serialization.load_pem_public_key((keydir / "node-a.pub").read_bytes())
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert base64.b64decode(signer_a.public_key_b64) == raw


# --------------------------------------------------------------------------- each reason

def test_unsigned(verifier):
    assert verifier.verify(envelope()) is Reason.UNSIGNED
    assert verifier.verify({**envelope(), "sig": ""}) is Reason.UNSIGNED
    assert verifier.counts["unsigned"] == 2


@pytest.mark.parametrize("field, value", [
    ("from", None), ("from", 7), ("id", 12345), ("id", None), ("id", "x" * 257),
    ("ts", "1764240000"), ("ts", None), ("ts", True), ("ts", float("nan")),
    ("ts", float("inf")), ("ts", 10**400), ("sig", 42), ("sig", ["AAAA"]),
])
def test_malformed_fields(signer_a, verifier, field, value):
    env = signer_a.sign(envelope())
    env[field] = value
    assert verifier.verify(env) is Reason.MALFORMED
    assert verifier.counts["malformed"] == 1


@pytest.mark.parametrize("missing", ["from", "id", "ts"])
def test_malformed_when_a_field_is_missing(signer_a, verifier, missing):
    env = signer_a.sign(envelope())
    del env[missing]
    assert verifier.verify(env) is Reason.MALFORMED


def test_malformed_when_not_a_dict(verifier):
    assert verifier.verify(["not", "an", "envelope"]) is Reason.MALFORMED


def test_malformed_when_the_body_cannot_be_canonicalised(signer_a, verifier):
    env = signer_a.sign(envelope())
    env["body"] = {"bad": "\ud800"}  # a lone surrogate (json.loads can produce one)
    assert verifier.verify(env) is Reason.MALFORMED
    env["body"] = {"bad": b"bytes"}
    assert verifier.verify(env) is Reason.MALFORMED


def test_tampered_body_is_bad_signature(signer_a, verifier):
    env = signer_a.sign(envelope())
    env["body"]["params"]["name"] = "sshd"
    assert verifier.verify(env) is Reason.BAD_SIGNATURE


def test_tampered_from_is_bad_signature(signer_a, verifier):
    env = signer_a.sign(envelope())
    env["from"] = "node-b"  # trusted, but node-b never signed this
    assert verifier.verify(env) is Reason.BAD_SIGNATURE


def test_added_field_is_bad_signature(signer_a, verifier):
    env = signer_a.sign(envelope())
    env["extra"] = 1
    assert verifier.verify(env) is Reason.BAD_SIGNATURE


def test_forged_with_another_key_is_bad_signature(keydir, verifier):
    mallory_as_a = Signer("node-a", keydir / "mallory.key")  # claims to be node-a
    env = mallory_as_a.sign(envelope())
    assert verifier.verify(env) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("sig", ["not base64!", "AAAA", base64.b64encode(b"\0" * 64).decode(),
                                 "ü" * 88])
def test_garbage_signature_is_bad_signature(signer_a, verifier, sig):
    env = signer_a.sign(envelope())
    env["sig"] = sig
    assert verifier.verify(env) is Reason.BAD_SIGNATURE


def test_non_canonical_base64_of_a_valid_signature_is_bad_signature(signer_a, verifier):
    env = signer_a.sign(envelope())
    sig = env["sig"]
    assert sig.endswith("==")
    # The 86th character carries 2 data bits and 4 unused ones: set an unused bit.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = sig[:85] + alphabet[alphabet.index(sig[85]) ^ 1] + "=="
    assert base64.b64decode(twin) == base64.b64decode(sig)  # same bytes, other spelling
    assert verifier.verify({**env, "sig": twin}) is Reason.BAD_SIGNATURE
    assert verifier.verify(env) is None


def test_unknown_sender(keydir, verifier):
    mallory = Signer("mallory", keydir / "mallory.key")
    env = mallory.sign(envelope(sender="mallory"))  # validly signed, but not trusted
    assert verifier.verify(env) is Reason.UNKNOWN_SENDER
    assert verifier.counts["unknown_sender"] == 1


@pytest.mark.parametrize("offset", [-30.001, 30.001, -3600, 86400])
def test_stale_in_both_directions(signer_a, verifier, offset):
    env = signer_a.sign(envelope(ts=T0 + offset))
    assert verifier.verify(env) is Reason.STALE


@pytest.mark.parametrize("offset", [-30.0, 30.0, 0])
def test_window_edges_are_accepted(signer_a, verifier, offset):
    assert verifier.verify(signer_a.sign(envelope(ts=T0 + offset))) is None


def test_replayed_id(signer_a, verifier):
    env = signer_a.sign(envelope())
    assert verifier.verify(copy.deepcopy(env)) is None
    assert verifier.verify(copy.deepcopy(env)) is Reason.REPLAYED
    assert verifier.counts["replayed"] == 1


def test_same_id_from_another_sender_is_not_a_replay(signer_a, signer_b, verifier):
    assert verifier.verify(signer_a.sign(envelope(sender="node-a", id_="x"))) is None
    assert verifier.verify(signer_b.sign(envelope(sender="node-b", id_="x"))) is None


def test_replay_caught_until_the_envelope_itself_goes_stale(signer_a, verifier, clock):
    # Future-dated by the whole window: the id must be remembered for 2 windows of
    # receiver time, not 1, or the copy would pass the stale check after the entry expired.
    env = signer_a.sign(envelope(ts=T0 + 30))
    assert verifier.verify(dict(env)) is None
    for step in range(1, 60):
        clock.t = T0 + step  # other traffic keeps pruning the cache meanwhile
        assert verifier.verify(signer_a.sign(envelope(id_=f"other{step}", ts=clock.t))) is None
        assert verifier.verify(dict(env)) is Reason.REPLAYED
    clock.t = T0 + 60.001
    assert verifier.verify(dict(env)) is Reason.STALE


def test_rejected_envelopes_are_not_remembered(signer_a, verifier):
    env = signer_a.sign(envelope())
    tampered = {**env, "body": {"x": 1}}
    assert verifier.verify(tampered) is Reason.BAD_SIGNATURE
    assert verifier.verify(env) is None  # not blocked as a replay by the forgery


def test_fresh_false_skips_stale_and_replay(signer_a, verifier):
    old = signer_a.sign(envelope(ts=T0 - 86400))  # a retained state message from yesterday
    assert verifier.verify(old, fresh=False) is None
    assert verifier.verify(old, fresh=False) is None
    assert verifier.seen_size == 0
    assert verifier.verify(old) is Reason.STALE


def test_fresh_false_still_checks_the_signature(signer_a, verifier):
    env = signer_a.sign(envelope(ts=T0 - 86400))
    env["body"] = {"status": "online"}
    assert verifier.verify(env, fresh=False) is Reason.BAD_SIGNATURE
    assert verifier.verify(envelope(), fresh=False) is Reason.UNSIGNED


def test_check_order_unsigned_before_malformed_before_unknown(verifier):
    assert verifier.verify({"from": 1, "id": 2}) is Reason.UNSIGNED
    assert verifier.verify({"from": "nobody", "id": 2, "ts": T0, "sig": "x"}) is Reason.MALFORMED
    assert verifier.verify({"from": "nobody", "id": "2", "ts": T0, "sig": "x"}) is Reason.UNKNOWN_SENDER


def test_counts_start_at_zero_for_every_reason(verifier):
    assert verifier.counts == {str(r): 0 for r in Reason}


# --------------------------------------------------------------------------- bounded cache

def test_seen_cache_stays_bounded_over_100k_entries():
    cache, window, bound = _SeenCache(), 30.0, 0
    t = T0
    for i in range(100_000):
        t += 0.001  # 1000 accepted envelopes a second
        cache.prune(t)
        cache.add(("node-a", str(i)), t + window)
        bound = max(bound, len(cache))
    assert 29_000 <= bound <= 30_100  # rate x window, not 100k


def test_seen_cache_prune_keeps_unexpired_entries():
    cache = _SeenCache()
    cache.add(("a", "1"), 10.0)
    cache.add(("a", "2"), 20.0)
    cache.prune(15.0)
    assert ("a", "1") not in cache and ("a", "2") in cache


def test_verifier_seen_cache_is_bounded_by_rate_times_window(signer_a, trust):
    clock = Clock()
    v = Verifier(trust, window=1.0, clock=clock)
    envs = [signer_a.sign(envelope(id_=str(i), ts=T0 + i * 0.01)) for i in range(1500)]
    peak = 0
    for i, env in enumerate(envs):  # 100 envelopes a second over 15 windows
        clock.t = T0 + i * 0.01
        assert v.verify(env) is None
        peak = max(peak, v.seen_size)
    assert 100 <= peak <= 202  # rate x window (x2 at most for future-dated ts), never 1500


# --------------------------------------------------------------------------- logging

def test_rejections_are_logged_once_per_sender_and_reason_per_minute(verifier, clock, caplog):
    caplog.set_level(logging.WARNING, logger="cloudisense.node._signing")

    def warnings():
        return [r for r in caplog.records if r.levelno == logging.WARNING]

    for _ in range(5):
        verifier.verify(envelope(sender="node-a"))  # unsigned
    assert len(warnings()) == 1
    assert "node-a" in warnings()[0].getMessage() and "unsigned" in warnings()[0].getMessage()
    clock.t += 59.9
    verifier.verify(envelope(sender="node-a"))
    assert len(warnings()) == 1
    verifier.verify(envelope(sender="node-b"))  # another sender: logged
    verifier.verify({**envelope(sender="node-a"), "ts": "x", "sig": "s"})  # another reason: logged
    assert len(warnings()) == 3
    clock.t += 0.1  # a minute after the first
    verifier.verify(envelope(sender="node-a"))
    # the minute's suppressed ones are summed up in one line, then the next is logged
    assert [r.getMessage() for r in warnings()][3:] == [
        "5 more like ('node-a', 'unsigned') in the last 60 s (not logged)",
        "dropped envelope from 'node-a': unsigned (counted; the same from this sender is logged again in "
        "60 s at the earliest)"]
    assert verifier.counts["unsigned"] == 8 and verifier.counts["malformed"] == 1


def test_note_rejection_counts_and_logs_for_callers(verifier, caplog):
    caplog.set_level(logging.WARNING, logger="cloudisense.node._signing")
    verifier.note_rejection(None, Reason.MALFORMED)  # e.g. JSON that did not parse
    verifier.note_rejection(None, "malformed")
    assert verifier.counts["malformed"] == 2
    assert len(caplog.records) == 1


def test_a_flood_of_senders_does_not_grow_the_log_limiter_without_bound(verifier, caplog):
    caplog.set_level(logging.WARNING, logger="cloudisense.node._signing")
    for i in range(5000):
        verifier.verify({"from": f"spoof-{i}", "id": "1", "ts": T0, "sig": "AAAA"})
    assert verifier.counts["unknown_sender"] == 5000
    assert len(verifier._log._window) <= 1000
    assert 1000 <= len(caplog.records) <= 1001


def test_logged_sender_is_truncated(verifier, caplog):
    caplog.set_level(logging.WARNING, logger="cloudisense.node._signing")
    verifier.verify({"from": "x" * 10_000, "id": "1", "ts": T0, "sig": "AAAA"})
    assert len(caplog.records[0].getMessage()) < 300


# --------------------------------------------------------------------------- keys

def test_generate_keypair_files_and_modes(tmp_path):
    key, pub = generate_keypair("node-z", tmp_path / "new")
    assert (key.name, pub.name) == ("node-z.key", "node-z.pub")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert pub.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert isinstance(serialization.load_pem_public_key(pub.read_bytes()), Ed25519PublicKey)
    assert Signer("node-z", key).public_key_b64  # loads back


def test_generate_keypair_refuses_to_overwrite(tmp_path):
    key, _ = generate_keypair("node-z", tmp_path)
    before = key.read_bytes()
    with pytest.raises(FileExistsError, match="node-z.key"):
        generate_keypair("node-z", tmp_path)
    assert key.read_bytes() == before


def test_generate_keypair_refuses_when_only_the_pub_exists(tmp_path):
    (tmp_path / "node-z.pub").write_text("someone else's")
    with pytest.raises(FileExistsError, match="node-z.pub"):
        generate_keypair("node-z", tmp_path)
    assert not (tmp_path / "node-z.key").exists()


@pytest.mark.parametrize("bad", ["", "a/b", "has space", "#", "-lead", "x" * 65])
def test_generate_keypair_validates_the_node_id(tmp_path, bad):
    with pytest.raises(ConfigError, match="not valid"):
        generate_keypair(bad, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_signer_missing_key_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match=r"nope\.key.*does not exist"):
        Signer("node-a", tmp_path / "nope.key")


def test_signer_garbage_key_is_config_error(tmp_path):
    f = tmp_path / "junk.key"
    f.write_text("not a key")
    with pytest.raises(ConfigError, match=r"junk\.key"):
        Signer("node-a", f)


def test_signer_non_ed25519_key_is_config_error(tmp_path):
    f = tmp_path / "ec.key"
    f.write_bytes(ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    with pytest.raises(ConfigError, match=r"ec\.key.*not an Ed25519"):
        Signer("node-a", f)


def test_signer_unreadable_key_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="can't be read"):
        Signer("node-a", tmp_path)  # a directory


def test_signer_warns_about_a_world_readable_key(tmp_path, caplog):
    key, _ = generate_keypair("node-z", tmp_path)
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="cloudisense.node._signing"):
        Signer("node-z", key)
    assert "chmod 600" in caplog.text


# --------------------------------------------------------------------------- trust store

def test_trust_store_from_directory(keydir, signer_a):
    ts = TrustStore.load(keydir)  # .key files beside the .pub files are ignored
    assert ts.ids() == ["mallory", "node-a", "node-b"]
    assert ts.get("nobody") is None
    v = Verifier(ts, clock=Clock())
    assert v.verify(signer_a.sign(envelope())) is None


def test_trust_store_from_list_file(tmp_path, signer_a, signer_b):
    f = tmp_path / "trusted.txt"
    f.write_text(f"# cluster keys\n\nnode-a {signer_a.public_key_b64}\n"
                 f"  node-b   {signer_b.public_key_b64}   # the other one\n"
                 f"node-a {signer_a.public_key_b64}\n")  # an identical repeat is harmless
    ts = TrustStore.load(f)
    assert ts.ids() == ["node-a", "node-b"]
    v = Verifier(ts, clock=Clock())
    assert v.verify(signer_a.sign(envelope())) is None
    assert v.verify(signer_b.sign(envelope(sender="node-b", id_="2"))) is None


@pytest.mark.parametrize("line, why", [
    ("node-a", "expected 'ID BASE64_RAW_PUBKEY'"),
    ("node-a AAAA extra", "expected"),
    ("node-a not-base64!!", "not valid base64"),
    ("node-a " + base64.b64encode(b"\1" * 31).decode(), "31 bytes"),
    ("bad/id " + base64.b64encode(b"\1" * 32).decode(), "not valid"),
])
def test_trust_list_garbage_names_the_file_and_line(tmp_path, line, why):
    f = tmp_path / "trusted.txt"
    f.write_text(f"# ok\n{line}\n")
    with pytest.raises(ConfigError) as e:
        TrustStore.load(f)
    assert f"{f}, line 2" in str(e.value) and why in str(e.value)


def test_trust_list_conflicting_keys_is_config_error(tmp_path, signer_a, signer_b):
    f = tmp_path / "trusted.txt"
    f.write_text(f"node-a {signer_a.public_key_b64}\nnode-a {signer_b.public_key_b64}\n")
    with pytest.raises(ConfigError, match="listed twice"):
        TrustStore.load(f)


def test_trust_dir_garbage_pub_names_the_file(tmp_path, keydir):
    (tmp_path / "node-a.pub").write_bytes((keydir / "node-a.pub").read_bytes())
    (tmp_path / "broken.pub").write_text("-----BEGIN PUBLIC KEY-----\ngarbage\n")
    with pytest.raises(ConfigError, match=r"broken\.pub"):
        TrustStore.load(tmp_path)


def test_trust_dir_non_ed25519_pub_names_the_file(tmp_path):
    pub = ec.generate_private_key(ec.SECP256R1()).public_key()
    (tmp_path / "node-e.pub").write_bytes(pub.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    with pytest.raises(ConfigError, match=r"node-e\.pub.*not an Ed25519"):
        TrustStore.load(tmp_path)


def test_trust_dir_bad_file_name_is_config_error(tmp_path, keydir):
    (tmp_path / "bad id.pub").write_bytes((keydir / "node-a.pub").read_bytes())
    with pytest.raises(ConfigError, match=r"bad id\.pub"):
        TrustStore.load(tmp_path)


def test_trust_store_missing_or_empty_is_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        TrustStore.load(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no ID.pub files"):
        TrustStore.load(tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match=r"empty\.txt"):
        TrustStore.load(tmp_path / "empty.txt")


# --------------------------------------------------------------------------- property

_json_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**63)
                 | st.floats(allow_nan=False) | st.text(max_size=12))
_json = st.recursive(_json_scalars,
                     lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(max_size=6), inner, max_size=4),
                     max_leaves=12)
_fields = ["v", "kind", "from", "to", "id", "ts", "body", "sig"]


@st.composite
def _mutations(draw):
    """(description, function env -> mutated env) covering replace, delete, add, nested, sig."""
    kind = draw(st.sampled_from(["replace", "delete", "add", "nested", "sig_bits"]))
    if kind == "replace":
        field = draw(st.sampled_from(_fields))
        value = draw(_json | st.sampled_from(["node-a", "node-b", "mallory", T0, T0 + 1e-6]))

        def f(env):
            env[field] = value
        return f"{field} = {value!r}", f
    if kind == "delete":
        field = draw(st.sampled_from(_fields))
        return f"del {field}", lambda env: env.pop(field)
    if kind == "add":
        field = draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in _fields))
        value = draw(_json)

        def f(env):
            env[field] = value
        return f"+{field} = {value!r}", f
    if kind == "nested":
        key = draw(st.sampled_from(["service", "method", "params", "reply_by", "new"]))
        value = draw(_json)

        def f(env):
            env["body"][key] = value
        return f"body.{key} = {value!r}", f
    bit = draw(st.integers(0, 64 * 8 - 1))

    def f(env):
        raw = bytearray(base64.b64decode(env["sig"]))
        raw[bit // 8] ^= 1 << (bit % 8)
        env["sig"] = base64.b64encode(bytes(raw)).decode()
    return f"flip sig bit {bit}", f


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["service", "method", "params", "reply_by"]), _json,
                            max_size=4),
       mutation=_mutations())
def test_any_mutation_of_a_signed_envelope_is_rejected(signer_a, trust, body, mutation):
    _, mutate = mutation
    original = signer_a.sign(envelope(**{"_": 0}) | {"body": body})
    mutated = copy.deepcopy(original)
    mutate(mutated)
    # A mutation that leaves the envelope as it was (x = x) is no mutation.  Judged by
    # an independent, type-exact serialisation, not by canonical() under test.
    assume(json.dumps(mutated, sort_keys=True) != json.dumps(original, sort_keys=True))
    v = Verifier(trust, clock=Clock())
    assert v.verify(copy.deepcopy(original)) is None  # the original passes...
    v = Verifier(trust, clock=Clock())
    assert v.verify(mutated) is not None  # ...any real mutation does not
