"""--log-format json on a whole node run with faults; global options after the subcommand; --version;
token gen (issue 17)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from support import wait_until
from test_faults_support import Mosquitto
from wsutil import open_ws, recv, request, send

pytestmark = pytest.mark.timeout(120)

TOKEN = "log-test-operator"
AUTH = {"tokens": [{"sha256": hashlib.sha256(TOKEN.encode()).hexdigest(), "role": "operator"}]}
CRASHER = {"name": "crasher", "command": [sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]}


def cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_every_line_of_a_faulty_run_is_a_json_object(cluster, tmp_path):
    broker = Mosquitto(tmp_path)
    broker.start()
    try:
        a = cluster.start("lj", broker=broker.url, auth=AUTH, processes=[CRASHER],
                          args=["--log-format", "json", "--log-level", "DEBUG"])

        async def hostile() -> None:
            ws = await open_ws(a.url)
            r = await request(ws, {"type": "hello", "id": "h", "token": "wrong"})
            assert r["type"] == "error"
            await send(ws, "{not json")
            await recv(ws)
            await ws.close()
            ws = await open_ws(a.url)
            await request(ws, {"type": "hello", "id": "h", "token": TOKEN})
            await request(ws, {"type": "call", "id": 1, "service": "nope", "method": "x"})
            await ws.close()
        asyncio.run(hostile())
        req = urllib.request.Request(a.http, headers={"Host": "evil.example"})
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(req, timeout=5)
        subprocess.run(["mosquitto_pub", "-p", str(broker.port), "-t", f"{cluster.prefix}/node/lj/inbox",
                        "-m", "\x1b[31mnot json"], check=True, timeout=10)
        wait_until(lambda: "non-JSON" in a.log(), 20, what="the garbage on the inbox to be logged")
        wait_until(lambda: "restarting in" in a.log(), 20, what="the crasher to be restarted")
        broker.kill()
        wait_until(lambda: "lost broker" in a.log() or "link" in a.log(), 20, what="the node to notice")
        broker.start()
        wait_until(lambda: _ok(a.http + "readyz"), 30, what="the node to be ready again")
        assert a.stop() == 0
    finally:
        broker.stop()
    lines = a.log().splitlines()
    assert len(lines) > 10, lines
    records = []
    for line in lines:
        rec = json.loads(line)          # every line, or the test fails here naming it
        assert isinstance(rec, dict), line
        assert {"ts", "level", "logger", "msg", "node"} <= rec.keys(), line
        assert rec["ts"].endswith("Z") and rec["level"] in ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
        records.append(rec)
    assert {r["node"] for r in records[-5:]} == {"lj"}
    assert any(r["level"] == "DEBUG" for r in records)              # --log-level after the subcommand took
    assert any(r.get("client") for r in records)                     # structured fields
    assert any(r.get("reason") for r in records if r["level"] == "WARNING")
    assert any("non-JSON" in r["msg"] and r.get("reason") == "non_json" for r in records)
    assert any("lost broker" in r["msg"] for r in records)


def _ok(url: str) -> bool:
    try:
        return urllib.request.urlopen(url, timeout=5).status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_global_options_before_or_after_the_command_and_bad_ones_exit_2():
    for args in (["--log-level", "DEBUG", "node", "--broker", "none", "--print-config"],
                 ["node", "--log-level", "DEBUG", "--broker", "none", "--print-config"],
                 ["node", "--broker", "none", "--print-config", "--log-format", "json"]):
        p = cli(*args)
        assert p.returncode == 0, (args, p.stderr)
        assert json.loads(p.stdout)["broker"]["url"] == "none"
    p = cli("node", "--log-level", "LOUD", "--broker", "none")
    assert p.returncode == 2 and "unknown log level" in p.stderr
    p = cli("node", "--log-format", "json", "--broker", "gopher://x")
    assert p.returncode == 2
    [line] = p.stderr.splitlines()
    assert json.loads(line)["level"] == "ERROR" and "broker.url" in json.loads(line)["msg"]


def test_version_and_token_gen():
    from cloudisense.node import __version__
    p = cli("--version")
    assert p.returncode == 0 and p.stdout.strip() == f"cloudisense {__version__}"
    p = cli("token", "gen", "--role", "viewer", "--name", "prometheus")
    assert p.returncode == 0, p.stderr
    token, *toml = p.stdout.splitlines()
    assert len(token) >= 40 and token.isascii()
    import tomllib
    doc = tomllib.loads("\n".join(toml))
    [entry] = doc["auth"]["tokens"]
    assert entry == {"sha256": hashlib.sha256(token.encode()).hexdigest(), "role": "viewer", "name": "prometheus"}
    assert cli("token", "gen").stdout.split()[0] != token                 # random each time
    assert cli("token", "gen", "--role", "root").returncode == 2
