"""Built-in services: ``node``, ``system`` and ``pubsub``."""

from __future__ import annotations

import glob
import os
import platform
import random
import socket
import sys
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ._cluster import ROW_FIELDS
from ._errors import BadRequest
from ._host import Host
from ._services import Service, method
from ._topics import topic_error


class _P(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --- node ---------------------------------------------------------------------

class Pong(BaseModel):
    node: str
    ts: float


class Described(BaseModel):
    node: str
    services: dict[str, Any]


class ClusterWhere(_P):
    online: bool | None = Field(None, description="only online (true) or offline (false) members")
    status: Literal["online", "stale", "offline"] | None = None
    id_prefix: str | None = Field(None, max_length=64, description="ids that start with this")
    service: str | None = Field(None, max_length=128, description="members whose catalog has this service")
    process: str | None = Field(None, max_length=128, description="members supervising a process of this name")


class ClusterParams(_P):
    fields: list[str] | None = Field(None, max_length=len(ROW_FIELDS), description=(
        f"row fields, of {', '.join(ROW_FIELDS)}; default: every one but services (the catalog: give "
        "'catalogs' instead, or ask for 'services' by name). Without any parameter at all the rows are whole, "
        "services included, as before paging"))
    where: ClusterWhere = Field(default_factory=ClusterWhere)
    sort: str = Field("id", description="id, since, last_seen, status, host, version, cpu_percent, memory_percent, "
                                        "disk_percent, temperature_c, load_1m; '-' in front: highest first")
    limit: int | None = Field(None, ge=1, le=100_000, description="rows per page (default: all)")
    cursor: str | None = Field(None, max_length=32, description="'next' of the previous page")
    catalogs: bool = Field(False, description="add 'catalogs': {hash: catalog} for the rows' catalog_hash")
    max_bytes: int = Field(15 * 2**20, ge=1024, description="a reply larger than this is refused with too_large "
                                                           "(the project's client takes frames up to 16 MiB)")


class NodeService(Service):
    name = "node"
    description = "This node: liveness, its service catalog, and the cluster as it sees it."

    @method(mutates=False)
    def ping(self) -> Pong:
        """Liveness check; answers with the node id and its clock."""
        return Pong(node=self.node.id, ts=time.time())

    @method(mutates=False)
    def describe(self) -> Described:
        """Every service of this node with its methods, their JSON schemas and whether they mutate
        (methods that clients offer are marked ``offered_by: "client"``)."""
        return Described(node=self.node.id, services=self.node.catalog())

    @method(mutates=False)
    async def cluster(self, p: ClusterParams) -> dict[str, Any]:
        """The membership table, a page at a time: compact rows (fields), filtered (where), sorted, with a
        cursor; 'catalogs' adds each distinct service catalog once.  Without parameters: every member whole."""
        page: dict[str, Any] = await self.node.cluster_query(p)
        return page


# --- system -------------------------------------------------------------------

class Info(BaseModel):
    node: str
    host: str
    os: str
    python: str
    version: str
    pid: int
    uptime: float = Field(description="seconds since the node started")
    boot_time: float


class Metrics(BaseModel):
    cpu_percent: float
    memory_percent: float
    load: list[float] = Field(description="1, 5 and 15 minute load averages")
    disk_percent: float
    temperature_c: float | None
    temperature_source: str = Field(description="sysfs, fixed, simulated or none")
    simulated: bool = Field(description="true when the temperature is simulated (config sim:BASE)")
    ts: float


class Thermometer:
    """Temperature from sysfs, a fixed value, or a simulation drifting around a base."""

    def __init__(self, spec: str, seed: str = "") -> None:
        self.kind, _, num = spec.partition(":")
        self.base = float(num) if num else 0.0
        self.value = self.base
        self._rng = random.Random(seed or spec)
        self._zones = sorted(glob.glob("/sys/class/thermal/thermal_zone*/temp")) if self.kind == "auto" else []

    def read(self) -> tuple[float | None, str]:
        if self.kind == "fixed":
            return self.base, "fixed"
        if self.kind == "sim":
            # A bounded random walk: stays within ±2 °C of the base, so the
            # ordering of nodes set a few degrees apart is stable.
            self.value += self._rng.uniform(-0.3, 0.3)
            self.value = min(self.base + 2.0, max(self.base - 2.0, self.value))
            return round(self.value, 2), "simulated"
        for path in self._zones:
            try:
                with open(path) as f:
                    return round(int(f.read().strip()) / 1000.0, 1), "sysfs"
            except (OSError, ValueError):
                continue
        return None, "none"


def read_metrics(thermo: Thermometer, host: Host) -> Metrics:
    temp, source = thermo.read()
    try:
        disk = host.disk_percent("/")
    except OSError:
        disk = 0.0
    return Metrics(
        cpu_percent=host.cpu_percent(),
        memory_percent=host.memory_percent(),
        load=[round(x, 2) for x in os.getloadavg()],
        disk_percent=disk,
        temperature_c=temp,
        temperature_source=source,
        simulated=source == "simulated",
        ts=time.time(),
    )


class SystemService(Service):
    name = "system"
    description = "Host facts and live metrics (CPU, memory, load, disk, temperature) of this node."

    def __init__(self, temperature: str = "auto", seed: str = "") -> None:
        super().__init__()
        self.thermo = Thermometer(temperature, seed)
        self.started = time.time()
        self.last: Metrics | None = None
        self.host = Host()

    def sample(self) -> Metrics:
        self.last = read_metrics(self.thermo, self.host)
        return self.last

    @method(mutates=False)
    def info(self) -> Info:
        """Host name, OS, Python, node version, pid and uptime."""
        from . import __version__
        return Info(node=self.node.id, host=socket.gethostname(), os=platform.platform(),
                    python=sys.version.split()[0], version=__version__, pid=os.getpid(),
                    uptime=time.time() - self.started, boot_time=self.host.boot_time())

    @method(mutates=False)
    def metrics(self) -> Metrics:
        """Current CPU %, memory %, load averages, disk % and temperature °C (simulated: true when simulated)."""
        return self.sample()


# --- pubsub -------------------------------------------------------------------

class PublishParams(_P):
    topic: str = Field(description="plain topic (no wildcards)")
    data: Any = None


class PublishResult(BaseModel):
    topic: str
    delivered_local: int
    sent_remote: bool


class TopicsResult(BaseModel):
    local: list[str] = Field(description="topic filters local clients subscribe to on this node")
    remote: dict[str, list[str]] = Field(description="filters this node's clients follow on other nodes")
    interests: dict[str, list[str]] = Field(description="filters other nodes follow on this node")


class PubSubService(Service):
    name = "pubsub"
    description = "Publish events as this node and inspect subscriptions and counters."

    @method(mutates=True)
    def publish(self, p: PublishParams) -> PublishResult:
        """Publish an event on a topic as this node."""
        if err := topic_error(p.topic, wildcards=False):
            raise BadRequest(err)
        n, remote = self.node.publish(p.topic, p.data)
        return PublishResult(topic=p.topic, delivered_local=n, sent_remote=remote)

    @method(mutates=False)
    def topics(self) -> TopicsResult:
        """Subscribed topic filters: local, on other nodes, and other nodes' interests here."""
        return TopicsResult(**self.node.topics())

    @method(mutates=False)
    def stats(self) -> dict[str, Any]:
        """Counters: events, drops, subscriptions, remote interests, MQTT subscriptions, RPC counters."""
        snap: dict[str, Any] = self.node.stats_snapshot()
        return snap
