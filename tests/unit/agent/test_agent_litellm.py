"""The real litellm → planner path, replayed from a hand-written OpenAI cassette (no network).

litellm's default async transport is aiohttp; ``litellm.disable_aiohttp_transport
= True`` makes it use httpx (checked in litellm's
``AsyncHTTPHandler.should_use_aiohttp_transport``, llms/custom_httpx/http_handler.py),
so the request goes through httpx, where vcrpy intercepts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import vcr
from agentfix import pids

from cloudisense.agent import LiteLLMModel, Planner

CASSETTES = Path(__file__).resolve().parents[2] / "cassettes"
live_bodies: list[dict] = []


def _shape(body: bytes | str | None) -> tuple:
    doc = json.loads(body or "{}")
    shape = []
    for m in doc.get("messages", []):
        content = m.get("content") if isinstance(m.get("content"), str) else ""
        first = content.split("\n", 1)[0] if m.get("role") == "user" else None
        calls = tuple(c.get("id") for c in m.get("tool_calls") or [])
        shape.append((m.get("role"), m.get("tool_call_id"), first, calls))
    return doc.get("model"), tuple(shape)


def chat_body(live, recorded) -> None:
    """vcrpy matcher: same model and conversation shape (roles, tool-call ids, the request line)."""
    live_bodies.append(json.loads(live.body or "{}"))
    a, b = _shape(live.body), _shape(recorded.body)
    assert a == b, f"request body differs from the cassette:\n{a}\n!=\n{b}"


@pytest.fixture
def cassette_vcr(monkeypatch):
    litellm = LiteLLMModel._litellm()
    monkeypatch.setattr(litellm, "disable_aiohttp_transport", True)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    live_bodies.clear()
    v = vcr.VCR(cassette_library_dir=str(CASSETTES), record_mode="none",
                match_on=["method", "scheme", "host", "path", "chat_body"],
                filter_headers=["authorization", "api-key", "x-api-key", "openai-organization"])
    v.register_matcher("chat_body", chat_body)
    return v


@pytest.mark.timeout(180)  # importing litellm takes 5-15 s
async def test_cassette_replayed_through_litellm_and_the_planner(cassette_vcr, fake):
    before = pids(fake)
    with cassette_vcr.use_cassette("openai_restart_coolest.yaml") as cas:
        r = await Planner(LiteLLMModel("openai/gpt-4o-mini"), fake).plan("restart logger on coolest node")
        assert cas.all_played and cas.play_count == 3
    assert r.ok, r.error
    [step] = r.plan.steps
    assert (step.service, step.method, step.params, step.targets) == ("supervisor", "restart", {"name": "logger"},
                                                                      ["node-b"])
    assert step.fact.selector == "coolest online node with process logger"
    assert "node-b" in r.plan.summary
    assert [o.tool for o in r.observations] == ["find_nodes", "call"]
    assert r.observations[0].result["nodes"][0]["id"] == "node-b"
    assert fake.mutating_calls == [] and pids(fake) == before
    # what litellm really sent: strict tool schemas, our prompt, tool results as delimited data
    sent = live_bodies[-1]
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 0
    assert {t["function"]["name"] for t in sent["tools"]} == {"find_nodes", "get_node", "describe_service", "call",
                                                              "broadcast", "watch"}
    assert all(t["function"]["strict"] is True for t in sent["tools"])
    assert sent["messages"][0]["role"] == "system" and "Never guess or invent" in sent["messages"][0]["content"]
    assert sent["messages"][3]["content"].startswith("<<untrusted-data id=")
    assert not any(k.lower() == "authorization" for i in cas.requests for k in i.headers)


@pytest.mark.timeout(180)
async def test_a_changed_conversation_does_not_match_the_cassette(cassette_vcr, fake):
    with cassette_vcr.use_cassette("openai_restart_coolest.yaml"):
        r = await Planner(LiteLLMModel("openai/gpt-4o-mini"), fake).plan("restart logger on the hottest node")
    assert not r.ok and "the model failed" in r.error and r.plan is None
    assert fake.mutating_calls == []
