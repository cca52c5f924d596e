"""P5: what signing costs, P2 with authenticated envelopes (pairwise MACs on calls and replies) against a
pair of nodes like it, unsigned; plus the cost of each cryptographic piece, timed in process with the node's
own code.

The two pairs differ in the signing alone: node ids and topic prefixes of the same lengths, started
together, on the same broker.  Their calls alternate one by one, so each call of one pair meets the machine
as the other pair's call left it (blocks of a few hundred calls, as P2 runs, leave the ratio of two
identical pairs anywhere in 0.93-1.14x on this 2-CPU machine; one by one, 0.96-1.03x, median 1.00).
``--p5-unsigned`` runs both pairs unsigned: what the harness alone gives, to be read beside the signed
ratio."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from _harness import Bench, Starter, WsSide, call_frame, rr_cells
from cold_signing import envelope

KEY = "P5"
ORDER = 40
INFO = {"title": "signing cost",
        "measures": "P2 with authenticated envelopes (pairwise MACs on calls and replies; project) vs a pair "
                    "like it, unsigned (floor), their calls alternated one by one",
        "target": "p50 ≤ 1.05× unsigned"}
# signed pair S*, unsigned pair U*: ids and prefixes of the same lengths
PAIRS = {"signed": ("SA", "SB", "/p5-s"), "unsigned": ("UA", "UB", "/p5-u")}
REACH = [PAIRS["unsigned"][:2], PAIRS["signed"][:2]]


async def needs(b: Bench) -> dict[str, Starter]:
    p = b.procs
    keys = None
    if not getattr(b.args, "p5_unsigned", False):
        keys = Path(tempfile.mkdtemp(dir=p.tmp, prefix="keys-"))
        for nid in PAIRS["signed"][:2]:
            subprocess.run([sys.executable, "-m", "cloudisense.node.cli", "keys", "gen", nid, "--out", str(keys)],
                           check=True, capture_output=True)
    out: dict[str, Starter] = {}
    for which, (a, z, suffix) in PAIRS.items():
        signed = keys if which == "signed" else None
        for nid in (a, z):
            out[nid] = lambda nid=nid, signed=signed, suffix=suffix: p.node(nid, signed_dir=signed,
                                                                             prefix=p.prefix + suffix)
    return out


async def run(b: Bench) -> None:
    procs = b.running

    def side(name: str, which: str) -> WsSide:
        a, z, _ = PAIRS[which]
        return WsSide(name, procs[a].url, lambda i: call_frame(i, z), [procs[a].pid, procs[z].pid, *b.broker_pids])

    # one by one (block 1), twice the calls of the other scenarios: the ratio of two pairs of processes
    lat, tput = await b.both("P5", [side("project", "signed"), side("floor", "unsigned")],
                             lat_n=2 * b.cfg["lat_n"], lat_block=1, own_cpu_at_ends=True)
    crypto = signing_cost(b.procs.tmp)
    unsigned = getattr(b.args, "p5_unsigned", False)
    floor = b.merge(lat[1], tput[1], name="a pair like it, unsigned")
    crypto["budget_us_at_1_05"] = round(0.05 * floor["p50_us"], 1)
    if unsigned:
        b.notes.append("P5 ran with --p5-unsigned: both pairs unsigned, so its ratio is the harness's own "
                       "(no target)")
    b.rr("P5", b.merge(lat[0], tput[0], **({"name": "unsigned too (--p5-unsigned)"} if unsigned else {})),
         floor, lambda r: None if unsigned else r["p50"] <= 1.05, crypto=crypto)
    b.tick("P5 done", 1)


def cells(r: dict[str, Any]) -> tuple[str, str, str]:
    return rr_cells(KEY, r)


def signing_cost(tmp: Path, n: int = 2000) -> dict[str, Any]:
    """What authentication alone costs, timed here with the node's own code on a ~350-byte envelope: the
    canonical bytes, and then a pairwise MAC (what calls and replies carry) or an Ed25519 signature (events,
    presence, state); sealing is :meth:`Sealer.pack` (the bytes that go out), checking is
    :meth:`Verifier.verify` on the parsed envelope.  Best of 5 runs of ``n`` each (timeit)."""
    import timeit

    from cloudisense.node._json import loads
    from cloudisense.node._signing import PairKeys, Sealer, Signer, TrustStore, Verifier, generate_keypair
    keys = Path(tempfile.mkdtemp(dir=tmp, prefix="crypto-"))
    for nid in ("x", "y"):
        generate_keypair(nid, keys)
    trust = TrustStore.load(keys)
    sx, sy = Signer("x", keys / "x.key"), Signer("y", keys / "y.key")
    sealer = Sealer(sx, PairKeys(sx, trust))
    legacy = Sealer(sx, PairKeys(sx, trust), unicast="sig")
    ky = PairKeys(sy, trust)

    envs = [envelope(i) for i in range(n)]
    macd = [loads(sealer.wire([e])) for e in envs]
    signed = [loads(legacy.wire([e])) for e in envs]
    assert "mac" in macd[0] and "sig" in signed[0]

    def best(fn: Callable[[], Any]) -> float:
        return min(timeit.repeat(fn, number=1, repeat=5)) / n * 1e6

    def check(batch: list[dict[str, Any]]) -> Callable[[], None]:
        def run() -> None:
            v = Verifier(trust, window=3600, keys=ky)   # a fresh replay cache per run
            for e in batch:
                v.verify(e)
        return run

    mac = best(lambda: [sealer.pack([sealer.prepare(e)]) for e in envs])
    sign = best(lambda: [legacy.pack([legacy.prepare(e)]) for e in envs])
    mac_verify, verify = best(check(macd)), best(check(signed))
    derive = min(timeit.repeat(lambda: PairKeys(sx, trust).get("y"), number=200, repeat=5)) / 200 * 1e6
    return {"mac_us": round(mac, 1), "mac_verify_us": round(mac_verify, 1), "sign_us": round(sign, 1),
            "verify_us": round(verify, 1), "pair_key_us": round(derive, 1),
            "per_round_trip_us": round(2 * (mac + mac_verify), 1),
            "per_round_trip_sig_us": round(2 * (sign + verify), 1)}

