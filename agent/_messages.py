"""The conversation's fixed texts: how the request, feedback and tool results are framed.

Tool results are node-supplied data.  They go to the model between markers
carrying a per-session random nonce, as one line of JSON (so a log line can't
start a new line that looks like a marker), with any marker-like text inside
defanged, and capped in size.
"""

from __future__ import annotations

import re
from typing import Any

REQUEST_PREFIX = "Request: "
CLUSTER_PREFIX = "Cluster: "
FEEDBACK_PREFIX = "The operator rejected the plan: "
FEEDBACK_SUFFIX = "Make a new plan that takes this into account. The previous plan's steps are discarded."
_MARKER_RE = re.compile(r"<<\s*(end-)?untrusted-data", re.IGNORECASE)


def request_message(request: str, cluster_summary: str) -> str:
    return f"{REQUEST_PREFIX}{request.strip()}\n{CLUSTER_PREFIX}{cluster_summary}"


def feedback_message(feedback: str) -> str:
    return f"{FEEDBACK_PREFIX}{feedback.strip() or '(no reason given)'}\n{FEEDBACK_SUFFIX}"


def defang(text: str) -> str:
    return _MARKER_RE.sub(lambda m: "‹‹" + ("end-" if m.group(1) else "") + "untrusted-data", text)


def wrap_untrusted(payload: str, *, nonce: str, tool: str, status: str) -> str:
    """Delimit a tool result (already compact JSON text) as untrusted data."""
    body = defang(payload).replace("\n", "\\n")
    return (f"<<untrusted-data id={nonce} tool={tool} status={status}>>\n{body}\n"
            f"<<end-untrusted-data id={nonce}>>")


def unwrap_untrusted(content: str) -> str | None:
    """The payload of a wrapped tool result (None if it isn't one)."""
    lines = content.split("\n")
    if len(lines) >= 3 and lines[0].startswith("<<untrusted-data ") and lines[-1].startswith("<<end-untrusted-data "):
        return "\n".join(lines[1:-1])
    return None


def _text(m: dict[str, Any]) -> str:
    c = m.get("content")
    if isinstance(c, list):  # content parts
        return "".join(p.get("text", "") for p in c if isinstance(p, dict))
    return c or ""


def request_of(messages: list[dict[str, Any]]) -> str | None:
    """The operator's request, from the first user message."""
    for m in messages:
        if m.get("role") == "user":
            text = _text(m)
            if text.startswith(REQUEST_PREFIX):  # the whole request, every line of it: up to the cluster line
                return text[len(REQUEST_PREFIX):].rsplit("\n" + CLUSTER_PREFIX, 1)[0]
    return None


def feedback_of(messages: list[dict[str, Any]]) -> list[str]:
    """The operator's rejection feedback, oldest first."""
    out = []
    for m in messages:
        if m.get("role") == "user":
            text = _text(m)
            if text.startswith(FEEDBACK_PREFIX):
                out.append(text[len(FEEDBACK_PREFIX):].rsplit("\n" + FEEDBACK_SUFFIX, 1)[0])
    return out
