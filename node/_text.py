"""Text from outside, made safe to show on a terminal or in a log line.

Anything a node, a model, an MCP client or a supervised process wrote is
data. Before a terminal shows it, :func:`printable` replaces every control
character (C0, DEL, C1), every bidirectional override and every Unicode
non-character with a visible escape (``\\x1b``, ``\\u202e``), so escape
sequences can't move the cursor, erase a line, set the window title or
re-order what the operator reads. Newlines and tabs survive only where the
caller says multi-line text is expected (``keep_newlines=True``); a lone
carriage return never does.

Markup escaping (rich's ``[bold]``) is the printer's job on top of this:
``rich.markup.escape(printable(s))``.

JSON printed for a terminal (``--json``, ``cloudisense call``) goes through
:func:`json_text`: ``json.dumps`` already escapes C0 controls, but with
``ensure_ascii=False`` it lets DEL, C1 (``\\x9b`` is a CSI on many
terminals), bidi overrides and lone surrogates through raw; ``json_text``
writes those as ``\\uXXXX`` escapes too, so the output is still the same
JSON document, and safe to show.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["json_text", "printable", "UNSAFE"]

# C0 except \t \n, DEL, C1, bidi embeddings/overrides/isolates, line/para separators, BOM-ish
# invisibles that re-order or hide text, and the Unicode non-characters.
_UNSAFE = (
    "\x00-\x08\x0b-\x1f\x7f-\x9f"
    "\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff"
    "\ufdd0-\ufdef\ufffe\uffff"
    "\U0001fffe\U0001ffff\U0002fffe\U0002ffff\U0003fffe\U0003ffff\U0004fffe\U0004ffff"
    "\U0005fffe\U0005ffff\U0006fffe\U0006ffff\U0007fffe\U0007ffff\U0008fffe\U0008ffff"
    "\U0009fffe\U0009ffff\U000afffe\U000affff\U000bfffe\U000bffff\U000cfffe\U000cffff"
    "\U000dfffe\U000dffff\U000efffe\U000effff\U000ffffe\U000fffff\U0010fffe\U0010ffff"
    "\ud800-\udfff"
)
UNSAFE = re.compile(f"[{_UNSAFE}]")
_UNSAFE_ONE_LINE = re.compile(f"[{_UNSAFE}\t\n]")


def _escape(m: re.Match[str]) -> str:
    c = ord(m.group())
    return f"\\x{c:02x}" if c < 0x100 else f"\\u{c:04x}" if c < 0x10000 else f"\\U{c:08x}"


def printable(text: object, *, keep_newlines: bool = False, limit: int | None = None) -> str:
    """``str(text)`` with every unsafe character shown as an escape; cut to ``limit`` characters."""
    s = text if isinstance(text, str) else str(text)
    if limit is not None and len(s) > limit:
        s = s[:limit] + "…"
    return (UNSAFE if keep_newlines else _UNSAFE_ONE_LINE).sub(_escape, s)


def _json_escape(m: re.Match[str]) -> str:
    return json.dumps(m.group())[1:-1]  # ensure_ascii: \uXXXX (a surrogate pair above the BMP)


def json_text(obj: Any, **kw: Any) -> str:
    """``json.dumps(obj, ensure_ascii=False, **kw)`` with every unsafe character as a JSON ``\\u`` escape."""
    kw.setdefault("ensure_ascii", False)
    return UNSAFE.sub(_json_escape, json.dumps(obj, **kw))
