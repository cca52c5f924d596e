"""Envelope authentication: keys, trust store, pairwise MAC keys, sealing and verifying (pure logic, no I/O
but key files).

Every envelope a node sends over the federation is a dict such as::

    {"v": 1, "kind": "call", "from": "node-a", "to": "node-b", "id": "a1b2…",
     "ts": 1764240000.123, "body": {...}, "mac": "base64…"}

It carries one authenticator over :func:`canonical` of the envelope, i.e. the
compact, key-sorted UTF-8 JSON of every field but ``sig`` and ``mac``, so it
covers ``v``, ``kind``, ``from``, ``to``, ``id``, ``ts``, the whole ``body``
and any field added later:

* ``mac`` on a **unicast** envelope (addressed to one node: call, result,
  error, sub, unsub, lease): base64 of BLAKE2b-128 keyed with the pairwise key
  ``K_AB`` of sender and receiver (:func:`pairwise_key`), which both derive
  from their Ed25519 identities with no round trip.  Only the two of them can
  make or check it.
* ``sig`` on a **multicast** envelope (events, presence, state and the will,
  calls to ``"*"``): base64 of the sender's Ed25519 signature.  A ``sig`` on a
  unicast envelope is accepted too (older nodes, ``security.unicast = "sig"``).

Envelopes coalesced into one MQTT message travel as one **batch** with one
authenticator for all of them (:func:`batch_canonical`)::

    {"v": 1, "kind": "batch", "from": "node-a", "to": "node-b", "envs": [{...}, {...}], "mac": "…"}

Receivers run :meth:`Verifier.verify` (one envelope) or
:meth:`Verifier.verify_batch`, which answer ``None`` (accepted) or the
:class:`Reason` it was dropped for.  Checks, in order:

1. ``sig`` or ``mac`` present                          else ``unsigned``
2. ``from``/``id`` strings, ``ts`` a finite number,
   ``sig``/``mac`` a string (not both), JSON encodable   else ``malformed``
3. no ``mac`` on a multicast envelope                  else ``multicast_mac``
4. ``from`` is in the trust store                      else ``unknown_sender``
5. the MAC / signature verifies for ``from``           else ``bad_signature``
6. ``to`` is this node, ``*`` or none                  else ``misrouted``
7. (``fresh=True`` only) ``|now - ts| <= window``       else ``stale``
8. (``fresh=True`` only) (``from``, ``id``) not seen    else ``replayed``

A batch is checked as a whole for 1-5 and envelope by envelope for 6-8; one
envelope that fails rejects the whole batch, and every envelope in it is
counted under that reason.  Only envelopes that pass every check are
remembered for replay detection, and only until they would be rejected as
stale anyway, so the seen cache holds at most (accepted rate) x (2 x window)
entries.
"""

from __future__ import annotations

import base64
import binascii
from binascii import b2a_base64
import hashlib
import logging
from hmac import compare_digest
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeGuard

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import (
    crypto_scalarmult,
    crypto_sign,
    crypto_sign_ed25519_pk_to_curve25519,
    crypto_sign_ed25519_sk_to_curve25519,
    crypto_sign_open,
    crypto_sign_seed_keypair,
)
from nacl.exceptions import BadSignatureError, CryptoError

from ._config import node_id_error
from ._errors import ConfigError
from ._files import create_new, private_dir
from ._json import canonical_bytes, dumpb
from ._ratelog import RateLimitedLog
from ._text import printable

__all__ = [
    "MAC_CONTEXT",
    "PairKeys",
    "Reason",
    "Sealer",
    "Signer",
    "TrustStore",
    "Verifier",
    "add_trusted",
    "batch_canonical",
    "canonical",
    "fingerprint",
    "generate_keypair",
    "open_batches",
    "pairwise_key",
    "trust_from_signers",
]

log = logging.getLogger(__name__)

