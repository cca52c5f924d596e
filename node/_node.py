"""The node: owns the gateway, the federation link, the services and the tables.

Routing lives here, over the pure tables of ``_pubsub`` and ``_cluster``;
``_gateway`` and ``_federation`` are the I/O on either side.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import importlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections import deque
from importlib.metadata import entry_points
from typing import Any, Callable, Hashable

from . import __version__
from ._builtin import NodeService, PubSubService, SystemService
from ._cluster import FULL, Deadlines, Done, Membership, PendingTable, wire_error
from ._config import Settings, node_id_error
from ._errors import (BadRequest, CloudisenseError, ConfigError, ErrorCode, Forbidden, NodeOffline, UnknownNode,
                      from_wire, to_wire)
from ._gateway import Gateway
from ._heartbeat import heartbeat_error
from ._inbound import MAX_ENVELOPES, RETAINED, Inbound
from ._json import dumps, loads
from ._metrics import CallMetrics
from ._pubsub import InterestTable, SubscriptionTable
from ._ratelog import RateLimitedLog
from ._services import Registry, Service
from ._topics import topic_error

log = logging.getLogger(__name__)

SEEN_CALLS_SECONDS = 120.0


class Stats:
    """Counters for ``$sys/stats`` and ``pubsub.stats``."""

    def __init__(self) -> None:
        self.calls = 0
        self.remote_calls_out = 0
        self.remote_calls_in = 0
        self.errors: dict[str, int] = {}
        self.latency: deque[float] = deque(maxlen=2000)   # ms, recent calls
        self._recent: deque[tuple] = deque(maxlen=20)   # made into dicts when read (``recent``)
        self.events = 0
        self.events_remote_out = 0
        self.events_remote_in = 0
        self.dropped = 0
        self.duplicates = 0
        self.late_calls = 0
        self._window: deque[tuple[float, int, int]] = deque(maxlen=120)  # (t, calls, events)
        self.by_call = CallMetrics()   # /metrics: calls by kind/service/method/code, latency histogram

    def record(self, src: str, dst: str, service: str, method: str, ms: float, code: str | None) -> None:
        self.calls += 1
        self.latency.append(ms)
        if code:
            self.errors[code] = self.errors.get(code, 0) + 1
        self._recent.append((src, dst, service, method, ms, code, time.time()))
        self.by_call.observe(src == dst, service, method, code, ms)

    @property
    def recent(self) -> list[dict[str, Any]]:
        """The last calls, newest last."""
        return [{"from": src, "to": dst, "service": service, "method": method, "ms": round(ms, 3),
                 "ok": code is None, "code": code, "ts": ts}
                for src, dst, service, method, ms, code, ts in self._recent]

    def rates(self) -> tuple[float, float]:
        now = time.monotonic()
        self._window.append((now, self.calls, self.events))
        while len(self._window) > 2 and now - self._window[0][0] > 5:
            self._window.popleft()
        t0, c0, e0 = self._window[0]
        dt = now - t0
        if dt <= 0:
            return 0.0, 0.0
        return (self.calls - c0) / dt, (self.events - e0) / dt

    def percentiles(self) -> dict[str, float]:
        if not self.latency:
            return {"p50": 0.0, "p99": 0.0}
        xs = sorted(self.latency)
        return {"p50": round(xs[len(xs) // 2], 3), "p99": round(xs[min(len(xs) - 1, int(len(xs) * 0.99))], 3)}


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


class _TaskDeadlines:
    """Cancels local method runs that outlast their deadline: one :class:`Deadlines` heap, one loop timer.

    ``asyncio.timeout()`` per call (a Timeout, a timer handle with a context copy, a
    heap push and a cancel) was ~6% of a node's time answering local calls (P1 of
    ``bench/``).
    """

    def __init__(self) -> None:
        self._live: set[asyncio.Task] = set()
        self._heap = Deadlines(self._live)
        self._expired: set[asyncio.Task] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, task: asyncio.Task, t: float) -> None:
        loop = task.get_loop()
        when = loop.time() + t
        self._live.add(task)
        self._heap.add(task, when)
        if self._timer is None or self._timer.when() > when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = loop.call_at(when, self._fire, loop)

    def finished(self, task: asyncio.Task) -> bool:
        """Forget ``task``; True if its deadline is what cancelled it."""
        self._live.discard(task)
        self._heap.compact()
        if self._expired and task in self._expired:
            self._expired.discard(task)
            return True
        return False

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        # a timer may run up to the clock resolution early: a millisecond of slack
        for task, _ in self._heap.pop_due(loop.time() + 0.001):
            if not task.done():
                self._expired.add(task)
                task.cancel()
        nxt = self._heap.next()
        if nxt is not None:
            self._timer = loop.call_at(nxt, self._fire, loop)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


class _Listener:
    """An in-process subscriber (``node.listen``): events land in a bounded queue."""

    def __init__(self, maxsize: int = 1000) -> None:
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize)

    def deliver_event(self, text: str) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(loads(text))


class Node:
    """A CloudiSENSE node.  ``await Node(settings).run()`` serves until cancelled or stopped."""

    version = __version__

    def __init__(self, settings: Settings, *, extra_services: list[Service] | None = None) -> None:
        self.settings = settings
        self.id = settings.id
        self.prefix = settings.broker.prefix
        self.session = uuid.uuid4().hex
        # Envelope ids: this process's random session prefix + a counter (unique, and cheap per message).
        self._id_prefix = self.session[:12] + "-"
        self._id_seq = itertools.count(1)
        self._valid_ids: set[str] = set()   # node ids that passed node_id_error (resolve_target)
        self._deadline_timer: asyncio.TimerHandle | None = None   # for the earliest pending call
        self._local_deadlines = _TaskDeadlines()
        self.started = time.time()
        self.registry = Registry()
        self.subs = SubscriptionTable()
        self.interests = InterestTable()
        self.members = Membership(self.id, max_members=settings.cluster.max_members)
        self.pending = PendingTable()
        self.stats = Stats()
        self.fed: Any = None
        self.supervisor: Any = None
        self.signer: Any = None
        self.sealer: Any = None     # seals what the federation sends (MAC or signature)
        self.verifier: Any = None
        self.gateway = Gateway(self, settings)
        self.system = SystemService(settings.system.temperature, seed=self.id)
        self._seen_calls: dict[tuple[str, str], float] = {}
        self._valid_topics: set[str] = set()   # event topics that passed topic_error
        self._tasks: set[asyncio.Task] = set()
        self._stopping = asyncio.Event()
        self._fatal: str | None = None
        self._ready = asyncio.Event()
        self._offline_notice_sent = False
        self._conn_ts = 0.0   # ts of the current broker connection's presence (online and will)
        for svc in (NodeService(), self.system, PubSubService(), *(extra_services or [])):
            self._register(svc)
        self._load_plugins()
        self._setup_security()
        self.inbound = Inbound(self.id, self._handlers, self.verifier)
        # Membership changes are news, but peers (or fakes of them) decide how many there are.
        self._member_log = RateLimitedLog(log, max_keys=256)

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
            except Exception as e:
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

    def _wire(self, env: dict[str, Any]) -> bytes:
        """One envelope as an MQTT payload, sealed when signing is on (the will, the final presence)."""
        return self.sealer.wire([env]) if self.sealer is not None else dumps(env).encode()

    # --- topics ----------------------------------------------------------------

    def inbox(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/inbox"

    def events_topic(self, node: str, topic: str) -> str:
        return f"{self.prefix}/node/{node}/events/{topic}"

    def presence_topic(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/presence"

    def state_topic(self, node: str) -> str:
        return f"{self.prefix}/node/{node}/state"

    # --- envelopes -------------------------------------------------------------

    def envelope(self, kind: str, to: str | None, body: dict[str, Any], ts: float | None = None) -> dict[str, Any]:
        # Sealed (MAC or signature) by the federation as it goes out: one for a whole batch.
        return {"v": 1, "kind": kind, "from": self.id, "to": to, "id": f"{self._id_prefix}{next(self._id_seq):x}",
                "ts": ts if ts is not None else time.time(), "body": body}

    def _presence(self, state: str, ts: float | None = None) -> dict[str, Any]:
        return self.envelope("presence", None, {"state": state, "session": self.session}, ts)

    def _will(self) -> tuple[str, bytes]:
        """The last will of the connection about to be made.

        Receivers keep a node's presence only when it is not older than the last
        one they saw, and the will is written before its connection's ``online``
        presence.  Both carry the ts of the connection (``_conn_ts``), so this
        connection's will still gets through while a late will of an earlier
        connection of ours (the broker noticed the dead link after we came back)
        does not.
        """
        self._conn_ts = time.time()
        return self.presence_topic(self.id), self._wire(self._presence("offline", self._conn_ts))

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
        fut: asyncio.Future = asyncio.get_running_loop().create_future()

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
        return self.members.table()

    # --- calls -------------------------------------------------------------------

    def method_mutates(self, target: str, service: str, method: str) -> bool:
        """Whether a call may change state; unknown methods count as mutating."""
        if target == self.id or target == "*":
            try:
                return self.registry.mutates(service, method)
            except CloudisenseError:
                return target == "*"
        m = self.members.get(target)
        meta = (m.state.get("catalog", {}) if m else {}).get(service, {}).get("methods", {}).get(method)
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
                self._spawn(self._run_local(service, method, params, t, role, lambda r, e: None))
                done(None, None)
                return
            self._spawn(self._run_local(service, method, params, t, role, finish))
            return
        if target == "*":
            self._broadcast(service, method, params, t, role, owner, finish, reply)
            return
        try:
            self._check_reachable(target)
        except CloudisenseError as e:
            finish(None, e.to_wire())
            return
        body = {"service": service, "method": method, "params": params or {}, "reply_by": time.time() + t,
                "role": role}
        if not reply:
            body["reply"] = False
            self.fed.send(self.inbox(target), self.envelope("call", target, body))
            done(None, None)
            return
        env = self.envelope("call", target, body)
        req = env["id"]
        self.pending.add_call(req, target, owner, finish)
        self._deadline(req, t, lambda: f"{target} did not answer within {t:g} s")
        self.stats.remote_calls_out += 1
        self.fed.send(self.inbox(target), env)

    def _deadline(self, req: str, t: float, why: str | Callable[[], str]) -> None:
        """``req`` (pending) times out in ``t`` seconds; one loop timer serves every pending call."""
        loop = asyncio.get_running_loop()
        if self.pending.set_deadline(req, loop.time() + t, why):
            self._arm_deadlines()

    def _arm_deadlines(self) -> None:
        nxt = self.pending.next_deadline()
        timer = self._deadline_timer
        if timer is not None:
            if nxt is not None and timer.when() <= nxt:
                return   # already set to fire no later than needed
            timer.cancel()
            self._deadline_timer = None
        if nxt is not None:
            self._deadline_timer = asyncio.get_running_loop().call_at(nxt, self._on_deadline)

    def _on_deadline(self) -> None:
        self._deadline_timer = None
        # the loop may run a timer up to its clock resolution early: a millisecond of slack
        self.pending.expire_due(asyncio.get_running_loop().time() + 0.001)
        self._arm_deadlines()

    def _check_reachable(self, target: str) -> None:
        if self.fed is None:
            raise UnknownNode(f"no node {target!r}: this node runs without federation (broker.url = none)",
                              node=target)
        if target not in self.members:
            raise UnknownNode(f"no node {target!r} has been seen in the cluster", node=target)
        if not self.members.is_online(target):
            raise NodeOffline(f"{target} is offline", node=target)
        if not self.fed.connected.is_set():
            raise NodeOffline(f"{target} is unreachable: this node is not connected to the broker", node=target)

    def _broadcast(self, service: str, method: str, params: dict[str, Any] | None, t: float, role: str,
                   owner: Hashable, finish: Done, reply: bool) -> None:
        remote = [n for n in self.members.online_ids() if n != self.id] if self.fed is not None else []
        body = {"service": service, "method": method, "params": params or {}, "reply_by": time.time() + t,
                "role": role}
        if not reply:
            body["reply"] = False
        env = self.envelope("call", "*", body)
        req = env["id"]
        if reply:
            self.pending.add_gather(req, {self.id, *remote}, owner, finish)
            self._deadline(req, t, "no answer in time")
            self._spawn(self._run_local(service, method, params, t, role,
                                        lambda r, e: self.pending.resolve(req, self.id, r, e)))
        else:
            self._spawn(self._run_local(service, method, params, t, role, lambda r, e: None))
            finish(None, None)
        if self.fed is not None and self.fed.connected.is_set():
            self.fed.send(f"{self.prefix}/broadcast", env)

    async def _run_local(self, service: str, method: str, params: dict[str, Any] | None, t: float, role: str,
                         done: Done) -> None:
        """Run a method of this node in its own task (``_spawn``), within ``t`` seconds."""
        task = asyncio.current_task()
        assert task is not None
        self._local_deadlines.add(task, t)
        timed_out = False
        try:
            if role != "operator" and self.registry.mutates(service, method):
                raise Forbidden(f"{service}.{method} changes state; role {role!r} may not call it")
            result = await self.registry.call(service, method, params)
        except TimeoutError:
            timed_out = True
        except CloudisenseError as e:
            done(None, e.to_wire())
        except asyncio.CancelledError:
            if not self._local_deadlines.finished(task):
                done(None, wire_error(ErrorCode.NODE_OFFLINE, f"{self.id} is shutting down"))
                raise
            task.uncancel()   # our deadline's cancel, answered as a timeout
            timed_out = True
        except Exception as e:
            log.exception("%s.%s failed", service, method)
            done(None, to_wire(e))
        else:
            done(result, None)
        finally:
            self._local_deadlines.finished(task)
        if timed_out:
            done(None, wire_error(ErrorCode.TIMEOUT, f"{self.id} did not finish {service}.{method} within {t:g} s"))

    def _spawn(self, coro: Any) -> asyncio.Task:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    # --- pub/sub ------------------------------------------------------------------------

    def _event_text(self, node: str, topic: str, data: Any, ts: float) -> str:
        return dumps({"type": "event", "node": node, "topic": topic, "data": data, "ts": ts})

    def _fan_out(self, subscribers: set, text: str) -> int:
        for s in subscribers:
            s.deliver_event(text)
        return len(subscribers)

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
        n = self._fan_out(subs, self._event_text(self.id, topic, data, ts)) if subs else 0
        remote = False
        if self.fed is not None and self.interests.wanted(topic) and self.fed.connected.is_set():
            self.fed.send(self.events_topic(self.id, topic),
                          self.envelope("event", None, {"topic": topic, "data": data}, ts),
                          qos=self.settings.broker.event_qos)
            self.stats.events_remote_out += 1
            remote = True
        return n, remote

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
        self._check_reachable(node)
        if self.subs.has(sub, node, pattern):
            return
        first = self.subs.add(sub, node, pattern)
        if not first:
            return
        try:
            await self.fed.subscribe(self.events_topic(node, pattern), qos=self.settings.broker.event_qos)
            await self._control(node, "sub", {"topic": pattern})
        except BaseException:
            if self.subs.remove(sub, node, pattern):
                await self.fed.unsubscribe(self.events_topic(node, pattern))
            raise

    def unsubscribe(self, sub: Hashable, node: str, pattern: str) -> bool:
        self._check_topic(pattern, wildcards=True)
        if not self.subs.has(sub, node, pattern):
            return False
        if self.subs.remove(sub, node, pattern) and node != self.id:
            self._release_remote(node, pattern)
        return True

    def _release_remote(self, node: str, pattern: str) -> None:
        if self.fed is None:
            return
        self._spawn(self.fed.unsubscribe(self.events_topic(node, pattern)))
        if self.members.is_online(node) and self.fed.connected.is_set():
            self.fed.send(self.inbox(node), self.envelope("unsub", node, {"topic": pattern}))

    def client_gone(self, sub: Hashable) -> None:
        for node, pattern in self.subs.remove_all(sub):
            if node != self.id:
                self._release_remote(node, pattern)
        self.pending.drop_owner(sub)

    async def _control(self, node: str, kind: str, body: dict[str, Any]) -> Any:
        """Send a subscription-control envelope and wait for its acknowledgement."""
        fut: asyncio.Future = asyncio.get_running_loop().create_future()

        def done(result: Any, error: dict[str, Any] | None) -> None:
            if not fut.done():
                fut.set_exception(from_wire(error, node=node)) if error else fut.set_result(result)

        env = self.envelope(kind, node, body)
        t = self.settings.rpc.timeout
        self.pending.add_call(env["id"], node, fut, done)
        self._deadline(env["id"], t, f"{node} did not acknowledge the subscription within {t:g} s")
        self.fed.send(self.inbox(node), env)
        return await fut

    def topics(self) -> dict[str, Any]:
        return {
            "local": self.subs.patterns(self.id),
            "remote": {n: self.subs.patterns(n) for n in self.subs.nodes() if n != self.id},
            "interests": self.interests.snapshot(),
        }

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
                    "late_replies": self.pending.late, "duplicates": s.duplicates, "late_calls": s.late_calls},
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
                           "rejected": self._rejected(),
                           "signing": self.signer is not None,
                           "unicast_auth": self.sealer.unicast if self.sealer else None,
                           "batches": dict(self.verifier.batches) if self.verifier else {},
                           **(fed.counters if fed else {})},
        }

    def _rejected(self) -> dict[str, int]:
        """Inbound envelopes dropped, by reason: the verifier's and the edge's (``_inbound``)."""
        out = dict(self.verifier.counts) if self.verifier else {}
        for reason, n in self.inbound.counts.items():
            out[reason] = out.get(reason, 0) + n
        return out

    # --- federation: inbound ---------------------------------------------------------------

    def on_envelopes(self, topic: str, message: Any) -> None:
        """Route what one MQTT message carried (an envelope, a batch or an array), once the edge admitted it."""
        for env in self.inbound.admit(message):
            kind, frm = env["kind"], env["from"]
            if kind in RETAINED and frm != self.id:
                # retained and verified without the replay window: keep only newer ones
                ts = env.get("ts")
                if not isinstance(ts, (int, float)) or not self.members.newer(frm, kind, ts):
                    continue
            try:
                self._handlers[kind](self, frm, env, topic)
            except (KeyError, TypeError, AttributeError, ValueError) as e:
                self.inbound.reject("malformed", frm, f"a {kind} envelope: {type(e).__name__}: {e}")

    def _h_call(self, frm: str, env: dict[str, Any], topic: str) -> None:
        body = env["body"]
        rid = env["id"]
        key = (frm, rid)
        now = time.time()
        if key in self._seen_calls:
            self.stats.duplicates += 1
            return
        self._seen_calls[key] = now
        reply_by = float(body.get("reply_by") or now + self.settings.rpc.timeout)
        if not reply_by > now:   # (NaN too)
            self.stats.late_calls += 1
            return
        self.stats.remote_calls_in += 1
        want_reply = body.get("reply", True)
        service, method = str(body["service"]), str(body["method"])
        t0 = time.perf_counter()

        def done(result: Any, error: dict[str, Any] | None) -> None:
            self.stats.record(frm, self.id, service, method, (time.perf_counter() - t0) * 1000,
                              error["code"] if error else None)
            if not want_reply or self.fed is None:
                return
            rbody: dict[str, Any] = {"re": rid}
            if error is not None:
                rbody["error"] = error
                kind = "error"
            else:
                rbody["result"] = result
                kind = "result"
            self.fed.send(self.inbox(frm), self.envelope(kind, frm, rbody))

        params = body.get("params")
        self._spawn(self._run_local(service, method, params if isinstance(params, dict) else {},
                                    min(reply_by - now, self.settings.rpc.max_timeout),
                                    str(body.get("role", "viewer")), done))

    def _h_reply(self, frm: str, env: dict[str, Any], topic: str) -> None:
        body = env["body"]
        if env["kind"] == "error":
            self.pending.resolve(str(body["re"]), frm, None, body["error"])
        else:
            self.pending.resolve(str(body["re"]), frm, body.get("result"), None)

    def _ack(self, frm: str, env: dict[str, Any], result: Any) -> None:
        self.fed.send(self.inbox(frm), self.envelope("result", frm, {"re": env["id"], "result": result}))

    def _h_sub(self, frm: str, env: dict[str, Any], topic: str) -> None:
        pattern = env["body"]["topic"]
        if topic_error(pattern, wildcards=True):
            self.inbound.reject("bad_topic", frm, "a subscription to an invalid topic filter")
            self.fed.send(self.inbox(frm), self.envelope("error", frm, {
                "re": env["id"], "error": wire_error(ErrorCode.BAD_REQUEST, f"bad topic filter {pattern!r}")}))
            return
        lease = self.settings.broker.lease_seconds
        self.interests.add(frm, pattern, time.time() + lease)
        self._ack(frm, env, {"topic": pattern, "lease": lease})

    def _h_unsub(self, frm: str, env: dict[str, Any], topic: str) -> None:
        pattern = env["body"]["topic"]
        if isinstance(pattern, str):
            self.interests.remove(frm, pattern)

    def _h_lease(self, frm: str, env: dict[str, Any], topic: str) -> None:
        patterns = env["body"]["topics"]
        if not isinstance(patterns, list) or any(topic_error(p, wildcards=True) for p in patterns):
            self.inbound.reject("bad_topic", frm, "a lease naming an invalid topic filter")
            return
        self.interests.refresh(frm, patterns, time.time() + self.settings.broker.lease_seconds)

    def _h_event(self, frm: str, env: dict[str, Any], topic: str) -> None:
        body = env["body"]
        t = body["topic"]
        if t not in self._valid_topics:
            if topic_error(t, wildcards=False):
                self.inbound.reject("bad_topic", frm, "an event on an invalid topic")
                return
            if len(self._valid_topics) < 10_000:
                self._valid_topics.add(t)
        self.stats.events_remote_in += 1
        subs = self.subs.match(frm, t)
        if subs:
            self._fan_out(subs, self._event_text(frm, t, body.get("data"), env.get("ts", time.time())))

    def _h_presence(self, frm: str, env: dict[str, Any], topic: str) -> None:
        body = env["body"]
        if frm == self.id:
            state, ts = body.get("state"), env.get("ts")
            if state == "online" and body.get("session") != self.session:
                self._other_self = env
            elif (state == "offline" and body.get("session") == self.session and isinstance(ts, (int, float))
                  and ts < self._conn_ts and not self._stopping.is_set() and self.fed is not None):
                # The broker gave up an earlier connection of ours only after we were back, and
                # published its will: peers drop it (older than our presence), but it is now the
                # retained presence a later joiner reads.  Say online again.
                log.info("the broker published the will of an earlier connection of ours; announcing online again")
                self._spawn(self.fed.publish_retained(self.presence_topic(self.id),
                                                      self._presence("online", self._conn_ts)))
            return
        change = self.members.on_presence(frm, body["state"], str(body.get("session", "")), time.time(),
                                          env["ts"])
        if change == FULL:
            self._membership_full(frm)
        elif change == "online":
            self._node_online(frm)
        elif change == "offline":
            self._node_offline(frm, "went offline")
        elif body["state"] == "online" and self.members.is_online(frm):
            # It (re)connected to the broker without ever looking gone to us; it may have
            # given *us* up meanwhile (it judges our heartbeats by its own clock) and
            # dropped our interests.  Subscribing again costs one envelope per filter.
            self._resubscribe(frm)

    def _h_state(self, frm: str, env: dict[str, Any], topic: str) -> None:
        body = env["body"]
        if frm == self.id:
            return
        if (why := heartbeat_error(body)) is not None:
            # Taken in, it would break whatever reads it later: the housekeeping loop
            # (stale check on "interval"), role checks, the tools' view of the cluster.
            self.inbound.reject("bad_state", frm, f"a heartbeat that fails its model: {why}")
            return
        change = self.members.on_state(frm, body.get("session", ""), body, time.time(), env["ts"])
        if change == FULL:
            self._membership_full(frm)
        elif change == "online":
            self._node_online(frm)
        elif self.members.is_online(frm):
            m = self.members.get(frm)
            self._emit_cluster("state", frm, m.view() if m else {})

    _handlers: dict[str, Callable[..., None]] = {
        "call": _h_call, "result": _h_reply, "error": _h_reply, "sub": _h_sub, "unsub": _h_unsub,
        "lease": _h_lease, "event": _h_event, "presence": _h_presence, "state": _h_state,
    }

    # --- membership changes ------------------------------------------------------------

    def _membership_full(self, node: str) -> None:
        self.inbound.reject("membership_full", node, f"the membership table is full "
                            f"({self.members.max_members} members, cluster.max_members; none offline to replace)")

    def _emit_cluster(self, what: str, node: str, data: dict[str, Any], extra: set | None = None) -> None:
        topic = f"$cluster/node/{what}"
        subs = self.subs.match(self.id, topic)
        if extra:
            subs = subs | extra
        if subs:
            self._fan_out(subs, self._event_text(node, topic, data, time.time()))

    def _node_online(self, node: str) -> None:
        self._member_log.log(logging.INFO, ("online", node), "node %s is online", node)
        m = self.members.get(node)
        self._emit_cluster("online", node, m.view() if m else {"id": node}, self.subs.subscribers(node))
        # Re-establish our relayed subscriptions on it (it lost them when it went away).
        self._resubscribe(node)

    def _resubscribe(self, node: str) -> None:
        if self.fed is None:
            return
        for pattern in self.subs.patterns(node):
            self.fed.send(self.inbox(node), self.envelope("sub", node, {"topic": pattern}))

    def _node_offline(self, node: str, why: str) -> None:
        self._member_log.log(logging.INFO, ("offline", node), "node %s %s", node, why)
        dropped = self.interests.drop(node)
        failed = self.pending.fail_node(node, f"{node} {why}")
        m = self.members.get(node)
        self._emit_cluster("offline", node, m.view() if m else {"id": node}, self.subs.subscribers(node))
        log.debug("node %s offline: dropped %d interests, failed %d calls", node, dropped, failed)

    # --- federation: connection -------------------------------------------------------------

    def _state_body(self) -> dict[str, Any]:
        m = self.system.last or self.system.sample()
        sup = self.supervisor
        return {
            "session": self.session, "ts": time.time(), "interval": self.settings.system.metrics_interval,
            "host": socket.gethostname(), "pid": os.getpid(), "version": __version__,
            "ws": self.gateway.url, "started": self.started,
            "metrics": m.model_dump(mode="json"),
            "catalog": {name: {"description": svc["description"],
                               "methods": {k: {"description": v["description"], "mutates": v["mutates"],
                                               "params": v["params"]}
                                           for k, v in svc["methods"].items()}}
                        for name, svc in self.registry.describe().items()},
            "processes": [p.model_dump(mode="json") for p in sup.snapshot()] if hasattr(sup, "snapshot") else [],
        }

    def _on_connected(self) -> None:
        self._spawn(self._after_connect())

    async def _after_connect(self) -> None:
        fed = self.fed
        await fed.publish_retained(self.presence_topic(self.id), self._presence("online", self._conn_ts))
        await fed.publish_retained(self.state_topic(self.id), self.envelope("state", None, self._state_body()),
                                   qos=0)
        # Restore our relayed subscriptions (the broker lost nothing of ours with a
        # clean session except subscriptions, which the adapter re-made; the remote
        # interests may have expired).
        for node in self.subs.nodes():
            if node != self.id and self.members.is_online(node):
                for pattern in self.subs.patterns(node):
                    fed.send(self.inbox(node), self.envelope("sub", node, {"topic": pattern}))
        self._ready.set()

    def _on_disconnected(self, reason: str) -> None:
        self.pending.fail_all(f"lost the connection to the broker ({reason})")

    def _on_fatal(self, message: str) -> None:
        self._fatal = message
        self._stopping.set()

    async def _check_unique_id(self) -> None:
        """Refuse to start when a live node already uses this id."""
        self._other_self = None
        await self.fed.subscribe(self.presence_topic(self.id), qos=1)
        await self.fed.subscribe(self.state_topic(self.id), qos=0)
        try:
            async with asyncio.timeout(0.5):  # retained messages arrive right after SUBACK
                while self._other_self is None or self._other_state is None:
                    await asyncio.sleep(0.02)
        except TimeoutError:
            pass
        other = self._other_self
        if other is None:
            return
        st = self._other_state or {}
        age = time.time() - float(st.get("ts") or 0)
        alive = age < 3 * float(st.get("interval", 5.0))
        if st.get("host") == socket.gethostname() and st.get("pid"):
            try:
                os.kill(int(st["pid"]), 0)
            except (ProcessLookupError, ValueError):
                alive = False
            except PermissionError:
                pass
        if alive:
            raise ConfigError(
                f"node id {self.id!r} is already online (host {st.get('host', '?')}, pid {st.get('pid', '?')}, "
                f"ws {st.get('ws', '?')}, last heartbeat {age:.1f} s ago); choose another --id or stop that node")

    # --- run -------------------------------------------------------------------------------

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
            self.supervisor = Supervisor(self.settings.processes, self.publish, node_id=self.id)
            self._register(SupervisorService(self.supervisor))
            async with self.supervisor:
                for svc in self.registry:
                    await svc.on_start()
                if url != "none":
                    await self._start_federation(url)
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

    async def _start_federation(self, url: str) -> None:
        from ._federation import Federation
        b = self.settings.broker
        self._other_state = None
        self.fed = Federation(
            node_id=self.id, url=url, keepalive=b.keepalive, connect_timeout=b.connect_timeout,
            will=self._will,
            on_envelopes=self._on_envelopes_first, on_connected=lambda: None,
            on_disconnected=self._on_disconnected, on_fatal=self._on_fatal,
            username=b.username, password=b.password, ca=b.ca, cert=b.cert, key=b.key,
            packer=self.sealer)
        await self.fed.__aenter__()
        try:
            async with asyncio.timeout(b.connect_timeout):
                while not self.fed.connected.is_set():
                    if self._fatal:
                        raise ConfigError(self._fatal)
                    await asyncio.sleep(0.01)
        except TimeoutError:
            raise ConfigError(f"cannot reach the MQTT broker at {url} within {b.connect_timeout:g} s "
                              f"({self.fed.explain()})") from None
        await self._check_unique_id()
        await self.fed.unsubscribe(self.presence_topic(self.id))
        await self.fed.unsubscribe(self.state_topic(self.id))
        self.fed._on_envelopes = self.on_envelopes
        self.fed._on_connected = self._on_connected
        for topic, qos in ((self.inbox(self.id), 1), (f"{self.prefix}/broadcast", 1),
                           (f"{self.prefix}/node/+/presence", 1), (f"{self.prefix}/node/+/state", 0)):
            await self.fed.subscribe(topic, qos)
        self._on_connected()

    def _on_envelopes_first(self, topic: str, message: Any) -> None:
        """Before we join: only look for another node with our id."""
        envs = message if isinstance(message, list) else [message]
        for env in envs[:MAX_ENVELOPES]:
            if not isinstance(env, dict):
                continue
            if self.verifier is not None and self.verifier.verify(env, fresh=False) is not None:
                continue
            if env.get("from") != self.id:
                continue
            body = env.get("body")
            if not isinstance(body, dict):
                continue
            if env.get("kind") == "presence" and body.get("state") == "online" and body.get("session") != self.session:
                self._other_self = env
            elif (env.get("kind") == "state" and body.get("session") != self.session
                  and heartbeat_error(body) is None):
                self._other_state = body

    async def _loop_metrics(self) -> None:
        interval = self.settings.system.metrics_interval
        while True:
            m = self.system.sample()
            self.publish("metrics/system", m.model_dump(mode="json"))
            body = self._state_body()
            self.members.set_self(self.session, body, time.time())
            self._emit_cluster("state", self.id, self.members.get(self.id).view())
            if self.fed is not None and self.fed.connected.is_set():
                await self.fed.publish_retained(self.state_topic(self.id), self.envelope("state", None, body),
                                                qos=0)
            await asyncio.sleep(interval)

    async def _loop_housekeeping(self) -> None:
        lease = self.settings.broker.lease_seconds
        grace = self.settings.broker.keepalive * 1.5
        last_lease = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            # $sys/stats for whoever listens
            if self.subs.match(self.id, "$sys/stats") or self.interests.wanted("$sys/stats"):
                self.publish("$sys/stats", self.stats_snapshot())
            # Forget old call ids (de-duplication window); insertion order is time order.
            seen, cutoff = self._seen_calls, now - SEEN_CALLS_SECONDS
            while seen:
                key = next(iter(seen))
                if seen[key] >= cutoff:
                    break
                del seen[key]
            if self.fed is None:
                continue
            for remote, pattern in self.interests.expire(now):
                log.info("interest of %s in %s expired (lease not renewed)", remote, pattern)
            for node in self.members.stale(now, grace):
                if self.members.mark_offline(node, now):
                    self._node_offline(node, "stopped sending heartbeats")
            for node in self.members.expire(now, self.settings.cluster.offline_expiry):
                self._member_log.log(logging.INFO, ("forgot", node), "forgot node %s: offline for more than "
                                     "%g s (cluster.offline_expiry)", node, self.settings.cluster.offline_expiry)
            if time.monotonic() - last_lease >= lease / 3 and self.fed.connected.is_set():
                last_lease = time.monotonic()
                for node in self.subs.nodes():
                    if node != self.id and self.members.is_online(node):
                        self.fed.send(self.inbox(node),
                                      self.envelope("lease", node, {"topics": self.subs.patterns(node)}))

    def stop(self) -> None:
        self._stopping.set()

    async def _shutdown(self) -> None:
        log.info("node %s stopping", self.id)
        self.gateway.stop_accepting()
        self.pending.fail_all(f"{self.id} is shutting down")
        await self.gateway.close()

    async def _teardown(self) -> None:
        await self.gateway.close()
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        self._local_deadlines.close()
        log.debug("node %s: clients closed; stopping tasks and services", self.id)
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for svc in self.registry:
            try:
                await svc.on_stop()
            except Exception:
                log.exception("stopping service %s failed", svc.name)
        if self.fed is not None:
            log.info("node %s: leaving the federation", self.id)
            await self.fed.close(final=(self.presence_topic(self.id), self._wire(self._presence("offline"))))
        log.info("node %s stopped", self.id)
