"""Shared fixtures: real node processes on a real broker, unique topic prefixes (helpers in support.py)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from support import Cluster


@pytest.fixture
def prefix() -> str:
    return f"test/{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cluster(tmp_path: Path, prefix: str):
    c = Cluster(tmp_path, prefix)
    yield c
    problems = c.stop_all()
    assert not problems, "\n".join(problems)
