"""Envelope signing: keys, trust store, and every reason the verifier drops an envelope."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import logging
import stat

import pytest
from cloudisense.node._errors import ConfigError
from cloudisense.node._json import canonical_bytes
from cloudisense.node._signing import (
    MAC_CONTEXT,
    PairKeys,
    Reason,
    Sealer,
    Signer,
    TrustStore,
    Verifier,
    _SeenCache,
    batch_canonical,
    canonical,
    fingerprint,
    generate_keypair,
    hashed_mac,
    mac_of,
    open_batches,
    pairwise_key,
    trust_from_signers,
)
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from hypothesis import HealthCheck, assume, example, given, settings
import support
from support import independent_pairwise_key
from hypothesis import strategies as st
from nacl.bindings import crypto_sign_seed_keypair

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


# =========================================================================== pairwise MACs
#
# Unicast envelopes carry a MAC keyed with K_AB (X25519 of the converted Ed25519 keys,
# BLAKE2b under a context string); multicast ones keep the Ed25519 signature; a batch
# carries one of either.  The key derivation is checked against an independent
# implementation (cryptography's X25519 and the Edwards→Montgomery map written out here).

SEEDS = {"node-a": bytes(range(32)), "node-b": bytes(range(32, 64)), "node-c": bytes(range(64, 96))}
#: K(node-a, node-b) for the seeds above: pinned, so a change of the derivation can't go unnoticed.
K_AB_HEX = "7bf0d16ef297dbaad71f7e5eae75d844aabaa9397875a6468a420e9f76c9ba70"


def _raw_pub(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def independent_mac(key: bytes, env: dict) -> str:
    data = json.dumps({k: v for k, v in env.items() if k not in ("sig", "mac")}, sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(hashlib.blake2b(data, digest_size=16, key=key).digest()).decode()


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    """Key files of node-a/b/c made from fixed seeds, and each node's signer, keys, sealer and verifier."""
    d = tmp_path_factory.mktemp("seeded")
    for nid, seed in SEEDS.items():
        key = Ed25519PrivateKey.from_private_bytes(seed)
        (d / f"{nid}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        (d / f"{nid}.key").chmod(0o600)
        (d / f"{nid}.pub").write_bytes(key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return d


class Peer:
    def __init__(self, d, nid, clock):
        self.id = nid
        self.signer = Signer(nid, d / f"{nid}.key")
        self.trust = TrustStore.load(d)
        self.keys = PairKeys(self.signer, self.trust)
        self.sealer = Sealer(self.signer, self.keys)
        self.verifier = Verifier(self.trust, window=30.0, clock=clock, keys=self.keys)

    def wire(self, *envs):
        return json.loads(self.sealer.wire(list(envs)))


@pytest.fixture
def peers(seeded, clock):
    return {n: Peer(seeded, n, clock) for n in SEEDS}


def unicast(frm="node-a", to="node-b", id_="u1", ts=T0, kind="call", **body):
    return {"v": 1, "kind": kind, "from": frm, "to": to, "id": id_, "ts": ts,
            "body": body or {"service": "relay", "method": "bump", "params": {}, "reply_by": ts + 5}}


def event(frm="node-a", id_="e1", ts=T0, topic="t/x"):
    return {"v": 1, "kind": "event", "from": frm, "to": None, "id": id_, "ts": ts,
            "body": {"topic": topic, "data": {"n": 1}}}


# --------------------------------------------------------------------------- key derivation

def test_known_answer_k_ab_for_fixed_keys_both_directions():
    pk = {n: crypto_sign_seed_keypair(s) for n, s in SEEDS.items()}   # (raw public, 64-byte secret)
    k_ab = pairwise_key(pk["node-a"][1], "node-a", pk["node-b"][0], "node-b")
    k_ba = pairwise_key(pk["node-b"][1], "node-b", pk["node-a"][0], "node-a")
    assert k_ab.hex() == K_AB_HEX
    assert k_ba == k_ab
    assert support.MAC_CONTEXT == MAC_CONTEXT   # the independent derivation uses the documented context
    assert independent_pairwise_key(SEEDS["node-a"], "node-a", _raw_pub(SEEDS["node-b"]), "node-b") == k_ab
    assert independent_pairwise_key(SEEDS["node-b"], "node-b", _raw_pub(SEEDS["node-a"]), "node-a") == k_ab


def test_each_pair_has_its_own_key_and_the_ids_are_bound():
    pk = {n: crypto_sign_seed_keypair(s) for n, s in SEEDS.items()}
    k_ab = pairwise_key(pk["node-a"][1], "node-a", pk["node-b"][0], "node-b")
    k_ac = pairwise_key(pk["node-a"][1], "node-a", pk["node-c"][0], "node-c")
    k_bc = pairwise_key(pk["node-b"][1], "node-b", pk["node-c"][0], "node-c")
    assert len({k_ab, k_ac, k_bc}) == 3
    # the same key material under other names gives another key
    assert pairwise_key(pk["node-a"][1], "node-x", pk["node-b"][0], "node-b") != k_ab
    assert pairwise_key(pk["node-a"][1], "node-a", pk["node-b"][0], "node-bb") != k_ab


def test_pair_keys_come_from_the_key_files_and_are_cached_bounded(peers):
    a, b = peers["node-a"], peers["node-b"]
    assert a.keys.get("node-b").hex() == K_AB_HEX == b.keys.get("node-a").hex()
    assert a.keys.get("mallory") is None          # not trusted: no key
    small = PairKeys(a.signer, a.trust, max_cached=2)
    for n in ("node-a", "node-b", "node-c", "node-b"):
        assert small.get(n) is not None
    assert len(small) == 2
    # beside each cached key, a BLAKE2b keyed with it: evicted with it, and it MACs as the key does
    assert set(small.hashers) == {"node-c", "node-b"}
    h = small.hasher("node-b").copy()
    h.update(b"data")
    assert h.digest() == mac_of(small.get("node-b"), b"data")
    assert small.hasher("mallory") is None and "mallory" not in small.hashers
    small.replace_trust(TrustStore({"node-a": a.signer.public_key}))
    assert small.hashers == {} and small.hasher("node-b") is None


def test_a_verifier_takes_pair_keys_only_of_its_own_trust_store(peers):
    a = peers["node-a"]
    other = TrustStore({"node-a": a.signer.public_key})
    with pytest.raises(ValueError, match="trust store"):
        Verifier(other, keys=PairKeys(a.signer, a.trust))   # its one pass would trust what the store does not


def test_a_small_order_peer_key_gives_no_pair_key(peers, caplog):
    a = peers["node-a"]
    bad = TrustStore({"node-a": a.signer.public_key,
                      "weird": Ed25519PublicKey.from_public_bytes(bytes([1]) + bytes(31))})   # the identity point
    keys = PairKeys(a.signer, bad)
    with caplog.at_level(logging.WARNING, logger="cloudisense.node._signing"):
        assert keys.get("weird") is None
        assert keys.get("weird") is None
    assert caplog.text.count("unusable") == 1   # derived (and logged) once


def test_fingerprint_is_sha256_base64_like_openssh(peers):
    raw = peers["node-a"].trust.raw("node-a")
    fp = fingerprint(raw)
    assert fp.startswith("SHA256:") and not fp.endswith("=")
    assert base64.b64decode(fp[7:] + "=") == hashlib.sha256(raw).digest()


# --------------------------------------------------------------------------- sealing

def test_unicast_carries_a_mac_multicast_a_sig(peers):
    a = peers["node-a"]
    call = a.wire(unicast())
    assert "mac" in call and "sig" not in call
    assert len(base64.b64decode(call["mac"], validate=True)) == 16
    assert call["mac"] == independent_mac(bytes.fromhex(K_AB_HEX), call)   # the documented MAC
    for env in (event(), unicast(to="*", id_="bc"), {**event(), "kind": "presence", "body": {"state": "online"}}):
        sealed = a.wire(env)
        assert "sig" in sealed and "mac" not in sealed, env["kind"]
        assert len(base64.b64decode(sealed["sig"])) == 64


def test_mac_round_trip_and_reply(peers):
    a, b = peers["node-a"], peers["node-b"]
    assert b.verifier.verify(a.wire(unicast())) is None
    assert a.verifier.verify(b.wire(unicast("node-b", "node-a", kind="result", re="u1", result=1))) is None


def test_every_unicast_kind_gets_a_mac(peers):
    a, b = peers["node-a"], peers["node-b"]
    for i, kind in enumerate(("call", "result", "error", "sub", "unsub", "lease")):
        env = a.wire(unicast(kind=kind, id_=f"k{i}", x=1))
        assert "mac" in env, kind
        assert b.verifier.verify(env) is None


def test_sealer_refuses_an_envelope_from_another_node(peers):
    with pytest.raises(ValueError, match="node-b"):
        peers["node-a"].sealer.prepare(unicast(frm="node-b", to="node-a"))


def test_a_peer_without_a_key_gets_a_sig_which_it_accepts(seeded, clock):
    a = Signer("node-a", seeded / "node-a.key")
    only_a = trust_from_signers([a])
    sealer = Sealer(a, PairKeys(a, only_a))       # node-a does not know node-b's key
    env = json.loads(sealer.wire([unicast()]))
    assert "sig" in env and "mac" not in env
    b = Peer(seeded, "node-b", clock)
    assert b.verifier.verify(env) is None


def test_mac_mode_sig_writes_what_older_nodes_write(peers, trust, clock, seeded):
    a = peers["node-a"]
    legacy = Sealer(a.signer, a.keys, unicast="sig")
    one = json.loads(legacy.wire([unicast()]))
    assert "sig" in one and "mac" not in one
    many = json.loads(legacy.wire([unicast(id_="1"), unicast(id_="2")]))
    assert isinstance(many, list) and all("sig" in e for e in many)   # a JSON array, each signed
    old = Verifier(TrustStore.load(seeded), clock=clock)   # a verifier of before: no pair keys
    assert [old.verify(e) for e in [one, *many]] == [None, None, None]
    with pytest.raises(ValueError):
        Sealer(a.signer, a.keys, unicast="hmac")


# --------------------------------------------------------------------------- MAC rejections

def test_sig_where_a_mac_is_expected_is_accepted(peers):
    a, b = peers["node-a"], peers["node-b"]
    env = a.signer.sign(unicast())      # an older node, or security.unicast = "sig"
    assert b.verifier.verify(env) is None


def test_mac_unsigned(peers):
    b = peers["node-b"]
    assert b.verifier.verify(unicast()) is Reason.UNSIGNED
    assert b.verifier.verify({**unicast(), "mac": ""}) is Reason.UNSIGNED
    assert b.verifier.verify({**unicast(), "mac": None, "sig": None}) is Reason.UNSIGNED


@pytest.mark.parametrize("field, value", [
    ("mac", 42), ("mac", ["AAAA"]), ("from", None), ("id", 7), ("id", "x" * 257), ("ts", "now"), ("ts", True),
    ("sig", "AAAA"),     # a sig and a mac: which one counts? neither
])
def test_mac_malformed(peers, field, value):
    a, b = peers["node-a"], peers["node-b"]
    env = a.wire(unicast())
    env[field] = value
    assert b.verifier.verify(env) is Reason.MALFORMED


@pytest.mark.parametrize("env", [
    event(), unicast(to="*"), unicast(to=None), {**unicast(), "kind": "state"}, {**unicast(), "kind": "presence"},
    unicast(to=["node-b"]),
], ids=["event", "to-star", "to-none", "state", "presence", "to-list"])
def test_mac_on_a_multicast_kind_is_rejected(peers, env):
    b = peers["node-b"]
    env = dict(env)
    env["mac"] = independent_mac(bytes.fromhex(K_AB_HEX), env)   # a valid MAC with K_AB, even
    assert b.verifier.verify(env) is Reason.MULTICAST_MAC
    assert b.verifier.counts["multicast_mac"] == 1


def test_mac_unknown_sender(peers):
    b = peers["node-b"]
    env = {**unicast(frm="mallory"), "mac": base64.b64encode(b"\1" * 16).decode()}
    assert b.verifier.verify(env) is Reason.UNKNOWN_SENDER


def test_mac_tampered_is_bad_signature(peers):
    a, b = peers["node-a"], peers["node-b"]
    for field, value in (("body", {"service": "supervisor", "method": "restart"}), ("ts", T0 + 1),
                         ("kind", "result"), ("id", "u2"), ("extra", 1)):
        env = a.wire(unicast())
        env[field] = value
        assert b.verifier.verify(env) is Reason.BAD_SIGNATURE, field


def test_mac_with_the_wrong_pairs_key_c_forging_a_to_b(peers):
    """node-c shares K_AC with node-a; it can't use it to pass as node-a to node-b."""
    b, c = peers["node-b"], peers["node-c"]
    k_ac = c.keys.get("node-a")
    forged = unicast()                   # from node-a to node-b
    forged["mac"] = independent_mac(k_ac, forged)
    assert b.verifier.verify(forged) is Reason.BAD_SIGNATURE
    k_cb = c.keys.get("node-b")          # nor with its own key with node-b
    forged["mac"] = independent_mac(k_cb, forged)
    assert b.verifier.verify(forged) is Reason.BAD_SIGNATURE


def test_a_macd_envelope_replayed_to_a_third_node_is_rejected(peers):
    a, b, c = peers["node-a"], peers["node-b"], peers["node-c"]
    env = a.wire(unicast())
    assert c.verifier.verify(copy.deepcopy(env)) is Reason.BAD_SIGNATURE   # K_AC doesn't check K_AB's MAC
    retargeted = {**env, "to": "node-c"}
    assert c.verifier.verify(retargeted) is Reason.BAD_SIGNATURE           # to is covered by the MAC
    assert b.verifier.verify(env) is None                                  # the addressee still takes it


def test_mac_for_another_node_that_checks_is_misrouted(peers):
    """Only a sender with K_AB can make it: node-a MACs an envelope for node-c with K_AB."""
    b = peers["node-b"]
    env = unicast(to="node-c")
    env["mac"] = independent_mac(bytes.fromhex(K_AB_HEX), env)
    assert b.verifier.verify(env) is Reason.MISROUTED


def test_signed_envelope_for_another_node_is_misrouted(peers):
    a, b = peers["node-a"], peers["node-b"]
    assert b.verifier.verify(a.signer.sign(unicast(to="node-c"))) is Reason.MISROUTED


@pytest.mark.parametrize("mac", ["not base64!", "AAAA", base64.b64encode(b"\0" * 16).decode(),
                                 base64.b64encode(b"\0" * 64).decode()])
def test_mac_garbage_is_bad_signature(peers, mac):
    a, b = peers["node-a"], peers["node-b"]
    env = a.wire(unicast())
    env["mac"] = mac
    assert b.verifier.verify(env) is Reason.BAD_SIGNATURE


def test_mac_non_canonical_base64_is_bad_signature(peers):
    a, b = peers["node-a"], peers["node-b"]
    env = a.wire(unicast())
    mac = env["mac"]
    assert mac.endswith("==")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    twin = mac[:21] + alphabet[alphabet.index(mac[21]) ^ 1] + "=="
    assert base64.b64decode(twin) == base64.b64decode(mac)
    assert b.verifier.verify({**env, "mac": twin}) is Reason.BAD_SIGNATURE
    assert b.verifier.verify(env) is None


def test_mac_without_pair_keys_is_bad_signature(peers, seeded, clock):
    env = peers["node-a"].wire(unicast())
    assert Verifier(TrustStore.load(seeded), clock=clock).verify(env) is Reason.BAD_SIGNATURE


@pytest.mark.parametrize("offset", [-30.001, 30.001, -3600])
def test_mac_stale(peers, offset):
    a, b = peers["node-a"], peers["node-b"]
    assert b.verifier.verify(a.wire(unicast(ts=T0 + offset))) is Reason.STALE


def test_mac_replayed(peers):
    a, b = peers["node-a"], peers["node-b"]
    env = a.wire(unicast())
    assert b.verifier.verify(copy.deepcopy(env)) is None
    assert b.verifier.verify(copy.deepcopy(env)) is Reason.REPLAYED
    # the same id under a signature is the same envelope: a replay too
    assert b.verifier.verify(a.signer.sign(unicast())) is Reason.REPLAYED


# --------------------------------------------------------------------------- batches

def test_batch_carries_one_mac_and_opens_to_every_envelope(peers):
    a, b = peers["node-a"], peers["node-b"]
    envs = [unicast(id_=str(i)) for i in range(5)]
    batch = a.wire(*envs)
    assert set(batch) == {"v", "kind", "from", "to", "envs", "mac"}
    assert (batch["kind"], batch["from"], batch["to"]) == ("batch", "node-a", "node-b")
    assert all("mac" not in e and "sig" not in e for e in batch["envs"])
    assert b.verifier.accept([batch]) == envs
    assert b.verifier.accepted == 5 and b.verifier.batches == {"accepted": 1, "rejected": 0}


def test_batch_of_events_carries_one_signature(peers):
    a, b, c = peers["node-a"], peers["node-b"], peers["node-c"]
    envs = [event(id_=str(i)) for i in range(3)]
    batch = a.wire(*envs)
    assert "sig" in batch and batch["to"] is None
    assert b.verifier.accept([copy.deepcopy(batch)]) == envs
    assert c.verifier.accept([copy.deepcopy(batch)]) == envs   # every receiver can check a signature


def test_batch_bytes_are_the_canonical_json_of_the_batch(peers):
    envs = [unicast(id_="1", text="é ✓"), unicast(id_="2", n=0.1 + 0.2)]
    obj = {"v": 1, "kind": "batch", "from": "node-a", "to": "node-b", "envs": envs}
    assert batch_canonical("node-a", "node-b", [canonical(e) for e in envs]) == canonical_bytes(obj)


def test_batch_with_one_tampered_envelope_is_rejected_whole_and_counted(peers):
    a, b = peers["node-a"], peers["node-b"]
    batch = a.wire(*[unicast(id_=str(i)) for i in range(4)])
    tampered = copy.deepcopy(batch)
    tampered["envs"][2]["body"]["method"] = "restart"
    assert b.verifier.accept([tampered]) == []
    assert b.verifier.counts["bad_signature"] == 4           # every envelope in it
    assert b.verifier.batches == {"accepted": 0, "rejected": 1}
    assert b.verifier.accept([batch]) == batch["envs"]      # not remembered: the genuine one still passes


def test_signed_batch_with_one_tampered_envelope_is_rejected_whole(peers):
    a, b = peers["node-a"], peers["node-b"]
    batch = a.wire(*[event(id_=str(i)) for i in range(3)])
    batch["envs"][0]["body"]["data"] = {"n": 2}
    assert b.verifier.verify_batch(batch) is Reason.BAD_SIGNATURE
    assert b.verifier.counts["bad_signature"] == 3


def test_batch_per_envelope_checks_reject_the_whole_batch(peers, clock):
    a, b = peers["node-a"], peers["node-b"]
    v = b.verifier
    assert v.verify_batch(a.wire(unicast(id_="1"), unicast(id_="2", ts=T0 - 31))) is Reason.STALE
    assert v.counts["stale"] == 2
    assert v.verify_batch(a.wire(unicast(id_="3"), unicast(id_="3"))) is Reason.REPLAYED   # twice inside
    ok = a.wire(unicast(id_="4"), unicast(id_="5"))
    assert v.verify_batch(copy.deepcopy(ok)) is None
    assert v.verify_batch(copy.deepcopy(ok)) is Reason.REPLAYED                             # the batch again
    assert v.verify_batch(a.wire(unicast(id_="6"), unicast(id_="5"))) is Reason.REPLAYED     # one id seen
    assert v.verify(a.wire(unicast(id_="6"))) is None   # "6" of the rejected batch was not remembered


def test_signed_batch_for_another_node_is_misrouted(peers):
    a, c = peers["node-a"], peers["node-c"]
    no_key_for_b = Sealer(a.signer, PairKeys(a.signer, trust_from_signers([a.signer])))   # so it signs
    batch = json.loads(no_key_for_b.wire([unicast(id_="1"), unicast(id_="2")]))
    assert "sig" in batch and batch["to"] == "node-b"
    assert c.verifier.verify_batch(batch) is Reason.MISROUTED
    assert peers["node-b"].verifier.verify_batch(batch) is None


def test_mac_batch_replayed_to_a_third_node_is_rejected(peers):
    a, c = peers["node-a"], peers["node-c"]
    assert c.verifier.verify_batch(a.wire(unicast(id_="1"), unicast(id_="2"))) is Reason.BAD_SIGNATURE


def test_mac_batch_with_a_multicast_envelope_is_rejected(peers):
    b = peers["node-b"]
    envs = [unicast(id_="1"), event(id_="2")]
    k = bytes.fromhex(K_AB_HEX)
    data = batch_canonical("node-a", "node-b", [canonical(e) for e in envs])
    batch = {"v": 1, "kind": "batch", "from": "node-a", "to": "node-b", "envs": envs,
             "mac": base64.b64encode(hashlib.blake2b(data, digest_size=16, key=k).digest()).decode()}
    assert b.verifier.verify_batch(batch) is Reason.MULTICAST_MAC
    assert b.verifier.verify_batch({**batch, "to": None, "envs": envs[:1]}) is Reason.MULTICAST_MAC


@pytest.mark.parametrize("change", [
    lambda b: b.pop("envs"), lambda b: b.update(envs=[]), lambda b: b.update(envs={}), lambda b: b.update(v=2),
    lambda b: b.update(extra=1), lambda b: b.update(sig="AAAA"), lambda b: b.update(to=5),
    lambda b: b["envs"].append("x"), lambda b: b["envs"][0].update(id=1), lambda b: b["envs"][0].pop("ts"),
    lambda b: b["envs"][0].update(mac="AAAA"), lambda b: b.update(envs=b["envs"] * 200),
], ids=["no-envs", "empty", "envs-dict", "v2", "extra-field", "sig-and-mac", "to-int", "not-a-dict", "id-int",
        "no-ts", "inner-mac", "too-many"])
def test_batch_malformed(peers, change):
    a, b = peers["node-a"], peers["node-b"]
    batch = a.wire(unicast(id_="1"), unicast(id_="2"))
    change(batch)
    assert b.verifier.verify_batch(batch) is Reason.MALFORMED


def test_batch_unsigned_unknown_and_foreign_envelope(peers):
    a, b = peers["node-a"], peers["node-b"]
    batch = a.wire(unicast(id_="1"), unicast(id_="2"))
    assert b.verifier.verify_batch({k: v for k, v in batch.items() if k != "mac"}) is Reason.UNSIGNED
    assert b.verifier.verify_batch({**batch, "from": "mallory",
                                    "envs": [{**e, "from": "mallory"} for e in batch["envs"]]}) \
        is Reason.UNKNOWN_SENDER
    foreign = copy.deepcopy(batch)
    foreign["envs"][1]["from"] = "node-c"   # node-a vouching for node-c's envelope
    assert b.verifier.verify_batch(foreign) is Reason.BAD_SIGNATURE


def test_accept_mixes_single_envelopes_and_batches(peers):
    a, b = peers["node-a"], peers["node-b"]
    single, batch = a.wire(unicast(id_="s")), a.wire(unicast(id_="1"), unicast(id_="2"))
    bad = {**a.wire(unicast(id_="3")), "body": {}}
    presence_old = a.wire({**event(id_="p", ts=T0 - 86400), "kind": "presence", "body": {"state": "online"}})
    got = b.verifier.accept([single, batch, bad, presence_old, "junk", {"kind": ["x"], "mac": "A"}])
    assert [e["id"] for e in got] == ["s", "1", "2", "p"]   # retained kinds are not held to the window
    assert b.verifier.counts["bad_signature"] == 1 and b.verifier.counts["malformed"] == 2


def test_open_batches_without_a_trust_store():
    batch = {"v": 1, "kind": "batch", "from": "x", "to": None, "envs": [event(id_="1"), "junk", event(id_="2")]}
    assert [e.get("id") for e in open_batches([event(id_="0"), batch])] == ["0", "1", "2"]
    assert open_batches([{"kind": "batch", "envs": "no"}]) == []


# --------------------------------------------------------------------------- property: MACs

@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(st.sampled_from(["service", "method", "params", "reply_by"]), _json, max_size=4),
       mutation=_mutations())
def test_any_mutation_of_a_macd_envelope_is_rejected(seeded, body, mutation):
    _, mutate = mutation
    clock = Clock()
    a, b = Peer(seeded, "node-a", clock), Peer(seeded, "node-b", clock)
    original = a.wire(unicast(_=0) | {"body": body})
    original["sig"] = original.pop("mac")            # the mutations address the authenticator as "sig"
    mutated = copy.deepcopy(original)
    try:
        mutate(mutated)
    except IndexError:   # flipping bit 200 of a 16-byte MAC: no such bit
        assume(False)
    assume(json.dumps(mutated, sort_keys=True) != json.dumps(original, sort_keys=True))
    for env in (original, mutated):
        if isinstance(env.get("sig"), str):
            env["mac"] = env.pop("sig")
    assert b.verifier.verify(copy.deepcopy(original)) is None
    b = Peer(seeded, "node-b", clock)
    assert b.verifier.verify(mutated) is not None


# --------------------------------------------------------------------------- checked over the bytes received
#
# A receiver checks the MAC or signature over the bytes that came (the sender splices the authenticator
# into its canonical bytes, so they are the canonical bytes plus one field): no re-serialisation on the hot
# path.  What it then acts on is parsed from those same bytes, so any byte an attacker changes, adds or
# moves must fail; bytes that only *encode* the same envelope differently fall back to the canonical check.

def raw_check(verifier, raw: bytes):
    obj = json.loads(raw)
    if obj.get("kind") == "batch":
        return verifier.verify_batch(obj, raw=raw)
    return verifier.verify(obj, raw=raw)


@pytest.mark.parametrize("kind", ["mac", "sig", "mac-batch", "sig-batch"])
def test_the_bytes_a_sender_sealed_pass_and_any_edit_of_them_fails(peers, kind):
    a = peers["node-a"]
    envs = ([unicast(id_="1")] if kind == "mac" else [event(id_="1")] if kind == "sig"
            else [unicast(id_="1"), unicast(id_="2")] if kind == "mac-batch" else [event(id_="1"), event(id_="2")])
    raw = a.sealer.wire(envs)
    edits = {
        # a field appended after the authenticator: the parsed envelope would carry it
        "appended": raw[:-1] + b',"body":{"service":"supervisor","method":"restart"}}',
        # a duplicate key put last: JSON keeps the last
        "dup last": raw[:-1] + b',"to":"node-c"}' if b'"to":"node-b"' in raw else raw[:-1] + b',"from":"node-c"}',
        # a value edited in place
        "edited": raw.replace(b'"node-a"', b'"node-c"', 1) if b'"from":"node-a"' in raw else raw + b"x",
        # an escaped spelling of a character the sender wrote plainly
        "escaped": raw.replace(b'"v":1', b'"\\u0076":2', 1),
    }
    for what, bad in edits.items():
        b = peers["node-b"]
        v = Verifier(b.trust, window=30.0, clock=b.verifier.clock, keys=b.keys)
        try:
            json.loads(bad)
        except ValueError:
            continue   # not JSON: the edge drops it before any check
        assert raw_check(v, bad) is not None, f"{kind}: {what} was accepted: {bad!r}"
    b = peers["node-b"]
    assert raw_check(b.verifier, raw) is None


def test_bytes_that_encode_the_sealed_envelope_differently_are_still_checked(peers):
    # whitespace the sender did not write, or the authenticator elsewhere: not the sealed bytes, so the
    # canonical form is checked (and passes: the envelope is the one the sender sealed)
    a, b = peers["node-a"], peers["node-b"]
    raw = a.sealer.wire([unicast(id_="1")])
    spaced = json.dumps(json.loads(raw), indent=1).encode()
    assert raw_check(b.verifier, spaced) is None
    head, tag = raw.rsplit(b',"mac":', 1)
    moved = b'{"mac":' + tag[:-1] + b"," + head[1:] + b"}"    # the authenticator first: the same fields
    assert raw_check(Verifier(b.trust, window=30.0, clock=b.verifier.clock, keys=b.keys), moved) is None
    dup_first = b'{"to":"node-c",' + raw[1:]                  # JSON keeps the last "to": the same envelope
    assert raw_check(Verifier(b.trust, window=30.0, clock=b.verifier.clock, keys=b.keys), dup_first) is None
    forged = json.dumps({**json.loads(raw), "body": {"service": "x"}}, indent=1).encode()
    assert raw_check(Verifier(b.trust, window=30.0, clock=b.verifier.clock, keys=b.keys), forged) is not None


def test_a_mac_over_received_bytes_is_still_bound_to_the_pair_and_the_receiver(peers):
    a, b, c = peers["node-a"], peers["node-b"], peers["node-c"]
    raw = a.sealer.wire([unicast(id_="1")])
    assert raw_check(c.verifier, raw) is Reason.BAD_SIGNATURE           # K_AB is not K_AC
    forged = c.sealer.wire([unicast(frm="node-c", id_="2")]).replace(b'"from":"node-c"', b'"from":"node-a"')
    assert raw_check(b.verifier, forged) is Reason.BAD_SIGNATURE        # C posing as A with K_BC
    assert raw_check(b.verifier, raw) is None
    assert raw_check(b.verifier, raw) is Reason.REPLAYED


def test_the_bytes_a_sealer_wrote_are_checked_without_re_serialising(peers, monkeypatch):
    import cloudisense.node._signing as signing
    a, b = peers["node-a"], peers["node-b"]
    single, batch = a.sealer.wire([unicast(id_="1")]), a.sealer.wire([unicast(id_="2"), unicast(id_="3")])
    legacy = Sealer(a.signer, a.keys, unicast="sig").wire([unicast(id_="4")])

    def no(*_a, **_k):
        raise AssertionError("re-serialised a message whose bytes were the sealed ones")

    monkeypatch.setattr(signing, "canonical", no)
    assert [raw_check(b.verifier, r) for r in (single, batch, legacy)] == [None, None, None]


# --------------------------------------------------------------------------- one pass for the common case
#
# ``Verifier.verify`` accepts the usual message (one unicast envelope as a Sealer MAC'd it, for this node,
# fresh, new) in one pass, and sends everything else through the checks in order (``_check``).  The one
# pass may only ever agree with them: these cases are the bytes a sealer wrote, edited the ways an attacker
# or a broken peer would, received at another time or a second time, and each must get exactly the answer
# of the ordered checks, with the same replay cache afterwards.

def _edits():
    splice = st.tuples(st.integers(0, 400), st.integers(0, 8), st.binary(max_size=8))
    tokens = st.sampled_from([b'"node-a"', b'"node-b"', b'"node-c"', b'"*"', b"null", b"1764240000.0",
                              b"1764240000", b'"call"', b'"event"', b'"result"', b'"mac"', b'"sig"', b"1e999",
                              b'"' + b"i" * 300 + b'"', b"[]", b"{}", b'""'])
    field = st.tuples(st.sampled_from([b'"from":', b'"to":', b'"id":', b'"ts":', b'"kind":', b'"mac":',
                                       b'"v":']), tokens)
    return st.one_of(
        st.tuples(st.just("splice"), splice),          # bytes cut out and others put in, anywhere
        st.tuples(st.just("field"), field),            # one field's value replaced by another JSON token
        st.tuples(st.just("append"), field),           # the field again, last (JSON keeps the last)
        st.tuples(st.just("escape"), st.integers(0, 400)),   # a letter written as \u00XX: the same JSON value
        st.tuples(st.just("mac"), st.sampled_from(["node-c", "other-id", "flip", "pad", "lower", "empty",
                                                   "non-ascii", "surrogate", "long"])),
        st.tuples(st.just("none"), st.none()))


def _apply(raw: bytes, edit, peers) -> bytes:
    what, arg = edit
    if what == "splice":
        at, cut, put = arg
        at = min(at, len(raw))
        return raw[:at] + put + raw[at + cut:]
    if what == "escape":
        letters = [i for i, c in enumerate(raw) if 97 <= c <= 122]
        i = letters[arg % len(letters)]
        return raw[:i] + b"\\u%04x" % raw[i] + raw[i + 1:]
    if what in ("field", "append"):
        name, value = arg
        if what == "append":
            return raw[:-1] + b"," + name + value + b"}"
        i = raw.find(name)
        if i < 0:
            return raw
        j = i + len(name)
        end = j + 1 + raw[j + 1:].index(b'"') + 1 if raw[j:j + 1] == b'"' else j + len(raw[j:].split(b",")[0])
        return raw[:j] + value + raw[end:]
    if what == "mac":
        head, _, tail = raw.rpartition(b',"mac":"')
        mac = tail[:-2]
        if arg == "node-c":      # what node-c's key with node-b makes of the same bytes
            mac = base64.b64encode(hashlib.blake2b(head + b"}", digest_size=16, key=peers["node-c"].keys.get(
                "node-b")).digest())
        elif arg == "other-id":  # A's genuine MAC of another envelope
            mac = json.loads(peers["node-a"].sealer.wire([unicast(id_="other")]))["mac"].encode()
        elif arg == "flip":
            mac = mac[:5] + (b"B" if mac[5:6] != b"B" else b"C") + mac[6:]
        elif arg == "pad":       # unused low bits of the last character set: another spelling
            mac = mac[:-3] + bytes([mac[-3] ^ 1]) + mac[-2:]
        elif arg == "lower":
            mac = mac.lower()
        elif arg == "non-ascii":   # as many characters as a MAC has, not all ASCII
            mac = "é".encode() + mac[1:]
        elif arg == "surrogate":   # a lone surrogate, escaped (what json.loads takes and .encode() refuses)
            mac = b"\\ud800" + mac[1:]
        elif arg == "long":        # the right MAC with one character more
            mac = mac + b"A"
        else:
            mac = b""
        return head + b',"mac":"' + mac + b'"}'
    return raw


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edit=_edits(), kind=st.sampled_from(["call", "result", "error", "lease", "event"]),
       to=st.sampled_from(["node-b", "node-c", "*"]), skew=st.sampled_from([0.0, 29.0, -29.0, 31.0, -31.0, 1e9]),
       seen_before=st.booleans(), ts_int=st.booleans(), keyed_for_b=st.booleans())
