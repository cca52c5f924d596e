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


async def test_asked_on_the_loop_s_own_thread_the_watch_does_not_wake_the_loop_through_its_self_pipe(
        monkeypatch):
    # paho asks for the watch from the loop's thread for every PUBACK it queues (each QoS 1 message the node
    # receives): a plain call_soon, not call_soon_threadsafe's write to the loop's self-pipe and the extra
    # wake-up and read that follow.
    loop = asyncio.get_running_loop()
    wakes: list[int] = []
    real = loop._write_to_self
    monkeypatch.setattr(loop, "_write_to_self", lambda: (wakes.append(1), real())[1])
    with _paho_on_a_socket() as (paho, a):
        paho.on_socket_register_write(paho, None, a)
        await _turns()
        assert wakes == []
        assert loop.remove_writer(a.fileno())          # and it was watched all the same


async def test_asked_from_another_thread_the_watch_is_added_on_the_loop_all_the_same():
    # paho asks from the thread that connects (aiomqtt connects in an executor): that must stay thread-safe
    loop = asyncio.get_running_loop()
    with _paho_on_a_socket() as (paho, a):
        await asyncio.to_thread(paho.on_socket_register_write, paho, None, a)
        for _ in range(50):
            await asyncio.sleep(0.01)
            if loop.remove_writer(a.fileno()):
                break
        else:
            raise AssertionError("the watch asked for from another thread was never added")
