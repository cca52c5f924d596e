"""The MQTT adapter of the federation (thin I/O over aiomqtt).

It owns one MQTT connection at a time and its loops (receive, send, keep the
subscriptions), reconnects with capped, jittered backoff (to the next server
when ``broker.url`` names several), restores its subscriptions after a
reconnect and checks every SUBACK, and hands every verified envelope to the node.  Routing decisions
live in the node; this module only moves bytes.

Coalescing: envelopes queued for the same MQTT topic while the previous
publish was in flight go out together in one MQTT message (no added delay):
a JSON array of envelopes, or, when signing is on, one batch with one MAC or
signature for all of them (the ``packer``, ``node._signing.Sealer``).

Failures never end the link silently.  A message paho refuses to send (a
topic or payload it raises ValueError/TypeError for) is dropped, counted as
``unsendable`` and logged; the link stays up.  Anything else that breaks the
receive or send loop is logged with its traceback, the link reports itself
down (``connected`` cleared, ``on_disconnected`` called) and reconnects with
backoff, like after a lost connection.
"""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import ssl
import threading
from collections import defaultdict
from typing import Any, Callable, Iterator, Mapping
from urllib.parse import urlparse

import aiomqtt
from paho.mqtt.client import PUBLISH

from ._config import broker_urls
from ._errors import ConfigError
from ._json import dumpb, loads
from ._ratelog import RateLimitedLog
from ._text import printable

log = logging.getLogger(__name__)

MAX_BATCH = 64
#: What paho raises, before anything is sent, for a message it can't encode: a wildcard or
#: empty topic, a lone surrogate, a payload of the wrong type or over MQTT's size.
UNSENDABLE = (ValueError, TypeError)


class PlainPacker:
    """Envelopes as they are (no signing): JSON, a JSON array for several.  The interface of
    ``Sealer``: ``prepare`` each envelope as it is queued, ``pack`` one MQTT message's worth."""

    @staticmethod
    def prepare(env: Mapping[str, Any]) -> bytes:
        return dumpb(env)

    @staticmethod
    def pack(items: list[bytes]) -> bytes:
        return items[0] if len(items) == 1 else b"[" + b",".join(items) + b"]"


def backoff(base: float = 0.1, cap: float = 2.0, rng: random.Random | None = None) -> Iterator[float]:
    """Capped exponential backoff with full jitter (pure)."""
    rng = rng or random.Random()
    attempt = 0
    while True:
        yield rng.uniform(base / 2, min(cap, base * 2 ** attempt))
        attempt += 1


def is_fatal(exc: BaseException) -> str | None:
    """Why a connection error will not go away by retrying, or None if it may."""
    text = str(exc).lower()
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, ssl.SSLCertVerificationError) or isinstance(cause, ssl.SSLCertVerificationError) \
            or "certificate verify failed" in text:
        return f"TLS certificate verification failed: {exc}"
    if isinstance(exc, ssl.SSLError) or isinstance(cause, ssl.SSLError):
        if "wrong version number" in text or "record layer failure" in text:
            return f"TLS handshake failed (is the broker speaking plain MQTT?): {exc}"
    if "not authori" in text or "bad user name or password" in text:
        return f"the broker refused our credentials: {exc}"
    return None


#: TLS alerts a broker sends when it refuses our client certificate.  With TLS 1.3
#: they arrive after the handshake, while paho waits for CONNACK: only paho's log
#: sees them (aiomqtt then reports a timeout), so :class:`_PahoErrors` reads them there.
_CERT_ALERTS = ("alert unknown ca", "alert bad certificate", "alert certificate unknown",
                "alert certificate expired", "alert certificate revoked", "alert unsupported certificate",
                "alert access denied")
_CLOSED = ("connection reset", "eof", "broken pipe", "unexpected end", "connection closed")


def tls_rejection(text: str) -> str | None:
    """Why the broker refused our TLS client certificate, from an error text, or None."""
    t = text.lower()
    if "alert certificate required" in t:
        return ("the broker requires a TLS client certificate: set broker.cert and broker.key "
                "(cloudisense certs gen makes them)")
    if any(a in t for a in _CERT_ALERTS):
        return (f"the broker rejected this node's TLS client certificate ({text.strip()}): use one issued by "
                "the broker's CA as broker.cert/broker.key")
    return None


