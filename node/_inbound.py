"""The federation's edge: what of an MQTT message may come in (pure: no I/O, no awaits).

Whatever arrives from the broker is outside input, signed or not: a peer
with a bug, or anyone who can publish.  :meth:`Inbound.admit` takes what one
MQTT message's JSON parsed to and returns the envelopes the node may route,
after these checks, in order:

1. the message is one envelope (an object), a sealed batch (an object of kind
   ``batch`` holding ``envs``, with one ``mac`` or ``sig`` for all of them) or
   an unsealed batch (an array), of at most :data:`MAX_ENVELOPES` envelopes
                                                     else ``malformed`` / ``batch_too_large``
2. each envelope is an object                         else ``malformed``
3. it passes the :class:`~._signing.Verifier`, when the node verifies: a
   sealed batch as a whole (``Verifier.verify_batch``: one MAC or signature,
   then ``to``, freshness and replay per envelope), anything else envelope by
   envelope (``unsigned``, ``bad_signature``, ``stale``, … are counted by the
   verifier). A node without a trust store opens sealed batches unverified.
4. ``from`` is a node id by the id syntax: it goes into the MQTT topic of the
   reply, so ``"evil/#"`` would make it a wildcard      else ``bad_from``
5. ``to`` is absent, ``"*"`` or this node              else ``misrouted`` (another
   node's id) / ``bad_to`` (anything else)
6. ``kind`` is one the node handles                    else ``unknown_kind``
7. ``id`` is a string of at most 256 characters and ``body`` an object
                                                     else ``malformed``

One bad envelope rejects its whole batch, and checking stops there
(ARCHITECTURE §6): a legitimate batch comes from one node and is all good,
and a message of 50,000 forged envelopes costs one check, not 50,000.

Our own envelopes come back to us (broadcasts, our own events): they are
skipped, not counted, except presence (the node looks for another process
with its id).

Every rejection is counted by reason (:attr:`Inbound.counts`, shown in
``pubsub.stats`` → ``federation.rejected``) and logged through a
:class:`RateLimitedLog` keyed by reason alone: a flood with a fresh sender
per message still logs one line per reason per minute.  The node reports the
rejections its handlers find (a heartbeat that fails its model, a full
membership table) through :meth:`Inbound.reject`, so every count and line
about the edge comes from one place.
"""

from __future__ import annotations

import logging
from typing import Any, Collection, cast

from ._config import node_id_error
from ._ratelog import RateLimitedLog
from ._text import printable

__all__ = ["Inbound", "MAX_ENVELOPES", "RETAINED"]

log = logging.getLogger(__name__)

#: Envelopes one MQTT message may carry.  Senders batch at most 64 (``_federation.MAX_BATCH``);
#: a bigger batch is refused whole, before any envelope of it is looked at.
MAX_ENVELOPES = 256
MAX_ID_LEN = 256
#: Kinds the broker keeps (retained): legitimately old, so they skip the replay window.
RETAINED = frozenset({"presence", "state", "catalog"})
_KNOWN_IDS_MAX = 20_000


_NOBODY = object()   # a rejection of a whole message, before any sender is known


class _Sender:
    """Who sent a rejected envelope, for a log line; made into text only if the line is logged.

    Outside text, so escaped and cut; a sender that is not a string shows as its type only.
    """

    __slots__ = ("frm",)

    def __init__(self, frm: object) -> None:
        self.frm = frm

    def __str__(self) -> str:
        frm = self.frm
        if frm is _NOBODY:
            return "a message"
        if isinstance(frm, str):
            return "an envelope from " + printable(repr(frm[:64]) + ("…" if len(frm) > 64 else ""))
        return f"an envelope whose 'from' is a JSON {type(frm).__name__}"


