"""N simulated peers in one process, speaking the federation contract (docs/protocol.md §2, unsigned).

Used by ``bench/scale_p9.py``: one real node joins a broker where N simulated
peers live, and the benchmark measures what that costs the node and the broker.

Each simulated peer (``sim-00001`` …):

* announces itself: ``presence online`` (retained, QoS 1) and its service
  catalog (retained, on ``{p}/node/{id}/catalog``, once);
* sends a heartbeat every ``interval`` seconds, the N of them spread evenly
  over the interval, to its ``state`` topic (retained, QoS 0): metrics, the
  catalog's hash and a liveness timestamp;
* answers calls to its inbox (``node.ping``, ``node.describe``; anything else: ``unknown_service``),
  probes (``probe`` → ``ack``; a ``probe`` naming another simulated ``target`` is
  answered for it at once), suspicions (``member suspect|offline`` about one of
  them: refuted with ``member alive``), and broadcast calls (one reply per peer,
  in arrays of at most 256 envelopes).

One MQTT connection carries all of them, so a simulated peer has no will of its
own (the benchmark doesn't kill them).  ``legacy=True`` speaks the contract as
it was before issue 20 (the whole catalog inside every heartbeat), for the
"before" numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import sys
import time
import uuid
from typing import Any

import aiomqtt

MAX_BATCH = 256
_QUIET = logging.getLogger("sim.mqtt")   # aiomqtt warns of every publish queued behind others: by design here
_QUIET.setLevel(logging.ERROR)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def catalog_hash(catalog: dict[str, Any]) -> str:
    """As the node computes it (``node/_heartbeat.catalog_hash``): BLAKE2b-128 of the canonical JSON."""
    text = json.dumps(catalog, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


class Sim:
    """``n`` simulated peers on the broker at ``host:port`` under ``prefix``."""

    def __init__(self, host: str, port: int, prefix: str, n: int, catalog: dict[str, Any], *,
                 interval: float = 5.0, legacy: bool = False) -> None:
        self.host, self.port, self.prefix, self.n = host, port, prefix, n
        self.interval = interval
        self.legacy = legacy
        self.catalog = catalog
        self.hash = catalog_hash(catalog)
        self.ids = [f"sim-{i:05d}" for i in range(1, n + 1)]
        self._idset = set(self.ids)
        self.sessions = {i: uuid.uuid4().hex for i in self.ids}
        self.started = time.time()
        self._seq = 0
        self._client: aiomqtt.Client | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.calls = self.broadcasts = self.probes = self.refutations = 0

    # --- envelopes ---------------------------------------------------------------------

    def _env(self, frm: str, kind: str, to: str | None, body: dict[str, Any]) -> dict[str, Any]:
        self._seq += 1
        return {"v": 1, "kind": kind, "from": frm, "to": to, "id": f"sim{self._seq:x}", "ts": time.time(),
                "body": body}

    def _state(self, node: str) -> dict[str, Any]:
        body: dict[str, Any] = {
            "session": self.sessions[node], "ts": time.time(), "interval": self.interval, "host": "sim",
            "pid": 1, "version": "sim", "ws": None, "started": self.started,
            "metrics": {"cpu_percent": random.uniform(1, 90), "memory_percent": random.uniform(10, 80),
                        "load": [0.5, 0.4, 0.3], "disk_percent": 40.0,
                        "temperature_c": random.uniform(35, 80), "simulated": True, "ts": time.time()},
            "processes": [{"name": "logger", "state": "running", "pid": 2, "restarts": 0, "uptime": 10.0,
                           "exit_code": None, "command": ["sleep", "infinity"]}],
        }
        if self.legacy:
            body["catalog"] = self.catalog
        else:
            body["catalog_hash"] = self.hash
        return body

    def topic(self, node: str, what: str) -> str:
        return f"{self.prefix}/node/{node}/{what}"

    # --- life ----------------------------------------------------------------------------

    async def __aenter__(self) -> "Sim":
        self._client = aiomqtt.Client(self.host, self.port, identifier=f"sim-{uuid.uuid4().hex[:8]}",
                                      clean_session=True, keepalive=30, max_inflight_messages=10000,
                                      max_queued_incoming_messages=0, logger=_QUIET)
        await self._client.__aenter__()
        await self._client.subscribe(f"{self.prefix}/node/+/inbox", qos=1)
        await self._client.subscribe(f"{self.prefix}/broadcast", qos=1)
        await self._client.subscribe(f"{self.prefix}/members", qos=1)
        self._tasks.append(asyncio.create_task(self._rx()))
        return self

    async def announce(self) -> None:
        """Every peer's catalog (new contract), state and presence, as fast as the link goes."""
        c = self._client
        assert c is not None

        async def one(node: str) -> None:
            if not self.legacy:
                await c.publish(self.topic(node, "catalog"),
                                _dumps(self._env(node, "catalog", None, {"hash": self.hash, "catalog": self.catalog})),
                                qos=0, retain=True)
            await c.publish(self.topic(node, "state"), _dumps(self._env(node, "state", None, self._state(node))),
                            qos=0, retain=True)
            await c.publish(self.topic(node, "presence"),
                            _dumps(self._env(node, "presence", None, self._presence(node))), qos=1, retain=True)

        for i in range(0, self.n, 500):
            await asyncio.gather(*(one(node) for node in self.ids[i:i + 500]))

    def _presence(self, node: str) -> dict[str, Any]:
        body = {"state": "online", "session": self.sessions[node]}
        if not self.legacy:
            body["catalog_hash"] = self.hash
        return body

    def start_heartbeats(self, probe: list[str] | None = None) -> None:
        """Heartbeats, spread over the interval; and (``probe``: real node ids) the probe each real node
        gets per interval from its predecessor, as in a cluster of real nodes."""
        self._tasks.append(asyncio.create_task(self._beat(probe or [])))

    async def _beat(self, probe: list[str]) -> None:
        c = self._client
        assert c is not None
        tick = 0.05
        per_tick = self.n * tick / self.interval
        start = time.monotonic()
        sent, k = 0, 0
        while True:
            k += 1
            due = int(k * per_tick)
            batch = [self.ids[i % self.n] for i in range(sent, due)]
            sent = due
            await asyncio.gather(*(c.publish(self.topic(node, "state"),
                                             _dumps(self._env(node, "state", None, self._state(node))),
                                             qos=0, retain=True) for node in batch))
            if not self.legacy and probe and k % max(1, round(self.interval / tick)) == 0:
                for real in probe:
                    await self._send(real, [self._env(self.ids[-1], "probe", real, {})])
            await asyncio.sleep(max(0.0, start + k * tick - time.monotonic()))

    async def __aexit__(self, *exc: object) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._client is not None:
            try:
                for node in self.ids:   # leave no retained garbage behind
                    for what in ("presence", "state", "catalog"):
                        await self._client.publish(self.topic(node, what), b"", qos=0, retain=True)
            except aiomqtt.MqttError:
                pass
            await self._client.__aexit__(None, None, None)

    # --- answers ---------------------------------------------------------------------------

    async def _send(self, to: str, envs: list[dict[str, Any]]) -> None:
        c = self._client
        assert c is not None
        for i in range(0, len(envs), MAX_BATCH):
            await c.publish(f"{self.prefix}/node/{to}/inbox", _dumps(envs[i:i + MAX_BATCH]), qos=1)

    def _answer(self, node: str, env: dict[str, Any]) -> dict[str, Any]:
        body = env.get("body") or {}
        what = (body.get("service"), body.get("method"))
        if what == ("node", "ping"):
            return self._env(node, "result", env["from"], {"re": env["id"], "result": {"node": node, "ts": time.time()}})
        if what == ("node", "describe"):
            return self._env(node, "result", env["from"], {"re": env["id"], "result": {"node": node,
                                                                                      "services": self.catalog}})
        return self._env(node, "error", env["from"], {"re": env["id"], "error": {
            "code": "unknown_service", "message": f"{node} is simulated: only node.ping and node.describe"}})

    async def _rx(self) -> None:
        c = self._client
        assert c is not None
        async for msg in c.messages:
            try:
                await self._on_message(msg)
            except Exception as e:  # noqa: BLE001 - one odd message must not stop every simulated peer
                print(f"sim: {type(e).__name__}: {e} on {msg.topic.value}", file=sys.stderr, flush=True)

    async def _on_message(self, msg: aiomqtt.Message) -> None:
        c = self._client
        assert c is not None
        try:
            obj = json.loads(msg.payload)
        except ValueError:
            return
        envs = obj if isinstance(obj, list) else [obj]
        topic = msg.topic.value
        for env in envs:
            if not isinstance(env, dict) or env.get("from") in self._idset:
                continue
            frm, kind = env.get("from"), env.get("kind")
            if topic.endswith("/members"):
                # a simulated peer that is suspected (it was slow: one process answers for all) refutes
                body = env.get("body") or {}
                node = body.get("node")
                if kind == "member" and node in self._idset and body.get("state") in ("suspect", "offline") \
                        and body.get("session") == self.sessions[node]:
                    self.refutations += 1
                    await c.publish(topic, _dumps(self._env(node, "member", None, {
                        "node": node, "state": "alive", "session": self.sessions[node]})), qos=1)
                continue
            if topic.endswith("/broadcast"):
                if kind == "call" and (env.get("body") or {}).get("reply", True):
                    self.broadcasts += 1
                    await self._send(frm, [self._answer(n, env) for n in self.ids])
                continue
            node = topic.split("/")[-2]
            if node not in self._idset:
                continue
            if kind == "call":
                self.calls += 1
                if (env.get("body") or {}).get("reply", True):
                    await self._send(frm, [self._answer(node, env)])
            elif kind == "sub":
                await self._send(frm, [self._env(node, "result", frm, {"re": env["id"], "result": {
                    "topic": env["body"].get("topic"), "lease": 60}})])
            elif kind == "probe":
                # a probe, or one on someone's behalf (its target is simulated too: alive, at once)
                self.probes += 1
                target = (env.get("body") or {}).get("target") or node
                await self._send(frm, [self._env(node, "ack", frm, {"re": env["id"], "target": target,
                                                                      "session": self.sessions.get(target, "")})])
