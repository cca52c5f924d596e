"""The model's words stream into the console as they arrive (an LLM provider with ``stream``).

The model is the real ``LiteLLMModel`` through the real litellm, talking to a real OpenAI-compatible
HTTP server on a free port (tests/llm_server.py) that streams its answer as server-sent events in small
pieces; the cluster is the in-memory fake behind ``FakeLink``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from llm_server import LLMServer, reply, tool  # noqa: E402

from cloudisense.agent import LiteLLMModel  # noqa: E402
from cloudisense.tui import make_app  # noqa: E402
from cloudisense.tui._messages import ModelProgress, PlanReady  # noqa: E402
from cloudisense.tui.testing import FakeLink, screen_text, three_nodes, wait_for  # noqa: E402

pytestmark = pytest.mark.timeout(120)   # the first use imports litellm (5-40 s on a busy machine)

COOLEST = {"where": {"online": True, "ids": None, "exclude": None, "service": None, "process": "logger",
                     "running": None, "conditions": None}, "sort_by": "temperature_c", "order": "asc", "pick": "one"}
SAID = "Plan: restart logger on node-b, the coolest node right now."


async def test_the_models_words_appear_while_it_plans(tmp_path):
    LiteLLMModel._litellm()
    link = FakeLink(three_nodes())
    call = {"node": None, "selector": COOLEST, "service": "supervisor", "method": "restart",
            "params_json": '{"name": "logger"}', "reason": "restart logger"}
    with LLMServer([tool("call", call), reply(SAID)]) as srv:
        model = LiteLLMModel("openai/test-model", api_base=srv.base_url, stream=True, timeout=20, max_retries=0)
        app = make_app(url="ws://fake/ws", client_factory=link.factory, audit=tmp_path / "audit.jsonl",
                       model=model, state_dir=tmp_path / "state")
        seen: list = []
        async with app.run_test(size=(100, 30), message_hook=seen.append) as pilot:
            await wait_for(pilot, lambda: app.link_state == "connected", what="connected")
            await pilot.press(*"restart logger on coolest node", "enter")
            await wait_for(pilot, lambda: any(isinstance(m, PlanReady) for m in seen), timeout=60, what="a plan")
            # message_hook sees a message once per pump it passes through: count each message once
            progress = list({id(m): m for m in seen if isinstance(m, ModelProgress)}.values())
            texts = [m for m in progress if m.kind == "text"]
            ready = next(i for i, m in enumerate(seen) if isinstance(m, PlanReady))
            # the words came in pieces, all before the plan was ready, and they are the model's answer
            assert len(texts) > 1 and seen.index(texts[-1]) < ready
            assert "".join(m.text for m in texts).strip() == SAID
            assert any(m.kind == "status" and "asking openai/test-model" in m.text for m in progress)
            await wait_for(pilot, lambda: "node-b" in screen_text(app), what="the plan on screen")
    assert all(b.get("stream") is True for b in srv.requests)
    assert link.fake.mutating_calls == []   # planned, not run: approval is the operator's
