"""WebSocket protocol v1 frames (client ↔ node) as pydantic models, and the cheap checks at the edge.

These models are the single source of the frame schemas: ``docs/protocol.md``
embeds the JSON Schemas generated from them (see ``frame_schemas()``), and a
test fails when the two drift.  Inbound frames are validated at the edge by
:func:`parse_frame`; unknown fields are ignored.  Before that, the gateway runs the
checks below on the raw text (:func:`lone_surrogate`, :func:`too_deep`), and finds the
id of a frame it refuses with :func:`peek_id` (microseconds, whatever the frame's size).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError, field_validator

from ._envelopes import Kind
from ._errors import BadRequest
from ._json import loads
from ._text import UNSAFE

PROTOCOL_VERSION = 1

RequestId = Union[StrictStr, StrictInt]


class _In(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Hello(_In):
    """First frame of a session; required first when auth is on."""
    type: Literal["hello"]
    id: RequestId
    token: str | None = None
    client: str | None = Field(None, max_length=128)
    protocol: int = PROTOCOL_VERSION


class Call(_In):
    """Call a method on this node (`node` absent or this node's id), another node, or every node (`"*"`)."""
    type: Literal["call"]
    id: RequestId
    node: str | None = None
    service: str = Field(min_length=1, max_length=128)
    method: str = Field(min_length=1, max_length=128)
    params: dict[str, Any] | None = None
    timeout: float | None = Field(None, gt=0)
    reply: bool = True


class Subscribe(_In):
    """Subscribe to events matching an MQTT topic filter on this node or another one."""
    type: Literal["subscribe"]
    id: RequestId
    node: str | None = None
    topic: str


class Unsubscribe(_In):
    type: Literal["unsubscribe"]
    id: RequestId
    node: str | None = None
    topic: str


class Publish(_In):
    """Publish an event as the node the client is connected to."""
    type: Literal["publish"]
    id: RequestId
    topic: str
    data: Any = None


#: Names a client may register (``register``): a letter, then letters, digits, ``_`` or ``-``.
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_-]{0,63}$"
#: The largest params schema a client may register, in characters of JSON (it rides in every heartbeat).
MAX_SCHEMA_CHARS = 8192


class Register(_In):
    """Offer ``service.method`` from this client (operators only); the node sends it ``invoke`` frames."""
    type: Literal["register"]
    id: RequestId
    service: str = Field(pattern=NAME_PATTERN)
    method: str = Field(pattern=NAME_PATTERN)
    params: dict[str, Any] = Field(default_factory=lambda: {"type": "object"},
                                   description="JSON Schema of the params (shown to callers and the agent)")
    mutates: bool = Field(True, description="whether a call may change state (viewers may not call it; the agent "
                                            "asks approval)")
    description: str = Field("", max_length=500, description="plain text: no control or invisible characters")

    @field_validator("description")
    @classmethod
    def _printable(cls, v: str) -> str:
        # it reaches terminals, the dashboard and the agent's prompt on every node
        if m := UNSAFE.search(v):
            raise ValueError(f"control or invisible character U+{ord(m.group()):04X} in the description")
        return v


class Unregister(_In):
    """Withdraw a method this client registered."""
    type: Literal["unregister"]
    id: RequestId
    service: str = Field(min_length=1, max_length=128)
    method: str = Field(min_length=1, max_length=128)


class YieldError(_In):
    code: str = Field(max_length=64, description="one of the error codes; any other becomes 'internal'")
    message: str = ""


class Yield(_In):
    """The client's answer to an ``invoke``: ``result``, or ``error``.  No reply frame."""
    type: Literal["yield"]
    invocation: str = Field(max_length=128)
    result: Any = None
    error: YieldError | None = None


InFrame = Hello | Call | Subscribe | Unsubscribe | Publish | Register | Unregister | Yield

INBOUND: dict[str, type[InFrame]] = {m.model_fields["type"].annotation.__args__[0]: m  # type: ignore[union-attr]
                                     for m in (Hello, Call, Subscribe, Unsubscribe, Publish, Register, Unregister,
                                               Yield)}


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class WireError(_Out):
    code: str
    message: str


