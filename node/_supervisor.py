"""Supervised child processes: :class:`Supervisor` and the ``supervisor`` service.

``async with Supervisor(configs, publish) as sup:`` starts the ``autostart``
processes and, on exit, stops every child (SIGTERM to its process group,
SIGKILL after ``stop_grace``), reaps it and cancels and awaits its own tasks.

Each child
- runs in its own session/process group (``start_new_session``), so stop and
  kill reach everything it forked;
- on Linux gets ``PR_SET_PDEATHSIG = SIGTERM``, so it dies with the node even
  when the node is ``kill -9``'d.  The kernel sends it when the *thread* that
  forked exits: run the supervisor on a thread that lives as long as the node
  (the event loop's thread);
- gets an environment built from an allow-list (:func:`child_env`): the
  variables its ``inherit_env`` names (default ``DEFAULT_INHERIT_ENV``: PATH,
  HOME, the locale …), then its own ``env``.  The node's secrets (its token,
  the broker password, API keys) are not passed on unless named exactly;
- has stdout and stderr merged and captured line by line, with timestamps,
  into a bounded deque (``ProcessConfig.log_lines``).  Lines are collected by
  the subprocess protocol's callbacks rather than a reader task: nothing to
  cancel, and exit is seen when the process exits even if a grandchild keeps
  the pipe open;
- is restarted with capped exponential backoff (:class:`Backoff`, pure logic)
  when it exits on its own and ``restart`` is true.

States::

    stopped ──start──► starting ──► running ──stop──► stopping ──► stopped
                          │            │
                          │            └─exits─► exited ──(restart)──► backoff ──► starting
                          └─can't execute─► exited (error set, not retried)

``auto_restarts`` counts *automatic* restarts only (like systemd's ``NRestarts``);
an operator ``restart`` does not count, but is published like one, with
``"reason": "operator"``.  ``restarts`` is the same number under its old name
(kept for existing clients).

Events, through ``publish(topic, data)``::

    process/NAME/started    {name, pid, command, auto_restarts, restarts, node}
    process/NAME/exited     {name, pid, exit_code, signal, uptime, restart_in, error, node}
    process/NAME/restarted  {name, pid, old_pid, auto_restarts, restarts, reason, delay, node}
    process/NAME/stopped    {name, pid, exit_code, killed, node}

``exit_code`` follows :mod:`subprocess`: negative means killed by that signal.

Following the output (``l`` in the console): while someone is subscribed to
``$process/NAME/log`` (``wanted(topic)`` says so: a local subscriber or a
peer's interest), captured lines are also published there, batched (one event
per :data:`FOLLOW_INTERVAL` at most, each at most :data:`FOLLOW_MAX_LINES`
lines and :data:`FOLLOW_MAX_BYTES`; older lines of a bigger burst are skipped
and counted)::

    $process/NAME/log       {name, node, seq, lines, skipped}

Every captured line has a sequence number (``seq`` is the first line's);
``supervisor.logs`` answers ``next_seq``, the number the next line will get.
A follower subscribes first, then reads ``logs``, and keeps from the events
only the lines numbered ``next_seq`` and up: no gap, no line twice.  The
``$`` keeps these events out of ``#`` and ``process/#`` filters, so nobody
gets (and the node does not publish) log lines it did not ask for.
"""

from __future__ import annotations

import asyncio
import builtins
import collections
import contextlib
import ctypes
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any, Awaitable, Callable, Coroutine, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from ._config import SECRET_NAME, ProcessConfig
from ._errors import CloudisenseError, ConfigError, InvalidParams
from ._services import Service, method

log = logging.getLogger(__name__)
_T = TypeVar("_T")

__all__ = ["Backoff", "ProcessStatus", "Supervisor", "SupervisorService", "child_env"]

State = Literal["running", "stopped", "exited", "backoff", "starting", "stopping"]