#: An ``id`` longer than this is ``malformed`` (bounds the seen cache per entry).
MAX_ID_LEN = 256
#: A rejection is logged at most once per (sender, reason) per this many seconds.
LOG_INTERVAL = 60.0
#: At most this many distinct (sender, reason) pairs are logged per LOG_INTERVAL;
#: past it (e.g. a flood of random ``from`` values) rejections are only counted.
LOG_MAX_KEYS = 1000
#: The fixed context string of the pairwise key derivation (:func:`pairwise_key`).
MAC_CONTEXT = b"cloudisense/v1 pairwise envelope MAC key"
#: Bytes of a MAC (BLAKE2b-128) and of a pairwise key.
MAC_BYTES, PAIR_KEY_BYTES = 16, 32
#: Kinds many receivers read: they carry a signature, never a MAC.
MULTICAST_KINDS = frozenset({"event", "presence", "state", "catalog", "member"})
#: Retained kinds: verified without the stale and replay checks (they are legitimately old).
RETAINED_KINDS = frozenset({"presence", "state", "catalog"})
#: The usual message (the one pass of :meth:`Verifier.verify`) prunes the replay cache at most this often
#: (seconds): an entry may outlive its expiry by this much more, and is still rejected as stale first.
PRUNE_EVERY = 0.25
#: A batch of more envelopes than this is ``malformed`` (a sender coalesces at most 64).
MAX_BATCH_ENVELOPES = 256
_AUTH = ("sig", "mac")
#: How a Sealer ends a MAC'd message: this, the MAC's 24 base64 characters, ``"}``.
_MAC_FIELD = b',"mac":"'
_MAC_TAIL_BYTES = len(_MAC_FIELD) + 4 * ((MAC_BYTES + 2) // 3) + 2
_BATCH_KEYS = frozenset({"v", "kind", "from", "to", "envs"})


def canonical(env: Mapping[str, Any]) -> bytes:
    """The bytes that are signed or MAC'd: compact, key-sorted UTF-8 JSON of every field but ``sig`` and ``mac``.

    Raises ``TypeError`` for values JSON can't encode and ``UnicodeEncodeError``
    for strings with lone surrogates (the verifier calls those ``malformed``).
    """
    if "sig" in env or "mac" in env:
        env = {k: v for k, v in env.items() if k != "sig" and k != "mac"}
    return canonical_bytes(env)


def batch_canonical(sender: str, to: str | None, envs: Iterable[bytes]) -> bytes:
    """The bytes a batch's one ``mac``/``sig`` covers, from the :func:`canonical` bytes of its envelopes.

    It is the canonical JSON of ``{"v": 1, "kind": "batch", "from": sender,
    "to": to, "envs": [...]}`` with each envelope written in its own canonical
    form, so sender and receiver build it from per-envelope bytes alike.
    """
    return (b'{"envs":[' + b",".join(envs) + b'],"from":' + dumpb(sender) + b',"kind":"batch","to":'
            + dumpb(to) + b',"v":1}')


def sealed_part(raw: bytes, sig: object, mac: object) -> bytes | None:
    """The bytes a sender authenticated, cut from the message ``raw`` it sent, or ``None``.

    A :class:`Sealer` writes its canonical bytes with the closing ``}`` replaced
    by ``,"mac":"…"}`` (or ``"sig"``).  When ``raw`` ends in exactly that field,
    holding the value the parsed message has, the bytes before it plus ``}`` are
    what was MAC'd or signed: checking them spares re-serialising the message.
    The receiver acts on what it parsed from these same bytes, so nothing can
    be changed without the check failing.  Bytes laid out otherwise (spaces, the
    field elsewhere) give ``None``, and bytes this check refuses are checked
    again in canonical form: another encoding of a genuine envelope (an older
    node's) still passes, anything else fails both.
    """
    name, value = (b"mac", mac) if mac is not None else (b"sig", sig)
    if type(value) is not str or not value.isascii():
        return None
    tail = b',"' + name + b'":"' + value.encode() + b'"}'
    if not raw.endswith(tail):
        return None
    return raw[:-len(tail)] + b"}"


def is_multicast(env: Mapping[str, Any]) -> bool:
    """Read by many (an event, presence, state, or a call to ``*``): only a signature will do."""
    to, kind = env.get("to"), env.get("kind")
    return type(to) is not str or to == "*" or (type(kind) is str and kind in MULTICAST_KINDS)


def fingerprint(raw_public_key: bytes) -> str:
    """``SHA256:`` and the unpadded base64 of the SHA-256 of the raw 32-byte key (as OpenSSH shows keys)."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(raw_public_key).digest()).decode("ascii").rstrip("=")


def pairwise_key(secret_key: bytes, node_id: str, peer_public_key: bytes, peer_id: str) -> bytes:
    """``K_AB``: the 32-byte MAC key node ``node_id`` shares with ``peer_id``.

    ``secret_key`` is the 64-byte libsodium Ed25519 secret key (seed + public
    key), ``peer_public_key`` the peer's raw 32-byte Ed25519 public key.  Both
    are converted to X25519 (``crypto_sign_ed25519_{sk,pk}_to_curve25519``);
    the X25519 shared secret is hashed with BLAKE2b-256 keyed with
    :data:`MAC_CONTEXT`, followed by both node ids in sorted order, each
    ended by a NUL byte (node ids never contain one)::

        K_AB = BLAKE2b-256(key=MAC_CONTEXT, data=X25519(a, B) || lo || 0x00 || hi || 0x00)

    Both ends get the same key.  Raises ``ValueError`` for a peer key libsodium
    refuses (not a point, or of small order: the shared secret would be known).
    """
    try:
        shared = crypto_scalarmult(crypto_sign_ed25519_sk_to_curve25519(secret_key),
                                   crypto_sign_ed25519_pk_to_curve25519(peer_public_key))
    except CryptoError as e:
        raise ValueError(f"no pairwise key with {peer_id!r}: its public key is unusable ({e})") from None
    lo, hi = sorted((node_id, peer_id))
    return hashlib.blake2b(shared + lo.encode() + b"\0" + hi.encode() + b"\0", digest_size=PAIR_KEY_BYTES,
                           key=MAC_CONTEXT).digest()


def mac_of(key: bytes, data: bytes) -> bytes:
    """BLAKE2b-128 of ``data`` keyed with ``key`` (hashlib's BLAKE2b: 4x cheaper per call than PyNaCl's)."""
    return hashlib.blake2b(data, digest_size=MAC_BYTES, key=key).digest()


def hashed_mac(hasher: Any, data: bytes) -> bytes:
    """The ``mac`` field's value over ``data``: base64 of BLAKE2b-128 from ``hasher``, a BLAKE2b already
    keyed with the pair key (:meth:`PairKeys.hasher`; it is copied, not changed).  The one spelling: no
    unused low bits set."""
    h = hasher.copy()
    h.update(data)
    return b2a_base64(h.digest(), newline=False)


# --------------------------------------------------------------------------- keys

def generate_keypair(node_id: str, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``DIR/ID.key`` (PKCS8 PEM, mode 0600) and ``DIR/ID.pub`` (SubjectPublicKeyInfo PEM).

    Creates ``out_dir`` (mode 0700) if needed.  Never overwrites: if either file (or a symlink) exists,
    raises ``FileExistsError`` and writes nothing.  A bad node id is a
    :class:`ConfigError`.
    """
    if err := node_id_error(node_id):
        raise ConfigError(err)
    out = Path(out_dir)
    key_path, pub_path = out / f"{node_id}.key", out / f"{node_id}.pub"
    for p in (key_path, pub_path):
        if os.path.lexists(p):  # a dangling symlink too
            raise FileExistsError(f"{p} already exists; refusing to overwrite a node key "
                                  "(move it away first if you really mean to replace it)")
    private_dir(out)
    key = Ed25519PrivateKey.generate()
    priv_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    pub_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(key_path, priv_pem, 0o600)
    try:
        _write_new(pub_path, pub_pem, 0o644)
    except BaseException:
        key_path.unlink(missing_ok=True)
        raise
    return key_path, pub_path


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with exactly ``mode`` (no race with a file or symlink planted there)."""
    create_new(path, data, mode)


def _load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"signing key {path} does not exist "
                          f"(make one with: cloudisense keys gen ID --out {path.parent})") from None
    except OSError as e:
        raise ConfigError(f"signing key {path} can't be read: {e.strerror or e}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError(f"signing key {path} is encrypted; CloudiSENSE needs an unencrypted "
                          "PKCS8 PEM key (protect it with file permissions)") from None
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ConfigError(f"signing key {path} is not a PEM private key: {e}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"signing key {path} is a {type(key).__name__.lstrip('_')}, "
                          "not an Ed25519 key")
    try:
        if path.stat().st_mode & 0o077:
            log.warning("signing key %s is readable by group or others; chmod 600 it", path)
    except OSError:  # pragma: no cover - we just read it
        pass
    return key


class Signer:
    """Signs this node's envelopes with its Ed25519 private key."""

    __slots__ = ("node_id", "_key", "_sk", "public_key", "public_key_b64")

    def __init__(self, node_id: str, private_key_path: str | Path) -> None:
        if err := node_id_error(node_id):
            raise ConfigError(err)
        self.node_id = node_id
        self._key = _load_private_key(Path(private_key_path))
        # The signing itself is libsodium's (PyNaCl): 38 µs here against OpenSSL's 63 µs.
        _, self._sk = crypto_sign_seed_keypair(self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()))
        self.public_key: Ed25519PublicKey = self._key.public_key()
        #: base64 of the raw 32-byte public key: the form a trust list file uses.
        self.public_key_b64 = base64.b64encode(self.public_key.public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)).decode("ascii")

    def sign(self, env: dict[str, Any]) -> dict[str, Any]:
        """Set ``env["sig"]`` over :func:`canonical` and return ``env`` (the same dict).

        ``env["from"]`` must be this node's id: an envelope signed under another
        name would only be dropped as ``bad_signature`` by every receiver, so the
        bug is raised here, where it is made (``ValueError``).
        """
        if env.get("from") != self.node_id:
            raise ValueError(f"envelope 'from' is {env.get('from')!r}, but this signer is "
                             f"{self.node_id!r}")
        env["sig"] = base64.b64encode(crypto_sign(canonical(env), self._sk)[:64]).decode("ascii")
        return env

    def __repr__(self) -> str:
        return f"Signer({self.node_id!r}, public_key_b64={self.public_key_b64!r})"


