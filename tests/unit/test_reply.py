"""``cloudisense reply``'s command runner: bounded in time and bytes, no shell, stdout as the result."""

from __future__ import annotations

import sys

import psutil
import pytest

from cloudisense.node import RpcError
from cloudisense.node._reply import CommandReplier

pytestmark = pytest.mark.timeout(30)
PY = sys.executable


async def test_stdout_is_the_result_json_or_text():
    assert await CommandReplier([PY, "-c", "import json,sys; print(json.dumps(json.load(sys.stdin)))"])(
        {"a": [1, 2]}) == {"a": [1, 2]}
    assert await CommandReplier([PY, "-c", "print('two words')"])({}) == "two words"
    assert await CommandReplier(["echo", "$HOME", ";", "true"])({}) == "$HOME ; true"   # no shell


async def test_a_command_over_its_time_is_killed_with_its_children():
    r = CommandReplier([PY, "-c", "import subprocess,sys,time; "
                        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
                        "print(p.pid, flush=True); time.sleep(60)"], timeout=1.0)
    before = {p.pid for p in psutil.process_iter()}
    with pytest.raises(RpcError) as e:
        await r({})
    assert e.value.code == "timeout"
    spawned = [p for p in psutil.process_iter(["cmdline"])
               if p.pid not in before and "time.sleep(60)" in " ".join(p.info["cmdline"] or [])]
    _, alive = psutil.wait_procs(spawned, timeout=5)   # SIGKILL to the group: gone at once (or zombies of init)
    assert all(p.status() == psutil.STATUS_ZOMBIE for p in alive if p.is_running()), alive


async def test_output_over_the_limit_and_failures_answer_internal():
    with pytest.raises(RpcError) as e:
        await CommandReplier([PY, "-c", "print('x' * 5000)"], max_output=1000)({})
    assert e.value.code == "internal" and "more than 1000 bytes" in e.value.message
    with pytest.raises(RpcError) as e:
        await CommandReplier([PY, "-c", "import sys; sys.stderr.write('\\x1b[2J' + 'e' * 900 + 'END'); sys.exit(4)"])({})
    assert e.value.code == "internal" and "exited with 4" in e.value.message and e.value.message.endswith("END")
    assert "\x1b" not in e.value.message and len(e.value.message) < 600
    with pytest.raises(RpcError) as e:
        await CommandReplier(["/nonexistent/cmd"])({})
    assert e.value.code == "internal" and "cannot run" in e.value.message
