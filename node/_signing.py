"""Ed25519 envelope signing: keys, trust store, and the verifier (pure logic, no I/O but key files).

Every envelope a node sends over the federation is a dict such as::

    {"v": 1, "kind": "call", "from": "node-a", "to": "node-b", "id": "a1b2…",
     "ts": 1764240000.123, "body": {...}, "sig": "base64…"}

``sig`` is the base64 (standard alphabet, padded) Ed25519 signature by the
``from`` node's key over :func:`canonical` of the envelope, i.e. the compact,
key-sorted UTF-8 JSON of every field but ``sig``.  The signature therefore
covers ``v``, ``kind``, ``from``, ``to``, ``id``, ``ts``, the whole ``body``
and any field added later.

Receivers run :meth:`Verifier.verify`, which answers ``None`` (accepted) or
the :class:`Reason` the envelope was dropped for.  Checks, in order:

1. ``sig`` present                                   else ``unsigned``
2. ``from``/``id`` strings, ``ts`` a finite number,
   ``sig`` a string, canonical JSON encodable          else ``malformed``
3. ``from`` is in the trust store                     else ``unknown_sender``
4. the signature verifies with ``from``'s key         else ``bad_signature``
5. (``fresh=True`` only) ``|now - ts| <= window``      else ``stale``
6. (``fresh=True`` only) (``from``, ``id``) not seen   else ``replayed``

Only envelopes that pass every check are remembered for replay detection,
and only until they would be rejected as stale anyway, so the seen cache
holds at most (accepted rate) x (2 x window) entries.
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair
from nacl.exceptions import BadSignatureError

from ._config import node_id_error
from ._errors import ConfigError
from ._json import canonical_bytes
from ._ratelog import RateLimitedLog
from ._text import printable

__all__ = [
    "Reason",
    "Signer",
    "TrustStore",
    "Verifier",
    "canonical",
    "generate_keypair",
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


def canonical(env: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: compact, key-sorted UTF-8 JSON of every field but ``sig``.

    Raises ``TypeError`` for values JSON can't encode and ``UnicodeEncodeError``
    for strings with lone surrogates (the verifier calls those ``malformed``).
    """
    return canonical_bytes({k: v for k, v in env.items() if k != "sig"})


# --------------------------------------------------------------------------- keys

def generate_keypair(node_id: str, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``DIR/ID.key`` (PKCS8 PEM, mode 0600) and ``DIR/ID.pub`` (SubjectPublicKeyInfo PEM).

    Creates ``out_dir`` if needed.  Never overwrites: if either file exists,
    raises ``FileExistsError`` and writes nothing.  A bad node id is a
    :class:`ConfigError`.
    """
    if err := node_id_error(node_id):
        raise ConfigError(err)
    out = Path(out_dir)
    key_path, pub_path = out / f"{node_id}.key", out / f"{node_id}.pub"
    for p in (key_path, pub_path):
        if p.exists():
            raise FileExistsError(f"{p} already exists; refusing to overwrite a node key "
                                  "(move it away first if you really mean to replace it)")
    out.mkdir(parents=True, exist_ok=True)
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
    """Create ``path`` exclusively (no race with an existing file) with ``mode``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)  # the umask may have narrowed it; set exactly what we mean
        f.write(data)


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


# --------------------------------------------------------------------------- verify

class Reason(StrEnum):
    """Why an envelope was dropped (also the keys of :attr:`Verifier.counts`)."""

    UNSIGNED = "unsigned"              # no sig
    MALFORMED = "malformed"            # from/id/ts/sig of the wrong type, or not JSON-encodable
    UNKNOWN_SENDER = "unknown_sender"  # from is not in the trust store
    BAD_SIGNATURE = "bad_signature"    # forged, tampered with, or signed by another key
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

    __slots__ = ("_d",)

    def __init__(self) -> None:
        self._d: OrderedDict[tuple[str, str], float] = OrderedDict()

    def prune(self, now: float) -> None:
        d = self._d
        while d:
            key, expiry = next(iter(d.items()))
            if expiry >= now:
                return
            del d[key]

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._d

    def add(self, key: tuple[str, str], expiry: float) -> None:
        self._d[key] = expiry

    def __len__(self) -> int:
        return len(self._d)


