"""JSON on the hot paths: orjson where it is exact, the standard library where it is not.

Every frame and envelope is parsed and written at least once per hop; the standard
library spends ~11 µs on each of those for a 300-byte envelope, orjson under 2 µs
(``bench/`` P1–P5).  orjson differs from ``json`` in three ways that matter here, and
each is handled so that nothing a client sends is changed or lost:

* it reads integers outside 64 bits as floats: text with a run of 19+ digits is
  parsed by ``json`` instead (digits inside strings trip it too: slower, still exact);
* it refuses to write integers outside 64 bits and non-string keys: those objects
  are written by ``json``;
* it rejects ``NaN``/``Infinity`` and lone-surrogate escapes on input, which are not
  valid JSON (or not encodable as UTF-8) anyway: a ``ValueError`` like any bad JSON.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

__all__ = ["dumps", "dumpb", "loads", "canonical_bytes"]

_std_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_std_sorted = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode
# A run of 19 digits, found as 19 zeros once every digit is mapped to "0" (C speed;
# a regex spends ~8 µs on a 300-byte envelope whose timestamps are digit runs).
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_RUN = b"0" * 19
_orjson_dumps = orjson.dumps
_orjson_loads = orjson.loads
_SORT = orjson.OPT_SORT_KEYS
_EncodeError = orjson.JSONEncodeError


def dumpb(obj: Any) -> bytes:
    """Compact UTF-8 JSON bytes.  ``UnicodeEncodeError`` for strings with lone surrogates."""
    try:
        return _orjson_dumps(obj)
    except _EncodeError:
        return _std_encode(obj).encode()


def dumps(obj: Any) -> str:
    """Compact JSON text (not ASCII-escaped)."""
    try:
        return _orjson_dumps(obj).decode()
    except _EncodeError:
        return _std_encode(obj)


def canonical_bytes(obj: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the same bytes for the same value on every node."""
    try:
        return _orjson_dumps(obj, option=_SORT)
    except _EncodeError:
        return _std_sorted(obj).encode()


def loads(raw: str | bytes | bytearray | memoryview) -> Any:
    """Parse JSON; ``ValueError`` (``json.JSONDecodeError``) when it is not valid JSON."""
    data = (raw if type(raw) is bytes else raw.encode("utf-8", "surrogatepass") if isinstance(raw, str)
            else bytes(raw))
    if _RUN in data.translate(_DIGITS_TO_ZERO):
        return json.loads(data)
    return _orjson_loads(data)
