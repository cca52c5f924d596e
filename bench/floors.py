"""Transport floors: the leanest programs doing the same hops with the same libraries.

Each runs as its own process (``python bench/floors.py KIND ...``), prints
``READY <port>`` on stdout when it serves, and stops on SIGTERM.

- ``ws-echo``: websockets server echoing every frame (P1 floor).
- ``relay`` + ``responder``: a hand-written relay WS → MQTT → responder → MQTT → WS,
  correlation in the JSON body (MQTT 3.1.1), the same QoS as the node (1), the same
  client options as the node (TCP_NODELAY, max_inflight 1000), one MQTT message per
  request (P2/P3 floor; also the idle-footprint floor of P6).
- ``nats-responder``: nats-py request/reply responder (P2/P3 reference).
- ``gateway``: one process subscribed over MQTT that fans every message out to its
  websockets clients with ``websockets.broadcast`` (P4 floor, P7 floor).
- ``publisher``: publishes paced events to MQTT on request over a control websocket (P4).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import sys
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import aiomqtt  # noqa: E402
from paho.mqtt.client import MQTTv311  # noqa: E402
from websockets.asyncio.server import broadcast, serve  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

from _common import paced  # noqa: E402

_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def mqtt_client(url: str, name: str) -> aiomqtt.Client:
    u = urlparse(url)
    return aiomqtt.Client(
        u.hostname or "127.0.0.1", u.port or 1883,
        identifier=f"bench-{name}-{random.getrandbits(32):08x}", protocol=MQTTv311, clean_session=True,
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        max_inflight_messages=1000, max_queued_incoming_messages=0)


def ready(port: int | str) -> None:
    print(f"READY {port}", flush=True)


def ws_port(server: Any) -> int:
    return next(iter(server.sockets)).getsockname()[1]


async def until_term() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    await stop.wait()


# --- P1 ---------------------------------------------------------------------------

async def ws_echo(args: argparse.Namespace) -> None:
    async def handler(ws: Any) -> None:
        try:
            async for msg in ws:
                await ws.send(msg)
        except ConnectionClosed:
            pass

    async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
        ready(ws_port(server))
        await until_term()


# --- P2 / P3 --------------------------------------------------------------------

async def responder(args: argparse.Namespace) -> None:
    tasks: set[asyncio.Task] = set()
    async with mqtt_client(args.broker, "responder") as client:
        await client.subscribe(f"{args.prefix}/responder/inbox", qos=args.qos)
        ready(0)
        term = asyncio.create_task(until_term())
        rx = asyncio.create_task(_responder_rx(client, args.qos, tasks))
        await term
        rx.cancel()


async def _responder_rx(client: aiomqtt.Client, qos: int, tasks: set[asyncio.Task]) -> None:
    async for msg in client.messages:
        req = json.loads(msg.payload)
        body = _dumps({"re": req["id"], "result": req["params"]}).encode()
        t = asyncio.create_task(client.publish(req["reply_to"], body, qos=qos))
        tasks.add(t)
        t.add_done_callback(tasks.discard)


async def relay(args: argparse.Namespace) -> None:
    inbox = f"{args.prefix}/relay/inbox"
    target = f"{args.prefix}/responder/inbox"
    pending: dict[int, tuple[Any, Any]] = {}
    tasks: set[asyncio.Task] = set()
    counter = iter(range(1, 1 << 62))

    async with mqtt_client(args.broker, "relay") as client:
        await client.subscribe(inbox, qos=args.qos)

        async def handler(ws: Any) -> None:
            try:
                async for raw in ws:
                    frame = json.loads(raw)
                    corr = next(counter)
                    pending[corr] = (ws, frame.get("id"))
                    body = _dumps({"id": corr, "reply_to": inbox, "params": frame.get("params")}).encode()
                    t = asyncio.create_task(client.publish(target, body, qos=args.qos))
                    tasks.add(t)
                    t.add_done_callback(tasks.discard)
            except ConnectionClosed:
                pass

        async def rx() -> None:
            async for msg in client.messages:
                rep = json.loads(msg.payload)
                entry = pending.pop(rep["re"], None)
                if entry is None:
                    continue
                ws, rid = entry
                try:
                    await ws.send(_dumps({"type": "result", "id": rid, "result": rep["result"]}))
                except ConnectionClosed:
                    pass

        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            rx_task = asyncio.create_task(rx())
            ready(ws_port(server))
            await until_term()
            rx_task.cancel()


async def nats_responder(args: argparse.Namespace) -> None:
    import nats
    nc = await nats.connect(args.nats)

    async def cb(msg: Any) -> None:
        req = json.loads(msg.data)
        await msg.respond(_dumps({"result": req.get("params")}).encode())

    await nc.subscribe(args.subject, cb=cb)
    await nc.flush()
    ready(0)
    await until_term()
    await nc.drain()


# --- P4 / P7 ----------------------------------------------------------------------

async def gateway(args: argparse.Namespace) -> None:
    clients: set[Any] = set()

    async def handler(ws: Any) -> None:
        try:
            async for raw in ws:
                frame = json.loads(raw)
                clients.add(ws)
                await ws.send(_dumps({"type": "subscribed", "id": frame.get("id")}))
        except ConnectionClosed:
            pass
        finally:
            clients.discard(ws)

    async with mqtt_client(args.broker, "gateway") as client:
        await client.subscribe(args.topic, qos=0)

        async def rx() -> None:
            async for msg in client.messages:
                broadcast(clients, msg.payload.decode())

        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            rx_task = asyncio.create_task(rx())
            ready(ws_port(server))
            await until_term()
            rx_task.cancel()


async def publisher(args: argparse.Namespace) -> None:
    from _common import event_data

    async with mqtt_client(args.broker, "publisher") as client:
        async def handler(ws: Any) -> None:
            async for raw in ws:
                req = json.loads(raw)
                topic, step, size = req["topic"], req.get("step", 0), req.get("size", 140)

                def one(i: int) -> Any:
                    return client.publish(topic, _dumps(event_data(step, i, size)).encode(), qos=0)

                await paced(req["rate"], req["count"], one)
                await ws.send(_dumps({"sent": req["count"]}))

        async with serve(handler, "127.0.0.1", 0, compression=None, max_size=None) as server:
            ready(ws_port(server))
            await until_term()


KINDS = {"ws-echo": ws_echo, "relay": relay, "responder": responder, "nats-responder": nats_responder,
         "gateway": gateway, "publisher": publisher}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=sorted(KINDS))
    p.add_argument("--broker", default="mqtt://127.0.0.1:1883")
    p.add_argument("--prefix", default="bench/floor")
    p.add_argument("--qos", type=int, default=1)
    p.add_argument("--topic", default="bench/floor/fan")
    p.add_argument("--nats", default="nats://127.0.0.1:4222")
    p.add_argument("--subject", default="bench.floor.echo")
    args = p.parse_args()
    try:
        asyncio.run(KINDS[args.kind](args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