MAX_LINE = 8192          # bytes of one captured line; longer lines are cut
DRAIN_TIMEOUT = 1.0      # seconds to wait for output after the process exited
KILL_TIMEOUT = 10.0      # seconds to wait for a SIGKILLed process to be reaped
PR_SET_PDEATHSIG = 1
FOLLOW_INTERVAL = 0.1    # seconds: lines arriving meanwhile go out in one $process/NAME/log event
FOLLOW_MAX_LINES = 200   # lines in one such event (older ones of a bigger burst are skipped)
FOLLOW_MAX_BYTES = 32 * 1024


def log_topic(name: str) -> str:
    """The topic a process's output is followed on."""
    return f"$process/{name}/log"


# --- pure logic -----------------------------------------------------------------

def child_env(cfg: ProcessConfig, environ: Mapping[str, str]) -> dict[str, str]:
    """The environment of ``cfg``'s process: an allow-list of ``environ``, then ``cfg.env``.

    ``inherit_env`` entries are exact names or ``fnmatch`` patterns (``LC_*``).
    A pattern never matches a secret-looking name (:data:`SECRET_NAME`); an
    exact name always passes, so an operator can still hand one secret on
    on purpose.
    """
    exact = {p for p in cfg.inherit_env if not any(c in p for c in "*?[")}
    patterns = [p for p in cfg.inherit_env if p not in exact]
    env = {k: v for k, v in environ.items()
           if k in exact or (patterns and not SECRET_NAME.search(k) and any(fnmatchcase(k, p) for p in patterns))}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(cfg.env)
    return env

@dataclasses.dataclass
class Backoff:
    """Capped exponential restart delays: 0.5, 1, 2, 4 … ``cap`` seconds.

    A process that stayed up ``reset_after`` seconds starts again from
    ``initial``.  ``next_delay(uptime)`` returns the delay before the next
    restart and advances the sequence.
    """

    initial: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    reset_after: float = 30.0
    attempt: int = 0

    def next_delay(self, uptime: float) -> float:
        if uptime >= self.reset_after:
            self.attempt = 0
        delay = min(self.cap, self.initial * self.factor ** self.attempt)
        if delay < self.cap:
            self.attempt += 1
        return delay

    def reset(self) -> None:
        self.attempt = 0


class ProcessStatus(BaseModel):
    """The state of one supervised process."""

    name: str
    state: State
    pid: int | None = Field(None, description="process id while starting/running/stopping")
    auto_restarts: int = Field(0, description="automatic restarts after the process exited on its own (an "
                               "operator's restart does not count)")
    restarts: int = Field(0, description="the same as auto_restarts (its old name, kept for existing clients)")
    uptime: float | None = Field(None, description="seconds since it started, while running")
    exit_code: int | None = Field(None, description="last exit code; negative: killed by that signal")
    command: list[str]
    error: str | None = Field(None, description="why it could not be started, if it could not")
    restart_in: float | None = Field(None, description="seconds until the next automatic restart (backoff)")


# --- I/O: one child -------------------------------------------------------------

def _timestamp() -> str:
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(now)) + f".{int(now % 1 * 1000):03d}"


class _ChildProtocol(asyncio.SubprocessProtocol):
    """Splits the child's output into lines and reports its exit."""

    def __init__(self, sink: Callable[[str], None], loop: asyncio.AbstractEventLoop) -> None:
        self._sink = sink
        self._buf = bytearray()
        self.transport: asyncio.SubprocessTransport | None = None
        self.exited: asyncio.Future[int] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        while (end := buf.find(b"\n", start)) >= 0:
            self._emit(buf[start:end])
            start = end + 1
        del buf[:start]
        if len(buf) > MAX_LINE:
            self._emit(buf[:MAX_LINE], cut=True)
            buf.clear()

    def pipe_connection_lost(self, fd: int, exc: Exception | None) -> None:
        if self._buf:
            self._emit(self._buf)
            self._buf.clear()

    def process_exited(self) -> None:
        if not self.exited.done():
            assert self.transport is not None
            code = self.transport.get_returncode()
            assert code is not None   # asyncio calls process_exited once the process has a return code
            self.exited.set_result(code)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def _emit(self, raw: bytes | bytearray, *, cut: bool = False) -> None:
        line = bytes(raw[:MAX_LINE]).decode("utf-8", "replace").rstrip("\r")
        self._sink(line + " …" if cut else line)