#: What paho logs at ERROR when a broker goes away (restart, failover): routine, logged as WARNING.
_ROUTINE = ("failed to receive on socket", "broken pipe", "connection reset", "connection refused")
#: What aiomqtt logs at ERROR, with a KeyError traceback, when an answer (SUBACK, UNSUBACK) comes after it
#: gave up waiting for it: nats-server electing leaders handles one SUBSCRIBE at a time, 5 s each.  The
#: request was already counted as failed and is retried: a WARNING, without the traceback.
_LATE = "unexpected message id"


class _PahoErrors(logging.Filter):
    """Passes paho's log records through, showing its ERRORs to the federation first.

    A lost connection is routine (a broker restart, a server of a cluster dying): paho's
    ERROR for it ("failed to receive on socket: Broken pipe") goes on as a WARNING; the
    federation logs the loss and the reconnection itself.
    """

    def __init__(self, fed: "Federation") -> None:
        super().__init__()
        self.fed = fed

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            message = record.getMessage()
            low = message.lower()
            if _LATE in low:
                record.levelno, record.levelname = logging.WARNING, "WARNING"
                record.exc_info, record.exc_text = None, None
                record.msg, record.args = f"{message} (an answer that came after the client gave up on it)", None
                return True
            self.fed._on_paho_error(message)
            if any(r in low for r in _ROUTINE):
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def _refused(code: Any) -> bool:
    """Whether one SUBACK return code is a refusal (0x80; paho gives ints or ReasonCodes)."""
    value = getattr(code, "value", code)
    return isinstance(value, int) and value >= 0x80


def _code_text(code: Any) -> str:
    value = getattr(code, "value", code)
    return f"SUBACK 0x{value:02x}" if isinstance(value, int) else str(code)


def parse_broker_url(url: str) -> tuple[str, int, bool]:
    u = urlparse(url)
    tls = u.scheme == "mqtts"
    return u.hostname or "127.0.0.1", u.port or (8883 if tls else 1883), tls


def tls_context(ca: str, cert: str, key: str) -> ssl.SSLContext:
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=ca or None)
        if cert:
            ctx.load_cert_chain(cert, key or None)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load TLS files (ca={ca!r}, cert={cert!r}, key={key!r}): {e}") from None
    return ctx


def write_first(client: aiomqtt.Client, eager: Callable[[], bool] = lambda: False) -> None:
    """Send a QoS 0 publish (an event), or any publish while ``eager()``, as paho queues it
    instead of one event-loop turn later.

    aiomqtt runs paho on the asyncio loop through paho's external-loop callbacks: for
    every packet paho asks for the socket to be watched for writability, and the packet
    goes out on the next loop turn, after two epoll_ctl calls, with a future round trip
    in aiomqtt for every QoS 0 publish.  At a few hundred events a second that was most
    of a publishing node's CPU and the source of its latency spikes (P4 of ``bench/``).
    This wraps paho's ``on_socket_register_write`` (its documented hook): a QoS 0 publish
    is written at once with paho's own ``loop_write()`` (what paho does when it owns the
    loop), and the socket is watched only when the kernel did not take everything.
    Batches of calls and replies (QoS 1) keep the deferred write: they grow while the
    previous batch waits for its PUBACK, and writing them early made batches smaller
    and a call dearer (P3).  A lone call or reply has nothing to wait for: the
    federation sets ``eager`` while it publishes one (P2's round trip).  Never while
    paho runs one of its callbacks (paho's rule).

    The watch itself is added here too, not by aiomqtt: paho may ask from the thread
    that connects, so the watch is added a loop turn later, and by then the connection
    may be gone (a broker killed mid-publish); aiomqtt then called ``add_writer`` on a
    closed fd and asyncio logged an ERROR with a traceback.  It is added only for the
    socket paho still has open, by a plain ``call_soon`` when paho asks from the loop's own thread (it
    does for every PUBACK) and thread-safely when it asks from the thread that connects.
    """
    paho = client._client   # aiomqtt 2.x keeps its paho client here (pinned < 3)
    if paho.on_socket_register_write is None:
        return   # not driven by aiomqtt's external loop: nothing to wrap
    busy = paho._in_callback_mutex
    loop = asyncio.get_running_loop()
    loop_thread = threading.get_ident()

    def writable() -> None:
        try:
            paho.loop_write()
        except Exception as exc:  # noqa: BLE001 - a broken connection: aiomqtt's receive loop reports it
            gone = getattr(client, "_disconnected", None)
            if gone is not None and not gone.done():
                gone.set_exception(exc)

    def watch(sock: Any) -> None:
        fd = sock.fileno()
        if paho.socket() is sock and fd >= 0:
            loop.add_writer(fd, writable)

    def register_write(c: Any, userdata: Any, sock: Any) -> None:
        out = c._out_packet   # paho's queue of packets to send; the newest is the one just queued
        last = out[-1] if out else None
        if (last is not None and last["command"] == PUBLISH and (last["qos"] == 0 or eager())
                and busy.acquire(False)):
            busy.release()
            try:
                c.loop_write()   # unregisters itself when everything was written
            except OSError:
                pass             # the read side sees the broken connection and reconnects
            if c.socket() is not sock or not c.want_write():
                return           # all written, or the connection is gone (paho closed the socket)
        if threading.get_ident() == loop_thread:
            loop.call_soon(watch, sock)              # (no self-pipe write and extra wake: a PUBACK each)
        else:
            loop.call_soon_threadsafe(watch, sock)   # the thread that connects

    paho.on_socket_register_write = register_write