class Welcome(_Out):
    type: Literal["welcome"] = "welcome"
    id: RequestId
    node: str
    role: Literal["operator", "viewer"]
    protocol: int = PROTOCOL_VERSION
    auth: Literal["token", "none"] = Field("token", description="'none': the node has no [[auth.tokens]], "
                                           "every client is an operator")
    exposed: bool = Field(False, description="the node listens on a non-loopback address")


class Result(_Out):
    type: Literal["result"] = "result"
    id: RequestId
    node: str
    result: Any


class Error(_Out):
    type: Literal["error"] = "error"
    id: RequestId | None
    node: str | None = None
    error: WireError


class Subscribed(_Out):
    type: Literal["subscribed"] = "subscribed"
    id: RequestId


class Unsubscribed(_Out):
    type: Literal["unsubscribed"] = "unsubscribed"
    id: RequestId


class Published(_Out):
    type: Literal["published"] = "published"
    id: RequestId


class Event(_Out):
    type: Literal["event"] = "event"
    node: str
    topic: str
    data: Any
    ts: float


class Dropped(_Out):
    """Sent to a slow client after events were dropped from its queue."""
    type: Literal["dropped"] = "dropped"
    count: int
    total: int


class Registered(_Out):
    type: Literal["registered"] = "registered"
    id: RequestId
    service: str
    method: str


class Unregistered(_Out):
    type: Literal["unregistered"] = "unregistered"
    id: RequestId


class Caller(_Out):
    node: str = Field(description="the node the call came from")
    client: str | None = Field(None, description="the calling client's name, when it is connected to this node")


class Invoke(_Out):
    """A call of a method this client registered; answer it with ``yield``."""
    type: Literal["invoke"] = "invoke"
    invocation: str = Field(description="node-chosen id; the yield's key")
    service: str
    method: str
    params: dict[str, Any]
    caller: Caller
    timeout: float = Field(description="seconds left of the caller's deadline")


OUTBOUND = (Welcome, Result, Error, Subscribed, Unsubscribed, Published, Event, Dropped, Registered, Unregistered,
            Invoke)


def _first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    if err["type"] == "missing":
        return f"missing field {loc!r}"
    return f"field {loc!r}: {err['msg']}"


