"""The target expression of the offline parse, and its evaluation as set algebra on the live view.

A target expression is a small tree::

    All()                                   every node of the domain
    Ids(["na", "nb"])                       named nodes
    Filter(base, Cond("temperature_c", "lt", 40))   / Filter(base, Has("worker", running=True))
    Rank(base, "temperature_c", "desc", count=2)    "the 2 hottest"; ordinal=3: "the third hottest"
    Except(base, excluded)                  except / but not / other than / excluding / anywhere but
    Union([a, b])                           "na and the hottest node"
    Others()                                "the others": the domain minus every earlier step's targets
    Same()                                  "there", "on it": the previous step's targets

The *domain* is what a step can act on: online nodes (that supervise the
step's process, for a process action).  Evaluation never leaves it, so a
target can only shrink what the domain allows; ``Except`` removes whatever
its right side denotes, whether or not those nodes are in the domain.

Pure logic, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union as _U

from cloudisense.tools import ClusterView, NodeInfo
from cloudisense.tools._cluster import metric

METRIC_WORDS = {"temperature_c": "temperature", "cpu_percent": "cpu", "load_1m": "load", "memory_percent": "memory use",
                "free_memory_percent": "free memory", "disk_percent": "disk use", "load_5m": "5 min load",
                "load_15m": "15 min load"}
_ORDER_WORDS = {("temperature_c", "desc"): "hottest", ("temperature_c", "asc"): "coolest",
                ("load_1m", "desc"): "most loaded", ("load_1m", "asc"): "least loaded",
                ("cpu_percent", "desc"): "highest cpu", ("cpu_percent", "asc"): "lowest cpu",
                ("free_memory_percent", "desc"): "most free memory", ("free_memory_percent", "asc"): "least free memory",
                ("disk_percent", "asc"): "emptiest disk", ("disk_percent", "desc"): "fullest disk"}
_OPS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=", "ne": "!="}


class TargetError(ValueError):
    """The expression denotes nothing usable (the message says why, in the operator's terms)."""


class TargetQuestion(TargetError):
    """The expression needs something the request doesn't say (e.g. 'the others' with no earlier step)."""


@dataclass
class All:
    def show(self) -> str:
        return "all"


@dataclass
class Ids:
    ids: list[str]

    def show(self) -> str:
        return "ids(" + ", ".join(self.ids) + ")"


@dataclass
class Cond:
    metric: str
    op: str
    value: float

    def show(self) -> str:
        return f"{self.metric} {_OPS[self.op]} {self.value:g}"

    def holds(self, n: NodeInfo) -> bool:
        v = metric(n, self.metric)
        if v is None:
            return False
        return {"lt": v < self.value, "le": v <= self.value, "gt": v > self.value, "ge": v >= self.value,
                "eq": v == self.value, "ne": v != self.value}[self.op]


@dataclass
class Has:
    process: str
    running: bool = False
    stopped: bool = False   # supervises it, and it is not running
    absent: bool = False    # does not supervise it ("nodes without a worker")

    def show(self) -> str:
        if self.absent:
            return f"without {self.process}"
        return f"{'running' if self.running else 'stopped' if self.stopped else 'has'} {self.process}"

    def holds(self, n: NodeInfo) -> bool:
        p = n.process(self.process)
        if self.absent:
            return p is None
        if p is None:
            return False
        if self.stopped:
            return p.state != "running"
        return not self.running or p.state == "running"


@dataclass
class Group:
    """The nodes whose id starts with ``prefix`` and a separator: "the edge nodes" (edge-1, edge-2 …)."""
    prefix: str

    def show(self) -> str:
        return f"group {self.prefix}"

    def holds(self, n: NodeInfo) -> bool:
        i = n.id.lower()
        return i.startswith(self.prefix) and i[len(self.prefix):len(self.prefix) + 1] in ("-", "_", ".")


@dataclass
class Filter:
    base: Expr
    cond: Cond | Has | Group

    def show(self) -> str:
        return f"filter({self.base.show()}, {self.cond.show()})"


@dataclass
class Rank:
    base: Expr
    metric: str
    order: str
    count: int = 1
    ordinal: int | None = None

    def show(self) -> str:
        what = _ORDER_WORDS.get((self.metric, self.order), f"{self.order} {self.metric}")
        n = f"#{self.ordinal}" if self.ordinal else ("all, sorted" if self.count < 0 else f"top {self.count}")
        return f"rank({self.base.show()}, {what}, {n})"


@dataclass
class Except:
    base: Expr
    excluded: Expr

    def show(self) -> str:
        return f"except({self.base.show()}, {self.excluded.show()})"


@dataclass
class Union:
    parts: list[Expr] = field(default_factory=list)

    def show(self) -> str:
        return "union(" + ", ".join(p.show() for p in self.parts) + ")"


@dataclass
class Others:
    def show(self) -> str:
        return "others"


@dataclass
class Same:
    def show(self) -> str:
        return "same"


Expr = _U[All, Ids, Filter, Rank, Except, Union, Others, Same]


def named_ids(e: Expr, *, excluded: bool = False) -> list[tuple[str, bool]]:
    """Every node id the expression names, with whether it is named as excluded."""
    if isinstance(e, Ids):
        return [(i, excluded) for i in e.ids]
    if isinstance(e, (Filter, Rank)):
        return named_ids(e.base, excluded=excluded)
    if isinstance(e, Except):
        return named_ids(e.base, excluded=excluded) + named_ids(e.excluded, excluded=not excluded)
    if isinstance(e, Union):
        return [x for p in e.parts for x in named_ids(p, excluded=excluded)]
    return []


@dataclass
class Context:
    """What an expression is evaluated against."""

    view: ClusterView
    domain: list[str]                     # ids the step may act on, in id order
    previous: list[str] | None = None     # the previous step's targets ("there")
    earlier: list[str] | None = None      # every earlier step's targets ("the others", "everywhere else")
    process: str | None = None            # the step's process (for messages)
    notes: list[str] = field(default_factory=list)
    index: dict[str, NodeInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.index:
            self.index = {n.id: n for n in self.view.nodes}

    def get(self, i: str) -> NodeInfo | None:
        return self.index.get(i)


def evaluate(e: Expr, ctx: Context) -> list[str]:
    """The node ids ``e`` denotes within the domain, in a stable order (ranked order for ranks)."""
    dom = set(ctx.domain)
    if isinstance(e, All):
        return list(ctx.domain)
    if isinstance(e, Ids):
        out: list[str] = []
        for i in e.ids:
            if i not in dom:
                raise TargetError(_why_not(ctx, i))
            if i not in out:
                out.append(i)
        return out
    if isinstance(e, Filter):
        base = evaluate(e.base, ctx)
        return [i for i in base if e.cond.holds(_node(ctx, i))]
    if isinstance(e, Rank):
        base = evaluate(e.base, ctx)
        have = [i for i in base if metric(_node(ctx, i), e.metric) is not None]
        sign = -1.0 if e.order == "desc" else 1.0
        ranked = sorted(have, key=lambda i: (sign * (metric(_node(ctx, i), e.metric) or 0.0), i))
        what = _ORDER_WORDS.get((e.metric, e.order), e.metric)
        if e.ordinal is not None:
            if e.ordinal > len(ranked):
                raise TargetError(f"there is no #{e.ordinal} {what} node: only {len(ranked)} qualify")
            return [ranked[e.ordinal - 1]]
        if e.count < 0:          # a listing sorted by the metric ("rank the nodes by cpu"; questions only)
            return ranked
        if e.count > len(ranked):
            raise TargetError(f"asked for the {e.count} {what} nodes, but only {len(ranked)} qualify")
        return ranked[:e.count]
    if isinstance(e, Except):
        if isinstance(e.base, Rank):   # "the hottest node except nb": rank among the rest
            gone = _excluded(e.excluded, ctx)
            if e.base.count > 1 or e.base.ordinal is not None:
                # "the 2 hottest except nb": two readings (rank among the rest, or drop nb from the two)
                # that differ exactly when nb is among them
                top = evaluate(e.base, ctx)
                if e.base.ordinal is not None:   # "the second hottest except nb": nb above it shifts the rank
                    top = evaluate(Rank(e.base.base, e.base.metric, e.base.order, e.base.ordinal), ctx)
                if set(top) & set(gone):
                    raise TargetQuestion(f"{', '.join(sorted(set(top) & set(gone)))} is one of the {_words(e.base)}: "
                                         f"should I skip it and take the next one, or leave it out (fewer nodes)? "
                                         "Name the nodes")
            rest = _minus(evaluate(e.base.base, ctx), gone)
            return evaluate(Rank(Ids(rest) if rest else Ids([]), e.base.metric, e.base.order, e.base.count,
                                 e.base.ordinal), ctx) if rest else []
        base = evaluate(e.base, ctx)
        gone = _excluded(e.excluded, ctx)
        for part in (e.base.parts if isinstance(e.base, Union) else []):
            if isinstance(part, Rank) and set(evaluate(part, ctx)) & set(gone):
                # "the coolest and the hottest node except nb", nb the hottest: the next hottest, or none?
                raise TargetQuestion(f"{', '.join(sorted(set(evaluate(part, ctx)) & set(gone)))} is the "
                                     f"{_words(part)} you named and also excluded: which nodes do you mean?")
        if isinstance(e.excluded, (Rank, Filter)) and not set(gone) & set(base):
            raise TargetError(f"the excluded {_words(e.excluded)} ({', '.join(gone) or 'none'}) is not among the "
                              f"nodes named first ({', '.join(base)}); say exactly which nodes")
        return _minus(base, gone)
    if isinstance(e, Union):
        out = []
        for p in e.parts:
            out += [i for i in evaluate(p, ctx) if i not in out]
        return out
    if isinstance(e, (Others, Same)):
        if ctx.previous is None:
            raise TargetQuestion("'the others' and 'there' refer to an earlier step, and there is none: "
                                 "which nodes do you mean?")
        if isinstance(e, Same):
            return [i for i in ctx.previous if i in dom] or _raise(
                f"the previous step's nodes ({', '.join(ctx.previous)}) can't take this step")
        done = ctx.earlier if ctx.earlier is not None else ctx.previous
        return [i for i in ctx.domain if i not in done]
    raise TargetError(f"unsupported target {e!r}")


def _raise(msg: str) -> list[str]:
    raise TargetError(msg)


def _excluded(e: Expr, ctx: Context) -> list[str]:
    """What an exclusion removes: named ids count whether or not they are in the domain (they must exist)."""
    if isinstance(e, Ids):
        for i in e.ids:
            if ctx.get(i) is None:
                raise TargetError(f"there is no node {i!r} to exclude")
        return list(e.ids)
    if isinstance(e, Union):
        return [i for p in e.parts for i in _excluded(p, ctx)]
    return evaluate(e, ctx)


def _minus(a: list[str], b: list[str]) -> list[str]:
    gone = set(b)
    return [i for i in a if i not in gone]


def _node(ctx: Context, i: str) -> NodeInfo:
    n = ctx.index.get(i)
    assert n is not None
    return n


def _why_not(ctx: Context, i: str) -> str:
    n = ctx.get(i)
    if n is None:
        return f"there is no node {i!r} in the cluster"
    if not n.online:
        return f"node {i} is offline"
    if ctx.process and n.process(ctx.process) is None:
        return f"node {i} does not supervise {ctx.process}"
    return f"node {i} can't take this step"


def _words(e: Expr) -> str:
    if isinstance(e, Rank):
        w = _ORDER_WORDS.get((e.metric, e.order), e.metric)
        return f"top {e.ordinal} {w} nodes" if e.ordinal else (f"{w} node" if e.count == 1 else f"{e.count} {w} nodes")
    return "nodes"


def is_broad(e: Expr) -> bool:
    """True when the expression starts from every node ("all", "everywhere", "the others")."""
    if isinstance(e, (All, Others)):
        return True
    if isinstance(e, (Filter, Except)):
        return is_broad(e.base)
    if isinstance(e, Union):
        return any(is_broad(p) for p in e.parts)
    return False
