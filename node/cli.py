"""The ``cloudisense`` command line.

Exit codes of the core commands: 0 done; 1 an error from the node (its
code and message are printed), or cannot connect, or a broadcast (``call '*'``)
whose every target answered an error (a partial failure exits 0: the failed
nodes are under ``errors`` in the printed result); 2 bad usage or configuration, an unsafe
state directory, or ``keys gen``/``certs gen`` refusing to overwrite a file
(or to write through a symlink); 130 interrupted.  Everything printed that
came from a node is shown with control characters escaped (``\\x1b``);
``call`` and ``sub`` print JSON whose unsafe characters are JSON escapes.
The agent and MCP commands document their own codes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from ._errors import CloudisenseError, ConfigError
from ._text import json_text, printable

from ._config import DEFAULT_URL


def _url_default() -> str:
    return os.environ.get("CLOUDISENSE_URL", DEFAULT_URL)


def _add_url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=_url_default(),
                   help="node to connect to (default: $CLOUDISENSE_URL or %(default)s)")
    p.add_argument("--token", default=os.environ.get("CLOUDISENSE_TOKEN"),
                   help="auth token when the node requires one (default: $CLOUDISENSE_TOKEN)")


def _add_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=float, default=0.0, metavar="SECONDS",
                   help="a node just started: retry for up to SECONDS while the node refuses the connection "
                        "or has not yet heard of the target node (default: fail at once)")


_T = TypeVar("_T")


async def _connected(args: argparse.Namespace, body: Callable[[Any], Awaitable[_T]], *, name: str = "cli",
                     reconnect: bool = False) -> _T:
    """Run ``body(client)`` on a fresh connection; with ``--wait``, retry while the node is not up yet or
    does not know the target node yet (nothing ran then: the call never left).  ``reconnect``: the
    client comes back by itself when the connection is lost (long-running commands)."""
    from ._client import Client, ConnectionLost
    from ._errors import UnknownNode
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, args.wait)
    while True:
        try:
            client = Client(args.url, token=args.token, name=name, reconnect=reconnect)
            await client.connect()
        except ConnectionLost:
            if loop.time() >= deadline:
                raise
            await asyncio.sleep(0.2)
            continue
        try:
            return await body(client)
        except UnknownNode:
            if loop.time() >= deadline:
                raise
        finally:
            await client.close()
        await asyncio.sleep(0.2)


CORE_COMMANDS = {"node", "call", "sub", "pub", "nodes", "reply", "keys", "trust", "certs", "token"}


def state_dir() -> Path:
    """``$CLOUDISENSE_STATE_DIR``, else ``$XDG_STATE_HOME/cloudisense``, else ``~/.local/state/cloudisense``."""
    env = os.environ.get("CLOUDISENSE_STATE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "cloudisense"


def build_parser(core_only: bool = False) -> argparse.ArgumentParser:
    """The CLI; ``core_only`` skips the agent/TUI/MCP commands (a node need not load them)."""
    parser = argparse.ArgumentParser(
        prog="cloudisense",
        description="CloudiSENSE: a federated messaging node (WebSocket RPC and pub/sub over any MQTT broker) "
                    "with an LLM operations agent on top.")
    parser.add_argument("--version", action="version", version=f"cloudisense {_version()}")
    _add_globals(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("node", help="run a node (a plain broker, no agent)",
                       description="Run a node: WebSocket server (RPC, pub/sub, dashboard at /) and federation "
                                   "over MQTT. Settings come from --config, CLOUDISENSE_* variables and flags "
                                   "(flags win).")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--id", help="node id (letters, digits, - _ .); default: host name")
    p.add_argument("--broker", help="'embedded' (default: start one here), mqtt://HOST:PORT, mqtts://HOST:PORT, "
                                    "several servers of one broker cluster comma-separated (tried in turn: "
                                    "mqtt://a:1883,mqtt://b:1883), or 'none' (no federation)")
    p.add_argument("--ws", help="HOST:PORT to serve WebSocket clients and the dashboard on (default 127.0.0.1:8765)")
    p.add_argument("--tls-cert", help="certificate for wss:// (with --tls-key)")
    p.add_argument("--tls-key", help="private key for wss://")
    p.add_argument("--temperature", help="auto, fixed:41.5 or sim:45")
    p.add_argument("--print-config", action="store_true", help="print the effective config as JSON (secrets shown as ***) and exit")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("call", help="call a method on a node (one-off RPC)",
                       description="Call SERVICE.METHOD on NODE ('.' = the node you connect to, '*' = every node).",
                       epilog="exit codes: 0 done (a broadcast where some nodes failed too: see its 'errors'); "
                              "1 the node answered an error, cannot connect, or every node of a broadcast "
                              "failed; 2 bad usage")
    _add_url(p)
    p.add_argument("node", metavar="NODE")
    p.add_argument("target", metavar="SERVICE.METHOD")
    p.add_argument("params", metavar="JSON", nargs="?", default="{}", help="params object (default {})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default %(default)s)")
    _add_wait(p)
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("sub", help="watch events of a topic on a node",
                       description="Subscribe to TOPIC (MQTT filter, + and # allowed) and print each event as "
                                   "one JSON line.")
    _add_url(p)
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("--node", default=None, help="node whose events to watch (default: the one you connect to)")
    p.add_argument("--count", type=int, default=0, help="exit after N events (default: run until Ctrl-C)")
    p.add_argument("--seconds", type=float, default=0, help="exit after this many seconds")
    _add_wait(p)
    p.set_defaults(func=cmd_sub)

    p = sub.add_parser("pub", help="publish an event as the node you connect to",
                       description="Publish JSON data on TOPIC (a plain topic: no wildcards, not starting with "
                                   "'$') as the node you connect to. Operators only.",
                       epilog="exit codes: 0 published; 1 the node refused it or cannot connect; 2 bad usage")
    _add_url(p)
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("data", metavar="JSON", nargs="?", default="null",
                   help="the event's data, a JSON value (a string needs its quotes: '\"hi\"'); default null")
    _add_wait(p)
    p.set_defaults(func=cmd_pub)

    p = sub.add_parser("nodes", help="the cluster table: every node the connected node knows",
                       description="Print the membership table of the node you connect to: each node, online or "
                                   "not, with its temperature, CPU, memory, services and processes.",
                       epilog="exit codes: 0 printed; 1 cannot connect or the node answered an error")
    _add_url(p)
    p.add_argument("--json", action="store_true", help="print node.cluster's result as JSON")
    _add_wait(p)
    p.set_defaults(func=cmd_nodes)

    p = sub.add_parser("reply", help="answer calls of SERVICE.METHOD with a command (like 'nats reply')",
                       description="Offer SERVICE.METHOD from this process (the node's operator role is needed) "
                                   "and answer each call by running CMD: the call's params go to its stdin as "
                                   "JSON; its stdout is the result (JSON, or else the text as a string). A "
                                   "non-zero exit answers 'internal' with the end of its stderr. CMD is split "
                                   "like a shell would split it but runs without a shell; pass one yourself "
                                   "(--exec \"sh -c '...'\") if you need it. Reconnects when the node restarts; "
                                   "runs until Ctrl-C or SIGTERM.",
                       epilog="exit codes: 0 stopped by a signal; 1 the node refused the registration "
                              "(forbidden, conflict) or cannot connect; 2 bad usage; 130 interrupted")
    _add_url(p)
    p.add_argument("target", metavar="SERVICE.METHOD")
    p.add_argument("--exec", dest="command", required=True, metavar="CMD", help="the command that answers")
    p.add_argument("--read-only", action="store_true",
                   help="the method changes nothing (viewers may call it, the agent calls it without asking); "
                        "default: it mutates")
    p.add_argument("--description", default="", help="shown in node.describe, the dashboard and to the agent")
    p.add_argument("--params-schema", default='{"type": "object"}', metavar="JSON",
                   help="JSON Schema of the params (default %(default)s)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                   help="longest run of CMD (less if the caller's deadline is nearer; default %(default)s)")
    p.add_argument("--max-output", type=int, default=1 << 20, metavar="BYTES",
                   help="most stdout CMD may write (default %(default)s); more answers 'internal'")
    _add_wait(p)
    p.set_defaults(func=cmd_reply)

    p = sub.add_parser("keys", help="node signing keys (Ed25519)")
    ks = p.add_subparsers(dest="keys_cmd", required=True, metavar="ACTION")
    g = ks.add_parser("gen", help="make DIR/ID.key and DIR/ID.pub, and print the config lines that use them",
                      description="Write this node's key pair (DIR/ID.key, mode 0600, and DIR/ID.pub) and print "
                                  "the [security] lines to paste into its config. DIR is also its trust "
                                  "directory: add the other nodes' keys with 'cloudisense trust add'.")
    g.add_argument("id", metavar="ID")
    g.add_argument("--out", help="directory (default: $CLOUDISENSE_STATE_DIR/keys, "
                                 "i.e. ~/.local/state/cloudisense/keys)")
    g.set_defaults(func=cmd_keys_gen)

    p = sub.add_parser("trust", help="the trust store: public keys of the nodes this node accepts")
    ts = p.add_subparsers(dest="trust_cmd", required=True, metavar="ACTION")
    g = ts.add_parser("add", help="trust a node's public key, from its ID.pub file or its /pubkey URL",
                      description="Add a node's Ed25519 public key to a trust store, after showing its "
                                  "fingerprint: from an ID.pub file, or from the node itself (http://HOST:PORT, "
                                  "its /pubkey). Compare the fingerprint with the one 'keys gen' printed on that "
                                  "machine: trusting it is your decision. Exit 0 added (or already trusted), "
                                  "1 not confirmed, 2 refused (another key under that id, fingerprint mismatch, "
                                  "unreadable file or URL, no terminal to confirm on).")
    g.add_argument("source", metavar="FILE|URL")
    g.add_argument("--dir", help="trust store: a directory of ID.pub files or a list file (default: "
                                 "security.trust of --config, else $CLOUDISENSE_STATE_DIR/keys)")
    g.add_argument("--config", help="the node's TOML config: its security.trust is the trust store")
    g.add_argument("--id", help="node id (default: the file name ID.pub, or what the URL answers)")
    g.add_argument("--fingerprint", metavar="SHA256:…", help="add only if the key has this fingerprint (no question)")
    g.add_argument("--yes", action="store_true", help="add without asking (the fingerprint is still printed)")
    g.set_defaults(func=cmd_trust_add)

    p = sub.add_parser("certs", help="TLS certificates for a cluster")
    cs = p.add_subparsers(dest="certs_cmd", required=True, metavar="ACTION")
    g = cs.add_parser("gen", help="make a CA and a certificate per node (plus one for the broker)")
    g.add_argument("--out", required=True, help="directory")
    g.add_argument("--nodes", required=True, help="comma-separated node ids")
    g.add_argument("--hosts", default="localhost,127.0.0.1", help="names/IPs in the certificates "
                                                                  "(default %(default)s)")
    g.add_argument("--force", action="store_true", help="overwrite existing files")
    g.set_defaults(func=cmd_certs_gen)

    p = sub.add_parser("token", help="auth tokens for WebSocket clients and /metrics scrapers")
    tk = p.add_subparsers(dest="token_cmd", required=True, metavar="ACTION")
    g = tk.add_parser("gen", help="print a new random token and the [[auth.tokens]] lines to paste",
                      description="Print a new random token (stdout, first line) and the [[auth.tokens]] TOML "
                                  "lines with its SHA-256 to paste into the node's config (the node stores only "
                                  "the hash). Give the token to the client: hello {token} on the WebSocket, or "
                                  "'Authorization: Bearer TOKEN' for /metrics and /varz.")
    g.add_argument("--role", choices=("viewer", "operator"), default="viewer",
                   help="viewer: read-only calls, subscriptions, /metrics; operator: everything "
                        "(default %(default)s)")
    g.add_argument("--name", default=None, help="a label for the token in logs (default: the role)")
    g.set_defaults(func=cmd_token_gen)

    if not core_only:
        _add_registered(sub)
    _globals_everywhere(parser)
    return parser


def _version() -> str:
    from . import __version__
    return __version__


def _add_globals(p: argparse.ArgumentParser, top: bool = False) -> None:
    """``--log-level`` and ``--log-format``: on the top parser with defaults, on every subcommand
    without (so ``cloudisense node --log-level DEBUG`` works and sets it only when given)."""
    d = argparse.SUPPRESS
    p.add_argument("--log-level", default=None if top else d,
                   help="DEBUG, INFO, WARNING or ERROR (default: the config's log.level, else $CLOUDISENSE_LOG, "
                        "else INFO); before or after the command")
    p.add_argument("--log-format", choices=("text", "json"),
                   default=os.environ.get("CLOUDISENSE_LOG_FORMAT", "text") if top else d,
                   help="text, or json: one JSON object a line (default: $CLOUDISENSE_LOG_FORMAT or text)")


def _globals_everywhere(parser: argparse.ArgumentParser) -> None:
    """Add the global options to every subcommand parser that has no option of those names."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for p in set(action.choices.values()):
                if not {"--log-level", "--log-format"} & set(p._option_string_actions):
                    _add_globals(p)
                _globals_everywhere(p)


