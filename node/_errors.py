"""Errors: one base exception and the closed set of wire error codes.

Exception tree::

    CloudisenseError                 (code = internal)
     ├── ConfigError                 bad config file / variable / flag (never on the wire)
     ├── BadRequest                  bad_request
     ├── TooLarge                    too_large
     ├── Unauthenticated             unauthenticated
     ├── Forbidden                   forbidden
     ├── UnknownNode                 unknown_node
     ├── NodeOffline                 node_offline
     ├── UnknownService              unknown_service
     ├── UnknownMethod               unknown_method
     ├── InvalidParams               invalid_params
     ├── CallTimeout                 timeout
     ├── Overloaded                  overloaded
     ├── Conflict                    conflict
     └── RemoteError                 any code, as answered by another node

Every exception carries ``code`` (an :class:`ErrorCode`), and optionally the
``node`` and ``request_id`` it concerns.  :func:`to_wire` maps any exception to
the ``{"code", "message"}`` object sent to clients; tracebacks never go over
the wire.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """The closed set of error codes of protocol v1 (see docs/protocol.md)."""

    BAD_REQUEST = "bad_request"          # malformed JSON, unknown type, missing or wrong field
    TOO_LARGE = "too_large"              # frame over the configured size, or a reply over the caller's limit
    UNAUTHENTICATED = "unauthenticated"  # auth is on and no valid hello came first
    FORBIDDEN = "forbidden"              # the role may not do this (viewer calling a mutating method)
    UNKNOWN_NODE = "unknown_node"        # no node with this id was ever seen
    NODE_OFFLINE = "node_offline"        # the node is known but offline (or went away mid-call)
    UNKNOWN_SERVICE = "unknown_service"  # no such service on the target node
    UNKNOWN_METHOD = "unknown_method"    # the service has no such method
    INVALID_PARAMS = "invalid_params"    # params fail the method's schema (field named)
    TIMEOUT = "timeout"                  # no answer before the deadline
    OVERLOADED = "overloaded"            # rate, pending-call or subscription limit reached
    CONFLICT = "conflict"                # register: the service.method is held by the node or another client
    INTERNAL = "internal"                # a bug or crash on the answering node (logged there)


class CloudisenseError(Exception):
    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, message: str, *, node: str | None = None,
                 request_id: str | int | None = None, code: ErrorCode | str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node
        self.request_id = request_id
        if code is not None:
            self.code = ErrorCode(code)

    def to_wire(self) -> dict[str, Any]:
        return {"code": str(self.code), "message": self.message}


class ConfigError(CloudisenseError):
    pass


# One class per wire code (written out, not made by type(): a type checker sees them as classes).

class BadRequest(CloudisenseError):
    """Wire code ``bad_request``."""
    code = ErrorCode.BAD_REQUEST


class TooLarge(CloudisenseError):
    """Wire code ``too_large``."""
    code = ErrorCode.TOO_LARGE


class Unauthenticated(CloudisenseError):
    """Wire code ``unauthenticated``."""
    code = ErrorCode.UNAUTHENTICATED


class Forbidden(CloudisenseError):
    """Wire code ``forbidden``."""
    code = ErrorCode.FORBIDDEN


class UnknownNode(CloudisenseError):
    """Wire code ``unknown_node``."""
    code = ErrorCode.UNKNOWN_NODE


class NodeOffline(CloudisenseError):
    """Wire code ``node_offline``."""
    code = ErrorCode.NODE_OFFLINE


class UnknownService(CloudisenseError):
    """Wire code ``unknown_service``."""
    code = ErrorCode.UNKNOWN_SERVICE


class UnknownMethod(CloudisenseError):
    """Wire code ``unknown_method``."""
    code = ErrorCode.UNKNOWN_METHOD


class InvalidParams(CloudisenseError):
    """Wire code ``invalid_params``."""
    code = ErrorCode.INVALID_PARAMS


class CallTimeout(CloudisenseError):
    """Wire code ``timeout``."""
    code = ErrorCode.TIMEOUT


class Overloaded(CloudisenseError):
    """Wire code ``overloaded``."""
    code = ErrorCode.OVERLOADED


class Conflict(CloudisenseError):
    """Wire code ``conflict``."""
    code = ErrorCode.CONFLICT


class RemoteError(CloudisenseError):
    """An error answered by another node, code preserved."""


_BY_CODE: dict[ErrorCode, type[CloudisenseError]] = {
    c.code: c for c in (BadRequest, TooLarge, Unauthenticated, Forbidden, UnknownNode, NodeOffline,
                        UnknownService, UnknownMethod, InvalidParams, CallTimeout, Overloaded, Conflict)
}


def from_wire(err: dict[str, Any], *, node: str | None = None,
              request_id: str | None = None) -> CloudisenseError:
    """Turn a wire error object back into the matching exception."""
    try:
        code = ErrorCode(str(err.get("code")))
    except ValueError:
        code = ErrorCode.INTERNAL
    cls = _BY_CODE.get(code, RemoteError)
    return cls(str(err.get("message", "")), node=node, request_id=request_id, code=code)


def to_wire(exc: BaseException) -> dict[str, Any]:
    """Map any exception to a wire error; non-domain exceptions become a bare ``internal``."""
    if isinstance(exc, CloudisenseError):
        return exc.to_wire()
    return {"code": str(ErrorCode.INTERNAL), "message": f"internal error ({type(exc).__name__}); see the node's log"}
