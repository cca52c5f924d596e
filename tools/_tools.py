"""The cluster as typed tools: specs (schema + read-only flag) and the :class:`Toolbox` that runs them.

A tool call goes: ``args = toolbox.parse(name, arguments)`` (unknown tool or
malformed arguments raise :class:`ToolError`), then either
``await toolbox.run(name, args)`` for read-only tools, or, for ``call`` and
``broadcast``, ``prepared = await toolbox.prepare(args)`` which validates the
target against the live cluster (node exists and is online, service and
method exist, params fit the method's schema), resolves selectors, and says
whether the call mutates.  Whoever holds a :class:`Toolbox` decides what to do
with a mutating call; the agent queues it for approval, never runs it.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import logging
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from cloudisense import prompts

from ._cluster import (BUILTIN_METHODS, ClusterView, NodeFilter, NodeInfo, NodeSelector, Resolution, SelectionError,
                       metric, resolve, select_nodes)
from ._connection import ClusterConnection, fetch_cluster, fetch_describe
from ._models import (MAX_LIMIT, MAX_WATCH_EVENTS, MAX_WATCH_SECONDS, Args, BroadcastArgs, CallArgs,
                      CallResult, DescribeServiceArgs, DescribeServiceResult, FindNodesArgs, FindNodesResult,
                      GetNodeArgs, MethodDetail, NodeDetail, NodeSummary, WatchArgs, WatchResult)
from ._schema import openai_tool

log = logging.getLogger(__name__)


class ToolError(Exception):
    """A tool call that can't be done as asked; goes back to the model as an error result."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


@dataclass(frozen=True)
class ToolSpec:
    name: str
    args: type[Args]
    read_only: bool | None  # None: read-only iff the target method doesn't mutate
    summary: str

    @property
    def description(self) -> str:
        return prompts.load(f"tool_{self.name}").strip()

    def openai(self) -> dict[str, Any]:
        return openai_tool(self.name, self.description, self.args)


TOOLS: dict[str, ToolSpec] = {s.name: s for s in (
    ToolSpec("find_nodes", FindNodesArgs, True, "filter and sort nodes, return a few"),
    ToolSpec("get_node", GetNodeArgs, True, "one node: metrics, services, processes"),
    ToolSpec("describe_service", DescribeServiceArgs, True, "a service's methods and params schemas"),
    ToolSpec("call", CallArgs, None, "call a method on a node or selected nodes"),
    ToolSpec("broadcast", BroadcastArgs, None, "call a method on every online node offering it"),
    ToolSpec("watch", WatchArgs, True, "collect a node's events on a topic for a few seconds"),
)}


def openai_tools() -> list[dict[str, Any]]:
    """All tools in the OpenAI chat-completions ``tools`` format (strict mode)."""
    return [s.openai() for s in TOOLS.values()]


@dataclass
class PreparedCall:
    """A validated ``call``/``broadcast``: resolved targets and whether it mutates."""

    kind: Literal["call", "broadcast"]
    service: str
    method: str
    params: dict[str, Any]
    reason: str
    node: str | None
    selector: NodeSelector | None
    targets: list[str]
    mutates: bool
    resolution: Resolution | None = None
    online: dict[str, bool] = field(default_factory=dict)

    @property
    def why(self) -> str:
        if self.resolution is not None:
            return self.resolution.why()
        return f"named explicitly: {self.node}"


def error_dict(e: BaseException) -> dict[str, str]:
    """Any exception from a call as a wire-style ``{"code", "message"}`` (node errors keep their code)."""
    code = getattr(e, "code", None)
    msg = getattr(e, "message", None) or str(e) or type(e).__name__
    if code is None:
        code = "timeout" if isinstance(e, TimeoutError) else "internal"
        msg = msg if isinstance(e, TimeoutError) else f"{type(e).__name__}: {msg}"
    return {"code": str(code), "message": msg}


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:6]:
        loc = ".".join(str(p) for p in err["loc"]) or "arguments"
        parts.append(f"{loc}: {'unknown field' if err['type'] == 'extra_forbidden' else err['msg']}")
    return "; ".join(parts)


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 1)


