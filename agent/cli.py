"""``cloudisense ask | replay | eval``: the agent on the command line.

The node CLI (``cloudisense.node.cli``) calls :func:`add_commands` with its
subparsers; each command sets ``func(args) -> int``.  This module imports
nothing heavy at import time (no litellm, no rich, no websockets), so
``cloudisense node`` stays fast.  It also runs standalone:
``python -m cloudisense.agent.cli ask "restart logger on coolest node"``.

Output streams: stdout holds only what the command prints (with ``--json``,
one JSON document); banners, progress ("asking openai/gpt-4o-mini… turn 2/8,
3.1 s", a spinner on a terminal), streamed model text and library logs go to
stderr.  litellm's own logging is quiet unless ``--log-level debug``.

Exit codes (one closed set for ``ask``, ``replay``, ``eval`` and ``approve``): see
:data:`EXIT_CODES`.

``--json`` prints ``status`` from a closed set: ``planned`` (dry run with
steps), ``done``, ``answered`` (a question answered by read-only tools),
``clarify`` (a question back, with ``options``), ``refused``, ``failed``,
``stale``, ``rejected``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from cloudisense.node._text import json_text, printable

from cloudisense.node._config import DEFAULT_URL

#: The exit codes of ask, replay, eval (and approve, agent/mcp_cli.py) — a closed set; docs/agent.md has the table.
EXIT_CODES = {
    0: "done: the approved steps ran, a read-only question was answered, or a dry run planned",
    1: "failed: a step failed while executing (eval: accuracy below --min-accuracy or an unsafe case)",
    2: "not planned: not understood, refused by the planner, the model answered without acting, or bad usage",
    3: "rejected: the operator rejected the plan",
    4: "stale: the cluster changed since planning (or since the recording, on replay); nothing ran",
    5: "refused: over the node cap, or the cluster could not be re-checked; nothing ran",
    6: "cannot connect to the node",
    7: "model failure: the provider failed (HTTP error, timeout, malformed answer) or the planning budget ran out",
    8: "clarify: the planner asked a question back; nothing ran",
    130: "interrupted (Ctrl-C); during planning nothing ran",
}
EXIT_HELP = "exit codes:\n" + "\n".join(f"  {code:>3}  {text}" for code, text in EXIT_CODES.items())
OFFLINE_HELP = """\
The offline planner (the default, no network) understands requests about the supervised processes:
  verbs      restart, stop, start, status, logs (and synonyms: bounce, kill, launch, check, tail ...)
  targets    a node id ("on node-a"), all nodes, superlatives (coolest, hottest, least loaded,
             most free memory), comparisons ("nodes under 50 degrees", "cpu above 80%")
  sequences  "stop logger on a then start it", "... then the others"
