"""Prompt size of a planning session, for the benchmark (P8: 1,000 nodes within 1.5x of 10 nodes).

Tokens are counted with tiktoken's ``cl100k_base`` (loaded from litellm's
bundled copy, so no download); without tiktoken, the estimate is
``ceil(characters / 4)`` and :attr:`PromptSize.method` says so.
"""

from __future__ import annotations

import json
import math
import os
from functools import cache
from typing import Any, Callable

from pydantic import BaseModel

from cloudisense.tools import FakeCluster

from ._model import Model, ModelReply


@cache
def _encoder() -> Any:
    try:
        if "TIKTOKEN_CACHE_DIR" not in os.environ:
            import importlib.util
            spec = importlib.util.find_spec("litellm")  # locates, doesn't import (litellm is slow to import)
            for base in (spec.submodule_search_locations or []) if spec else []:
                d = os.path.join(base, "litellm_core_utils", "tokenizers")
                if os.path.isdir(d):
                    os.environ["TIKTOKEN_CACHE_DIR"] = d
                    break
        import tiktoken
        return tiktoken.get_encoding("cl100k_base")
    except Exception:  # noqa: BLE001 - fall back to the documented estimate
        return None


def count_tokens(text: str) -> tuple[int, str]:
    enc = _encoder()
    if enc is None:
        return math.ceil(len(text) / 4), "estimate: ceil(chars / 4)"
    return len(enc.encode(text)), "tiktoken cl100k_base"


class PromptSize(BaseModel):
    nodes: int
    request: str
    turns: int
    tokens_per_turn: list[int]
    max_tokens: int
    total_tokens: int
    method: str


class _Measuring:
    """Wraps a model and counts the tokens of everything each turn sends (messages + tools)."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "?")
        self.sizes: list[int] = []
        self.method = ""

    def bind_view(self, view: Any, **kw: Any) -> None:
        bind = getattr(self.inner, "bind_view", None)
        if callable(bind):
            bind(view, **kw)

    async def complete(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> ModelReply:
        n, self.method = count_tokens(json.dumps(messages, ensure_ascii=False) + json.dumps(tools, ensure_ascii=False))
        self.sizes.append(n)
        return await self.inner.complete(messages, tools)


async def measure_prompt_size(request: str, n_nodes: int, *, model: Model | None = None,
                              cluster: Callable[[int], FakeCluster] | None = None,
                              result_chars: int = 4000, max_nodes: int = 10) -> PromptSize:
    """Run the planner for ``request`` on a simulated ``n_nodes`` cluster and measure what the model is sent.

    The default model is the offline planner, which makes the tool calls an
    LLM should make (a selector, no full listing); pass a ScriptedModel to
    measure another conversation.
    """
    from ._offline import OfflineModel
    from ._planner import Planner

    fake = (cluster or FakeCluster.simulated)(n_nodes)
    m = _Measuring(model or OfflineModel())
    await Planner(m, fake, nonce="bench", result_chars=result_chars, max_nodes=max_nodes).plan(request)
    return PromptSize(nodes=n_nodes, request=request, turns=len(m.sizes), tokens_per_turn=m.sizes,
                      max_tokens=max(m.sizes, default=0), total_tokens=sum(m.sizes), method=m.method)
