"""MQTT-style topic names and filters: validation and matching (pure).

A *topic* is a ``/``-separated name without wildcards.  A *filter* may use
``+`` (exactly one level) and ``#`` (the rest, including none; only as the
last level).  Semantics follow MQTT 3.1.1 §4.7, including that a filter
starting with a wildcard does not match topics that start with ``$``.

Characters: MQTT 3.1.1 §1.5.3 forbids NUL and lets a broker close the
connection of a client that sends control characters (U+0001-U+001F,
U+007F-U+009F) or Unicode non-characters; mosquitto does exactly that.  A
topic that reaches the broker from a client's frame would cut the whole node
off, so :func:`topic_error` refuses all of them, and lone surrogates (which
can't be encoded as UTF-8 at all), on every path a topic comes in by.
"""

from __future__ import annotations

import re
from functools import lru_cache

MAX_TOPIC_LEN = 512

#: C0 controls (NUL included), DEL, C1 controls, lone surrogates, and the 66 Unicode non-characters.
_FORBIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufdd0-\ufdef"
    + "".join(f"{chr(plane << 16 | 0xFFFE)}{chr(plane << 16 | 0xFFFF)}" for plane in range(17))
    + "]")


def topic_error(topic: object, *, wildcards: bool) -> str | None:
    """Return why ``topic`` is not valid, or None if it is."""
    if not isinstance(topic, str) or not topic:
        return "topic must be a non-empty string"
    if len(topic) > MAX_TOPIC_LEN:
        return f"topic is longer than {MAX_TOPIC_LEN} characters"
    # isprintable() is False for every forbidden character (and for some allowed ones, such as
    # U+00A0): a cheap test that spares the usual topic the regex.
    if not topic.isprintable() and (bad := _FORBIDDEN.search(topic)):
        return (f"topic contains the character U+{ord(bad.group()):04X} (control characters and Unicode "
                "non-characters are not allowed in topics)")
    levels = topic.split("/")
    for i, level in enumerate(levels):
        if not wildcards:
            if "+" in level or "#" in level:
                return f"topic {topic!r} contains a wildcard; publish needs a plain topic"
            continue
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return f"'#' must be a whole level and the last one in {topic!r}"
        if "+" in level and level != "+":
            return f"'+' must be a whole level in {topic!r}"
    return None


@lru_cache(maxsize=4096)
def _split(s: str) -> tuple[str, ...]:
    return tuple(s.split("/"))


def matches(pattern: str, topic: str) -> bool:
    """True if ``topic`` matches the filter ``pattern``."""
    if pattern == topic:
        return True
    p = _split(pattern)
    t = _split(topic)
    if p[0] in ("+", "#") and topic.startswith("$"):
        return False
    n = len(t)
    for i, level in enumerate(p):
        if level == "#":
            return True
        if i >= n:
            return False
        if level != "+" and level != t[i]:
            return False
    return len(p) == n
