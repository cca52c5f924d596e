"""The HTTP edge of the gateway, as pure decisions (no sockets): which ``Host`` and
``Origin`` a request may carry, the security headers on every response, and which
addresses are refused for repeated authentication failures.

Why each check exists (docs/security.md, "Browsers"):

* **Origin** stops cross-site WebSocket hijacking: any page open in the operator's
  browser can open ``ws://127.0.0.1:8765/ws`` (WebSockets are not bound by the
  same-origin policy), but the browser always says which page asked in ``Origin``.
  Allowed: no ``Origin`` at all (scripts, the CLI, the agent), the node's own
  origin (the page it served), a loopback origin on the node's port when it
  listens on loopback, and ``[ws] allowed_origins``.
* **Host** stops DNS rebinding: a page on ``evil.example`` whose name is rebound to
  127.0.0.1 is same-origin with itself, so ``Origin`` alone can't tell; but the
  browser sends ``Host: evil.example:PORT``.  On a loopback listener the ``Host``
  must be a loopback name or address with the listener's port, or one of
  ``[ws] allowed_hosts``.
* **Headers**: a CSP with no inline script or style, ``frame-ancestors 'none'``
  (and ``X-Frame-Options``) so the dashboard can't be framed, ``nosniff``, no
  referrer, and same-origin resource and opener policies.
"""

from __future__ import annotations

import ipaddress
import time
from collections import deque
from collections.abc import Callable, Iterable

from websockets.datastructures import Headers
from websockets.http11 import Response

__all__ = ["AuthFailures", "EdgePolicy", "HTTP_REASONS", "SECURITY_HEADERS", "http_response", "is_loopback",
           "normalize_origin"]

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
)


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _split_hostport(value: str, default_port: int) -> tuple[str, int] | None:
    """``host[:port]`` / ``[v6][:port]`` → (lower-case host without brackets, port), or None."""
    value = value.strip().lower()
    if not value:
        return None
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port_s = rest[1:]
    else:
        host, sep, port_s = value.partition(":")
        if sep and not port_s:
            return None
    if not port_s:
        return host, default_port
    if not port_s.isdigit() or len(port_s) > 5:
        return None
    port = int(port_s)
    return (host, port) if 0 < port < 65536 else None


def normalize_origin(origin: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` → (scheme, host, port) with the scheme's default port; None if not one."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or scheme not in ("http", "https") or "/" in rest or "@" in rest:
        return None
    hp = _split_hostport(rest, 443 if scheme == "https" else 80)
    return None if hp is None else (scheme, hp[0], hp[1])


class EdgePolicy:
    """Host and Origin decisions for one listener (``port`` is set once the listener is bound)."""

    def __init__(self, listen_host: str, port: int, *, tls: bool, allowed_origins: Iterable[str] = (),
                 allowed_hosts: Iterable[str] = ()) -> None:
        self.loopback = is_loopback(listen_host)
        self.port = port
        self.scheme = "https" if tls else "http"
        origins = list(allowed_origins)
        self.any_origin = "*" in origins
        self.origins = {o for o in map(normalize_origin, origins) if o is not None}
        self.null_origin = "null" in origins
        self.hosts = {h.strip().lower() for h in allowed_hosts}

    def _named_host(self, host_header: str, hp: tuple[str, int]) -> bool:
        return host_header.strip().lower() in self.hosts or hp[0] in self.hosts

    def host_error(self, host_header: str | None) -> str | None:
        """Why a request with this ``Host`` is refused, or None."""
        if host_header is None:
            return "no Host header"
        hp = _split_hostport(host_header, 443 if self.scheme == "https" else 80)
        if hp is None:
            return "malformed Host header"
        if self.hosts and self._named_host(host_header, hp):
            return None
        if self.loopback:
            if is_loopback(hp[0]) and hp[1] == self.port:
                return None
            return "Host is not this node's loopback address and port (add it to ws.allowed_hosts)"
        if not self.hosts:
            return None
        try:
            ipaddress.ip_address(hp[0])   # an address can't be rebound; a name must be listed
            return None
        except ValueError:
            return "Host is not in ws.allowed_hosts"

    def origin_error(self, origin: str | None, host_header: str | None) -> str | None:
        """Why a WebSocket upgrade with this ``Origin`` is refused, or None (after ``host_error``)."""
        if origin is None or self.any_origin:
            return None
        if origin.strip().lower() == "null":
            return None if self.null_origin else "Origin 'null' (a sandboxed or file page) is not allowed"
        o = normalize_origin(origin)
        if o is None:
            return "malformed Origin"
        if o in self.origins:
            return None
        if o[0] == self.scheme:
            if self.loopback and is_loopback(o[1]) and o[2] == self.port:
                return None
            hp = _split_hostport(host_header or "", 443 if self.scheme == "https" else 80)
            if hp is not None and (o[1], o[2]) == hp:
                return None            # the page this node served (Host was checked first)
        return "Origin is not this node and not in ws.allowed_origins"


class AuthFailures:
    """Failed authentications per remote address: after ``limit`` within ``window`` seconds the
    address is refused for ``block`` seconds.  At most ``max_addresses`` are remembered (the
    oldest are forgotten first), so a spray of addresses can't grow memory."""

    def __init__(self, limit: int, window: float, block: float, *, max_addresses: int = 4096,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.block = limit, window, block
        self.max_addresses = max_addresses
        self.clock = clock
        self._fails: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}

    def blocked_for(self, addr: str) -> float:
        """Seconds ``addr`` is still refused (0 if it isn't)."""
        until = self._blocked.get(addr)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._blocked[addr]
            return 0.0
        return left

    def fail(self, addr: str) -> bool:
        """Count a failure from ``addr``; True when this one starts a block."""
        now = self.clock()
        times = self._fails.pop(addr, None)
        if times is None:
            times = deque(maxlen=self.limit)
            while len(self._fails) >= self.max_addresses:
                del self._fails[next(iter(self._fails))]
        self._fails[addr] = times            # re-inserted: the dict's order is recency
        times.append(now)
        if len(times) < self.limit or now - times[0] > self.window:
            return False
        del self._fails[addr]
        while len(self._blocked) >= self.max_addresses:
            del self._blocked[next(iter(self._blocked))]
        self._blocked[addr] = now + self.block
        return True


# --- plain HTTP answers (the gateway's pages and the ops endpoints of _metrics) ---------------

HTTP_REASONS = {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
                503: "Service Unavailable"}


def http_response(status: int, body: bytes, ctype: str) -> Response:
    reason = HTTP_REASONS.get(status, "")
    headers = Headers([("Content-Type", ctype if not ctype.startswith("text/") else ctype + "; charset=utf-8"),
                       ("Content-Length", str(len(body))), ("Cache-Control", "no-cache")])
    return Response(status, reason, headers, body)
