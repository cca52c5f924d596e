"""The ``offline`` model: a deterministic rules planner for a small command language.

It needs no provider and no network, and it emits ordinary tool calls through
the same planner loop as an LLM; targets are always selectors or ids that
code resolves and validates against the live cluster.

Grammar (case-insensitive; "please", "the" and similar are ignored)::

    VERB PROCESS [on TARGET]        VERB: restart | start | stop | status | logs
                                    (also: bounce=restart, kill/halt=stop, launch=start,
                                     "show logs of X", "show X status", "last 50 lines of X logs")
    show nodes [running PROCESS]    list nodes (compact)
    show the [N] SUPERLATIVE node(s)
    show processes | metrics | info [on TARGET]
    show node ID                    one node in detail
    describe SERVICE                a service's methods and params

    TARGET: a node id | ID, ID and ID | all nodes | every node | everywhere
          | [the] SUPERLATIVE node [running PROCESS] | nodes running PROCESS
          | ... except ID[, ID]
    SUPERLATIVE: coolest | hottest | least loaded | most loaded | least busy | busiest
          | with the most free memory | with the least free memory | emptiest disk | fullest disk

A mutating verb without a target is not guessed: the model asks which node.
After a rejection, "not ID" / "skip ID" / "ID is in maintenance" excludes
those nodes and plans again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cloudisense.tools import NodeFilter, NodeSelector

from ._messages import FEEDBACK_PREFIX, feedback_of, request_of, unwrap_untrusted
from ._model import ModelReply, ToolCall

GRAMMAR_HELP = ("The offline planner understands: 'restart|start|stop|status|logs PROCESS on TARGET', "
                "'show nodes [running PROCESS]', 'show the coolest node', 'show processes|metrics|info on TARGET', "
                "'show node ID', 'describe SERVICE'. TARGET: a node id, 'all nodes', 'the coolest|hottest|"
                "least loaded|most loaded node', 'the node with the most free memory', 'nodes running PROCESS', "
                "optionally '... except ID'.")

_ID = r"[A-Za-z0-9][\w.\-]*"
_FILLER = {"the", "a", "an", "node", "nodes", "one", "ones", "machine", "machines", "host", "hosts", "on", "that",
           "which", "is", "are", "with", "online", "in", "cluster", "of", "please", "server", "servers"}
_SUPERLATIVES: list[tuple[str, tuple[str, str]]] = [
    (r"(?:with\s+(?:the\s+)?)?(?:most|max(?:imum)?)\s+(?:free|available|spare)\s+(?:memory|ram|mem)"
     r"|(?:with\s+(?:the\s+)?)?most\s+(?:memory|ram)\s+(?:free|available)|(?:with\s+(?:the\s+)?)?lowest\s+memory(?:\s+usage)?",
     ("free_memory_percent", "desc")),
    (r"(?:with\s+(?:the\s+)?)?least\s+(?:free|available|spare)\s+(?:memory|ram|mem)|(?:with\s+(?:the\s+)?)?highest\s+memory(?:\s+usage)?",
     ("free_memory_percent", "asc")),
    (r"cool(?:est)?|cold(?:est)?|(?:with\s+(?:the\s+)?)?lowest\s+temp(?:erature)?", ("temperature_c", "asc")),
    (r"hott?(?:est)?|warmest|(?:with\s+(?:the\s+)?)?highest\s+temp(?:erature)?", ("temperature_c", "desc")),
    (r"least[\s-]+(?:loaded|busy)|idlest|(?:with\s+(?:the\s+)?)?(?:lowest|least)\s+load", ("load_1m", "asc")),
    (r"most[\s-]+loaded|busiest|(?:with\s+(?:the\s+)?)?(?:highest|most)\s+load", ("load_1m", "desc")),
    (r"(?:with\s+(?:the\s+)?)?(?:lowest|least)\s+cpu(?:\s+usage)?", ("cpu_percent", "asc")),
    (r"(?:with\s+(?:the\s+)?)?(?:highest|most)\s+cpu(?:\s+usage)?", ("cpu_percent", "desc")),
    (r"(?:with\s+(?:the\s+)?)?(?:emptiest|most\s+free)\s+disk(?:\s+space)?", ("disk_percent", "asc")),
    (r"(?:with\s+(?:the\s+)?)?fullest\s+disk", ("disk_percent", "desc")),
]
_ALL = re.compile(r"\b(?:all|every|each|everywhere|whole\s+cluster|entire\s+cluster)\b", re.I)
_NEG_CUES = re.compile(r"\b(?:not|no|don'?t|never|except|exclude|excluding|skip|avoid|without|maintenance|down|busy|"
                       r"broken|offline|leave|spare)\b", re.I)
_VERBS = {"restart": "restart", "bounce": "restart", "reload": "restart", "start": "start", "launch": "start",
          "stop": "stop", "kill": "stop", "halt": "stop", "terminate": "stop", "status": "status", "state": "status",
          "check": "status", "logs": "logs", "log": "logs", "tail": "logs"}
MUTATING_VERBS = {"restart", "start", "stop"}


class ParseError(ValueError):
    pass


@dataclass
class Target:
    node: str | None = None
    selector: NodeSelector | None = None


@dataclass
class Command:
    tool: str
    args: dict[str, Any]
    verb: str = ""
    process: str | None = None
    target_text: str = ""
    notes: list[str] = field(default_factory=list)

    def call(self) -> ToolCall:
        return ToolCall(id="offline_1", name=self.tool, arguments=json.dumps(self.args))


def _split_ids(text: str) -> list[str]:
    parts = [p for p in re.split(r"\s*(?:,|\band\b|&|\s)\s*", text.strip()) if p]
    return [p for p in parts if p.lower() not in _FILLER]


def parse_target(phrase: str | None, *, process: str | None, excludes: list[str]) -> Target:
    """A TARGET phrase → a node id or a selector.  ``process`` filters superlatives and 'all'."""
    if phrase is None:
        raise ParseError("no target")
    t = " " + phrase.strip() + " "
    exclude = list(excludes)
    m = re.search(r"\s(?:except|but\s+not|other\s+than|excluding|apart\s+from|besides)\s+(.+?)\s*$", t, re.I)
    if m:
        exclude += _split_ids(m.group(1))
        t = t[:m.start()] + " "
    running = None
    m = re.search(rf"\s(?:running|that\s+runs?|which\s+runs?|where\s+({_ID})\s+runs)\s*({_ID})?\s", t, re.I)
    if m:
        running = m.group(1) or m.group(2)
        if not running:
            raise ParseError("'running' needs a process name")
        t = t[:m.start()] + " " + t[m.end():]
    sort = None
    for pattern, key in _SUPERLATIVES:
        m = re.search(rf"(?<![\w-])(?:{pattern})(?![\w-])", t, re.I)
        if m:
            sort = key
            t = t[:m.start()] + " " + t[m.end():]
            break
    everything = False
    m = _ALL.search(t)
    if m:
        everything = True
        t = t[:m.start()] + " " + t[m.end():]
    rest = _split_ids(t)
    where = NodeFilter(exclude=exclude or None)
    if sort or everything or running:
        if rest:
            raise ParseError(f"did not understand {' '.join(rest)!r} in the target {phrase.strip()!r}")
        if running:
            where.running = running
        elif process:
            where.process = process
        if sort and not everything:
            return Target(selector=NodeSelector(where=where, sort_by=sort[0], order=sort[1], pick="one"))
        return Target(selector=NodeSelector(where=where, sort_by=sort[0] if sort else None,
                                            order=sort[1] if sort else "asc", pick="all"))
    if not rest:
        raise ParseError(f"no target in {phrase.strip()!r}")
    ids = [i for i in rest if i not in exclude]
    if not ids:
        raise ParseError(f"every node named in {phrase.strip()!r} is excluded")
    if len(ids) == 1:
        return Target(node=ids[0])
    return Target(selector=NodeSelector(where=NodeFilter(ids=ids), pick="all"))


def _target_args(t: Target) -> dict[str, Any]:
    return {"node": t.node, "selector": t.selector.model_dump(mode="json") if t.selector else None}


def _clean(text: str) -> tuple[str, int | None]:
    s = " ".join(text.strip().split())
    s = re.sub(r"[.!?]+$", "", s)
    s = re.sub(r"^(?:please|pls|kindly|can\s+you|could\s+you|would\s+you)\s+", "", s, flags=re.I)
    s = re.sub(r"\s+please$", "", s, flags=re.I)
    lines = None
    m = re.search(r"\b(?:the\s+)?(?:last\s+)?(\d+)\s+lines?(?:\s+of)?\b", s, re.I)
    if m:
        lines = int(m.group(1))
        s = (s[:m.start()] + s[m.end():]).strip()
        s = " ".join(s.split())
    rewrites = [
        (r"^(?:show|get|display|print|fetch|read|give)\s+(?:me\s+)?(?:the\s+)?(logs?|status|state)\s+(?:of|for|from)\s+", r"\1 "),
        (r"^(?:show|get|display|print|fetch|read|give)\s+(?:me\s+)?(?:the\s+)?(?:process\s+)?(\S+)\s+(logs?|status|state)\b", r"\2 \1"),
        (r"^(?:what\s+is|what's|how\s+is|how's)\s+(?:the\s+)?(?:status\s+of\s+)?", "status "),
        (r"^check\s+(?:the\s+)?(?:status\s+of\s+)?", "status "),
        (r"^tail\s+(?:the\s+)?(?:logs?\s+(?:of|for)\s+)?", "logs "),
        (r"^(?:bring\s+up|spin\s+up)\s+", "start "),
        (r"^(?:bring\s+down|shut\s+down|shutdown)\s+", "stop "),
    ]
    for pat, rep in rewrites:
        s = re.sub(pat, rep, s, count=1, flags=re.I)
    return s, lines


def parse_command(text: str, *, excludes: list[str] | None = None) -> Command:
    """One request → one tool call (raises ParseError with a reason)."""
    excludes = list(excludes or [])
    s, lines = _clean(text)
    if not s:
        raise ParseError("empty request")
    first = s.split()[0].lower()
    if first in _VERBS:
        verb = _VERBS[first]
        m = re.match(rf"^\S+\s+(?:of\s+|for\s+)?(?:the\s+)?(?:process\s+|service\s+)?({_ID})"
                     rf"(?:\s+(?:process|service|logs?))?(?P<rest>.*)$", s, re.I)
        if not m:
            raise ParseError(f"'{first}' needs a process name")
        proc, rest = m.group(1), m.group("rest").strip()
        if proc.lower() in _FILLER | {"all", "every"}:
            raise ParseError(f"'{first}' needs a process name")
        target_phrase = None
        if rest:
            mt = re.match(r"^(?:on|at|in|across|for|from)\s+(.+)$", rest, re.I)
            if mt:
                target_phrase = mt.group(1)
            elif _ALL.fullmatch(rest.strip()) or re.fullmatch(r"(?:on\s+)?(?:all|every)\s+nodes?", rest, re.I):
                target_phrase = rest
            else:
                raise ParseError(f"did not understand {rest!r}")
        if target_phrase is None:
            if verb in MUTATING_VERBS:
                raise ParseError(f"which node should I {verb} {proc} on? Name a node, or say e.g. "
                                 f"'{verb} {proc} on the coolest node' or '{verb} {proc} on all nodes' "
                                 "(the offline planner does not guess targets for actions)")
            target = Target(selector=NodeSelector(where=NodeFilter(process=proc, exclude=excludes or None), pick="all"))
        else:
            target = parse_target(target_phrase, process=proc, excludes=excludes)
        params: dict[str, Any] = {"name": proc}
        if verb == "logs":
            params["lines"] = lines or 20
        reason = f"requested: {text.strip()}"
        return Command(tool="call", verb=verb, process=proc, target_text=target_phrase or "",
                       args={**_target_args(target), "service": "supervisor", "method": verb,
                             "params_json": json.dumps(params), "reason": reason})
    return _parse_show(s, text, excludes)


def _parse_show(s: str, original: str, excludes: list[str]) -> Command:
    m = re.match(r"^(?:show|list|find|which|what|display|get|give\s+me|describe)\b\s*(?:me\s+)?(?:is\s+|are\s+)?(.*)$", s, re.I)
    if not m:
        raise ParseError(f"did not understand {original.strip()!r}")
    body = m.group(1).strip()
    verb0 = s.split()[0].lower()
    # describe SERVICE / show service SERVICE / show the SERVICE service
    md = re.match(rf"^(?:the\s+)?(?:service\s+({_ID})|({_ID})\s+service)$", body, re.I)
    if md or (verb0 == "describe" and re.fullmatch(_ID, body) and body.lower() not in ("node", "nodes")):
        svc = (md.group(1) or md.group(2)) if md else body
        return Command(tool="describe_service", verb="describe", args={"node": None, "service": svc})
    # processes / metrics / info / services on TARGET
    mp = re.match(r"^(?:the\s+)?(processes|procs|process\s+list|metrics|stats|system\s+info|info|services)"
                  r"(?:\s+(?:on|of|for|at|from)\s+(.+))?$", body, re.I)
    if mp:
        what = mp.group(1).lower()
        phrase = mp.group(2)
        target = parse_target(phrase, process=None, excludes=excludes) if phrase else Target(node=".")
        if what == "services":
            if target.node is None:
                raise ParseError("'show services' takes one node id")
            return Command(tool="get_node", verb="show", args={"node": target.node})
        method = {"processes": "list", "procs": "list", "process list": "list", "metrics": "metrics",
                  "stats": "metrics", "system info": "info", "info": "info"}[what]
        service = "supervisor" if method == "list" else "system"
        return Command(tool="call", verb="show", target_text=phrase or "",
                       args={**_target_args(target), "service": service, "method": method, "params_json": "{}",
                             "reason": f"requested: {original.strip()}"})
    # show node ID
    mn = re.match(rf"^(?:the\s+)?node\s+({_ID})$", body, re.I)
    if mn and mn.group(1).lower() not in ("running",):
        return Command(tool="get_node", verb="show", args={"node": mn.group(1)})
    # nodes, with a superlative / running filter / count
    count = None
    mc = re.match(r"^(?:the\s+)?(\d+)\s+(.*)$", body, re.I)
    if mc:
        count, body = int(mc.group(1)), mc.group(2)
    if re.search(r"\bnodes?\b|\bcluster\b|\bmachines?\b|\bhosts?\b", body, re.I) or re.match(r"^(?:the\s+)?(?:coolest|hottest)", body, re.I):
        phrase = re.sub(r"^(?:all\s+|the\s+)?(?:nodes?|cluster|machines?|hosts?)\b\s*", "", body, flags=re.I).strip()
        phrase = re.sub(r"^(?:node\s+)?(?:is|are)\s+", "", phrase, flags=re.I)
        where = NodeFilter(exclude=excludes or None)
        sort_by, order, limit = "id", "asc", count or 20
        if phrase:
            try:
                tgt = parse_target(phrase, process=None, excludes=excludes)
            except ParseError:
                raise ParseError(f"did not understand {original.strip()!r}") from None
            if tgt.node is not None:
                return Command(tool="get_node", verb="show", args={"node": tgt.node})
            sel = tgt.selector
            assert sel is not None
            where = sel.where
            if sel.sort_by:
                sort_by, order = sel.sort_by, sel.order
                where = where.model_copy(update={"online": True})
                limit = count or (1 if sel.pick == "one" else 20)
        return Command(tool="find_nodes", verb="show",
                       args={"where": where.model_dump(mode="json"), "sort_by": sort_by, "order": order,
                             "limit": limit})
    if re.fullmatch(_ID, body) and re.search(r"[-_.\d]", body):
        return Command(tool="get_node", verb="show", args={"node": body})
    raise ParseError(f"did not understand {original.strip()!r}")


# ---- the model --------------------------------------------------------------------------------

def _known_ids(messages: list[dict[str, Any]]) -> set[str]:
    ids: set[str] = set()

    def walk(x: Any, key: str | None = None) -> None:
        if isinstance(x, dict):
            if isinstance(x.get("id"), str):
                ids.add(x["id"])
            for k, v in x.items():
                if key in ("results", "errors", "values"):
                    ids.add(k)
                walk(v, k)
        elif isinstance(x, list):
            if key in ("targets", "candidates"):
                ids.update(v for v in x if isinstance(v, str))
            for v in x:
                walk(v, key)

    for m in messages:
        if m.get("role") == "tool":
            payload = unwrap_untrusted(m.get("content") or "")
            try:
                walk(json.loads(payload or ""))
            except (json.JSONDecodeError, TypeError):
                continue
    return ids


def excludes_from_feedback(feedback: list[str], known: set[str]) -> list[str]:
    out: list[str] = []
    for text in feedback:
        if not _NEG_CUES.search(text):
            continue
        for tok in re.findall(_ID, text):
            tok = tok.rstrip(".")
            if (tok in known or re.search(r"[-_\d]", tok)) and tok not in out:
                out.append(tok)
    return out


def _fmt_num(v: Any, unit: str = "") -> str:
    return "?" if v is None else f"{v:g}{unit}" if isinstance(v, (int, float)) else str(v)


def _summarize_call(payload: dict[str, Any]) -> list[str]:
    out = []
    method = payload.get("method")
    for node, r in sorted(payload.get("results", {}).items()):
        if method == "status" and isinstance(r, dict):
            out.append(f"{node}: {r.get('name')} {r.get('state')} (pid {r.get('pid')}, restarts {r.get('restarts')})")
        elif method == "logs" and isinstance(r, dict):
            lines = r.get("lines") or []
            out.append(f"{node}: last {len(lines)} line(s) of {r.get('name')} (node output, shown as is):")
            out += [f"    | {ln}" for ln in lines]
        elif method == "list" and isinstance(r, dict):
            procs = ", ".join(f"{p.get('name')} {p.get('state')}" for p in r.get("processes", []) if isinstance(p, dict))
            out.append(f"{node}: {procs or 'no supervised processes'}")
        elif method == "metrics" and isinstance(r, dict):
            t = r.get("temperature_c")
            sim = " (simulated)" if r.get("simulated") and t is not None else ""
            out.append(f"{node}: cpu {_fmt_num(r.get('cpu_percent'), '%')}, memory {_fmt_num(r.get('memory_percent'), '%')}, "
                       f"load {r.get('load')}, disk {_fmt_num(r.get('disk_percent'), '%')}, temperature "
                       f"{_fmt_num(t, ' °C')}{sim}")
        else:
            out.append(f"{node}: {json.dumps(r, ensure_ascii=False)[:300]}")
    for node, e in sorted(payload.get("errors", {}).items()):
        out.append(f"{node}: error {e.get('code')}: {e.get('message')}")
    return out


def _summarize(tool: str, status: str, payload: Any) -> str:
    if not isinstance(payload, dict):
        return "(the result was too large to summarize)"
    if status == "error":
        return f"Could not do that: {payload.get('message')} ({payload.get('code')}). Nothing was planned."
    if status == "queued":
        return (f"Planned step {payload.get('queued_step')} on {', '.join(payload.get('targets', []))} "
                f"({payload.get('chosen')}). It runs only after approval.")
    if tool == "find_nodes":
        lines = [f"{payload.get('matched')} node(s) match; showing {payload.get('returned')}:"]
        for n in payload.get("nodes", []):
            t = n.get("temperature_c")
            sim = " (simulated)" if n.get("temperature_simulated") else ""
            procs = ", ".join(f"{k} {v}" for k, v in n.get("processes", {}).items())
            lines.append(f"  {n.get('id')}{'' if n.get('online') else ' (offline)'}: temperature {_fmt_num(t, ' °C')}{sim}, "
                         f"cpu {_fmt_num(n.get('cpu_percent'), '%')}, memory {_fmt_num(n.get('memory_percent'), '%')}, "
                         f"load {_fmt_num(n.get('load_1m'))}; processes: {procs or 'none'}")
        return "\n".join(lines)
    if tool == "get_node":
        procs = ", ".join(f"{p.get('name')} {p.get('state')} (pid {p.get('pid')})" for p in payload.get("processes", []))
        svcs = ", ".join(f"{s} ({', '.join(m)})" for s, m in payload.get("services", {}).items())
        return (f"{payload.get('id')}: {'online' if payload.get('online') else 'offline'}; metrics "
                f"{json.dumps(payload.get('metrics', {}))}; services: {svcs or 'none'}; processes: {procs or 'none'}")
    if tool == "describe_service":
        ms = "; ".join(f"{m} ({'mutating' if d.get('mutates') else 'read-only'}) params "
                       f"{sorted((d.get('params') or {}).get('properties', {}))}"
                       for m, d in payload.get("methods", {}).items())
        return f"service {payload.get('service')} on {payload.get('node')}: {ms}"
    if tool in ("call", "broadcast"):
        return "\n".join(_summarize_call(payload)) or "no results"
    return json.dumps(payload, ensure_ascii=False)[:500]


class OfflineModel:
    """The deterministic rules planner (no provider, no network).  See the module docstring."""

    name = "offline"
    description = "offline: the deterministic rules planner (no LLM)"

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        request = request_of(messages) or ""
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        after = messages[last_user + 1:]
        feedback = feedback_of(messages)
        if not any(m.get("role") == "tool" for m in after):
            excludes = excludes_from_feedback(feedback, _known_ids(messages))
            if feedback and (messages[last_user].get("content") or "").startswith(FEEDBACK_PREFIX) \
                    and not excludes_from_feedback(feedback[-1:], _known_ids(messages)):
                return ModelReply(content="I can't turn that feedback into a different plan (the offline planner "
                                          "understands 'not NODE', 'skip NODE', 'NODE is in maintenance'). No new plan.")
            try:
                cmd = parse_command(request, excludes=excludes)
            except ParseError as e:
                return ModelReply(content=f"Not planned: {e}. {GRAMMAR_HELP}")
            tc = cmd.call()
            tc.id = f"offline_{len(messages)}"
            return ModelReply(tool_calls=[tc])
        parts = []
        names = {}
        for m in after:
            if m.get("role") == "assistant":
                for c in m.get("tool_calls") or []:
                    names[c["id"]] = c["function"]["name"]
            elif m.get("role") == "tool":
                content = m.get("content") or ""
                status = re.search(r"status=(\w+)", content.split("\n", 1)[0])
                payload_text = unwrap_untrusted(content)
                try:
                    payload = json.loads(payload_text or "")
                except json.JSONDecodeError:
                    payload = None
                parts.append(_summarize(names.get(m.get("tool_call_id"), "?"),
                                        status.group(1) if status else "ok", payload))
        return ModelReply(content="\n".join(parts))