def summary_of(n: NodeInfo) -> NodeSummary:
    m = n.metrics
    return NodeSummary(
        id=n.id, online=n.online,
        temperature_c=_round(metric(n, "temperature_c")),
        temperature_simulated=(m.simulated or None) if m and m.temperature_c is not None else None,
        cpu_percent=_round(metric(n, "cpu_percent")), memory_percent=_round(metric(n, "memory_percent")),
        load_1m=_round(metric(n, "load_1m")), disk_percent=_round(metric(n, "disk_percent")),
        processes={p.name: p.state for p in n.processes}, services=sorted(n.services))


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(x) for x in schema]
    return schema


class Toolbox:
    """The tools over one cluster connection.

    The cluster view is fetched once and kept (one consistent snapshot per
    planning session); :meth:`refresh` drops it.  ``max_fanout`` caps how
    many nodes one ``call`` may address.
    """

    def __init__(self, conn: ClusterConnection, *, timeout: float = 10.0, max_fanout: int = 10) -> None:
        self.conn = conn
        self.timeout = timeout
        self.max_fanout = max_fanout
        self._view: ClusterView | None = None
        self._describe: dict[str, dict[str, Any]] = {}

    # ---- cluster state -----------------------------------------------------------------------

    async def view(self) -> ClusterView:
        if self._view is None:
            try:
                self._view = await fetch_cluster(self.conn, self.timeout)
            except Exception as e:  # noqa: BLE001 - reported as a tool error
                raise ToolError("cluster_unavailable", f"could not read the cluster view: {error_dict(e)['message']}") from None
        return self._view

    def refresh(self) -> None:
        self._view = None
        self._describe.clear()

    async def describe(self, node: str) -> dict[str, Any]:
        if node not in self._describe:
            try:
                self._describe[node] = await fetch_describe(self.conn, node, self.timeout)
            except Exception as e:  # noqa: BLE001 - any failure becomes a tool error the caller reads
                d = error_dict(e)
                raise ToolError(d["code"], f"could not describe {node}: {d['message']}") from None
        return self._describe[node]

    async def node(self, node_id: str, *, online: bool = True) -> NodeInfo:
        view = await self.view()
        if node_id in (".", ""):
            node_id = view.self_id
        n = view.get(node_id)
        if n is None:
            close = difflib.get_close_matches(node_id, [x.id for x in view.nodes], n=3)
            hint = f" Did you mean {', '.join(close)}?" if close else ""
            raise ToolError("unknown_node", f"there is no node {node_id!r}.{hint} Use find_nodes to look nodes up; "
                                            "never guess node ids.")
        if online and not n.online:
            raise ToolError("node_offline", f"node {node_id!r} is offline")
        return n

    # ---- parsing -----------------------------------------------------------------------------

    def parse(self, name: str, arguments: str | dict[str, Any] | None) -> Args:
        spec = TOOLS.get(name)
        if spec is None:
            raise ToolError("unknown_tool", f"there is no tool {name!r}; the tools are: {', '.join(TOOLS)}")
        if arguments is None or arguments == "":
            arguments = {}
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except json.JSONDecodeError as e:
                raise ToolError("bad_arguments", f"arguments of {name} are not valid JSON ({e.msg} at {e.pos})") from None
        if not isinstance(arguments, dict):
            raise ToolError("bad_arguments", f"arguments of {name} must be a JSON object")
        if name in ("call", "broadcast") and "params" in arguments and "params_json" not in arguments:
            arguments = dict(arguments)
            p = arguments.pop("params")
            arguments["params_json"] = p if isinstance(p, str) else json.dumps(p)
        try:
            return spec.args.model_validate(arguments)
        except ValidationError as e:
            raise ToolError("bad_arguments", f"bad arguments for {name}: {_validation_message(e)}") from None

    # ---- call / broadcast --------------------------------------------------------------------

    async def prepare(self, args: CallArgs | BroadcastArgs) -> PreparedCall:
        """Validate a call against the live cluster and resolve its targets (no call is made)."""
        view = await self.view()
        kind: Literal["call", "broadcast"] = "broadcast" if isinstance(args, BroadcastArgs) else "call"
        node: str | None = None
        selector: NodeSelector | None = None
        resolution: Resolution | None = None
        if isinstance(args, BroadcastArgs):
            selector = NodeSelector(where=NodeFilter(service=args.service), pick="all")
        else:
            if (args.node is None) == (args.selector is None):
                raise ToolError("bad_arguments", "give exactly one of node (an id) or selector")
            node, selector = args.node, args.selector
        if selector is not None:
            try:
                resolution = resolve(view, selector)
            except SelectionError as e:
                raise ToolError("no_match", str(e)) from None
            targets = resolution.targets
        else:
            targets = [(await self.node(node)).id]  # type: ignore[arg-type]
        if len(targets) > self.max_fanout:
            raise ToolError("too_many_nodes", f"{len(targets)} nodes selected; one call may address at most "
                                              f"{self.max_fanout}. Narrow the selector.")
        mutates = False
        for t in targets:
            n = await self.node(t)
            info = n.method(args.service, args.method)
            if info is None:
                if args.service not in n.service_names():
                    raise ToolError("unknown_service", f"node {t} has no service {args.service!r} "
                                                       f"(services: {', '.join(n.service_names())})")
                svc = n.services.get(args.service)
                methods = sorted(svc.methods if svc else BUILTIN_METHODS.get(args.service, {}))
                raise ToolError("unknown_method", f"service {args.service!r} on {t} has no method {args.method!r} "
                                                  f"(methods: {', '.join(methods)})")
            mutates = mutates or info.mutates
        try:
            params = json.loads(args.params_json or "{}")
        except json.JSONDecodeError as e:
            raise ToolError("invalid_params", f"params_json is not valid JSON ({e.msg})") from None
        if not isinstance(params, dict):
            raise ToolError("invalid_params", "params_json must be a JSON object")
        if args.service == "supervisor" and isinstance(params.get("name"), str):
            for t in targets:  # the cluster view knows each node's processes: don't act on invented ones
                n = await self.node(t)
                if n.process(params["name"]) is None:
                    raise ToolError("invalid_params", f"node {t} supervises no process {params['name']!r} "
                                                      f"(processes: {', '.join(p.name for p in n.processes) or 'none'})")
        if mutates or args.service != "node":
            for t in targets:
                await self._check_params(t, args.service, args.method, params)
        return PreparedCall(kind=kind, service=args.service, method=args.method, params=params,
                            reason=args.reason, node=node, selector=selector, targets=targets,
                            mutates=mutates, resolution=resolution,
                            online={t: True for t in targets})

    async def _check_params(self, node: str, service: str, method: str, params: dict[str, Any]) -> None:
        desc = await self.describe(node)
        schema = (desc.get("services", {}).get(service, {}).get("methods", {}).get(method, {}).get("params"))
        if not schema:
            return
        try:
            import jsonschema
        except ImportError:  # pragma: no cover - jsonschema comes with litellm and mcp
            log.warning("jsonschema not installed; params of %s.%s not checked here", service, method)
            return
        try:
            jsonschema.validate(params, schema)
        except jsonschema.ValidationError as e:
            where = ".".join(str(p) for p in e.absolute_path) or "params"
            props = sorted(schema.get("properties", {}))
            raise ToolError("invalid_params", f"params of {service}.{method} don't fit its schema: {where}: "
                                              f"{e.message} (params: {', '.join(props) or 'none'})") from None
        except jsonschema.SchemaError:
            log.warning("node %s sent an invalid schema for %s.%s", node, service, method)

    async def execute(self, prepared: PreparedCall) -> CallResult:
        """Make a prepared call (read-only ones from the planner; anything from the executor or MCP)."""
        res = CallResult(service=prepared.service, method=prepared.method,
                         selected=prepared.resolution.text if prepared.resolution else None)

        async def one(t: str) -> None:
            try:
                res.results[t] = await self.conn.call(t, prepared.service, prepared.method, prepared.params,
                                                      self.timeout)
            except Exception as e:  # noqa: BLE001 - node errors are data
                res.errors[t] = error_dict(e)

        if prepared.kind == "broadcast" and not prepared.mutates:
            try:
                out = await self.conn.broadcast(prepared.service, prepared.method, prepared.params, self.timeout)
                res.results, res.errors = dict(out.get("results", {})), dict(out.get("errors", {}))
            except Exception as e:  # noqa: BLE001 - node errors are data
                res.errors["*"] = error_dict(e)
            return res
        await asyncio.gather(*(one(t) for t in prepared.targets))
        return res

    # ---- read-only tools ---------------------------------------------------------------------

    async def find_nodes(self, a: FindNodesArgs) -> FindNodesResult:
        view = await self.view()
        found = select_nodes(view, a.where, a.sort_by, a.order)
        limit = max(1, min(a.limit, MAX_LIMIT))
        return FindNodesResult(matched=len(found), returned=min(limit, len(found)), sort_by=a.sort_by,
                               order=a.order, nodes=[summary_of(n) for n in found[:limit]])

    async def get_node(self, a: GetNodeArgs) -> NodeDetail:
        n = await self.node(a.node, online=False)
        return NodeDetail(
            id=n.id, online=n.online, since=n.since, last_seen=n.last_seen, host=n.host, version=n.version,
            metrics=n.metrics.model_dump(exclude_none=True) if n.metrics else {},
            services={s: {m: ("mutating" if i.mutates else "read-only") for m, i in svc.methods.items()}
                      for s, svc in n.services.items()},
            processes=[p.model_dump(exclude_none=True, exclude={"command"}) for p in n.processes])

    async def describe_service(self, a: DescribeServiceArgs) -> DescribeServiceResult:
        if a.node is None:
            view = await self.view()
            offering = [n for n in view.online() if a.service in n.services]
            if not offering:
                raise ToolError("unknown_service", f"no online node offers service {a.service!r}")
            node = next((n for n in offering if n.id == view.self_id), offering[0]).id
        else:
            node = (await self.node(a.node)).id
        svc = (await self.describe(node)).get("services", {}).get(a.service)
        if svc is None:
            n = await self.node(node)
            raise ToolError("unknown_service", f"node {node} has no service {a.service!r} "
                                               f"(services: {', '.join(n.service_names())})")
        return DescribeServiceResult(
            node=node, service=a.service, description=svc.get("description", ""),
            methods={m: MethodDetail(description=d.get("description", ""), mutates=bool(d.get("mutates", True)),
                                     params=_strip_titles(d.get("params", {})))
                     for m, d in svc.get("methods", {}).items()})

    async def watch(self, a: WatchArgs) -> WatchResult:
        node = (await self.node(a.node)).id
        seconds = max(0.1, min(a.seconds, MAX_WATCH_SECONDS))
        max_events = max(1, min(a.max_events, MAX_WATCH_EVENTS))
        events: list[dict[str, Any]] = []
        stopped: Literal["max_events", "time"] = "time"
        try:
            sub = await self.conn.subscribe(node, a.topic)
        except Exception as e:  # noqa: BLE001 - any failure becomes a tool error the caller reads
            d = error_dict(e)
            raise ToolError(d["code"], f"could not subscribe to {a.topic} on {node}: {d['message']}") from None
        try:
            async with asyncio.timeout(seconds):
                async for ev in sub:
                    events.append(ev)
                    if len(events) >= max_events:
                        stopped = "max_events"
                        break
        except TimeoutError:
            pass
        finally:
            await sub.close()
        return WatchResult(node=node, topic=a.topic, events=events, stopped=stopped)

    # ---- generic entry -----------------------------------------------------------------------

    async def is_mutating(self, name: str, args: Args) -> bool:
        spec = TOOLS[name]
        if spec.read_only is not None:
            return not spec.read_only
        return (await self.prepare(args)).mutates  # type: ignore[arg-type]

    async def run(self, name: str, args: Args) -> dict[str, Any]:
        """Run a tool and return its JSON-ready result.  Mutating calls run too: callers gate them."""
        if name == "find_nodes":
            out: BaseModel = await self.find_nodes(args)  # type: ignore[arg-type]
        elif name == "get_node":
            out = await self.get_node(args)  # type: ignore[arg-type]
        elif name == "describe_service":
            out = await self.describe_service(args)  # type: ignore[arg-type]
        elif name == "watch":
            out = await self.watch(args)  # type: ignore[arg-type]
        elif name in ("call", "broadcast"):
            out = await self.execute(await self.prepare(args))  # type: ignore[arg-type]
        else:
            raise ToolError("unknown_tool", f"there is no tool {name!r}")
        return out.model_dump(mode="json", exclude_none=True)
