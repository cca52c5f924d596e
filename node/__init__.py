"""CloudiSENSE node runtime: public API.

Run a node with ``cloudisense node``; embed one with ``await Node(load_settings(...)).run()``;
talk to one with :class:`Client`.
"""

__version__ = "0.1.0"

from ._client import Client, ConnectionLost, Subscription  # noqa: E402
from ._config import Settings, load_settings  # noqa: E402
from ._errors import (BadRequest, CallTimeout, CloudisenseError, ConfigError, ErrorCode, Forbidden,  # noqa: E402
                      InvalidParams, NodeOffline, Overloaded, RemoteError, TooLarge, Unauthenticated,
                      UnknownMethod, UnknownNode, UnknownService)
from ._services import NoParams, Registry, Service, method  # noqa: E402

__all__ = [
    "BadRequest", "CallTimeout", "Client", "CloudisenseError", "ConfigError", "ConnectionLost", "ErrorCode",
    "Forbidden", "InvalidParams", "NoParams", "NodeOffline", "Overloaded", "Registry", "RemoteError", "Service",
    "Settings", "Subscription", "TooLarge", "Unauthenticated", "UnknownMethod", "UnknownNode", "UnknownService",
    "__version__", "load_settings", "method",
]
