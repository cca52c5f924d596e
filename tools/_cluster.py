"""The cluster view (``node.cluster``) as typed models, and node selection.

Pure logic, no I/O: :func:`select_nodes` filters and sorts a
:class:`ClusterView`; :func:`resolve` turns a :class:`NodeSelector`
("coolest online node with process logger") into target node ids plus the
facts that chose them, so that targets are picked by code against the live
view, never by a model's memory.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# What a member is made of is the node's model: the node validates every heartbeat with it before
# the heartbeat enters its membership table, so whatever node.cluster lists, these models read.
from cloudisense.node._heartbeat import Metrics, MethodInfo, ProcessInfo, ServiceInfo

SortKey = Literal[
    "id", "cpu_percent", "memory_percent", "free_memory_percent",
    "load_1m", "load_5m", "load_15m", "disk_percent", "temperature_c",
]
MetricKey = Literal[
    "cpu_percent", "memory_percent", "free_memory_percent",
    "load_1m", "load_5m", "load_15m", "disk_percent", "temperature_c",
]
Order = Literal["asc", "desc"]
Op = Literal["lt", "le", "gt", "ge", "eq", "ne"]

# Built-in methods every node answers, whether or not its catalog lists them.
BUILTIN_METHODS: dict[str, dict[str, bool]] = {"node": {"ping": False, "describe": False, "cluster": False}}


class _Lenient(BaseModel):
    """Models of what nodes send: unknown fields ignored, missing ones defaulted (as the node's own)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class NodeInfo(_Lenient):
    id: str
    online: bool = False
    since: float | None = None
    last_seen: float | None = None
    host: str | None = None
    version: str | None = None
    status: Literal["online", "stale", "offline"] | None = None
    metrics: Metrics | None = None
    catalog_hash: str | None = None
    services: dict[str, ServiceInfo] = Field(default_factory=dict)
    processes: list[ProcessInfo] = Field(default_factory=list)

    def process(self, name: str) -> ProcessInfo | None:
        return next((p for p in self.processes if p.name == name), None)

    def method(self, service: str, method: str) -> MethodInfo | None:
        svc = self.services.get(service)
        if svc is not None and method in svc.methods:
            return svc.methods[method]
        builtin = BUILTIN_METHODS.get(service, {})
        if method in builtin:
            return MethodInfo(mutates=builtin[method])
        return None

    def service_names(self) -> list[str]:
        return sorted(set(self.services) | set(BUILTIN_METHODS))


class ClusterView(_Lenient):
    self_id: str = Field("", alias="self")
    nodes: list[NodeInfo] = Field(default_factory=list)
    #: Each distinct service catalog once, by hash (``node.cluster`` with ``catalogs``); rows name theirs.
    catalogs: dict[str, dict[str, ServiceInfo]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _services_from_catalogs(self) -> "ClusterView":
        for n in self.nodes:
            if not n.services and n.catalog_hash and n.catalog_hash in self.catalogs:
                n.services = self.catalogs[n.catalog_hash]
        return self

    def get(self, node_id: str) -> NodeInfo | None:
        return next((n for n in self.nodes if n.id == node_id), None)

    def online(self) -> list[NodeInfo]:
        return [n for n in self.nodes if n.online]


def metric(node: NodeInfo, key: str) -> float | None:
    """One sortable number of a node (None when the node doesn't report it)."""
    m = node.metrics
    if m is None:
        return None
    if key == "free_memory_percent":
        return None if m.memory_percent is None else round(100.0 - m.memory_percent, 3)
    if key in ("load_1m", "load_5m", "load_15m"):
        i = {"load_1m": 0, "load_5m": 1, "load_15m": 2}[key]
        return m.load[i] if len(m.load) > i else None
    v = getattr(m, key, None)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return None
    return float(v)


class Condition(BaseModel):
    """A numeric condition on one metric, e.g. temperature_c lt 50."""

    model_config = ConfigDict(extra="forbid")
    metric: MetricKey = Field(description="the metric to compare")
    op: Op = Field(description="lt, le, gt, ge, eq or ne")
    value: float = Field(description="the number to compare with")

    def holds(self, node: NodeInfo) -> bool:
        v = metric(node, self.metric)
        if v is None:
            return False
        return {"lt": v < self.value, "le": v <= self.value, "gt": v > self.value,
                "ge": v >= self.value, "eq": v == self.value, "ne": v != self.value}[self.op]


class NodeFilter(BaseModel):
    """Which nodes to consider; every field that is not null must hold."""

    model_config = ConfigDict(extra="forbid")
    online: bool | None = Field(None, description="true: only online nodes; false: only offline; null: both")
    ids: list[str] | None = Field(None, description="only these node ids")
    exclude: list[str] | None = Field(None, description="never these node ids")
    service: str | None = Field(None, description="only nodes offering this service")
    process: str | None = Field(None, description="only nodes supervising a process of this name (any state)")
    running: str | None = Field(None, description="only nodes where a process of this name is running")
    conditions: list[Condition] | None = Field(None, description="numeric conditions on metrics, all must hold")

    def matches(self, node: NodeInfo) -> bool:
        if self.online is not None and node.online != self.online:
            return False
        if self.ids is not None and node.id not in self.ids:
            return False
        if self.exclude and node.id in self.exclude:
            return False
        if self.service is not None and self.service not in node.service_names():
            return False
        if self.process is not None and node.process(self.process) is None:
            return False
        if self.running is not None:
            p = node.process(self.running)
            if p is None or p.state != "running":
                return False
        return all(c.holds(node) for c in self.conditions or ())


def select_nodes(view: ClusterView, where: NodeFilter, sort_by: str | None = None,
                 order: str = "asc") -> list[NodeInfo]:
    """Nodes matching ``where``, sorted (ties and missing values ordered deterministically).

    Sorting by a metric drops nodes that don't report it: "coolest" can't pick a
    node without a temperature.
    """
    found = [n for n in view.nodes if where.matches(n)]
    if sort_by is None or sort_by == "id":
        return sorted(found, key=lambda n: n.id, reverse=(sort_by == "id" and order == "desc"))
    found = [n for n in found if metric(n, sort_by) is not None]
    sign = -1.0 if order == "desc" else 1.0
    return sorted(found, key=lambda n: (sign * (metric(n, sort_by) or 0.0), n.id))


class NodeSelector(BaseModel):
    """A target described by what it is, resolved by code against the live cluster."""

    model_config = ConfigDict(extra="forbid")
    where: NodeFilter = Field(default_factory=NodeFilter, description="which nodes qualify (only online nodes are ever selected)")
    sort_by: SortKey | None = Field(None, description="rank qualifying nodes by this metric; null: by id")
    order: Order = Field("asc", description="asc: lowest first (coolest, least loaded); desc: highest first")
    pick: Literal["one", "all"] = Field("one", description="one: the first-ranked node only; all: every qualifying node")


_SUPERLATIVE = {
    ("temperature_c", "asc"): "coolest online node", ("temperature_c", "desc"): "hottest online node",
    ("load_1m", "asc"): "least loaded online node", ("load_1m", "desc"): "most loaded online node",
    ("load_5m", "asc"): "least loaded online node (5 min load)", ("load_5m", "desc"): "most loaded online node (5 min load)",
    ("load_15m", "asc"): "least loaded online node (15 min load)", ("load_15m", "desc"): "most loaded online node (15 min load)",
    ("cpu_percent", "asc"): "least busy online node (CPU)", ("cpu_percent", "desc"): "busiest online node (CPU)",
    ("memory_percent", "asc"): "online node with the most free memory",
    ("memory_percent", "desc"): "online node with the least free memory",
    ("free_memory_percent", "desc"): "online node with the most free memory",
    ("free_memory_percent", "asc"): "online node with the least free memory",
    ("disk_percent", "asc"): "online node with the emptiest disk", ("disk_percent", "desc"): "online node with the fullest disk",
}
_OPS = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "=", "ne": "!="}


def describe_filter(where: NodeFilter) -> str:
    parts = []
    if where.running:
        parts.append(f"running {where.running}")
    if where.process:
        parts.append(f"with process {where.process}")
    if where.service:
        parts.append(f"offering {where.service}")
    if where.ids is not None:
        parts.append("among " + ", ".join(where.ids))
    for c in where.conditions or ():
        parts.append(f"where {c.metric} {_OPS[c.op]} {c.value:g}")
    if where.exclude:
        parts.append("except " + ", ".join(where.exclude))
    return " ".join(parts)


def describe_selector(sel: NodeSelector) -> str:
    """The selector in words, as the operator sees it: 'coolest online node with process logger'."""
    rest = describe_filter(sel.where)
    if sel.pick == "all":
        head = "all online nodes"
    elif sel.sort_by in (None, "id"):
        head = "first online node by id" if sel.order == "asc" else "last online node by id"
    else:
        head = _SUPERLATIVE.get((sel.sort_by, sel.order)) or \
            f"online node with the {'lowest' if sel.order == 'asc' else 'highest'} {sel.sort_by}"
    return f"{head} {rest}".strip()


class SelectionError(ValueError):
    """A selector that matches nothing (the message says why)."""


class Resolution(BaseModel):
    """What a selector resolved to, and the facts that chose it."""

    targets: list[str]
    candidates: list[str] = Field(default_factory=list, description="qualifying nodes, ranked")
    key: str | None = None
    values: dict[str, float | None] = Field(default_factory=dict)
    text: str = ""

    def why(self) -> str:
        if self.key is None or self.key == "id":
            return f"{self.text} ({len(self.candidates)} qualifying)"
        shown = ", ".join(f"{n} {self.values.get(n)!s}" for n in self.candidates[:6])
        more = f", +{len(self.candidates) - 6} more" if len(self.candidates) > 6 else ""
        return f"{self.text}: {self.key} {shown}{more}"


def resolve(view: ClusterView, sel: NodeSelector) -> Resolution:
    """Resolve a selector against a view: deterministic, online nodes only."""
    where = sel.where
    if where.online is False:
        raise SelectionError("a selector picks among online nodes; where.online=false selects nothing")
    where = where.model_copy(update={"online": True})
    ranked = select_nodes(view, where, sel.sort_by, sel.order)
    text = describe_selector(sel)
    if not ranked:
        raise SelectionError(_explain_empty(view, where, sel, text))
    targets = [ranked[0].id] if sel.pick == "one" else [n.id for n in ranked]
    key = sel.sort_by if sel.sort_by not in (None, "id") else None
    values = {n.id: metric(n, key) for n in ranked} if key else {}
    return Resolution(targets=targets, candidates=[n.id for n in ranked], key=key, values=values, text=text)


def _explain_empty(view: ClusterView, where: NodeFilter, sel: NodeSelector, text: str) -> str:
    online = view.online()
    if not online:
        return f"no node is online, so nothing matches '{text}'"
    base = where.model_copy(update={"conditions": None})
    if not any(base.matches(n) for n in online):
        hints = []
        name = where.process or where.running
        if name:
            having = [n.id for n in online if n.process(name)]
            hints.append(f"online nodes with process {name}: {', '.join(having[:10]) or 'none'}")
        if where.service:
            having = [n.id for n in online if where.service in n.service_names()]
            hints.append(f"online nodes offering {where.service}: {', '.join(having[:10]) or 'none'}")
        return f"no online node matches '{text}'" + (f" ({'; '.join(hints)})" if hints else "")
    if sel.sort_by not in (None, "id"):
        return f"no online node matching '{text}' reports {sel.sort_by}"
    return f"no online node matches '{text}'"


def summarize(view: ClusterView, max_names: int = 12) -> str:
    """A short, bounded summary of the cluster for the model's first message.

    Its size does not grow with the number of nodes: counts, and at most
    ``max_names`` service and process names.
    """
    online = view.online()
    services = sorted({s for n in online for s in n.services})
    procs = sorted({p.name for n in online for p in n.processes})

    def names(xs: list[str]) -> str:
        if not xs:
            return "none"
        more = f" (+{len(xs) - max_names} more)" if len(xs) > max_names else ""
        return ", ".join(xs[:max_names]) + more

    return (f"{len(view.nodes)} nodes known, {len(online)} online. "
            f"Services on online nodes: {names(services)}. "
            f"Supervised processes: {names(procs)}. "
            f"Connected to node {view.self_id or '?'}.")


def as_jsonable(x: Any) -> Any:
    return x.model_dump(mode="json") if isinstance(x, BaseModel) else x
