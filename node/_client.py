"""A client of protocol v1: what scripts, the agent, the TUI and the CLI use.

::

    async with Client("ws://127.0.0.1:8765/ws", reconnect=True) as c:
        info = await c.call("node-b", "system", "metrics")
        async with await c.subscribe("node-b", "metrics/#") as sub:
            async for event in sub:
                ...

With ``reconnect=True`` a lost connection is made again (capped, jittered backoff: :func:`backoff`);
every live :class:`Subscription` is subscribed again and every registration made again before
``on_connect`` runs and calls go out again.  Calls made while disconnected fail at once with
:class:`ConnectionLost`, or wait for the connection up to their timeout (``wait_connected=True``).
Calls in flight when the connection drops fail with ``ConnectionLost``: whether they ran is unknown.
``await c.connect(retry=True)`` makes the first connection through the same loop: retryable failures
are tried again until it is up; a fatal one (bad token, wrong role, bad URL) raises.  ``state``
(:class:`ClientState`) says where the link is, and ``on_state(client)`` hears every change of it and
every failed attempt (``error``, ``retry_in``): what a UI shows as "reconnecting… retry in 2 s".

A client may offer methods (``register``, operators only): the node sends their calls to it::

    async def say(p: SayParams) -> dict:
        return {"text": p.text}

    await c.register("echo", "say", say, params=SayParams, mutates=False, description="echo the text")
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import logging
import random
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator, Protocol, TypeVar, cast, overload

from pydantic import BaseModel, ValidationError
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from ._config import DEFAULT_URL
from ._errors import (CallTimeout, CloudisenseError, ErrorCode, Forbidden, NodeOffline, TooLarge, Unauthenticated,
                      from_wire, to_wire)
from ._json import dumps, loads
from ._topics import matches

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
Hook = Callable[["Client"], Any]
Handler = Callable[[Any], Awaitable[Any]]
StateHook = Callable[["Client"], None]


class ClientState(StrEnum):
    """Where a client's link is (``Client.state``)."""

    CLOSED = "closed"              # not connected: before connect(), after close(), or lost without reconnect
    CONNECTING = "connecting"      # the first connection is being made (connect(retry=True): and retried)
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"  # lost; being made again (reconnect=True)
    FAILED = "failed"              # a fatal error (bad token, wrong role, bad URL): no retry; ``error`` says which


class Connection(Protocol):
    """What the client needs of a WebSocket connection: websockets' ``ClientConnection`` is one; a ``dial``
    function handed to :class:`Client` may return another (an in-memory one in tests)."""

    @property
    def close_code(self) -> int | None: ...

    async def send(self, message: str) -> None: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


Dial = Callable[[str], Awaitable[Connection]]


#: The largest frame this client reads; node.cluster's default max_bytes stays under it.
MAX_FRAME = 2 ** 24


class ConnectionLost(NodeOffline):
    """The WebSocket to the node closed (or is not open)."""


class RpcError(CloudisenseError):
    """Raise it in a registered handler to answer the call with that error: ``RpcError("invalid_params", "…")``."""

    def __init__(self, code: ErrorCode | str, message: str) -> None:
        try:
            code = ErrorCode(code)
        except ValueError:
            code = ErrorCode.INTERNAL
        super().__init__(message, code=code)


def backoff(initial: float = 0.25, cap: float = 5.0, factor: float = 2.0,
            rnd: Callable[[], float] = random.random) -> Iterator[float]:
    """Delays before reconnect attempts: ``initial`` doubling up to ``cap``, each jittered to 50–100 %."""
    delay = initial
    while True:
        yield round(delay * (0.5 + 0.5 * rnd()), 3)
        delay = min(cap, delay * factor)


def _fatal(exc: BaseException) -> bool:
    """Errors another attempt can't fix (bad token, wrong role, bad URL)."""
    if isinstance(exc, (Unauthenticated, Forbidden)):
        return True
    return isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, OSError)   # e.g. InvalidURI


async def _cancelled(task: asyncio.Task[None] | None) -> None:
    """Cancel ``task`` (unless it is the running one) and wait for it to end."""
    if task is not None and task is not asyncio.current_task():
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


