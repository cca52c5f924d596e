"""CloudiSENSE node runtime: public API.

Run a node with ``cloudisense node``; embed one with ``await Node(load_settings(...)).run()``;
talk to one with :class:`Client`.
"""

from typing import Any

__version__ = "0.1.0"

from ._config import Settings, load_settings  # noqa: E402 - after __version__, which submodules read
from ._errors import (BadRequest, CallTimeout, CloudisenseError, ConfigError, Conflict, ErrorCode, Forbidden,  # noqa: E402 - as above
                      InvalidParams, NodeOffline, Overloaded, RemoteError, TooLarge, Unauthenticated,
                      UnknownMethod, UnknownNode, UnknownService)
from ._services import NoParams, Registry, Service, method  # noqa: E402 - as above

_LAZY = {"Client", "ClientState", "ConnectionLost", "Registration", "RpcError", "Subscription"}


def __getattr__(name: str) -> Any:
    # The client pulls in websockets' client side (proxy support: urllib.request, http.client):
    # ~0.5 MB that a serving node never uses, so it is imported on first use.
    if name in _LAZY:
        from . import _client
        return getattr(_client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "BadRequest", "CallTimeout", "Client", "ClientState", "CloudisenseError", "ConfigError", "Conflict",
    "ConnectionLost", "ErrorCode", "Forbidden", "InvalidParams", "NoParams", "NodeOffline", "Overloaded",
    "Registration", "Registry", "RemoteError", "RpcError", "Service",
    "Settings", "Subscription", "TooLarge", "Unauthenticated", "UnknownMethod", "UnknownNode", "UnknownService",
    "__version__", "load_settings", "method",
]
