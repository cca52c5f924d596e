"""The heartbeat (``state`` envelope body) as pydantic models: the one model of a member.

A node validates every heartbeat once, when it arrives (:func:`heartbeat_error`),
with :class:`Heartbeat`, and keeps only what passed.  The tools read the
cluster view (``node.cluster``) with models built from the same parts
(:class:`Metrics`, :class:`ProcessInfo`, :class:`ServiceInfo`), so whatever a
node let into its membership table, the tools can read: one bad heartbeat
can't make ``ask`` or MCP fail.  The models are lenient where that is safe
(unknown fields ignored, missing ones defaulted) and strict on the types of
what readers dereference.

Counts are bounded too (services, methods, processes, the load list), so a
member's entry stays small whatever a peer sends.

What changes travels apart from what doesn't (issue 20): the heartbeat carries
metrics, processes, a liveness timestamp and the *hash* of the service catalog
(:func:`catalog_hash`); the catalog itself is a retained ``catalog`` envelope
(:class:`CatalogBody`) published on connect and when it changes, fetched by
peers whose cache lacks that hash.  A heartbeat that still carries ``catalog``
(a node from before the split) is read too.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = ["CatalogBody", "Heartbeat", "Metrics", "MethodInfo", "ProcessInfo", "ServiceInfo", "body_error",
           "catalog_hash", "heartbeat_error"]

MAX_SERVICES = 256
MAX_METHODS = 256
MAX_PROCESSES = 1024
#: A heartbeat ``interval`` longer than this is not believed (a fake one would stay "online" for ever).
MAX_INTERVAL = 3600.0


class _Lenient(BaseModel):
    """Models of what nodes send: unknown fields ignored, missing ones defaulted."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class Metrics(_Lenient):
    cpu_percent: float | None = None
    memory_percent: float | None = None
    load: list[float] = Field(default_factory=list, max_length=3)
    disk_percent: float | None = None
    temperature_c: float | None = None
    simulated: bool = False
    ts: float | None = None


class ProcessInfo(_Lenient):
    name: str
    state: str = "unknown"
    pid: int | None = None
    restarts: int = 0
    uptime: float | None = None
    exit_code: int | None = None
    command: list[str] | str | None = None


class MethodInfo(_Lenient):
    description: str = ""
    mutates: bool = True  # a method that doesn't say is treated as mutating
    offered_by: str | None = None  # "client": a client of the node offers it (register)
    # ``params`` (its JSON schema) is carried along but not read from here: node.describe serves it


class ServiceInfo(_Lenient):
    description: str = ""
    methods: dict[str, MethodInfo] = Field(default_factory=dict, max_length=MAX_METHODS)


class Heartbeat(_Lenient):
    """The body of a ``state`` envelope, as every node sends it every ``interval`` seconds."""

    session: str = ""
    ts: float | None = None
    interval: float = Field(5.0, gt=0, le=MAX_INTERVAL, description="seconds between heartbeats")
    host: str | None = None
    pid: int | None = None
    version: str | None = None
    ws: str | None = None
    started: float | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    catalog_hash: str | None = Field(None, max_length=64, description="catalog_hash() of the node's catalog")
    #: Only from nodes before the catalog split (issue 20); taken into the catalog cache.
    catalog: dict[str, ServiceInfo] | None = Field(None, max_length=MAX_SERVICES)
    processes: list[ProcessInfo] = Field(default_factory=list, max_length=MAX_PROCESSES)


class CatalogBody(_Lenient):
    """The body of a ``catalog`` envelope (retained on ``{p}/node/{id}/catalog``): the node's services."""

    hash: str = Field(max_length=64)
    catalog: dict[str, ServiceInfo] = Field(max_length=MAX_SERVICES)


def catalog_hash(catalog: Any) -> str:
    """BLAKE2b-128 (hex) of the canonical JSON of a catalog: equal catalogs, equal hashes, on every node."""
    text = json.dumps(catalog, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def heartbeat_error(body: Any) -> str | None:
    """Why ``body`` can't go into the membership table, or None (the first problem, short)."""
    return body_error(Heartbeat, body)


def body_error(model: type[BaseModel], body: Any) -> str | None:
    """Why ``body`` fails ``model``, or None (the first problem, short)."""
    if not isinstance(body, dict):
        return "the body is not an object"
    try:
        model.model_validate(body)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(p) for p in err["loc"]) or "body"
        return f"{where}: {err['msg']}"
    return None
