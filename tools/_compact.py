"""Keep tool results small: cap strings, lists and the total size.

Results go into a model's context; a node's 10 MB log must not.  Long
strings keep their head and tail, long lists their first items (log lines:
their last ones), and anything cut says so in place.
"""

from __future__ import annotations

import json
from typing import Any

TAIL_KEYS = frozenset({"lines", "logs", "log", "output", "stdout", "stderr", "events"})


def _cut_str(s: str, limit: int) -> str:
    if len(s) <= limit:
        return s
    half = max(limit // 2 - 20, 10)
    return f"{s[:half]} …[{len(s) - 2 * half} chars cut]… {s[-half:]}"


def compact(obj: Any, *, max_str: int = 400, max_items: int = 25, _key: str | None = None,
            _depth: int = 0) -> Any:
    """A copy of a JSON value with long strings and lists shortened (marked in place)."""
    if _depth > 12:
        return "…[nested too deep]"
    if isinstance(obj, str):
        return _cut_str(obj, max_str)
    if isinstance(obj, dict):
        items = list(obj.items())
        out = {str(k): compact(v, max_str=max_str, max_items=max_items, _key=str(k), _depth=_depth + 1)
               for k, v in items[:max_items * 4]}
        if len(items) > max_items * 4:
            out["…"] = f"{len(items) - max_items * 4} more keys cut"
        return out
    if isinstance(obj, (list, tuple)):
        xs = list(obj)
        if len(xs) > max_items:
            if _key in TAIL_KEYS:
                kept = [f"…[{len(xs) - max_items} earlier items cut]"] + xs[-max_items:]
            else:
                kept = xs[:max_items] + [f"…[{len(xs) - max_items} more items cut]"]
        else:
            kept = xs
        return [compact(x, max_str=max_str, max_items=max_items, _key=_key, _depth=_depth + 1) for x in kept]
    return obj


def to_text(obj: Any, max_chars: int = 4000) -> str:
    """Compact JSON text of ``obj``, at most about ``max_chars`` characters."""
    text = json.dumps(compact(obj), ensure_ascii=False, separators=(",", ":"), default=str)
    if len(text) <= max_chars:
        return text
    for max_str, max_items in ((200, 10), (80, 5), (40, 3)):
        text = json.dumps(compact(obj, max_str=max_str, max_items=max_items),
                          ensure_ascii=False, separators=(",", ":"), default=str)
        if len(text) <= max_chars:
            return text
    return text[: max_chars - 60] + f" …[result truncated: {len(text) - max_chars + 60} more chars]"
