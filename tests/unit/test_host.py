"""node/_host.py reads /proc the way psutil does: both must agree."""

from __future__ import annotations

import time

import psutil
import pytest

from cloudisense.node._host import Host

pytestmark = pytest.mark.timeout(30)


def test_memory_disk_and_boot_time_agree_with_psutil():
    host = Host()
    assert host.memory_percent() == pytest.approx(psutil.virtual_memory().percent, abs=3)
    assert host.disk_percent("/") == pytest.approx(psutil.disk_usage("/").percent, abs=0.2)
    assert host.boot_time() == pytest.approx(psutil.boot_time(), abs=1)


def test_cpu_percent_counts_busy_time_since_the_previous_call():
    host = Host()
    end = time.monotonic() + 0.3
    while time.monotonic() < end:   # keep one CPU busy: the figure can't be 0
        pass
    busy = host.cpu_percent()
    assert 0 < busy <= 100
    assert 0 <= host.cpu_percent() <= 100
