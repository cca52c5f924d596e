"""The README's tour, run as written: its shell blocks, in order, in one shell, each command must succeed.

The blocks are taken from README.md's "A one-minute tour" section.  Where the README lets the user choose
(the WebSocket ports, the node the client commands connect to, the topic prefix) the test uses the ways the
README documents: ``--ws`` ports replaced by free ones, ``CLOUDISENSE_WS__LISTEN``, ``CLOUDISENSE_URL`` and
``CLOUDISENSE_BROKER__PREFIX`` (a prefix unique to the test).  The background nodes the blocks start are the
shell's jobs; the blocks stop them, and the test kills the whole process group afterwards whatever happened.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from support import free_port

pytestmark = pytest.mark.timeout(150)
ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def tour_blocks(text: str) -> list[str]:
    """The ```sh blocks of the '## A one-minute tour' section, in order."""
    start = text.index("## A one-minute tour")
    end = text.find("\n## ", start + 1)
    section = text[start:end if end > 0 else None]
    return re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M)


def test_the_tour_blocks_are_what_a_new_user_needs():
    text = README.read_text()
    blocks = tour_blocks(text)
    script = "\n".join(blocks)
    assert len(blocks) >= 3, blocks
    # every node a block starts in the background is stopped by a block
    started = sum(ln.rstrip().split("#")[0].rstrip().endswith("&") for ln in script.splitlines())
    stopped = sum(len(re.findall(r"%\d", ln)) for ln in script.splitlines() if ln.lstrip().startswith("kill "))
    assert started == stopped == 3, (started, stopped)
    assert "cloudisense ask" in script and "open http" not in text and "xdg-open" not in text
    assert "[[processes]]" in script and 'name = "logger"' in script   # the agent examples have a logger
    # the knobs this test turns are the ones the README tells the user about
    for knob in ("CLOUDISENSE_URL", "CLOUDISENSE_WS__LISTEN", "--ws 127.0.0.1:8765", "--ws 127.0.0.1:8766"):
        assert knob in text, knob


def test_the_readme_tour_runs_top_to_bottom(tmp_path, prefix):
    p1, p2 = free_port(), free_port()
    script = "\n".join(tour_blocks(README.read_text()))
    script = script.replace("127.0.0.1:8765", f"127.0.0.1:{p1}").replace("127.0.0.1:8766", f"127.0.0.1:{p2}")
    # the user's shell: in a fresh directory with the project's .venv (tour.toml is written there)
    (tmp_path / ".venv").symlink_to(Path(sys.prefix))
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    env.pop("VIRTUAL_ENV", None)
    env.update(CLOUDISENSE_WS__LISTEN=f"127.0.0.1:{p1}", CLOUDISENSE_URL=f"ws://127.0.0.1:{p1}/ws",
               CLOUDISENSE_BROKER__PREFIX=prefix, CLOUDISENSE_STATE_DIR=str(state), HOME=str(tmp_path),
               PATH=":".join(p for p in env.get("PATH", "").split(":") if not p.startswith(sys.prefix)))
    proc = subprocess.Popen(["bash", "--noprofile", "--norc", "-e", "-x", "-c", script], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the tour did not finish in 120 s:\n{out[-6000:]}")
    finally:
        left = [p for p in psutil.process_iter(["pid"]) if _in_group(p, proc.pid)]
        for p in left:
            p.kill()
    assert proc.returncode == 0, f"a tour command failed (the last '+' line):\n{out[-6000:]}"
    assert not left, f"the tour left processes running: {left}"
    # what the user saw: the nodes' ready lines, results, no log line per client from the background nodes
    assert out.count("ready: ws://") == 3, out
    assert "connected from" not in out and " INFO " not in out, out
    assert '"logger"' in out and "restart" in out, out


def _in_group(p: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(p.pid) == pgid
    except (ProcessLookupError, PermissionError):
        return False
