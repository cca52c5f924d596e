"""The ``cloudisense`` command line."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from typing import Any

from ._errors import CloudisenseError, ConfigError

DEFAULT_URL = "ws://127.0.0.1:8765/ws"


def _url_default() -> str:
    return os.environ.get("CLOUDISENSE_URL", DEFAULT_URL)


def _add_url(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=_url_default(),
                   help="node to connect to (default: $CLOUDISENSE_URL or %(default)s)")
    p.add_argument("--token", default=os.environ.get("CLOUDISENSE_TOKEN"),
                   help="auth token when the node requires one (default: $CLOUDISENSE_TOKEN)")


CORE_COMMANDS = {"node", "call", "sub", "keys", "certs"}


def build_parser(core_only: bool = False) -> argparse.ArgumentParser:
    """The CLI; ``core_only`` skips the agent/TUI/MCP commands (a node need not load them)."""
    parser = argparse.ArgumentParser(
        prog="cloudisense",
        description="CloudiSENSE: a federated messaging node (WebSocket RPC and pub/sub over any MQTT broker) "
                    "with an LLM operations agent on top.")
    parser.add_argument("--log-level", default=os.environ.get("CLOUDISENSE_LOG", "INFO"),
                        help="DEBUG, INFO, WARNING or ERROR (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("node", help="run a node (a plain broker, no agent)",
                       description="Run a node: WebSocket server (RPC, pub/sub, dashboard at /) and federation "
                                   "over MQTT. Settings come from --config, CLOUDISENSE_* variables and flags "
                                   "(flags win).")
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--id", help="node id (letters, digits, - _ .); default: host name")
    p.add_argument("--broker", help="'embedded' (default: start one here), mqtt://HOST:PORT, mqtts://HOST:PORT "
                                    "or 'none' (no federation)")
    p.add_argument("--ws", help="HOST:PORT to serve WebSocket clients and the dashboard on (default 127.0.0.1:8765)")
    p.add_argument("--tls-cert", help="certificate for wss:// (with --tls-key)")
    p.add_argument("--tls-key", help="private key for wss://")
    p.add_argument("--temperature", help="auto, fixed:41.5 or sim:45")
    p.add_argument("--print-config", action="store_true", help="print the effective config as JSON (secrets shown as ***) and exit")
    p.set_defaults(func=cmd_node)

    p = sub.add_parser("call", help="call a method on a node (one-off RPC)",
                       description="Call SERVICE.METHOD on NODE ('.' = the node you connect to, '*' = every node).")
    _add_url(p)
    p.add_argument("node", metavar="NODE")
    p.add_argument("target", metavar="SERVICE.METHOD")
    p.add_argument("params", metavar="JSON", nargs="?", default="{}", help="params object (default {})")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds (default %(default)s)")
    p.set_defaults(func=cmd_call)

    p = sub.add_parser("sub", help="watch events of a topic on a node",
                       description="Subscribe to TOPIC (MQTT filter, + and # allowed) and print each event as "
                                   "one JSON line.")
    _add_url(p)
    p.add_argument("topic", metavar="TOPIC")
    p.add_argument("--node", default=None, help="node whose events to watch (default: the one you connect to)")
    p.add_argument("--count", type=int, default=0, help="exit after N events (default: run until Ctrl-C)")
    p.add_argument("--seconds", type=float, default=0, help="exit after this many seconds")
    p.set_defaults(func=cmd_sub)

    p = sub.add_parser("keys", help="node signing keys (Ed25519)")
    ks = p.add_subparsers(dest="keys_cmd", required=True, metavar="ACTION")
    g = ks.add_parser("gen", help="make DIR/ID.key and DIR/ID.pub")
    g.add_argument("id", metavar="ID")
    g.add_argument("--out", required=True, help="directory")
    g.set_defaults(func=cmd_keys_gen)

    p = sub.add_parser("certs", help="TLS certificates for a cluster")
    cs = p.add_subparsers(dest="certs_cmd", required=True, metavar="ACTION")
    g = cs.add_parser("gen", help="make a CA and a certificate per node (plus one for the broker)")
    g.add_argument("--out", required=True, help="directory")
    g.add_argument("--nodes", required=True, help="comma-separated node ids")
    g.add_argument("--hosts", default="localhost,127.0.0.1", help="names/IPs in the certificates "
                                                                  "(default %(default)s)")
    g.add_argument("--force", action="store_true", help="overwrite existing files")
    g.set_defaults(func=cmd_certs_gen)

    p = sub.add_parser("demo", help="embedded broker + 3 nodes with a supervised logger, then the TUI",
                       description="Start an embedded broker and three nodes (simulated temperatures, a supervised "
                                   "'logger' each) on this machine, then open the TUI (or just wait with --no-tui).")
    p.add_argument("--no-tui", action="store_true", help="print how to connect and wait for Ctrl-C")
    p.add_argument("--port", type=int, default=8765, help="first WebSocket port (default %(default)s)")
    p.add_argument("--broker-port", type=int, default=1884, help="embedded broker port (default %(default)s)")
    p.add_argument("--model", default=os.environ.get("CLOUDISENSE_MODEL", "offline"))
    p.set_defaults(func=cmd_demo)

    if not core_only:
        _add_optional(sub, "cloudisense.agent.cli")
        _add_optional(sub, "cloudisense.tui.cli")
        _add_optional(sub, "cloudisense.tools.mcp_cli")
    return parser


def _add_optional(sub: Any, module: str) -> None:
    """Commands of the agent/TUI/MCP layers; their modules import heavy libraries lazily."""
    try:
        mod = __import__(module, fromlist=["add_commands"])
    except ImportError:
        return
    add = getattr(mod, "add_commands", None)
    if add is not None:
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
    return asyncio.run(_run_node(settings))


async def _run_node(settings: Any) -> int:
    from ._node import Node
    node = Node(settings)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, node.stop)

    def ready(n: Any) -> None:
        broker = n.fed.url if n.fed else "none"
        print(f"cloudisense node {n.id} ready: {n.gateway.url} (dashboard http://{n.gateway.host}:{n.gateway.port}/,"
              f" broker {broker})", flush=True)

    await node.run(on_ready=ready)
    return 0


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

    async def go() -> int:
        from ._client import Client
        async with Client(args.url, token=args.token, name="cli") as c:
            result = await c.call(args.node, service, method, params, timeout=args.timeout)
        print(json.dumps(result, indent=2, ensure_ascii=False))
        return 0

    return asyncio.run(go())


def cmd_sub(args: argparse.Namespace) -> int:
    async def go() -> int:
        from ._client import Client
        async with Client(args.url, token=args.token, name="cli") as c:
            n = 0
            sub = await c.subscribe(args.node, args.topic)
            print(f"# subscribed to {args.topic!r} on {args.node or c.node_id}", file=sys.stderr, flush=True)
            try:
                async with asyncio.timeout(args.seconds or None):
                    async for ev in sub:
                        print(json.dumps(ev, ensure_ascii=False), flush=True)
                        n += 1
                        if args.count and n >= args.count:
                            break
            except TimeoutError:
                pass
            await sub.close()
        return 0

    return asyncio.run(go())


def cmd_keys_gen(args: argparse.Namespace) -> int:
    from ._signing import generate_keypair
    key, pub = generate_keypair(args.id, args.out)
    print(f"wrote {key} (private, keep it on {args.id}) and {pub} (copy it into every node's trust directory)")
    return 0


def cmd_certs_gen(args: argparse.Namespace) -> int:
    from ._certs import generate_certs
    nodes = [n.strip() for n in args.nodes.split(",") if n.strip()]
    hosts = [h.strip() for h in args.hosts.split(",") if h.strip()]
    files = generate_certs(args.out, nodes, hosts=hosts, force=args.force)
    for name, path in sorted(files.items()):
        print(f"{name}: {path}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .demo.cluster import run_demo
    return asyncio.run(run_demo(args))


def main(argv: list[str] | None = None) -> int:
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    parser = build_parser(core_only=bool(words) and words[0] in CORE_COMMANDS)
    args = parser.parse_args(argv)
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("websockets").setLevel(logging.WARNING)
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"cloudisense: {e.message}", file=sys.stderr)
        return 2
    except CloudisenseError as e:
        print(f"cloudisense: error {e.code}: {e.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
