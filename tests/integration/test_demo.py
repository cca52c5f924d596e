"""`cloudisense demo`: embedded broker + three nodes, Ctrl-C stops everything."""

import asyncio
import os
import signal
import socket
import subprocess
import sys

import psutil
import pytest

from support import leftover, wait_until
from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(tmp_path):
    """The demo on free ports; again on others (at most 3 tries) when it exits while starting: one of the ports it
    takes next to the first (ws_port + 1, + 2) can be taken meanwhile by a test running in parallel (CI once saw
    the demo gone before the test looked at it).  A demo that always fails still fails, with its output."""
    for attempt in range(3):
        ws_port, broker_port = free_port(), free_port()
        while ws_port + 2 >= 65535:
            ws_port = free_port()
        out = tmp_path / f"demo-{attempt}.out"
        env = {**os.environ, "CLOUDISENSE_STATE_DIR": str(tmp_path / "state")}   # its keys go there
        with open(out, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "demo", "--no-tui", "--port",
                                     str(ws_port), "--broker-port", str(broker_port)], stdout=f,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        wait_until(lambda out=out, proc=proc: "Ctrl-C stops everything" in out.read_text() or proc.poll() is not None,
                   60, what="the demo cluster")
        if proc.poll() is None:
            break
    assert proc.poll() is None, f"the demo exited while starting:\n{out.read_text()}"
    return proc, out, ws_port


@pytest.mark.parametrize("how", [signal.SIGHUP, signal.SIGKILL], ids=["hangup", "kill-9"])
def test_demo_leaves_nothing_behind_when_its_terminal_goes_or_it_is_killed(tmp_path, how):
    proc, out, _ = start_demo(tmp_path)
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 7, out.read_text()
        proc.send_signal(how)
        proc.wait(30)
        assert not leftover(children, timeout=20), [c.cmdline() for c in leftover(children, 0)]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_demo_runs_three_nodes_and_ctrl_c_stops_everything(tmp_path):
    proc, out, ws_port = start_demo(tmp_path)
    try:
        text = out.read_text()
        assert proc.poll() is None, text
        assert "node-a" in text and "node-b" in text and "node-c" in text and "cloudisense call" in text
        url = f"ws://127.0.0.1:{ws_port}/ws"

        async def check():
            async with await open_ws(url) as ws:
                async def all_online():
                    r = await request(ws, {"type": "call", "id": "c", "service": "node", "method": "cluster"})
                    return sorted(n["id"] for n in r["result"]["nodes"] if n["online"]) == ["node-a", "node-b",
                                                                                             "node-c"]
                from support import async_wait_until
                await async_wait_until(all_online, 20, interval=0.2, what="three demo nodes online")
                r = await request(ws, {"type": "call", "id": "t", "node": "*", "service": "system",
                                       "method": "metrics"})
                temps = {k: v["temperature_c"] for k, v in r["result"]["results"].items()}
                assert min(temps, key=temps.get) == "node-b"
                r = await request(ws, {"type": "call", "id": "p", "node": "node-c", "service": "supervisor",
                                       "method": "status", "params": {"name": "logger"}})
                assert r["result"]["state"] == "running"
                # signed by default: keys made under the state dir, MACs between the nodes, nothing dropped
                r = await request(ws, {"type": "call", "id": "s", "service": "pubsub", "method": "stats"})
                fed = r["result"]["federation"]
                assert fed["signing"] and fed["unicast_auth"] == "mac", fed
                assert not any(fed["rejected"].values()), fed
        asyncio.run(check())
        keys = tmp_path / "state" / "demo" / "keys"
        assert sorted(p.name for p in keys.glob("*.key")) == ["node-a.key", "node-b.key", "node-c.key"]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 7   # broker + 3 nodes + 3 loggers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        assert "nothing left running" in out.read_text()
        assert not leftover(children)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
