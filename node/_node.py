"""The node: composes the parts, owns their lifecycle, the public API and local routing.

Routing lives here, over the pure tables of ``_pubsub`` and ``_cluster``.  On
either side sits an edge that reaches the node only through the ``Router`` of
``_ports``: ``_gateway`` (clients over WebSocket) and ``_peers`` (the
node-to-node protocol, over the MQTT link of ``_federation``).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib
import logging
import os
import socket
import time
import uuid
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Coroutine, Hashable, cast

from . import __version__
from ._builtin import NodeService, PubSubService, SystemService
from ._cluster import COMPACT_FIELDS, METRIC_KEYS, ROW_FIELDS, Done, PendingTable, query, sort_error, wire_error
from ._config import Settings, node_id_error
from ._deadlines import DeadlineTimer, TaskDeadlines
from ._eager import first_step
from ._envelopes import CallBody
from ._errors import (BadRequest, CloudisenseError, ConfigError, ErrorCode, Forbidden, InvalidParams, TooLarge,
                      UnknownMethod, from_wire, to_wire)
from ._frames import MAX_SCHEMA_CHARS
from ._gateway import Gateway
from ._heartbeat import catalog_hash
from ._json import dumps, loads
from ._offered import Offer, Offerer, Offers
from ._peers import SEEN_CALLS_SECONDS, Peers
from ._pubsub import SubscriptionTable, event_text, fan_out
from ._services import Registry, Service
from ._stats import Stats
from ._topics import topic_error

if TYPE_CHECKING:
    from ._ports import Link
    from ._signing import Sealer, Signer, Verifier
    from ._supervisor import Supervisor

__all__ = ["Node", "SEEN_CALLS_SECONDS", "Stats", "release_freed_memory"]

log = logging.getLogger(__name__)



def release_freed_memory() -> None:
    """Give the heap pages freed during start-up (imports, schema building: ~1.5 MB) back to the OS.

    glibc keeps freed memory for reuse; an idle node on an edge box should not.
    Elsewhere (musl, macOS) there is no malloc_trim and this does nothing.
    """
    gc.collect()
    gc.freeze()
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


class _Listener:
    """An in-process subscriber (``node.listen``): events land in a bounded queue."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)

    def deliver_event(self, text: str) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(loads(text))


