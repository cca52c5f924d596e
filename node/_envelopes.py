"""Federation envelopes (node ↔ node): one TypedDict per body, the shape ``_peers`` builds and reads.

The wire contract is ``docs/protocol.md`` §2 (its JSON Schema comes from
``_frames.Envelope``); these types are what the code checks against it at no
cost at run time (a TypedDict is a plain dict).  Inbound bodies are outside
input: ``_inbound`` has checked that ``body`` is an object, and each handler of
``_peers`` checks the fields it reads (a wrong type is counted ``malformed``).
"""

from __future__ import annotations

from typing import Any, Literal, NotRequired, TypedDict

__all__ = ["Kind", "Envelope", "CallBody", "ResultBody", "ErrorBody", "SubBody", "UnsubBody", "LeaseBody",
           "PresenceBody", "StateBody", "EventBody", "WireError", "CatalogEnvBody", "ProbeBody", "AckBody",
           "NackBody", "MemberBody"]

Kind = Literal["call", "result", "error", "sub", "unsub", "lease", "event", "presence", "state", "catalog",
               "probe", "ack", "nack", "member"]


class WireError(TypedDict):
    """An error as it travels: a code of the closed set (``_errors.ErrorCode``) and a message."""
    code: str
    message: str


class CallBody(TypedDict):
    """``call``: run ``service.method`` on the receiver (``to`` a node id, or ``"*"``)."""
    service: str
    method: str
    params: dict[str, Any]
    reply_by: float            # sender's clock: answering later is pointless
    role: str                  # the caller's role on the sender ("operator", "viewer")
    reply: NotRequired[bool]   # False: fire and forget


class ResultBody(TypedDict):
    """``result``: the answer to a call, or the acknowledgement of a ``sub``."""
    re: str                    # the id of the envelope answered
    result: Any


class ErrorBody(TypedDict):
    """``error``: a call (or a ``sub``) failed."""
    re: str
    error: WireError | dict[str, Any]


class SubBody(TypedDict):
    """``sub``: relay events of ours matching ``topic`` to the sender (acknowledged, leased)."""
    topic: str


class UnsubBody(TypedDict):
    """``unsub``: the sender no longer wants ``topic``."""
    topic: str


class LeaseBody(TypedDict):
    """``lease``: the sender still wants every filter in ``topics`` (renews their leases)."""
    topics: list[str]


class PresenceBody(TypedDict):
    """``presence`` (retained): a node's broker connection came up or went away (the will)."""
    state: Literal["online", "offline"]
    session: str
    catalog_hash: NotRequired[str]   # online: the hash of its service catalog (re-announced when it changes)
    reason: NotRequired[Literal["will", "left"]]   # offline: the last will, or a clean stop


class CatalogEnvBody(TypedDict):
    """``catalog`` (retained, on ``{p}/node/{id}/catalog``): the node's services (``_heartbeat.CatalogBody``)."""
    hash: str
    catalog: dict[str, Any]


class ProbeBody(TypedDict):
    """``probe``: are you alive?  With ``target`` (another node): probe it for me (indirect)."""
    target: NotRequired[str]


class AckBody(TypedDict):
    """``ack``: the answer to a ``probe``: ``target`` is alive (the sender itself, or the node it probed)."""
    re: str
    target: str
    session: NotRequired[str]


class NackBody(TypedDict):
    """``nack``: a helper asked to probe ``target`` (``re``: the asker's probe id) got no ack in time."""
    re: str
    target: str


class MemberBody(TypedDict):
    """``member`` (on ``{p}/members``): ``node`` of ``session`` is ``suspect`` or ``offline`` as the sender
    sees it, or (from ``node`` itself) ``alive``: a refutation."""
    node: str
    state: Literal["suspect", "offline", "alive"]
    session: str
    age: NotRequired[float]   # an offline verdict told again: seconds since it was made (by the sender's clock)


class EventBody(TypedDict):
    """``event``: something a node published on ``topic``."""
    topic: str
    data: Any


#: ``state`` (retained heartbeat): the model is ``_heartbeat`` (shared with the tools).
StateBody = dict[str, Any]

Body = (CallBody | ResultBody | ErrorBody | SubBody | UnsubBody | LeaseBody | PresenceBody | EventBody | StateBody
        | CatalogEnvBody | ProbeBody | AckBody | NackBody | MemberBody)


#: One envelope as built by ``Peers.envelope`` (``sig``/``mac`` are added by the sealer on the way out).
#: (``from`` is a keyword: the functional form is the only spelling.)
Envelope = TypedDict("Envelope", {"v": int, "kind": Kind, "from": str, "to": "str | None", "id": str, "ts": float,
                                  "body": Any})
