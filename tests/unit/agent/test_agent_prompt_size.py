"""Prompt size does not grow with the cluster (P8: 1,000 nodes within 1.5x of 10 nodes)."""

from __future__ import annotations

from cloudisense.agent import ScriptedModel, count_tokens, measure_prompt_size

REQUEST = "restart logger on coolest node"


async def test_prompt_size_1000_nodes_within_1_5x_of_10_nodes():
    small = await measure_prompt_size(REQUEST, 10)
    big = await measure_prompt_size(REQUEST, 1000)
    assert small.method == big.method == "tiktoken cl100k_base"
    assert small.turns == big.turns == 2
    assert big.max_tokens <= 1.5 * small.max_tokens, (small, big)
    assert big.total_tokens <= 1.5 * small.total_tokens
    print(f"prompt tokens, {REQUEST!r}: 10 nodes {small.total_tokens}, 1000 nodes {big.total_tokens} "
          f"({big.total_tokens / small.total_tokens:.3f}x)")


async def test_the_measure_would_catch_a_model_that_reads_the_whole_cluster():
    def greedy(n: int) -> ScriptedModel:  # an LLM that reads every node, one get_node each
        return ScriptedModel([[("get_node", {"node": f"node-{i:04d}"}) for i in range(n)], "done"])

    small = await measure_prompt_size(REQUEST, 10, model=greedy(10))
    big = await measure_prompt_size(REQUEST, 1000, model=greedy(1000))
    assert big.max_tokens > 1.5 * small.max_tokens


def test_count_tokens():
    n, method = count_tokens("restart logger on coolest node")
    assert 4 <= n <= 12 and method == "tiktoken cl100k_base"