@example(edit=("none", None), kind="call", to="node-c", skew=0.0, seen_before=False, ts_int=False,
         keyed_for_b=True)   # K_AB, but for node-c: misrouted
@example(edit=("none", None), kind="result", to="node-b", skew=31.0, seen_before=False, ts_int=False,
         keyed_for_b=True)   # stale
@example(edit=("none", None), kind="call", to="node-b", skew=0.0, seen_before=True, ts_int=False,
         keyed_for_b=True)   # replayed
@example(edit=("none", None), kind="call", to="node-b", skew=0.0, seen_before=False, ts_int=False,
         keyed_for_b=True)   # accepted
@example(edit=("mac", "node-c"), kind="call", to="node-b", skew=0.0, seen_before=False, ts_int=False,
         keyed_for_b=True)   # node-c forging A->B with K_BC
def test_the_one_pass_for_sealed_macs_answers_as_the_ordered_checks_do(seeded, edit, kind, to, skew,
                                                                      seen_before, ts_int, keyed_for_b):
    clock = Clock(T0 + skew)
    peers = {n: Peer(seeded, n, clock) for n in SEEDS}
    env = unicast(id_="x1", kind=kind, to=to, ts=T0 if not ts_int else int(T0))
    sealer = peers["node-a"].sealer
    # keyed_for_b: MAC'd with K_AB whatever 'to' says (only A or B could make it: 'to' is still checked)
    raw = _apply(sealer.pack([(canonical(env), "node-b" if keyed_for_b else to)]) if to != "*"
                 else sealer.wire([env]), edit, peers)
    try:
        obj = json.loads(raw)
    except ValueError:
        assume(False)
    assume(type(obj) is dict)
    b = peers["node-b"]
    b.keys.get("node-a"), b.keys.get("node-c")   # derived already, as in a running node (else: no one pass)
    one_pass, ordered = (Verifier(b.trust, window=30.0, clock=clock, keys=b.keys) for _ in range(2))
    if seen_before:   # the genuine envelope already came once
        genuine = json.loads(sealer.wire([unicast(id_="x1", kind="call")]))
        for v in (one_pass, ordered):
            v._check(copy.deepcopy(genuine), True, None)
    got = one_pass.verify(copy.deepcopy(obj), raw=raw)
    want = ordered._check(copy.deepcopy(obj), True, raw)
    assert got == want, f"{edit!r}: one pass says {got}, the ordered checks say {want}"
    assert one_pass.seen_size == ordered.seen_size


