"""``write_first`` owns paho's "watch this socket for writing" hook: the watch is added a loop turn after paho
asks, and by then the connection may be gone (a broker killed mid-publish).  CI once saw asyncio log an ERROR
with a traceback (``add_writer`` on a closed fd) in a node's log during a broker crash; the watch is now added
only for the socket paho still has open."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from typing import Any

import aiomqtt
import pytest

from cloudisense.node._federation import write_first

pytestmark = pytest.mark.timeout(10)


async def _turns(n: int = 3) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


@contextlib.contextmanager
def _paho_on_a_socket() -> Iterator[tuple[Any, socket.socket]]:
    """A write_first-wrapped paho client whose socket is one end of a socketpair (closed afterwards)."""
    client = aiomqtt.Client("127.0.0.1", 1)
    write_first(client)
    paho = client._client
    a, b = socket.socketpair()
    try:
        paho._sock = a
        yield paho, a
    finally:
        paho._sock = None
        a.close()
        b.close()


async def test_a_socket_closed_before_the_watch_is_added_logs_nothing_and_is_not_watched():
    loop = asyncio.get_running_loop()
    errors: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx))
    try:
        with _paho_on_a_socket() as (paho, a):
            fd = a.fileno()
            paho.on_socket_register_write(paho, None, a)   # paho asks; the watch comes a loop turn later
            paho._sock = None
            a.close()                                      # the connection dies first
            await _turns()
            assert errors == []
            assert not loop.remove_writer(fd)
    finally:
        loop.set_exception_handler(None)


async def test_an_open_socket_is_watched_and_the_watch_writes_what_paho_queued():
    loop = asyncio.get_running_loop()
    with _paho_on_a_socket() as (paho, a):
        paho.on_socket_register_write(paho, None, a)
        await _turns()
        assert loop.remove_writer(a.fileno())          # it was watched
