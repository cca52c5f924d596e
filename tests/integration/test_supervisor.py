"""The process supervisor with real child processes (the demo logger).

Decision documented here and in ``node/_supervisor.py``: ``restarts`` counts
*automatic* restarts only (like systemd's NRestarts); an operator restart
gives a new pid, publishes ``process/NAME/restarted`` with
``reason="operator"``, and leaves ``restarts`` unchanged.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from typing import Any, Callable

import psutil
import pytest
from support import async_wait_until

from cloudisense.node._config import ProcessConfig
from cloudisense.node._errors import ErrorCode, InvalidParams
from cloudisense.node._services import Registry
from cloudisense.node._supervisor import Backoff, Supervisor, SupervisorService

LOGGER = ["python", "-m", "cloudisense.node.demo.logger", "--interval", "0.1"]
IGNORES_TERM = ["python", "-c",
                "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(600)"]


async def wait_for(pred: Callable[[], Any], timeout: float = 10.0, *, what: str = "") -> Any:
    """Poll ``pred`` (sync or async) until it returns something truthy; fail after ``timeout``."""
    return await async_wait_until(pred, timeout, interval=0.02, what=what)


async def log_lines(sup: Supervisor, name: str, containing: str) -> list[str]:
    """The captured lines of ``name`` that contain ``containing`` (a wait_for predicate)."""
    return [ln for ln in await sup.logs(name, 1000) if containing in ln]


def gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie some other parent has yet to reap)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def alive(pid: int | None) -> bool:
    return pid is not None and not gone(pid)


def my_children() -> list[psutil.Process]:
    return psutil.Process().children(recursive=True)


class Events:
    """The publish callback: records (monotonic time, topic, data)."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, str, dict]] = []

    def __call__(self, topic: str, data: dict) -> None:
        self.seen.append((time.monotonic(), topic, data))

    def of(self, topic: str) -> list[dict]:
        return [d for _, t, d in self.seen if t == topic]

    def times(self, topic: str) -> list[float]:
        return [ts for ts, t, _ in self.seen if t == topic]