def _is_timestamp(ts: object) -> bool:
    """A finite float or an int a float holds exactly (not a bool, not 10**400)."""
    t = type(ts)
    if t is float:
        return math.isfinite(ts)  # type: ignore[arg-type]
    return t is int and -(2**53) <= ts <= 2**53  # type: ignore[operator]


def _label(sender: object) -> str:
    """A sender for logs and rate-limit keys: attacker-controlled, so bounded and escaped."""
    if isinstance(sender, str):
        if len(sender) <= 64 and sender.isascii() and sender.isprintable():
            return sender   # the usual case, without a regex
        return printable(sender, limit=64)
    return f"<{type(sender).__name__}>"


class Verifier:
    """Verifies envelopes against a :class:`TrustStore`; counts and logs what it drops.

    ``clock`` is injectable (tests); it is read once per :meth:`verify`.
    """

    def __init__(self, trust: TrustStore, window: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        if not window > 0:
            raise ValueError("window must be > 0 seconds")
        self.trust = trust
        self.window = float(window)
        self.clock = clock
        self.counts: dict[str, int] = {str(r): 0 for r in Reason}
        self.accepted = 0
        self._seen = _SeenCache()
        self._log = RateLimitedLog(log, interval=LOG_INTERVAL, max_keys=LOG_MAX_KEYS, clock=clock)

    def verify(self, env: Any, *, fresh: bool = True) -> Reason | None:
        """``None`` if ``env`` is accepted, else the :class:`Reason` it was dropped for.

        ``fresh=False`` (retained presence/state, legitimately old) skips the
        stale and replay checks and is not remembered.  Every rejection is
        counted and logged (rate-limited) through :meth:`note_rejection`.
        """
        reason = self._check(env, fresh)
        if reason is None:
            self.accepted += 1
        else:
            self.note_rejection(env.get("from") if isinstance(env, dict) else None, reason)
        return reason

    def _check(self, env: Any, fresh: bool) -> Reason | None:
        if not isinstance(env, dict):
            return Reason.MALFORMED
        sig = env.get("sig")
        if sig is None or sig == "":
            return Reason.UNSIGNED
        sender, env_id, ts = env.get("from"), env.get("id"), env.get("ts")
        if (type(sender) is not str or type(env_id) is not str or not isinstance(sig, str)
                or len(env_id) > MAX_ID_LEN
                or not _is_timestamp(ts)):
            return Reason.MALFORMED
        key = self.trust.raw(sender)
        if key is None:
            return Reason.UNKNOWN_SENDER
        try:
            data = canonical(env)
        except (TypeError, ValueError, RecursionError):  # unencodable, lone surrogate, too deep
            return Reason.MALFORMED
        try:
            raw = base64.b64decode(sig, validate=True)
            # Only the one canonical encoding of the 64 bytes: unused low bits of the last
            # character would otherwise give each signature 16 spellings.
            if len(raw) != 64 or base64.b64encode(raw).decode("ascii") != sig:
                return Reason.BAD_SIGNATURE
            # libsodium's verify (PyNaCl): 91 µs here against OpenSSL's 189 µs, and strict
            # (it refuses non-canonical S values and small-order keys).
            crypto_sign_open(raw + data, key)
        except (BadSignatureError, ValueError):  # binascii.Error is a ValueError
            return Reason.BAD_SIGNATURE
        if not fresh:
            return None
        now = self.clock()
        if abs(now - ts) > self.window:
            return Reason.STALE
        seen = self._seen
        seen.prune(now)
        k = (sender, env_id)
        if k in seen:
            return Reason.REPLAYED
        seen.add(k, ts + self.window)
        return None

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
                      "%.0f s at the earliest)", label, reason, LOG_INTERVAL)

    @property
    def seen_size(self) -> int:
        """Entries in the replay cache (bounded by accepted rate x 2 x window)."""
        return len(self._seen)

    def __repr__(self) -> str:
        return f"Verifier(trust={self.trust!r}, window={self.window})"


def trust_from_signers(signers: Iterable[Signer]) -> TrustStore:
    """A trust store of the given signers' public keys (tests, single-process demos)."""
    return TrustStore({s.node_id: s.public_key for s in signers}, source="signers")
