"""Prompt templates as package data (``*.txt`` next to this file), versioned.

``load("system")`` reads ``system.txt``.  Changing a prompt's meaning bumps
:data:`PROMPT_VERSION`; recorded sessions and audit records carry it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

PROMPT_VERSION = "2"  # 2: the cluster summary in the first message is delimited untrusted data


@cache
def load(name: str) -> str:
    """The text of prompt ``name`` (``name.txt`` in this package)."""
    return resources.files(__name__).joinpath(f"{name}.txt").read_text(encoding="utf-8")


__all__ = ["PROMPT_VERSION", "load"]
