"""Host metrics for ``system.metrics``/``system.info``: /proc on Linux, psutil elsewhere.

An idle node reads these every few seconds.  On Linux the numbers are a few lines
of /proc away, and psutil (0.8 MB of resident memory in an idle node: P6 of
``bench/``) is imported only on other systems.  The figures are psutil's own
definitions, so both paths agree.
"""

from __future__ import annotations

import os
import sys
from typing import Any

__all__ = ["Host"]

_LINUX = sys.platform.startswith("linux") and os.path.exists("/proc/stat")


def _cpu_times() -> tuple[float, float]:
    """(busy, total) jiffies over all CPUs: busy excludes idle and iowait, as psutil does."""
    with open("/proc/stat", "rb") as f:
        fields = f.readline().split()[1:]
    v = [int(x) for x in fields]
    # user nice system idle iowait irq softirq steal (guest and guest_nice are inside user/nice)
    total = sum(v[:8])
    return total - v[3] - v[4], total


class Host:
    """CPU % since the previous call, memory %, disk %, boot time."""

    def __init__(self) -> None:
        self._psutil: Any = None
        if not _LINUX:
            import psutil
            self._psutil = psutil
        self._last = (0.0, 0.0)
        self.cpu_percent()   # prime the counter

    def cpu_percent(self) -> float:
        if self._psutil is not None:
            return float(self._psutil.cpu_percent(interval=None))
        busy, total = _cpu_times()
        b0, t0 = self._last
        self._last = (busy, total)
        if total <= t0:
            return 0.0
        return round(min(100.0, max(0.0, (busy - b0) * 100.0 / (total - t0))), 1)

    def memory_percent(self) -> float:
        if self._psutil is not None:
            return float(self._psutil.virtual_memory().percent)
        info: dict[bytes, int] = {}
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                key, _, rest = line.partition(b":")
                if key in (b"MemTotal", b"MemAvailable", b"MemFree", b"Buffers", b"Cached"):
                    info[key] = int(rest.split()[0])
        total = info.get(b"MemTotal", 0)
        avail = info.get(b"MemAvailable")
        if avail is None:   # kernels before 3.14
            avail = info.get(b"MemFree", 0) + info.get(b"Buffers", 0) + info.get(b"Cached", 0)
        return round((total - avail) * 100.0 / total, 1) if total else 0.0

    def disk_percent(self, path: str = "/") -> float:
        """Used share of what is usable by non-root users (psutil's ``disk_usage().percent``)."""
        st = os.statvfs(path)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        avail = st.f_bavail * st.f_frsize
        return round(used * 100.0 / (used + avail), 1) if used + avail else 0.0

    def boot_time(self) -> float:
        if self._psutil is not None:
            return float(self._psutil.boot_time())
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
        return 0.0
