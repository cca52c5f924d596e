"""The CLI as a new user meets it: waiting for a starting node, broadcast exit codes, log names, help texts."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from support import free_port, wait_until

pytestmark = pytest.mark.timeout(60)


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_wait_covers_a_node_that_is_still_starting(cluster):
    port = free_port()
    url = f"ws://127.0.0.1:{port}/ws"
    r = cli("call", "--url", url, ".", "node.ping")             # no --wait: fails at once, one line
    assert r.returncode == 1 and "cannot connect" in r.stderr and "Traceback" not in r.stderr, r.stderr
    waiting = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "call", "--url", url, "--wait", "20",
                                ".", "node.ping"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cluster.start("wait-a", broker="none", listen=f"127.0.0.1:{port}")
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert json.loads(out)["node"] == "wait-a"


def test_wait_covers_a_target_node_not_yet_heard_of(cluster):
    a = cluster.start("wait-b1")
    waiting = subprocess.Popen([sys.executable, "-m", "cloudisense.node.cli", "call", "--url", a.url, "--wait", "20",
                                "wait-b2", "node.ping"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        cluster.start("wait-b2")
        out, err = waiting.communicate(timeout=30)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert json.loads(out)["node"] == "wait-b2"
    r = cli("call", "--url", a.url, "--wait", "0.5", "nosuch-node", "node.ping")
    assert r.returncode == 1 and "unknown_node" in r.stderr, r.stderr


def test_broadcast_exits_1_only_when_every_target_failed(cluster):
    a = cluster.start("bc-a")
    b = cluster.start("bc-b", processes=[])
    for node in (a, b):   # each sees the other before the broadcasts
        wait_until(lambda: len(json.loads(cli("call", "--url", node.url, "*", "node.ping").stdout)["results"]) == 2,
                   20, what="both nodes to answer a broadcast")
    r = cli("call", "--url", a.url, "*", "system.nosuch")
    assert r.returncode == 1, r
    assert set(json.loads(r.stdout)["errors"]) == {"bc-a", "bc-b"}      # the errors are still printed
    assert "every target failed (2 nodes)" in r.stderr
    # a partial failure: logger runs on a only; b answers an error, the command succeeds
    r = cli("call", "--url", a.url, "*", "supervisor.status", '{"name": "logger"}')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert set(res["results"]) == {"bc-a"} and set(res["errors"]) == {"bc-b"}


def test_the_disconnect_line_names_the_client_as_the_connect_line_did(cluster):
    a = cluster.start("names-a", broker="none")
    assert cli("call", "--url", a.url, ".", "node.ping").returncode == 0
    line = wait_until(lambda: next((ln for ln in a.log().splitlines() if " disconnected " in ln), None), 10,
                      what="the disconnect line")
    connected = next(ln for ln in a.log().splitlines() if " connected from " in ln)
    first = connected.split(": ", 1)[1].split(" connected from")[0]     # client-N
    assert first.startswith("client-")
    assert f"{first} (cli-{first.removeprefix('client-')}) disconnected" in line, line


def test_operator_restart_is_not_an_auto_restart(cluster):
    a = cluster.start("ar-a", broker="none")
    r = cli("call", "--url", a.url, ".", "supervisor.restart", '{"name": "logger"}')
    assert r.returncode == 0, r.stderr
    status = json.loads(r.stdout)
    assert status["auto_restarts"] == 0 and status["restarts"] == 0     # the old name is kept, same value


def test_help_texts_a_new_user_reads():
    demo = cli("demo", "--help").stdout
    model = demo[demo.index("--model"):]
    assert "offline" in model and "litellm" in model, demo
    ask = cli("ask", "--help").stdout
    assert "offline planner" in ask and "docs/agent.md" in ask and "coolest" in ask, ask