_prctl: Any = None


def _preexec() -> Callable[[], None] | None:
    """The ``preexec_fn`` that sets PR_SET_PDEATHSIG=SIGTERM (Linux), or None."""
    global _prctl
    if not sys.platform.startswith("linux"):
        return None
    if _prctl is None:
        try:
            fn = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # pragma: no cover - no libc prctl
            _prctl = False
            return None
        fn.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        fn.restype = ctypes.c_int
        _prctl = fn
    if _prctl is False:  # pragma: no cover
        return None
    prctl, parent, sig = _prctl, os.getpid(), int(signal.SIGTERM)

    def setup() -> None:  # runs in the child between fork and exec: keep it tiny
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
        if os.getppid() != parent:  # the node died before prctl took effect
            os._exit(1)

    return setup


die_with_parent = _preexec  # also used for the embedded broker and the demo's nodes


def _killpg(pgid: int, sig: int) -> bool:
    """Signal a process group; False if it no longer exists."""
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:  # the id now belongs to someone else's group
        return False


def _group_alive(pgid: int) -> bool:
    return _killpg(pgid, 0)


def _signal_name(code: int | None) -> str | None:
    if code is None or code >= 0:
        return None
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


class _Managed:
    """Bookkeeping of one configured process (owned by the Supervisor)."""

    def __init__(self, cfg: ProcessConfig, backoff: Backoff, on_line: Callable[[_Managed], None],
                 seq: int = 0) -> None:
        self.cfg = cfg
        self.state: State = "stopped"
        self.protocol: _ChildProtocol | None = None
        self.pid: int | None = None
        self.started_at: float | None = None     # monotonic
        self.restarts = 0
        self.exit_code: int | None = None
        self.error: str | None = None
        self.restart_at: float | None = None     # monotonic, while in backoff
        self.log: collections.deque[str] = collections.deque(maxlen=cfg.log_lines)
        self.seq = seq          # the number the next captured line gets
        self.sent = seq         # lines below this were published to followers (or nobody followed)
        self.follow: asyncio.TimerHandle | None = None   # a pending $process/NAME/log event
        self.on_line = on_line
        self.lock = asyncio.Lock()
        self.backoff = dataclasses.replace(backoff, attempt=0)
        self.watcher: asyncio.Task[None] | None = None

    def line(self, text: str) -> None:
        self.log.append(f"{_timestamp()} {text}")
        self.seq += 1
        self.on_line(self)

    def tail(self, n: int) -> tuple[list[str], int]:
        """The last ``n`` lines and the number the next line will get."""
        return (list(self.log)[-n:] if n > 0 else []), self.seq

    def unsent(self) -> tuple[list[str], int, int]:
        """The lines not yet published, bounded: (lines, seq of the first, how many were skipped)."""
        new = self.seq - self.sent
        lines = list(self.log)[-min(new, len(self.log), FOLLOW_MAX_LINES):] if new else []
        size = sum(len(x) for x in lines)
        while lines and size > FOLLOW_MAX_BYTES:
            size -= len(lines.pop(0))
        self.sent = self.seq
        return lines, self.seq - len(lines), new - len(lines)

    def note(self, text: str) -> None:
        self.line(f"[supervisor] {text}")

    def status(self) -> ProcessStatus:
        now = time.monotonic()
        running = self.state in ("running", "stopping")
        return ProcessStatus(
            name=self.cfg.name, state=self.state, pid=self.pid, auto_restarts=self.restarts,
            restarts=self.restarts,
            uptime=round(now - self.started_at, 3) if running and self.started_at is not None else None,
            exit_code=self.exit_code, command=list(self.cfg.command), error=self.error,
            restart_in=(round(max(0.0, self.restart_at - now), 3)
                        if self.state == "backoff" and self.restart_at is not None else None),
        )