class PairKeys:
    """This node's pairwise MAC keys (:func:`pairwise_key`) with the peers in its trust store.

    A key is derived on first use (one X25519, ~0.1 ms) and cached; at most
    ``max_cached`` are kept, the least recently used by :meth:`get` going first.
    Beside each key, :attr:`hashers` holds a BLAKE2b already keyed with it:
    a MAC is a copy of it fed the message, which spares hashing the key block
    again on every message.
    """

    __slots__ = ("_cache", "_sk", "_trust", "hashers", "max_cached", "node_id")

    def __init__(self, signer: Signer, trust: TrustStore, max_cached: int = 1024) -> None:
        self.node_id = signer.node_id
        self._sk = signer._sk
        self._trust = trust
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        #: peer -> a BLAKE2b-128 keyed with K(this node, peer), for every usable key in the cache: the
        #: hot path reads it directly (a plain dict lookup) and calls :meth:`get` only when it misses.
        self.hashers: dict[str, Any] = {}
        self.max_cached = max_cached

    def get(self, peer: str) -> bytes | None:
        """``K(this node, peer)``, or None if ``peer`` is not trusted or its key is unusable."""
        cache = self._cache
        key = cache.get(peer)
        if key is None:
            raw = self._trust.raw(peer)
            if raw is None:
                return None
            try:
                key = pairwise_key(self._sk, self.node_id, raw, peer)
            except ValueError as e:
                log.warning("%s", e)
                key = b""   # remembered as unusable: not derived again
            cache[peer] = key
            if key:
                self.hashers[peer] = hashlib.blake2b(digest_size=MAC_BYTES, key=key)
            if len(cache) > self.max_cached:
                self.hashers.pop(cache.popitem(last=False)[0], None)
        else:
            cache.move_to_end(peer)
        return key or None

    def hasher(self, peer: str) -> Any:
        """The keyed BLAKE2b of ``peer`` (copy it before use), or None (not trusted, or unusable)."""
        h = self.hashers.get(peer)
        if h is None and self.get(peer) is not None:
            h = self.hashers[peer]
        return h

    @property
    def trust(self) -> TrustStore:
        """The trust store the keys are derived from: only its peers have one."""
        return self._trust

    def replace_trust(self, trust: TrustStore) -> None:
        """Derive keys from ``trust`` from now on (a reload): every cached key is derived again."""
        self._trust = trust
        self._cache.clear()
        self.hashers.clear()

    def __len__(self) -> int:
        return len(self._cache)