#: Entry-point group through which the layers above node/ (agent, TUI, MCP server) add their
#: commands: node/ never imports them (tests/unit/test_layers.py).  pyproject.toml declares ours.
COMMANDS_GROUP = "cloudisense.commands"


def _add_registered(sub: Any) -> None:
    """Commands registered in :data:`COMMANDS_GROUP`; their modules import heavy libraries lazily.

    A layer whose extra is not installed (``ImportError`` while loading it) adds nothing.
    """
    from importlib.metadata import entry_points
    for ep in entry_points(group=COMMANDS_GROUP):
        try:
            add = ep.load()
        except ImportError:
            continue
        add(sub)


# --- node ----------------------------------------------------------------------

def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    o: dict[str, Any] = {}
    if args.id:
        o["id"] = args.id
    if args.broker:
        o.setdefault("broker", {})["url"] = args.broker
    if args.ws:
        o.setdefault("ws", {})["listen"] = args.ws
    if args.tls_cert:
        o.setdefault("ws", {})["tls_cert"] = args.tls_cert
    if args.tls_key:
        o.setdefault("ws", {})["tls_key"] = args.tls_key
    if args.temperature:
        o.setdefault("system", {})["temperature"] = args.temperature
    return o


def cmd_node(args: argparse.Namespace) -> int:
    from ._config import load_settings, redacted
    settings = load_settings(args.config, _overrides(args))
    if args.print_config:
        print(json.dumps(redacted(settings), indent=2))
        return 0
    if settings.log.level and not args.log_level:
        from ._logjson import level_of
        try:
            logging.getLogger().setLevel(level_of(settings.log.level))
        except ValueError as e:
            raise ConfigError(f"log.level: {e}") from None
    return asyncio.run(_run_node(settings, lambda: load_settings(args.config, _overrides(args)),
                                 log_level_pinned=bool(args.log_level)))


