"""CloudiSENSE benchmarks, side by side with the transport floors and a peer (NATS).

    python bench/run.py [--quick] [--json FILE] [--only P1,P4] [--broker mqtt://127.0.0.1:1883]

Each scenario runs the project and its floor back to back in the same process
tree, after a warm-up, and reports p50/p99 latency (µs) and throughput
(msgs/s) for both plus their ratio.  What each scenario measures is in
``SCENARIOS`` below and in docs/performance.md.  Every process it starts
(nodes, floors, a nats-server if none is running) is stopped before it exits.
The client side is raw ``websockets`` for the project and the floors alike.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from importlib import metadata
from pathlib import Path
from typing import Any, Awaitable, Callable

import psutil
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import p10_client_method  # noqa: E402
from _common import PAD_EVENT  # noqa: E402
from cloudisense.node.testing import READY_RE as NODE_READY  # noqa: E402
from cloudisense.node.testing import child_env, free_port, stop_process  # noqa: E402

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_loads = json.loads

PAD_CALL = 120          # call frames ≈ 200 bytes of JSON
INFLIGHT = 64
FAN_CLIENTS = 50
FAN_P99_LIMIT = 0.100   # s

SCENARIOS: dict[str, dict[str, str]] = {
    "P1": {"title": "local RPC round trip",
           "measures": "client → node → bench.echo service → client over one WebSocket, vs a raw websockets "
                       "echo server, same frame size (~200 B)",
           "target": "p50 ≤ 1.3× floor, throughput ≥ 0.6× floor"},
    "P2": {"title": "remote RPC round trip",
           "measures": "client → node A → MQTT → node B → MQTT → A → client, vs a hand-written relay "
                       "(websockets + aiomqtt, QoS 1, same broker) and nats-py request/reply",
           "target": "p50 ≤ 1.15× hand relay"},
    "P3": {"title": "remote RPC throughput, 64 in flight",
           "measures": "the P2 path with 64 calls in flight on one client, vs the same hand relay (and NATS)",
           "target": "throughput ≥ 4× hand relay (stretch: NATS)"},
    "P4": {"title": "remote event fan-out to 50 clients",
           "measures": "node B publishes, 50 WebSocket clients of node A subscribed to B: the highest rate at "
                       "which every client gets every event with p99 < 100 ms, vs one process subscribed over "
                       "MQTT fanning out to 50 raw websockets clients",
           "target": "rate ≥ 0.8× gateway"},
    "P5": {"title": "signing cost",
           "measures": "P2 with authenticated envelopes (pairwise MACs on calls and replies; project) vs the "
                       "same nodes unsigned (floor)",
           "target": "p50 ≤ 1.05× unsigned"},
    "P6": {"title": "idle footprint",
           "measures": "RSS and CPU of an idle node joined to the broker, vs the idle hand relay process",
           "target": "≤ 40 MB RSS and < 1 % CPU"},
    "P7": {"title": "many clients",
           "measures": "RSS growth per connected, subscribed WebSocket client, vs the gateway floor",
           "target": "≤ 50 KB per client"},
    "P8": {"title": "agent prompt size",
           "measures": "tokens the planner sends for 'restart logger on coolest node' on a simulated 1,000-node "
                       "cluster (project) vs a 10-node one (floor)",
           "target": "≤ 1.5×"},
}

SCENARIOS["P10"] = p10_client_method.SCENARIO

QUICK = dict(lat_n=400, lat_block=100, lat_warm=100, tput_n=4000, tput_block=1000, tput_warm=300,
             remote_tput_n=1500, remote_tput_block=500,
             fan_step=0.5, fan_ladder=[100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1600, 2000],
             idle_settle=2.0, idle_seconds=5.0,
             clients=200)
FULL = dict(lat_n=2000, lat_block=200, lat_warm=300, tput_n=20000, tput_block=2000, tput_warm=1000,
            remote_tput_n=20000, remote_tput_block=2000,
            fan_step=3.0, fan_ladder=[50, 100, 150, 200, 250, 300, 350, 400, 450, 500, 600, 700, 800, 900, 1000,
                                      1200, 1400, 1600, 2000, 2400, 3200],
            idle_settle=5.0, idle_seconds=30.0,
            clients=1000)


# --- small helpers ------------------------------------------------------------------

def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))] if s else float("nan")


def us(x: float) -> float | None:
    return round(x * 1e6, 1) if x == x and x != float("inf") else None   # NaN/inf (no samples) -> None


def lat_stats(lat_s: list[float]) -> dict[str, float | None]:
    return {"p50_us": us(pct(lat_s, 0.5)), "p99_us": us(pct(lat_s, 0.99))}


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b:
        return None
    return round(a / b, 3)


def call_frame(i: int, node: str | None = None) -> str:
    f: dict[str, Any] = {"type": "call", "id": str(i), "service": "bench", "method": "echo",
                         "params": {"data": "x" * PAD_CALL}}
    if node:
        f["node"] = node
    return _dumps(f)


async def ws_connect(url: str) -> ClientConnection:
    return await connect(url, compression=None, max_size=None, open_timeout=20, ping_interval=None)


async def _rt(ws: ClientConnection, f: str) -> str:
    await ws.send(f)
    return await ws.recv()


# --- processes ----------------------------------------------------------------------

class Proc:
    def __init__(self, name: str, popen: subprocess.Popen, out: Path, err: Path) -> None:
        self.name, self.popen, self.out, self.err = name, popen, out, err
        self.url = ""
        self.port = 0

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_tail(self) -> str:
        try:
            return self.err.read_text(errors="replace")[-2000:]
        except OSError:
            return ""


class Procs:
    """Every subprocess the bench starts; :meth:`stop_all` ends them (SIGTERM, then SIGKILL)."""

    def __init__(self, tmp: Path, broker: str, prefix: str) -> None:
        self.tmp, self.broker, self.prefix = tmp, broker, prefix
        self.procs: list[Proc] = []
        self._n = 0

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        self._n += 1
        out, err = self.tmp / f"{self._n:02d}-{name}.out", self.tmp / f"{self._n:02d}-{name}.log"
        full_env = child_env([HERE], env)
        with open(out, "wb") as o, open(err, "wb") as e:
            popen = subprocess.Popen(argv, stdout=o, stderr=e, stdin=subprocess.DEVNULL, env=full_env)
        p = Proc(name, popen, out, err)
        self.procs.append(p)
        return p

    def node(self, node_id: str, *, broker: str | None = None, signed_dir: Path | None = None,
             plugin: bool = True, prefix: str | None = None) -> Proc:
        lines = [f'id = "{node_id}"']
        if plugin:
            lines.append('services = ["benchsvc:BenchService"]')
        # The per-client rate limit (2,000 frames/s by default) is a policy, not a cost: lift it so
        # one benchmark client can go as fast as the node does.
        lines += ["[ws]", 'listen = "127.0.0.1:0"', "rate_limit = 10000000.0", "rate_burst = 10000000",
                  "[broker]", f'url = "{broker or self.broker}"', f'prefix = "{prefix or self.prefix}"',
                  "[system]", 'temperature = "sim:45"']
        if signed_dir is not None:
            lines += ["[security]", f'key = "{signed_dir / (node_id + ".key")}"', f'trust = "{signed_dir}"']
        cfg = self.tmp / f"{node_id}.toml"
        cfg.write_text("\n".join(lines) + "\n")
        return self.spawn(f"node-{node_id}", [sys.executable, "-m", "cloudisense.node.cli", "node",
                                              "--config", str(cfg)])

    def floor(self, kind: str, *args: str) -> Proc:
        return self.spawn(kind, [sys.executable, str(HERE / "floors.py"), kind, *args])

    async def ready(self, p: Proc, timeout: float = 30.0) -> Proc:
        deadline = time.monotonic() + timeout
        while True:
            text = p.out.read_text(errors="replace")
            if m := NODE_READY.search(text):
                p.url = m.group(2)
                p.port = int(p.url.rsplit(":", 1)[1].split("/", 1)[0])
                return p
            if m := re.search(r"READY (\d+)", text):
                p.port = int(m.group(1))
                p.url = f"ws://127.0.0.1:{p.port}/"
                return p
            if p.popen.poll() is not None:
                raise RuntimeError(f"{p.name} exited with {p.popen.returncode}:\n{p.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{p.name} was not ready within {timeout:g} s:\n{p.log_tail()}")
            await asyncio.sleep(0.05)

    def stop(self, p: Proc, timeout: float = 10.0) -> None:
        stop_process(p.popen, timeout)
        if p in self.procs:
            self.procs.remove(p)

    def stop_many(self, procs: list[Proc]) -> None:
        """SIGTERM them all, then wait for each (SIGKILL after 10 s)."""
        for p in procs:
            if p.popen.poll() is None:
                p.popen.send_signal(signal.SIGTERM)
        for p in procs:
            self.stop(p)

    def stop_all(self) -> None:
        self.stop_many(list(self.procs))


def nats_running(host: str = "127.0.0.1", port: int = 4222) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1) as s:
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:``port`` (to count its CPU time), if visible."""
    try:
        for c in psutil.net_connections(kind="tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return c.pid
    except (psutil.AccessDenied, OSError):
        pass
    return None


def nats_binary() -> str | None:
    return shutil.which("nats-server") or next(
        (str(p) for p in (Path(sys.executable).parent / "nats-server", Path("/usr/sbin/nats-server")) if p.exists()),
        None)


def mosquitto_binary() -> str | None:
    return shutil.which("mosquitto") or next((p for p in ("/usr/sbin/mosquitto",) if Path(p).exists()), None)


async def private_mosquitto(procs: Procs) -> str:
    """A mosquitto of our own on a free port, with TCP_NODELAY on its sockets (see MEASUREMENTS: without it,
    QoS 1 round trips stall 40-90 ms on Nagle), no persistence; stopped with every other process."""
    exe = mosquitto_binary()
    if exe is None:
        raise RuntimeError("no mosquitto binary; pass --broker mqtt://HOST:PORT")
    port = free_port()
    conf = procs.tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                    "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n")
    os.chmod(procs.tmp, 0o755)
    os.chmod(conf, 0o644)
    p = procs.spawn("mosquitto", [exe, "-c", str(conf)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return f"mqtt://127.0.0.1:{port}"
        except OSError:
            if p.popen.poll() is not None:
                raise RuntimeError(f"mosquitto exited: {p.log_tail()}") from None
            await asyncio.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on {port}")


async def wait_remote(url: str, node: str, timeout: float = 20.0) -> None:
    """Wait until ``node`` answers a ping relayed by the node at ``url``."""
    deadline = time.monotonic() + timeout
    async with await ws_connect(url) as ws:
        while True:
            r = _loads(await _rt(ws, _dumps({"type": "call", "id": "w", "node": node, "service": "node",
                                             "method": "ping", "timeout": 2})))
            if r.get("type") == "result":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node} is not reachable from {url}: {r}")
            await asyncio.sleep(0.1)


# --- request/reply measurements -----------------------------------------------------
#
# Every side (the project, its floor, NATS) keeps one connection open; blocks of
# calls run interleaved (A B C, B C A, ...) so that background load on a shared
# machine falls on every side alike.  Percentiles are over the pooled samples,
# throughput is calls / time spent in that side's blocks.

class WsSide:
    """Calls over one raw websockets connection; replies matched by their id."""

    def __init__(self, name: str, url: str, frame: Callable[[int], str], pids: list[int] | None = None) -> None:
        self.name, self.url, self.frame, self.pids = name, url, frame, pids or []
        self.ws: ClientConnection | None = None
        self.seq = 0

    async def open(self) -> None:
        self.ws = await ws_connect(self.url)
        first = _loads(await _rt(self.ws, self.frame(0)))
        if first.get("type") == "error":
            raise RuntimeError(f"{self.name} ({self.url}): {first}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def sequential(self, n: int) -> list[float]:
        ws, frame, pc = self.ws, self.frame, time.perf_counter
        assert ws is not None
        lat = []
        for _ in range(n):
            self.seq += 1
            f = frame(self.seq)
            t0 = pc()
            await ws.send(f)
            await ws.recv()
            lat.append(pc() - t0)
        return lat

    async def pipelined(self, n: int, inflight: int) -> list[float]:
        ws, frame, pc = self.ws, self.frame, time.perf_counter
        assert ws is not None
        sent_at: dict[str, float] = {}
        lat: list[float] = []
        sent = got = 0
        while sent < min(inflight, n):
            self.seq += 1
            sent_at[str(self.seq)] = pc()
            await ws.send(frame(self.seq))
            sent += 1
        while got < n:
            msg = _loads(await ws.recv())
            if msg.get("type") == "error":
                raise RuntimeError(f"{self.name}: error reply: {msg}")
            t = sent_at.pop(str(msg.get("id")), None)
            if t is None:
                continue
            lat.append(pc() - t)
            got += 1
            if sent < n:
                self.seq += 1
                sent_at[str(self.seq)] = pc()
                await ws.send(frame(self.seq))
                sent += 1
        return lat


class NatsSide:
    """nats-py request/reply to the nats-responder floor."""

    def __init__(self, name: str, url: str, subject: str, pids: list[int] | None = None) -> None:
        self.name, self.url, self.subject, self.pids = name, url, subject, pids or []
        self.payload = call_frame(0).encode()
        self.nc: Any = None

    async def open(self) -> None:
        import nats
        self.nc = await nats.connect(self.url)
        await self.nc.request(self.subject, self.payload, timeout=5)

    async def close(self) -> None:
        if self.nc is not None:
            await self.nc.close()

    async def sequential(self, n: int) -> list[float]:
        nc, subject, payload, pc = self.nc, self.subject, self.payload, time.perf_counter
        lat = []
        for _ in range(n):
            t0 = pc()
            await nc.request(subject, payload, timeout=10)
            lat.append(pc() - t0)
        return lat

    async def pipelined(self, n: int, inflight: int) -> list[float]:
        nc, subject, payload, pc = self.nc, self.subject, self.payload, time.perf_counter
        lat: list[float] = []

        async def worker(count: int) -> None:
            for _ in range(count):
                t0 = pc()
                await nc.request(subject, payload, timeout=10)
                lat.append(pc() - t0)

        per, extra = divmod(n, inflight)
        await asyncio.gather(*(worker(per + (i < extra)) for i in range(inflight)))
        return lat


async def compare(sides: list[Any], mode: str, n: int, warm: int, block: int,
                  tick: Callable[[str], None] | None = None, inflight: int = INFLIGHT) -> list[dict[str, Any]]:
    """Run ``n`` calls per side in interleaved blocks after ``warm`` warm-up calls; figures per side."""
    async def one(side: Any, k: int) -> list[float]:
        return await (side.sequential(k) if mode == "sequential" else side.pipelined(k, inflight))

    for s in sides:
        await s.open()
    try:
        for s in sides:
            await one(s, warm)
        lat: list[list[float]] = [[] for _ in sides]
        spent = [0.0] * len(sides)
        cpu = [0.0] * len(sides)
        done, b = 0, 0
        while done < n:
            k = min(block, n - done)
            order = list(range(len(sides)))
            order = order[b % len(order):] + order[:b % len(order)]
            for i in order:
                c0 = sum(cpu_seconds(p) for p in sides[i].pids)
                t0 = time.perf_counter()
                lat[i] += await one(sides[i], k)
                spent[i] += time.perf_counter() - t0
                cpu[i] += sum(cpu_seconds(p) for p in sides[i].pids) - c0
            done += k
            b += 1
            if tick:
                tick(f"{done}/{n}")
    finally:
        for s in sides:
            await s.close()
    out = []
    for i, s in enumerate(sides):
        d = {**lat_stats(lat[i]), "msgs_per_s": round(len(lat[i]) / spent[i], 1), "n": len(lat[i])}
        if s.pids:   # CPU time of the serving processes per call: steadier than wall time on a busy machine
            d["cpu_us_per_call"] = round(cpu[i] / len(lat[i]) * 1e6, 1)
        if mode != "sequential":
            d["inflight"] = inflight
        out.append(d)
    return out


# --- fan-out ----------------------------------------------------------------------------

class FanOut:
    """``n`` WebSocket clients subscribed to one stream; counts and times every event per step."""

    def __init__(self, url: str, subscribe: str, n: int) -> None:
        self.url, self.subscribe, self.n = url, subscribe, n
        self.clients: list[ClientConnection | None] = [None] * n
        self.readers: list[asyncio.Task | None] = [None] * n
        self.counts = [0] * n
        self.lat: list[float] = []
        self.step = -1
        self.dropped = 0
        self.last_rx = 0.0

    async def open(self) -> None:
        await asyncio.gather(*(self._open(i) for i in range(self.n) if self._closed(i)))

    def _closed(self, i: int) -> bool:
        ws = self.clients[i]
        return ws is None or ws.close_code is not None

    async def _open(self, i: int) -> None:
        ws = await ws_connect(self.url)
        await ws.send(self.subscribe)
        reply = _loads(await ws.recv())
        if reply.get("type") != "subscribed":
            raise RuntimeError(f"subscribe failed: {reply}")
        self.clients[i] = ws
        self.readers[i] = asyncio.create_task(self._read(i, ws))

    async def _read(self, i: int, ws: ClientConnection) -> None:
        now = time.time
        try:
            async for raw in ws:
                t = now()
                self.last_rx = t
                obj = _loads(raw)
                d = obj.get("data") if obj.get("type") == "event" else obj
                if isinstance(d, dict) and "t0" in d:
                    if d.get("step") == self.step:
                        self.counts[i] += 1
                        self.lat.append(t - d["t0"])
                elif obj.get("type") == "dropped":
                    self.dropped += int(obj.get("count", 0))
        except ConnectionClosed:
            pass

    def begin(self, step: int) -> None:
        self.step = step
        self.counts = [0] * self.n
        self.lat = []
        self.dropped = 0

    async def quiet(self, gap: float = 0.3, limit: float = 20.0) -> None:
        end = time.monotonic() + limit
        while time.monotonic() < end and time.time() - self.last_rx < gap:
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        for ws in self.clients:
            if ws is not None:
                await ws.close()
        for t in self.readers:
            if t is not None:
                t.cancel()
        await asyncio.gather(*(t for t in self.readers if t is not None), return_exceptions=True)


async def fan_step(fan: FanOut, emit: Callable[[float, int, int], Awaitable[None]], rate: float, seconds: float,
                   step: int, pids: list[int] | None = None) -> dict[str, Any]:
    await fan.open()
    await fan.quiet()
    count = max(10, int(rate * seconds))
    fan.begin(step)
    c0 = sum(cpu_seconds(p) for p in pids or [])
    await emit(rate, count, step)
    deadline = time.monotonic() + 1.0
    want = count * fan.n
    while sum(fan.counts) < want and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    cpu = sum(cpu_seconds(p) for p in pids or []) - c0
    got = sum(fan.counts)
    p99 = pct(fan.lat, 0.99) if fan.lat else float("inf")
    ok = got == want and p99 < FAN_P99_LIMIT and fan.dropped == 0
    out = {"rate": rate, "ok": ok, "delivered": round(got / want, 4), **lat_stats(fan.lat), "dropped": fan.dropped}
    if pids:   # CPU time of the publishing and fanning-out processes (and broker) per published event
        out["cpu_us_per_event"] = round(cpu / count * 1e6, 1)
    return out


async def max_rates(sides: list[dict[str, Any]], cfg: dict[str, Any],
                    tick: Callable[[str], None]) -> dict[str, dict[str, Any]]:
    """Climb one ladder of publish rates with every side, side by side at each rate (so that background
    load falls on both alike).  A failed step is run once more before it counts (a burst of other work
    on a shared machine fails a step by itself); a side stops at the first rate it fails twice.
    Per side: the sustainable rate, the highest rate that passed with every lower rate passing too,
    and its figures.  (Climbing on past a failed rate let a lucky step count: one run had the floor
    fail 700/s and 900/s twice each and still report 1,000/s.)"""
    state = {s["name"]: {"best": None, "fails": 0, "steps": []} for s in sides}
    for s in sides:   # warm-up, not counted
        await fan_step(s["fan"], s["emit"], cfg["fan_ladder"][0], 0.3, 0)
    for i, rate in enumerate(cfg["fan_ladder"]):
        active = [s for s in sides if not state[s["name"]]["fails"]]
        if not active:
            break
        for s in (active if i % 2 == 0 else active[::-1]):
            st = state[s["name"]]
            tick(f"{s['name']} {rate:.0f}/s")
            r = await fan_step(s["fan"], s["emit"], float(rate), cfg["fan_step"], 2 * i + 1, s["pids"])
            st["steps"].append(r)
            if not r["ok"]:   # confirm
                r = await fan_step(s["fan"], s["emit"], float(rate), cfg["fan_step"], 2 * i + 2, s["pids"])
                st["steps"].append(r)
            if r["ok"]:
                st["best"], st["fails"] = r, 0
            else:
                st["fails"] += 1
    out = {}
    for s in sides:
        st = state[s["name"]]
        best, n = st["best"], s["fan"].n
        rate = best["rate"] if best else 0.0
        out[s["name"]] = {"max_rate": rate, "deliveries_per_s": rate * n, "clients": n,
                          "step_seconds": cfg["fan_step"], "p50_us": best["p50_us"] if best else None,
                          "p99_us": best["p99_us"] if best else None,
                          "cpu_us_per_event": best.get("cpu_us_per_event") if best else None, "steps": st["steps"]}
    return out


def signing_cost(tmp: Path, n: int = 2000) -> dict[str, Any]:
    """What authentication alone costs, timed here with the node's own code on a ~350-byte envelope: the
    canonical bytes, and then a pairwise MAC (what calls and replies carry) or an Ed25519 signature (events,
    presence, state); sealing is :meth:`Sealer.pack` (the bytes that go out), checking is
    :meth:`Verifier.verify` on the parsed envelope.  Best of 5 runs of ``n`` each (timeit)."""
    import timeit

    from cloudisense.node._json import loads
    from cloudisense.node._signing import PairKeys, Sealer, Signer, TrustStore, Verifier, generate_keypair
    keys = Path(tempfile.mkdtemp(dir=tmp, prefix="crypto-"))
    for nid in ("x", "y"):
        generate_keypair(nid, keys)
    trust = TrustStore.load(keys)
    sx, sy = Signer("x", keys / "x.key"), Signer("y", keys / "y.key")
    sealer = Sealer(sx, PairKeys(sx, trust))
    legacy = Sealer(sx, PairKeys(sx, trust), unicast="sig")
    ky = PairKeys(sy, trust)

    def env(i: int) -> dict[str, Any]:
        return {"v": 1, "kind": "call", "from": "x", "to": "y", "id": f"{i:x}", "ts": time.time(),
                "body": {"service": "bench", "method": "echo", "params": {"data": "x" * PAD_CALL},
                         "reply_by": time.time() + 10, "role": "operator"}}

    envs = [env(i) for i in range(n)]
    macd = [loads(sealer.wire([e])) for e in envs]
    signed = [loads(legacy.wire([e])) for e in envs]
    assert "mac" in macd[0] and "sig" in signed[0]

    def best(fn: Callable[[], Any]) -> float:
        return min(timeit.repeat(fn, number=1, repeat=5)) / n * 1e6

    def check(batch: list[dict[str, Any]]) -> Callable[[], None]:
        def run() -> None:
            v = Verifier(trust, window=3600, keys=ky)   # a fresh replay cache per run
            for e in batch:
                v.verify(e)
        return run

    mac = best(lambda: [sealer.pack([sealer.prepare(e)]) for e in envs])
    sign = best(lambda: [legacy.pack([legacy.prepare(e)]) for e in envs])
    mac_verify, verify = best(check(macd)), best(check(signed))
    derive = min(timeit.repeat(lambda: PairKeys(sx, trust).get("y"), number=200, repeat=5)) / 200 * 1e6
    return {"mac_us": round(mac, 1), "mac_verify_us": round(mac_verify, 1), "sign_us": round(sign, 1),
            "verify_us": round(verify, 1), "pair_key_us": round(derive, 1),
            "per_round_trip_us": round(2 * (mac + mac_verify), 1),
            "per_round_trip_sig_us": round(2 * (sign + verify), 1)}


# --- footprint ---------------------------------------------------------------------------

def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of ``pid``: from /proc/PID/task/*/schedstat (ns) where there is one,
    else psutil's user+system (10 ms ticks)."""
    total, found = 0, False
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            try:
                with open(f"{task.path}/schedstat") as f:
                    total += int(f.read().split()[0])
                    found = True
            except (OSError, ValueError, IndexError):
                pass
    except OSError:
        pass
    if found:
        return total / 1e9
    t = psutil.Process(pid).cpu_times()
    return t.user + t.system


def rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


async def idle_footprint(pids: dict[str, int], seconds: float) -> dict[str, dict[str, float]]:
    c0 = {k: cpu_seconds(p) for k, p in pids.items()}
    t0 = time.monotonic()
    await asyncio.sleep(seconds)
    wall = time.monotonic() - t0
    out = {}
    for k, p in pids.items():
        out[k] = {"rss_mb": round(rss(p) / 2**20, 1), "uss_mb": round(psutil.Process(p).memory_full_info().uss / 2**20, 1),
                  "cpu_percent": round((cpu_seconds(p) - c0[k]) / wall * 100, 3), "seconds": round(wall, 1)}
    return out


async def per_client_rss(pid: int, url: str, subscribe: str, n: int) -> dict[str, float]:
    async def open_one() -> ClientConnection:
        ws = await ws_connect(url)
        await ws.send(subscribe)
        r = _loads(await ws.recv())
        if r.get("type") != "subscribed":
            raise RuntimeError(f"subscribe failed: {r}")
        return ws

    async def open_many(k: int) -> list[ClientConnection]:
        out: list[ClientConnection] = []
        for i in range(0, k, 50):
            out += await asyncio.gather(*(open_one() for _ in range(min(50, k - i))))
        return out

    # warm-up: a first batch connects and leaves, so one-off allocations are not counted
    for ws in await open_many(50):
        await ws.close()
    await asyncio.sleep(0.5)
    before = rss(pid)
    clients = await open_many(n)
    await asyncio.sleep(1.0)
    after = rss(pid)
    for ws in clients:
        await ws.close()
    return {"clients": n, "rss_before_mb": round(before / 2**20, 1), "rss_after_mb": round(after / 2**20, 1),
            "kb_per_client": round((after - before) / 1024 / n, 1)}


# --- the run -------------------------------------------------------------------------------

class Bench:
    def __init__(self, args: argparse.Namespace, procs: Procs, progress: Any, task: Any) -> None:
        self.args = args
        self.cfg = QUICK if args.quick else FULL
        self.procs = procs
        self.progress, self.task = progress, task
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self.nats_url = "nats://127.0.0.1:4222"
        self.broker_pid: int | None = None
        self.nats_pid: int | None = None
        self._mark = time.monotonic()       # start of the scenario being measured (for its "seconds")
        self.startup_seconds = 0.0

    def tick(self, what: str, advance: float = 0) -> None:
        self.progress.update(self.task, description=what, advance=advance)

    def want(self, key: str) -> bool:
        return not self.args.only or key in self.args.only

    async def run(self) -> dict[str, Any]:
        p, cfg = self.procs, self.cfg
        self.tick("starting nodes and floors")
        if p.broker == "auto":
            p.broker = await private_mosquitto(p)
            self.broker_pid = next(x.pid for x in p.procs if x.name == "mosquitto")
            self.notes.append(f"broker: a private mosquitto ({p.broker}, set_tcp_nodelay true, persistence false)")
        if any(self.want(k) for k in ("P2", "P3")) and nats_running():
            self.nats_pid = listener_pid(4222)
        elif any(self.want(k) for k in ("P2", "P3")):
            exe = nats_binary()
            if exe:
                port = free_port()
                self.nats_pid = p.spawn("nats-server", [exe, "-a", "127.0.0.1", "-p", str(port)]).pid
                self.nats_url = f"nats://127.0.0.1:{port}"
                await self._wait_port(port)
                self.notes.append(f"nats-server was not running; the bench started one on port {port}")
        keys = Path(tempfile.mkdtemp(dir=p.tmp, prefix="keys-"))
        for nid in ("SA", "SB"):
            subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "keys", "gen", nid, "--out", str(keys)],
                           check=True, capture_output=True)
        need_pair = any(self.want(k) for k in ("P2", "P3", "P4", "P5", "P10"))
        starts: dict[str, Proc] = {}
        if self.want("P1"):
            starts["L"] = p.node("L", broker="none")
            starts["echo"] = p.floor("ws-echo")
        if need_pair:
            starts["A"], starts["B"] = p.node("A"), p.node("B")
        if any(self.want(k) for k in ("P2", "P3")):
            starts["relay"] = p.floor("relay", "--broker", p.broker, "--prefix", p.prefix + "/floor")
            starts["responder"] = p.floor("responder", "--broker", p.broker, "--prefix", p.prefix + "/floor")
            starts["nats"] = p.floor("nats-responder", "--nats", self.nats_url, "--subject",
                                     f"bench.{p.prefix.rsplit('/', 1)[-1]}.echo")
        if self.want("P5"):
            starts["SA"] = p.node("SA", signed_dir=keys, prefix=p.prefix + "/signed")
            starts["SB"] = p.node("SB", signed_dir=keys, prefix=p.prefix + "/signed")
        if self.want("P4"):
            starts["gateway"] = p.floor("gateway", "--broker", p.broker, "--topic", p.prefix + "/fan")
            starts["publisher"] = p.floor("publisher", "--broker", p.broker)
        procs = dict(zip(starts, await asyncio.gather(*(p.ready(x) for x in starts.values()))))
        if need_pair:
            await wait_remote(procs["A"].url, "B")
        if self.want("P5"):
            await wait_remote(procs["SA"].url, "SB")
        self.tick("ready", 1)
        self.startup_seconds = round(time.monotonic() - self._mark, 1)
        self._mark = time.monotonic()

        if self.want("P1"):
            await self.p1(procs["L"], procs["echo"])
            p.stop_many([procs["L"], procs["echo"]])
        if self.want("P2") or self.want("P3"):
            await self.p2_p3(procs)
            p.stop_many([procs[k] for k in ("relay", "responder", "nats")])
        if self.want("P5"):
            await self.p5(procs)
            p.stop_many([procs["SA"], procs["SB"]])
        if self.want("P4"):
            await self.p4(procs)
        if self.want("P10"):
            await p10_client_method.run(self, procs, ws_side=WsSide, call_frame=call_frame, ratio=ratio)
        p.stop_many([procs[k] for k in ("A", "B", "gateway", "publisher") if k in procs])
        if self.want("P6") or self.want("P7"):
            await self.p6_p7()
        if self.want("P8"):
            await self.p8()
        return self.results

    async def _wait_port(self, port: int) -> None:
        for _ in range(100):
            if nats_running(port=port):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"nats-server did not start on port {port}")

    def _record(self, key: str, project: dict[str, Any], floor: dict[str, Any], ratios: dict[str, Any],
                met: bool | None, **extra: Any) -> None:
        now = time.monotonic()
        self.results[key] = {**SCENARIOS[key], "project": project, "floor": floor, "ratio": ratios, "met": met,
                             **extra, "loadavg_1m": round(os.getloadavg()[0], 2),
                             "seconds": round(now - self._mark, 1)}
        self._mark = now

    def _rr(self, key: str, project: dict[str, Any], floor: dict[str, Any], met: Callable[[dict], bool],
            **extra: Any) -> None:
        ratios = {"p50": ratio(project["p50_us"], floor["p50_us"]), "p99": ratio(project["p99_us"], floor["p99_us"]),
                  "throughput": ratio(project["msgs_per_s"], floor["msgs_per_s"])}
        if "nats" in extra:
            n = extra["nats"]
            ratios["p50_vs_nats"] = ratio(project["p50_us"], n["p50_us"])
            ratios["throughput_vs_nats"] = ratio(project["msgs_per_s"], n["msgs_per_s"])
        self._record(key, project, floor, ratios, met(ratios), **extra)

    async def _both(self, key: str, sides: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        cfg = self.cfg
        tick = lambda what: lambda s: self.tick(f"{key} {what} {s}")  # noqa: E731
        lat = await compare(sides, "sequential", cfg["lat_n"], cfg["lat_warm"], cfg["lat_block"], tick("latency"))
        n, block = (cfg["tput_n"], cfg["tput_block"]) if key == "P1" else (cfg["remote_tput_n"],
                                                                           cfg["remote_tput_block"])
        tput = await compare(sides, "pipelined", n, cfg["tput_warm"], block, tick("throughput"))
        return lat, tput

    @staticmethod
    def _merge(lat: dict[str, Any], tput: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Latency from sequential calls, throughput from calls with 64 in flight (and their latency too)."""
        out = {**extra, "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "msgs_per_s": tput["msgs_per_s"],
               "sequential_msgs_per_s": lat["msgs_per_s"], "inflight_p50_us": tput["p50_us"],
               "inflight_p99_us": tput["p99_us"], "n_sequential": lat["n"], "n_inflight": tput["n"]}
        if "cpu_us_per_call" in lat:
            out["cpu_us_per_call_sequential"] = lat["cpu_us_per_call"]
            out["cpu_us_per_call_inflight"] = tput["cpu_us_per_call"]
        return out

    async def p1(self, node: Proc, echo: Proc) -> None:
        lat, tput = await self._both("P1", [WsSide("project", node.url, call_frame, [node.pid]),
                                            WsSide("floor", echo.url, call_frame, [echo.pid])])
        self._rr("P1", self._merge(lat[0], tput[0]), self._merge(lat[1], tput[1], name="websockets echo"),
                 lambda r: r["p50"] <= 1.3 and r["throughput"] >= 0.6)
        self.tick("P1 done", 1)

    async def p2_p3(self, procs: dict[str, Proc]) -> None:
        remote = lambda i: call_frame(i, "B")  # noqa: E731
        subject = f"bench.{self.procs.prefix.rsplit('/', 1)[-1]}.echo"
        broker = [self.broker_pid] if self.broker_pid else []
        lat, tput = await self._both("P2/P3", [
            WsSide("project", procs["A"].url, remote, [procs["A"].pid, procs["B"].pid, *broker]),
            WsSide("floor", procs["relay"].url, remote, [procs["relay"].pid, procs["responder"].pid, *broker]),
            NatsSide("nats", self.nats_url, subject, [procs["nats"].pid, *([self.nats_pid] if self.nats_pid else [])])])
        relay = "hand relay (websockets + aiomqtt, QoS 1)"
        p, f, n = (self._merge(lat[i], tput[i]) for i in range(3))
        self._rr("P2", p, {"name": relay, **f}, lambda r: r["p50"] <= 1.15,
                 nats={"name": "nats-py request/reply", **n})
        self._rr("P3", {**p, "p50_us": p["inflight_p50_us"], "p99_us": p["inflight_p99_us"]},
                 {"name": relay, **f, "p50_us": f["inflight_p50_us"], "p99_us": f["inflight_p99_us"]},
                 lambda r: r["throughput"] >= 4,
                 nats={"name": "nats-py request/reply", **n, "p50_us": n["inflight_p50_us"],
                       "p99_us": n["inflight_p99_us"]})
        self.tick("P2/P3 done", 2)

    async def p5(self, procs: dict[str, Proc]) -> None:
        broker = [self.broker_pid] if self.broker_pid else []
        lat, tput = await self._both("P5", [
            WsSide("project", procs["SA"].url, lambda i: call_frame(i, "SB"), [procs["SA"].pid, procs["SB"].pid, *broker]),
            WsSide("floor", procs["A"].url, lambda i: call_frame(i, "B"), [procs["A"].pid, procs["B"].pid, *broker])])
        crypto = signing_cost(self.procs.tmp)
        floor = self._merge(lat[1], tput[1], name="same nodes, unsigned")
        crypto["budget_us_at_1_05"] = round(0.05 * floor["p50_us"], 1)
        self._rr("P5", self._merge(lat[0], tput[0]), floor, lambda r: r["p50"] <= 1.05, crypto=crypto)
        self.tick("P5 done", 1)

    async def p4(self, procs: dict[str, Proc]) -> None:
        cfg = self.cfg
        topic = "bench/fan"
        b_ctl = await ws_connect(procs["B"].url)
        pub_ctl = await ws_connect(procs["publisher"].url)
        seq = iter(range(1, 1 << 40))

        async def emit_project(rate: float, count: int, step: int) -> None:
            r = _loads(await _rt(b_ctl, _dumps({
                "type": "call", "id": str(next(seq)), "service": "bench", "method": "emit", "timeout": 300,
                "params": {"topic": topic, "rate": rate, "count": count, "size": PAD_EVENT, "step": step}})))
            if r.get("type") != "result":
                raise RuntimeError(f"bench.emit failed: {r}")

        async def emit_floor(rate: float, count: int, step: int) -> None:
            await _rt(pub_ctl, _dumps({"topic": self.procs.prefix + "/fan", "rate": rate, "count": count,
                                       "size": PAD_EVENT, "step": step}))

        broker = [self.broker_pid] if self.broker_pid else []
        sides = [
            {"name": "project", "emit": emit_project, "pids": [procs["A"].pid, procs["B"].pid, *broker],
             "fan": FanOut(procs["A"].url, _dumps({"type": "subscribe", "id": "s", "node": "B", "topic": topic}),
                           FAN_CLIENTS)},
            {"name": "floor", "emit": emit_floor, "pids": [procs["gateway"].pid, procs["publisher"].pid, *broker],
             "fan": FanOut(procs["gateway"].url, _dumps({"type": "subscribe", "id": "s"}), FAN_CLIENTS)}]
        try:
            for s in sides:
                await s["fan"].open()
            results = await max_rates(sides, cfg, lambda what: self.tick(f"P4 fan-out {what}"))
        finally:
            for s in sides:
                await s["fan"].close()
            await b_ctl.close()
            await pub_ctl.close()
        ratios = {"rate": ratio(results["project"]["max_rate"], results["floor"]["max_rate"])}
        self._record("P4", results["project"], {"name": "MQTT → one gateway → 50 websockets", **results["floor"]},
                     ratios, ratios["rate"] is not None and ratios["rate"] >= 0.8)
        self.tick("P4 done", 1)

    async def p6_p7(self) -> None:
        p, cfg = self.procs, self.cfg
        node = p.node("I", plugin=False, prefix=p.prefix + "/idle")
        relay = p.floor("relay", "--broker", p.broker, "--prefix", p.prefix + "/idle-floor")
        gateway = p.floor("gateway", "--broker", p.broker, "--topic", p.prefix + "/idle-floor/fan")
        try:
            await asyncio.gather(p.ready(node), p.ready(relay), p.ready(gateway))
            if self.want("P6"):
                self.tick(f"P6 idle footprint ({cfg['idle_seconds']:g} s)")
                await asyncio.sleep(cfg["idle_settle"])
                fp = await idle_footprint({"project": node.pid, "floor": relay.pid}, cfg["idle_seconds"])
                pr, fl = fp["project"], fp["floor"]
                ratios = {"rss": ratio(pr["rss_mb"], fl["rss_mb"]), "cpu": ratio(pr["cpu_percent"], fl["cpu_percent"])}
                self._record("P6", pr, {"name": "idle hand relay (websockets + aiomqtt)", **fl}, ratios,
                             pr["rss_mb"] <= 40 and pr["cpu_percent"] < 1)
                self.tick("P6 done", 1)
            if self.want("P7"):
                self.tick(f"P7 {cfg['clients']} clients")
                pr = await per_client_rss(node.pid, node.url, _dumps({"type": "subscribe", "id": "s",
                                                                      "topic": "bench/p7"}), cfg["clients"])
                fl = await per_client_rss(gateway.pid, gateway.url, _dumps({"type": "subscribe", "id": "s"}),
                                          cfg["clients"])
                self._record("P7", pr, {"name": "websockets gateway", **fl},
                             {"kb_per_client": ratio(pr["kb_per_client"], fl["kb_per_client"])},
                             pr["kb_per_client"] <= 50)
                self.tick("P7 done", 1)
        finally:
            p.stop_many([node, relay, gateway])

    async def p8(self) -> None:
        self.tick("P8 agent prompt size")
        request = "restart logger on coolest node"
        try:
            from cloudisense.agent import measure_prompt_size
        except ImportError as e:
            self.results["P8"] = {**SCENARIOS["P8"], "error": f"cloudisense.agent.measure_prompt_size: {e}"}
            return
        small = await measure_prompt_size(request, 10)
        big = await measure_prompt_size(request, 1000)
        fields = ("nodes", "turns", "max_tokens", "total_tokens", "tokens_per_turn")
        pr = {k: getattr(big, k) for k in fields}
        fl = {"name": "same request, 10 nodes", **{k: getattr(small, k) for k in fields}}
        ratios = {"total_tokens": ratio(big.total_tokens, small.total_tokens),
                  "max_tokens": ratio(big.max_tokens, small.max_tokens)}
        self._record("P8", pr, fl, ratios, ratios["total_tokens"] <= 1.5, method=big.method, request=request)
        self.tick("P8 done", 1)


# --- reporting ------------------------------------------------------------------------------

def _tool_version(argv: list[str]) -> str | None:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (r.stdout + r.stderr).strip().splitlines()
    return text[0].strip() if text else None


def versions() -> dict[str, Any]:
    out: dict[str, Any] = {"python": platform.python_version()}
    for dist in ("cloudisense", "websockets", "aiomqtt", "paho-mqtt", "nats-py", "pydantic", "orjson", "pynacl",
                 "cryptography", "tiktoken"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    mosq = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    out["mosquitto"] = _tool_version([mosq, "-h"])
    exe = nats_binary()
    out["nats-server"] = _tool_version([exe, "--version"]) if exe else None
    return out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"platform": platform.platform(), "cpu": model, "cpus": os.cpu_count(),
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
            "memory_gb": round(psutil.virtual_memory().total / 2**30, 1), "hostname": socket.gethostname()}


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else (f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}")
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def table(results: dict[str, Any]) -> str:
    rows = ["| | scenario | project | floor | ratio | target | met |", "|---|---|---|---|---|---|---|"]
    for key in sorted(results):
        r = results[key]
        if "error" in r:
            rows.append(f"| {key} | {r['title']} | – | – | – | {r['target']} | error: {r['error']} |")
            continue
        p, f, q = r["project"], r["floor"], r["ratio"]
        if key in ("P1", "P2", "P3", "P5"):
            def cell(x: dict[str, Any], k: str = key) -> str:
                c = x.get("cpu_us_per_call_inflight" if k == "P3" else "cpu_us_per_call_sequential")
                return (f"p50 {_fmt(x['p50_us'])} µs · p99 {_fmt(x['p99_us'])} µs · {_fmt(x['msgs_per_s'])}/s"
                        + (f" · CPU {_fmt(c)} µs/call" if c is not None else ""))
            pc, fc = cell(p), cell(f)
            rc = f"p50 {_fmt(q['p50'])}× · p99 {_fmt(q['p99'])}× · tput {_fmt(q['throughput'])}×"
            if "crypto" in r:
                c = r["crypto"]
                rc += (f"<br>MAC {_fmt(c['mac_us'])} + check {_fmt(c['mac_verify_us'])} µs, ×2 = "
                       f"{_fmt(c['per_round_trip_us'])} µs per round trip (budget at 1.05×: "
                       f"{_fmt(c['budget_us_at_1_05'])} µs; Ed25519 sign {_fmt(c['sign_us'])} + verify "
                       f"{_fmt(c['verify_us'])} µs would be {_fmt(c['per_round_trip_sig_us'])})")
            if "nats" in r:
                fc += f"<br>NATS: {cell(r['nats'])}"
                nk = "p50_vs_nats" if key == "P2" else "throughput_vs_nats"
                rc += f"<br>vs NATS: {'p50' if key == 'P2' else 'tput'} {_fmt(q[nk])}×"
        elif key == "P4":
            def cell(x: dict[str, Any]) -> str:
                c = x.get("cpu_us_per_event")
                return (f"{_fmt(x['max_rate'])}/s ({_fmt(x['deliveries_per_s'])} deliveries/s), "
                        f"p99 {_fmt((x['p99_us'] or 0) / 1000)} ms" + (f" · CPU {_fmt(c)} µs/event" if c else ""))
            pc, fc, rc = cell(p), cell(f), f"rate {_fmt(q['rate'])}×"
        elif key == "P6":
            def cell(x: dict[str, Any]) -> str:
                return f"RSS {_fmt(x['rss_mb'])} MB (USS {_fmt(x['uss_mb'])}) · CPU {x['cpu_percent']:.2f} %"
            pc, fc, rc = cell(p), cell(f), f"RSS {_fmt(q['rss'])}×"
        elif key == "P7":
            def cell(x: dict[str, Any]) -> str:
                return f"{_fmt(x['kb_per_client'])} KB/client ({x['clients']} clients)"
            pc, fc, rc = cell(p), cell(f), f"{_fmt(q['kb_per_client'])}×"
        elif key == "P8":
            def cell(x: dict[str, Any]) -> str:
                return f"{x['nodes']} nodes: {_fmt(x['total_tokens'])} tokens in {x['turns']} turns"
            pc, fc, rc = cell(p), cell(f), f"{_fmt(q['total_tokens'])}×"
        elif key == "P10":
            pc, fc, rc = p10_client_method.cells(r, _fmt)
        else:
            pc = fc = rc = "?"
        met = {True: "yes", False: "**no**", None: "–"}[r.get("met")]
        rows.append(f"| {key} | {r['title']} | {pc} | {fc} | {rc} | {r['target']} | {met} |")
    return "\n".join(rows)


async def amain(args: argparse.Namespace) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    tmp = Path(tempfile.mkdtemp(prefix="cloudisense-bench-"))
    prefix = f"bench/{uuid.uuid4().hex[:10]}"
    procs = Procs(tmp, args.broker, prefix)
    t0 = time.monotonic()
    load0 = os.getloadavg()
    console = Console(stderr=True)
    total = 1 + sum(1 for k in SCENARIOS if not args.only or k in args.only)
    progress = Progress(TextColumn("[bold]{task.description:<40}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                        TimeElapsedColumn(), console=console, transient=False)
    ok = False
    try:
        if load0[0] > (os.cpu_count() or 1):
            console.print(f"[yellow]note: load average {load0[0]:.1f} on {os.cpu_count()} CPUs: other work competes "
                          "for the CPUs; wall-clock figures will be noisy (ratios and CPU per call less so)")
        with progress:
            task = progress.add_task("starting", total=total)
            bench = Bench(args, procs, progress, task)
            results = await bench.run()
        ok = True
    finally:
        procs.stop_all()
        if ok and not args.keep_logs:
            shutil.rmtree(tmp, ignore_errors=True)
        elif not ok:
            print(f"logs kept in {tmp}", file=sys.stderr)
    return {"scenarios": results, "mode": "quick" if args.quick else "full", "seconds": round(time.monotonic() - t0, 1),
            "command": " ".join(["python", "bench/run.py", *sys.argv[1:]]), "broker": procs.broker,
            "startup_seconds": bench.startup_seconds, "notes": bench.notes, "machine": {**machine(), "loadavg_at_start": [round(x, 2) for x in load0]},
            "versions": versions(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="every scenario small (whole run under 60 s)")
    ap.add_argument("--json", metavar="FILE", help="write the results as JSON")
    ap.add_argument("--only", type=lambda s: {x.strip().upper() for x in s.split(",") if x.strip()},
                    help="comma-separated scenarios, e.g. P1,P4")
    ap.add_argument("--broker", default=os.environ.get("CLOUDISENSE_BENCH_BROKER", "auto"),
                    help="MQTT broker for nodes and floors: mqtt://HOST:PORT, or 'auto' (default): start a private "
                         "mosquitto with set_tcp_nodelay on a free port")
    ap.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    args = ap.parse_args(argv)
    out = asyncio.run(amain(args))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
    print(table(out["scenarios"]))
    print(f"\n{out['mode']} run, {out['seconds']:g} s, {out['machine']['cpus']} CPUs; "
          + ", ".join(f"{k} {v}" for k, v in out["versions"].items() if v))
    for n in out["notes"]:
        print(f"note: {n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
