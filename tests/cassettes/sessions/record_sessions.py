"""Re-record the committed sessions: ``.venv/bin/python tests/cassettes/sessions/record_sessions.py``.

Each session is recorded the way a user records one, ``cloudisense ask ...
--record FILE``, with the model on the far side of a real OpenAI-compatible
HTTP server (tests/llm_server.py) reached through litellm, and the
three-node test snapshot (node-a 61 °C, node-b 38 °C, node-c 52 °C) as the
cluster.  The server's answers are the ones an LLM gave for this request.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parents[1]), str(HERE.parents[1] / "unit" / "agent")]

from agentfix import THREE  # noqa: E402
from llm_server import LLMServer, reply, tool  # noqa: E402

from cloudisense.agent import cli  # noqa: E402
from cloudisense.tools import FakeCluster  # noqa: E402

LOGGER_COOLEST = {"where": {"online": True, "ids": None, "exclude": None, "service": None, "process": "logger",
                            "running": None, "conditions": None}, "sort_by": "temperature_c", "order": "asc",
                  "pick": "one"}
EXCEPT_B = {**LOGGER_COOLEST, "where": {**LOGGER_COOLEST["where"], "exclude": ["node-b"]}}
ANSWERS = [
    tool("find_nodes", {"where": {"online": True, "ids": None, "exclude": None, "service": None, "process": None,
                                  "running": "logger", "conditions": None}, "sort_by": "temperature_c",
                        "order": "asc", "limit": 3}),
    tool("call", {"node": None, "selector": LOGGER_COOLEST, "service": "supervisor", "method": "restart",
                  "params_json": '{"name": "logger"}', "reason": "restart logger on the coolest node"}),
    reply("Plan: restart logger on node-b (coolest, 38 °C)."),
    tool("call", {"node": None, "selector": EXCEPT_B, "service": "supervisor", "method": "restart",
                  "params_json": '{"name": "logger"}', "reason": "node-b is in maintenance; next coolest"}),
    reply("Plan: restart logger on node-c (coolest apart from node-b, 52 °C)."),
]


def main() -> int:
    out = HERE / "restart_coolest_rejected_once.jsonl"
    answers = iter(["r", "not node-b, it's in maintenance", "a"])
    with LLMServer(list(ANSWERS)) as srv:
        p = argparse.ArgumentParser()
        cli.add_commands(p.add_subparsers())
        args = p.parse_args(["ask", "restart logger on coolest node", "--model", "openai/recorded-model",
                             "--api-base", srv.base_url, "--record", str(out), "--audit", str(HERE / ".record-audit.jsonl")])
        code = cli.cmd_ask(args, conn=FakeCluster.from_snapshot(copy.deepcopy(THREE)),
                           input_fn=lambda prompt: next(answers))
    (HERE / ".record-audit.jsonl").unlink(missing_ok=True)
    print(f"wrote {out} (exit {code})", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
