"""node/_json.py: orjson speed without orjson's lossy corners."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings, strategies as st

from cloudisense.node._json import canonical_bytes, dumpb, dumps, loads

pytestmark = pytest.mark.timeout(60)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text()
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=20)


def _no_surrogates(v):
    if isinstance(v, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in v)
    if isinstance(v, list):
        return all(_no_surrogates(x) for x in v)
    if isinstance(v, dict):
        return all(_no_surrogates(k) and _no_surrogates(x) for k, x in v.items())
    return True


@settings(max_examples=400, deadline=None)
@given(json_values.filter(_no_surrogates))
def test_round_trip_is_exact_and_agrees_with_the_standard_library(value):
    assert loads(dumpb(value)) == value
    assert loads(dumps(value)) == value
    assert json.loads(dumpb(value)) == value
    assert loads(json.dumps(value)) == value


@pytest.mark.parametrize("n", [2**63, 2**64, 2**64 + 1, 10**30, -(2**63) - 1, -(10**40)])
def test_integers_beyond_64_bits_stay_integers(n):
    text = json.dumps({"n": n, "ts": 1764270000.123456})
    assert loads(text) == {"n": n, "ts": 1764270000.123456}
    assert type(loads(text.encode())["n"]) is int
    assert loads(dumpb({"n": n})) == {"n": n}
    assert loads(canonical_bytes({"n": n})) == {"n": n}


def test_non_string_keys_are_written_like_the_standard_library():
    assert loads(dumps({1: "a"})) == {"1": "a"}


@pytest.mark.parametrize("text", ["[NaN]", "[Infinity]", "{", '"\\ud800"', "", "[1,]"])
def test_invalid_json_is_a_value_error(text):
    with pytest.raises(ValueError):
        loads(text)


def test_canonical_bytes_sort_keys_and_are_compact_utf8():
    assert canonical_bytes({"b": 1, "a": {"d": "é", "c": [1.5, None]}}) == \
        '{"a":{"c":[1.5,null],"d":"é"},"b":1}'.encode()


def test_lone_surrogates_cannot_be_written():
    with pytest.raises(UnicodeEncodeError):
        dumpb({"s": "\ud800"})
    with pytest.raises(UnicodeEncodeError):
        canonical_bytes({"s": "\ud800"})


def test_nan_is_written_as_null_not_as_invalid_json():
    assert loads(dumps({"x": math.nan})) == {"x": None}
