"""``cloudisense mcp | pending | approve | reject``: the MCP server and its pending plans on the command line.

The node CLI calls :func:`add_commands` with its subparsers.  Nothing heavy is
imported here at import time (no ``mcp``, no websockets): handlers import
what they use.

- ``mcp``: the cluster tools as an MCP server on stdin/stdout (see
  :mod:`cloudisense.agent.mcp_server`); mutating calls become pending plans.
- ``pending``: the plans waiting for approval (``--all``: every plan).
- ``approve ID``: approve a pending plan and execute it through the agent's
  gate and executor; exit codes as ``cloudisense ask``: 0 done, 1 a step
  failed, 2 unknown/expired/not pending/tampered/another hash (checked
  before connecting anywhere), 4 stale (nothing ran), 5 refused, 6 cannot
  connect.
- ``reject ID``: reject a pending plan (nothing runs).

Every command refuses an unsafe state directory (not yours, or open to
group/others) with one line that says the fix, and exits 2.

What these commands print came from an MCP client, a model or a node: it
is shown with control characters as visible escapes (``\\x1b``, ``\\x0d``),
one line per field, and ``--json`` output has them as JSON escapes, so a
reason can't rewrite what the terminal shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from cloudisense.node._text import json_text, printable

from cloudisense.node._config import DEFAULT_URL
EXIT = {"done": 0, "failed": 1, "stale": 4, "refused": 5}


def _url_default() -> str:
    return os.environ.get("CLOUDISENSE_URL") or DEFAULT_URL


def _state(p: argparse.ArgumentParser) -> None:
    p.add_argument("--state-dir", default=None,
                   help="where pending plans live (env CLOUDISENSE_STATE_DIR; default ~/.local/state/cloudisense)")


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "mcp", help="the cluster tools as an MCP server (stdio)",
        description="Serve the cluster tools (find_nodes, get_node, describe_service, call, broadcast, watch, "
                    "plan_status) and resources (the cluster table, each node's service catalog) to an MCP client "
                    "over stdin/stdout. A call of a mutating method returns a pending plan id; approve it with "
                    "'cloudisense approve ID'.")
    p.add_argument("--url", default=_url_default(),
                   help="node to connect to (env CLOUDISENSE_URL; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("CLOUDISENSE_TOKEN"), help="access token (env CLOUDISENSE_TOKEN)")
    p.add_argument("--allow", nargs="+", action="extend", default=[], metavar="SERVICE.METHOD",
                   help="mutating methods to run at once, without a pending plan (approved by this policy, audited)")
    p.add_argument("--audit", default=None,
                   help="audit log (JSONL; env CLOUDISENSE_AUDIT; default ~/.local/state/cloudisense/audit.jsonl)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call timeout in seconds (default %(default)s)")
    p.add_argument("--max-nodes", type=int, default=10, help="most nodes one call may touch (default %(default)s)")
    p.add_argument("--ttl", type=float, default=3600.0, help="seconds a pending plan can be approved (default %(default)s)")
    _state(p)
    p.set_defaults(func=cmd_mcp)

    p = subparsers.add_parser("pending", help="plans from MCP clients waiting for approval",
                              description="List the plans made over MCP that wait for an operator's approval.")
    p.add_argument("--all", action="store_true", help="every plan, whatever its status")
    p.add_argument("--json", action="store_true", help="print JSON")
    _state(p)
    p.set_defaults(func=cmd_pending)

    p = subparsers.add_parser("approve", help="approve a pending plan and execute it",
                              description="Approve the pending plan ID (made over MCP) and execute it through the "
                                          "agent's approval gate and executor; the approval, each call and the "
                                          "outcome go to the audit log. Exit: 0 done, 1 a step failed, 2 unknown, "
                                          "expired, not pending, changed on disk or another hash (nothing "
                                          "connected), 4 stale (nothing ran), 5 refused, 6 cannot connect.")
    p.add_argument("id", metavar="ID")
    p.add_argument("--url", default=None,
                   help="node to execute through (default: the node the plan was made through, else "
                        "$CLOUDISENSE_URL or " + DEFAULT_URL + ")")
    p.add_argument("--token", default=os.environ.get("CLOUDISENSE_TOKEN"), help="access token (env CLOUDISENSE_TOKEN)")
    p.add_argument("--hash", default=None, metavar="PREFIX", help="approve only if the plan's hash starts with this")
    p.add_argument("--audit", default=None, help="audit log (default: the one the plan was recorded in)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call timeout in seconds (default %(default)s)")
    p.add_argument("--max-nodes", type=int, default=10, help="most nodes the plan may touch (default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the outcome as JSON")
    _state(p)
    p.set_defaults(func=cmd_approve)

    p = subparsers.add_parser("reject", help="reject a pending plan (nothing runs)")
    p.add_argument("id", metavar="ID")
    p.add_argument("--reason", default="", help="why (recorded in the plan and the audit log)")
    _state(p)
    p.set_defaults(func=cmd_reject)


# ---- commands ---------------------------------------------------------------------------------

def cmd_mcp(args: argparse.Namespace) -> int:
    from .mcp_server import McpSettings, serve_stdio

    from cloudisense.agent.pending import PendingStore

    try:
        settings = McpSettings(url=args.url, token=args.token, allow=frozenset(args.allow), audit=args.audit,
                               state_dir=args.state_dir, timeout=args.timeout, max_nodes=args.max_nodes, ttl=args.ttl)
    except ValueError as e:
        print(f"cloudisense mcp: {printable(e)}", file=sys.stderr)
        return 2
    PendingStore(args.state_dir).check()  # an unsafe state directory: refused (exit 2) before serving
    asyncio.run(serve_stdio(settings))
    # The client closed stdin and waits (the mcp stdio client: 2 s) before it kills us.  Skip the exit-time
    # garbage collection of the mcp/pydantic object graph, which alone takes 1-2 s on a busy machine.
    import gc

    gc.freeze()
    return 0


def _store(args: argparse.Namespace) -> Any:
    from cloudisense.agent.pending import PendingStore

    return PendingStore(args.state_dir)


def _p(x: Any, limit: int = 300) -> str:
    """One field from outside, for one line of the terminal: escaped, bounded."""
    return printable(x, limit=limit)


def describe(doc: dict[str, Any]) -> str:
    """A plan summary (:meth:`PendingPlan.summary`) as the terminal shows it: one line per field."""
    lines = [f"plan {_p(doc['plan_id'])}  {_p(doc['status'])}  hash {_p(doc['hash'][:12])}  "
             f"from {_p(doc.get('requested_by') or '?')}"]
    if doc.get("url"):
        lines.append(f"  runs through {_p(doc['url'])}")
    for s in doc["steps"]:
        lines.append(f"  step {_p(s['step'])}: {_p(s['service'], 100)}.{_p(s['method'], 100)} "
                     f"{_p(json_text(s['params']), 1000)} on {_p(', '.join(map(str, s['nodes'])), 500)}"
                     + (f" — {_p(s['reason'], 1000)}" if s["reason"] else ""))
        lines.append(f"          why: {_p(s['why'], 500)}")
    if doc.get("message"):
        lines.append(f"  {_p(doc['message'], 1000)}")
    return "\n".join(lines)


def outcome_lines(doc: dict[str, Any], status: str, message: str) -> list[str]:
    """What ``approve`` prints after running a plan: a line per call, then the outcome."""
    out = []
    for r in doc.get("execution", {}).get("results", []):
        body = json_text(r["result"] if r["ok"] else r["error"], default=str)
        out.append(f"  {_p(r['node'], 100)}: {_p(r['service'], 100)}.{_p(r['method'], 100)} "
                   f"{'ok' if r['ok'] else 'FAILED'} {_p(body, 300)}")
    out.append(f"{_p(status)}: {_p(message, 2000)}")
    return out


def cmd_pending(args: argparse.Namespace) -> int:
    store = _store(args)
    # a tampered plan waits too (it can only be rejected): the operator must see it
    docs = [r.summary() for r in store.list() if args.all or r.effective_status() in ("pending", "tampered")]
    if args.json:
        print(json_text(docs, indent=2))
    elif not docs:
        print(f"no {'' if args.all else 'pending '}plans in {_p(store.dir, 1000)}")
    else:
        print("\n".join(describe(d) for d in docs))
    return 0


def cmd_approve(args: argparse.Namespace) -> int:
    from cloudisense.agent.pending import PendingError

    store = _store(args)
    try:
        rec = store.get(args.id)
    except PendingError as e:
        print(f"cloudisense approve: {_p(e.message, 1000)}", file=sys.stderr)
        return 2
    print(describe(rec.summary()), file=sys.stderr if args.json else sys.stdout)
    try:  # everything that would refuse the plan is checked before the token goes anywhere
        rec = store.preflight(args.id, expect_hash=args.hash)
    except PendingError as e:
        print(f"cloudisense approve: {_p(e.message, 1000)}", file=sys.stderr)
        return 2
    url = args.url or rec.url or _url_default()
    return asyncio.run(_approve(args, store, url, rec.plan.hash))


async def _approve(args: argparse.Namespace, store: Any, url: str, plan_hash: str) -> int:
    from cloudisense.agent.pending import PendingError, execute_pending
    from cloudisense.node import Client

    out = sys.stderr if args.json else sys.stdout
    client = Client(url, token=args.token, name="approve", default_timeout=args.timeout)
    try:
        await client.connect()
    except Exception as e:  # noqa: BLE001 - cannot connect: say so, exit 6, the plan stays pending
        print(f"cannot connect to {_p(url, 1000)}: {_p(getattr(e, 'message', None) or e, 1000)}; plan "
              f"{_p(args.id)} is still pending", file=out)
        return 6
    try:  # the full hash preflight saw: what runs is exactly what was checked and shown
        rec = await execute_pending(store, args.id, client, via="cloudisense approve", audit_path=args.audit,
                                    expect_hash=plan_hash, max_nodes=args.max_nodes, timeout=args.timeout)
    except PendingError as e:
        print(f"cloudisense approve: {_p(e.message, 1000)}", file=sys.stderr)
        return 2
    finally:
        await client.close()
    doc = rec.summary()
    if args.json:
        print(json_text(doc, indent=2, default=str))
    else:
        print("\n".join(outcome_lines(doc, rec.status, rec.message)), file=out)
    return EXIT.get(rec.status, 1)


def cmd_reject(args: argparse.Namespace) -> int:
    from cloudisense.agent.pending import PendingError

    try:
        rec = _store(args).reject(args.id, feedback=args.reason, via="cloudisense reject")
    except PendingError as e:
        print(f"cloudisense reject: {_p(e.message, 1000)}", file=sys.stderr)
        return 2
    print(f"plan {_p(rec.id)} rejected; nothing was executed")
    return 0
