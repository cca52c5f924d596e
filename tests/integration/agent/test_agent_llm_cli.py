"""``cloudisense ask`` with an LLM exactly as a user runs it: the real CLI process, a real node, a real
OpenAI-compatible HTTP server (tests/llm_server.py).  What the terminal shows: stdout, stderr, exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from llm_server import LLMServer, reply, stall, tool
from support import wait_until

COOLEST = {"where": {"online": True, "ids": None, "exclude": None, "service": None, "process": "logger",
                     "running": None, "conditions": None}, "sort_by": "temperature_c", "order": "asc", "pick": "one"}


def cli(*argv: str) -> list[str]:
    return [sys.executable, "-m", "cloudisense.node.cli", *argv]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("CLOUDISENSE_", "OPENAI_", "LITELLM_"))}


@pytest.fixture
def node(cluster):
    return cluster.start("llm-n1", broker="none", temperature="sim:40")


@pytest.mark.timeout(180)
def test_json_is_pure_with_litellm_debug_logging(node, tmp_path):
    """stdout is one JSON document even with --log-level debug: litellm's records go to stderr."""
    with LLMServer([tool("call", {"node": None, "selector": COOLEST, "service": "supervisor", "method": "restart",
                                  "params_json": '{"name": "logger"}', "reason": "restart"}),
                    reply("Plan: restart logger.")]) as srv:
        p = subprocess.run(cli("--log-level", "debug", "ask", "restart logger on coolest node", "--model",
                               "openai/test-model", "--api-base", srv.base_url, "--yes", "--json", "--url", node.url,
                               "--audit", str(tmp_path / "a.jsonl")),
                           capture_output=True, text=True, timeout=150, env=env())
    assert p.returncode == 0, p.stdout[-3000:] + "\n----\n" + "\n".join(l for l in p.stderr.splitlines() if "LiteLLM" not in l)[-3000:]
    doc = json.loads(p.stdout)  # the whole of stdout
    assert doc["status"] == "done" and doc["plan"]["steps"][0]["node"] == "llm-n1"
    assert "LiteLLM" in p.stderr  # debug: litellm's logging shown, on stderr
    assert "asking openai/test-model… turn 1/8" in p.stderr


@pytest.mark.timeout(180)
def test_ctrl_c_while_waiting_for_the_model_stops_at_once(node, tmp_path):
    with LLMServer([stall()]) as srv:
        err = tmp_path / "err"
        with open(err, "w") as fe:
            proc = subprocess.Popen(cli("ask", "restart logger on coolest node", "--model", "openai/test-model",
                                        "--api-base", srv.base_url, "--yes", "--url", node.url,
                                        "--audit", str(tmp_path / "a.jsonl")),
                                    stdout=subprocess.PIPE, stderr=fe, text=True, env=env())
        try:
            wait_until(lambda: srv.requests, timeout=120, what="the request to reach the model server")
            t0 = time.monotonic()
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=10)
            secs = time.monotonic() - t0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
    assert proc.returncode == 130 and secs < 3.0, (proc.returncode, secs)
    assert "interrupted while planning: nothing ran" in err.read_text()
    events = [json.loads(x)["event"] for x in (tmp_path / "a.jsonl").read_text().splitlines()]
    assert "approval" not in events and "execution" not in events
