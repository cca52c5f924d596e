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


@pytest.mark.timeout(180)   # 1,000 examples take ~10 s on a quiet machine, several times that under load
@given(filters, topics)
@settings(max_examples=1000, deadline=None)
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


# Everything MQTT 3.1.1 §1.5.3 lets a broker disconnect us for (mosquitto does), and lone surrogates.
FORBIDDEN = ([chr(c) for c in range(0x00, 0x20)] + [chr(c) for c in range(0x7F, 0xA0)]
             + [chr(c) for c in range(0xFDD0, 0xFDF0)]
             + [chr(p << 16 | low) for p in range(17) for low in (0xFFFE, 0xFFFF)]
             + ["\ud800", "\udbff", "\udc00", "\udfff"])


@pytest.mark.parametrize("ch", FORBIDDEN, ids=lambda c: f"U+{ord(c):04X}")
@pytest.mark.parametrize("wildcards", [True, False])
def test_control_characters_and_noncharacters_are_refused(ch, wildcards):
    for topic in (f"x{ch}y", ch, f"a/{ch}", f"{ch}/#" if wildcards else f"{ch}/a"):
        err = topic_error(topic, wildcards=wildcards)
        assert err and f"U+{ord(ch):04X}" in err, (topic, err)


@given(st.text(min_size=1, max_size=40))
@settings(max_examples=2000, deadline=None)
def test_a_valid_topic_is_plain_mqtt_text(topic):
    """Whatever passes can be encoded as UTF-8 and holds no character a broker may refuse."""
    if topic_error(topic, wildcards=True) is None:
        topic.encode("utf-8")   # no lone surrogate
        assert not any(c in FORBIDDEN for c in topic)
        assert not any(0xFDD0 <= ord(c) <= 0xFDEF or ord(c) & 0xFFFE == 0xFFFE for c in topic)


@pytest.mark.parametrize("good", ["caf\u00e9/\u00fcber", "\u65e5\u672c/+", "emoji/\U0001F600", "a\u00a0b",
                                  "\ufffd", "\U0010fffd"])
def test_ordinary_unicode_stays_allowed(good):
    assert topic_error(good, wildcards=True) is None


def test_the_fast_path_misses_no_forbidden_character():
    """topic_error skips its regex for printable topics: every forbidden character must be non-printable."""
    from cloudisense.node._topics import _FORBIDDEN
    forbidden = [chr(c) for c in range(0x110000) if _FORBIDDEN.match(chr(c))]
    assert len(forbidden) == 32 + 33 + 2048 + 32 + 34   # C0, DEL + C1, surrogates, U+FDD0-FDEF, U+xFFFE/F
    assert not [c for c in forbidden if c.isprintable()]
