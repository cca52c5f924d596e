"""The ``cloudisense`` command line.

Exit codes of the core commands: 0 done; 1 an error from the node (its
code and message are printed); 2 bad usage or configuration, an unsafe
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
from typing import Any

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


CORE_COMMANDS = {"node", "call", "sub", "keys", "trust", "certs"}


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

    p = sub.add_parser("demo", help="embedded broker + 3 nodes with a supervised logger, then the TUI",
                       description="Start an embedded broker and three nodes (simulated temperatures, a supervised "
                                   "'logger' each) on this machine, then open the TUI (or just wait with --no-tui).")
    p.add_argument("--no-tui", action="store_true", help="print how to connect and wait for Ctrl-C")
    p.add_argument("--port", type=int, default=8765, help="first WebSocket port (default %(default)s)")
    p.add_argument("--broker-port", type=int, default=1884, help="embedded broker port (default %(default)s)")
    p.add_argument("--model", default=os.environ.get("CLOUDISENSE_MODEL", "offline"))
    p.set_defaults(func=cmd_demo)

    if not core_only:
        _add_registered(sub)
    return parser


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
        print(json_text(result, indent=2))  # node-supplied: unsafe characters as JSON escapes
        return 0

    return asyncio.run(go())


def cmd_sub(args: argparse.Namespace) -> int:
    async def go() -> int:
        from ._client import Client
        async with Client(args.url, token=args.token, name="cli") as c:
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

    return asyncio.run(go())


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
        print(f"cloudisense: {printable(e.message)}", file=sys.stderr)
        return 2
    except FileExistsError as e:  # keys gen / certs gen refuse to overwrite (or to write through a symlink)
        print(f"cloudisense: {printable(e)}", file=sys.stderr)
        return 2
    except CloudisenseError as e:  # the message may come from a remote node: shown escaped
        print(f"cloudisense: error {printable(e.code)}: {printable(e.message)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