def test_the_one_pass_takes_the_usual_message_and_refuses_a_trust_reload_s_removed_peer(seeded, tmp_path):
    clock = Clock()
    peers = {n: Peer(seeded, n, clock) for n in SEEDS}
    a, b = peers["node-a"], peers["node-b"]
    raw = a.sealer.wire([unicast(id_="1")])
    assert raw_check(b.verifier, raw) is None and b.verifier.accepted == 1
    assert raw_check(b.verifier, raw) is Reason.REPLAYED
    # node-a leaves the trust store (what a SIGHUP reload does): its cached pair key must not let it in
    for n in ("node-b", "node-c"):
        (tmp_path / f"{n}.pub").write_bytes((seeded / f"{n}.pub").read_bytes())
    b.verifier.replace_trust(TrustStore.load(tmp_path))
    assert raw_check(b.verifier, a.sealer.wire([unicast(id_="2")])) is Reason.UNKNOWN_SENDER


def test_the_one_pass_keeps_the_replay_cache_bounded(seeded):
    from cloudisense.node._signing import PRUNE_EVERY
    clock = Clock()
    a, b = Peer(seeded, "node-a", clock), Peer(seeded, "node-b", clock)
    v = Verifier(b.trust, window=1.0, clock=clock, keys=b.keys)
    b.keys.get("node-a")
    raws = [a.sealer.wire([unicast(id_=str(i), ts=T0 + i * 0.01)]) for i in range(1500)]
    peak, slow = 0, []
    v._check = lambda *args: slow.append(args)   # the ordered checks must not be needed for these
    for i, raw in enumerate(raws):   # 100 a second over 15 windows
        clock.t = T0 + i * 0.01
        assert raw_check(v, raw) is None
        peak = max(peak, v.seen_size)
    assert not slow
    assert 100 <= peak <= 100 * (2 * 1.0 + PRUNE_EVERY) + 2   # rate x (2 x window + the prune interval)


