"""CloudiSENSE operator console: the Textual TUI for asking, approving and watching.

``cloudisense tui --url ws://…`` runs it; :func:`make_app` builds it (tests
inject a node client factory and a model); :func:`run_tui` /
:func:`run_tui_async` run it.  Importing this package is light: Textual is
imported only when the app is.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CloudisenseApp", "make_app", "run_tui", "run_tui_async"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