async def _run_node(settings: Any, reload_settings: Any = None, *, log_level_pinned: bool = False) -> int:
    from ._logjson import set_node
    from ._node import Node
    set_node(settings.id)
    node = Node(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, node.stop)
    if reload_settings is not None:   # SIGHUP: re-read the config and apply what can be (node/_reload.py)
        loop.add_signal_handler(signal.SIGHUP, _on_sighup, node, reload_settings, log_level_pinned)
    else:
        loop.add_signal_handler(signal.SIGHUP, node.stop)

    def ready(n: Any) -> None:
        broker = n.fed.url if n.fed else "none"
        print(f"cloudisense node {n.id} ready: {n.gateway.url} (dashboard http://{n.gateway.host}:{n.gateway.port}/,"
              f" broker {broker})", flush=True)

    await node.run(on_ready=ready)
    return 0


_reloading: set[asyncio.Task[Any]] = set()


def _on_sighup(node: Any, reload_settings: Any, pinned: bool) -> None:
    log = logging.getLogger("cloudisense.node.reload")
    if _reloading:
        log.warning("SIGHUP while a reload is running: ignored", extra={"reason": "reload_busy"})
        return

    async def go() -> None:
        from ._reload import reload
        log.info("SIGHUP: reloading the configuration", extra={"reason": "reload"})
        try:
            new = await asyncio.to_thread(reload_settings)
        except ConfigError as e:
            log.warning("reload: the configuration does not load, nothing changed: %s", e.message,
                        extra={"reason": "bad_config"})
            return
        try:
            await reload(node, new, log_level_pinned=pinned)
        except Exception:
            log.exception("reload failed", extra={"reason": "reload_failed"})

    t = asyncio.get_running_loop().create_task(go())
    _reloading.add(t)
    t.add_done_callback(_reloading.discard)