class _Lane:
    """What one writer sends: it flushes all that is queued, waits for those publishes to complete, then
    flushes again, so what was queued meanwhile goes out coalesced (one MQTT message per topic and QoS,
    at most MAX_BATCH envelopes).  QoS 0 has a lane of its own: a QoS 1 publish completes with the
    broker's PUBACK, which a broker may hold for seconds (nats-server while JetStream elects leaders),
    and a probe or its ack must not wait behind it."""

    __slots__ = ("out", "raw", "ready")

    def __init__(self) -> None:
        self.out: dict[tuple[str, int], list[Any]] = defaultdict(list)   # prepared envelopes per topic
        self.raw: list[tuple[str, int, bytes]] = []
        self.ready = asyncio.Event()

    def take(self) -> tuple[dict[tuple[str, int], list[Any]], list[tuple[str, int, bytes]]]:
        self.ready.clear()
        out, raw = self.out, self.raw
        self.out, self.raw = defaultdict(list), []
        return out, raw


class Federation:
    """One node's link to the broker.  Use as ``async with Federation(...) as fed``.

    ``url`` may name several servers of one broker cluster, comma-separated: each
    connection attempt goes to the next one in turn and may take ``attempt_timeout``
    seconds (TCP, TLS and CONNACK), so a dead server costs one short attempt.

    Every SUBACK is checked: a topic the broker refused (0x80) or did not grant in
    time is retried with backoff until it is held, counted as ``subscribe_failures``;
    :meth:`missing` names the topics wanted and not held (the readiness check reads it).

    ``hello`` (optional) gives the message a *re*connection publishes first, at QoS 0 and not
    retained, before its subscriptions: a broker may take seconds over each of those (nats-server
    holds a connection's reads while it sets up a QoS 1 subscription during a JetStream election),
    and the node's presence must not wait behind them.
    """

    def __init__(self, *, node_id: str, url: str, keepalive: int, connect_timeout: float,
                 will: Callable[[], tuple[str, bytes]],
                 on_envelopes: Callable[[str, Any, bytes | None, bool], None],
                 on_connected: Callable[[], None], on_disconnected: Callable[[str], None],
                 on_fatal: Callable[[str], None],
                 username: str = "", password: str = "",
                 ca: str = "", cert: str = "", key: str = "", packer: Any = None,
                 attempt_timeout: float | None = None,
                 hello: Callable[[], tuple[str, bytes]] | None = None) -> None:
        self.node_id = node_id
        self.urls = broker_urls(url)
        self._at = 0                     # index in urls of the server of the current (or next) attempt
        self.url = self.urls[0]
        self.host, self.port, self.tls = parse_broker_url(self.url)
        self._ssl = tls_context(ca, cert, key) if any(parse_broker_url(u)[2] for u in self.urls) else None
        self.keepalive = keepalive
        self.connect_timeout = connect_timeout
        self.attempt_timeout = min(attempt_timeout or connect_timeout, connect_timeout)
        self.username, self.password = username or None, password or None
        self._will = will
        self._hello = hello
        self._on_envelopes = on_envelopes
        self._on_connected = on_connected
        self._on_disconnected = on_disconnected
        self._on_fatal = on_fatal
        self._client: aiomqtt.Client | None = None
        self._subs: dict[str, int] = {}
        self._held: set[str] = set()     # topics of _subs the broker granted on this connection
        self._inflight: set[str] = set()  # topics whose SUBACK is awaited
        self._fresh: set[str] = set()     # of those, asked for while connected, first SUBACK awaited
        self._subs_lost = asyncio.Event()   # some topic of _subs is not held: the keeper retries it
        self._packer = packer or PlainPacker()
        self._lane = _Lane()    # QoS 1: each flush waits for the broker's PUBACKs
        self._lane0 = _Lane()   # QoS 0 (liveness, events): never queued behind a PUBACK the broker holds
        self._eager = False   # publishing a lone envelope: write it at once (see write_first)
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.connected = asyncio.Event()
        self.last_error = ""            # why the last connection attempt failed (for the give-up message)
        self._paho_error = ""           # paho's last logged error during the current attempt
        self._ever_connected = False
        self._fatal_reported = False
        self._mqtt_log = log.getChild(f"mqtt.{node_id}")
        for f in [f for f in self._mqtt_log.filters if isinstance(f, _PahoErrors)]:
            self._mqtt_log.removeFilter(f)
        self._mqtt_log.addFilter(_PahoErrors(self))
        self._warn = RateLimitedLog(log)
        self.counters = {"rx_messages": 0, "rx_envelopes": 0, "tx_messages": 0, "tx_envelopes": 0,
                         "malformed": 0, "reconnects": 0, "unsendable": 0, "link_failures": 0,
                         "subscribe_failures": 0, "failovers": 0}

    async def __aenter__(self) -> "Federation":
        self._task = asyncio.create_task(self._run(), name=f"federation[{self.node_id}]")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self, final: tuple[str, bytes] | None = None) -> None:
        """Publish ``final`` (e.g. the offline presence) if connected, then disconnect."""
        client = self._client
        if final and client is not None and self.connected.is_set():
            try:
                async with asyncio.timeout(2):
                    await self._flush(client, self._lane0)
                    await self._flush(client, self._lane)
                    await client.publish(final[0], final[1], qos=1, retain=True)
            except (aiomqtt.MqttError, TimeoutError) as e:
                log.info("could not publish offline presence: %s", e)
        # A cancel that lands while the link is failing is swallowed by the connection's
        # TaskGroup (its children's errors win) and the loop went on reconnecting for
        # ever: the flag stops the loop, and the task is cancelled until it is gone.
        self._closing = True
        task, self._task = self._task, None
        if task is not None:
            give_up = asyncio.get_running_loop().time() + 5.0   # a stop must not hang on the link
            while not task.done() and asyncio.get_running_loop().time() < give_up:
                task.cancel()
                await asyncio.wait({task}, timeout=0.5)
            if not task.done():
                log.warning("the broker link did not stop within 5 s of being cancelled; leaving it")
                return
            if not task.cancelled() and (exc := task.exception()) is not None:
                raise exc

    # --- API used by the node -----------------------------------------------

    def route(self, on_envelopes: Callable[[str, Any, bytes | None, bool], None],
              on_connected: Callable[[], None]) -> None:
        """Hand what arrives, and each (re)connection, to new callbacks: the join is done."""
        self._on_envelopes = on_envelopes
        self._on_connected = on_connected

    def send(self, topic: str, env: Mapping[str, Any], qos: int = 1) -> None:
        """Queue an envelope; it goes out with others bound for the same topic (and QoS)."""
        lane = self._lane if qos else self._lane0
        lane.out[(topic, qos)].append(self._packer.prepare(env))
        lane.ready.set()

    def send_raw(self, topic: str, payload: bytes, qos: int = 1) -> None:
        """Queue a payload as it is, in an MQTT message of its own."""
        lane = self._lane if qos else self._lane0
        lane.raw.append((topic, qos, payload))
        lane.ready.set()

    async def publish_retained(self, topic: str, env: Mapping[str, Any], qos: int = 1) -> None:
        client = self._client
        if client is None or not self.connected.is_set():
            return
        packer = self._packer
        try:
            await client.publish(topic, packer.pack([packer.prepare(env)]), qos=qos, retain=True)
        except aiomqtt.MqttError as e:
            log.debug("retained publish to %s failed: %s", topic, e)
        except UNSENDABLE as e:
            self._unsendable(topic, e)

    async def subscribe(self, topic: str, qos: int = 1) -> None:
        """Subscribe now if connected; a refusal is retried in the background (see :meth:`missing`)."""
        self._subs[topic] = qos
        client = self._client
        if client is not None and self.connected.is_set():
            # A new subscription on a working link does not make the node unready while its
            # SUBACK is on the way; a refusal does (see missing).
            self._fresh.add(topic)
            try:
                await self._subscribe(client, topic, qos)
            finally:
                self._fresh.discard(topic)

    async def _subscribe(self, client: aiomqtt.Client, topic: str, qos: int) -> bool:
        """One SUBSCRIBE, its SUBACK checked: False when the broker refused a topic still wanted."""
        self._inflight.add(topic)
        try:
            codes = await client.subscribe(topic, qos=qos)
            why = next((f"the broker refused it ({_code_text(c)})" for c in codes if _refused(c)), None)
        except aiomqtt.MqttError as e:
            why = f"no grant: {e}"
        finally:
            self._inflight.discard(topic)
        if topic not in self._subs or self._client is not client:
            # Unsubscribed meanwhile, or another connection: nothing to keep, and no failure either (a
            # False here once stopped the keeper's round without asking for another: the topics after
            # this one were never retried).
            return True
        if why is None:
            self._held.add(topic)
            return True
        self._held.discard(topic)
        self.counters["subscribe_failures"] += 1
        self._warn.warning(("suback", topic), "subscribing to %s on %s failed: %s; retrying with backoff "
                           "(the node is not ready while it is missing)", printable(topic, limit=200), self.url,
                           printable(why, limit=200))
        self._subs_lost.set()
        return False

    def missing(self) -> list[str]:
        """Topics this node wants and the broker does not give it now (all of them while disconnected),
        but not those asked for on this connection whose first SUBACK is still on the way."""
        return sorted(t for t in self._subs if t not in self._held and t not in self._fresh)

    async def _keep_subscriptions(self, client: aiomqtt.Client) -> None:
        """Retry refused subscriptions with capped backoff until every one is held."""
        delays = backoff(base=0.25, cap=5.0)
        while True:
            await self._subs_lost.wait()
            await asyncio.sleep(next(delays))
            self._subs_lost.clear()
            for topic in self.missing():
                qos = self._subs.get(topic)
                if qos is not None and topic not in self._inflight and not await self._subscribe(client, topic, qos):
                    break   # _subscribe set _subs_lost again: back off before the next round
            else:
                delays = backoff(base=0.25, cap=5.0)

    async def unsubscribe(self, topic: str) -> None:
        self._held.discard(topic)
        if self._subs.pop(topic, None) is None:
            return
        client = self._client
        if client is not None and self.connected.is_set():
            try:
                await client.unsubscribe(topic)
            except aiomqtt.MqttError as e:
                log.info("unsubscribe %s failed: %s", topic, e)

    @property
    def subscriptions(self) -> list[str]:
        return sorted(self._subs)

    def explain(self) -> str:
        """What to tell a user whose node could not reach the broker: the last error and a hint."""
        err = self._paho_error or self.last_error   # paho's, if an attempt is still waiting for CONNACK
        low = err.lower()
        if err and any(c in low for c in _CLOSED):
            if self.tls:
                return (f"last error: {err}; the broker closed the connection during the TLS handshake: "
                        "if that port speaks plain MQTT, use mqtt://")
            return (f"last error: {err}; the broker closed the connection: if that port expects TLS, "
                    "use mqtts:// and set broker.ca")
        hint = "is it running? use --broker URL, or --broker none to run without federation"
        return f"last error: {err}; {hint}" if err else hint

    def _on_paho_error(self, message: str) -> None:
        self._paho_error = message
        if self._ever_connected or self._fatal_reported:
            return
        why = tls_rejection(message)
        if why:   # before our first connection: a configuration problem, retrying won't help
            self._fatal_reported = True
            self._on_fatal(f"cannot join broker {self.url}: {why}")

    # --- loops ---------------------------------------------------------------

    def _make_client(self) -> aiomqtt.Client:
        self.url = self.urls[self._at]
        self.host, self.port, self.tls = parse_broker_url(self.url)
        will_topic, will_payload = self._will()
        client = aiomqtt.Client(
            self.host, self.port,
            identifier=f"cloudisense-{self.node_id}-{random.getrandbits(32):08x}",
            protocol=aiomqtt.ProtocolVersion.V311, clean_session=True, keepalive=self.keepalive,
            timeout=self.attempt_timeout,      # the CONNACK wait; raised to connect_timeout once connected
            username=self.username, password=self.password,
            will=aiomqtt.Will(will_topic, will_payload, qos=1, retain=True),
            tls_context=self._ssl if self.tls else None,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            max_inflight_messages=1000, max_queued_incoming_messages=0,
            logger=self._mqtt_log,
        )
        write_first(client, lambda: self._eager)
        client._client.connect_timeout = self.attempt_timeout   # paho's TCP (and TLS) connect
        return client

    async def _run(self) -> None:
        delays = backoff()
        first = True
        while not self._closing:
            reason = "connection closed"
            fatal = None
            self._paho_error = ""
            self._held.clear()
            self._inflight.clear()
            self._fresh.clear()
            self._subs_lost.clear()
            try:
                async with self._make_client() as client:
                    client.timeout = self.connect_timeout   # publishes and SUBACKs: as before failover
                    self._client = client
                    if self._hello is not None and not first:
                        await client.publish(*self._hello(), qos=0)
                    async with asyncio.TaskGroup() as tg:
                        # All at once, and the link waits one attempt's time for them: a cluster
                        # electing new leaders (NATS after a server died) may grant them seconds
                        # later.  Those still in flight go on (the node is not ready until they
                        # are held); a refused one the keeper retries.
                        subs = [tg.create_task(self._subscribe(client, topic, qos))
                                for topic, qos in list(self._subs.items())]
                        if subs:
                            await asyncio.wait(subs, timeout=self.attempt_timeout)
                        self.connected.set()
                        self._ever_connected = True
                        delays = backoff()
                        if not first:
                            self.counters["reconnects"] += 1
                        log.info("connected to broker %s", self.url)
                        self._on_connected()
                        first = False
                        tg.create_task(self._rx(client), name=f"federation[{self.node_id}].rx")
                        tg.create_task(self._tx(client, self._lane), name=f"federation[{self.node_id}].tx")
                        tg.create_task(self._tx(client, self._lane0), name=f"federation[{self.node_id}].tx0")
                        tg.create_task(self._keep_subscriptions(client), name=f"federation[{self.node_id}].subs")
            except* (aiomqtt.MqttError, OSError, ssl.SSLError) as eg:
                exc: Exception = eg.exceptions[0]
                reason = str(exc) or type(exc).__name__
                if self._paho_error and self._paho_error not in reason:
                    reason = f"{reason} ({self._paho_error})"   # e.g. a timeout after a TLS alert
                fatal = is_fatal(exc) if first else None
                if first and not fatal:
                    fatal = tls_rejection(reason)
            except* Exception as eg:  # noqa: BLE001 - a bug (ours or paho's) must not end the link
                # Our bug, or paho's: never the end of the link.  Logged with its traceback,
                # reported as a lost connection, and retried with backoff.
                exc = eg.exceptions[0]
                reason = f"the link failed: {type(exc).__name__}: {exc}"
                self.counters["link_failures"] += 1
                self._warn.log(logging.ERROR, ("link_failed", type(exc).__name__),
                               "federation link to %s failed; reconnecting", self.url, exc_info=exc)
            self.last_error = reason
            if self._fatal_reported or self._closing:
                self.connected.clear()
                self._client = None
                return
            if fatal:
                self._client = None
                self._fatal_reported = True
                self._on_fatal(f"cannot join broker {self.url}: {fatal}")
                return
            was_connected = self.connected.is_set()
            self.connected.clear()
            self._client = None
            self._held.clear()
            lost = self.url
            if len(self.urls) > 1:   # failover: the next server of the cluster, at once after a lost link
                self._at = (self._at + 1) % len(self.urls)
                self.counters["failovers"] += 1
            then = f"trying {self.urls[self._at]}" if len(self.urls) > 1 else "retrying"
            if was_connected:
                log.warning("lost broker %s: %s; %s", lost, reason, then)
                self._on_disconnected(reason)
            else:
                log.warning("cannot reach broker %s: %s; %s", lost, reason, then)
            if not (was_connected and len(self.urls) > 1):
                await asyncio.sleep(next(delays))

    async def _rx(self, client: aiomqtt.Client) -> None:
        """Parse each message and hand what it holds (an envelope, a batch, or anything else JSON
        can be) to the node, which decides what of it may come in."""
        async for msg in client.messages:
            self.counters["rx_messages"] += 1
            payload = msg.payload
            try:
                obj = loads(payload)
            except (ValueError, TypeError, RecursionError):
                self.counters["malformed"] += 1
                self._warn.warning("non_json", "dropped a non-JSON message on %s (counted as "
                                   "federation.malformed)", printable(msg.topic.value, limit=200))
                continue
            self.counters["rx_envelopes"] += len(obj) if isinstance(obj, list) else 1
            try:
                self._on_envelopes(msg.topic.value, obj, payload if type(payload) is bytes else None, msg.retain)
            except Exception:  # noqa: BLE001 - one bad message must not stop the receive loop
                self._warn.log(logging.ERROR, "handler_failed", "handling a message on %s failed",
                               printable(msg.topic.value, limit=200), exc_info=True)

    async def _tx(self, client: aiomqtt.Client, lane: "_Lane") -> None:
        while True:
            await lane.ready.wait()
            await self._flush(client, lane)

    async def _flush(self, client: aiomqtt.Client, lane: "_Lane") -> None:
        out, raw = lane.take()
        lone = not raw and len(out) == 1 and len(next(iter(out.values()))) == 1   # one envelope, nothing to batch
        sends = [(topic, 1, client.publish(topic, payload, qos=qos)) for topic, qos, payload in raw]
        pack = self._packer.pack
        for (topic, qos), items in out.items():
            for i in range(0, len(items), MAX_BATCH):
                chunk = items[i:i + MAX_BATCH]
                sends.append((topic, len(chunk), client.publish(topic, pack(chunk), qos=qos)))
                self.counters["tx_messages"] += 1
                self.counters["tx_envelopes"] += len(chunk)
        if len(sends) == 1:
            self._eager = lone
            try:
                await sends[0][2]
            except UNSENDABLE as e:
                self._unsendable(sends[0][0], e, sends[0][1])
            finally:
                self._eager = False
        elif sends:
            results = await asyncio.gather(*(c for _, _, c in sends), return_exceptions=True)
            failed = None
            for (topic, n, _), r in zip(sends, results, strict=False):
                if isinstance(r, UNSENDABLE):
                    self._unsendable(topic, r, n)
                elif isinstance(r, BaseException) and failed is None:
                    failed = r
            if failed is not None:
                raise failed

    def _unsendable(self, topic: str, e: BaseException, envelopes: int = 1) -> None:
        """paho refused to encode a message: drop it, count it, keep the link."""
        self.counters["unsendable"] += envelopes
        self._warn.warning(("unsendable", type(e).__name__),
                           "could not send %d envelope(s) to %s: %s: %s (dropped; counted as "
                           "federation.unsendable)", envelopes, printable(topic, limit=200),
                           type(e).__name__, printable(e, limit=200))
