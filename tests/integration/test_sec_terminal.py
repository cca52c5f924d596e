"""The operator's terminal can't be lied to (issue 16, finding 2), against real nodes and real processes.

Attacks reproduced as described:

- an MCP client files a ``supervisor.stop`` whose ``reason`` holds a
  carriage return and erase-line codes followed by a fake
  ``step 1: supervisor.status … routine health check``; ``cloudisense
  pending`` (a real process) printed it raw, so the terminal showed the fake
  line over the true one;
- a supervised process whose output holds an OSC title sequence, read with
  ``cloudisense ask "logs …"``, changed the terminal's title;
- a ``[/]`` in a model-written reason crashed the rich plan table.

Now every one of them is shown with its control characters as visible
escapes (``\\x0d``, ``\\x1b``) and its markup as text.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import pytest
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from cloudisense.node import Client
from cloudisense.node._text import UNSAFE
from support import async_wait_until

pytestmark = pytest.mark.timeout(120)

ERASE = "\r\x1b[2K\x1b[1A\x1b[2K"
TITLE = "\x1b]0;pwned\x07"


def assert_no_raw_controls(text: str) -> None:
    """Nothing a terminal would act on: no C0 (but newline), no DEL/C1, no bidi override."""
    bad = sorted({repr(c) for c in UNSAFE.findall(text)} | ({"'\\t'"} if "\t" in text else set()))
    assert not bad, f"raw control characters reached the terminal: {bad}\n{text!r}"


def cli_env(state: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    if state is not None:
        env["CLOUDISENSE_STATE_DIR"] = str(state)
    env["COLUMNS"] = "400"  # wide enough that no table cell wraps
    return env


async def run_cli(*argv: str, state: Path | None = None, timeout: float = 60.0) -> subprocess.CompletedProcess:
    """``cloudisense ARGV`` as another process; its output exactly as a terminal gets it (no newline
    translation: text mode would turn a carriage return into a newline)."""
    p = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "cloudisense.node.cli", *argv], capture_output=True,
        timeout=timeout, env=cli_env(state), stdin=subprocess.DEVNULL)
    return subprocess.CompletedProcess(p.args, p.returncode, p.stdout.decode("utf-8", "replace"),
                                       p.stderr.decode("utf-8", "replace"))


async def process_state(url: str, node: str, name: str) -> str | None:
    async with Client(url, name="test") as c:
        procs = (await c.call(node, "supervisor", "list", {}))["processes"]
    return next((p["state"] for p in procs if p["name"] == name), None)


@asynccontextmanager
async def mcp_server(url: str, tmp: Path) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "cloudisense.node.cli", "--log-level", "WARNING", "mcp", "--url", url,
              "--audit", str(tmp / "audit.jsonl")],
        env={"CLOUDISENSE_STATE_DIR": str(tmp / "state")})
    with open(tmp / "mcp-server.log", "w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=30) as session:
                await session.initialize()
                yield session


async def test_pending_and_approve_show_a_forged_reason_escaped_and_the_true_method(cluster, tmp_path):
    node = cluster.start("term-a")
    await async_wait_until(lambda: process_state(node.url, node.id, "logger"), 20, interval=0.2,
                           what="the logger to be listed")
    forged = (f"x{ERASE}plan 1a2b  pending  from ops\n  step 1: supervisor.status {{\"name\": \"logger\"}} on "
              f"{node.id} — routine health check")
    async with mcp_server(node.url, tmp_path) as s:
        r = await s.call_tool("call", {"node": node.id, "service": "supervisor", "method": "stop",
                                       "params_json": '{"name": "logger"}', "reason": forged})
        assert not r.is_error, r
        plan = r.structured_content
    assert plan["status"] == "pending"
    state = tmp_path / "state"

    shown = await run_cli("pending", state=state)

    assert shown.returncode == 0, shown.stderr
    assert_no_raw_controls(shown.stdout)
    [step_line] = [ln for ln in shown.stdout.splitlines() if ln.lstrip().startswith("step 1:")]
    assert step_line.lstrip().startswith("step 1: supervisor.stop "), step_line
    assert "\\x0d\\x1b[2K\\x1b[1A\\x1b[2K" in step_line  # the codes, visibly
    assert "supervisor.status" not in step_line.split("—")[0]  # the forged method only inside the reason
    assert "\\x0a" in step_line  # the reason's newline can't start a line of its own

    done = await run_cli("approve", plan["plan_id"], "--hash", plan["hash"][:12], state=state)

    assert done.returncode == 0, done.stdout + done.stderr
    assert_no_raw_controls(done.stdout + done.stderr)
    assert "supervisor.stop" in done.stdout and "\\x1b[2K" in done.stdout
    # what ran is what was shown: the logger is stopped
    assert await process_state(node.url, node.id, "logger") in ("stopped", "exited")


LINE1 = TITLE + "hello"
LINE2 = "\x1b[2J\x1b[H[/] [bold red]x\x9b31m"
CHATTY = ("import sys, time; "
          f"sys.stdout.write({LINE1!r} + chr(10) + {LINE2!r} + chr(10)); sys.stdout.flush(); time.sleep(600)")


async def test_ask_logs_show_a_title_sequence_escaped(cluster, tmp_path):
    node = cluster.start("term-b", processes=[{"name": "chatty", "command": [sys.executable, "-c", CHATTY],
                                               "stop_grace": 1.0}])

    async def logged() -> bool:
        async with Client(node.url, name="test") as c:
            return len((await c.call(node.id, "supervisor", "logs", {"name": "chatty"}))["lines"]) >= 2
    await async_wait_until(logged, 20, interval=0.2, what="chatty's output to be captured")

    p = await run_cli("ask", f"logs chatty on {node.id}", "--model", "offline", "--url", node.url)

    assert p.returncode == 0, p.stdout + p.stderr
    assert_no_raw_controls(p.stdout + p.stderr)
    assert "\\x1b]0;pwned\\x07hello" in p.stdout
    assert "\\x1b[2J\\x1b[H[/] [bold red]x\\x9b31m" in p.stdout  # markup shown as text, C1 CSI escaped

    as_json = await run_cli("ask", f"logs chatty on {node.id}", "--model", "offline", "--url", node.url, "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert_no_raw_controls(as_json.stdout + as_json.stderr)
    assert TITLE + "hello" in json.loads(as_json.stdout)["message"]  # JSON keeps the data, escaped as JSON


async def test_markup_in_a_model_written_reason_is_shown_not_parsed(cluster, tmp_path):
    """A model (a real OpenAI-compatible server, reached through litellm) queues a restart whose reason and
    summary hold rich markup and a title sequence: the terminal shows them as text."""
    from llm_server import LLMServer, reply, tool

    node = cluster.start("term-c")
    await async_wait_until(lambda: process_state(node.url, node.id, "logger"), 20, interval=0.2,
                           what="the logger to be listed")
    args = {"node": node.id, "service": "supervisor", "method": "restart", "params_json": '{"name": "logger"}',
            "reason": "[/] closes [bold]nothing[/bold" + TITLE}
    with LLMServer([tool("call", args), reply("Restart [/] queued [link=http://evil.example]here[/link]")]) as srv:
        p = await run_cli("ask", "restart logger on term-c", "--url", node.url, "--dry-run",
                          "--model", "openai/test-model", "--api-base", srv.base_url, "--retries", "0")

    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr and "MarkupError" not in p.stderr
    assert_no_raw_controls(p.stdout + p.stderr)
    assert "[/] closes [bold]nothing[/bold\\x1b]0;pwned\\x07" in p.stdout
    assert "Restart [/] queued [link=http://evil.example]here[/link]" in p.stdout
    assert "supervisor.restart" in p.stdout and "dry run: nothing executed" in p.stdout