class Sealer:
    """Authenticates what this node sends, one MQTT message at a time.

    The federation calls :meth:`prepare` on each envelope as it is queued (its
    canonical bytes, taken at once so a body changed later can't change what
    is sent) and :meth:`pack` on the envelopes of one MQTT message: one
    envelope gets its own ``mac`` (unicast) or ``sig`` (multicast); several
    become one batch with one ``mac`` (all unicast to the same node) or one
    ``sig``.  The authenticator is spliced into the canonical bytes, so
    nothing is serialised twice.

    ``unicast="sig"`` writes what nodes before pairwise MACs wrote (a ``sig``
    on every envelope, a JSON array for several): for a rolling upgrade, until
    every node accepts MACs.
    """

    __slots__ = ("_keys", "_signer", "_sk", "node_id", "unicast")

    def __init__(self, signer: Signer, keys: PairKeys | None, unicast: str = "mac") -> None:
        if unicast not in ("mac", "sig"):
            raise ValueError(f"unicast must be 'mac' or 'sig', not {unicast!r}")
        self.node_id = signer.node_id
        self.unicast = unicast if keys is not None else "sig"
        self._signer = signer
        self._sk = signer._sk
        self._keys = keys

    def prepare(self, env: dict[str, Any]) -> Any:
        """What :meth:`pack` needs of ``env`` (opaque to the caller)."""
        if env.get("from") != self.node_id:
            raise ValueError(f"envelope 'from' is {env.get('from')!r}, but this sealer is {self.node_id!r}")
        data = canonical(env) if "sig" in env or "mac" in env else canonical_bytes(env)
        if self.unicast == "sig":   # each envelope signed on its own: its canonical bytes, the sig spliced in
            return b"".join((data[:-1], b',"sig":"', base64.b64encode(crypto_sign(data, self._sk)[:64]), b'"}'))
        # (is_multicast, inline: this runs for every envelope sent, mostly on a cold cache)
        to, kind = env.get("to"), env.get("kind")
        multicast = type(to) is not str or to == "*" or (type(kind) is str and kind in MULTICAST_KINDS)
        return data, (None if multicast else to)

    def pack(self, items: list[Any]) -> bytes:
        """The MQTT payload that carries the prepared envelopes ``items`` (at least one)."""
        if self.unicast == "sig":
            return items[0] if len(items) == 1 else b"[" + b",".join(items) + b"]"
        if len(items) == 1:
            data, peer = items[0]
        else:
            peers = {p for _, p in items}
            peer = peers.pop() if len(peers) == 1 else None
            data = batch_canonical(self.node_id, peer, [d for d, _ in items])
        hasher = self._keys.hasher(peer) if peer is not None and self._keys is not None else None
        if hasher is not None:
            return b"".join((data[:-1], _MAC_FIELD, hashed_mac(hasher, data), b'"}'))
        # multicast, or a peer we hold no key of (a sig is accepted on unicast too)
        return b"".join((data[:-1], b',"sig":"', base64.b64encode(crypto_sign(data, self._sk)[:64]), b'"}'))

    def wire(self, envs: list[dict[str, Any]]) -> bytes:
        """:meth:`prepare` and :meth:`pack` in one (retained messages, the will, tests)."""
        return self.pack([self.prepare(e) for e in envs])

    def __repr__(self) -> str:
        return f"Sealer({self.node_id!r}, unicast={self.unicast!r})"


# --------------------------------------------------------------------------- trust

