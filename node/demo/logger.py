"""A tiny demo program for the supervisor: a timestamped line every interval.

    python -m cloudisense.node.demo.logger [--interval 1.0] [--name logger]

Prints its pid first, then ``<timestamp> <name> tick <n>`` lines (each
flushed); exits 0 promptly on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from datetime import datetime


class _Stop(Exception):
    pass


def _on_signal(signum: int, frame: object) -> None:
    raise _Stop(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m cloudisense.node.demo.logger", description=__doc__.split("\n")[0])
    ap.add_argument("--interval", type=float, default=1.0, help="seconds between lines (default 1.0)")
    ap.add_argument("--name", default="logger", help="name printed on each line (default logger)")
    args = ap.parse_args(argv)
    if args.interval <= 0:
        ap.error("--interval must be > 0")

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    try:
        print(f"{args.name}: started pid {os.getpid()}, a line every {args.interval:g} s", flush=True)
        n = 0
        while True:
            n += 1
            print(f"{datetime.now().isoformat(timespec='milliseconds')} {args.name} tick {n}", flush=True)
            time.sleep(args.interval)
    except _Stop as e:
        try:
            print(f"{args.name}: {e}, exiting", flush=True)
        except (_Stop, OSError):
            pass
        return 0
    except BrokenPipeError:  # whoever read our output is gone
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
