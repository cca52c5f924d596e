"""What the offline planner understands, for the help screen and the Ask box's Tab completion.

Examples are built from the planner's own grammar (its verbs and
superlatives) and the live cluster's node ids and process names, and each is
kept only if the planner's parser accepts it, so the help never shows a
request that would fail.  Pure: no Textual, no I/O.
"""

from __future__ import annotations

from typing import Any, Iterable

# Words the planner reads as targets (see cloudisense.agent._offline); Tab completes them too.
TARGET_WORDS = ("on", "all", "nodes", "coolest", "hottest", "least", "loaded", "most", "busiest", "except",
                "running", "node", "every", "the")
SHOW_WORDS = ("show", "describe", "processes", "metrics", "info")


def _offline() -> Any:
    try:
        from cloudisense.agent import _offline
    except ImportError:  # pragma: no cover - the planner is part of the package
        return None
    return _offline


def verbs() -> dict[str, str]:
    """Every verb the planner takes → the action it means (``bounce`` → ``restart``)."""
    try:
        from cloudisense.agent._lexicon import VERBS
    except ImportError:  # pragma: no cover - the planner is part of the package
        return {v: v for v in ("restart", "start", "stop", "status", "logs")}
    return {w: a for w, a in VERBS.items() if a in ("restart", "start", "stop", "status", "logs")}


def grammar_text() -> str:
    off = _offline()
    text = getattr(off, "GRAMMAR_HELP", "") if off else ""
    return str(text)


def parses(request: str, nodes: Iterable[str] = ("node-b",), processes: Iterable[str] = ("logger",)) -> bool:
    """True when the offline planner's parser reads ``request`` without refusing or asking back, on a
    cluster with these node ids and process names (the grammar only: no metrics are needed)."""
    try:
        from cloudisense.agent._lexicon import Lexicon
        from cloudisense.agent._parse import parse
        from cloudisense.tools import ClusterView
    except ImportError:  # pragma: no cover - the planner is part of the package
        return True
    procs = [{"name": p, "state": "running"} for p in processes]
    view = ClusterView.model_validate({"nodes": [{"id": n, "online": True, "processes": procs} for n in nodes]})
    try:
        parse(request, Lexicon.from_view(view))
    except Exception:  # noqa: BLE001 - a refusal, a question back, or a parser bug: the example is hidden
        return False
    return True


def examples(nodes: Iterable[str], processes: Iterable[str]) -> list[str]:
    """Requests the planner accepts, written with this cluster's names."""
    nodes = sorted(set(nodes)) or ["node-b"]
    procs = sorted(set(processes)) or ["logger"]
    node, other, proc = nodes[-1], nodes[0], procs[0]
    by_action: dict[str, list[str]] = {}
    for word, action in verbs().items():
        by_action.setdefault(action, []).append(word)
    cands = [
        f"restart {proc} on the coolest node",
        f"stop {proc} on {node}",
        f"start {proc} on all nodes except {other}",
        f"restart {proc} on the node with the most free memory",
        f"status {proc}",
        f"last 50 lines of {proc} logs on {node}",
        "show nodes",
        f"show nodes running {proc}",
        "show the 2 hottest nodes",
        f"show metrics on {node}",
        f"show node {node}",
        "describe supervisor",
    ]
    # One example per synonym the grammar has (bounce, kill, …), so the list follows the planner.
    for action, words in sorted(by_action.items()):
        for w in words:
            if w != action and "-" not in w and action in ("restart", "stop", "start"):
                cands.append(f"{w} {proc} on {node}")
                break
    return [c for c in cands if parses(c, nodes, procs)]


def completions(word: str, *, nodes: Iterable[str], processes: Iterable[str], first: bool) -> list[str]:
    """Candidates for the word being typed: verbs first in the request, then node ids, processes, targets."""
    low = word.lower()
    pool: list[str] = []
    if first:
        pool += [*verbs(), *SHOW_WORDS[:2]]
    pool += sorted(set(nodes)) + sorted(set(processes))
    if not first:
        pool += [*TARGET_WORDS, *SHOW_WORDS]
    seen: set[str] = set()
    out = []
    for c in pool:
        if c.lower().startswith(low) and c not in seen and c != word:
            seen.add(c)
            out.append(c)
    return out


def common_prefix(words: list[str]) -> str:
    if not words:
        return ""
    lo, hi = min(words), max(words)
    n = 0
    while n < len(lo) and n < len(hi) and lo[n] == hi[n]:
        n += 1
    return lo[:n]
