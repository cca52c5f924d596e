"""``cloudisense reply SERVICE.METHOD --exec CMD``: a command answers the calls of a client-offered method.

Each call runs ``CMD`` (no shell) with the params as JSON on its stdin; its stdout, bounded in bytes,
is the result (parsed as JSON when it is JSON, else the text as a string).  A run is bounded in
time (the caller's deadline or ``--timeout``, whichever is nearer): a command still running then is
killed with its process group.  A non-zero exit answers ``internal`` with the end of its stderr.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from typing import Any

from ._client import RpcError
from ._errors import ErrorCode
from ._text import printable

#: How much of a failed command's stderr goes into the error message.
STDERR_TAIL = 400


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    """Read ``stream`` to its end (so the writer never blocks) keeping at most ``limit`` bytes."""
    buf = bytearray()
    over = False
    while chunk := await stream.read(65536):
        room = limit - len(buf)
        if len(chunk) > room:
            over = True
            chunk = chunk[:max(0, room)]
        buf += chunk
    return bytes(buf), over


class CommandReplier:
    """The handler of ``cloudisense reply``: ``await replier(params)`` runs the command once."""

    def __init__(self, argv: list[str], *, timeout: float = 10.0, max_output: int = 1 << 20) -> None:
        self.argv = argv
        self.timeout = timeout
        self.max_output = max_output
        self._procs: set[asyncio.subprocess.Process] = set()

    async def __call__(self, params: Any) -> Any:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise RpcError(ErrorCode.INTERNAL, f"cannot run {self.argv[0]!r}: {e.strerror or e}") from None
        self._procs.add(proc)
        try:
            assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
            async with asyncio.timeout(self.timeout):
                try:
                    proc.stdin.write(json.dumps(params).encode())
                    await proc.stdin.drain()
                    proc.stdin.close()
                except (BrokenPipeError, ConnectionResetError):
                    pass   # it did not read its params: its answer still counts
                (out, over), (err, _) = await asyncio.gather(_read_capped(proc.stdout, self.max_output),
                                                             _read_capped(proc.stderr, 64 * 1024))
                code = await proc.wait()
        except TimeoutError:
            raise RpcError(ErrorCode.TIMEOUT, f"{self.argv[0]} did not finish within {self.timeout:g} s") from None
        finally:
            if proc.returncode is None:
                self._kill(proc)
                await asyncio.shield(proc.wait())   # SIGKILL: at once; reaped, not left a zombie
            self._procs.discard(proc)
        if code != 0:
            tail = printable(err.decode("utf-8", "replace").strip()[-STDERR_TAIL:])
            raise RpcError(ErrorCode.INTERNAL, f"{self.argv[0]} exited with {code}" + (f": {tail}" if tail else ""))
        if over:
            raise RpcError(ErrorCode.INTERNAL, f"{self.argv[0]} wrote more than {self.max_output} bytes")
        text = out.decode("utf-8", "replace")
        try:
            return json.loads(text)
        except ValueError:
            return text.rstrip("\n")

    @staticmethod
    def _kill(proc: asyncio.subprocess.Process) -> None:
        if proc.returncode is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    async def close(self) -> None:
        """Kill the commands still running."""
        for proc in list(self._procs):
            self._kill(proc)
            try:
                await proc.wait()
            except ProcessLookupError:
                pass