class TrustStore:
    """Node id → Ed25519 public key, from a directory of ``ID.pub`` files or a list file."""

    __slots__ = ("_keys", "_raw", "source")

    def __init__(self, keys: Mapping[str, Ed25519PublicKey] | None = None, *,
                 source: str = "") -> None:
        self._keys: dict[str, Ed25519PublicKey] = dict(keys or {})
        self._raw: dict[str, bytes] = {
            k: v.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            for k, v in self._keys.items()}
        self.source = source

    @classmethod
    def load(cls, path: str | Path) -> TrustStore:
        """Load from a directory (every ``ID.pub`` PEM in it; other files are ignored)
        or from a text file of ``ID BASE64_RAW_PUBKEY`` lines (``#`` starts a comment).

        Raises :class:`ConfigError` naming the file (and line) on anything unusable,
        and when no key at all is found.
        """
        p = Path(path)
        if p.is_dir():
            keys = cls._load_dir(p)
        elif p.is_file():
            keys = cls._load_list(p)
        elif p.exists():
            raise ConfigError(f"trust store {p} is neither a directory nor a file")
        else:
            raise ConfigError(f"trust store {p} does not exist")
        if not keys:
            what = "no ID.pub files" if p.is_dir() else "no 'ID BASE64_KEY' lines"
            raise ConfigError(f"trust store {p} has {what}: every envelope would be rejected")
        return cls(keys, source=str(p))

    @staticmethod
    def _load_dir(d: Path) -> dict[str, Ed25519PublicKey]:
        keys: dict[str, Ed25519PublicKey] = {}
        for f in sorted(d.glob("*.pub")):
            node_id = f.name[: -len(".pub")]
            if err := node_id_error(node_id):
                raise ConfigError(f"trust store file {f}: the file name must be ID.pub; {err}")
            try:
                data = f.read_bytes()
            except OSError as e:
                raise ConfigError(f"trust store file {f} can't be read: {e.strerror or e}") from None
            try:
                key = serialization.load_pem_public_key(data)
            except (ValueError, UnsupportedAlgorithm) as e:
                raise ConfigError(f"trust store file {f} is not a PEM public key: {e}") from None
            if not isinstance(key, Ed25519PublicKey):
                raise ConfigError(f"trust store file {f} holds a {type(key).__name__.lstrip('_')}, "
                                  "not an Ed25519 public key")
            keys[node_id] = key
        return keys

    @staticmethod
    def _load_list(f: Path) -> dict[str, Ed25519PublicKey]:
        try:
            text = f.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"trust store file {f} can't be read: {e}") from None
        keys: dict[str, Ed25519PublicKey] = {}
        raw_by_id: dict[str, bytes] = {}
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"trust store file {f}, line {n}"
            parts = line.split()
            if len(parts) != 2:
                raise ConfigError(f"{where}: expected 'ID BASE64_RAW_PUBKEY', got {line[:80]!r}")
            node_id, b64 = parts
            if err := node_id_error(node_id):
                raise ConfigError(f"{where}: {err}")
            try:
                raw = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                raise ConfigError(f"{where}: the key of {node_id!r} is not valid base64") from None
            if len(raw) != 32:
                raise ConfigError(f"{where}: the key of {node_id!r} is {len(raw)} bytes; "
                                  "a raw Ed25519 public key is 32")
            if node_id in raw_by_id and raw_by_id[node_id] != raw:
                raise ConfigError(f"{where}: {node_id!r} is listed twice with different keys")
            raw_by_id[node_id] = raw
            keys[node_id] = Ed25519PublicKey.from_public_bytes(raw)
        return keys

    def get(self, node_id: str) -> Ed25519PublicKey | None:
        return self._keys.get(node_id)

    def raw(self, node_id: str) -> bytes | None:
        """The 32 raw bytes of ``node_id``'s public key."""
        return self._raw.get(node_id)

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def __contains__(self, node_id: object) -> bool:
        return node_id in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def __repr__(self) -> str:
        return f"TrustStore({self.ids()!r}, source={self.source!r})"


def raw_public_key(pem: bytes, where: str) -> bytes:
    """The raw 32 bytes of the Ed25519 public key in a PEM (an ``ID.pub`` file); ConfigError naming ``where``."""
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise ConfigError(f"{where} is not a PEM public key: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{where} holds a {type(key).__name__.lstrip('_')}, not an Ed25519 public key")
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def add_trusted(store: str | Path, node_id: str, raw: bytes) -> tuple[Path, bool]:
    """Add ``node_id``'s raw Ed25519 public key to the trust store ``store``.

    A directory gets ``ID.pub`` (PEM); an existing list file gets an
    ``ID BASE64`` line.  Returns (the file written or found, whether it was
    added): the same key already trusted under that id is not added again; a
    *different* one is a :class:`ConfigError` (replace it by hand: that is a
    key rotation, or an impostor).
    """
    if err := node_id_error(node_id):
        raise ConfigError(err)
    if len(raw) != 32:
        raise ConfigError(f"the key of {node_id!r} is {len(raw)} bytes; a raw Ed25519 public key is 32")
    key = Ed25519PublicKey.from_public_bytes(raw)
    p = Path(store)
    if p.is_file():
        current = TrustStore._load_list(p)   # may have no key yet
        known = (current[node_id].public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                 if node_id in current else None)
        if known is not None:
            if known != raw:
                raise ConfigError(f"{p} already trusts another key for {node_id!r} ({fingerprint(known)}); "
                                  "remove that line first if the node really has a new key")
            return p, False
        with open(p, "a", encoding="utf-8") as f:
            f.write(f"{node_id} {base64.b64encode(raw).decode('ascii')}\n")
        return p, True
    p.mkdir(parents=True, exist_ok=True)
    pub = p / f"{node_id}.pub"
    if pub.exists():
        known = raw_public_key(pub.read_bytes(), str(pub))
        if known != raw:
            raise ConfigError(f"{pub} already holds another key for {node_id!r} ({fingerprint(known)}); "
                              "move it away first if the node really has a new key")
        return pub, False
    _write_new(pub, key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
               0o644)
    return pub, True


# --------------------------------------------------------------------------- verify

class Reason(StrEnum):
    """Why an envelope was dropped (also the keys of :attr:`Verifier.counts`)."""

    UNSIGNED = "unsigned"              # neither sig nor mac
    MALFORMED = "malformed"            # from/id/ts/sig/mac of the wrong type, both sig and mac, not JSON-encodable
    MULTICAST_MAC = "multicast_mac"    # a mac on an envelope many nodes read (only a sig will do)
    UNKNOWN_SENDER = "unknown_sender"  # from is not in the trust store
    BAD_SIGNATURE = "bad_signature"    # forged, tampered with, signed or MAC'd with another key
    STALE = "stale"                    # ts further than the window from now (past or future)
    REPLAYED = "replayed"              # (from, id) already accepted within the window
    MISROUTED = "misrouted"            # valid, but addressed ('to') to another node: replayed across inboxes


