"""Shared fixtures: real node processes on a real broker, unique topic prefixes (helpers in support.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from support import Cluster

# Modules whose tests measure wall time, memory or event-loop lag: scripts/test runs them on their own after
# the rest (which runs on two workers), so another test's load can't make them fail or pass by luck.
SERIAL = {
    "test_tui.py", "test_tui_fake.py", "test_bench_smoke.py", "test_faults.py", "test_load.py",
    "test_sec_connections.py", "test_sec_flood.py", "test_sec_membership.py", "test_supervisor.py",
    "test_federation.py", "test_hostile_frames.py", "test_fuzz.py", "test_tui_stream.py", "test_recovery.py",
    "test_broker_failover.py",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SERIAL:
            item.add_marker(pytest.mark.serial)


@pytest.fixture
def prefix() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cluster(tmp_path: Path, prefix: str):
    c = Cluster(tmp_path, prefix)
    yield c
    problems = c.stop_all()
    assert not problems, "\n".join(problems)
