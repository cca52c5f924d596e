"""Tool arguments and results as pydantic models (the single source of the schemas)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._cluster import NodeFilter, NodeSelector, Order, SortKey

MAX_LIMIT = 20
MAX_WATCH_SECONDS = 30.0
MAX_WATCH_EVENTS = 50


class Args(BaseModel):
    """Tool arguments: strict on unknown fields, defaults for models that omit optional ones."""

    model_config = ConfigDict(extra="forbid")


class FindNodesArgs(Args):
    where: NodeFilter = Field(default_factory=NodeFilter, description="filters; null fields are ignored")
    sort_by: SortKey | None = Field(None, description="sort by this metric (null: by id)")
    order: Order = Field("asc", description="asc: lowest first; desc: highest first")
    limit: int = Field(5, description=f"how many nodes to return, 1 to {MAX_LIMIT}")


class GetNodeArgs(Args):
    node: str = Field(description="node id")


class DescribeServiceArgs(Args):
    node: str | None = Field(None, description="node id; null: any online node offering the service")
    service: str = Field(description="service name")


class CallArgs(Args):
    node: str | None = Field(None, description="target node id, or null when a selector is given")
    selector: NodeSelector | None = Field(
        None, description="target described by what it is (coolest, least loaded, all nodes running X); "
                          "resolved by the system against the live cluster. Null when node is given")
    service: str = Field(description="service name, e.g. supervisor")
    method: str = Field(description="method name, e.g. restart")
    params_json: str = Field("{}", description='the method\'s params as a JSON object text, e.g. {"name": "logger"}')
    reason: str = Field("", description="why this call, in a few words (shown to the operator)")


class BroadcastArgs(Args):
    service: str = Field(description="service name")
    method: str = Field(description="method name")
    params_json: str = Field("{}", description="params as a JSON object text")
    reason: str = Field("", description="why, in a few words (shown to the operator)")


class WatchArgs(Args):
    node: str = Field(description="node id")
    topic: str = Field(description="topic pattern, MQTT wildcards allowed, e.g. metrics/#")
    seconds: float = Field(5.0, description=f"how long to watch, at most {MAX_WATCH_SECONDS:g}")
    max_events: int = Field(10, description=f"stop after this many events, at most {MAX_WATCH_EVENTS}")


# ---- results -------------------------------------------------------------------------------

class NodeSummary(BaseModel):
    id: str
    online: bool
    temperature_c: float | None = None
    temperature_simulated: bool | None = None
    cpu_percent: float | None = None
    memory_percent: float | None = None
    load_1m: float | None = None
    disk_percent: float | None = None
    processes: dict[str, str] = Field(default_factory=dict, description="name -> state")
    services: list[str] = Field(default_factory=list)


class FindNodesResult(BaseModel):
    matched: int
    returned: int
    sort_by: str | None
    order: str
    nodes: list[NodeSummary]


class NodeDetail(BaseModel):
    id: str
    online: bool
    since: float | None = None
    last_seen: float | None = None
    host: str | None = None
    version: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    services: dict[str, dict[str, str]] = Field(default_factory=dict, description="service -> method -> read-only|mutating")
    processes: list[dict[str, Any]] = Field(default_factory=list)


class MethodDetail(BaseModel):
    description: str = ""
    mutates: bool
    params: dict[str, Any] = Field(default_factory=dict)


class DescribeServiceResult(BaseModel):
    node: str
    service: str
    description: str = ""
    methods: dict[str, MethodDetail]


class CallResult(BaseModel):
    service: str
    method: str
    results: dict[str, Any] = Field(default_factory=dict, description="node -> result")
    errors: dict[str, dict[str, str]] = Field(default_factory=dict, description="node -> {code, message}")
    selected: str | None = Field(None, description="how the targets were chosen")


class WatchResult(BaseModel):
    node: str
    topic: str
    events: list[dict[str, Any]]
    stopped: Literal["max_events", "time"]


ToolName = Literal["find_nodes", "get_node", "describe_service", "call", "broadcast", "watch"]