# --- I/O: the supervisor --------------------------------------------------------

class Supervisor:
    """Owns the configured child processes; an async context manager.

    ``publish(topic, data)`` is called (synchronously) for every lifecycle
    event; an exception it raises is logged and otherwise ignored.
    ``backoff`` is the restart policy each process gets a copy of.
    """

    def __init__(self, configs: list[ProcessConfig], publish: Callable[[str, dict[str, Any]], object], *,
                 node_id: str = "", backoff: Backoff | None = None,
                 wanted: Callable[[str], bool] | None = None) -> None:
        self._procs: dict[str, _Managed] = {}
        policy = backoff or Backoff()
        for cfg in configs:
            if cfg.name in self._procs:
                raise ConfigError(f"process name {cfg.name!r} is configured twice")
            self._procs[cfg.name] = _Managed(cfg, policy, self._line_added)
        self._publish_cb = publish
        self._wanted = wanted
        self._node_id = node_id
        self._policy = policy
        self._tg: asyncio.TaskGroup | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._phase: Literal["new", "open", "closing", "closed"] = "new"
        self._log = logging.LoggerAdapter(log, {"node": node_id})

    # context ----------------------------------------------------------------

    async def __aenter__(self) -> Supervisor:
        if self._phase != "new":
            raise RuntimeError("a Supervisor can be entered only once")
        self._tg = asyncio.TaskGroup()
        await self._tg.__aenter__()
        self._phase = "open"
        try:
            for m in self._procs.values():
                if m.cfg.autostart:
                    async with m.lock:
                        await self._start_locked(m)
        except BaseException as e:
            await self.__aexit__(type(e), e, e.__traceback__)
            raise
        return self

    async def __aexit__(self, et: Any, exc: Any, tb: Any) -> None:
        if self._phase in ("new", "closed"):
            return
        self._phase = "closing"
        assert self._tg is not None
        try:
            async with asyncio.TaskGroup() as tg:
                for m in self._procs.values():
                    tg.create_task(self._shutdown_one(m), name=self._task_name("shutdown", m))
        finally:
            for m in self._procs.values():  # only does something if the orderly stop was cut short
                self._force_kill(m)
            for t in list(self._tasks):
                t.cancel()
            for m in self._procs.values():
                self._unfollow(m)
            self._phase = "closed"
            await self._tg.__aexit__(None, None, None)

    # public API ---------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._procs)

    def snapshot(self) -> list[ProcessStatus]:
        """Every process's status, synchronously (for heartbeats and the dashboard)."""
        return [m.status() for m in self._procs.values()]

    async def list(self) -> list[ProcessStatus]:
        return self.snapshot()

    async def status(self, name: str) -> ProcessStatus:
        return self._get(name).status()

    async def start(self, name: str) -> ProcessStatus:
        """Start it (now, even if a backoff restart is pending); no-op if running."""
        m = self._get(name)
        return await self._op(m, "start", self._start_locked)

    async def stop(self, name: str) -> ProcessStatus:
        """Stop it and cancel any pending backoff restart; no-op if not running."""
        m = self._get(name)
        return await self._op(m, "stop", self._stop_locked)

    async def restart(self, name: str) -> ProcessStatus:
        """Stop it if running, then start it again: a new pid."""
        m = self._get(name)
        return await self._op(m, "restart", self._restart_locked)

    async def logs(self, name: str, lines: int = 50) -> builtins.list[str]:
        return self.tail(name, lines)[0]

    def tail(self, name: str, lines: int = 50) -> tuple[builtins.list[str], int]:
        """The last ``lines`` captured lines of ``name`` and the sequence number of the next one."""
        return self._get(name).tail(lines)

    async def update(self, configs: builtins.list[ProcessConfig]) -> dict[str, builtins.list[str]]:
        """Apply new process definitions, like supervisorctl's ``update`` (SIGHUP reload).

        Removed processes are stopped and forgotten; changed ones are stopped and started again
        with the new definition (if ``autostart``); added ones are started (if ``autostart``);
        unchanged ones are not touched.  Returns the names by what happened to them.
        """
        new: dict[str, ProcessConfig] = {}
        for cfg in configs:
            if cfg.name in new:
                raise ConfigError(f"process name {cfg.name!r} is configured twice")
            new[cfg.name] = cfg
        if self._phase != "open":
            raise CloudisenseError("cannot update processes: the supervisor is not running")
        removed = [n for n in self._procs if n not in new]
        changed = [n for n in self._procs if n in new and new[n] != self._procs[n].cfg]
        added = [n for n in new if n not in self._procs]
        for name in removed + changed:
            m = self._procs[name]
            await self._op(m, "stop", self._stop_locked)
            m.note("definition removed" if name in removed else "definition changed")
        for name in removed + changed:
            self._unfollow(self._procs[name])
        for name in removed:
            del self._procs[name]
        for name in changed + added:
            old = self._procs.get(name)   # a changed one keeps numbering its lines: followers see no reset
            self._procs[name] = _Managed(new[name], self._policy, self._line_added, old.seq if old else 0)
        self._procs = {n: self._procs[n] for n in new}   # config order
        for name in changed + added:
            m = self._procs[name]
            if m.cfg.autostart:
                await self._op(m, "start", self._start_locked)
        return {"added": added, "removed": removed, "changed": changed}

    # operations (each runs under the process's lock) ----------------------------

    def _get(self, name: str) -> _Managed:
        m = self._procs.get(name)
        if m is None:
            raise InvalidParams(f"no process named {name!r} (processes: {', '.join(self._procs) or 'none'})")
        return m

    async def _op(self, m: _Managed, what: str,
                  fn: Callable[[_Managed], Awaitable[ProcessStatus]]) -> ProcessStatus:
        """Run an operation as a task of the supervisor, so it completes even if the caller is cancelled."""
        if self._phase != "open" or self._tg is None:
            raise CloudisenseError(f"cannot {what} {m.cfg.name!r}: the supervisor is "
                                   f"{'not running' if self._phase == 'new' else 'shutting down'}")

        async def run() -> ProcessStatus | BaseException:
            try:
                async with m.lock:
                    if self._phase != "open":
                        raise CloudisenseError(f"cannot {what} {m.cfg.name!r}: the supervisor is shutting down")
                    return await fn(m)
            except Exception as e:  # noqa: BLE001 - handed to the caller, never to the TaskGroup
                return e

        task = self._spawn_task(run(), self._task_name(what, m))
        result = await asyncio.shield(task)
        if isinstance(result, BaseException):
            raise result
        return result

    async def _start_locked(self, m: _Managed) -> ProcessStatus:
        if m.state == "running":
            return m.status()
        await self._cancel_watcher(m)
        m.backoff.reset()
        if await self._spawn(m):
            m.watcher = self._spawn_task(self._watch(m), self._task_name("watch", m))
        return m.status()

    async def _stop_locked(self, m: _Managed) -> ProcessStatus:
        await self._cancel_watcher(m)
        if m.state == "backoff":
            m.state, m.restart_at = "stopped", None
            m.note("pending restart cancelled; stopped")
            self._publish(m, "stopped", pid=None, exit_code=m.exit_code, killed=False)
        elif m.state == "running":
            await self._terminate(m)
        return m.status()

    async def _restart_locked(self, m: _Managed) -> ProcessStatus:
        old_pid = m.pid if m.state == "running" else None
        await self._stop_locked(m)
        m.backoff.reset()
        if await self._spawn(m):
            m.watcher = self._spawn_task(self._watch(m), self._task_name("watch", m))
            self._publish(m, "restarted", pid=m.pid, old_pid=old_pid, auto_restarts=m.restarts,
                          restarts=m.restarts,
                          reason="operator", delay=None)
        return m.status()

    async def _shutdown_one(self, m: _Managed) -> None:
        async with m.lock:
            await self._stop_locked(m)

    # the child's life ---------------------------------------------------------

    async def _spawn(self, m: _Managed) -> bool:
        """Start the child; on failure the state is ``exited`` with ``error`` set."""
        cfg = m.cfg
        argv = list(cfg.command)
        if argv[0] in ("python", "python3"):
            argv[0] = sys.executable
        env = child_env(cfg, os.environ)
        loop = asyncio.get_running_loop()
        m.state, m.error, m.exit_code, m.restart_at = "starting", None, None, None
        try:
            transport, protocol = await loop.subprocess_exec(
                lambda: _ChildProtocol(m.line, loop), *argv,
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                cwd=cfg.cwd or None, env=env, start_new_session=True, preexec_fn=_preexec())
        except (OSError, subprocess.SubprocessError) as e:
            m.state, m.pid, m.protocol = "exited", None, None
            m.error = f"cannot execute {argv[0]!r}: {e}"
            m.note(m.error)
            self._log.warning("process %s: %s", cfg.name, m.error)
            self._publish(m, "exited", pid=None, exit_code=None, signal=None, uptime=None,
                          restart_in=None, error=m.error)
            return False
        m.protocol = protocol
        m.pid = transport.get_pid()
        m.started_at = time.monotonic()
        m.state = "running"
        m.note(f"started pid {m.pid}: {' '.join(argv)}")
        self._log.info("process %s started (pid %s)", cfg.name, m.pid)
        self._publish(m, "started", pid=m.pid, command=list(cfg.command), auto_restarts=m.restarts,
                      restarts=m.restarts)
        return True

    async def _watch(self, m: _Managed) -> None:
        """While the child runs: notice it exiting on its own, restart it after a backoff."""
        try:
            while True:
                proto, pid = m.protocol, m.pid
                assert proto is not None and pid is not None
                code = await asyncio.shield(proto.exited)  # shared: never cancel it
                if _group_alive(pid):  # the group dies with its leader
                    m.note("killing processes left in its group")
                    _killpg(pid, signal.SIGKILL)
                await self._close_pipes(proto)
                uptime = time.monotonic() - (m.started_at or time.monotonic())
                m.state, m.exit_code, m.pid, m.protocol = "exited", code, None, None
                sig = _signal_name(code)
                m.note(f"pid {pid} exited with code {code}" + (f" ({sig})" if sig else ""))
                again = m.cfg.restart and self._phase == "open"
                delay = m.backoff.next_delay(uptime) if again else None
                (self._log.warning if code else self._log.info)(
                    "process %s (pid %s) exited with code %s%s", m.cfg.name, pid, code,
                    f"; restarting in {delay:g} s" if again else "")
                self._publish(m, "exited", pid=pid, exit_code=code, signal=sig, uptime=round(uptime, 3),
                              restart_in=delay, error=None)
                if delay is None:
                    return
                m.state, m.restart_at = "backoff", time.monotonic() + delay
                m.note(f"restarting in {delay:g} s")
                await asyncio.sleep(delay)
                async with m.lock:
                    if m.state != "backoff" or self._phase != "open":
                        return
                    if not await self._spawn(m):
                        return
                    m.restarts += 1
                    self._publish(m, "restarted", pid=m.pid, old_pid=pid, auto_restarts=m.restarts,
                                  restarts=m.restarts, reason="exited", delay=delay)
        except asyncio.CancelledError:
            raise
        except Exception as e:  # noqa: BLE001 - a bug of ours: keep the TaskGroup (and the node) alive
            self._log.exception("watching process %s failed", m.cfg.name)
            m.error = f"supervisor error: {type(e).__name__}: {e}"
            m.note(m.error)

    async def _terminate(self, m: _Managed) -> None:
        """SIGTERM the group, SIGKILL after ``stop_grace``; wait until reaped.  State → stopped."""
        proto, pid = m.protocol, m.pid
        assert proto is not None and pid is not None
        grace = m.cfg.stop_grace
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        m.state = "stopping"
        killed = False
        if not proto.exited.done():
            m.note(f"stopping pid {pid} (SIGTERM)")
            if not _killpg(pid, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGTERM)
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(proto.exited)
            except TimeoutError:
                m.note(f"pid {pid} still running {grace:g} s after SIGTERM; sending SIGKILL")
                self._log.warning("process %s (pid %s) ignored SIGTERM for %g s; killing it",
                                  m.cfg.name, pid, grace)
                killed = True
                if not _killpg(pid, signal.SIGKILL):
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                try:
                    async with asyncio.timeout(KILL_TIMEOUT):
                        await asyncio.shield(proto.exited)
                except TimeoutError:
                    self._log.error("process %s (pid %s) survived SIGKILL for %g s",
                                    m.cfg.name, pid, KILL_TIMEOUT)
        if _group_alive(pid):  # children of the child: the rest of the grace, then SIGKILL
            while loop.time() < deadline and _group_alive(pid):
                await asyncio.sleep(0.05)
            if _killpg(pid, signal.SIGKILL):
                killed = True
        await self._close_pipes(proto)
        code = proto.exited.result() if proto.exited.done() else None
        m.state, m.exit_code, m.pid, m.protocol = "stopped", code, None, None
        m.note(f"pid {pid} stopped with code {code}" + (" after SIGKILL" if killed else ""))
        self._log.info("process %s (pid %s) stopped", m.cfg.name, pid)
        self._publish(m, "stopped", pid=pid, exit_code=code, killed=killed)

    async def _close_pipes(self, proto: _ChildProtocol) -> None:
        """Let the last output arrive (bounded), then close the transport."""
        if not proto.closed.done():
            try:
                async with asyncio.timeout(DRAIN_TIMEOUT):
                    await asyncio.shield(proto.closed)
            except TimeoutError:
                pass
        if proto.transport is not None:
            proto.transport.close()

    async def _cancel_watcher(self, m: _Managed) -> None:
        task, m.watcher = m.watcher, None
        if task is None or task.done() or task is asyncio.current_task():
            return
        me = asyncio.current_task()
        before = me.cancelling() if me is not None else 0
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            if me is not None and me.cancelling() > before:  # we were cancelled too
                raise

    def _force_kill(self, m: _Managed) -> None:
        """Last resort when shutdown was interrupted: SIGKILL and let asyncio reap."""
        if m.protocol is not None and m.pid is not None and not m.protocol.exited.done():
            _killpg(m.pid, signal.SIGKILL)
            if m.protocol.transport is not None:
                m.protocol.transport.close()

    # following the output ($process/NAME/log) --------------------------------

    def _line_added(self, m: _Managed) -> None:
        if m.follow is not None:
            return  # an event is on its way: this line goes with it
        if self._wanted is None or self._phase == "closed" or not self._wanted(log_topic(m.cfg.name)):
            m.sent = m.seq
            return
        m.follow = asyncio.get_running_loop().call_later(FOLLOW_INTERVAL, self._send_lines, m)

    def _send_lines(self, m: _Managed) -> None:
        m.follow = None
        lines, seq, skipped = m.unsent()
        if not lines or self._wanted is None or not self._wanted(log_topic(m.cfg.name)):
            return
        try:
            self._publish_cb(log_topic(m.cfg.name), {"name": m.cfg.name, "node": self._node_id, "seq": seq,
                                                     "lines": lines, "skipped": skipped})
        except Exception:  # noqa: BLE001 - a failing subscriber must not stop the supervisor
            self._log.exception("publishing %s failed", log_topic(m.cfg.name))

    def _unfollow(self, m: _Managed) -> None:
        if m.follow is not None:
            m.follow.cancel()
            m.follow = None

    # plumbing -----------------------------------------------------------------

    def _spawn_task(self, coro: Coroutine[Any, Any, _T], name: str) -> asyncio.Task[_T]:
        assert self._tg is not None
        task = self._tg.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _task_name(self, what: str, m: _Managed) -> str:
        return f"supervisor[{self._node_id}].{what}:{m.cfg.name}"

    def _publish(self, m: _Managed, event: str, **data: Any) -> None:
        topic = f"process/{m.cfg.name}/{event}"
        try:
            self._publish_cb(topic, {"name": m.cfg.name, **data, "state": m.status().state, "node": self._node_id})
        except Exception:  # noqa: BLE001 - a failing subscriber must not stop the supervisor
            self._log.exception("publishing %s failed", topic)