# --- client commands ---------------------------------------------------------------

def cmd_call(args: argparse.Namespace) -> int:
    try:
        params = json.loads(args.params)
    except ValueError as e:
        raise ConfigError(f"JSON params are not valid JSON: {e}") from None
    if not isinstance(params, dict):
        raise ConfigError("JSON params must be an object, e.g. '{\"name\": \"logger\"}'")
    service, dot, method = args.target.partition(".")
    if not dot or not service or not method:
        raise ConfigError(f"{args.target!r} is not SERVICE.METHOD (e.g. system.metrics)")

    async def go(c: Any) -> int:
        result = await c.call(args.node, service, method, params, timeout=args.timeout)
        print(json_text(result, indent=2))  # node-supplied: unsafe characters as JSON escapes
        return _broadcast_status(args.node, result)

    return asyncio.run(_connected(args, go))


def _broadcast_status(node: str, result: Any) -> int:
    """A broadcast (``'*'``) whose every target answered an error exits 1, as a failed single call does; a
    partial failure exits 0 (its ``errors`` are in the printed result)."""
    if node != "*" or not isinstance(result, dict):
        return 0
    errors, results = result.get("errors") or {}, result.get("results") or {}
    if errors and not results:
        print(f"cloudisense: every target failed ({len(errors)} node{'s' if len(errors) != 1 else ''})",
              file=sys.stderr)
        return 1
    return 0


