"""The ``offline`` model: a deterministic planner that parses operators' requests (no LLM, no network).

It emits ordinary tool calls through the same planner loop as an LLM.  The
parse runs in stages (see docs/agent.md):

1. normalise case, punctuation, contractions and units (``°C``, "degrees", ``%``);
2. read the words against a lexicon of the live cluster (node ids, process,
   service and method names) and synonym tables; correct typos with
   rapidfuzz (reported: "read 'retsart' as 'restart'"); :mod:`._lexicon`;
3. parse into a typed intermediate form: steps with verbs, processes and a
   target expression (:mod:`._parse`, :mod:`._target`), shown by ``--explain``;
4. evaluate each target expression as set algebra on the live view, check
   it (named nodes exist, are online, supervise the process; the node cap),
   and emit one tool call per step.  Targets go out as selectors that code
   resolves again, so the plan's facts and staleness checks apply.

Every word is consumed by the parse or is a listed filler word; anything
else is refused, naming the word.  A request that leaves a choice open gets
a question back (``outcome="clarify"`` with options), never a guess.
After a rejection, "not ID" / "skip ID" / "ID is in maintenance" excludes
those nodes and plans again.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from cloudisense.tools import ClusterView, NodeFilter, NodeSelector, SelectionError
from cloudisense.tools._cluster import Condition, metric, resolve

from ._lexicon import Lexicon
from ._messages import FEEDBACK_PREFIX, feedback_of, request_of, unwrap_untrusted
from ._model import ModelReply, ToolCall
from ._parse import Clarification, Parsed, Refusal, Step, explain, parse
from ._target import (All, Cond, Context, Except, Expr, Filter, Group, Has, Ids, Rank, TargetError, TargetQuestion, Union,
                      evaluate, is_broad, named_ids)

GRAMMAR_HELP = ("The offline planner understands actions ('restart|stop|start PROCESS on TARGET', with synonyms "
                "such as recycle, bounce, terminate, kill, launch), reads ('status|logs PROCESS [on TARGET]') and "
                "questions ('how hot is NODE?', 'which processes does NODE supervise?', 'where is PROCESS "
                "running?', 'which node is the coolest?'). TARGET: node ids, 'all nodes', 'the coolest|hottest|"
                "least loaded node', 'the 2 hottest nodes', 'the third coolest node', 'nodes under 40 degrees', "
                "'nodes running PROCESS', '... except ID', 'anywhere but ID', 'the others'; steps joined by 'then'.")
MAX_LIST = 20
ParseError = Refusal  # the old name
_ID = r"[A-Za-z0-9][\w.\-]*"
_NEG_CUES = re.compile(r"\b(?:not|no|don'?t|never|except|exclude|excluding|skip|avoid|without|maintenance|down|busy|"
                       r"broken|offline|leave|spare)\b", re.I)


class Unplannable(Exception):
    """Raised while compiling a parse into calls: a refusal or a question (``clarify``)."""

    def __init__(self, message: str, *, clarify: bool = False, options: list[str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.clarify = clarify
        self.options = options or []


@dataclass
class Compiled:
    calls: list[ToolCall] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    mutating: bool = False


def _procs_on(index: dict[str, Any], ids: list[str]) -> list[str]:
    return sorted({p.name for i in ids for p in (index[i].processes if i in index else [])})


def _node_list(ids: list[str], limit: int = 10) -> str:
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


class Compiler:
    """The intermediate form → tool calls, evaluated on one cluster view."""

    def __init__(self, view: ClusterView, *, max_nodes: int = 10, excludes: list[str] | None = None) -> None:
        self.view = view
        self.max_nodes = max_nodes
        self.excludes = [e for e in (excludes or []) if any(n.id == e for n in view.nodes)]
        self.online = sorted(n.id for n in view.nodes if n.online)
        self.index = {n.id: n for n in view.nodes}
        self.procs = {n.id: {p.name for p in n.processes} for n in view.nodes}
        self._earlier: list[str] = []     # every earlier step's targets ("the others" after several steps)

    def compile(self, p: Parsed, request: str) -> Compiled:
        out = Compiled()
        previous: list[str] | None = None
        prev_procs: list[str] = []
        touched: set[str] = set()
        self._earlier = []
        for _k, step in enumerate(p.steps):
            if step.mutating:
                calls, targets, procs = self._action(step, previous, prev_procs, request, p)
                out.mutating = True
                touched |= set(targets)
            else:
                calls, targets, procs = self._read(step, previous, prev_procs)
            out.calls += calls
            previous, prev_procs = targets, procs
            self._earlier += [t for t in targets if t not in self._earlier]
        if len(touched) > self.max_nodes:
            raise Unplannable(f"the plan would touch {len(touched)} nodes ({_node_list(sorted(touched))}); at most "
                              f"{self.max_nodes} per plan. Narrow the target")
        for n, c in enumerate(out.calls, 1):
            c.id = f"offline_{n}"
        return out

    # ---- actions ----------------------------------------------------------------------------

    def _processes(self, step: Step, prev_procs: list[str]) -> list[str]:
        if step.pronoun:
            if not prev_procs:
                names = sorted({p.name for n in self.view.nodes if n.online for p in n.processes})
                raise Unplannable(f"which process should I {step.verb}? {', '.join(names)}", clarify=True,
                                  options=names)
            return list(prev_procs)
        return list(step.processes)

    def _action(self, step: Step, previous: list[str] | None, prev_procs: list[str], request: str,
                p: Parsed) -> tuple[list[ToolCall], list[str], list[str]]:
        procs = [] if step.all_processes else self._processes(step, prev_procs)
        if not procs and not step.all_processes:
            names = sorted({pr.name for n in self.view.nodes if n.online for pr in n.processes})
            where = ""
            if step.target is not None:
                try:
                    where = " on " + ", ".join(self._eval(step.target, self.online, previous, None))
                    names = _procs_on(self.index, self._eval(step.target, self.online, previous, None))
                except (TargetError, Unplannable):
                    pass
            raise Unplannable(f"which process should I {step.verb}{where}? {', '.join(names) or 'none'}",
                              clarify=True, options=names)
        if step.target is None:
            if step.all_processes:
                pairs = [f"{pr.name} on {n.id}" for n in self.view.nodes if n.online for pr in n.processes]
                raise Unplannable(f"'{step.verb} everything' would {step.verb} {len(pairs)} process(es): "
                                  f"{_node_list(pairs, 12)}. Confirm the scope: name the processes and nodes "
                                  f"(e.g. '{step.verb} logger on all nodes')", clarify=True, options=pairs[:20])
            having = [n.id for n in self.view.nodes if n.online and all(n.process(x) for x in procs)]
            what = " and ".join(procs)
            raise Unplannable(f"which node should I {step.verb} {what} on? Nodes with it: "
                              f"{_node_list(having) or 'none online'} (or say 'all nodes', 'the coolest node')",
                              clarify=True, options=having[:10] + ["all nodes"])
        if step.all_processes:
            targets = self._eval(step.target, self.online, previous, None)
            if is_broad(step.target):
                pairs = [f"{pr} on {t}" for t in targets for pr in _procs_on(self.index, [t])]
                raise Unplannable(f"'{step.words}' would {step.verb} {len(pairs)} process(es): {_node_list(pairs, 12)}."
                                  " Confirm the scope: name the processes (e.g. "
                                  f"'{step.verb} logger on all nodes')", clarify=True, options=pairs[:20])
            procs = _procs_on(self.index, targets)
            calls = []
            for pr in procs:
                on = [t for t in targets if self.index.get(t).process(pr)]  # type: ignore[union-attr]
                calls.append(self._call(step, pr, Ids(on), on, request, p))
            return calls, targets, procs
        target = _subst_it(step.target, procs) if not step.ensure else step.target
        per: dict[str, list[str]] = {}
        for pr in procs:   # each process on the nodes that supervise it
            domain = [i for i in self.online if pr in self.procs[i]]
            if not step.ensure:
                per[pr] = self._eval(target, domain, previous, pr)
                continue
            try:       # "make sure X is running": where it already is, there is nothing to do
                per[pr] = self._eval(_subst_it(step.target, [pr]), domain, previous, pr)
            except Unplannable as e:
                if not e.message.startswith("no node matches"):
                    raise
        if step.ensure:
            wanted, procs = procs, [pr for pr in procs if per.get(pr)]
            if not procs:
                state = "running" if step.verb == "start" else "stopped"
                raise Unplannable(f"{' and '.join(wanted)} is already {state} on every online node named "
                                  "that supervises it; nothing to do")
        if len(procs) > 1 and _has_rank(target) and len({tuple(sorted(v)) for v in per.values()}) > 1:
            raise Unplannable(f"'{step.words}' ranks differently for each process ("
                              + "; ".join(f"{pr}: {', '.join(v)}" for pr, v in per.items())
                              + "): which nodes do you mean?", clarify=True)
        targets = list(dict.fromkeys(i for v in per.values() for i in v))
        if len(targets) > self.max_nodes:
            raise Unplannable(f"that would {step.verb} {' and '.join(procs)} on {len(targets)} nodes "
                              f"({_node_list(targets)}); at most {self.max_nodes} per plan. Narrow the target")
        return [self._call(step, pr, Ids(per[pr]) if step.ensure else target, per[pr], request, p)
                for pr in procs], targets, procs

    def _eval(self, e: Expr, domain: list[str], previous: list[str] | None, process: str | None) -> list[str]:
        if self.excludes:
            e = Except(e, Ids(self.excludes))
        ctx = Context(view=self.view, domain=domain, previous=previous, process=process, index=self.index,
                      earlier=self._earlier or None)
        try:
            targets = evaluate(e, ctx)
        except TargetQuestion as err:
            raise Unplannable(str(err), clarify=True) from None
        except TargetError as err:
            raise Unplannable(str(err)) from None
        if not targets:
            base = e
            while isinstance(base, Filter) and isinstance(base.cond, Cond):
                base = base.base
            if base is not e and isinstance(base, Ids) and len(base.ids) == 1 and \
                    (n := self.index.get(base.ids[0])) is not None:   # "if nb is hotter than 60, ...": it isn't
                v = metric(n, _conds(e)[0].metric) if _conds(e) else None
                raise Unplannable(f"the condition does not hold on {n.id} ({_conds(e)[0].metric} is "
                                  f"{'unknown' if v is None else f'{v:g}'}); nothing to do")
            raise Unplannable(f"no node matches {e.show()}" + (f" among the nodes with {process}" if process else ""))
        for i, excluded in named_ids(e):  # the negation invariant, checked on the result
            if excluded and i in targets:
                raise Unplannable(f"internal: {i} was excluded but selected")
        return targets

    def _call(self, step: Step, proc: str, target: Expr, targets: list[str], request: str, p: Parsed) -> ToolCall:
        node, sel = self._selector(target, proc, targets)
        reason = f"requested: {request.strip()[:200]}"
        if p.corrections:
            reason += " (" + "; ".join(f"read {a!r} as {b!r}" for a, b in p.corrections) + ")"
        for t in targets:
            n = self.index.get(t)
            if n is None or n.method("supervisor", step.verb) is None:
                raise Unplannable(f"node {t} does not offer supervisor.{step.verb}")
        args = {"node": node, "selector": sel.model_dump(mode="json") if sel else None, "service": "supervisor",
                "method": step.verb, "params_json": json.dumps({"name": proc}), "reason": reason}
        return ToolCall(name="call", arguments=json.dumps(args))

    def _selector(self, e: Expr, proc: str | None, targets: list[str]) -> tuple[str | None, NodeSelector | None]:
        """The selector that names ``targets`` best: the expression itself when a selector can say it
        (so the plan's facts explain it and a changed cluster makes it stale), else the ids."""
        if self.excludes:
            e = Except(e, Ids(self.excludes))
        if isinstance(e, Ids) and len(e.ids) == 1 and targets == e.ids:
            return e.ids[0], None
        sel = _as_selector(e, proc)
        if sel is not None:
            try:
                got = resolve(self.view, sel).targets
            except SelectionError:
                got = []
            if sorted(got) == sorted(targets):
                return None, sel
        where = NodeFilter(ids=sorted(targets), process=proc)
        sel = NodeSelector(where=where, pick="all")
        got = resolve(self.view, sel).targets
        if sorted(got) != sorted(targets):
            raise Unplannable("internal: the targets could not be expressed as a selector")
        return None, sel

    # ---- reads ------------------------------------------------------------------------------

    def _read(self, step: Step, previous: list[str] | None, prev_procs: list[str]
              ) -> tuple[list[ToolCall], list[str], list[str]]:
        v = step.verb
        if v in ("status", "logs"):
            procs = self._processes(step, prev_procs) if not step.all_processes else []
            if step.all_processes and v == "status" and step.target is not None:
                return self._read(Step(verb="processes", target=step.target), previous, prev_procs)
            if step.all_processes or not procs:
                raise Unplannable(f"{v} of which process?", clarify=True,
                                  options=sorted({p.name for n in self.view.nodes for p in n.processes}))
            calls = []
            all_targets: list[str] = []
            for pr in procs:
                domain = [i for i in self.online if pr in self.procs[i]]
                if not domain:
                    raise Unplannable(f"no online node supervises {pr}")
                targets = self._eval(_subst_it(step.target or All(), [pr]), domain, previous, pr)
                self._fanout(targets)
                params: dict[str, Any] = {"name": pr}
                if v == "logs":
                    params["lines"] = max(1, min(step.lines or 20, 200))
                node, sel = (targets[0], None) if len(targets) == 1 else (None, NodeSelector(
                    where=NodeFilter(ids=targets, process=pr), pick="all"))
                calls.append(ToolCall(name="call", arguments=json.dumps({
                    "node": node, "selector": sel.model_dump(mode="json") if sel else None, "service": "supervisor",
                    "method": v, "params_json": json.dumps(params), "reason": f"{v} of {pr}"})))
                all_targets += [t for t in targets if t not in all_targets]
            return calls, all_targets, procs
        if v == "describe":
            return [ToolCall(name="describe_service", arguments=json.dumps({"node": None,
                                                                            "service": step.service}))], [], []
        if v == "node":
            i = step.target.ids[0]  # type: ignore[union-attr]
            if self.index.get(i) is None:
                raise Unplannable(f"there is no node {i!r} in the cluster")
            return [ToolCall(name="get_node", arguments=json.dumps({"node": i}))], [i], []
        if v == "offline":
            return [ToolCall(name="find_nodes", arguments=json.dumps({
                "where": {"online": False}, "limit": MAX_LIST}))], [], []
        if v == "processes":
            if step.target is None:
                return [self._find(sorted(n.id for n in self.view.nodes), None, None)], [], []
            targets = self._eval(step.target, self.online, previous, None)
            self._fanout(targets)
            return [self._sys_call("supervisor", "list", targets)], targets, []
        if v == "metrics":
            e = step.target or All()
            if isinstance(e, Ids) and len(e.ids) == 1 and self.index.get(e.ids[0]) is not None \
                    and not self.index.get(e.ids[0]).online:  # type: ignore[union-attr]
                # an offline node: what the cluster last knew of it
                return [ToolCall(name="get_node", arguments=json.dumps({"node": e.ids[0]}))], e.ids, []
            targets = self._eval(e, self.online, previous, None)
            if len(targets) == 1 and not _conds(e):     # "which nodes use over 50% disk?" lists them
                return [self._sys_call("system", "metrics", targets)], targets, []
            return [self._find(targets, None, None)], targets, []
        if v == "nodes":
            e = step.target or All()
            domain = sorted(n.id for n in self.view.nodes) if step.include_offline and isinstance(e, All) \
                else self.online
            named = {c.process for c in _conds(e) if isinstance(c, Has)}
            e = _subst_it(e, sorted(named))
            targets = self._eval(e, domain, previous, None)
            rank = _top_rank(e)
            return [self._find(targets, rank.metric if rank else None, rank.order if rank else None)], targets, []
        raise Unplannable(f"internal: no read for {v}")

    def _fanout(self, targets: list[str]) -> None:
        if len(targets) > self.max_nodes:
            raise Unplannable(f"that would read from {len(targets)} nodes; at most {self.max_nodes} at once. "
                              "Narrow the target")

    def _sys_call(self, service: str, method: str, targets: list[str]) -> ToolCall:
        node, sel = (targets[0], None) if len(targets) == 1 else (None, NodeSelector(
            where=NodeFilter(ids=targets), pick="all"))
        return ToolCall(name="call", arguments=json.dumps({
            "node": node, "selector": sel.model_dump(mode="json") if sel else None, "service": service,
            "method": method, "params_json": "{}", "reason": f"{service}.{method}"}))

    def _find(self, ids: list[str], sort_by: str | None, order: str | None) -> ToolCall:
        return ToolCall(name="find_nodes", arguments=json.dumps({
            "where": NodeFilter(ids=ids).model_dump(mode="json"), "sort_by": sort_by, "order": order or "asc",
            "limit": max(1, min(len(ids), MAX_LIST))}))


def _subst_it(e: Expr, procs: list[str]) -> Expr:
    """'that has it' / 'running it': the step's process."""
    if isinstance(e, Filter):
        c = e.cond
        if isinstance(c, Has) and c.process == "$it":
            if len(procs) != 1:
                raise Unplannable("'it' in the target needs exactly one process named before it", clarify=True,
                                  options=procs)
            c = Has(procs[0], c.running, c.stopped, c.absent)
        return Filter(_subst_it(e.base, procs), c)
    if isinstance(e, Rank):
        return Rank(_subst_it(e.base, procs), e.metric, e.order, e.count, e.ordinal)
    if isinstance(e, Except):
        return Except(_subst_it(e.base, procs), _subst_it(e.excluded, procs))
    if isinstance(e, Union):
        return Union([_subst_it(x, procs) for x in e.parts])
    return e


def _has_rank(e: Expr) -> bool:
    if isinstance(e, Rank):
        return True
    if isinstance(e, (Filter,)):
        return _has_rank(e.base)
    if isinstance(e, Except):
        return _has_rank(e.base) or _has_rank(e.excluded)
    if isinstance(e, Union):
        return any(_has_rank(x) for x in e.parts)
    return False


def _conds(e: Expr) -> list[Any]:
    if isinstance(e, Filter):
        return [e.cond] + _conds(e.base)
    if isinstance(e, Rank):
        return _conds(e.base)
    if isinstance(e, Except):
        return _conds(e.base)
    return []


def _top_rank(e: Expr) -> Rank | None:
    if isinstance(e, Rank):
        return e
    if isinstance(e, Except):
        return _top_rank(e.base)
    return None


def _as_filter(e: Expr, proc: str | None) -> NodeFilter | None:
    """A chain of filters on All as a NodeFilter (None if the expression is more than that)."""
    conds: list[Condition] = []
    running = None
    exclude: list[str] = []
    while True:
        if isinstance(e, All):
            break
        if isinstance(e, Filter):
            c = e.cond
            if isinstance(c, Group):
                return None    # said by the evaluated ids
            if isinstance(c, Has):
                if c.stopped or c.absent:
                    return None
                if running is not None or c.process != proc or not c.running:
                    if c.process == proc and not c.running:
                        e = e.base
                        continue
                    return None
                running = c.process
            else:   # the metric and op are checked here, as the planner's own words were
                conds.append(Condition.model_validate({"metric": c.metric, "op": c.op, "value": c.value}))
            e = e.base
            continue
        if isinstance(e, Except) and isinstance(e.excluded, Ids):
            exclude += e.excluded.ids
            e = e.base
            continue
        return None
    return NodeFilter(process=proc, running=running, conditions=conds or None, exclude=exclude or None)


def _as_selector(e: Expr, proc: str | None) -> NodeSelector | None:
    excl: list[str] = []
    while isinstance(e, Except) and isinstance(e.excluded, Ids):
        excl += e.excluded.ids
        e = e.base
    if isinstance(e, Rank):
        if e.ordinal is not None or e.count != 1:
            return None
        where = _as_filter(e.base, proc)
        if where is None:
            return None
        if excl:
            where = where.model_copy(update={"exclude": sorted(set((where.exclude or []) + excl))})
        return NodeSelector(where=where, sort_by=e.metric, order=e.order, pick="one")
    where = _as_filter(e, proc)
    if where is None:
        return None
    if excl:
        where = where.model_copy(update={"exclude": sorted(set((where.exclude or []) + excl))})
    return NodeSelector(where=where, pick="all")


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


def _focus_text(r: dict[str, Any], focus: str, sim: str) -> str:
    if focus == "temperature_c":
        return f"temperature {_fmt_num(r.get('temperature_c'), ' °C')}{sim}"
    if focus == "free_memory_percent":
        m = r.get("memory_percent")
        return f"free memory {_fmt_num(None if m is None else round(100 - m, 3), '%')}"
    if focus == "load_1m":
        load = r.get("load") or []
        return f"load {_fmt_num(load[0] if load else None)} (1 min)"
    key = {"cpu_percent": "cpu", "memory_percent": "memory", "disk_percent": "disk"}.get(focus, focus)
    return f"{key} {_fmt_num(r.get(focus), '%')}"


def _fmt_num(v: Any, unit: str = "") -> str:
    return "?" if v is None else f"{v:g}{unit}" if isinstance(v, (int, float)) else str(v)


def _summarize_call(payload: dict[str, Any], focus: str | None = None) -> list[str]:
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
            if focus is not None:
                out.append(f"{node}: {_focus_text(r, focus, sim)}")
                continue
            out.append(f"{node}: cpu {_fmt_num(r.get('cpu_percent'), '%')}, memory {_fmt_num(r.get('memory_percent'), '%')}, "
                       f"load {r.get('load')}, disk {_fmt_num(r.get('disk_percent'), '%')}, temperature "
                       f"{_fmt_num(t, ' °C')}{sim}")
        else:
            out.append(f"{node}: {json.dumps(r, ensure_ascii=False)[:300]}")
    for node, e in sorted(payload.get("errors", {}).items()):
        out.append(f"{node}: error {e.get('code')}: {e.get('message')}")
    return out


def _summarize(tool: str, status: str, payload: Any, focus: str | None = None) -> str:
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
        return "\n".join(_summarize_call(payload, focus)) or "no results"
    return json.dumps(payload, ensure_ascii=False)[:500]



# ---- the model --------------------------------------------------------------------------------

#: "call SERVICE.METHOD on NODE [with {JSON params}]": a read-only method by name (a client's, say).
_NAMED_CALL = re.compile(r"\s*(?:please\s+)?(?:call|invoke|run|ask)\s+([A-Za-z][\w-]*)\.([A-Za-z][\w-]*)\s+"
                         r"(?:on|at|of)\s+(" + _ID + r")\s*(?:with\s+(\{.*\}))?\s*[.!]?\s*", re.S)


def _named_call(text: str, view: ClusterView) -> tuple[Parsed, Compiled] | None:
    """A call of a read-only method named in full, on one node (None if ``text`` is not one).

    Mutating methods are refused here: actions go through the grammar (whose verbs name them).
    """
    m = _NAMED_CALL.fullmatch(text)
    if m is None:
        return None
    service, method, node_id, params_text = m.groups()
    node = view.get(node_id)
    if node is None:
        raise Unplannable(f"there is no node {node_id!r} in the cluster")
    if not node.online:
        raise Unplannable(f"{node_id} is offline")
    svc = node.services.get(service)
    info = svc.methods.get(method) if svc is not None else None
    if info is None:
        names = sorted(f"{k}.{x}" for k, v in node.services.items() for x in v.methods)
        raise Unplannable(f"{node_id} offers no method {service}.{method} (it offers {', '.join(names[:20])})")
    if info.mutates:
        raise Unplannable(f"{service}.{method} on {node_id} changes state; the offline planner calls only "
                          "read-only methods by name")
    try:
        params = json.loads(params_text) if params_text else {}
    except json.JSONDecodeError as e:
        raise Refusal(f"the params after 'with' are not JSON ({e.msg}); nothing was planned") from None
    step = Step(verb="call", service=f"{service}.{method}", words=text.strip())
    call = ToolCall(name="call", arguments=json.dumps({
        "node": node_id, "selector": None, "service": service, "method": method,
        "params_json": json.dumps(params), "reason": f"{service}.{method} on {node_id}"}))
    return Parsed(steps=[step]), Compiled(calls=[call])


def interpret(text: str, view: ClusterView, *, max_nodes: int = 10, excludes: list[str] | None = None
              ) -> tuple[Parsed, Compiled]:
    """Parse and compile one request on ``view`` (raises Refusal, Clarification or Unplannable)."""
    if (named := _named_call(text, view)) is not None:
        return named
    p = parse(text, Lexicon.from_view(view))
    return p, Compiler(view, max_nodes=max_nodes, excludes=excludes).compile(p, text)


def explain_request(text: str, view: ClusterView, *, max_nodes: int = 10) -> dict[str, Any]:
    """The intermediate form and what it would do (``ask --explain``)."""
    try:
        p = parse(text, Lexicon.from_view(view))
    except Clarification as e:
        return {"status": "clarify", "message": e.question, "options": e.options}
    except Refusal as e:
        return {"status": "refused", "message": str(e)}
    doc: dict[str, Any] = {"status": "parsed", "form": p.show(), "text": explain(p)}
    try:
        c = Compiler(view, max_nodes=max_nodes).compile(p, text)
        doc["calls"] = [{"tool": k.name, "arguments": json.loads(k.arguments)} for k in c.calls]
    except Unplannable as e:
        doc["status"] = "clarify" if e.clarify else "refused"
        doc["message"] = e.message
        doc["options"] = e.options
    return doc


def parse_command(text: str, view: ClusterView, *, max_nodes: int = 10) -> list[ToolCall]:
    """The tool calls for one request (raises Refusal, Clarification or Unplannable)."""
    return interpret(text, view, max_nodes=max_nodes)[1].calls


class OfflineModel:
    """The deterministic offline planner (no provider, no network).  See the module docstring.

    The planner loop gives it the cluster view it planned on (``bind_view``):
    the lexicon and the target evaluation use exactly what the tools see.
    """

    name = "offline"
    description = "offline: the deterministic request parser (no LLM)"

    def __init__(self) -> None:
        self.view: ClusterView | None = None
        self.max_nodes = 10
        self._last: tuple[str, Parsed | None, list[str]] | None = None

    def bind_view(self, view: ClusterView, *, max_nodes: int = 10) -> None:
        self.view = view
        self.max_nodes = max_nodes

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        request = request_of(messages) or ""
        last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
        after = messages[last_user + 1:]
        if not any(m.get("role") == "tool" for m in after):
            return self._plan(messages, request, last_user)
        return self._summary(request, after)

    def _plan(self, messages: list[dict[str, Any]], request: str, last_user: int) -> ModelReply:
        if self.view is None:
            return ModelReply(content="Not planned: the offline planner has no view of the cluster.",
                              outcome="refuse")
        feedback = feedback_of(messages)
        known = {n.id for n in self.view.nodes} | _known_ids(messages)
        excludes = excludes_from_feedback(feedback, known)
        if feedback and (messages[last_user].get("content") or "").startswith(FEEDBACK_PREFIX) \
                and not excludes_from_feedback(feedback[-1:], known):
            return ModelReply(content="I can't turn that feedback into a different plan (the offline planner "
                                      "understands 'not NODE', 'skip NODE', 'NODE is in maintenance'). No new plan.",
                              outcome="refuse")
        try:
            p, compiled = interpret(request, self.view, max_nodes=self.max_nodes, excludes=excludes)
        except Clarification as e:
            return ModelReply(content=e.question, outcome="clarify", options=e.options)
        except Unplannable as e:
            if e.clarify:
                return ModelReply(content=e.message, outcome="clarify", options=e.options)
            return ModelReply(content=f"Not planned: {e.message}.", outcome="refuse")
        except Refusal as e:
            return ModelReply(content=f"Not planned: {e}. {GRAMMAR_HELP}", outcome="refuse")
        self._last = (request, p, excludes)
        return ModelReply(tool_calls=compiled.calls)

    def _summary(self, request: str, after: list[dict[str, Any]]) -> ModelReply:
        parsed = self._last[1] if self._last and self._last[0] == request else None
        parts = []
        if parsed is not None and parsed.corrections:
            parts.append("(" + "; ".join(f"read {a!r} as {b!r}" for a, b in parsed.corrections) + ")")
        names: dict[str, str] = {}
        statuses = []
        focus = None
        if parsed is not None:
            focus = next((s.metric for s in parsed.steps if s.verb == "metrics" and s.metric), None)
        for m in after:
            if m.get("role") == "assistant":
                for c in m.get("tool_calls") or []:
                    names[c["id"]] = c["function"]["name"]
            elif m.get("role") == "tool":
                content = m.get("content") or ""
                status = re.search(r"status=(\w+)", content.split("\n", 1)[0])
                st = status.group(1) if status else "ok"
                statuses.append(st)
                try:
                    payload = json.loads(unwrap_untrusted(content) or "")
                except json.JSONDecodeError:
                    payload = None
                parts.append(_summarize(names.get(m.get("tool_call_id") or "", "?"), st, payload, focus))
        outcome = None
        if "queued" not in statuses:
            outcome = "answer" if "ok" in statuses else "refuse"
        return ModelReply(content="\n".join(parts), outcome=outcome)
