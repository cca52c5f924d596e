"""The offline planner on the failures the issue reported, and on what it must say back (no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cloudisense.agent import OfflineModel, Planner
from cloudisense.agent._lexicon import Lexicon, normalise
from cloudisense.agent._parse import parse
from cloudisense.tools import ClusterView, FakeCluster

pytestmark = pytest.mark.timeout(60)
OPS = json.loads((Path(__file__).parents[2] / "agent_eval" / "snapshots" / "ops.json").read_text())
SHORT = json.loads((Path(__file__).parents[2] / "agent_eval" / "snapshots" / "short.json").read_text())


async def plan(text: str, snap: dict = OPS):
    fake = FakeCluster.from_snapshot(snap)
    r = await Planner(OfflineModel(), fake, nonce="t").plan(text)
    assert not fake.mutating_calls
    return r


def steps(r) -> list[tuple[str, str, list[str]]]:
    return [(s.method, s.params["name"], sorted(s.targets)) for s in (r.plan.steps if r.plan else [])]


async def test_an_excluded_one_letter_node_is_not_restarted():
    r = await plan("restart logger on all nodes except a", SHORT)
    assert steps(r) == [("restart", "logger", ["12", "7", "b", "c"])]


async def test_a_second_clause_after_then_is_a_second_step_not_a_list_of_ids():
    r = await plan("restart logger on a then stop worker on 7 and 12", SHORT)
    assert steps(r) == [("restart", "logger", ["a"]), ("stop", "worker", ["12", "7"])]


@pytest.mark.parametrize("text,want", [
    ("restart logger on b, c but not the hottest one", ["b"]),
    ("restart logger on all nodes except the hottest", ["12", "7", "a", "b"]),
    ("restart logger on a and the hottest node", ["a", "c"])])
async def test_the_hottest_inside_a_target_that_names_other_nodes(text, want):
    assert steps(await plan(text, SHORT)) == [("restart", "logger", want)]


async def test_an_exclusion_that_excludes_nothing_named_is_refused_not_ignored():
    r = await plan("restart logger on a and b except the hottest", SHORT)
    assert steps(r) == [] and r.outcome == "refuse" and "not among the nodes named first" in r.message


async def test_a_corrected_typo_is_said_in_the_plan():
    r = await plan("retsart logger on nc")
    assert steps(r) == [("restart", "logger", ["nc"])]
    assert "read 'retsart' as 'restart'" in r.message
    assert "read 'retsart' as 'restart'" in r.plan.steps[0].reason


async def test_an_ambiguous_typo_is_refused_with_the_candidates():
    r = await plan("rstart logger on nc")
    assert steps(r) == [] and "'rstart'" in r.message and "'restart'" in r.message and "'start'" in r.message


async def test_a_mistyped_node_id_is_refused_not_corrected():
    r = await plan("restart logger on nx")
    assert steps(r) == [] and r.outcome == "refuse" and "'nx'" in r.message


async def test_restart_it_asks_which_process():
    r = await plan("restart it")
    assert steps(r) == [] and r.outcome == "clarify"
    assert r.message == "which process should I restart? logger, worker" and r.options == ["logger", "worker"]


async def test_stop_everything_lists_what_would_stop_and_asks_for_the_scope():
    r = await plan("stop everything")
    assert steps(r) == [] and r.outcome == "clarify"
    assert "would stop 7 process(es)" in r.message and "worker on nc" in r.message and "Confirm the scope" in r.message
    assert "logger on na" in r.options


@pytest.mark.parametrize("text,tool,method,targets", [
    ("how hot is nc?", "call", "metrics", ["nc"]),
    ("which processes does na supervise?", "call", "list", ["na"]),
    ("where is the worker running?", "find_nodes", None, ["na", "nc"]),
    ("is the logger running on nb?", "call", "status", ["nb"])])
async def test_questions_get_answers_from_read_only_tools(text, tool, method, targets):
    r = await plan(text)
    assert steps(r) == [] and r.outcome == "answer"
    o = [o for o in r.observations if o.status == "ok"][-1]
    assert o.tool == tool
    res = o.result
    got = sorted(res["results"]) if tool == "call" else [n["id"] for n in res["nodes"]]
    assert got == targets and (method is None or res["method"] == method)


async def test_how_hot_answers_with_the_temperature():
    r = await plan("how hot is nc?")
    assert "nc: temperature 47 °C (simulated)" in r.message


def test_every_word_is_consumed_or_refused_by_name():
    lx = Lexicon.from_view(ClusterView.model_validate(OPS))
    for text in ["restart logger on na sideways", "restart logger on na and also format the disk",
                 "restart logger on all nodes except na (it is stuck)"]:
        with pytest.raises(Exception) as e:
            parse(text, lx)
        assert any(w in str(e.value) for w in ("sideways", "format", "(")), (text, e.value)


def test_normalise_units_case_and_punctuation():
    assert normalise("STOP Worker on NC!") == ["stop", "worker", "on", "nc", ";"]   # "!", "?", "." end a sentence
    assert normalise("restart it? it's stuck") == ["restart", "it", ";", "it", "is", "stuck"]
    assert normalise("warmer than 45°C") == ["warmer", "than", "45", "°c"]
    assert normalise("what's on nc's host?") == ["what", "is", "on", "nc", "host", ";"]
