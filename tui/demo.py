"""``cloudisense demo``: an embedded broker and three nodes on this machine, then the TUI.

The demo works in its own directory (``cloudisense-demo-XXXX`` under the temp dir): the nodes' configs and
logs, and the state directory (audit log, request history, pending plans) the console uses, so a demo never
writes to the operator's real audit log.  The directory is kept when the demo stops (its path is printed)
so the logs can be read afterwards.  The TUI needs a terminal on stdin and stdout; piped (``| tee``), the demo
says so and runs as ``--no-tui``.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from cloudisense.node._broker import EmbeddedBroker
from cloudisense.node._errors import ConfigError
from cloudisense.node._supervisor import die_with_parent

NODES = [("node-a", 61.0), ("node-b", 38.0), ("node-c", 52.0)]


def demo_keys(state: Path) -> Path:
    """Key pairs of the demo's nodes in ``STATE/demo/keys`` (made on the first run, reused after) and
    their public keys in ``STATE/demo/trust``; returns the demo directory."""
    from cloudisense.node._signing import generate_keypair, raw_public_key
    demo = state / "demo"
    keys, trust = demo / "keys", demo / "trust"
    for node_id, _ in NODES:
        key, pub = keys / f"{node_id}.key", keys / f"{node_id}.pub"
        if not key.exists() and not pub.exists():
            generate_keypair(node_id, keys)
        elif not (key.exists() and pub.exists()):
            raise ConfigError(f"{keys} has only one of {key.name} and {pub.name}: remove it to make a new pair")
    trust.mkdir(parents=True, exist_ok=True)
    for node_id, _ in NODES:
        pem = (keys / f"{node_id}.pub").read_bytes()
        raw_public_key(pem, str(keys / f"{node_id}.pub"))   # a broken file fails here, named
        (trust / f"{node_id}.pub").write_bytes(pem)
    return demo


def _toml_str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _config(node_id: str, temp: float, ws_port: int, broker_url: str, prefix: str, demo: Path) -> str:
    return f'''id = "{node_id}"
[security]
key = {_toml_str(str(demo / "keys" / f"{node_id}.key"))}
trust = {_toml_str(str(demo / "trust"))}
[ws]
listen = "127.0.0.1:{ws_port}"
[broker]
url = "{broker_url}"
prefix = "{prefix}"
keepalive = 5
[system]
temperature = "sim:{temp}"
metrics_interval = 2.0

[[processes]]
name = "logger"
command = ["python", "-m", "cloudisense.node.demo.logger", "--name", "logger-{node_id}"]
'''


async def _wait_ready(proc: asyncio.subprocess.Process, node_id: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    async with asyncio.timeout(timeout):
        while True:
            line = await proc.stdout.readline()
            if not line:
                raise ConfigError(f"demo node {node_id} exited during start (exit code {await proc.wait()})")
            text = line.decode(errors="replace")
            if " ready: " in text:
                return text.split(" ready: ", 1)[1].split()[0]


async def run_demo(args: Any) -> int:
    from cloudisense.node.cli import state_dir
    demo = demo_keys(state_dir())   # before anything runs that would need stopping
    print(f"signed federation: keys and trust store in {demo}", file=sys.stderr, flush=True)
    broker = EmbeddedBroker(f"127.0.0.1:{args.broker_port}")
    print(f"starting the embedded MQTT broker on 127.0.0.1:{args.broker_port} …", file=sys.stderr, flush=True)
    try:
        await broker.start()
    except ConfigError as e:
        raise ConfigError(f"{e.message} (the demo takes --broker-port PORT)") from None
    prefix = f"cloudisense-demo/{uuid.uuid4().hex[:6]}"
    procs: list[asyncio.subprocess.Process] = []
    work = Path(tempfile.mkdtemp(prefix="cloudisense-demo-"))
    state = work / "state"
    state.mkdir()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, stop.set)
    try:
        urls = []
        for i, (node_id, temp) in enumerate(NODES):
            cfg = work / f"{node_id}.toml"
            cfg.write_text(_config(node_id, temp, args.port + i, broker.url, prefix, demo))
            log = open(work / f"{node_id}.log", "wb")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "cloudisense.node.cli", "node", "--config", str(cfg),
                stdout=subprocess.PIPE, stderr=log, start_new_session=True, preexec_fn=die_with_parent())
            log.close()
            procs.append(proc)
            print(f"starting {node_id} (simulated {temp:g} °C) …", file=sys.stderr, flush=True)
        for proc, (node_id, _) in zip(procs, NODES, strict=True):
            urls.append(await _wait_ready(proc, node_id))
        print("\nCloudiSENSE demo cluster is up (temperatures are simulated):")
        for (node_id, _temp), url in zip(NODES, urls, strict=True):
            print(f"  {node_id:7} {url}   dashboard {url.replace('ws://', 'http://').removesuffix('/ws')}/")
        print(f"\n  cloudisense call --url {urls[0]} node-b system.metrics")
        print(f"  cloudisense ask --url {urls[0]} \"restart logger on coolest node\"")
        print(f"  node logs: {work}   (kept after the demo stops)")
        print(f"  audit and state: {state}   (for the CLI and MCP: export CLOUDISENSE_STATE_DIR={state} "
              f"CLOUDISENSE_AUDIT={state / 'audit.jsonl'})\n", flush=True)
        tui = not args.no_tui
        if tui and not (sys.stdin.isatty() and sys.stdout.isatty()):
            which = "stdout" if sys.stdin.isatty() else "stdin"
            print(f"{which} is not a terminal (piped?): running without the TUI, as with --no-tui. "
                  f"Open it in a terminal with: cloudisense tui --url {urls[0]} --audit {state / 'audit.jsonl'}",
                  flush=True)
            tui = False
        if tui:
            try:
                from .app import run_tui_async
            except ImportError:   # the tui extra (Textual) is not installed: run headless
                pass
            else:
                await run_tui_async(urls[0], args.model, audit=state / "audit.jsonl", state_dir=state)
                return 0
        print("Ctrl-C stops everything.", flush=True)
        await stop.wait()
        return 0
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
        await broker.stop()
        print(f"demo stopped; nothing left running. Logs and audit kept in {work}", file=sys.stderr)
