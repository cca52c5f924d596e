"""Benchmark: what signing adds to sending and receiving one call envelope, on a cold cache (P5's cost).

In a running node a call arrives every few hundred microseconds, and between two the other processes on
the machine (the broker, the peer, the client) have evicted the node's code and data from the CPU caches.
``timeit`` runs the same code hot and reports a fraction of what it costs there.  This runs the node's own
send and receive steps with a 16 MB write between any two of them, which evicts the caches as that traffic
does:

- send: ``Sealer.prepare`` + ``pack`` (signed: canonical JSON and a pairwise MAC) against the unsigned
  ``PlainPacker`` (plain JSON);
- receive: ``loads`` + ``Inbound.admit`` with the node's ``Verifier`` against ``Inbound.admit`` without one.

    python bench/cold_signing.py [--calls 600] [--rounds 8]

Prints, per round and as the median over rounds, the median extra microseconds signing adds to a send, to a
receive, and to a round trip (two of each: a call and its reply).  No I/O beyond a temporary key directory.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from cloudisense.node._federation import PlainPacker
from cloudisense.node._inbound import Inbound
from cloudisense.node._json import loads
from cloudisense.node._signing import PairKeys, Sealer, Signer, TrustStore, Verifier, generate_keypair

from _harness import PAD_CALL

EVICT_BYTES = 16 << 20


def envelope(i: int) -> dict[str, Any]:
    """A call as node x sends it to node y for ``bench.echo`` (P5's payload)."""
    now = time.time()
    return {"v": 1, "kind": "call", "from": "x", "to": "y", "id": f"{i:x}", "ts": now,
            "body": {"service": "bench", "method": "echo", "params": {"data": "x" * PAD_CALL},
                     "reply_by": now + 10, "role": "operator"}}


class Cold:
    """Times the send and receive steps of one side (signed or not), the caches evicted before each."""

    def __init__(self, keys: Path) -> None:
        trust = TrustStore.load(keys)
        sx, sy = Signer("x", keys / "x.key"), Signer("y", keys / "y.key")
        self.sealer = Sealer(sx, PairKeys(sx, trust))
        self.trust, self.keys_y = trust, PairKeys(sy, trust)
        self._junk = bytearray(EVICT_BYTES)
        self._zeros = bytes(EVICT_BYTES // 64)

    def evict(self) -> None:
        self._junk[::64] = self._zeros   # one write per cache line of 16 MB

    def side(self, signed: bool, calls: int) -> tuple[float, float]:
        """Median µs of one send and of one receive."""
        verifier = Verifier(self.trust, window=3600, keys=self.keys_y) if signed else None
        inbound = Inbound("y", ["call", "reply"], verifier)
        packer: Any = self.sealer if signed else PlainPacker
        clock = time.perf_counter_ns
        send, receive = [], []
        for i in range(calls):
            env = envelope(i)
            self.evict()
            t0 = clock()
            raw = packer.pack([packer.prepare(env)])
            t1 = clock()
            self.evict()
            t2 = clock()
            if not inbound.admit(loads(raw), raw):
                raise SystemExit(f"envelope {i} was refused: {inbound.counts or verifier and verifier.counts}")
            t3 = clock()
            send.append(t1 - t0)
            receive.append(t3 - t2)
        return statistics.median(send) / 1e3, statistics.median(receive) / 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=600, help="envelopes per side and round (default 600)")
    ap.add_argument("--rounds", type=int, default=8, help="rounds, signed and unsigned alternated (default 8)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="cold-signing-") as tmp:
        for nid in ("x", "y"):
            generate_keypair(nid, tmp)
        cold = Cold(Path(tmp))
        cold.side(True, 50), cold.side(False, 50)   # warm-up: imports, first allocations
        sends, receives, trips = [], [], []
        for r in range(args.rounds):
            (ss, sr), (ps, pr) = cold.side(True, args.calls), cold.side(False, args.calls)
            sends.append(ss - ps)
            receives.append(sr - pr)
            trips.append(2 * (ss - ps + sr - pr))
            print(f"round {r + 1}/{args.rounds}: send {ss:.1f} vs {ps:.1f} µs, receive {sr:.1f} vs {pr:.1f} µs "
                  f"(signed vs unsigned)", flush=True)
    med = statistics.median
    print(f"signing adds, cold (median of {args.rounds} rounds): send +{med(sends):.1f} µs, "
          f"receive +{med(receives):.1f} µs, round trip +{med(trips):.1f} µs")


if __name__ == "__main__":
    main()
