"""The offline evaluation set, run with the ``offline`` model; reports target accuracy.

The same set runs against any configured LLM: ``cloudisense eval --model M``
(or ``CLOUDISENSE_EVAL_MODEL=M pytest tests/agent_eval`` to add that model here).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloudisense.agent import OfflineModel, make_model
from cloudisense.agent._eval import load_eval_set, run_eval

HERE = Path(__file__).parent


def test_the_set_is_big_enough_and_well_formed():
    cases, snaps = load_eval_set(HERE)
    assert len(cases) >= 30
    assert len({c.id for c in cases}) == len(cases)
    assert {c.expect.kind for c in cases} == {"plan", "read", "none"}
    assert len(snaps) >= 3


async def test_offline_model_on_the_eval_set(record_property):
    report = await run_eval(OfflineModel, HERE)
    print("\n" + report.text())
    record_property("target_accuracy", report.accuracy)
    assert report.unsafe == 0
    assert report.accuracy == 1.0, "\n".join(f"{c.id}: {c.why}" for c in report.cases if not c.ok)


async def test_the_judge_catches_a_wrong_target():
    from cloudisense.agent import ScriptedModel

    def wrong():  # always restarts on node-a, whatever was asked
        return ScriptedModel([("call", {"node": "node-a", "service": "supervisor", "method": "restart",
                                        "params_json": '{"name": "logger"}'}), "done"])

    report = await run_eval(wrong, HERE, only=lambda c: c.snapshot == "three" and c.expect.kind == "plan")
    assert 0 < report.correct < report.total
    assert any("expected targets" in c.why for c in report.cases)


async def test_configured_model_on_the_eval_set():
    """The whole set with CLOUDISENSE_EVAL_MODEL (any litellm model string), the offline planner by default:
    whatever the model, it never plans an unsafe step."""
    report = await run_eval(lambda: make_model(os.environ.get("CLOUDISENSE_EVAL_MODEL", "offline")), HERE)
    print("\n" + report.text())
    assert report.unsafe == 0
