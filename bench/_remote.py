"""The remote request/reply measurement P2 (latency) and P3 (64 in flight) report from: one run of the
node pair, the hand relay and NATS side by side, made once for both."""

from __future__ import annotations

from typing import Any

from _harness import Bench, NatsSide, Starter, WsSide, call_frame

RELAY = "hand relay (websockets + aiomqtt, QoS 1)"
NATS = "nats-py request/reply"


def subject(b: Bench) -> str:
    return f"bench.{b.procs.prefix.rsplit('/', 1)[-1]}.echo"


async def needs(b: Bench) -> dict[str, Starter]:
    await b.nats()
    p = b.procs
    return {**b.pair(),
            "relay": lambda: p.floor("relay", "--broker", p.broker, "--prefix", p.prefix + "/floor"),
            "responder": lambda: p.floor("responder", "--broker", p.broker, "--prefix", p.prefix + "/floor"),
            "nats": lambda: p.floor("nats-responder", "--nats", b.nats_url, "--subject", subject(b))}


async def measure(b: Bench) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Project, floor and NATS figures (each merged latency + throughput); measured on the first call."""
    if "remote" not in b.shared:
        procs = b.running
        remote = lambda i: call_frame(i, "B")  # noqa: E731
        lat, tput = await b.both("P2/P3", [
            WsSide("project", procs["A"].url, remote, [procs["A"].pid, procs["B"].pid, *b.broker_pids]),
            WsSide("floor", procs["relay"].url, remote, [procs["relay"].pid, procs["responder"].pid,
                                                         *b.broker_pids]),
            NatsSide("nats", b.nats_url, subject(b), [procs["nats"].pid, *([b.nats_pid] if b.nats_pid else [])])])
        b.shared["remote"] = tuple(b.merge(lat[i], tput[i]) for i in range(3))
    p, f, n = b.shared["remote"]
    return p, f, n
