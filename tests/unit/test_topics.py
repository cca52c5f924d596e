"""Topic matching against a reference matcher (hypothesis) and MQTT's own examples."""

import re

import pytest
from hypothesis import given, settings, strategies as st

from cloudisense.node._topics import matches, topic_error

pytestmark = pytest.mark.timeout(60)


def reference(pattern: str, topic: str) -> bool:
    """MQTT 3.1.1 §4.7 matching written as a regular expression."""
    if pattern[:1] in "+#" and topic.startswith("$"):
        return False
    parts = pattern.split("/")
    rx = ""
    for i, p in enumerate(parts):
        if p == "#":
            rx = rx[:-1] + "(/.*)?" if rx else ".*"
            break
        rx += ("[^/]*" if p == "+" else re.escape(p)) + ("/" if i < len(parts) - 1 else "")
    return re.fullmatch(rx, topic) is not None


level = st.sampled_from(["a", "b", "c", "", "$sys", "x y"])
topics = st.lists(level, min_size=1, max_size=5).map("/".join)
filters = st.lists(st.one_of(level, st.just("+")), min_size=1, max_size=5).flatmap(
    lambda ls: st.sampled_from([ls, ls + ["#"]])).map("/".join)


@given(filters, topics)
@settings(max_examples=3000, deadline=None)
def test_matches_reference(pattern, topic):
    assert matches(pattern, topic) == reference(pattern, topic), (pattern, topic)


@pytest.mark.parametrize("pattern,topic,expected", [
    ("sport/tennis/player1/#", "sport/tennis/player1", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/ranking", True),
    ("sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", True),
    ("sport/#", "sport", True),
    ("#", "anything/at/all", True),
    ("sport/tennis/+", "sport/tennis/player1", True),
    ("sport/tennis/+", "sport/tennis/player1/ranking", False),
    ("sport/+", "sport", False),
    ("sport/+", "sport/", True),
    ("+/+", "/finance", True),
    ("/+", "/finance", True),
    ("+", "/finance", False),
    ("#", "$SYS/x", False),
    ("+/monitor/Clients", "$SYS/monitor/Clients", False),
    ("$SYS/#", "$SYS/monitor/Clients", True),
    ("$SYS/monitor/+", "$SYS/monitor/Clients", True),
])
def test_spec_examples(pattern, topic, expected):
    assert matches(pattern, topic) is expected


@pytest.mark.parametrize("bad", ["", "a/#/b", "a/b#", "a+/b", "#/a", "x" * 600, "a\x00b"])
def test_invalid_filters(bad):
    assert topic_error(bad, wildcards=True)


@pytest.mark.parametrize("good", ["#", "+", "a/+/c", "a/#", "$cluster/node/+", "a//b"])
def test_valid_filters(good):
    assert topic_error(good, wildcards=True) is None


def test_publish_topics_refuse_wildcards():
    assert "wildcard" in topic_error("a/+", wildcards=False)
    assert topic_error("a/b", wildcards=False) is None
