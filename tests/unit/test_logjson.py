"""JSON log lines (node/_logjson.py): stable keys, structured fields, one line whatever the text."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cloudisense.node import _logjson
from cloudisense.node._logjson import JsonFormatter, level_of
from cloudisense.node._ratelog import RateLimitedLog

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def capture():
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.logjson")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    _logjson.set_node("n1")
    yield logger, buf
    logger.removeHandler(handler)
    _logjson.set_node(None)


def lines(buf: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def test_keys_fields_and_hostile_text_stay_on_one_line(capture):
    logger, buf = capture
    evil = 'x\n{"level": "CRITICAL"}\x1b[2J\u2028'
    logger.warning("dropped %s", evil, extra={"peer": evil, "client": "c-1", "unrelated": "not copied"})
    try:
        raise ValueError("boom")
    except ValueError:
        logger.exception("failed")
    [a, b] = lines(buf)
    assert list(a)[:5] == ["ts", "level", "logger", "msg", "node"]
    assert a["level"] == "WARNING" and a["node"] == "n1" and a["peer"] == evil and a["client"] == "c-1"
    assert a["msg"] == f"dropped {evil}" and "unrelated" not in a
    assert b["level"] == "ERROR" and "ValueError: boom" in b["exc"]


def test_rate_limited_lines_carry_reason_peer_and_the_suppressed_count(capture):
    logger, buf = capture
    now = [0.0]
    rl = RateLimitedLog(logger, interval=60, clock=lambda: now[0])
    for _ in range(5):
        rl.warning(("bad_sig", "peer-x"), "dropped from %s", "peer-x", extra={"peer": "peer-x"})
    now[0] = 61
    rl.warning("other", "something else")
    recs = lines(buf)
    assert recs[0]["reason"] == "bad_sig" and recs[0]["peer"] == "peer-x"
    summary = next(r for r in recs if "more like" in r["msg"])
    assert summary["suppressed"] == 4 and summary["reason"] == "bad_sig"


def test_level_names():
    assert level_of("debug") == logging.DEBUG and level_of("WARNING") == logging.WARNING
    with pytest.raises(ValueError):
        level_of("LOUD")