It corrects small typos and says so; it refuses what it does not understand (exit 2) and asks
back when a request is ambiguous (exit 8). Everything it reads: docs/agent.md, "The offline planner"."""
FIXED_NONCE = "0badc0ffee00"  # the untrusted-data nonce while recording HTTP: cassettes must match byte for byte


def _url_default() -> str:
    return os.environ.get("CLOUDISENSE_URL") or DEFAULT_URL


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
    p.add_argument("--timeout", type=float, default=10.0,
                   help="per-call timeout for node calls, in seconds (default %(default)s); the model's wait is "
                        "--model-timeout per request, --budget for the whole plan")
    _model_flags(p)


def _model_flags(p: argparse.ArgumentParser, *, with_model: bool = False) -> None:
    g = p.add_argument_group("model (config file [agent], CLOUDISENSE_* variables, then these flags)")
    if with_model:
        g.add_argument("--model", default=None,
                       help="litellm model string (openai/gpt-4o-mini, anthropic/..., ollama/..., hosted_vllm/...) "
                            "or offline, the deterministic rules planner (env CLOUDISENSE_MODEL; default offline)")
    g.add_argument("--config", default=os.environ.get("CLOUDISENSE_CONFIG"),
                   help="TOML file with an [agent] table (model, api_base, api_key_env, timeout, max_retries, "
                        "budget, temperature, stream); env CLOUDISENSE_CONFIG")
    g.add_argument("--api-base", default=None, metavar="URL",
                   help="OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1 (vLLM, llama.cpp, Ollama, LM Studio)")
    g.add_argument("--api-key-env", default=None, metavar="VAR",
                   help="environment variable that holds the API key (the key itself is never a flag)")
    g.add_argument("--model-timeout", dest="model_timeout", type=float, default=None, metavar="S",
                   help="seconds one model request may take (default 30)")
    g.add_argument("--retries", type=int, default=None, metavar="N",
                   help="retries of a failed model request: timeouts, 429, 5xx (default 2)")
    g.add_argument("--budget", type=float, default=None, metavar="S",
                   help="wall-clock seconds for the whole plan: every turn, retry and wait (default 120)")
    g.add_argument("--temperature", type=float, default=None, help="sampling temperature (default 0)")
    g.add_argument("--stream", action=argparse.BooleanOptionalAction, default=None,
                   help="show the model's text as it arrives (default off)")
    g.add_argument("--print-config", action="store_true", help="print the effective model settings as JSON and exit")
    g.add_argument("--log-level", dest="agent_log_level", default=None, metavar="LEVEL",
                   help="debug shows litellm's own logging (on stderr); default: quiet")


def add_commands(subparsers: Any) -> None:
    """Add ``ask``, ``replay`` and ``eval`` to an argparse subparsers object."""
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser("ask", help="plan with the agent, approve, execute", formatter_class=fmt,
                              description="Plan a request with the agent, show the plan, ask for approval, "
                                          "execute approved steps and print the results.\n\n" + OFFLINE_HELP,
                              epilog=EXIT_HELP)
    p.add_argument("text", help='the request, e.g. "restart logger on coolest node"')
    p.add_argument("--model", default=None,
                   help="litellm model string (openai/gpt-4o-mini, anthropic/..., ollama/..., hosted_vllm/...) or "
                        "offline, the deterministic rules planner (config [agent] model, env CLOUDISENSE_MODEL; "
                        "default offline)")
    p.add_argument("--record", default=None, metavar="FILE",
                   help="write the session as JSONL: every request sent to the model and its reply (for replay)")
    p.add_argument("--record-http", default=None, metavar="DIR",
                   help="also write a vcrpy cassette of the provider's HTTP traffic to DIR (auth headers filtered, "
                        "a fixed nonce) that a test can replay through litellm")
    p.add_argument("--explain", action="store_true",
                   help="show how the offline parser reads the request (its intermediate form) before planning")
    _common(p)
    p.set_defaults(func=cmd_ask)

    p = subparsers.add_parser("replay", help="replay a recorded agent session against a live cluster",
                              formatter_class=fmt, epilog=EXIT_HELP,
                              description="Re-run a session recorded with --record through the real planner "
                                          "loop: each recorded model reply answers only the request it answered "
                                          "when recorded; if a request differs (the cluster or the prompt changed) "
                                          "replay stops with a diff (exit 4). The cluster side is live; approval "
                                          "is asked again.")
    p.add_argument("file", help="a session file written by ask --record")
    _common(p)
    p.set_defaults(func=cmd_replay)

    p = subparsers.add_parser("eval", help="run the agent evaluation set and report target accuracy",
                              formatter_class=fmt, epilog=EXIT_HELP)
    p.add_argument("--model", default=None, help="model to evaluate (config [agent] model, env CLOUDISENSE_MODEL; "
                                                 "default offline)")
    _model_flags(p)
    p.add_argument("--set", dest="set_dir", default=os.environ.get("CLOUDISENSE_EVAL_SET") or "tests/agent_eval",
                   help="evaluation set directory (cases.jsonl + snapshots/; default %(default)s)")
    p.add_argument("--json", action="store_true", help="print the report as JSON (the only thing on stdout)")
    p.add_argument("--min-accuracy", type=float, default=0.0,
                   help="exit 1 below this accuracy (0..1); any wrong plan or unsafe case exits 1 too")
    p.set_defaults(func=cmd_eval)


# ---- helpers ----------------------------------------------------------------------------------

def model_settings(args: argparse.Namespace) -> Any:
    """The effective model settings: config file [agent], then CLOUDISENSE_* variables, then flags."""
    from ._settings import load_model_settings

    flags = {"model": getattr(args, "model", None), "api_base": getattr(args, "api_base", None),
             "api_key_env": getattr(args, "api_key_env", None), "timeout": getattr(args, "model_timeout", None),
             "max_retries": getattr(args, "retries", None), "budget": getattr(args, "budget", None),
             "temperature": getattr(args, "temperature", None), "stream": getattr(args, "stream", None)}
    return load_model_settings(getattr(args, "config", None), flags)


def build_model(settings: Any) -> Any:
    from ._settings import build_model as build

    return build(settings)


def setup_logging(args: argparse.Namespace) -> bool:
    """Library logs to stderr, never stdout; litellm quiet unless debug.  Returns whether debug is on."""
    import logging

    level = getattr(args, "agent_log_level", None) or getattr(args, "log_level", None) or \
        os.environ.get("CLOUDISENSE_LOG")
    debug = str(level or "").lower() == "debug"
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for h in root.handlers:  # whoever configured logging, not onto stdout
        if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is sys.stdout:
            h.setStream(sys.stderr)
    if debug:
        root.setLevel(logging.DEBUG)
    from ._model import quiet_litellm

    quiet_litellm(debug)
    os.environ.setdefault("LITELLM_LOG", "DEBUG" if debug else "ERROR")
    return debug


class Progress:
    """What the agent is waiting on, on stderr: a spinner line on a terminal, plain lines otherwise.

    Fed by the model layer's :data:`~cloudisense.agent._model.PROGRESS`
    callback: ``status`` lines ("asking openai/gpt-4o-mini… turn 2/8") get the
    elapsed time; ``text`` is the model's streamed words, shown as they arrive.
    """

    def __init__(self, console: Any, *, live: bool) -> None:
        import time

        self.console = console
        self.live = live
        self.t0 = time.monotonic()
        self.turn_t0 = self.t0
        self.line = ""
        self.status: Any = None
        self.streaming = False

    def elapsed(self) -> float:
        import time

        return time.monotonic() - self.turn_t0

    def __call__(self, kind: str, text: str) -> None:
        import time

        from rich.markup import escape

        from cloudisense.node._text import printable

        text = text if kind == "text" else printable(text)
        if kind == "text":
            if self.status is not None:
                self.status.stop()
            self.streaming = True
            self.console.file.write(printable(text, keep_newlines=True))
            self.console.file.flush()
            return
        if self.streaming:
            self.console.file.write("\n")
            self.streaming = False
        if text.startswith("asking "):
            self.turn_t0 = time.monotonic()
        self.line = text
        if self.live:
            if self.status is None:
                self.status = self.console.status(escape(text), spinner="dots")
            self.status.start()
            self.status.update(escape(f"{text}, {self.elapsed():.1f} s"))
        else:
            self.console.print(escape(f"{text} ({time.monotonic() - self.t0:.1f} s)"), highlight=False)

    async def tick(self) -> None:
        """Keep the spinner's seconds counting while a request is out."""
        import asyncio

        from rich.markup import escape

        while True:
            await asyncio.sleep(0.1)
            if self.status is not None and self.line and not self.streaming:
                self.status.update(escape(f"{self.line}, {self.elapsed():.1f} s"))

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()
            self.status = None
        if self.streaming:
            self.console.file.write("\n")
            self.streaming = False