class _SeenCache:
    """(sender, id) keys with an expiry time, pruned from the front.

    An ``OrderedDict`` rather than a plain dict: popping the oldest entry of a
    plain dict over and over leaves a growing run of deleted slots that every
    ``next(iter(d))`` has to skip, which made pruning ~100x slower at 30k
    entries.  Entries are appended in arrival order with ``expiry = ts +
    window``; pruning stops at the first unexpired entry, so an entry may
    outlive its expiry by at most one window (it is then rejected as stale
    before the cache is consulted), and everything in the cache arrived within
    the last 2 x window.
    """

    __slots__ = ("_d", "next_prune")

    def __init__(self) -> None:
        self._d: OrderedDict[tuple[str, str], float] = OrderedDict()
        self.next_prune = 0.0   # the one pass prunes no sooner than this (PRUNE_EVERY after the last)

    def prune(self, now: float) -> None:
        self.next_prune = now + PRUNE_EVERY
        d = self._d
        while d:
            key, expiry = next(iter(d.items()))
            if expiry >= now:
                return
            del d[key]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._d

    def admit(self, key: tuple[str, str], expiry: float, now: float) -> bool:
        """Remember ``key`` unless it is here already (a replay: False); prunes at most every PRUNE_EVERY."""
        if now >= self.next_prune:
            self.prune(now)
        d = self._d
        if key in d:
            return False
        d[key] = expiry
        return True

    def add(self, key: tuple[str, str], expiry: float) -> None:
        self._d[key] = expiry

    def __len__(self) -> int:
        return len(self._d)


def _authenticator(obj: Any) -> tuple[str | None, str | None] | Reason:
    """``(sig, mac)`` of an envelope or batch (exactly one a string), or why there is none usable."""
    if not isinstance(obj, dict):
        return Reason.MALFORMED
    sig, mac = _present(obj.get("sig")), _present(obj.get("mac"))
    if sig is None and mac is None:
        return Reason.UNSIGNED
    if (sig is not None and mac is not None) or not isinstance(sig if mac is None else mac, str):
        return Reason.MALFORMED
    return sig, mac


def _is_timestamp(ts: object) -> TypeGuard[float]:
    """A finite float or an int a float holds exactly (not a bool, not 10**400)."""
    t = type(ts)
    if t is float:
        return math.isfinite(ts)  # type: ignore[arg-type]
    return t is int and -(2**53) <= ts <= 2**53  # type: ignore[operator]


def _present(auth: Any) -> Any:
    """A ``sig``/``mac`` value, or None when it is missing, null or empty (unsigned)."""
    return None if auth is None or auth == "" else auth


def _label(sender: object) -> str:
    """A sender for logs and rate-limit keys: attacker-controlled, so bounded and escaped."""
    if isinstance(sender, str):
        if len(sender) <= 64 and sender.isascii() and sender.isprintable():
            return sender   # the usual case, without a regex
        return printable(sender, limit=64)
    return f"<{type(sender).__name__}>"


