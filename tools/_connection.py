"""What the tools need from a cluster connection.

``cloudisense.node.Client`` (a WebSocket client of one node) satisfies
:class:`ClusterConnection` as is; tests and benchmarks use
:class:`~cloudisense.tools.FakeCluster`.  The cluster view is an ordinary
RPC, ``node.cluster`` on the connected node (:func:`fetch_cluster`).
"""

from __future__ import annotations

from typing import Any, AsyncIterator, Protocol, runtime_checkable

from ._cluster import ClusterView


@runtime_checkable
class Subscription(Protocol):
    """An async iterator of event dicts ``{"node","topic","data","ts"}``."""

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]: ...

    async def close(self) -> None: ...


@runtime_checkable
class ClusterConnection(Protocol):
    async def call(self, node: str | None, service: str, method: str,
                   params: dict[str, Any] | None = None, timeout: float | None = None) -> Any: ...

    async def broadcast(self, service: str, method: str, params: dict[str, Any] | None = None,
                        timeout: float | None = None) -> dict[str, Any]: ...

    async def subscribe(self, node: str | None, topic: str) -> Subscription: ...


#: What the tools ask ``node.cluster`` for: every member, compact, with the catalogs beside.
CLUSTER_QUERY: dict[str, Any] = {"catalogs": True}


async def fetch_cluster(conn: ClusterConnection, timeout: float | None = None) -> ClusterView:
    """The connected node's membership table (``node.cluster``) as a :class:`ClusterView`.

    Compact rows with each distinct service catalog once (``catalogs``), not a catalog per row:
    10,000 members of one build are 10,000 hashes and one catalog."""
    return ClusterView.model_validate(await conn.call(None, "node", "cluster", CLUSTER_QUERY, timeout))


async def fetch_describe(conn: ClusterConnection, node: str, timeout: float | None = None) -> dict[str, Any]:
    """A node's services with method schemas (``node.describe``)."""
    described: dict[str, Any] = await conn.call(node, "node", "describe", {}, timeout)
    return described