class Subscription:
    """Events of one subscription; iterate it, ``close()`` it (or use ``async with``).

    It lives across reconnects of a ``reconnect=True`` client; otherwise it ends (iteration stops,
    ``get`` raises ConnectionLost) when the connection does.
    """

    def __init__(self, client: "Client", node: str | None, topic: str, maxsize: int = 10_000) -> None:
        self.client, self.node, self.topic = client, node, topic
        self.queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(maxsize)
        self.closed = False

    def _put(self, event: dict[str, Any] | None) -> None:
        if self.queue.full():
            self.queue.get_nowait()
        self.queue.put_nowait(event)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> dict[str, Any]:
        event = await self.queue.get()
        if event is None:
            raise StopAsyncIteration
        return event

    async def get(self, timeout: float | None = None) -> dict[str, Any]:
        async with asyncio.timeout(timeout):
            event = await self.queue.get()
        if event is None:
            raise ConnectionLost("subscription ended: connection closed")
        return event

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        c = self.client
        key = (c._norm(self.node), self.topic)
        c._subs.get(key, set()).discard(self)
        if not c._subs.get(key):
            c._subs.pop(key, None)
            if c.connected:
                try:
                    await c._request({"type": "unsubscribe", "node": self.node, "topic": self.topic})
                except CloudisenseError:
                    pass
        self._put(None)

    async def __aenter__(self) -> "Subscription":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


@dataclass
class Registration:
    """A method this client offers; ``await reg.unregister()`` withdraws it."""

    client: "Client"
    service: str
    method: str
    handler: Handler = field(repr=False)
    params: type[BaseModel] | None
    schema: dict[str, Any]
    mutates: bool
    description: str

    def frame(self) -> dict[str, Any]:
        return {"type": "register", "service": self.service, "method": self.method, "params": self.schema,
                "mutates": self.mutates, "description": self.description}

    async def unregister(self) -> None:
        c = self.client
        if c._regs.get((self.service, self.method)) is not self:
            return
        del c._regs[(self.service, self.method)]
        if c.connected:
            try:
                await c._request({"type": "unregister", "service": self.service, "method": self.method})
            except CloudisenseError:
                pass