class Verifier:
    """Verifies envelopes against a :class:`TrustStore`; counts and logs what it drops.

    ``keys`` (this node's :class:`PairKeys`) lets it check MACs and names the
    node it verifies for (the ``to`` binding); without them a ``mac`` is a
    ``bad_signature`` and ``to`` is not checked.  ``clock`` is injectable
    (tests); it is read once per :meth:`verify`.
    """

    def __init__(self, trust: TrustStore, window: float = 30.0,
                 clock: Callable[[], float] = time.time, *, keys: PairKeys | None = None) -> None:
        if not window > 0:
            raise ValueError("window must be > 0 seconds")
        self.trust = trust
        self.window = float(window)
        self.clock = clock
        if keys is not None and keys.trust is not trust:
            raise ValueError("the verifier's pair keys must be derived from its own trust store")
        self.keys = keys
        self.node_id = keys.node_id if keys is not None else None
        self.counts: dict[str, int] = {str(r): 0 for r in Reason}
        self.accepted = 0
        #: MQTT messages that were batches: accepted and rejected (their envelopes are in the counts).
        self.batches = {"accepted": 0, "rejected": 0}
        self._seen = _SeenCache()
        self._log = RateLimitedLog(log, interval=LOG_INTERVAL, max_keys=LOG_MAX_KEYS, clock=clock)

    def accept(self, envs: Iterable[Any]) -> list[dict[str, Any]]:
        """The envelopes of one MQTT message that pass, batches opened (their envelopes all or none)."""
        out: list[dict[str, Any]] = []
        for env in envs:
            if isinstance(env, dict) and env.get("kind") == "batch":
                if self.verify_batch(env) is None:
                    out.extend(env["envs"])
            elif self.verify(env, fresh=not (isinstance(env, dict) and type(kind := env.get("kind")) is str
                                             and kind in RETAINED_KINDS)) is None:
                out.append(env)
        return out

    def replace_trust(self, store: TrustStore) -> None:
        """Verify against ``store`` from now on (a reload); pairwise keys are derived again from it."""
        self.trust = store
        if self.keys is not None:
            self.keys.replace_trust(store)

    def verify(self, env: Any, *, fresh: bool = True, raw: bytes | None = None) -> Reason | None:
        """``None`` if ``env`` is accepted, else the :class:`Reason` it was dropped for.

        ``fresh=False`` (retained presence/state, legitimately old) skips the
        stale and replay checks and is not remembered.  ``raw``: the bytes
        ``env`` was parsed from, if it was a whole MQTT message (see
        :func:`sealed_part`).  Every rejection is counted and logged
        (rate-limited) through :meth:`note_rejection`.

        The usual message is accepted in one pass, in this function: one
        unicast envelope for this node that a :class:`Sealer` MAC'd (``raw`` is
        its canonical bytes with ``,"mac":"…"}`` spliced in last), fresh and not
        seen.  Anything else, and anything the pass does not accept, goes
        through the checks in order (:meth:`_check`), which name the reason; the
        pass changes nothing when it does not accept, so it can only say yes
        where they say yes.  Why: a call and its reply pass here once per node,
        on caches the broker, the peer and the client evicted since the last
        message, where every bytecode and call counts (``bench/`` P5; the
        unit tests hold the pass to the ordered checks on edited bytes, other
        times and replays).
        """
        keys = self.keys
        if raw is not None and fresh and keys is not None and type(env) is dict:   # the one pass
            try:
                sender, env_id, ts, to = env["from"], env["id"], env["ts"], env["to"]
                # only a trusted peer's id (a str) has a hasher; an unhashable value raises TypeError
                hasher = keys.hasher(sender) if env["kind"] not in MULTICAST_KINDS else None
            except (KeyError, TypeError):
                hasher = None
            # raw ends as a Sealer ends a MAC'd message, and the MAC covers the bytes before that field
            # and "}": those are then bytes the sender MAC'd, and the envelope parsed from raw is them and
            # this one MAC as its last member (JSON keeps a key's last value), so its "mac" needs no check
            # of its own; a "sig" beside it is still malformed (the ordered checks say so)
            # (a node id is never "*" or null: to == node_id is unicast, for this node)
            if (hasher is not None and to == self.node_id and type(ts) is float and type(env_id) is str
                    and len(env_id) <= MAX_ID_LEN and "sig" not in env
                    and (cut := len(raw) - _MAC_TAIL_BYTES) > 0 and raw.startswith(_MAC_FIELD, cut)
                    and raw.endswith(b'"}')
                    and compare_digest(hashed_mac(hasher, raw[:cut] + b"}"), raw[cut + len(_MAC_FIELD):-2])):
                now = self.clock()
                # (not >: a NaN clock is not fresh either)
                if abs(now - ts) <= self.window and self._seen.admit((sender, env_id), ts + self.window, now):
                    self.accepted += 1
                    return None
        reason = self._check(env, fresh, raw)
        if reason is None:
            self.accepted += 1
        else:
            self.note_rejection(env.get("from") if isinstance(env, dict) else None, reason)
        return reason

    def verify_batch(self, batch: Any, *, raw: bytes | None = None) -> Reason | None:
        """``None`` if every envelope of ``batch`` is accepted, else the first :class:`Reason` found.

        One authenticator covers the batch; each envelope is still checked for
        its ``to``, freshness and replay.  A rejected batch counts each of its
        envelopes under the reason (and logs once); nothing of it is remembered.
        """
        reason = self._check_batch(batch, raw)
        envs = batch.get("envs") if isinstance(batch, dict) else None
        n = len(envs) if isinstance(envs, list) and envs else 1
        if reason is None:
            self.accepted += n
            self.batches["accepted"] += 1
        else:
            self.batches["rejected"] += 1
            self.note_rejection(batch.get("from") if isinstance(batch, dict) else None, reason)
            self.counts[reason] += n - 1
        return reason

    # --- the checks ------------------------------------------------------------------

    def _check(self, env: Any, fresh: bool, raw: bytes | None = None) -> Reason | None:
        auth = _authenticator(env)
        if isinstance(auth, Reason):
            return auth
        sig, mac = auth
        sender, env_id, ts = env.get("from"), env.get("id"), env.get("ts")
        if type(sender) is not str or type(env_id) is not str or len(env_id) > MAX_ID_LEN or not _is_timestamp(ts):
            return Reason.MALFORMED
        if mac is not None and is_multicast(env):
            return Reason.MULTICAST_MAC
        if sender not in self.trust:
            return Reason.UNKNOWN_SENDER
        if reason := self._authentic_message(sender, raw, sig, mac, lambda: canonical(env)):
            return reason
        if self.node_id is not None:
            to = env.get("to")
            if to is not None and to != "*" and to != self.node_id:
                return Reason.MISROUTED   # authentic, but for another node: replayed across inboxes
        if not fresh:
            return None
        now = self.clock()
        if abs(now - ts) > self.window:
            return Reason.STALE
        if not self._seen.admit((sender, env_id), ts + self.window, now):
            return Reason.REPLAYED
        return None

    def _check_batch(self, batch: Any, raw: bytes | None = None) -> Reason | None:
        auth = _authenticator(batch)
        if isinstance(auth, Reason):
            return auth
        sig, mac = auth
        sender, to, envs = batch.get("from"), batch.get("to"), batch.get("envs")
        if (type(sender) is not str or not (to is None or type(to) is str)
                or batch.keys() - _AUTH != _BATCH_KEYS or batch.get("v") != 1
                or type(envs) is not list or not 0 < len(envs) <= MAX_BATCH_ENVELOPES):
            return Reason.MALFORMED
        for env in envs:
            if (type(env) is not dict or "sig" in env or "mac" in env or type(env.get("id")) is not str
                    or len(env["id"]) > MAX_ID_LEN or not _is_timestamp(env.get("ts"))):
                return Reason.MALFORMED
            if env.get("from") != sender:
                return Reason.BAD_SIGNATURE   # vouched for by another node's key
        if mac is not None and (type(to) is not str or to == "*" or any(is_multicast(e) for e in envs)):
            return Reason.MULTICAST_MAC
        if sender not in self.trust:
            return Reason.UNKNOWN_SENDER
        if reason := self._authentic_message(sender, raw, sig, mac,
                                             lambda: batch_canonical(sender, to, [canonical(e) for e in envs])):
            return reason
        me = self.node_id
        now = self.clock()
        window = self.window
        seen = self._seen
        seen.prune(now)
        ids: set[str] = set()
        for env in envs:
            t = env.get("to")
            if me is not None and t is not None and t != "*" and t != me:
                return Reason.MISROUTED
            if abs(now - env["ts"]) > window:
                return Reason.STALE
            if (sender, env["id"]) in seen or env["id"] in ids:
                return Reason.REPLAYED
            ids.add(env["id"])
        for env in envs:   # all passed: remember them all
            seen.add((sender, env["id"]), env["ts"] + window)
        return None

    def _authentic_message(self, sender: str, raw: bytes | None, sig: str | None, mac: str | None,
                           canonical_form: Callable[[], bytes]) -> Reason | None:
        """Whether the message (its bytes ``raw`` if known) is authentic: over the bytes a Sealer wrote
        when ``raw`` is them, else (another encoding, an older node) over ``canonical_form()``."""
        sealed = sealed_part(raw, sig, mac) if raw is not None else None
        if sealed is not None and self._authentic(sender, sealed, sig, mac):
            return None
        try:
            data = canonical_form()
        except (TypeError, ValueError, RecursionError):  # unencodable, lone surrogate, too deep
            return Reason.MALFORMED
        if data == sealed or not self._authentic(sender, data, sig, mac):
            return Reason.BAD_SIGNATURE
        return None

    def _authentic(self, sender: str, data: bytes, sig: str | None, mac: str | None) -> bool:
        """Whether ``sig`` (Ed25519 by ``sender``) or ``mac`` (keyed with K(this node, sender)) covers ``data``."""
        auth = mac if mac is not None else sig
        try:
            raw = base64.b64decode(auth, validate=True)  # type: ignore[arg-type]
        except ValueError:  # binascii.Error is a ValueError
            return False
        # Only the one canonical encoding of the bytes: unused low bits of the last
        # character would otherwise give each signature and MAC several spellings.
        if base64.b64encode(raw).decode("ascii") != auth:
            return False
        if mac is not None:
            hasher = self.keys.hasher(sender) if self.keys is not None else None
            return (hasher is not None and len(raw) == MAC_BYTES
                    and compare_digest(auth.encode(), hashed_mac(hasher, data)))
        if len(raw) != 64:
            return False
        try:
            # libsodium's verify (PyNaCl): 91 µs here against OpenSSL's 189 µs, and strict
            # (it refuses non-canonical S values and small-order keys).
            pk = self.trust.raw(sender)
            if pk is None:
                return False
            crypto_sign_open(raw + data, pk)
        except (BadSignatureError, ValueError):
            return False
        return True

    def note_rejection(self, env_from: object, reason: Reason | str) -> None:
        """Count a rejection and log a WARNING, at most once per (sender, reason) per minute.

        :meth:`verify` calls this itself; the federation layer calls it for
        envelopes it drops before verifying (e.g. JSON that doesn't parse:
        ``note_rejection(None, Reason.MALFORMED)``).
        """
        if type(reason) is not Reason:
            reason = Reason(reason)   # (an enum lookup costs as much as the rest of this method)
        self.counts[reason] = self.counts.get(reason, 0) + 1
        label = _label(env_from)
        self._log.log(logging.WARNING, (label, reason._value_),
                      "dropped envelope from %r: %s (counted; the same from this sender is logged again in "
                      "%.0f s at the earliest)", label, reason, LOG_INTERVAL,
                      extra={"peer": label, "reason": reason._value_})

    @property
    def seen_size(self) -> int:
        """Entries in the replay cache (bounded by accepted rate x 2 x window)."""
        return len(self._seen)

    def __repr__(self) -> str:
        return f"Verifier(trust={self.trust!r}, window={self.window})"


def open_batches(envs: Iterable[Any]) -> list[Any]:
    """The envelopes of one MQTT message, batches opened, nothing verified (a node without a trust store)."""
    out: list[Any] = []
    for env in envs:
        if isinstance(env, dict) and env.get("kind") == "batch":
            inner = env.get("envs")
            if type(inner) is list:
                out.extend(e for e in inner[:MAX_BATCH_ENVELOPES] if isinstance(e, dict))
        else:
            out.append(env)
    return out


def trust_from_signers(signers: Iterable[Signer]) -> TrustStore:
    """A trust store of the given signers' public keys (tests, single-process demos)."""
    return TrustStore({s.node_id: s.public_key for s in signers}, source="signers")
