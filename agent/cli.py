"""``cloudisense ask | replay | eval``: the agent on the command line.

The node CLI (``cloudisense.node.cli``) calls :func:`add_commands` with its
subparsers; each command sets ``func(args) -> int``.  This module imports
nothing heavy at import time (no litellm, no rich, no websockets), so
``cloudisense node`` stays fast.  It also runs standalone:
``python -m cloudisense.agent.cli ask "restart logger on coolest node"``.

Exit codes: 0 done (or a read-only answer, or a dry run's plan), 1 a step
failed, 2 not planned (planning failed, the request was not understood, named
nothing that exists, or needs a clarification) or bad usage, 3 the operator
rejected the plan, 4 stale facts (nothing ran), 5 refused (node cap, cluster
unverifiable), 6 cannot connect.

``--json`` prints ``status`` from a closed set: ``planned`` (dry run with
steps), ``done``, ``answered`` (a question answered by read-only tools),
``clarify`` (a question back, with ``options``), ``refused``, ``failed``,
``stale``, ``rejected``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_URL = "ws://127.0.0.1:8765/ws"


def _url_default() -> str:
    return os.environ.get("CLOUDISENSE_URL") or DEFAULT_URL


def _model_default() -> str:
    return os.environ.get("CLOUDISENSE_MODEL") or "offline"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=_url_default(),
                   help="WebSocket URL of the node to connect to (env CLOUDISENSE_URL; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("CLOUDISENSE_TOKEN"),
                   help="access token (env CLOUDISENSE_TOKEN)")
    p.add_argument("--yes", action="store_true", help="approve the whole plan without asking")
    p.add_argument("--dry-run", action="store_true", help="plan and show the plan; execute nothing")
    p.add_argument("--json", action="store_true", help="print the plan (and results) as JSON on stdout")
    p.add_argument("--audit", default=None,
                   help="append-only audit log (JSONL; env CLOUDISENSE_AUDIT; default ~/.local/state/cloudisense/audit.jsonl)")
    p.add_argument("--max-nodes", type=int, default=10, help="most nodes one plan may touch (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-call timeout in seconds (default %(default)s)")


def add_commands(subparsers: Any) -> None:
    """Add ``ask``, ``replay`` and ``eval`` to an argparse subparsers object."""
    p = subparsers.add_parser("ask", help="plan with the agent, approve, execute",
                              description="Plan a request with the agent, show the plan, ask for approval, "
                                          "execute approved steps and print the results.")
    p.add_argument("text", help='the request, e.g. "restart logger on coolest node"')
    p.add_argument("--model", default=_model_default(),
                   help="litellm model string (openai/gpt-4o-mini, anthropic/..., ollama/...) or offline, the "
                        "deterministic rules planner (env CLOUDISENSE_MODEL; default %(default)s)")
    p.add_argument("--record", default=None, metavar="FILE", help="write the session as JSONL (for replay)")
    p.add_argument("--explain", action="store_true",
                   help="show how the offline parser reads the request (its intermediate form) before planning")
    _common(p)
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("replay", help="replay a recorded agent session against a live cluster",
                              description="Re-run a session recorded with --record: the model side is replayed "
                                          "from the file, the cluster side is live; approval is asked again.")
    p.add_argument("file", help="a session file written by ask --record")
    _common(p)
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("eval", help="run the agent evaluation set and report target accuracy")
    p.add_argument("--model", default=_model_default(), help="model to evaluate (default %(default)s)")
    p.add_argument("--set", dest="set_dir", default=os.environ.get("CLOUDISENSE_EVAL_SET") or "tests/agent_eval",
                   help="evaluation set directory (cases.jsonl + snapshots/; default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.add_argument("--min-accuracy", type=float, default=0.0,
                   help="exit 1 below this accuracy (0..1); any wrong plan or unsafe case exits 1 too")
    p.set_defaults(func=cmd_eval)


# ---- helpers ----------------------------------------------------------------------------------

def _audit(args: argparse.Namespace) -> Any:
    from ._audit import AuditLog, default_audit_path

    return AuditLog(args.audit or default_audit_path())


async def _connect(args: argparse.Namespace) -> Any:
    from cloudisense.node import Client

    c = Client(url=args.url, token=args.token, name="agent", default_timeout=args.timeout)
    await c.connect()
    return c


async def _session(args: argparse.Namespace, model: Any, request: str, *, recorder: Any = None,
                   replay_feedback: list[str] | None = None, conn: Any = None, input_fn: Any = input) -> Any:
    from ._agent import Agent, Decision, run_session
    from ._ui import _console, model_banner, outcome_json, render_plan, render_report, terminal_decider

    out = _console(stderr=args.json)
    out.print(f"[dim]{model_banner(model)}[/dim]")
    own = conn is None
    try:
        if own:
            conn = await _connect(args)
    except Exception as e:  # noqa: BLE001 - cannot connect: say so, exit 6
        out.print(f"[red]cannot connect to {args.url}: {getattr(e, 'message', e)}[/red]")
        return None, 6
    try:
        agent = Agent(conn, model, audit=_audit(args), recorder=recorder, max_nodes=args.max_nodes,
                      timeout=args.timeout)
        shown: set[int] = set()
        ask = terminal_decider(out, input_fn)
        explained = await _explain(out, conn, request, args) if getattr(args, "explain", False) else None

        async def decide(result: Any) -> Any:
            render_plan(out, result)
            shown.add(id(result))
            if args.yes:
                out.print("approved by --yes")
                return Decision("approve", None, via="--yes")
            return await ask(result)

        outcome = await run_session(agent, request, decide, replay_feedback=replay_feedback, dry_run=args.dry_run)
        if outcome.last is not None and id(outcome.last) not in shown:
            render_plan(out, outcome.last)
            if args.dry_run and outcome.last.plan and outcome.last.plan.steps:
                out.print("dry run: nothing executed")
        if outcome.report is not None:
            render_report(out, outcome.report)
        elif outcome.status == "rejected":
            out.print("rejected: nothing executed")
        if outcome.status == "clarify" and outcome.last is not None and outcome.last.options:
            from rich.markup import escape

            out.print("options: " + escape(", ".join(outcome.last.options)))
        if args.json:
            extra: dict[str, Any] = {"dry_run": args.dry_run}
            if explained is not None:
                extra["explain"] = explained
            print(json.dumps(outcome_json(request, getattr(model, "name", "?"), outcome, **extra),
                             ensure_ascii=False, indent=2, default=str))
        return outcome, outcome.exit_code
    finally:
        if own and conn is not None:
            await conn.close()


async def _explain(out: Any, conn: Any, request: str, args: argparse.Namespace) -> dict[str, Any]:
    """The offline parser's reading of ``request`` on the live cluster (``--explain``)."""
    from rich.markup import escape

    from cloudisense.tools import ToolError, Toolbox

    from ._offline import explain_request

    try:
        view = await Toolbox(conn, timeout=args.timeout).view()
    except ToolError as e:
        return {"status": "failed", "message": e.message}
    doc = explain_request(request, view, max_nodes=args.max_nodes)
    out.print("[bold]how the offline parser reads it:[/bold]")
    out.print(escape(doc.get("text") or doc.get("message") or ""))
    if doc.get("message") and doc.get("text"):
        out.print(escape(doc["message"]))
    return doc