def cmd_sub(args: argparse.Namespace) -> int:
    async def go(c: Any) -> int:
        n = 0
        sub = await c.subscribe(args.node, args.topic)
        print(f"# subscribed to {printable(repr(args.topic))} on {printable(args.node or c.node_id)}",
              file=sys.stderr, flush=True)
        try:
            async with asyncio.timeout(args.seconds or None):
                async for ev in sub:
                    print(json_text(ev), flush=True)
                    n += 1
                    if args.count and n >= args.count:
                        break
        except TimeoutError:
            pass
        await sub.close()
        return 0

    return asyncio.run(_connected(args, go))


def _json_arg(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as e:
        raise ConfigError(f"{what} is not valid JSON ({e}); a string needs its quotes: '\"text\"'") from None


def cmd_pub(args: argparse.Namespace) -> int:
    data = _json_arg(args.data, "JSON data")

    async def go(c: Any) -> int:
        await c.publish(args.topic, data)
        return 0

    return int(asyncio.run(_connected(args, go)))


def _cell(v: Any, fmt: str = "{:.0f}") -> str:
    return fmt.format(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else "-"


def cmd_nodes(args: argparse.Namespace) -> int:
    async def go(c: Any) -> int:
        doc = await c.call(None, "node", "cluster")
        if args.json:
            print(json_text(doc, indent=2))
            return 0
        rows = [("NODE", "STATE", "TEMP °C", "CPU %", "MEM %", "SERVICES", "PROCESSES", "VERSION")]
        for n in doc.get("nodes", []):
            m = n.get("metrics") or {}
            temp = _cell(m.get("temperature_c"), "{:.1f}") + ("~" if m.get("simulated") else "")
            procs = n.get("processes") or []
            running = sum(1 for p in procs if isinstance(p, dict) and p.get("state") == "running")
            rows.append((printable(str(n.get("id")), limit=40) + (" *" if n.get("id") == doc.get("self") else ""),
                         "online" if n.get("online") else "OFFLINE", temp, _cell(m.get("cpu_percent")),
                         _cell(m.get("memory_percent")), str(len(n.get("services") or {})),
                         f"{running}/{len(procs)}", printable(str(n.get("version") or "-"), limit=20)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for r in rows:
            print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip())
        print("(* the node you are connected to; ~ simulated temperature)")
        return 0

    return int(asyncio.run(_connected(args, go)))


def cmd_reply(args: argparse.Namespace) -> int:
    import shlex

    from ._reply import CommandReplier
    service, dot, method = args.target.partition(".")
    if not dot or not service or not method:
        raise ConfigError(f"{args.target!r} is not SERVICE.METHOD (e.g. echo.say)")
    try:
        argv = shlex.split(args.command)
    except ValueError as e:
        raise ConfigError(f"--exec: {e}") from None
    if not argv:
        raise ConfigError("--exec needs a command")
    schema = _json_arg(args.params_schema, "--params-schema")
    if not isinstance(schema, dict):
        raise ConfigError("--params-schema must be a JSON object (a JSON Schema)")
    replier = CommandReplier(argv, timeout=args.timeout, max_output=args.max_output)

    async def go(c: Any) -> int:
        await c.register(service, method, replier, params=schema, mutates=not args.read_only,
                         description=args.description)
        print(f"# answering {printable(args.target)} on {printable(c.node_id)} with {printable(args.command)}",
              file=sys.stderr, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            await replier.close()
        return 0

    return int(asyncio.run(_connected(args, go, name=f"reply {args.target}"[:60], reconnect=True)))


def cmd_keys_gen(args: argparse.Namespace) -> int:
    from ._signing import fingerprint, generate_keypair, raw_public_key
    out = Path(args.out) if args.out else state_dir() / "keys"
    key, pub = generate_keypair(args.id, out)
    key, pub = key.resolve(), pub.resolve()
    fp = fingerprint(raw_public_key(pub.read_bytes(), str(pub)))
    print(f"wrote {key} (private: it stays on {args.id}) and {pub}\n"
          f"{args.id} key fingerprint: {fp}\n"
          f"other nodes trust it with: cloudisense trust add http://<this node's ws listen>/pubkey "
          f"(or a copy of {pub.name}), checking that fingerprint\n"
          f"paste into {args.id}'s config:", file=sys.stderr)
    print(f"[security]\nkey = {json.dumps(str(key))}\ntrust = {json.dumps(str(key.parent))}")
    return 0


MAX_PUBKEY_BYTES = 64 * 1024


def _fetch_pubkey(url: str) -> tuple[str, bytes]:
    """(node id, raw key) from a node's ``GET /pubkey`` (a ws:// URL or a bare host:port is mapped to it)."""
    import base64
    import urllib.error
    import urllib.request
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(u.scheme, u.scheme)
    path = "/pubkey" if u.path in ("", "/", "/ws") else u.path
    url = urlunsplit((scheme, u.netloc, path, "", ""))
    try:
        if scheme not in ("http", "https"):
            raise ValueError(f"not an http(s) URL: {url}")
        with urllib.request.urlopen(url, timeout=10) as r:
            data = r.read(MAX_PUBKEY_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ConfigError(f"cannot fetch {url}: {getattr(e, 'reason', e)}") from None
    if len(data) > MAX_PUBKEY_BYTES:
        raise ConfigError(f"{url} answered more than {MAX_PUBKEY_BYTES} bytes: not a node's /pubkey")
    try:
        doc = json.loads(data)
        node_id, raw = doc["id"], base64.b64decode(doc["public_key"], validate=True)
        if not isinstance(node_id, str):
            raise TypeError("id")
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{url} did not answer a node's /pubkey JSON ({{\"id\", \"public_key\"}})") from None
    return node_id, raw


def cmd_trust_add(args: argparse.Namespace) -> int:
    from ._signing import add_trusted, fingerprint, raw_public_key
    from ._text import printable

    src = args.source
    if "://" in src:
        node_id, raw = _fetch_pubkey(src)
        if args.id and args.id != node_id:
            raise ConfigError(f"{src} says it is {printable(node_id, limit=80)!r}, not {args.id!r}")
    else:
        f = Path(src)
        try:
            raw = raw_public_key(f.read_bytes(), str(f))
        except OSError as e:
            raise ConfigError(f"cannot read {f}: {e.strerror or e}") from None
        node_id = args.id or f.name.removesuffix(".pub")
    if args.dir:
        store = Path(args.dir)
    elif args.config:
        from ._config import load_settings
        trust = load_settings(args.config, {}).security.trust
        if not trust:
            raise ConfigError(f"{args.config} sets no security.trust: give --dir")
        store = Path(trust)
    else:
        store = state_dir() / "keys"
    from ._config import node_id_error
    if err := node_id_error(node_id):
        raise ConfigError(printable(err, limit=200))
    fp = fingerprint(raw)
    print(f"{node_id} key fingerprint: {fp}", file=sys.stderr)
    if args.fingerprint:
        if args.fingerprint.strip() != fp:
            raise ConfigError(f"the key of {node_id} has fingerprint {fp}, not {args.fingerprint.strip()}: "
                              "not added")
    elif not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError("no terminal to confirm on: compare the fingerprint with the one 'cloudisense keys "
                              "gen' printed on that node, then run again with --fingerprint FP (or --yes)")
        answer = input(f"trust {node_id} with this key (in {store})? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            print("not added", file=sys.stderr)
            return 1
    path, added = add_trusted(store, node_id, raw)
    print(f"{'added' if added else 'already trusted'}: {node_id} ({fp}) in {path}"
          + ("; restart the node to load it" if added else ""))
    return 0


def cmd_token_gen(args: argparse.Namespace) -> int:
    import hashlib
    import secrets
    token = secrets.token_urlsafe(32)
    name = args.name or args.role
    print(token)
    print(f"# paste into the node's config (it keeps only the hash); the client sends the line above\n"
          f"[[auth.tokens]]\nsha256 = {json.dumps(hashlib.sha256(token.encode()).hexdigest())}\n"
          f"role = {json.dumps(args.role)}\nname = {json.dumps(name)}")
    return 0


def cmd_certs_gen(args: argparse.Namespace) -> int:
    from ._certs import generate_certs
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    files = generate_certs(args.out, nodes, hosts=hosts, force=args.force)
    for name, path in sorted(files.items()):
        print(f"{name}: {path}")
    return 0


def _first_command(argv: list[str]) -> str | None:
    """The first word that is not an option or a global option's value."""
    skip = False
    for a in argv:
        if skip:
            skip = False
        elif a in ("--log-level", "--log-format"):
            skip = True
        elif not a.startswith("-"):
            return a
    return None


def main(argv: list[str] | None = None) -> int:
    from ._logjson import setup
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(core_only=_first_command(argv) in CORE_COMMANDS)
    args = parser.parse_args(argv)
    as_json = args.log_format == "json"
    try:
        setup(args.log_level or os.environ.get("CLOUDISENSE_LOG") or "INFO", args.log_format)
    except ValueError as e:
        _fail(f"cloudisense: {e}", as_json)
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        _fail(f"cloudisense: {printable(e.message)}", as_json)
        return 2
    except FileExistsError as e:  # keys gen / certs gen refuse to overwrite (or to write through a symlink)
        _fail(f"cloudisense: {printable(e)}", as_json)
        return 2
    except CloudisenseError as e:  # the message may come from a remote node: shown escaped
        _fail(f"cloudisense: error {printable(e.code)}: {printable(e.message)}", as_json)
        return 1
    except KeyboardInterrupt:
        return 130


def _fail(text: str, as_json: bool) -> None:
    """The last word on stderr: a line of text, or a JSON log record with ``--log-format json``."""
    if as_json:
        logging.getLogger("cloudisense").error(text.removeprefix("cloudisense: "), extra={"reason": "exit"})
    else:
        print(text, file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
