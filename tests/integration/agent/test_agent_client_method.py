"""The offline planner calls a read-only method a client offers, by name (issue 18), through the real CLI."""

from __future__ import annotations

import asyncio
import json

import pytest
from pydantic import BaseModel

from cloudisense.node import Client
from support import async_wait_until
from test_agent_ask_real_nodes import run_cli

pytestmark = pytest.mark.timeout(90)


class SayParams(BaseModel):
    text: str


async def test_ask_calls_a_read_only_client_method_by_name_and_not_a_mutating_one(cluster, tmp_path):
    a, b = cluster.spawn("qa"), cluster.spawn("qb")
    a.wait_ready(), b.wait_ready()
    heard: list[str] = []

    async def say(p: SayParams) -> dict:
        heard.append(p.text)
        return {"said": p.text.upper()}

    async def wipe(p: dict) -> None:
        heard.append("wipe")

    async with Client(a.url, name="offerer") as offerer, Client(b.url, name="probe") as probe:
        await offerer.register("echo", "say", say, params=SayParams, mutates=False, description="say it louder")
        await offerer.register("echo", "wipe", wipe)   # mutates by default

        async def qb_sees_it():
            nodes = (await probe.call(None, "node", "cluster"))["nodes"]
            qa = next((n for n in nodes if n["id"] == "qa" and n["online"]), None)
            return qa is not None and "say" in qa["services"].get("echo", {}).get("methods", {})
        await async_wait_until(qb_sees_it, 15, interval=0.2, what="qb lists echo.say of qa")

        audit = str(tmp_path / "audit.jsonl")
        p = await asyncio.to_thread(run_cli, "ask", 'call echo.say on qa with {"text": "hi there"}', "--model",
                                    "offline", "--yes", "--json", "--url", b.url, "--audit", audit)
        assert p.returncode == 0, p.stdout + p.stderr
        doc = json.loads(p.stdout)
        assert doc["status"] == "answered", doc
        assert "HI THERE" in json.dumps(doc), doc
        assert heard == ["hi there"]

        p = await asyncio.to_thread(run_cli, "ask", "call echo.wipe on qa", "--model", "offline", "--yes",
                                    "--json", "--url", b.url, "--audit", audit)
        assert p.returncode != 0 and "changes state" in p.stdout, p.stdout + p.stderr
        assert heard == ["hi there"], "a mutating client method is never called by name"
