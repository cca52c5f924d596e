"""The exposition writer and the call counters (node/_metrics.py), read back with prometheus-client's parser."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from cloudisense.node._metrics import BUCKETS, MAX_LABEL_VALUES, MAX_METHODS, CallMetrics, Exposition

pytestmark = pytest.mark.timeout(30)


def parse(text: str) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_hostile_label_values_round_trip_through_the_parser():
    x = Exposition()
    full = x.family("weird", "counter", 'help with "quotes" and \\ backslash\nand a newline')
    nasty = ['a"b', "back\\slash", "new\nline", "}{,=", "ünï", ""]
    for i, v in enumerate(nasty):
        x.sample(full + "_total", i, {"v": v})
    got = parse(x.text())
    assert {dict(k[1])["v"]: val for k, val in got.items()} == {v: float(i) for i, v in enumerate(nasty)}


def test_open_label_sets_are_capped_and_the_rest_folds_into_other():
    x = Exposition()
    x.labelled("rejected", "counter", "h", "reason", {f"r{i:03}": 1 for i in range(MAX_LABEL_VALUES + 50)})
    got = parse(x.text())
    assert len(got) == MAX_LABEL_VALUES
    assert got[("cloudisense_rejected_total", (("reason", "other"),))] == 51


def test_service_method_pairs_are_capped():
    cm = CallMetrics()
    for i in range(MAX_METHODS + 30):
        cm.observe(True, f"svc{i}", "m", None, 1.0)
    assert len({k[1:3] for k in cm.counts}) == MAX_METHODS + 1
    assert cm.counts[("local", "other", "other", "ok")] == 30
    cm.observe(True, "svc0", "m", "timeout", 1.0)      # a known pair keeps its name
    assert cm.counts[("local", "svc0", "m", "timeout")] == 1


def test_made_up_names_do_not_take_label_slots():
    cm = CallMetrics()
    for i in range(1000):   # a client inventing methods, or calling anything on an offline node
        cm.observe(True, "system", f"junk{i}", "unknown_method", 1.0)
        cm.observe(False, f"svc{i}", "m", "node_offline", 1.0)
    assert cm.methods == set()
    assert cm.counts == {("local", "other", "other", "unknown_method"): 1000,
                         ("remote", "other", "other", "node_offline"): 1000}
    cm.observe(True, "system", "metrics", None, 1.0)
    cm.observe(True, "system", "metrics", "timeout", 1.0)   # once proven, every outcome keeps the name
    assert cm.counts[("local", "system", "metrics", "timeout")] == 1


def test_latency_lands_in_the_right_bucket():
    cm = CallMetrics()
    cm.observe(False, "s", "m", None, 0.4)      # 0.4 ms  -> le 0.0005
    cm.observe(False, "s", "m", None, 1.0)      # exactly 1 ms -> le 0.001 (upper bounds are inclusive)
    cm.observe(False, "s", "m", None, 60_000)   # 60 s -> +Inf only
    b = cm.buckets["remote"]
    assert b[0] == 1 and b[1] == 1 and b[len(BUCKETS)] == 1 and sum(b) == 3
    assert cm.sums["remote"] == pytest.approx(60.0014)
