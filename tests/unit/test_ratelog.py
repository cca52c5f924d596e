"""RateLimitedLog: a flood of one reason, or of many reasons, logs a bounded number of lines."""

import logging

import pytest

from cloudisense.node._ratelog import RateLimitedLog

pytestmark = pytest.mark.timeout(10)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records]


def test_one_reason_logs_once_per_interval_and_summarises(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog"), interval=60, clock=clock)
    with caplog.at_level(logging.WARNING, "t.ratelog"):
        for i in range(10_000):
            rl.warning("bad_state", "dropped a malformed state from %s", f"n{i}")
        assert len(caplog.records) == 1
        clock.t += 61
        rl.warning("bad_state", "dropped a malformed state from %s", "x")
    lines = _lines(caplog)
    assert lines[1] == "9999 more like 'bad_state' in the last 60 s (not logged)"
    assert lines[2] == "dropped a malformed state from x"
    assert rl.counts["bad_state"] == 10_001


def test_the_summary_keeps_the_level_of_what_it_summarises(caplog: pytest.LogCaptureFixture) -> None:
    """A node going online twice within a minute is routine (INFO): its summary is no WARNING."""
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("t.ratelog3"), interval=60, clock=clock)
    with caplog.at_level(logging.DEBUG, "t.ratelog3"):
        rl.log(logging.INFO, ("online", "c"), "node %s is online", "c")
        rl.log(logging.INFO, ("online", "c"), "node %s is online", "c")
        clock.t += 61
        rl.log(logging.INFO, ("online", "c"), "node %s is online", "c")
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.INFO, "node c is online"),
        (logging.INFO, "1 more like ('online', 'c') in the last 60 s (not logged)"),
        (logging.INFO, "node c is online")]


def test_many_reasons_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    rl = RateLimitedLog(logging.getLogger("t.ratelog2"), interval=60, max_keys=8, clock=Clock())
    with caplog.at_level(logging.WARNING, "t.ratelog2"):
        for i in range(5_000):
            rl.warning(("bad", i), "bad %d", i)
    assert len(caplog.records) == 9          # 8 reasons + one "more than 8 kinds" line
    assert "more than 8 kinds" in caplog.records[-1].getMessage()
    assert len(rl.counts) <= 4 * 8 + 1