def logger_cfg(**kw: Any) -> ProcessConfig:
    return ProcessConfig(**{"name": "logger", "command": LOGGER, "stop_grace": 3.0, **kw})


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture(autouse=True)
def no_children_left():
    yield
    left = [p for p in my_children() if p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"child processes left behind: {left}"


# --- pure ------------------------------------------------------------------------

def test_backoff_doubles_caps_and_resets():
    b = Backoff()
    assert [b.next_delay(0.1) for _ in range(8)] == [0.5, 1, 2, 4, 8, 16, 30, 30]
    assert b.next_delay(31.0) == 0.5          # stayed up long enough: start over
    assert b.next_delay(1.0) == 1
    b.reset()
    assert b.next_delay(1.0) == 0.5


# --- lifecycle -------------------------------------------------------------------

async def test_start_running_pid_and_logs(events):
    async with Supervisor([logger_cfg()], events, node_id="n1") as sup:
        st = await sup.status("logger")
        assert st.state == "running" and st.pid and psutil.pid_exists(st.pid)
        assert st.command == LOGGER and st.restarts == 0 and st.exit_code is None
        assert st.uptime is not None and st.uptime >= 0
        proc = psutil.Process(st.pid)
        assert proc.cmdline()[0] == sys.executable        # "python" runs in the node's interpreter
        assert os.getpgid(st.pid) == st.pid               # own process group
        assert events.of("process/logger/started")[0] == {
            "name": "logger", "pid": st.pid, "command": LOGGER, "auto_restarts": 0, "restarts": 0, "state": "running",
            "node": "n1"}

        lines = await wait_for(lambda: log_lines(sup, "logger", "logger tick 3"),
                               what="three ticks")
        logs = await sup.logs("logger", 1000)
        assert any(f"logger: started pid {st.pid}" in ln for ln in logs)  # the program's own first line
        assert any("[supervisor] started pid" in ln for ln in logs)
        assert lines[0] in logs and lines[0][:4].isdigit()              # timestamp prefix
        assert len(await sup.logs("logger", 2)) == 2

        again = await sup.start("logger")                 # start on running: no-op
        assert again.pid == st.pid and again.state == "running"
        assert len(events.of("process/logger/started")) == 1
    assert gone(st.pid)


async def test_output_is_followed_only_while_wanted_numbered_without_gaps(events):
    """``$process/NAME/log`` goes out only while someone wants it; its lines are numbered as ``tail`` counts."""
    followers: set[str] = set()
    topic = "$process/logger/log"

    def followed() -> list[str]:
        return [ln for d in events.of(topic) for ln in d["lines"]]

    async with Supervisor([logger_cfg()], events, node_id="n1", wanted=followers.__contains__) as sup:
        await wait_for(lambda: log_lines(sup, "logger", "logger tick 2"), what="ticks before anyone follows")
        assert events.of(topic) == []                      # nobody wanted them: nothing published
        followers.add(topic)
        _, next_seq = sup.tail("logger", 1)
        await wait_for(lambda: sum("tick" in ln for ln in followed()) >= 3, what="three ticks followed")
        followers.clear()
        sent = len(events.of(topic))
        lines, end = sup.tail("logger", 1000)
        assert end - len(lines) == 0                       # all still in the buffer: line k is lines[k]
        batches = events.of(topic)
        assert all(d["name"] == "logger" and d["node"] == "n1" and d["skipped"] == 0 for d in batches)
        assert batches[0]["seq"] <= next_seq               # a follower drops what it read already
        assert [d["seq"] for d in batches[1:]] == [d["seq"] + len(d["lines"]) for d in batches[:-1]]  # no gap
        for d in batches:
            assert d["lines"] == lines[d["seq"]:d["seq"] + len(d["lines"])]
        await wait_for(lambda: sup.tail("logger", 1)[1] >= end + 5, what="more lines, nobody following")
        assert len(events.of(topic)) <= sent + 1           # at most the event already on its way


async def test_operator_restart_new_pid_old_reaped(events):
    async with Supervisor([logger_cfg()], events) as sup:
        old = (await sup.status("logger")).pid
        st = await sup.restart("logger")
        assert st.state == "running" and st.pid != old and alive(st.pid)
        assert not psutil.pid_exists(old)                 # gone and reaped, not a zombie
        assert st.restarts == 0                           # operator restarts are not counted
        assert [d["reason"] for d in events.of("process/logger/restarted")] == ["operator"]
        r = events.of("process/logger/restarted")[0]
        assert (r["old_pid"], r["pid"]) == (old, st.pid)
        assert [t for _, t, _ in events.seen] == ["process/logger/started", "process/logger/stopped",
                                                   "process/logger/started", "process/logger/restarted"]


async def test_kill_9_is_restarted_with_backoff(events):
    async with Supervisor([logger_cfg()], events, node_id="n1") as sup:
        first = (await sup.status("logger")).pid
        os.kill(first, signal.SIGKILL)
        st = await wait_for(lambda: _running_with_new_pid(sup, first), what="automatic restart")
        assert st.restarts == 1 and not psutil.pid_exists(first)
        ex = events.of("process/logger/exited")[0]
        assert ex["pid"] == first and ex["exit_code"] == -signal.SIGKILL and ex["signal"] == "SIGKILL"
        assert ex["restart_in"] == 0.5
        re = events.of("process/logger/restarted")[0]
        assert st.auto_restarts == st.restarts == 1
        assert re == {"name": "logger", "pid": st.pid, "old_pid": first, "auto_restarts": 1, "restarts": 1,
                      "reason": "exited", "delay": 0.5, "state": "running", "node": "n1"}
        assert events.times("process/logger/started")[1] - events.times("process/logger/exited")[0] >= 0.45

        os.kill(st.pid, signal.SIGKILL)                   # again: the delay doubles
        st2 = await wait_for(lambda: _running_with_new_pid(sup, st.pid), what="second restart")
        assert st2.restarts == 2
        assert [d["delay"] for d in events.of("process/logger/restarted")] == [0.5, 1.0]
        assert events.times("process/logger/started")[2] - events.times("process/logger/exited")[1] >= 0.95
        assert any("exited with code -9 (SIGKILL)" in ln for ln in await sup.logs("logger", 100))


async def _running_with_new_pid(sup: Supervisor, old: int):
    st = await sup.status("logger")
    return st if st.state == "running" and st.pid != old else None


async def test_stop_cancels_pending_backoff(events):
    crasher = ProcessConfig(name="crasher", command=["python", "-c", "import sys; sys.exit(3)"])
    async with Supervisor([crasher], events, backoff=Backoff(initial=0.5)) as sup:
        st = await wait_for(lambda: _in_state(sup, "crasher", "backoff"), what="backoff")
        assert st.exit_code == 3 and st.pid is None and 0 < st.restart_in <= 1.0
        st = await sup.stop("crasher")
        assert st.state == "stopped" and st.restart_in is None
        # The restart was due within 1 s; make sure it never comes.
        with pytest.raises(AssertionError, match="timed out"):
            await wait_for(lambda: len(events.of("process/crasher/started")) > 1, timeout=1.5)
        assert (await sup.status("crasher")).state == "stopped"
        again = await sup.stop("crasher")                 # stop on stopped: no-op
        assert again.state == "stopped"


async def _in_state(sup: Supervisor, name: str, state: str):
    st = await sup.status(name)
    return st if st.state == state else None


async def test_no_restart_when_disabled(events):
    once = ProcessConfig(name="once", command=["python", "-c", "print('bye')"], restart=False)
    async with Supervisor([once], events) as sup:
        st = await wait_for(lambda: _in_state(sup, "once", "exited"), what="exit")
        assert st.exit_code == 0 and st.restarts == 0
        assert events.of("process/once/exited")[0]["restart_in"] is None
        assert any(ln.endswith(" bye") for ln in await sup.logs("once"))


async def test_stop_kills_after_grace_when_sigterm_ignored(events):
    stubborn = ProcessConfig(name="stubborn", command=IGNORES_TERM, stop_grace=0.5)
    async with Supervisor([stubborn], events) as sup:
        pid = (await sup.status("stubborn")).pid
        await wait_for(lambda: log_lines(sup, "stubborn", " ready"),
                       what="SIGTERM handler installed")
        t0 = time.monotonic()
        st = await sup.stop("stubborn")
        elapsed = time.monotonic() - t0
        assert st.state == "stopped" and st.pid is None and st.exit_code == -signal.SIGKILL
        assert 0.5 <= elapsed < 3.0
        assert not psutil.pid_exists(pid)
        assert events.of("process/stubborn/stopped") == [
            {"name": "stubborn", "pid": pid, "exit_code": -9, "killed": True, "state": "stopped", "node": ""}]
        assert any("sending SIGKILL" in ln for ln in await sup.logs("stubborn"))


async def test_aexit_leaves_no_children(events):
    cfgs = [logger_cfg(), logger_cfg(name="logger2"),
            ProcessConfig(name="stubborn", command=IGNORES_TERM, stop_grace=0.3)]
    async with Supervisor(cfgs, events) as sup:
        pids = [s.pid for s in await sup.list()]
        assert [s.pid for s in sup.snapshot()] == pids
        assert all(alive(p) for p in pids)
        await wait_for(lambda: log_lines(sup, "stubborn", " ready"))
        assert {p.pid for p in my_children()} >= set(pids)
    assert my_children() == []
    assert not any(psutil.pid_exists(p) for p in pids)
    assert sorted(d["name"] for d in events.of("process/logger/stopped") + events.of("process/logger2/stopped")
                  + events.of("process/stubborn/stopped")) == ["logger", "logger2", "stubborn"]
    assert not [t for t in asyncio.all_tasks() if t.get_name().startswith("supervisor[")]


async def test_autostart_false_then_start(events):
    async with Supervisor([logger_cfg(autostart=False)], events) as sup:
        st = await sup.status("logger")
        assert st.state == "stopped" and st.pid is None and my_children() == []
        st = await sup.start("logger")
        assert st.state == "running" and alive(st.pid)


async def test_unknown_name_is_invalid_params(events):
    async with Supervisor([logger_cfg(autostart=False)], events) as sup:
        for call in (sup.status, sup.start, sup.stop, sup.restart, sup.logs):
            with pytest.raises(InvalidParams, match=r"no process named 'nope' \(processes: logger\)") as ei:
                await call("nope")
            assert ei.value.code == ErrorCode.INVALID_PARAMS


async def test_enoent_command_is_a_clear_error_not_a_crash(events):
    cfgs = [ProcessConfig(name="ghost", command=["/nonexistent/cloudisense-no-such-program", "--x"]),
            logger_cfg()]
    async with Supervisor(cfgs, events) as sup:
        st = await sup.status("ghost")
        assert st.state == "exited" and st.pid is None
        assert "cannot execute '/nonexistent/cloudisense-no-such-program'" in st.error
        assert "No such file or directory" in st.error
        assert any("No such file or directory" in ln for ln in await sup.logs("ghost"))
        assert events.of("process/ghost/exited")[0]["error"] == st.error
        st = await sup.start("ghost")                     # operator retry: same clear answer
        assert st.state == "exited" and "No such file" in st.error
        assert (await sup.status("logger")).state == "running"   # the others are unaffected


async def test_missing_cwd_is_a_clear_error(events):
    cfg = ProcessConfig(name="nocwd", command=LOGGER, cwd="/nonexistent/cloudisense-dir")
    async with Supervisor([cfg], events) as sup:
        st = await sup.status("nocwd")
        assert st.state == "exited" and "/nonexistent/cloudisense-dir" in st.error


async def test_caller_cancelled_mid_stop_still_completes(events):
    stubborn = ProcessConfig(name="stubborn", command=IGNORES_TERM, stop_grace=0.5)
    async with Supervisor([stubborn], events) as sup:
        await wait_for(lambda: log_lines(sup, "stubborn", " ready"))
        pid = (await sup.status("stubborn")).pid
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.1):
                await sup.stop("stubborn")
        st = await wait_for(lambda: _in_state(sup, "stubborn", "stopped"), what="stop to finish")
        assert st.exit_code == -9 and not psutil.pid_exists(pid)