@pytest.mark.parametrize("odd", [
    {"sig": "AAAA"},                          # a sig beside the MAC: malformed
    {"mac": "not-the-mac"},                   # a mac of its own, before the one spliced in (JSON keeps the last)
    {"kind": ["call"]},                       # an unhashable kind
    {"kind": 7},                              # a kind that is not a string
    {"kind": "event"},                        # a multicast kind under a MAC
    {"to": "*"},                              # to everyone under a MAC
    {"to": None},
    {"ts": int(T0)},                          # a whole-number timestamp
    {"ts": "1764240000"},
    {"id": "i" * 300},                        # an id over MAX_ID_LEN
    {"id": 5},
    {"from": "node-a", "extra": {"mac": "x", "sig": "y"}},   # the names nested, not at the top
])
def test_the_one_pass_answers_an_authentic_but_odd_envelope_as_the_ordered_checks_do(seeded, odd):
    # What a trusted peer with a bug could send: its key MACs whatever it was given, so the MAC holds and
    # the one pass must still refuse (or accept) exactly what the ordered checks do.
    clock = Clock()
    a, b = Peer(seeded, "node-a", clock), Peer(seeded, "node-b", clock)
    env = {**unicast(id_="odd"), **odd}
    data = canonical_bytes(env)   # the peer's bytes, odd fields and all (canonical() would drop sig/mac)
    raw = data[:-1] + b',"mac":"' + hashed_mac(a.keys.hasher("node-b"), data) + b'"}'
    b.keys.get("node-a")
    one_pass, ordered = (Verifier(b.trust, window=30.0, clock=clock, keys=b.keys) for _ in range(2))
    got = one_pass.verify(json.loads(raw), raw=raw)
    want = ordered._check(json.loads(raw), True, raw)
    assert got == want, f"{odd!r}: one pass says {got}, the ordered checks say {want}"
    assert one_pass.seen_size == ordered.seen_size
