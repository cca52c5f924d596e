"""The WebSocket gateway: HTTP for the dashboard, ``/ws`` for protocol v1.

Thin I/O: the handshake is checked first (``Host``, ``Origin``, the connection cap,
addresses refused for failed authentications: :mod:`._edge` decides), and every
HTTP response gets the security headers.  A :class:`ClientSession` per connection
parses frames at the edge, enforces auth and limits, and hands requests to the
node; replies and events go out through a per-client writer task.  Everything
queued for one client shares one budget (``ws.send_buffer_bytes``, counted in
characters of JSON text): events beyond it are dropped oldest first (a ``dropped``
frame tells the client; still dropping after ``ws.slow_close_seconds`` closes it
with 1008), and a client whose replies don't fit is closed with 1008 at once,
its queues released.  A call counts against ``ws.max_pending_calls`` until its
reply is handed to the socket.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import logging
import mimetypes
import time
from collections import deque
from importlib import resources
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, broadcast, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import OPEN

from ._config import Settings, parse_hostport
from ._audit import NO_TOKENS, CallAudit, token_name
from ._edge import HTTP_REASONS as _REASONS
from ._edge import SECURITY_HEADERS, AuthFailures, EdgePolicy, is_loopback
from ._edge import http_response as _response
from ._errors import (BadRequest, CloudisenseError, ConfigError, Forbidden, Overloaded, TooLarge,
                      Unauthenticated, to_wire)
from ._frames import (MAX_DEPTH, PROTOCOL_VERSION, Call, Hello, Publish, Register, Subscribe, Unregister,
                      Unsubscribe, Yield, lone_surrogate, parse_frame, peek_id, scan_id, too_deep)
from ._json import dumps
from ._metrics import OPS_PATHS
from ._metrics import http as ops_http
from ._ratelog import RateLimitedLog
from ._text import printable
from ._topics import topic_error

if TYPE_CHECKING:
    from ._ports import Router

log = logging.getLogger(__name__)
rlog = RateLimitedLog(log)      # warnings caused by outside input
_ids = itertools.count(1)

CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008     # slow consumer, hello timeout, or failed hellos
CLOSE_TRY_AGAIN = 1013  # the connection cap was reached while this client was in its handshake
MAX_BAD_HELLOS = 3
#: Frames written in one burst (one socket write) at most; beyond it they wait in the queue.
BURST_MAX = 256 * 1024
#: How long a closed slow consumer gets to take its close frame before the TCP connection is dropped.
EVICT_GRACE = 5.0
#: While events stream to a client (the previous write of events was less than this long ago),
#: further events are gathered for this long and written together: one socket write (and one
#: wake-up of the client) for several events instead of one each.  A first event after a pause
#: still goes out at once.  Replies are never held back (they join a pending batch, in order).
EVENT_COALESCE = 0.005


def error_frame(rid: Any, exc: BaseException, node: str | None = None) -> str:
    frame: dict[str, Any] = {"type": "error", "id": rid, "error": to_wire(exc)}
    if node is not None:
        frame["node"] = node
    return dumps(frame)


class ClientSession:
    """One WebSocket client."""

    def __init__(self, gw: "Gateway", ws: ServerConnection) -> None:
        self.gw = gw
        self.node = gw.node
        self.ws = ws
        self.num = next(_ids)
        self.name = f"client-{self.num}"
        self.addr = str((ws.remote_address or ("?",))[0])
        cfg = gw.settings.ws
        self.cfg = cfg
        self.authed = not gw.tokens
        self.role = "operator" if not gw.tokens else None
        self.bad_hellos = 0
        self.offering = False    # it registered a method (once true, stays true)
        # queued output: (text, counts_as_call) replies, never dropped; events, dropped oldest first
        self.replies: deque[tuple[str, bool]] = deque()
        self.events: deque[str] = deque()
        self.queued = 0          # characters of JSON text in both queues (the send budget)
        self.budget = cfg.send_buffer_bytes
        self.wake = asyncio.Event()
        self.dropped_pending = 0
        self.dropped_total = 0
        self.dropping_since: float | None = None
        self.closed = False
        self.in_flight = 0       # calls started whose reply is not yet handed to the socket
        self.tokens = float(cfg.rate_burst)
        self.last_refill = time.monotonic()
        self._burst: list[bytes] | None = None   # frames written after a direct write in this loop iteration
        self._burst_size = 0
        self._last_event_write = -1.0            # loop time of the last socket write that carried events
        self._loop = asyncio.get_running_loop()
        # with tokens, a client has ws.hello_timeout to authenticate (without, every client is an operator
        # from the start, hello is optional, and ws.max_clients bounds them)
        self._hello_timer: asyncio.TimerHandle | None = (
            self._loop.call_later(cfg.hello_timeout, self._hello_late) if gw.tokens else None)

    def __hash__(self) -> int:
        return self.num

    def __repr__(self) -> str:
        return f"<{self.name} {self.role}>"

    # --- output ---------------------------------------------------------------

    def _write_now(self, text: str, event: bool = False) -> bool:
        """Write ``text`` at once if nothing is queued and the socket took everything sent so far.

        The common case (a client that keeps up) then costs no task switch; otherwise the
        writer task sends it in order, with backpressure.  Order holds: with both queues
        empty, everything queued before was already handed to the transport.  Frames that
        follow in the same loop iteration (a batch of replies or events) join a burst that
        goes out in one socket write at the start of the next iteration; a burst that
        reaches BURST_MAX goes out at once and what follows waits in the queue.
        """
        burst = self._burst
        if burst is None and (self.replies or self.events):
            return False
        try:
            data = text.encode()
        except UnicodeEncodeError:
            self._end_burst()   # what came before goes first; the writer's send raises it, as before
            return False
        if burst is not None:
            size = self._burst_size + len(data)
            if size > BURST_MAX:
                self._end_burst()
                return False
            burst.append(data)
            self._burst_size = size
            return True
        ws = self.ws
        if ws.protocol.state is not OPEN or ws.transport.get_write_buffer_size():
            return False
        if event:
            now = self._loop.time()
            if now - self._last_event_write < EVENT_COALESCE:   # streaming: gather for a moment
                self._burst = [data]
                self._burst_size = len(data)
                self._loop.call_later(EVENT_COALESCE, self._end_burst, True)
                return True
            self._last_event_write = now
        broadcast((ws,), data, text=True)
        self._burst = []
        self._burst_size = 0
        self._loop.call_soon(self._end_burst)
        return True

    def _end_burst(self, events: bool = False) -> None:
        """Send the frames gathered since a direct write (or for EVENT_COALESCE), in one socket write."""
        burst, self._burst = self._burst, None
        if not burst or self.ws.protocol.state is not OPEN:
            return
        if events:
            self._last_event_write = self._loop.time()
        protocol = self.ws.protocol
        for data in burst:
            protocol.send_text(data)
        # the protocol is open: what it has to send is frames (no end-of-stream marker)
        self.ws.transport.write(b"".join(protocol.data_to_send()))

    def send(self, text: str, call: bool = False) -> None:
        """Queue a reply (never dropped: a client whose replies don't fit its budget is closed).
        ``call``: the reply ends a call, which stops counting as pending once it is written."""
        if self.closed:
            if call:
                self.in_flight -= 1
            return
        if self._write_now(text):
            if call:
                self.in_flight -= 1
            return
        self.queued += len(text)
        if self.queued > self.budget:
            self._drop_events(0)
            if self.queued > self.budget:
                if call:
                    self.in_flight -= 1
                self._evict(f"{self.queued} characters of replies unread")
                return
        self.replies.append((text, call))
        self.wake.set()

    def _drop_events(self, need: int) -> int:
        """Drop the oldest queued events until ``need`` more characters fit the budget; how many went."""
        events, n = self.events, 0
        while events and self.queued + need > self.budget:
            self.queued -= len(events.popleft())
            n += 1
        return n

    def deliver_event(self, text: str) -> None:
        """Queue an event; the oldest are dropped when the client is not keeping up."""
        if self.closed or self._write_now(text, event=True):
            return
        size = len(text)
        n = 0
        if len(self.events) >= self.cfg.send_queue:
            self.queued -= len(self.events.popleft())
            n = 1
        if self.queued + size > self.budget:
            n += self._drop_events(size)
            if self.queued + size > self.budget:   # replies fill the budget: this one goes too
                n += 1
                size = -1
        if n:
            self.dropped_pending += n
            self.dropped_total += n
            self.node.count_dropped(n)
            now = time.monotonic()
            if self.dropping_since is None:
                self.dropping_since = now
            elif now - self.dropping_since > self.cfg.slow_close_seconds:
                self._evict(f"{self.dropped_total} events dropped")
                return
        if size >= 0:
            self.queued += size
            self.events.append(text)
            self.wake.set()

    def _evict(self, why: str) -> None:
        """Close a client that does not read: release what is queued for it, send 1008, and drop the
        connection if it doesn't take the close frame within EVICT_GRACE."""
        if self.closed:
            return
        self.closed = True
        rlog.warning("slow_consumer", "%s (%s): closing slow consumer: %s", self.name, self.addr, why)
        self.replies.clear()
        self.events.clear()
        self.queued = 0
        self._burst = None
        self.gw.spawn(self._close_or_abort(CLOSE_POLICY, "slow consumer"))

    async def _close_or_abort(self, code: int, reason: str) -> None:
        try:
            async with asyncio.timeout(EVICT_GRACE):
                await self.ws.close(code, reason)
        except TimeoutError:
            self.ws.transport.abort()

    def _hello_late(self) -> None:
        self._hello_timer = None
        if not self.closed:
            rlog.log(logging.INFO, "hello_timeout", "%s (%s): no valid hello within %g s; closing", self.name,
                     self.addr, self.cfg.hello_timeout)
            self.gw.spawn(self._close_or_abort(CLOSE_POLICY, "hello timeout"))

    def _hello_done(self) -> None:
        if self._hello_timer is not None:
            self._hello_timer.cancel()
            self._hello_timer = None

    async def writer(self) -> None:
        ws = self.ws
        while True:
            await self.wake.wait()
            self.wake.clear()
            while (self.replies or self.events) and not self.closed:
                if self.replies:
                    text, call = self.replies.popleft()
                    await ws.send(text)
                    self.queued -= len(text)
                    if call:
                        self.in_flight -= 1
                    continue
                text = self.events.popleft()
                await ws.send(text)
                self.queued -= len(text)
                if not self.events:
                    self.dropping_since = None
                    if self.dropped_pending:
                        n, self.dropped_pending = self.dropped_pending, 0
                        await ws.send(dumps({"type": "dropped", "count": n, "total": self.dropped_total}))

    # --- input ----------------------------------------------------------------

    def _rate_ok(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.cfg.rate_burst, self.tokens + (now - self.last_refill) * self.cfg.rate_limit)
        self.last_refill = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def on_frame(self, raw: str | bytes) -> None:
        node = self.node
        try:
            if len(raw) > self.cfg.max_frame_bytes:
                why = f"frame of {len(raw)} bytes is over the limit of {self.cfg.max_frame_bytes}"
                if self.offering and node.offers.too_large(self, scan_id(raw, "invocation"), why):
                    return   # a yield too large: its caller gets too_large
                raise TooLarge(why, request_id=peek_id(raw))
            if not self._rate_ok():
                raise Overloaded(f"rate limit of {self.cfg.rate_limit:g} frames/s exceeded", request_id=peek_id(raw))
            if isinstance(raw, bytes):  # binary frames carry the same JSON, in UTF-8
                try:
                    raw = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise BadRequest(f"binary frame is not UTF-8 JSON ({e.reason} at byte {e.start})") from None
            if len(raw) > self.cfg.max_keys:
                self._check_keys(raw)
            if lone_surrogate(raw):
                raise BadRequest("frame is not valid Unicode: a \\u escape encodes a lone surrogate",
                                 request_id=peek_id(raw))
            frame = parse_frame(raw, max_params_keys=self.cfg.max_params_keys)
            if raw.count("[") + raw.count("{") > MAX_DEPTH and too_deep(
                    getattr(frame, "params", None) or getattr(frame, "data", None) or getattr(frame, "result", None),
                    2):
                raise BadRequest(f"frame nests JSON deeper than {MAX_DEPTH} levels",
                                 request_id=getattr(frame, "id", None))
        except CloudisenseError as e:
            self.send(error_frame(e.request_id, e))
            return
        try:
            if isinstance(frame, Hello):
                self.on_hello(frame)
                return
            if not self.authed:
                raise Unauthenticated("send a hello with a valid token first")
            if isinstance(frame, Call):
                self.on_call(frame)
            elif isinstance(frame, Subscribe):
                self.gw.spawn(self.on_subscribe(frame))
            elif isinstance(frame, Unsubscribe):
                self.on_unsubscribe(frame)
            elif isinstance(frame, Publish):
                self.on_publish(frame)
            elif isinstance(frame, Yield):
                node.offers.answer(self, frame.invocation, frame.result,
                                   frame.error.model_dump() if frame.error is not None else None)
            elif isinstance(frame, Register):
                self.on_register(frame)
            elif isinstance(frame, Unregister):
                if not node.withdraw(self, frame.service, frame.method):
                    raise BadRequest(f"this client does not offer {frame.service}.{frame.method}")
                self.send(dumps({"type": "unregistered", "id": frame.id}))
        except CloudisenseError as e:
            self.send(error_frame(getattr(frame, "id", None), e, getattr(frame, "node", None)))
        except Exception as e:  # a bug: log it, answer internal, keep the connection
            log.exception("%s: handling %s failed", self.name, type(frame).__name__)
            self.send(error_frame(getattr(frame, "id", None), e))
        del node

    def _check_keys(self, raw: str) -> None:
        """Refuse, before parsing, a frame that may hold more than ``ws.max_keys`` object keys: every
        key needs a ':' and two '"', so the fewer of those bounds the keys (C-speed counts)."""
        limit = self.cfg.max_keys
        if raw.count(":") > limit and (quotes := raw.count('"')) > 2 * limit:
            raise TooLarge(f"frame may hold up to {min(raw.count(':'), quotes // 2)} object keys; "
                           f"the limit is {limit} (ws.max_keys)", request_id=peek_id(raw))

    def on_hello(self, f: Hello) -> None:
        if self.gw.tokens:
            wait = self.gw.auth_failures.blocked_for(self.addr)
            if wait:
                self.send(error_frame(f.id, Unauthenticated(
                    f"too many failed authentications from {self.addr}; try again in {wait:.0f} s")))
                self.gw.spawn(self._close_later(CLOSE_POLICY, "authentication failed"))
                return
            role = self.gw.check_token(f.token)
            if role is None:
                self.gw.auth_failed(self.addr)
                self.bad_hellos += 1
                if self.bad_hellos >= MAX_BAD_HELLOS:
                    self.send(error_frame(f.id, Unauthenticated("invalid token; closing")))
                    self.gw.spawn(self._close_later(CLOSE_POLICY, "authentication failed"))
                    return
                raise Unauthenticated("invalid token" if f.token else "this node requires a token in hello")
            self.role, self.authed = role, True
            self.token_name = token_name(self.gw.settings.auth.tokens, f.token)
            assert f.token is not None   # check_token accepted it
            self.token_sha = hashlib.sha256(f.token.encode()).hexdigest()   # SIGHUP revokes by it (_reload)
        self._hello_done()
        if f.client:
            self.name = f"{printable(f.client, limit=64)}-{self.num}"
        self.send(dumps({"type": "welcome", "id": f.id, "node": self.node.id, "role": self.role,
                          "protocol": PROTOCOL_VERSION, "auth": "token" if self.gw.tokens else "none",
                          "exposed": not is_loopback(self.gw.host)}))

    async def _close_later(self, code: int, reason: str) -> None:
        await asyncio.sleep(0)  # let the error frame be queued first
        while self.replies:
            await asyncio.sleep(0.01)
        await self.ws.close(code, reason)

    def on_call(self, f: Call) -> None:
        node = self.node
        if self.in_flight >= self.cfg.max_pending_calls:
            raise Overloaded(f"{self.in_flight} calls pending; the limit is {self.cfg.max_pending_calls}")
        target = node.resolve_target(f.node)
        mutates = node.method_mutates(target, f.service, f.method)
        if self.role != "operator" and mutates:
            why = f"{f.service}.{f.method} changes state; role {self.role!r} may not call it"
            self.gw.audit.refused(self.who(), target, f.service, f.method, "forbidden", why)
            raise Forbidden(why)
        audited = self._audit_call(target, f) if mutates else None
        rid = f.id
        reply_node = target if target != "*" else "*"
        self.in_flight += 1

        def done(result: Any, error: dict[str, Any] | None) -> None:
            if audited is not None:
                audited(result, error)
            if error is not None:
                self.send(dumps({"type": "error", "id": rid, "node": reply_node, "error": error}), True)
            else:
                self.send(dumps({"type": "result", "id": rid, "node": reply_node, "result": result}), True)

        try:
            node.start_call(target, f.service, f.method, f.params, f.timeout, role=self.role or "viewer",
                            owner=self, done=done, reply=f.reply)
        except CloudisenseError as e:
            if audited is not None:
                audited(None, e.to_wire())
            raise

    def who(self) -> dict[str, str]:
        """The audit log's "who" of this client (node/_audit.py)."""
        return {"role": self.role or "", "name": getattr(self, "token_name", "") if self.gw.tokens else NO_TOKENS,
                "client": self.name, "addr": self.addr}

    def _audit_call(self, target: str, f: Call) -> Any:
        try:
            return self.gw.audit.call(self.who(), target, f.service, f.method, f.params)
        except (OSError, ConfigError) as e:
            log.error("%s: %s.%s not made: audit log %s cannot be written: %s", self.name, f.service, f.method,
                      self.gw.audit.path, e)
            raise CloudisenseError(f"audit log of node {self.node.id} cannot be written; the call was not "
                                   "made") from None

    async def on_subscribe(self, f: Subscribe) -> None:
        try:
            if err := topic_error(f.topic, wildcards=True):
                raise BadRequest(err)
            if self.node.subscription_count(self) >= self.cfg.max_subscriptions:
                raise Overloaded(f"subscription limit of {self.cfg.max_subscriptions} reached")
            if f.node == "*":
                raise BadRequest("subscribe to one node at a time ('*' is for calls)")
            await self.node.subscribe(self, self.node.resolve_target(f.node), f.topic)
            self.send(dumps({"type": "subscribed", "id": f.id}))
        except CloudisenseError as e:
            self.send(error_frame(f.id, e, f.node))
        except Exception as e:
            log.exception("%s: subscribe failed", self.name)
            self.send(error_frame(f.id, e))

    def on_unsubscribe(self, f: Unsubscribe) -> None:
        target = self.node.resolve_target(f.node)
        if not self.node.unsubscribe(self, target, f.topic):
            raise BadRequest(f"no subscription to {f.topic!r} on {target}")
        self.send(dumps({"type": "unsubscribed", "id": f.id}))

    def on_publish(self, f: Publish) -> None:
        if self.role != "operator":
            raise Forbidden(f"role {self.role!r} may not publish")
        if err := topic_error(f.topic, wildcards=False):
            raise BadRequest(err)
        if f.topic.startswith("$"):
            raise BadRequest(f"topics starting with '$' are reserved for the node ({f.topic!r})")
        self.node.publish(f.topic, f.data)
        self.send(dumps({"type": "published", "id": f.id}))

    def on_register(self, f: Register) -> None:
        if self.role != "operator":
            raise Forbidden(f"role {self.role!r} may not register methods")
        self.node.offer(self, f.service, f.method, f.params, f.mutates, f.description)
        self.offering = True
        self.send(dumps({"type": "registered", "id": f.id, "service": f.service, "method": f.method}))

    def send_invoke(self, text: str) -> None:
        """An ``invoke`` of a method this client offers (node/_offered.py)."""
        self.send(text)

    async def serve(self) -> None:
        ws = self.ws
        writer = asyncio.create_task(self.writer(), name=f"{self.name}.writer")
        try:
            async for raw in ws:
                self.on_frame(raw)
        except ConnectionClosed:
            pass
        finally:
            self.closed = True
            self._hello_done()
            self.replies.clear()
            self.events.clear()
            writer.cancel()
            try:
                await writer
            except (asyncio.CancelledError, ConnectionClosed):
                pass
            self.node.client_gone(self)


class Gateway:
    """Owns the WebSocket server and every client session."""

    def __init__(self, node: "Router", settings: Settings) -> None:
        self.node = node
        self.settings = settings
        self.host, self.port = parse_hostport(settings.ws.listen)
        self.tokens = {t.sha256: t.role for t in settings.auth.tokens}
        if not self.tokens and not is_loopback(self.host) and settings.ws.require_auth_remote:
            raise ConfigError(
                f"ws.listen = {settings.ws.listen!r} is not a loopback address and no [[auth.tokens]] are "
                "configured; add tokens or set ws.require_auth_remote = false to allow anyone on the network")
        self.sessions: set[ClientSession] = set()
        self._server: Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.ssl = None
        ws = settings.ws
        if ws.tls_cert or ws.tls_key:
            import ssl
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                ctx.load_cert_chain(ws.tls_cert, ws.tls_key or None)
            except (OSError, ssl.SSLError) as e:
                raise ConfigError(f"cannot load ws.tls_cert/ws.tls_key: {e}") from None
            self.ssl = ctx
        self.edge = EdgePolicy(self.host, self.port, tls=self.ssl is not None,
                               allowed_origins=ws.allowed_origins, allowed_hosts=ws.allowed_hosts)
        self.auth_failures = AuthFailures(ws.auth_fail_limit, ws.auth_fail_window, ws.auth_block_seconds)
        self.audit = CallAudit(settings.id, ws.audit_log)

    def auth_failed(self, addr: str) -> None:
        if self.auth_failures.fail(addr):
            rlog.warning(("auth_block", addr), "%d authentication failures from %s within %g s; refusing it "
                         "for %g s", self.auth_failures.limit, printable(addr), self.auth_failures.window,
                         self.auth_failures.block)

    def check_token(self, token: str | None) -> str | None:
        if not token:
            return None
        digest = hashlib.sha256(token.encode()).hexdigest()
        for h, role in self.tokens.items():
            if hmac.compare_digest(h, digest):
                return role
        return None

    def spawn(self, coro: Any) -> None:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    @property
    def url(self) -> str:
        scheme = "wss" if self.ssl else "ws"
        port = self.port
        if self._server is not None and port == 0:
            port = next(iter(self._server.sockets)).getsockname()[1]
        return f"{scheme}://{self.host}:{port}/ws"

    async def start(self) -> None:
        try:
            self._server = await serve(
                self._handle, self.host, self.port, ssl=self.ssl,
                process_request=self._http, process_response=self._secure,
                max_size=self.settings.ws.max_frame_bytes * 4,
                max_queue=64, ping_interval=20, ping_timeout=20, compression=None,
                server_header=f"cloudisense/{self.node.version}",
            )
        except OSError as e:
            raise ConfigError(f"cannot listen on {self.settings.ws.listen} for WebSocket clients: {e.strerror or e}"
                              " (is another node running there? use --ws HOST:PORT)") from None
        if self.port == 0:
            self.port = next(iter(self._server.sockets)).getsockname()[1]
        self.edge.port = self.port

    async def _handle(self, ws: ServerConnection) -> None:
        if len(self.sessions) >= self.settings.ws.max_clients:   # several handshakes passed the check at once
            await ws.close(CLOSE_TRY_AGAIN, "too many clients")
            return
        session = ClientSession(self, ws)
        self.sessions.add(session)
        first = session.name   # a hello may rename it (cli-7): the disconnect line names both
        log.info("%s connected from %s", first, ws.remote_address, extra={"client": first, "remote": session.addr})
        try:
            await session.serve()
        finally:
            self.sessions.discard(session)
            log.info("%s disconnected (%s)", first if session.name == first else f"{first} ({session.name})",
                     ws.close_code, extra={"client": session.name})

    def _refuse(self, status: int, why: str, req: Request, conn: ServerConnection,
                headers: tuple[tuple[str, str], ...] = ()) -> Response:
        addr = str((conn.remote_address or ("?",))[0])
        rlog.warning(("refused", status, why), "refused %s from %s (Host %s, Origin %s): %d %s",
                     printable(req.path, limit=100), printable(addr), printable(req.headers.get("Host"), limit=100),
                     printable(req.headers.get("Origin"), limit=100), status, why)
        resp = _response(status, f"{_REASONS[status].lower()}: {why}\n".encode(), "text/plain")
        for k, v in headers:
            resp.headers[k] = v
        return resp

    def _http(self, conn: ServerConnection, req: Request) -> Response | None:
        path = req.path.split("?", 1)[0]
        hosts = req.headers.get_all("Host")
        if err := (self.edge.host_error(hosts[0]) if len(hosts) == 1 else "one Host header expected"):
            return self._refuse(403, err, req, conn)
        if path == "/ws":
            origins = req.headers.get_all("Origin")
            if err := (self.edge.origin_error(origins[0] if origins else None, hosts[0]) if len(origins) < 2
                       else "more than one Origin header"):
                return self._refuse(403, err, req, conn)
            addr = str((conn.remote_address or ("?",))[0])
            if self.tokens and (wait := self.auth_failures.blocked_for(addr)):
                return self._refuse(429, "too many failed authentications from this address", req, conn,
                                    (("Retry-After", str(int(wait) + 1)),))
            if len(self.sessions) >= self.settings.ws.max_clients:
                return self._refuse(503, f"connection limit of {self.settings.ws.max_clients} clients reached "
                                    "(ws.max_clients)", req, conn, (("Retry-After", "5"),))
            return None
        if path == "/":
            path = "/static/index.html"
        if path in OPS_PATHS:   # /metrics /healthz /readyz /varz (node/_metrics.py)
            return ops_http(self, conn, req, path)
        if path == "/pubkey":
            return _pubkey(self.node)
        if path in LIB_FILES:   # the browser library (clients/js/), importable from pages on any origin
            lib = resources.files("cloudisense.node.lib").joinpath(path.removeprefix("/lib/")).read_bytes()
            return _response(200, lib, LIB_FILES[path])
        if path.startswith("/static/"):
            name = path.removeprefix("/static/")
            sub = ("vendor",) if name.startswith("vendor/") else ()   # static/vendor/: third-party files
            name = name.removeprefix("vendor/")
            if "/" not in name and ".." not in name and name:
                data: bytes | None
                try:
                    data = resources.files("cloudisense.node").joinpath("static", *sub, name).read_bytes()
                except (FileNotFoundError, IsADirectoryError, OSError):
                    data = None
                if data is not None:
                    ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
                    return _response(200, data, ctype)
        return _response(404, f"not found: {path}\n".encode(), "text/plain")

    def _secure(self, conn: ServerConnection, req: Request, resp: Response) -> None:
        """Every response the node sends, its own or websockets' (426, 400, 101), gets the headers."""
        headers = resp.headers
        # The browser library is public code with no secrets: a page on another origin may import it
        # (the socket it then opens still needs that origin in ws.allowed_origins).
        lib = resp.status_code == 200 and req.path.split("?", 1)[0] in LIB_FILES
        for k, v in SECURITY_HEADERS:
            headers[k] = "cross-origin" if lib and k == "Cross-Origin-Resource-Policy" else v
        if lib:
            headers["Access-Control-Allow-Origin"] = "*"

    def stop_accepting(self) -> None:
        if self._server is not None:
            self._server.close(close_connections=False)

    async def close(self) -> None:
        """Stop accepting, let queued replies out, close every client with 1001, wait for handlers."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        try:
            async with asyncio.timeout(1.0):
                while any(s.replies for s in self.sessions):
                    await asyncio.sleep(0.01)
        except TimeoutError:
            pass
        for s in list(self.sessions):
            s.closed = True
        closes = [s.ws.close(CLOSE_GOING_AWAY, "node shutting down") for s in list(self.sessions)]
        if closes:
            await asyncio.gather(*closes, return_exceptions=True)
        try:
            async with asyncio.timeout(5):
                await self._server.wait_closed()
        except TimeoutError:
            log.warning("some client handlers did not finish in time")
        for t in list(self._tasks):
            t.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        self._server = None


#: GET path -> content type of the files of clients/js/ (the package cloudisense.node.lib) the node serves.
LIB_FILES = {"/lib/cloudisense.mjs": "text/javascript", "/lib/cloudisense.d.ts": "application/typescript"}


def _pubkey(node: "Router") -> Response:
    """``GET /pubkey``: this node's id and Ed25519 public key, for ``cloudisense trust add URL``.

    Public by nature; whether to trust it is the operator's call (the command shows its fingerprint).
    """
    doc = node.public_key()
    if doc is None:
        return _response(404, b"this node has no signing key (security.key)\n", "text/plain")
    return _response(200, dumps(doc).encode(), "application/json")