# --- the service ----------------------------------------------------------------

class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProcessName(_Params):
    name: str = Field(description="the process name, as configured (see supervisor.list)")


class LogsParams(ProcessName):
    lines: int = Field(50, ge=1, le=1000, description="how many of the most recent lines")


class ProcessList(BaseModel):
    processes: list[ProcessStatus]


class ProcessLogs(BaseModel):
    name: str
    lines: list[str] = Field(description="captured stdout+stderr lines, oldest first, each prefixed with a timestamp")
    next_seq: int = Field(0, description="the sequence number the next captured line will get: a follower of "
                          "$process/NAME/log keeps the events' lines from this number on")


class SupervisorService(Service):
    """The ``supervisor`` service over a :class:`Supervisor` the node owns."""

    name = "supervisor"
    description = ("Child processes this node supervises: list them, read their state and recent "
                   "output, start, stop and restart them.")

    def __init__(self, supervisor: Supervisor) -> None:
        super().__init__()
        self.supervisor = supervisor

    @method(mutates=False)
    async def list(self) -> ProcessList:
        """Every supervised process of this node with its state (running, stopped, exited, backoff,
        starting, stopping), pid, automatic restart count, uptime and last exit code."""
        return ProcessList(processes=await self.supervisor.list())

    @method(mutates=False)
    async def status(self, p: ProcessName) -> ProcessStatus:
        """The state, pid, automatic restart count, uptime and last exit code of one process."""
        return await self.supervisor.status(p.name)

    @method(mutates=True)
    async def start(self, p: ProcessName) -> ProcessStatus:
        """Start a stopped or exited process (at once, also if an automatic restart is pending).
        Does nothing if it is already running. Returns its new status; if the command cannot be
        executed, the status is 'exited' with 'error' saying why."""
        return await self.supervisor.start(p.name)

    @method(mutates=True)
    async def stop(self, p: ProcessName) -> ProcessStatus:
        """Stop a process: SIGTERM to its process group, SIGKILL if it has not exited after its grace
        period. Cancels a pending automatic restart. Does nothing if it is not running."""
        return await self.supervisor.stop(p.name)

    @method(mutates=True)
    async def restart(self, p: ProcessName) -> ProcessStatus:
        """Restart a process: stop it if it runs (SIGTERM, then SIGKILL after the grace period) and
        start it again. Returns the new status, with the new pid. Operator restarts do not count
        in 'auto_restarts' (also given as 'restarts'), which counts automatic restarts after crashes."""
        return await self.supervisor.restart(p.name)

    @method(mutates=False)
    async def logs(self, p: LogsParams) -> ProcessLogs:
        """The most recent output lines (stdout and stderr, timestamped) of a process, oldest first,
        including the supervisor's own notes on starts, exits and restarts. To follow the output,
        subscribe to $process/NAME/log first, then call this, and keep the events' lines numbered
        next_seq and up."""
        lines, next_seq = self.supervisor.tail(p.name, p.lines)
        return ProcessLogs(name=p.name, lines=lines, next_seq=next_seq)