def parse_frame(raw: str | bytes, *, max_params_keys: int | None = None) -> InFrame:
    """Parse and validate one inbound frame; raise BadRequest naming the problem.

    The raised error's ``request_id`` is the frame's ``id`` when one could be read.
    ``max_params_keys`` bounds a call's ``params`` before validation, whose cost (and that
    of the method's own validation: an error per unknown key) grows with every key.
    """
    try:
        obj = loads(raw)
    except (ValueError, RecursionError) as e:
        raise BadRequest(f"frame is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise BadRequest("frame must be a JSON object")
    rid = obj.get("id")
    if not isinstance(rid, (str, int)) or isinstance(rid, bool):
        rid = None
    kind = obj.get("type")
    if max_params_keys is not None:
        params = obj.get("params")
        if type(params) is dict and len(params) > max_params_keys:
            raise BadRequest(f"params has {len(params)} keys; the limit is {max_params_keys} (ws.max_params_keys)",
                             request_id=rid)
    model = INBOUND.get(kind) if isinstance(kind, str) else None
    if model is None:
        raise BadRequest(f"unknown frame type {kind!r} (expected one of {', '.join(INBOUND)})"
                         if kind is not None else "missing field 'type'", request_id=rid)
    try:
        return model.model_validate(obj)
    except ValidationError as e:
        raise BadRequest(_first_error(e), request_id=rid) from None


def frame_schemas() -> dict[str, Any]:
    """JSON Schemas of every frame, for docs/protocol.md."""
    return {
        "client_to_node": {name: m.model_json_schema() for name, m in INBOUND.items()},
        "node_to_client": {m.model_fields["type"].default: m.model_json_schema() for m in OUTBOUND},
    }


class Envelope(BaseModel):
    """Federation envelope (MQTT payload; several coalesced: a JSON array of them, or a batch when signed)."""
    model_config = ConfigDict(extra="forbid")
    v: Literal[1] = 1
    kind: Kind   # one list of kinds: the wire model and the typed bodies read the same
    from_: str = Field(alias="from", description="sender node id; must match the signing key")
    to: str | None = Field(description="receiver node id, '*' for broadcasts, null for events/presence/state/catalog/member")
    id: str = Field(description="unique id; the de-duplication key of calls and the correlation key of replies")
    ts: float = Field(description="sender clock, seconds since the epoch; signed envelopes outside the "
                                  "replay window are dropped")
    body: dict[str, Any]
    sig: str | None = Field(None, description="base64 Ed25519 signature over the canonical JSON of every field but "
                                              "sig and mac (multicast envelopes; accepted on unicast too)")
    mac: str | None = Field(None, description="base64 BLAKE2b-128 keyed with the sender's and receiver's pairwise "
                                              "key, over the same bytes (unicast envelopes); never with sig")


def envelope_schema() -> dict[str, Any]:
    return Envelope.model_json_schema(by_alias=True)


# --- checks on raw frames (used by the gateway before and after parse_frame) ------------------

_ID_VALUE = re.compile(r'\s*("(?:[^"\\]|\\.)*"|-?\d{1,19})\s*[,}]')
#: Frames longer than this are not parsed to find the id of their error: only their start is scanned.
PEEK_FULL = 4096


def scan_id(raw: str | bytes, key: str = "id") -> Any:
    """The top-level ``"id"`` (or other ``key``) of a JSON object, if it shows in the frame's first 512
    characters (clients write it early); None otherwise.  Costs microseconds, whatever the frame's size."""
    text = raw[:512] if isinstance(raw, str) else raw[:512].decode("utf-8", "ignore")
    depth, i, n = 0, 0, len(text)
    expect_key = False
    while i < n:
        c = text[i]
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            if j >= n:
                return None
            token = text[i:j + 1]
            i = j + 1
            if depth == 1 and expect_key:
                k = i
                while k < n and text[k] in " \t\r\n":
                    k += 1
                if k < n and text[k] == ":":
                    if token == f'"{key}"':
                        m = _ID_VALUE.match(text, k + 1)
                        if m is None:
                            return None
                        try:
                            rid = loads(m.group(1))
                        except ValueError:
                            return None
                        return rid if isinstance(rid, (str, int)) else None
                    i = k + 1
                    expect_key = False
            continue
        if c in "{[":
            depth += 1
            expect_key = c == "{" and depth == 1
        elif c in "}]":
            depth -= 1
        elif c == "," and depth == 1:
            expect_key = True
        i += 1
    return None


def peek_id(raw: str | bytes) -> Any:
    """The id of a refused frame, for its error: parsed when small, scanned for when large."""
    if len(raw) > PEEK_FULL:
        return scan_id(raw)
    try:
        rid = loads(raw).get("id")
    except (ValueError, AttributeError, RecursionError):
        return None
    if isinstance(rid, str) and _SURROGATE_ESCAPE.search(raw if isinstance(raw, str) else ""):
        try:
            rid.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return rid if isinstance(rid, (str, int)) and not isinstance(rid, bool) else None


#: Deepest JSON nesting a frame may have (params and data sit two or three levels in).
#: Deeper values could not be serialised back (pydantic stops at ~255 levels) and would
#: only cost a traceback per frame.
MAX_DEPTH = 100


def too_deep(value: Any, depth: int) -> bool:
    """Whether ``value``, found at nesting ``depth`` of a frame, reaches deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        return True
    t = type(value)
    if t is dict:
        children: Any = value.values()
    elif t is list:
        children = value
    else:
        return False
    depth += 1
    for c in children:
        tc = type(c)
        if (tc is dict or tc is list) and (depth > MAX_DEPTH or too_deep(c, depth)):
            return True
    return False


# A \u escape of a UTF-16 surrogate (cheap pre-filter for lone_surrogate).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(text: str) -> bool:
    """Whether JSON ``text`` escapes a lone surrogate (``"\\ud800"``): valid JSON, but a string no
    UTF-8 writer can encode, so it would break every reply, event fan-out, envelope and
    signature it reached.  Only frames the pre-filter flags are parsed here a second time."""
    if not _SURROGATE_ESCAPE.search(text):
        return False
    try:
        json.dumps(json.loads(text), ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    except (ValueError, RecursionError):
        pass  # not JSON: parse_frame says so
    return False
