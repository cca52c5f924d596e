"""A supervised process gets an allow-listed environment; ``--print-config`` shows no secret (issue 16, 8).

Found by the review: children inherited the node's whole environment (``CLOUDISENSE_TOKEN``, the
broker password, ``OPENAI_API_KEY``), and anyone allowed to read their logs could read those;
``cloudisense node --print-config`` printed ``broker.password``.  Here real node processes run
real children that print their environment, and the CLI runs as a subprocess.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from support import async_wait_until, write_config
from wsutil import open_ws, request

pytestmark = pytest.mark.timeout(90)

SECRETS = {
    "CLOUDISENSE_TOKEN": "tok-" + uuid.uuid4().hex,
    "CLOUDISENSE_BROKER__PASSWORD": "pw-" + uuid.uuid4().hex,
    "OPENAI_API_KEY": "sk-" + uuid.uuid4().hex,
    "ANTHROPIC_API_KEY": "ak-" + uuid.uuid4().hex,
    "AWS_SECRET_ACCESS_KEY": "aws-" + uuid.uuid4().hex,
    "GITHUB_TOKEN": "gh-" + uuid.uuid4().hex,
    "MY_DB_PASSWORD": "db-" + uuid.uuid4().hex,
}
PLAIN = {"LANG": "C.UTF-8", "LC_TIME": "C", "TZ": "UTC", "MY_COLOR": "blue", "UNRELATED": "x"}
# Prints one line per variable, then exits: its log is the evidence.
DUMP = ["python", "-c", "import os; [print('ENV', k + '=' + os.environ[k]) for k in sorted(os.environ)]; "
        "print('DUMP-DONE')"]


async def env_of(ws, name: str) -> dict[str, str]:
    async def dumped():
        r = await request(ws, {"type": "call", "id": uuid.uuid4().hex[:6], "service": "supervisor",
                               "method": "logs", "params": {"name": name, "lines": 500}})
        assert r["type"] == "result", r
        lines = r["result"]["lines"]
        # the child's own last line, not the supervisor's "started pid …: python -c …print('DUMP-DONE')"
        return any(ln.endswith(" DUMP-DONE") for ln in lines) and lines
    lines = await async_wait_until(dumped, 15, what=f"{name} to print its environment")
    env = {}
    for ln in lines:
        _, sep, rest = ln.partition(" ENV ")
        if sep:
            k, _, v = rest.partition("=")
            env[k] = v
    return env


async def test_children_inherit_an_allow_list_and_never_the_nodes_secrets(cluster):
    procs = [
        {"name": "default", "command": DUMP, "restart": False, "env": {"APP_MODE": "demo"}},
        {"name": "chosen", "command": DUMP, "restart": False, "env": {"APP_MODE": "chosen"},
         "inherit_env": ["PATH", "MY_*", "*_API_KEY", "OPENAI_API_KEY", "*"]},
        {"name": "bare", "command": DUMP, "restart": False, "inherit_env": []},
    ]
    node = cluster.start("pe", broker="none", processes=procs, env={**SECRETS, **PLAIN})
    async with await open_ws(node.url) as ws:
        default = await env_of(ws, "default")
        chosen = await env_of(ws, "chosen")
        bare = await env_of(ws, "bare")

    # The default list: what programs need to run, nothing that holds a secret.
    assert default["PATH"] == os.environ["PATH"]
    assert default["APP_MODE"] == "demo" and default["PYTHONUNBUFFERED"] == "1"
    assert {k: default.get(k) for k in PLAIN} == {**PLAIN, "MY_COLOR": None, "UNRELATED": None}
    for k, v in SECRETS.items():
        assert k not in default, k
        assert v not in json.dumps(default)
    assert not [k for k in default if k.startswith("CLOUDISENSE_")]

    # An explicit list: '*' patterns never reach a secret-looking name; naming one exactly does.
    assert chosen["MY_COLOR"] == "blue" and chosen["UNRELATED"] == "x" and chosen["APP_MODE"] == "chosen"
    assert chosen["OPENAI_API_KEY"] == SECRETS["OPENAI_API_KEY"]
    for k in SECRETS.keys() - {"OPENAI_API_KEY"}:
        assert k not in chosen, k

    # Nothing inherited at all: only what the node sets (and the LC_CTYPE Python's PEP 538 adds itself).
    assert set(bare) - {"LC_CTYPE"} == {"PYTHONUNBUFFERED"}
    log = node.log()
    for v in SECRETS.values():
        assert v not in log


def print_config(config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "node", "--config", str(config),
                           "--print-config"], capture_output=True, text=True, timeout=30, env={**full, **env})


def test_print_config_redacts_every_secret(tmp_path):
    token = "operator-" + uuid.uuid4().hex
    file_password = "file-pw-" + uuid.uuid4().hex
    url_password = "url-pw-" + uuid.uuid4().hex
    api_key = "sk-" + uuid.uuid4().hex
    cfg = {
        "id": "pc",
        "broker": {"url": f"mqtt://user:{url_password}@127.0.0.1:1883", "username": "user",
                   "password": file_password},
        "auth": {"tokens": [{"sha256": hashlib.sha256(token.encode()).hexdigest(), "role": "operator",
                             "name": "ops"}]},
        "security": {"key": "/etc/cloudisense/pc.key", "trust": "/etc/cloudisense/trust"},
        "processes": [{"name": "worker", "command": ["worker", "--verbose"],
                       "env": {"OPENAI_API_KEY": api_key, "WORKER_MODE": "fast"}}],
    }
    path = write_config(tmp_path / "pc.toml", cfg)
    env_password = "env-pw-" + uuid.uuid4().hex
    r = print_config(path, {"CLOUDISENSE_BROKER__PASSWORD": env_password})
    assert r.returncode == 0, r.stderr
    shown = json.loads(r.stdout)
    for secret in (file_password, url_password, api_key, env_password, hashlib.sha256(token.encode()).hexdigest()):
        assert secret not in r.stdout, secret
    assert shown["broker"]["password"] == "***"
    assert shown["broker"]["url"] == "mqtt://user:***@127.0.0.1:1883"
    assert shown["broker"]["username"] == "user"
    assert shown["auth"]["tokens"] == [{"sha256": "***", "role": "operator", "name": "ops"}]
    assert shown["processes"][0]["env"] == {"OPENAI_API_KEY": "***", "WORKER_MODE": "fast"}
    assert shown["processes"][0]["command"] == ["worker", "--verbose"]
    # File paths are not secrets: shown, so an operator can check them.
    assert shown["security"] == {**shown["security"], "key": "/etc/cloudisense/pc.key",
                                 "trust": "/etc/cloudisense/trust"}
    # An empty password stays visibly empty (nothing to hide; nothing set).
    r = print_config(write_config(tmp_path / "plain.toml", {"id": "pd"}), {})
    assert r.returncode == 0 and json.loads(r.stdout)["broker"]["password"] == ""
