"""`cloudisense demo` and the console: piped output falls back to --no-tui, the demo keeps its own state
directory (audit, history, pending plans) and its log folder."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from support import wait_until

pytestmark = pytest.mark.timeout(120)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_piped_demo_runs_without_the_tui_and_keeps_its_logs_and_state_out_of_the_users(tmp_path):
    ws_port, broker_port = free_port(), free_port()
    while ws_port + 2 >= 65535:
        ws_port = free_port()
    out = tmp_path / "demo.out"
    xdg = tmp_path / "xdg-state"
    env = {**os.environ, "XDG_STATE_HOME": str(xdg)}
    env.pop("CLOUDISENSE_AUDIT", None)
    env.pop("CLOUDISENSE_STATE_DIR", None)
    master, slave = os.openpty()  # stdin is a terminal, stdout is a file: `cloudisense demo | tee`
    try:
        with open(out, "wb") as f:
            proc = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "demo", "--port", str(ws_port),
                                     "--broker-port", str(broker_port)], stdout=f, stderr=subprocess.STDOUT,
                                    stdin=slave, env=env)
        try:
            wait_until(lambda: "Ctrl-C stops everything" in out.read_text() or proc.poll() is not None, 60,
                       what="the demo cluster")
            text = out.read_text()
            assert "stdout is not a terminal (piped?): running without the TUI" in text, text
            work = Path(re.search(r"node logs: (\S+)", text).group(1))
            state = Path(re.search(r"audit and state: (\S+)", text).group(1))
            assert state.parent == work and state.is_dir()
            proc.send_signal(signal.SIGINT)
            assert proc.wait(30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    finally:
        os.close(master)
        os.close(slave)
    text = out.read_text()
    assert f"Logs and audit kept in {work}" in text
    assert (work / "node-a.log").exists() and (work / "node-c.toml").exists()  # kept, as printed
    # the user's state directory holds only the demo's own keys and trust store (its identity, made on the first
    # run and reused after: issue 21); its audit, plans and Ask history stay in the demo's folder
    left = sorted(str(p.relative_to(xdg)) for p in xdg.rglob("*") if p.is_file()) if xdg.exists() else []
    assert all(p.startswith("cloudisense/demo/keys/") or p.startswith("cloudisense/demo/trust/") for p in left), left
