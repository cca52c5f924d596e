"""Helpers for driving real node processes: shared by ``tests/`` and ``bench/``.

Nothing here is used by a running node. It is the one place that knows how a
test or a benchmark starts ``cloudisense node`` as a subprocess, recognises its
ready line, writes its TOML config, waits on a condition with a deadline and
stops a process (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["READY_RE", "async_wait_until", "child_env", "free_port", "stop_process", "toml_value",
           "wait_until", "write_config"]

#: The line ``cloudisense node`` prints on stdout once it serves: ``cloudisense node ID ready: URL``.
READY_RE = re.compile(r"cloudisense node (\S+) ready: (\S+)")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll ``pred`` until it returns something truthy, and return that; fail with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
        time.sleep(interval)


async def async_wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05,
                           what: str = "") -> Any:
    """:func:`wait_until` for the event loop; ``pred`` may return an awaitable."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or pred}")
        await asyncio.sleep(interval)


def toml_value(v: Any) -> str:
    """One TOML value (bool, number, string, list, inline table)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):   # an inline table, e.g. a process's env
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"
    raise TypeError(v)


def _table_list(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and isinstance(v[0], dict)


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    """Write ``cfg`` as TOML: top-level keys, ``[tables]``, ``[[arrays of tables]]``, one level of nesting."""
    lines: list[str] = []
    tables: list[tuple[str, Any]] = []
    for k, v in cfg.items():
        if isinstance(v, dict) or _table_list(v):
            tables.append((k, v))
        else:
            lines.append(f"{k} = {toml_value(v)}")
    for k, v in tables:
        if isinstance(v, dict):
            lines.append(f"\n[{k}]")
            for kk, vv in v.items():
                if _table_list(vv):
                    for item in vv:
                        lines.append(f"\n[[{k}.{kk}]]")
                        lines += [f"{a} = {toml_value(b)}" for a, b in item.items()]
                else:
                    lines.append(f"{kk} = {toml_value(vv)}")
        else:
            for item in v:
                lines.append(f"\n[[{k}]]")
                lines += [f"{a} = {toml_value(b)}" for a, b in item.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def child_env(extra_path: Iterable[str | Path] = (), env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without ``CLOUDISENSE_*`` (a child's config is its own), with
    ``extra_path`` in front of ``PYTHONPATH`` (plugins), and ``env`` on top."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("CLOUDISENSE_")}
    out["PYTHONPATH"] = os.pathsep.join([*map(str, extra_path), *filter(None, [os.environ.get("PYTHONPATH")])])
    out.update(env or {})
    return out


def stop_process(popen: subprocess.Popen[Any], timeout: float = 10.0) -> bool:
    """SIGTERM, wait ``timeout`` s, then SIGKILL. True if it ended on SIGTERM (or had already ended)."""
    if popen.poll() is not None:
        return True
    popen.send_signal(signal.SIGTERM)
    try:
        popen.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait(5)
        return False
