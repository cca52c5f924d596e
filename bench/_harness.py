"""What every benchmark scenario shares: the processes it starts, the request/reply sides and their
interleaved comparison, CPU and memory readings, and the :class:`Bench` a scenario records into.

One module per scenario (``p1_local_rpc.py`` ...) uses these; ``run.py`` finds the scenario modules,
starts what they need and prints the table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import psutil
from websockets.asyncio.client import ClientConnection, connect

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from cloudisense.node.testing import READY_RE as NODE_READY  # noqa: E402
from cloudisense.node.testing import child_env, free_port, stop_process  # noqa: E402

dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
loads = json.loads

PAD_CALL = 120          # call frames ≈ 200 bytes of JSON
INFLIGHT = 64

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
    return dumps(f)


async def ws_connect(url: str) -> ClientConnection:
    return await connect(url, compression=None, max_size=None, open_timeout=20, ping_interval=None)


async def rt(ws: ClientConnection, f: str) -> str:
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


async def private_mosquitto(procs: Procs, extra: str = "") -> str:
    """A mosquitto of our own on a free port, with TCP_NODELAY on its sockets (see MEASUREMENTS: without it,
    QoS 1 round trips stall 40-90 ms on Nagle), no persistence; stopped with every other process.
    ``extra``: more lines of its configuration."""
    exe = mosquitto_binary()
    if exe is None:
        raise RuntimeError("no mosquitto binary; pass --broker mqtt://HOST:PORT")
    port = free_port()
    conf = procs.tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"
                    "persistence false\nlog_dest stderr\nlog_type error\nlog_type warning\n" + extra)
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
            r = loads(await rt(ws, dumps({"type": "call", "id": "w", "node": node, "service": "node",
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
        first = loads(await rt(self.ws, self.frame(0)))
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
            msg = loads(await ws.recv())
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
                  tick: Callable[[str], None] | None = None, inflight: int = INFLIGHT,
                  own_cpu_at_ends: bool = False) -> list[dict[str, Any]]:
    """Run ``n`` calls per side in interleaved blocks after ``warm`` warm-up calls; figures per side.

    CPU time is read around every block for every process of a side.  ``own_cpu_at_ends``: a process only
    one side has is read once, before the first block and after the last (sides whose own processes are
    alike, idle or not, e.g. two node pairs, and blocks so short that reading /proc around each one would
    disturb the calls); processes sides share (the broker) are still read around every block."""
    async def one(side: Any, k: int) -> list[float]:
        return await (side.sequential(k) if mode == "sequential" else side.pipelined(k, inflight))

    shared = {p for s in sides for p in s.pids if sum(p in t.pids for t in sides) > 1}
    per_block = [[p for p in s.pids if p in shared or not own_cpu_at_ends] for s in sides]
    at_ends = [[p for p in s.pids if p not in per_block[i]] for i, s in enumerate(sides)]
    for s in sides:
        await s.open()
    try:
        for s in sides:
            await one(s, warm)
        lat: list[list[float]] = [[] for _ in sides]
        spent = [0.0] * len(sides)
        cpu = [-sum(cpu_seconds(p) for p in pids) for pids in at_ends]
        done, b = 0, 0
        while done < n:
            k = min(block, n - done)
            order = list(range(len(sides)))
            order = order[b % len(order):] + order[:b % len(order)]
            for i in order:
                c0 = sum(cpu_seconds(p) for p in per_block[i])
                t0 = time.perf_counter()
                lat[i] += await one(sides[i], k)
                spent[i] += time.perf_counter() - t0
                cpu[i] += sum(cpu_seconds(p) for p in per_block[i]) - c0
            done += k
            b += 1
            if tick and (block >= 10 or done % 100 == 0 or done == n):
                tick(f"{done}/{n}")
        for i, pids in enumerate(at_ends):
            cpu[i] += sum(cpu_seconds(p) for p in pids)
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



# --- the run -------------------------------------------------------------------------------

Starter = Callable[[], Proc]


class Bench:
    """One run: the processes the scenarios share, their results, the progress line.

    A scenario module (``p1_local_rpc.py`` ...) names the processes it needs (``needs``), is run
    (``run``) and records its figures with :meth:`record` or :meth:`rr`; the runner starts what the
    scenarios need and stops each process after the last scenario that needs it.
    """

    def __init__(self, args: argparse.Namespace, procs: Procs, progress: Any, task: Any,
                 info: dict[str, dict[str, str]]) -> None:
        self.args = args
        self.cfg: dict[str, Any] = QUICK if args.quick else FULL
        self.procs = procs
        self.progress, self.task = progress, task
        self.info = info                    # KEY -> title, measures, target of every scenario
        self.results: dict[str, Any] = {}
        self.notes: list[str] = []
        self.nats_url = "nats://127.0.0.1:4222"
        self.broker_pid: int | None = None
        self.nats_pid: int | None = None
        self.running: dict[str, Proc] = {}  # started processes by the name scenarios know them by
        self.shared: dict[str, Any] = {}    # a measurement two scenarios report from (P2/P3), made once
        self._nats_checked = False
        self._reached: set[tuple[str, str]] = set()
        self._mark = time.monotonic()       # start of the scenario being measured (for its "seconds")
        self.startup_seconds = 0.0

    def tick(self, what: str, advance: float = 0) -> None:
        self.progress.update(self.task, description=what, advance=advance)

    def want(self, key: str) -> bool:
        return not self.args.only or key in self.args.only

    @property
    def broker_pids(self) -> list[int]:
        return [self.broker_pid] if self.broker_pid else []

    async def private_broker(self) -> None:
        p = self.procs
        if p.broker == "auto":
            p.broker = await private_mosquitto(p)
            self.broker_pid = next(x.pid for x in p.procs if x.name == "mosquitto")
            self.notes.append(f"broker: a private mosquitto ({p.broker}, set_tcp_nodelay true, persistence false)")

    async def nats(self) -> None:
        """Find the running nats-server, or start one on a free port (once per run)."""
        if self._nats_checked:
            return
        self._nats_checked = True
        if nats_running():
            self.nats_pid = listener_pid(4222)
            return
        exe = nats_binary()
        if exe:
            port = free_port()
            self.nats_pid = self.procs.spawn("nats-server", [exe, "-a", "127.0.0.1", "-p", str(port)]).pid
            self.nats_url = f"nats://127.0.0.1:{port}"
            await self._wait_port(port)
            self.notes.append(f"nats-server was not running; the bench started one on port {port}")

    def pair(self) -> dict[str, Starter]:
        """Nodes A and B on the run's broker, each with the bench service (P2-P5)."""
        return {"A": lambda: self.procs.node("A"), "B": lambda: self.procs.node("B")}

    async def start(self, needs: dict[str, Starter]) -> None:
        """Start the processes not yet running, side by side, and wait until each is ready."""
        new = {k: f() for k, f in needs.items() if k not in self.running}
        ready = await asyncio.gather(*(self.procs.ready(x) for x in new.values()))
        self.running.update(zip(new, ready, strict=True))

    async def reach(self, a: str, b: str) -> None:
        """Wait until node ``b`` answers a ping relayed by the running node ``a`` (once per pair)."""
        if (a, b) not in self._reached:
            await wait_remote(self.running[a].url, b)
            self._reached.add((a, b))

    def release(self, keep: set[str]) -> None:
        """Stop every running process whose name is not in ``keep``."""
        gone = [k for k in self.running if k not in keep]
        self.procs.stop_many([self.running.pop(k) for k in gone])

    async def _wait_port(self, port: int) -> None:
        for _ in range(100):
            if nats_running(port=port):
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"nats-server did not start on port {port}")

    def record(self, key: str, project: dict[str, Any], floor: dict[str, Any], ratios: dict[str, Any],
               met: bool | None, **extra: Any) -> None:
        now = time.monotonic()
        self.results[key] = {**self.info[key], "project": project, "floor": floor, "ratio": ratios, "met": met,
                             **extra, "loadavg_1m": round(os.getloadavg()[0], 2),
                             "seconds": round(now - self._mark, 1)}
        self._mark = now

    def rr(self, key: str, project: dict[str, Any], floor: dict[str, Any], met: Callable[[dict], bool | None],
           **extra: Any) -> None:
        """Record a request/reply scenario: ratios of p50, p99 and throughput (and against NATS if given)."""
        ratios = {"p50": ratio(project["p50_us"], floor["p50_us"]), "p99": ratio(project["p99_us"], floor["p99_us"]),
                  "throughput": ratio(project["msgs_per_s"], floor["msgs_per_s"])}
        if "nats" in extra:
            n = extra["nats"]
            ratios["p50_vs_nats"] = ratio(project["p50_us"], n["p50_us"])
            ratios["throughput_vs_nats"] = ratio(project["msgs_per_s"], n["msgs_per_s"])
        self.record(key, project, floor, ratios, met(ratios), **extra)

    async def both(self, key: str, sides: list[Any], *, lat_n: int | None = None, lat_block: int | None = None,
                   own_cpu_at_ends: bool = False) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Latency (sequential calls) and throughput (64 in flight) of every side, interleaved
        (``lat_n``/``lat_block``: other than the run's calls and block for the latency; ``own_cpu_at_ends``:
        see :func:`compare`)."""
        cfg = self.cfg
        tick = lambda what: lambda s: self.tick(f"{key} {what} {s}")  # noqa: E731
        lat = await compare(sides, "sequential", lat_n or cfg["lat_n"], cfg["lat_warm"], lat_block or cfg["lat_block"],
                            tick("latency"), own_cpu_at_ends=own_cpu_at_ends)
        n, block = (cfg["tput_n"], cfg["tput_block"]) if key == "P1" else (cfg["remote_tput_n"],
                                                                           cfg["remote_tput_block"])
        tput = await compare(sides, "pipelined", n, cfg["tput_warm"], block, tick("throughput"),
                             own_cpu_at_ends=own_cpu_at_ends)
        return lat, tput

    @staticmethod
    def merge(lat: dict[str, Any], tput: dict[str, Any], **extra: Any) -> dict[str, Any]:
        """Latency from sequential calls, throughput from calls with 64 in flight (and their latency too)."""
        out = {**extra, "p50_us": lat["p50_us"], "p99_us": lat["p99_us"], "msgs_per_s": tput["msgs_per_s"],
               "sequential_msgs_per_s": lat["msgs_per_s"], "inflight_p50_us": tput["p50_us"],
               "inflight_p99_us": tput["p99_us"], "n_sequential": lat["n"], "n_inflight": tput["n"]}
        if "cpu_us_per_call" in lat:
            out["cpu_us_per_call_sequential"] = lat["cpu_us_per_call"]
            out["cpu_us_per_call_inflight"] = tput["cpu_us_per_call"]
        return out


# --- the table's cells --------------------------------------------------------------------

def fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 100 else (f"{v:.2f}" if abs(v) >= 1 else f"{v:.3f}")
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def rr_cells(key: str, r: dict[str, Any]) -> tuple[str, str, str]:
    """Project, floor and ratio cells of a request/reply scenario (P1, P2, P3, P5)."""
    p, f, q = r["project"], r["floor"], r["ratio"]

    def cell(x: dict[str, Any]) -> str:
        c = x.get("cpu_us_per_call_inflight" if key == "P3" else "cpu_us_per_call_sequential")
        return (f"p50 {fmt(x['p50_us'])} µs · p99 {fmt(x['p99_us'])} µs · {fmt(x['msgs_per_s'])}/s"
                + (f" · CPU {fmt(c)} µs/call" if c is not None else ""))
    pc, fc = cell(p), cell(f)
    rc = f"p50 {fmt(q['p50'])}× · p99 {fmt(q['p99'])}× · tput {fmt(q['throughput'])}×"
    if "crypto" in r:
        c = r["crypto"]
        rc += (f"<br>MAC {fmt(c['mac_us'])} + check {fmt(c['mac_verify_us'])} µs, ×2 = "
               f"{fmt(c['per_round_trip_us'])} µs per round trip (budget at 1.05×: "
               f"{fmt(c['budget_us_at_1_05'])} µs; Ed25519 sign {fmt(c['sign_us'])} + verify "
               f"{fmt(c['verify_us'])} µs would be {fmt(c['per_round_trip_sig_us'])})")
    if "nats" in r:
        fc += f"<br>NATS: {cell(r['nats'])}"
        nk = "p50_vs_nats" if key == "P2" else "throughput_vs_nats"
        rc += f"<br>vs NATS: {'p50' if key == 'P2' else 'tput'} {fmt(q[nk])}×"
    return pc, fc, rc


def idle_group(b: Bench) -> dict[str, Starter]:
    """P6 and P7's processes, started after the others stopped: an idle node without the bench service,
    and the idle hand relay and websockets gateway, each on a topic prefix of its own."""
    p = b.procs
    return {"I": lambda: p.node("I", plugin=False, prefix=p.prefix + "/idle"),
            "idle-relay": lambda: p.floor("relay", "--broker", p.broker, "--prefix", p.prefix + "/idle-floor"),
            "idle-gateway": lambda: p.floor("gateway", "--broker", p.broker,
                                            "--topic", p.prefix + "/idle-floor/fan")}