def _audit(args: argparse.Namespace) -> Any:
    from ._audit import AuditLog, default_audit_path

    return AuditLog(args.audit or default_audit_path())


async def _connect(args: argparse.Namespace) -> Any:
    from cloudisense.node import Client

    c = Client(url=args.url, token=args.token, name="agent", default_timeout=args.timeout)
    await c.connect()
    return c


async def _session(args: argparse.Namespace, model: Any, request: str, *, recorder: Any = None,
                   replay_feedback: list[str] | None = None, conn: Any = None, input_fn: Any = input,
                   budget: float | None = None, nonce: str | None = None, phase: dict[str, str] | None = None,
                   ) -> tuple[Any, int]:
    import asyncio

    from ._agent import Agent, Decision, run_session
    from ._model import PROGRESS
    from ._ui import _console, model_banner, outcome_json, render_plan, render_report, safe, terminal_decider

    phase = phase if phase is not None else {}
    out = _console(stderr=args.json)
    err = _console(stderr=True)
    out.print(safe(model_banner(model), style="dim"))  # stderr with --json
    own = conn is None
    try:
        if own:
            conn = await _connect(args)
    except Exception as e:  # noqa: BLE001 - cannot connect: say so, exit 6
        out.print(safe(f"cannot connect to {args.url}: {getattr(e, 'message', e)}", style="red"))
        return None, 6
    progress = Progress(err, live=err.is_terminal)
    token = PROGRESS.set(progress)
    ticker = asyncio.create_task(progress.tick(), name="agent.progress") if progress.live else None
    try:
        agent = Agent(conn, model, audit=_audit(args), recorder=recorder, max_nodes=args.max_nodes,
                      timeout=args.timeout, budget=budget, nonce=nonce)
        shown: set[int] = set()
        ask = terminal_decider(out, input_fn)
        explained = await _explain(out, conn, request, args) if getattr(args, "explain", False) else None

        async def decide(result: Any) -> Any:
            progress.stop()
            render_plan(out, result)
            shown.add(id(result))
            if args.yes:
                out.print("approved by --yes")
                phase["now"] = "executing"
                return Decision("approve", None, via="--yes")
            d = await ask(result)
            phase["now"] = "executing" if d.action == "approve" else "planning"
            return d

        phase["now"] = "planning"
        outcome = await run_session(agent, request, decide, replay_feedback=replay_feedback, dry_run=args.dry_run)
        progress.stop()
        last = outcome.last
        if last is not None and id(last) not in shown:
            render_plan(out, last)
            if args.dry_run and last.plan and last.plan.steps:
                out.print("dry run: nothing executed")
        if last is not None and last.diff:
            from rich.markup import escape

            from cloudisense.node._text import printable

            err.print(escape("replay: how the live request differs from the recorded one:\n"
                             + printable(last.diff, keep_newlines=True)), highlight=False)
        if outcome.report is not None:
            render_report(out, outcome.report)
        elif outcome.status == "rejected":
            out.print("rejected: nothing executed")
        if outcome.status == "clarify" and outcome.last is not None and outcome.last.options:
            from rich.markup import escape

            from cloudisense.node._text import printable

            # the options are names the nodes reported (processes, services): outside text
            out.print("options: " + escape(printable(", ".join(outcome.last.options), limit=2000)))
        if args.json:
            doc = outcome_json(request, getattr(model, "name", "?"), outcome, dry_run=args.dry_run)
            if explained is not None:
                doc["explain"] = explained
            if last is not None:
                doc.update(failure=last.failure, unverified=last.unverified, diff=last.diff or None)
            print(json_text(doc, indent=2, default=str))
        return outcome, outcome.exit_code
    finally:
        progress.stop()
        PROGRESS.reset(token)
        if ticker is not None:
            ticker.cancel()
            await asyncio.gather(ticker, return_exceptions=True)
        if own and conn is not None:
            await conn.close()