# ---- commands ---------------------------------------------------------------------------------

def cmd_ask(args: argparse.Namespace, *, input_fn: Any = input, conn: Any = None) -> int:
    """``ask``; ``conn`` (tests) replaces the WebSocket connection to ``--url``."""
    from . import make_model
    from ._session import SessionRecorder

    model = make_model(args.model)
    recorder = SessionRecorder(args.record) if args.record else None
    try:
        _, code = asyncio.run(_session(args, model, args.text, recorder=recorder, input_fn=input_fn, conn=conn))
    finally:
        if recorder is not None:
            recorder.close()
    return code


def cmd_replay(args: argparse.Namespace, *, input_fn: Any = input, conn: Any = None) -> int:
    from ._session import load_session

    try:
        session = load_session(args.file)
    except (OSError, ValueError) as e:
        print(f"cloudisense replay: {e}", file=sys.stderr)
        return 2
    model = session.model_for_replay()
    outcome, code = asyncio.run(_session(args, model, session.request, replay_feedback=session.rejections,
                                         input_fn=input_fn, conn=conn))
    if outcome is not None and session.plans and outcome.last is not None and outcome.last.plan is not None:
        recorded = session.plans[-1].get("hash")
        same = recorded == outcome.last.plan.hash
        msg = ("replay: same plan as recorded (hash " + recorded[:12] + ")" if same else
               f"replay: the plan differs from the recording (recorded {str(recorded)[:12]}, now "
               f"{outcome.last.plan.hash[:12]}): the live cluster resolved differently")
        print(msg, file=sys.stderr)
    return code


def cmd_eval(args: argparse.Namespace) -> int:
    from . import make_model
    from ._eval import run_eval

    if not any(Path(args.set_dir).glob("*.jsonl")):
        print(f"cloudisense eval: no evaluation set at {args.set_dir} (*.jsonl case files); use --set DIR",
              file=sys.stderr)
        return 2
    report = asyncio.run(run_eval(lambda: make_model(args.model), args.set_dir))
    print(report.model_dump_json(indent=2) if args.json else report.text())
    return 0 if report.accuracy >= args.min_accuracy and not report.unsafe and not report.wrong_plans else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudisense-agent", description="the CloudiSENSE operations agent")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
