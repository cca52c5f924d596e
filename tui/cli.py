"""``cloudisense tui``: the operator console.

The node CLI calls :func:`add_commands` with its subparsers.  Nothing heavy
is imported here (Textual, the agent): the handler imports them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from cloudisense.node._config import DEFAULT_URL


def add_commands(subparsers: Any) -> None:
    p = subparsers.add_parser("tui", help="the operator console (ask, approve, watch)",
                              description="Open the Textual operator console on a node: live cluster table, "
                                          "request box, plans to approve, execution, events and RPC activity.")
    p.add_argument("--url", default=os.environ.get("CLOUDISENSE_URL") or DEFAULT_URL,
                   help="WebSocket URL of the node to connect to (env CLOUDISENSE_URL; default %(default)s)")
    p.add_argument("--token", default=os.environ.get("CLOUDISENSE_TOKEN"),
                   help="access token (env CLOUDISENSE_TOKEN)")
    p.add_argument("--model", default=os.environ.get("CLOUDISENSE_MODEL") or "offline",
                   help="litellm model string (openai/gpt-4o-mini, anthropic/..., ollama/...) or offline, the "
                        "deterministic rules planner (env CLOUDISENSE_MODEL; default %(default)s)")
    p.add_argument("--audit", default=None,
                   help="append-only audit log (JSONL; env CLOUDISENSE_AUDIT; "
                        "default ~/.local/state/cloudisense/audit.jsonl)")
    p.add_argument("--state-dir", default=None,
                   help="request history and the MCP pending plans (env CLOUDISENSE_STATE_DIR; default the "
                        "directory of --audit when given, else ~/.local/state/cloudisense)")
    p.set_defaults(func=cmd_tui)

    p = subparsers.add_parser("demo", help="embedded broker + 3 nodes with a supervised logger, then the TUI",
                       description="Start an embedded broker and three nodes (simulated temperatures, a supervised "
                                   "'logger' each) on this machine, then open the TUI (or just wait with --no-tui).")
    p.add_argument("--no-tui", action="store_true", help="print how to connect and wait for Ctrl-C")
    p.add_argument("--port", type=int, default=8765, help="first WebSocket port (default %(default)s)")
    p.add_argument("--broker-port", type=int, default=1884, help="embedded broker port (default %(default)s)")
    p.add_argument("--model", default=os.environ.get("CLOUDISENSE_MODEL", "offline"),
                   help="the agent's model in the TUI: offline (the rules planner, no network; default) or a "
                        "litellm model string such as openai/gpt-4o-mini (env CLOUDISENSE_MODEL; see docs/agent.md)")
    p.set_defaults(func=cmd_demo)


def run_tui(url: str = DEFAULT_URL, model: Any = None, token: str | None = None, audit: Any = None,
            state_dir: Any = None) -> int:
    """Run the console until the operator quits.  Blocking; call it from the main thread (Textual installs
    signal handlers).  Inside an event loop use :func:`run_tui_async`."""
    from .app import run_tui as run

    return run(url, model, token=token, audit=audit, state_dir=state_dir)


async def run_tui_async(url: str = DEFAULT_URL, model: Any = None, token: str | None = None,
                        audit: Any = None, state_dir: Any = None) -> int:
    """The console on the running event loop (``cloudisense demo``: ``await run_tui_async(url, model)``)."""
    from .app import run_tui_async as run

    return await run(url, model, token=token, audit=audit, state_dir=state_dir)


def cmd_tui(args: argparse.Namespace) -> int:
    try:
        import textual  # noqa: F401 - only checks that the tui extra is installed
    except ImportError as e:  # textual is an optional dependency
        print(f"cloudisense tui needs the tui extra (pip install 'cloudisense[tui]'): {e}", file=sys.stderr)
        return 2
    return run_tui(args.url, args.model, token=args.token, audit=args.audit, state_dir=args.state_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudisense-tui")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())


def cmd_demo(args: Any) -> int:
    """``cloudisense demo``: the embedded broker, three nodes and the console (or ``--no-tui``)."""
    from .demo import run_demo

    return asyncio.run(run_demo(args))