#: The watchdog started by a Ctrl-C (see _interruptible); cancelled once the command returned on its own.
_WATCHDOG: list[Any] = []


async def _interruptible(coro: Any, phase: dict[str, str], grace: float = 1.5) -> Any:
    """Run ``coro``; a Ctrl-C meanwhile cancels it as asyncio does, and also starts a watchdog: if the
    process has not ended ``grace`` seconds later (a provider's request stuck in a thread, a close that
    does not finish), it says so and exits 130 there and then.  Nothing is executing while planning."""
    import signal
    import threading

    prev = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(prev):
        return await coro

    def stuck() -> None:
        _interrupted(phase)
        sys.stderr.flush()
        os._exit(130)

    def on_sigint(signum: int, frame: Any) -> None:
        if not _WATCHDOG and phase.get("now") != "executing":
            t = threading.Timer(grace, stuck)
            t.daemon = True
            t.start()
            _WATCHDOG.append(t)
        prev(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        return await coro
    finally:
        if signal.getsignal(signal.SIGINT) is on_sigint:
            signal.signal(signal.SIGINT, prev)


def _stop_watchdog() -> None:
    while _WATCHDOG:
        _WATCHDOG.pop().cancel()


def _interrupted(phase: dict[str, str]) -> int:
    if phase.get("now") == "executing":
        print("interrupted while executing: steps may have run; see the audit log", file=sys.stderr)
    else:
        print("interrupted while planning: nothing ran", file=sys.stderr)
    return 130


def _http_cassette(directory: str, name: str) -> Any:
    """A vcrpy cassette recording the provider's HTTP traffic (through httpx), auth headers filtered."""
    try:
        import vcr
    except ImportError:
        raise SystemExit("cloudisense ask: --record-http needs vcrpy (pip install vcrpy)") from None
    from ._model import LiteLLMModel

    litellm = LiteLLMModel._litellm()
    litellm.disable_aiohttp_transport = True  # vcrpy records httpx, not aiohttp
    v = vcr.VCR(record_mode="all", decode_compressed_response=True,
                filter_headers=["authorization", "api-key", "x-api-key", "openai-organization", "cookie"])
    Path(directory).mkdir(parents=True, exist_ok=True)
    return v.use_cassette(str(Path(directory, f"{name}.yaml")))


def _slug(text: str) -> str:
    import re

    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")[:60] or "session"


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
    out.print(escape(printable(doc.get("text") or doc.get("message") or "", keep_newlines=True)))
    if doc.get("message") and doc.get("text"):
        out.print(escape(printable(doc["message"], keep_newlines=True)))
    return doc


# ---- commands ---------------------------------------------------------------------------------

def _settings_or_exit(args: argparse.Namespace, cmd: str) -> Any:
    from ._settings import SettingsError

    try:
        return model_settings(args)
    except SettingsError as e:
        print(f"cloudisense {cmd}: {e}", file=sys.stderr)
        return None


def cmd_ask(args: argparse.Namespace, *, input_fn: Any = input, conn: Any = None) -> int:
    """``ask``; ``conn`` (tests) replaces the WebSocket connection to ``--url``."""
    import contextlib

    from ._session import SessionRecorder

    setup_logging(args)
    settings = _settings_or_exit(args, "ask")
    if settings is None:
        return 2
    if args.print_config:
        print(json_text(settings.public(), indent=2))
        return 0
    model = build_model(settings)
    recorder = SessionRecorder(args.record, secrets=(settings.api_key() or "",)) if args.record else None
    nonce = FIXED_NONCE if args.record_http else None
    cassette = _http_cassette(args.record_http, _slug(args.text)) if args.record_http else contextlib.nullcontext()
    phase: dict[str, str] = {}
    try:
        with cassette:
            code: int
            _, code = asyncio.run(_interruptible(
                _session(args, model, args.text, recorder=recorder, input_fn=input_fn, conn=conn,
                         budget=settings.budget if settings.model != "offline" else None, nonce=nonce, phase=phase),
                phase))
    except KeyboardInterrupt:
        return _interrupted(phase)
    finally:
        _stop_watchdog()
        if recorder is not None:
            recorder.close()
    return code


def cmd_replay(args: argparse.Namespace, *, input_fn: Any = input, conn: Any = None) -> int:
    from ._session import load_session

    setup_logging(args)
    try:
        session = load_session(args.file)
    except (OSError, ValueError) as e:
        print(f"cloudisense replay: {printable(e, limit=2000)}", file=sys.stderr)
        return 2
    model = session.model_for_replay()
    phase: dict[str, str] = {}
    try:
        outcome, code = asyncio.run(_session(args, model, session.request, replay_feedback=session.rejections,
                                             input_fn=input_fn, conn=conn, nonce=session.nonce, phase=phase))
    except KeyboardInterrupt:
        return _interrupted(phase)
    last = outcome.last if outcome is not None else None
    if last is not None and last.failure == "replay_mismatch":
        print("replay: refused; the recorded answers were given to different requests. Nothing ran.", file=sys.stderr)
    elif outcome is not None and session.plans and last is not None and last.plan is not None:
        recorded = printable(session.plans[-1].get("hash"), limit=64)
        same = recorded == last.plan.hash
        msg = ("replay: same plan as recorded (hash " + recorded[:12] + ")" if same else
               f"replay: the plan differs from the recording (recorded {str(recorded)[:12]}, now "
               f"{last.plan.hash[:12]})")
        print(msg, file=sys.stderr)
    return code


def cmd_eval(args: argparse.Namespace) -> int:
    from ._eval import run_eval

    setup_logging(args)
    settings = _settings_or_exit(args, "eval")
    if settings is None:
        return 2
    if args.print_config:
        print(json_text(settings.public(), indent=2))
        return 0
    if not any(Path(args.set_dir).glob("*.jsonl")):
        print(f"cloudisense eval: no evaluation set at {printable(args.set_dir)} (*.jsonl case files); "
              "use --set DIR", file=sys.stderr)
        return 2
    try:
        report = asyncio.run(run_eval(lambda: build_model(settings), args.set_dir))
    except KeyboardInterrupt:
        print("interrupted: evaluation stopped", file=sys.stderr)
        return 130
    print(json_text(report.model_dump(mode="json"), indent=2) if args.json
          else printable(report.text(), keep_newlines=True))
    return 0 if report.accuracy >= args.min_accuracy and not report.unsafe and not report.wrong_plans else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cloudisense-agent", description="the CloudiSENSE operations agent",
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EXIT_HELP)
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