class Node:
    """A CloudiSENSE node.  ``await Node(settings).run()`` serves until cancelled or stopped.

    It implements :class:`~._ports.Router` for its two edges, the gateway and the peers.
    """

    version = __version__

    def __init__(self, settings: Settings, *, extra_services: list[Service] | None = None) -> None:
        self.settings = settings
        self.id = settings.id
        self.prefix = settings.broker.prefix
        self.session = uuid.uuid4().hex
        self._valid_ids: set[str] = set()   # node ids that passed node_id_error (resolve_target)
        self._local_deadlines = TaskDeadlines()
        self.started = time.time()
        self._catalog_cache: tuple[tuple[tuple[str, ...], int], dict[str, Any], str] | None = None
        self.registry = Registry()
        self.offers = Offers()             # methods clients offer (register)
        self._catalog_publish: asyncio.Task[Any] | None = None
        self.subs = SubscriptionTable()
        self.pending = PendingTable()
        self._call_deadlines = DeadlineTimer(self.pending.next_deadline, self.pending.expire_due)
        self.stats = Stats()
        self.supervisor: Supervisor | None = None
        self.signer: Signer | None = None
        self.sealer: Sealer | None = None     # seals what the federation sends (MAC or signature)
        self.verifier: Verifier | None = None
        self.gateway = Gateway(self, settings)
        self.system = SystemService(settings.system.temperature, seed=self.id)
        self._valid_topics: set[str] = set()   # event topics that passed topic_error
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = asyncio.Event()
        self._fatal: str | None = None
        for svc in (NodeService(), self.system, PubSubService(), *(extra_services or [])):
            self._register(svc)
        self._load_plugins()
        self._setup_security()
        self.peers = Peers(self, settings, session=self.session, subs=self.subs, pending=self.pending,
                           verifier=self.verifier, sealer=self.sealer)
        self.members = self.peers.members
        self.interests = self.peers.interests
        self.inbound = self.peers.inbound

    @property
    def fed(self) -> Link | None:
        """The MQTT link (None without federation, or before the join)."""
        return self.peers.fed

    # --- setup ----------------------------------------------------------------

    def _register(self, svc: Service) -> None:
        svc.node = self
        self.registry.add(svc)

    def _load_plugins(self) -> None:
        specs = list(self.settings.services)
        for ep in entry_points(group="cloudisense.services"):
            specs.append(ep.value)
        for spec in specs:
            mod_name, _, cls_name = spec.partition(":")
            try:
                cls = getattr(importlib.import_module(mod_name), cls_name)
                svc = cls()
            except Exception as e:  # noqa: BLE001 - whatever a plug-in raises becomes a ConfigError
                raise ConfigError(f"cannot load plug-in service {spec!r}: {type(e).__name__}: {e}") from None
            if not isinstance(svc, Service):
                raise ConfigError(f"plug-in {spec!r} is not a cloudisense Service")
            self._register(svc)

    def _setup_security(self) -> None:
        sec = self.settings.security
        if not (sec.key or sec.trust):
            if self.settings.broker.url != "none":
                log.warning("federation is UNAUTHENTICATED: no [security] key and trust, so this node accepts "
                            "whatever any client of the broker publishes, and signs nothing "
                            "(cloudisense keys gen %s prints the lines that turn it on)", self.id)
            return
        if not (sec.key and sec.trust):
            raise ConfigError("security.key and security.trust go together: set both to sign and verify")
        from ._signing import PairKeys, Sealer, Signer, TrustStore, Verifier
        self.signer = Signer(self.id, sec.key)
        trust = TrustStore.load(sec.trust)
        keys = PairKeys(self.signer, trust)
        self.sealer = Sealer(self.signer, keys, unicast=sec.unicast)
        self.verifier = Verifier(trust, window=sec.replay_window, keys=keys)

    # --- public programmatic API --------------------------------------------------

    def resolve_target(self, node: str | None) -> str:
        if node is None or node == "." or node == self.id:
            return self.id
        if node == "*":
            return "*"
        if node in self._valid_ids:
            return node
        if err := node_id_error(node):
            raise BadRequest(err)
        if len(self._valid_ids) < 10_000:   # ids checked once (a regex per call was ~1 µs of it)
            self._valid_ids.add(node)
        return node

    async def call(self, node: str | None, service_method: str, params: dict[str, Any] | None = None,
                   timeout: float | None = None) -> Any:
        """Programmatic RPC: ``await node.call("node-b", "system.metrics")``."""
        service, _, method = service_method.partition(".")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def done(result: Any, error: dict[str, Any] | None) -> None:
            if not fut.done():
                if error is not None:
                    fut.set_exception(from_wire(error, node=node))
                else:
                    fut.set_result(result)

        self.start_call(self.resolve_target(node), service, method, params, timeout, role="operator",
                        owner=fut, done=done)
        return await fut

    def listen(self, node: str | None, topic: str) -> _Listener:
        """In-process subscription to local events (remote ones: use a client)."""
        if err := topic_error(topic, wildcards=True):
            raise BadRequest(err)
        listener = _Listener()
        self.subs.add(listener, self.resolve_target(node), topic)
        return listener

    def cluster_table(self) -> list[dict[str, Any]]:
        self.members.set_self(self.session, self._state_body(), time.time())
        return self.members.table(self.peers.catalogs)

    async def cluster_query(self, p: Any) -> dict[str, Any]:
        """``node.cluster`` (params ``_builtin.ClusterParams``): one page of the membership table."""
        bare = not p.model_fields_set
        fields = ROW_FIELDS if bare else tuple(p.fields or COMPACT_FIELDS)
        if bad := [f for f in fields if f not in ROW_FIELDS]:
            raise InvalidParams(f"no field {bad[0]!r} in node.cluster rows (fields: {', '.join(ROW_FIELDS)})")
        if err := sort_error(p.sort):
            raise InvalidParams(err)
        try:
            offset = int(p.cursor or 0)
        except ValueError:
            raise InvalidParams(f"bad cursor {p.cursor!r}: pass the 'next' of the previous page") from None
        if "metrics" in fields or p.sort.lstrip("-") in METRIC_KEYS:
            await self.peers.want_metrics()
        self.members.set_self(self.session, self._state_body(), time.time())
        catalogs = self.peers.catalogs
        w = p.where
        rows, total = query(self.members.members(), fields=fields, catalogs=catalogs, online=w.online,
                            status=w.status, id_prefix=w.id_prefix, service=w.service, process=w.process,
                            sort=p.sort, offset=max(0, offset), limit=p.limit)
        end = max(0, offset) + len(rows)
        out: dict[str, Any] = {"self": self.id, "nodes": rows}
        if not bare:
            out["total"] = total
            out["next"] = str(end) if end < total else None
        if p.catalogs:
            hashes = {m.catalog_hash for m in self.members.members() if m.catalog_hash}
            out["catalogs"] = {h: catalogs[h] for h in hashes if h in catalogs}
        size = len(dumps(out))
        if size > p.max_bytes:
            raise TooLarge(f"node.cluster would answer {size / 2**20:.1f} MiB ({len(rows)} rows), more than "
                           f"{p.max_bytes / 2**20:.1f} MiB (max_bytes): ask for a page (limit, then cursor), "
                           f"fewer fields, or a filter (where)")
        return out

    # --- calls -------------------------------------------------------------------

    def method_mutates(self, target: str, service: str, method: str) -> bool:
        """Whether a call may change state; unknown methods count as mutating."""
        if target == self.id or target == "*":
            # a service of the node and one clients offer never share a name (Offers.add refuses)
            mutates = self.registry.mutates_or_none(service, method)
            if mutates is None:
                offer = self.offers.get(service, method)
                return offer.mutates if offer is not None else target == "*"
            return mutates
        meta = self.peers.catalog_of(target).get(service, {}).get("methods", {}).get(method)
        return True if meta is None else bool(meta.get("mutates", True))

    def _timeout(self, timeout: float | None) -> float:
        rpc = self.settings.rpc
        if not timeout:
            return min(rpc.timeout, rpc.max_timeout)
        return timeout if timeout < rpc.max_timeout else rpc.max_timeout

    def start_call(self, target: str, service: str, method: str, params: dict[str, Any] | None,
                   timeout: float | None, *, role: str, owner: Hashable, done: Done, reply: bool = True) -> None:
        """Start a call; ``done(result, error)`` runs exactly once (unless ``reply`` is false)."""
        t = self._timeout(timeout)
        t0 = time.perf_counter()
        src = self.id

        def finish(result: Any, error: dict[str, Any] | None) -> None:
            self.stats.record(src, target, service, method, (time.perf_counter() - t0) * 1000,
                              error["code"] if error else None)
            done(result, error)

        if target == self.id:
            if not reply:
                self._start_local(service, method, params, t, role, lambda r, e: None)
                done(None, None)
                return
            self._start_local(service, method, params, t, role, finish,
                              {"node": self.id, "client": getattr(owner, "name", None)})
            return
        if target == "*":
            self._broadcast(service, method, params, t, role, owner, finish, reply)
            return
        peers = self.peers
        try:
            peers.check_reachable(target)
        except CloudisenseError as e:
            finish(None, e.to_wire())
            return
        body: CallBody = {"service": service, "method": method, "params": params or {},
                          "reply_by": time.time() + t, "role": role}
        if not reply:
            body["reply"] = False
            peers.send(target, peers.envelope("call", target, body))
            done(None, None)
            return
        env = peers.envelope("call", target, body)
        req = env["id"]
        self.pending.add_call(req, target, owner, finish)
        self._deadline(req, t, lambda: f"{target} did not answer within {t:g} s")
        self.stats.remote_calls_out += 1
        peers.send(target, env)

    def expect_reply(self, req: str, node: str, owner: Hashable, done: Done, t: float, why: str) -> None:
        """``req`` went to ``node``: ``done`` gets its reply, or an error after ``t`` seconds."""
        self.pending.add_call(req, node, owner, done)
        self._deadline(req, t, why)

    def _deadline(self, req: str, t: float, why: str | Callable[[], str]) -> None:
        """``req`` (pending) times out in ``t`` seconds; one loop timer serves every pending call."""
        loop = asyncio.get_running_loop()
        when = loop.time() + t
        if self.pending.set_deadline(req, when, why):
            self._call_deadlines.arm(loop, when)

    def _broadcast(self, service: str, method: str, params: dict[str, Any] | None, t: float, role: str,
                   owner: Hashable, finish: Done, reply: bool) -> None:
        peers = self.peers
        remote = peers.online_peers()
        body: CallBody = {"service": service, "method": method, "params": params or {},
                          "reply_by": time.time() + t, "role": role}
        if not reply:
            body["reply"] = False
        env = peers.envelope("call", "*", body)
        req = env["id"]
        if reply:
            self.pending.add_gather(req, {self.id, *remote}, owner, finish)
            self._deadline(req, t, "no answer in time")
            self._start_local(service, method, params, t, role,
                              lambda r, e: self.pending.resolve(req, self.id, r, e))
        else:
            self._start_local(service, method, params, t, role, lambda r, e: None)
            finish(None, None)
        peers.send_broadcast(env)

    def run_local(self, service: str, method: str, params: dict[str, Any] | None, t: float, role: str,
                  done: Done, caller: str | None = None) -> None:
        """Run a method of this node within ``t`` seconds (a call from peer ``caller``)."""
        self._start_local(service, method, params, t, role, done, {"node": caller or "?"})

    def _start_local(self, service: str, method: str, params: dict[str, Any] | None, t: float, role: str,
                     done: Done, caller: dict[str, Any] | None = None) -> None:
        """Run a method of this node within ``t`` s.  An ``async def`` of a service runs in a task of its own
        from its first line: what it binds to the task it runs in (``asyncio.timeout``, a ``TaskGroup``)
        must be its own task, not the connection's or the federation's that received the call.  Everything
        else (a plain ``def`` method, a method a client offers, every refusal) starts at once, here, and is
        answered without a task when it finishes without waiting (``_eager``)."""
        coro = self._method(service, method, params, t, role, caller)
        if self.registry.is_async(service, method):
            self._spawn(self._run_local(service, method, t, done, coro))
            return
        try:
            finished, value = first_step(coro)
        except TimeoutError:
            done(None, self._timeout_error(service, method, t))
        except (Exception, asyncio.CancelledError) as e:  # noqa: BLE001 - answered as in the task
            self._failed(service, method, e, done)
        else:
            if finished:
                done(value, None)
            else:
                self._spawn(self._run_local(service, method, t, done, value))

    async def _method(self, service: str, method: str, params: dict[str, Any] | None, t: float, role: str,
                      caller: dict[str, Any] | None) -> Any:
        """A method of this node (its own, or one a client offers), refused when ``role`` may not call it."""
        # the node's own methods first (one lookup); a name is never both the node's and offered
        mutates = self.registry.mutates_or_none(service, method)
        offer = self.offers.get(service, method) if mutates is None else None
        if offer is not None:
            if role != "operator" and offer.mutates:
                raise Forbidden(f"{service}.{method} changes state; role {role!r} may not call it")
            return await self._invoke(offer, params, caller or {"node": self.id}, t)
        if mutates is None and service not in self.registry and (offered := self.offers.methods_of(service)):
            raise UnknownMethod(f"service {service!r} has no method {method!r} (methods: {', '.join(offered)})")
        if role != "operator" and mutates:
            raise Forbidden(f"{service}.{method} changes state; role {role!r} may not call it")
        return await self.registry.call(service, method, params)   # unknown names: its error

    @staticmethod
    def _failed(service: str, method: str, e: BaseException, done: Done) -> None:
        """Answer a method that raised: its own error, or ``internal`` (logged with the traceback)."""
        if isinstance(e, CloudisenseError):
            done(None, e.to_wire())
        else:
            log.exception("%s.%s failed", service, method, exc_info=e)
            done(None, to_wire(e))

    async def _run_local(self, service: str, method: str, t: float, done: Done, started: Awaitable[Any]) -> None:
        """Run or finish, in its own task (``_spawn``), a method ``_start_local`` gave it (a coroutine, or the
        rest of one that waited: ``Continued``): within ``t`` seconds (then cancelled and answered
        ``timeout``)."""
        task = asyncio.current_task()
        assert task is not None
        self._local_deadlines.add(task, t)
        timed_out = False
        try:
            result = await started
        except TimeoutError:
            timed_out = True
        except asyncio.CancelledError:
            if not self._local_deadlines.finished(task):
                done(None, wire_error(ErrorCode.NODE_OFFLINE, f"{self.id} is shutting down"))
                raise
            task.uncancel()   # our deadline's cancel, answered as a timeout
            timed_out = True
        except Exception as e:  # noqa: BLE001 - a failing method is answered (internal for a bug)
            self._failed(service, method, e, done)
        else:
            done(result, None)
        finally:
            self._local_deadlines.finished(task)
        if timed_out:
            done(None, self._timeout_error(service, method, t))

    def _timeout_error(self, service: str, method: str, t: float) -> dict[str, Any]:
        return wire_error(ErrorCode.TIMEOUT, f"{self.id} did not finish {service}.{method} within {t:g} s")

    async def _invoke(self, offer: Offer, params: dict[str, Any] | None, caller: dict[str, Any], t: float) -> Any:
        if params is not None and not isinstance(params, dict):
            raise BadRequest(f"params of {offer.service}.{offer.method} must be an object")
        caller = {k: v for k, v in caller.items() if v is not None}
        return await self.offers.invoke(offer, params or {}, caller, t, self.settings.ws.max_pending_calls)

    # --- methods clients offer ---------------------------------------------------------------

    def offer(self, owner: Any, service: str, method: str, params: dict[str, Any], mutates: bool,
              description: str) -> None:
        """A client offers ``service.method`` (``register``).  Raises Conflict, Overloaded or BadRequest."""
        if len(dumps(params)) > MAX_SCHEMA_CHARS:
            raise BadRequest(f"the params schema of {service}.{method} is over {MAX_SCHEMA_CHARS} characters of JSON")
        self.offers.add(Offer(service, method, params, mutates, description, owner), taken=service in self.registry)
        log.info("%s offers %s.%s (%s)", getattr(owner, "name", "a client"), service, method,
                 "mutates" if mutates else "read-only")
        self._catalog_changed()

    def withdraw(self, owner: Any, service: str, method: str) -> bool:
        if not self.offers.remove(owner, service, method):
            return False
        self._catalog_changed()
        return True

    def _catalog_changed(self) -> None:
        """Tell the cluster now (one heartbeat for a burst of changes), not at the next heartbeat."""
        if self._catalog_publish is None and not self.stopping:
            self._catalog_publish = self._spawn(self._publish_catalog())

    async def _publish_catalog(self) -> None:
        await asyncio.sleep(0)   # a burst of registrations in one read of the socket: one heartbeat
        self._catalog_publish = None
        await self.peers.heartbeat(self._state_body())

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    spawn = _spawn

    # --- pub/sub ------------------------------------------------------------------------

    def publish(self, topic: str, data: Any) -> tuple[int, bool]:
        """Publish an event as this node: to local subscribers, and to MQTT if another node wants it.

        Raises :class:`BadRequest` for a topic that is not a plain MQTT topic (it would become
        part of an MQTT topic name, and the broker would drop us for it).
        """
        if topic not in self._valid_topics:
            self._check_topic(topic, wildcards=False)
        ts = time.time()
        self.stats.events += 1
        subs = self.subs.match(self.id, topic)
        n = fan_out(subs, event_text(self.id, topic, data, ts)) if subs else 0
        remote = False
        if self.peers.wants(topic):
            self.peers.send_event(topic, data, ts)
            self.stats.events_remote_out += 1
            remote = True
        return n, remote

    def wanted(self, topic: str) -> bool:
        """Whether an event of ours on ``topic`` would reach anyone: a local subscriber or a peer's interest."""
        return bool(self.subs.match(self.id, topic)) or self.peers.wants(topic)

    def _check_topic(self, topic: str, *, wildcards: bool) -> None:
        """Raise :class:`BadRequest` unless ``topic`` is valid; remembers valid plain topics."""
        if err := topic_error(topic, wildcards=wildcards):
            raise BadRequest(err)
        if not wildcards and len(self._valid_topics) < 10_000:
            self._valid_topics.add(topic)

    async def subscribe(self, sub: Hashable, node: str, pattern: str) -> None:
        self._check_topic(pattern, wildcards=True)
        if node == self.id:
            self.subs.add(sub, node, pattern)
            return
        self.peers.check_reachable(node)
        if self.subs.has(sub, node, pattern):
            return
        first = self.subs.add(sub, node, pattern)
        if not first:
            return
        try:
            await self.peers.subscribe_remote(node, pattern)
        except BaseException:
            if self.subs.remove(sub, node, pattern):
                self.peers.release_remote(node, pattern, failed=True)   # our sub may have got there: unsub
            raise

    def unsubscribe(self, sub: Hashable, node: str, pattern: str) -> bool:
        self._check_topic(pattern, wildcards=True)
        if not self.subs.has(sub, node, pattern):
            return False
        if self.subs.remove(sub, node, pattern) and node != self.id:
            self.peers.release_remote(node, pattern)
        return True

    def subscription_count(self, sub: Hashable) -> int:
        return self.subs.count(sub)

    def client_gone(self, sub: Hashable) -> None:
        for node, pattern in self.subs.remove_all(sub):
            if node != self.id:
                self.peers.release_remote(node, pattern)
        self.pending.drop_owner(sub)
        if self.offers.drop_owner(cast(Offerer, sub)):   # compared by identity: any client object will do
            self._catalog_changed()

    def count_dropped(self, n: int) -> None:
        """Events a slow client never got."""
        self.stats.dropped += n

    def topics(self) -> dict[str, Any]:
        return {
            "local": self.subs.patterns(self.id),
            "remote": {n: self.subs.patterns(n) for n in self.subs.nodes() if n != self.id},
            "interests": self.interests.snapshot(),
        }

    def public_key(self) -> dict[str, str] | None:
        """This node's id and Ed25519 public key (``GET /pubkey``), or None without a signing key."""
        if self.signer is None:
            return None
        import base64

        from ._signing import fingerprint
        key = self.signer.public_key_b64
        return {"id": self.id, "public_key": key, "fingerprint": fingerprint(base64.b64decode(key))}

    def stats_snapshot(self) -> dict[str, Any]:
        s = self.stats
        calls_ps, events_ps = s.rates()
        fed = self.fed
        return {
            "node": self.id,
            "ts": time.time(),
            "clients": len(self.gateway.sessions),
            "rpc": {"calls": s.calls, "calls_per_s": round(calls_ps, 2), "errors": dict(s.errors),
                    "latency_ms": s.percentiles(), "recent": s.recent, "pending": len(self.pending),
                    "remote_out": s.remote_calls_out, "remote_in": s.remote_calls_in,
                    "late_replies": self.pending.late, "duplicates": s.duplicates, "late_calls": s.late_calls,
                    "client_methods": len(self.offers), "ignored_yields": self.offers.ignored_yields},
            "pubsub": {"topics": len(self.subs.patterns(self.id)), **self.subs.stats(),
                       "local_subscribers": len(self.subs.subscribers(self.id)),
                       "remote_interests": len(self.interests), "interests": self.interests.snapshot(),
                       "remote_subscriptions": self.topics()["remote"],
                       "mqtt_subscriptions": [t for t in (fed.subscriptions if fed else [])
                                              if "/events/" in t],
                       "events": s.events, "events_per_s": round(events_ps, 2), "dropped": s.dropped,
                       "events_remote_out": s.events_remote_out, "events_remote_in": s.events_remote_in},
            "federation": {"enabled": fed is not None, "connected": bool(fed and fed.connected.is_set()),
                           "broker": fed.url if fed else None,
                           "rejected": self.peers.rejected(),
                           "signing": self.signer is not None,
                           "unicast_auth": self.sealer.unicast if self.sealer else None,
                           "batches": dict(self.verifier.batches) if self.verifier else {},
                           **(fed.counters if fed else {})},
        }

    # --- what peers learn about us -------------------------------------------------------

    def _state_body(self) -> dict[str, Any]:
        m = self.system.last or self.system.sample()
        sup = self.supervisor
        return {
            "session": self.session, "ts": time.time(), "interval": self.settings.system.metrics_interval,
            "host": socket.gethostname(), "pid": os.getpid(), "version": __version__,
            "ws": self.gateway.url, "started": self.started,
            "metrics": m.model_dump(mode="json"),
            "catalog_hash": self._catalog()[1],
            "processes": [p.model_dump(mode="json") for p in sup.snapshot()] if sup is not None else [],
        }

    def _catalog(self) -> tuple[dict[str, Any], str]:
        """This node's service catalog (published apart from the heartbeat) and its hash: the registry's
        services and those clients offer (``offered_by: "client"``); made again only when either changed."""
        key = (tuple(svc.name for svc in self.registry), self.offers.version)
        if self._catalog_cache is None or self._catalog_cache[0] != key:
            described = {**self.registry.describe(), **self.offers.describe()}
            catalog = {name: {"description": svc["description"],
                              "methods": {k: {"description": v["description"], "mutates": v["mutates"],
                                              "params": v["params"],
                                              **({"offered_by": "client"} if "offered_by" in v else {})}
                                          for k, v in svc["methods"].items()}}
                       for name, svc in described.items()}
            self._catalog_cache = (key, catalog, catalog_hash(catalog))
        return self._catalog_cache[1], self._catalog_cache[2]

    def catalog(self) -> dict[str, Any]:
        return self._catalog()[0]

    heartbeat = _state_body

    # --- run -------------------------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def fail(self, message: str) -> None:
        """Stop for good: ``run`` raises ConfigError(message)."""
        self._fatal = message
        self._stopping.set()

    async def run(self, on_ready: Callable[["Node"], None] | None = None) -> None:
        """Serve until cancelled or :meth:`stop`; raises ConfigError on fatal problems."""
        from ._supervisor import Supervisor, SupervisorService
        broker = None
        try:
            url = self.settings.broker.url
            if url == "embedded":
                from ._broker import EmbeddedBroker
                broker = EmbeddedBroker(self.settings.broker.embedded_listen)
                await broker.start()
                url = broker.url
            self.supervisor = Supervisor(self.settings.processes, self.publish, node_id=self.id, wanted=self.wanted)
            self._register(SupervisorService(self.supervisor))
            async with self.supervisor:
                for svc in self.registry:
                    await svc.on_start()
                if url != "none":
                    await self.peers.join(url)
                await self.gateway.start()
                self._spawn(self._loop_metrics())
                self._spawn(self._loop_housekeeping())
                log.info("node %s serving %s (broker %s)", self.id, self.gateway.url, url)
                if on_ready:
                    on_ready(self)
                release_freed_memory()
                await self._stopping.wait()
                if self._fatal:
                    raise ConfigError(self._fatal)
                await self._shutdown()
        finally:
            await self._teardown()
            if broker is not None:
                await broker.stop()

    async def _loop_metrics(self) -> None:
        interval = self.settings.system.metrics_interval
        while True:
            m = self.system.sample()
            self.publish("metrics/system", m.model_dump(mode="json"))
            await self.peers.heartbeat(self._state_body())
            await asyncio.sleep(interval)

    async def _loop_housekeeping(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            # $sys/stats for whoever listens
            if self.wanted("$sys/stats"):
                self.publish("$sys/stats", self.stats_snapshot())
            self.peers.housekeeping(time.time())

    def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        log.info("node %s stopping", self.id)
        self.gateway.stop_accepting()
        self.pending.fail_all(f"{self.id} is shutting down")
        await self.gateway.close()

    async def _teardown(self) -> None:
        await self.gateway.close()
        self._call_deadlines.close()
        self._local_deadlines.close()
        log.debug("node %s: clients closed; stopping tasks and services", self.id)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for svc in self.registry:
            try:
                await svc.on_stop()
            except Exception:  # noqa: BLE001 - one service failing to stop must not keep the others running
                log.exception("stopping service %s failed", svc.name)
        await self.peers.leave()
        log.info("node %s stopped", self.id)
