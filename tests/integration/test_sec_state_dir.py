"""The shared state directory and the plan files in it (issue 16, finding 7).

Attacks reproduced as described: a pre-existing ``CLOUDISENSE_STATE_DIR``
used whatever its owner and mode; a plan file whose ``url`` was edited sent
the operator's token to a rogue WebSocket server on ``approve --hash``; its
``audit`` path made approve append records to an arbitrary file.

Now the commands refuse an unsafe state directory with one line that says the
fix (exit 2), and ``url``, ``audit``, the audit session and the requester are
inside the plan hash, checked before anything connects.  The rogue server is
a real ``websockets`` server; ``approve`` runs as a real process with a token
in its environment.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from websockets.asyncio.server import serve

from cloudisense.agent._plan import Plan
from cloudisense.tools import FakeCluster, FakeNode
from cloudisense.agent.mcp_server import ClusterMcp, McpSettings

pytestmark = pytest.mark.timeout(60)

TOKEN = "operator-secret-token-4f1c"


def cli(state: Path, *argv: str, umask: int | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    env.update(CLOUDISENSE_STATE_DIR=str(state), CLOUDISENSE_TOKEN=TOKEN)
    return subprocess.run([sys.executable, "-m", "cloudisense.node.cli", *argv], capture_output=True, text=True,
                          timeout=30, env=env, stdin=subprocess.DEVNULL,
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


async def acli(state: Path, *argv: str) -> subprocess.CompletedProcess:
    return await asyncio.to_thread(cli, state, *argv)


# ---- the directory --------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["pending"], ["approve", "abcd1234"], ["reject", "abcd1234"], ["mcp"]],
                         ids=lambda a: a[0])
def test_group_writable_state_dir_is_refused_with_the_fix(tmp_path, argv):
    state = tmp_path / "shared"
    state.mkdir()
    state.chmod(0o777)  # what a shared directory another user made looks like

    p = cli(state, *argv)

    assert p.returncode == 2, p.stdout + p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "0777" in lines[0] and f"chmod 700 {state}" in lines[0]
    assert "plan" not in p.stdout  # nothing listed, nothing run


@pytest.mark.skipif(os.geteuid() != 0, reason="making a directory owned by someone else needs root")
def test_state_dir_owned_by_someone_else_is_refused_with_the_fix(tmp_path):
    state = tmp_path / "theirs"
    state.mkdir(mode=0o700)
    os.chown(state, 65534, 65534)

    p = cli(state, "pending")

    assert p.returncode == 2, p.stdout + p.stderr
    [line] = p.stderr.strip().splitlines()
    assert "uid 65534" in line and f"uid {os.geteuid()}" in line and "chown" in line and str(state) in line


def test_a_symlinked_state_dir_to_an_unsafe_place_is_refused(tmp_path):
    real = tmp_path / "shared"
    real.mkdir()
    real.chmod(0o777)
    (tmp_path / "link").symlink_to(real)
    p = cli(tmp_path / "link", "pending")
    assert p.returncode == 2 and "chmod 700" in p.stderr


def test_a_missing_state_dir_is_created_0700_whatever_the_umask(tmp_path):
    state = tmp_path / "new" / "state"
    p = cli(state, "pending", umask=0)
    assert p.returncode == 0, p.stderr
    assert (state.stat().st_mode & 0o777) == 0o700


# ---- plan files: everything approve acts on is inside the hash -------------------------------------

@pytest.fixture
async def rogue() -> AsyncIterator[dict[str, Any]]:
    """A WebSocket server that records every connection and frame it gets."""
    seen: list[Any] = []

    async def handler(ws: Any) -> None:
        seen.append(("connect", ws.request.path))
        async for msg in ws:
            seen.append(msg)

    async with serve(handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield {"url": f"ws://127.0.0.1:{port}/ws", "seen": seen}


async def pending_plan(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    """A plan made over MCP the ordinary way (through ``node.url``, audited to tmp/audit.jsonl)."""
    cluster = FakeCluster([FakeNode(id="n1", processes={"logger": {"name": "logger", "state": "running",
                                                                   "pid": 101}})])
    state = tmp_path / "state"
    app = ClusterMcp(McpSettings(url="ws://127.0.0.1:9/ws", state_dir=str(state),
                                 audit=str(tmp_path / "audit.jsonl")), conn=cluster)
    out = await app.call_tool("call", {"node": "n1", "service": "supervisor", "method": "stop",
                                       "params_json": '{"name": "logger"}', "reason": "maintenance"})
    assert out.ok and out.data["status"] == "pending", out.data
    return state, out.data


def edit(state: Path, plan_id: str, change: Any) -> None:
    path = state / "plans" / f"{plan_id}.json"
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def to_rogue(url: str, *, rehash: bool) -> Any:
    def change(doc: dict[str, Any]) -> None:
        doc["url"] = url
        doc["plan"].setdefault("context", {})["url"] = url
        if rehash:  # the attacker does the work: the stored hash matches the edited content
            doc["plan"]["hash"] = Plan.model_validate(doc["plan"]).compute_hash()
    return change


@pytest.mark.parametrize("rehash", [False, True], ids=["stale-hash", "rehashed"])
async def test_plan_file_pointing_approve_at_a_rogue_server_never_sends_it_the_token(tmp_path, rogue, rehash):
    state, doc = await pending_plan(tmp_path)
    assert "127.0.0.1:9/" in json.dumps(doc["url"])
    edit(state, doc["plan_id"], to_rogue(rogue["url"], rehash=rehash))

    p = await acli(state, "approve", doc["plan_id"], "--hash", doc["hash"][:12])

    assert p.returncode == 2, p.stdout + p.stderr
    assert "nothing was executed" in p.stderr
    assert rogue["seen"] == [], "approve connected to the URL from the edited plan file"
    assert TOKEN not in p.stdout + p.stderr
    # the plan is not consumed: the operator can still see it (and reject it)
    listed = json.loads((await acli(state, "pending", "--all", "--json")).stdout)
    assert [d["plan_id"] for d in listed] == [doc["plan_id"]]


async def test_plan_file_with_an_edited_url_is_refused_even_without_hash(tmp_path, rogue):
    """Top-level ``url`` edited, the plan (and so its hash) left alone: the file contradicts its own hash."""
    state, doc = await pending_plan(tmp_path)
    edit(state, doc["plan_id"], lambda d: d.update(url=rogue["url"]))

    p = await acli(state, "approve", doc["plan_id"])

    assert p.returncode == 2, p.stdout + p.stderr
    assert "changed" in p.stderr and "nothing was executed" in p.stderr
    assert rogue["seen"] == []
    shown = await acli(state, "pending")  # listed with the pending ones, so the operator sees it
    assert f"plan {doc['plan_id']}  tampered" in shown.stdout


@pytest.mark.parametrize("rehash", [False, True], ids=["stale-hash", "rehashed"])
async def test_plan_file_with_an_edited_audit_path_is_refused_and_the_file_untouched(tmp_path, rogue, rehash):
    state, doc = await pending_plan(tmp_path)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")

    def change(d: dict[str, Any]) -> None:
        d["audit"] = str(victim)
        d["plan"].setdefault("context", {})["audit"] = str(victim)
        d["url"] = d["plan"]["context"]["url"] = rogue["url"]
        if rehash:
            d["plan"]["hash"] = Plan.model_validate(d["plan"]).compute_hash()
    edit(state, doc["plan_id"], change)

    p = await acli(state, "approve", doc["plan_id"], "--hash", doc["hash"][:12])

    assert p.returncode == 2, p.stdout + p.stderr
    assert victim.read_text() == "precious\n"
    assert rogue["seen"] == []


async def test_the_hash_an_mcp_client_is_shown_covers_url_audit_and_requester(tmp_path):
    state, doc = await pending_plan(tmp_path)
    rec = json.loads((state / "plans" / f"{doc['plan_id']}.json").read_text())
    ctx = rec["plan"]["context"]
    assert ctx == {"url": rec["url"], "audit": rec["audit"], "session": rec["session"],
                   "requested_by": rec["requested_by"]}
    for key in ctx:
        changed = Plan.model_validate({**rec["plan"], "context": {**ctx, key: ctx[key] + "x"}})
        assert changed.compute_hash() != doc["hash"], key