class Client:
    """One connection to a node.  ``reconnect=True``: it comes back by itself (see the module doc).

    ``on_connect(client)`` runs after every (re)connection, once subscriptions and registrations are
    made again (those the node refused, e.g. a subscription to a node it has not heard of yet since it
    restarted, are retried in the background meanwhile: ``remaking`` names them); ``on_disconnect(client)``
    when a connection is lost.  Either may be a coroutine function.  ``on_state(client)``, a plain
    function, runs at every change of ``state`` and after every failed (re)connection attempt.

    ``dial(url)``: opens the connection (default: a WebSocket to ``url``); tests hand in a transport.
    """

    def __init__(self, url: str = DEFAULT_URL, token: str | None = None, name: str = "script",
                 open_timeout: float = 5.0, default_timeout: float = 10.0, *, reconnect: bool = False,
                 wait_connected: bool = False, on_connect: Hook | None = None, on_disconnect: Hook | None = None,
                 backoff_initial: float = 0.25, backoff_cap: float = 5.0, on_state: StateHook | None = None,
                 dial: Dial | None = None) -> None:
        self.url, self.token, self.name = url, token, name
        self.open_timeout = open_timeout
        self.default_timeout = default_timeout
        self.reconnect = reconnect
        self.wait_connected = wait_connected
        self.on_connect = on_connect
        self.on_disconnect = on_disconnect
        self.on_state = on_state
        self.dial = dial
        self.backoff_initial, self.backoff_cap = backoff_initial, backoff_cap
        self.ws: Connection | None = None
        self.node_id: str = ""
        self.role: str = ""
        self._ids = itertools.count(1)
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._subs: dict[tuple[str, str], set[Subscription]] = {}
        self._regs: dict[tuple[str, str], Registration] = {}
        self._reader: asyncio.Task[None] | None = None
        self._redial: asyncio.Task[None] | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self._up = asyncio.Event()       # connected, and subscriptions/registrations made again
        self.closed = True               # no connection now (closed by the user, or lost)
        self._shut = False               # close() was called: never reconnect
        self.dropped = 0
        self.reconnects = 0
        #: subscriptions ((node, topic)) and registrations ((service, method)) the node refused on the last
        #: reconnect, being retried in the background
        self.remaking: set[tuple[str, str]] = set()
        self.last_error = ""
        #: the exception of the last failed attempt (the fatal one, once ``state`` is ``failed``)
        self.error: BaseException | None = None
        #: seconds until the next attempt, after a failed one (None otherwise)
        self.retry_in: float | None = None
        self._state = ClientState.CLOSED

    async def __aenter__(self) -> "Client":
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return not self.closed and self.ws is not None

    @property
    def state(self) -> ClientState:
        return self._state

    def _set_state(self, state: ClientState, *, attempt: bool = False) -> None:
        """Move to ``state``; tell ``on_state`` if it changed (or, ``attempt``, an attempt failed)."""
        if state is self._state and not attempt:
            return
        self._state = state
        if self.on_state is not None:
            try:
                self.on_state(self)
            except Exception:  # noqa: BLE001 - a failing hook must not take the connection down
                log.exception("client hook %s failed", getattr(self.on_state, "__name__", self.on_state))

    async def connect(self, *, retry: bool = False) -> None:
        """Open the connection (raises ConnectionLost if the node can't be reached, Unauthenticated…).

        ``retry=True``: a failure another attempt may fix (the node is not up yet) is retried with the
        backoff, as a lost connection is, until the connection is up; a fatal one raises (``state`` is
        then ``failed``).  Cancelling the wait stops the attempts.
        """
        if not self.closed or self._redial is not None:
            raise RuntimeError("client is already connected")
        self._shut = False
        self._set_state(ClientState.CONNECTING)
        if retry:
            self._redial = dialing = asyncio.create_task(self._dial_loop(first=True),
                                                         name=f"client[{self.url}].connect")
            try:
                await dialing
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise                     # we were cancelled (and so were the attempts)
                raise ConnectionLost("client closed while connecting") from None   # close() stopped them
            if self._state is ClientState.FAILED and self.error is not None:
                raise self.error
            if not self.connected:
                raise ConnectionLost("client closed while connecting")
            return
        try:
            await self._open()
        except BaseException as e:
            self.error, self.last_error = e, str(e)
            self._set_state(ClientState.FAILED if isinstance(e, Exception) and _fatal(e) else ClientState.CLOSED)
            raise
        self._up.set()
        self._set_state(ClientState.CONNECTED)
        await self._hook(self.on_connect)

    async def _open(self) -> None:
        try:
            if self.dial is not None:
                self.ws = await self.dial(self.url)
            else:
                self.ws = await connect(self.url, open_timeout=self.open_timeout, max_size=MAX_FRAME,
                                        compression=None, ping_interval=20)
        except (OSError, TimeoutError) as e:
            raise ConnectionLost(f"cannot connect to {self.url}: {e}") from None
        self.closed = False
        self._reader = asyncio.create_task(self._read(self.ws), name=f"client[{self.url}].reader")
        try:
            welcome = await self._request({"type": "hello", "token": self.token, "client": self.name},
                                          timeout=self.open_timeout, during_open=True)
            self.node_id = welcome["node"]
            self.role = welcome["role"]
            for key in list(self._subs):
                await self._remake(key, self._sub_frame(key), functools.partial(self._subs.__contains__, key))
            for rkey, reg in list(self._regs.items()):
                await self._remake(rkey, reg.frame(), functools.partial(self._holds, rkey, reg))
        except BaseException:
            await self._drop_connection()
            raise

    @staticmethod
    def _sub_frame(key: tuple[str, str]) -> dict[str, Any]:
        return {"type": "subscribe", "node": None if key[0] == "." else key[0], "topic": key[1]}

    def _holds(self, key: tuple[str, str], reg: Registration) -> bool:
        """Whether ``reg`` is still this client's registration of ``key`` (not withdrawn or replaced)."""
        return self._regs.get(key) is reg

    async def _remake(self, key: tuple[str, str], frame: dict[str, Any], wanted: Callable[[], bool]) -> None:
        """Subscribe or register again on a new connection.  A refusal (the remote node is not known yet
        or offline; the name is still held by our previous, not yet closed, connection) does not hold the
        connection back: it is tried again in the background, with backoff, while it is still wanted."""
        try:
            await self._request(dict(frame), during_open=True)
        except ConnectionLost:
            raise
        except CloudisenseError as e:
            log.warning("client %s: %s %s again refused (%s: %s); retrying in the background", self.name,
                        frame["type"], "/".join(key), e.code, e.message)
            self.remaking.add(key)
            t = asyncio.get_running_loop().create_task(self._remake_later(key, frame, wanted, self.ws))
            self._handlers.add(t)
            t.add_done_callback(self._handlers.discard)

    async def _remake_later(self, key: tuple[str, str], frame: dict[str, Any], wanted: Callable[[], bool],
                            ws: Any) -> None:
        try:
            for delay in backoff(self.backoff_initial, self.backoff_cap):
                await asyncio.sleep(delay)
                if self.ws is not ws or not wanted():
                    return   # the connection it was for went (the next one makes it again), or it was dropped
                try:
                    await self._request(dict(frame), during_open=True)
                    return
                except CloudisenseError:
                    continue
        finally:
            self.remaking.discard(key)

    async def _drop_connection(self) -> None:
        self.closed = True
        self._up.clear()
        ws, self.ws = self.ws, None
        if ws is not None:
            await ws.close()
        reader, self._reader = self._reader, None
        await _cancelled(reader)
        self._fail_waiting("connection closed")

    async def close(self) -> None:
        self._shut = True
        redial, self._redial = self._redial, None
        await _cancelled(redial)
        await self._drop_connection()
        for t in list(self._handlers):
            t.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        self._end_subscriptions()
        if self._state is not ClientState.FAILED:
            self.retry_in = None
            self._set_state(ClientState.CLOSED)

    def _fail_waiting(self, why: str, too_large: bool = False) -> None:
        for fut in self._waiting.values():
            if not fut.done():
                fut.set_exception(TooLarge(why) if too_large else ConnectionLost(why))
        self._waiting.clear()

    def _end_subscriptions(self) -> None:
        for subs in self._subs.values():
            for s in subs:
                s._put(None)
        self._subs.clear()
        self._regs.clear()

    async def _hook(self, hook: Hook | None) -> None:
        if hook is None:
            return
        try:
            r = hook(self)
            if inspect.isawaitable(r):
                await r
        except Exception:  # noqa: BLE001 - a failing hook must not take the connection down
            log.exception("client hook %s failed", getattr(hook, "__name__", hook))

    @staticmethod
    def _norm(node: str | None) -> str:
        return node or "."

    async def _read(self, ws: Connection) -> None:
        try:
            async for raw in ws:
                msg = loads(raw)
                kind = msg.get("type")
                if kind == "event":
                    self._on_event(msg)
                elif kind == "invoke":
                    self._on_invoke(msg)
                elif kind == "dropped":
                    self.dropped += msg.get("count", 0)
                else:
                    fut = self._waiting.pop(str(msg.get("id")), None)
                    if fut is not None and not fut.done():
                        fut.set_result(msg)
        except ConnectionClosed as e:
            if (e.sent and e.sent.code == 1009) or (e.rcvd and e.rcvd.code == 1009):
                # a frame over our limit (ours) or over the node's: the reply is what was too large
                self.closed = True
                self._fail_waiting(f"a frame was larger than the limit ({MAX_FRAME / 2**20:g} MiB here); the "
                               f"connection was closed: ask for less (node.cluster: limit and cursor, fields)",
                               too_large=True)
        finally:
            if self.ws is ws:
                self._lost(f"connection to the node closed ({ws.close_code})")

    def _lost(self, why: str) -> None:
        """The connection went (not by close()): fail the calls in flight, reconnect or end."""
        self.closed = True
        self._up.clear()
        self.ws = None
        self._reader = None
        self._fail_waiting(why)
        self.last_error = why
        if self.reconnect and not self._shut:
            if self._redial is None:
                self._redial = asyncio.create_task(self._dial_loop(first=False), name=f"client[{self.url}].reconnect")
            self._set_state(ClientState.RECONNECTING)
        else:
            self._end_subscriptions()
            self._set_state(ClientState.CLOSED)
        if self.on_disconnect is not None:
            t = asyncio.get_running_loop().create_task(self._hook(self.on_disconnect))
            self._handlers.add(t)
            t.add_done_callback(self._handlers.discard)

    async def _dial_loop(self, *, first: bool) -> None:
        """The reconnect loop (the only one): attempts, with backoff between them, until the connection
        is up, an error is fatal or close() is called.  ``first``: the first connection (connect(retry=True)),
        tried at once; a lost one is tried again after the first delay."""
        delays = backoff(self.backoff_initial, self.backoff_cap)
        try:
            if not first:
                await asyncio.sleep(next(delays))
            while not self._shut:
                try:
                    await self._open()
                except Exception as e:  # noqa: BLE001 - classified: fatal, or tried again
                    self.error, self.last_error = e, str(e) or type(e).__name__
                    if _fatal(e):
                        log.error("client %s: giving up connecting to %s: %s", self.name, self.url, e)
                        self.retry_in = None
                        self._end_subscriptions()
                        self._set_state(ClientState.FAILED)
                        return
                    self.retry_in = next(delays)
                    self._set_state(self._state, attempt=True)
                    await asyncio.sleep(self.retry_in)
                    continue
                self.retry_in = None
                if not first:
                    self.reconnects += 1
                self._up.set()
                self._redial = None
                self._set_state(ClientState.CONNECTED)
                await self._hook(self.on_connect)
                return
        finally:
            if self._redial is asyncio.current_task():
                self._redial = None

    def _on_event(self, msg: dict[str, Any]) -> None:
        node, topic = msg.get("node"), msg.get("topic", "")
        cluster = topic.startswith("$cluster/")
        for (snode, pattern), subs in self._subs.items():
            if snode == ".":
                # $cluster events name the node they are about, not the one we are connected to
                hit = (cluster or node == self.node_id) and matches(pattern, topic)
            else:
                # a remote subscription also hears that its node went offline / came back
                hit = node == snode and (cluster or matches(pattern, topic))
            if hit:
                for s in subs:
                    s._put(msg)

    async def wait_until_connected(self, timeout: float | None = None) -> None:
        """Wait for the connection (and its subscriptions) to be up; CallTimeout after ``timeout``."""
        if self._up.is_set():
            return
        if self._shut or (self.closed and self._redial is None):
            raise ConnectionLost("not connected")
        try:
            async with asyncio.timeout(timeout):
                await self._up.wait()
        except TimeoutError:
            raise ConnectionLost(f"not connected to {self.url} within {timeout:g} s") from None

    async def _request(self, frame: dict[str, Any], timeout: float | None = None, *, during_open: bool = False,
                       wait: bool | None = None) -> dict[str, Any]:
        t = timeout if timeout is not None else self.default_timeout + 5
        loop = asyncio.get_running_loop()
        start = loop.time()
        if not during_open and not self._up.is_set():
            if not (self.wait_connected if wait is None else wait):
                raise ConnectionLost(f"not connected to {self.url}"
                                     + (" (reconnecting)" if self._redial is not None else ""))
            await self.wait_until_connected(t)
        ws = self.ws
        if ws is None:
            raise ConnectionLost("not connected")
        rid = str(next(self._ids))
        frame["id"] = rid
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._waiting[rid] = fut
        try:
            await ws.send(dumps({k: v for k, v in frame.items() if v is not None}))
            async with asyncio.timeout(max(0.001, t - (loop.time() - start))):
                msg = await fut
        except ConnectionClosed:
            raise ConnectionLost("connection to the node closed") from None
        except TimeoutError:
            raise CallTimeout(f"no reply from the node to {frame['type']} within the deadline") from None
        finally:
            self._waiting.pop(rid, None)
        if msg.get("type") == "error":
            raise from_wire(msg.get("error") or {}, node=msg.get("node"), request_id=rid)
        return msg

    @overload
    async def call(self, node: str | None, service: str, method: str, params: dict[str, Any] | None = ...,
                   timeout: float | None = ..., *, result: None = ..., wait_connected: bool | None = ...) -> Any: ...

    @overload
    async def call(self, node: str | None, service: str, method: str, params: dict[str, Any] | None = ...,
                   timeout: float | None = ..., *, result: type[M], wait_connected: bool | None = ...) -> M: ...

    async def call(self, node: str | None, service: str, method: str, params: dict[str, Any] | None = None,
                   timeout: float | None = None, *, result: type[M] | None = None,
                   wait_connected: bool | None = None) -> Any:
        """Call ``service.method`` on ``node`` (None or "." is the connected node).

        ``result``: a pydantic model to validate the result into (e.g. ``system.metrics`` → ``Metrics``).
        ``wait_connected``: while disconnected, wait for the connection up to the timeout instead of
        failing at once (default: the client's ``wait_connected``).
        """
        t = timeout or self.default_timeout
        msg = await self._request({"type": "call", "node": None if node in (None, ".") else node,
                                   "service": service, "method": method, "params": params or {},
                                   "timeout": t}, timeout=t + 5, wait=wait_connected)
        value = msg.get("result")
        return result.model_validate(value) if result is not None else value

    async def broadcast(self, service: str, method: str, params: dict[str, Any] | None = None,
                        timeout: float | None = None) -> dict[str, Any]:
        r: dict[str, Any] = await self.call("*", service, method, params, timeout)
        return r

    async def subscribe(self, node: str | None, topic: str) -> Subscription:
        sub = Subscription(self, node, topic)
        key = (self._norm(node), topic)
        first = key not in self._subs
        self._subs.setdefault(key, set()).add(sub)
        if first:
            try:
                await self._request({"type": "subscribe", "node": None if node in (None, ".") else node,
                                     "topic": topic})
            except BaseException:
                self._subs.pop(key, None)
                raise
        return sub

    async def publish(self, topic: str, data: Any = None) -> None:
        await self._request({"type": "publish", "topic": topic, "data": data})

    # --- methods this client offers -----------------------------------------------------------

    async def register(self, service: str, method: str, handler: Handler, *,
                       params: type[BaseModel] | dict[str, Any] | None = None, mutates: bool = True,
                       description: str = "") -> Registration:
        """Offer ``service.method`` (operators only): ``handler(params)`` answers its calls.

        ``params``: a pydantic model (calls are validated into it, its JSON Schema is published) or a
        JSON Schema dict (the handler gets the dict).  ``mutates`` (default true): whether a call may
        change state (viewers may not call it; the agent asks approval).  The handler's return value
        (a pydantic model, or anything JSON) is the result; raising :class:`RpcError` answers that
        error.  Registrations are made again after a reconnect.
        """
        if (service, method) in self._regs:
            raise ValueError(f"{service}.{method} is registered already by this client")
        model = params if isinstance(params, type) and issubclass(params, BaseModel) else None
        schema = (model.model_json_schema() if model is not None
                  else dict(cast("dict[str, Any]", params) or {"type": "object"}))
        reg = Registration(self, service, method, handler, model, schema, mutates, description)
        await self._request(reg.frame())
        self._regs[(service, method)] = reg
        return reg

    def _on_invoke(self, msg: dict[str, Any]) -> None:
        inv = msg.get("invocation")
        reg = self._regs.get((str(msg.get("service")), str(msg.get("method"))))
        if not isinstance(inv, str):
            return
        t = asyncio.get_running_loop().create_task(self._answer(inv, reg, msg), name=f"invoke {inv}")
        self._handlers.add(t)
        t.add_done_callback(self._handlers.discard)

    async def _answer(self, inv: str, reg: Registration | None, msg: dict[str, Any]) -> None:
        frame: dict[str, Any] = {"type": "yield", "invocation": inv}
        try:
            if reg is None:
                raise RpcError(ErrorCode.UNKNOWN_METHOD, f"this client no longer offers {msg.get('service')}."
                                                         f"{msg.get('method')}")
            params = msg.get("params") or {}
            if reg.params is not None:
                try:
                    params = reg.params.model_validate(params)
                except ValidationError as e:
                    err = e.errors()[0]
                    where = ".".join(str(p) for p in err["loc"]) or "params"
                    raise RpcError(ErrorCode.INVALID_PARAMS, f"{where}: {err['msg']}") from None
            timeout = msg.get("timeout")
            async with asyncio.timeout(float(timeout) if isinstance(timeout, (int, float)) else None):
                value = await reg.handler(params)
            frame["result"] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
        except CloudisenseError as e:
            frame["error"] = e.to_wire()
        except TimeoutError:
            frame["error"] = {"code": "timeout", "message": "the handler did not finish in time"}
        except Exception as e:  # noqa: BLE001 - a failing handler answers internal; logged here
            log.exception("handler of %s.%s failed", msg.get("service"), msg.get("method"))
            frame["error"] = to_wire(e)
        ws = self.ws
        if ws is None:
            return
        try:
            await ws.send(dumps(frame))
        except (ConnectionClosed, TypeError, ValueError) as e:
            if isinstance(e, ConnectionClosed):
                return
            log.error("result of %s.%s is not JSON: %s", msg.get("service"), msg.get("method"), e)
            await ws.send(dumps({"type": "yield", "invocation": inv,
                                 "error": {"code": "internal", "message": "the handler's result is not JSON"}}))
