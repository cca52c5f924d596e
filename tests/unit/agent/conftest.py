"""Fixtures of the agent unit tests: fixed cluster snapshots on a FakeCluster (no sockets)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from agentfix import THREE

from cloudisense.tools import FakeCluster


@pytest.fixture
def three() -> dict[str, Any]:
    return copy.deepcopy(THREE)


@pytest.fixture
def fake(three: dict[str, Any]) -> FakeCluster:
    return FakeCluster.from_snapshot(three)