async def test_child_dies_with_the_node_pdeathsig():
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    helper = (
        "import asyncio\n"
        "from cloudisense.node._config import ProcessConfig\n"
        "from cloudisense.node._supervisor import Supervisor\n"
        "async def main():\n"
        f"    cfg = ProcessConfig(name='logger', command={LOGGER!r})\n"
        "    async with Supervisor([cfg], lambda t, d: None) as sup:\n"
        "        print((await sup.status('logger')).pid, flush=True)\n"
        "        await asyncio.sleep(600)\n"
        "asyncio.run(main())\n")
    node = await asyncio.create_subprocess_exec(sys.executable, "-c", helper, stdout=asyncio.subprocess.PIPE)
    try:
        async with asyncio.timeout(20):
            child = int(await node.stdout.readline())
        assert alive(child)
        node.kill()                                       # kill -9 the "node"
        await node.wait()
        await wait_for(lambda: gone(child), what="the orphaned child to get SIGTERM")
    finally:
        if node.returncode is None:
            node.kill()
            await node.wait()


# --- the service ------------------------------------------------------------------

async def test_service_through_registry(events):
    async with Supervisor([logger_cfg()], events) as sup:
        reg = Registry()
        reg.add(SupervisorService(sup))
        old = (await sup.status("logger")).pid

        res = await reg.call("supervisor", "restart", {"name": "logger"})
        assert isinstance(res, dict)
        assert res["name"] == "logger" and res["state"] == "running" and res["pid"] != old
        assert alive(res["pid"]) and not psutil.pid_exists(old)

        listed = await reg.call("supervisor", "list", {})
        assert [p["name"] for p in listed["processes"]] == ["logger"]
        assert listed["processes"][0]["pid"] == res["pid"]
        assert (await reg.call("supervisor", "status", {"name": "logger"}))["state"] == "running"
        await wait_for(lambda: log_lines(sup, "logger", "tick 3"))
        logs = await reg.call("supervisor", "logs", {"name": "logger", "lines": 3})
        assert logs["name"] == "logger" and len(logs["lines"]) == 3

        with pytest.raises(InvalidParams, match="no process named 'nope'"):
            await reg.call("supervisor", "status", {"name": "nope"})
        with pytest.raises(InvalidParams, match="lines"):
            await reg.call("supervisor", "logs", {"name": "logger", "lines": 5000})
        with pytest.raises(InvalidParams, match="unknown parameter"):
            await reg.call("supervisor", "stop", {"name": "logger", "force": True})

        st = await reg.call("supervisor", "stop", {"name": "logger"})
        assert st["state"] == "stopped" and st["pid"] is None
        st = await reg.call("supervisor", "start", {"name": "logger"})
        assert st["state"] == "running" and alive(st["pid"])

        d = reg.describe()["supervisor"]
        assert d["description"]
        mutating = {m: spec["mutates"] for m, spec in d["methods"].items()}
        assert mutating == {"list": False, "status": False, "logs": False,
                            "start": True, "stop": True, "restart": True}
        assert all(spec["description"] for spec in d["methods"].values())
        assert d["methods"]["restart"]["params"]["required"] == ["name"]
        assert d["methods"]["logs"]["params"]["properties"]["lines"]["maximum"] == 1000

        svc = reg.get("supervisor")                       # the lifecycle hooks leave the processes alone
        await svc.on_start()
        await svc.on_stop()
        assert (await sup.status("logger")).state == "running"
