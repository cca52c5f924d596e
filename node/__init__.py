"""CloudiSENSE node runtime (public API)."""

__version__ = "0.1.0"