class Inbound:
    """Admission of inbound federation messages for the node ``self_id``."""

    def __init__(self, self_id: str, kinds: Collection[str], verifier: Any = None, *,
                 max_envelopes: int = MAX_ENVELOPES) -> None:
        self.self_id = self_id
        self.kinds = frozenset(kinds)
        self.verifier = verifier
        self.max_envelopes = max_envelopes
        self.counts: dict[str, int] = {}
        self._ids: set[str] = set()     # ids that passed node_id_error (a regex per envelope is ~0.3 µs)
        self._log = RateLimitedLog(log)

    def admit(self, obj: Any, raw: bytes | None = None) -> list[dict[str, Any]]:
        """The envelopes of one MQTT message the node may route; [] when the message is refused.
        ``raw``: the bytes ``obj`` was parsed from (the verifier checks authenticators over them)."""
        verifier = self.verifier
        sealed = False
        if type(obj) is dict:
            if obj.get("kind") == "batch":
                envs = obj.get("envs")
                if type(envs) is not list:
                    self.reject("malformed", _NOBODY, "a batch without a list of envelopes")
                    return []
                if self._too_large(envs):
                    return []
                if verifier is not None and verifier.verify_batch(obj, raw=raw) is not None:
                    return []   # counted (each envelope) and logged by the verifier
                sealed = True
            else:
                envs = [obj]
        elif type(obj) is list:
            raw = None   # each envelope of an array has its own authenticator: checked in canonical form
            if self._too_large(obj):
                return []
            envs = obj
        else:
            self.reject("malformed", _NOBODY, f"a message that is a JSON {type(obj).__name__}, not an envelope")
            return []
        out = []
        for env in envs:
            if type(env) is not dict:
                self.reject("malformed", _NOBODY, f"a batch holding a JSON {type(env).__name__}")
                return []
            kind = env.get("kind")
            known = type(kind) is str and kind in self.kinds
            if (verifier is not None and not sealed
                    and verifier.verify(env, fresh=not (known and kind in RETAINED), raw=raw) is not None):
                return []   # counted and logged by the verifier
            frm = env.get("from")
            if type(frm) is not str or frm not in self._ids:
                if node_id_error(frm):
                    self.reject("bad_from", frm, "'from' is not a node id")
                    return []
                if len(self._ids) < _KNOWN_IDS_MAX:
                    self._ids.add(cast(str, frm))   # node_id_error passed: a str
            if frm == self.self_id and kind != "presence":
                continue   # our own broadcast or event, back from the broker
            to = env.get("to")
            if to is not None and to != self.self_id and to != "*":
                if isinstance(to, str):
                    self.reject("misrouted", frm, "addressed to another node")
                else:
                    self.reject("bad_to", frm, f"'to' is a JSON {type(to).__name__}")
                return []
            if not known:
                self.reject("unknown_kind", frm, f"unknown kind {printable(repr(kind), limit=40)}")
                return []
            env_id = env.get("id")
            if type(env_id) is not str or len(env_id) > MAX_ID_LEN or type(env.get("body")) is not dict:
                self.reject("malformed", frm, "'id' must be a short string and 'body' an object")
                return []
            out.append(env)
        return out

    def _too_large(self, envs: list[Any]) -> bool:
        if len(envs) <= self.max_envelopes:
            return False
        self.reject("batch_too_large", _NOBODY, f"a batch of {len(envs)} envelopes "
                    f"(the limit is {self.max_envelopes})", n=len(envs))
        return True

    def reject(self, reason: str, sender: object = _NOBODY, detail: str = "", *, n: int = 1) -> None:
        """Count ``n`` rejections for ``reason`` and log (rate-limited per reason) why."""
        self.counts[reason] = self.counts.get(reason, 0) + n
        self._log.warning(reason, "dropped %s: %s (%s; counted in federation.rejected, "
                          "the same reason is logged again in a minute at the earliest)",
                          _Sender(sender), printable(detail, limit=300), reason,
                          extra=None if sender is _NOBODY else {"peer": printable(str(sender), limit=100)})
