"""The footer every screen of the console shows: Textual's, laid out so nothing in it is cut.

Textual's footer docks the command palette key (``^p palette``) on the right,
over the keys: at 80 columns it covered the last key but a glyph or two
(``^q Quit f1 ▏^p palette``).  :class:`ConsoleFooter` shows only keys that fit
whole: the palette key when there is room for it next to the others (it is in
the help screen either way), ``f1 Help`` always, then as many of the other keys
as fit, in order.
"""

from __future__ import annotations

from typing import Iterable

from textual import events
from textual.widget import Widget
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

PALETTE_KEY = 12  # "▏^p palette" and its padding


def key_width(key: FooterKey) -> int:
    """Cells one key takes in the compact footer: ``KEY DESCRIPTION`` and a space after it."""
    return len(key.key_display) + (len(key.description) + 1 if key.description else 0) + 1


class ConsoleFooter(Footer):
    def __init__(self) -> None:
        super().__init__(compact=True)
        self._laid_width = 0

    def compose(self) -> Iterable[Widget]:
        items = list(super().compose())
        width = self.app.size.width
        self._laid_width = width
        keys = [w for w in items if not w.has_class("-command-palette")]
        palette = [w for w in items if w.has_class("-command-palette")]
        need = sum(key_width(k) if isinstance(k, FooterKey) else 0 for k in keys)
        if palette and need + PALETTE_KEY <= width:
            yield from keys
            yield from palette
            return
        helps = [k for k in keys if isinstance(k, FooterKey) and k.action == "help"]
        room = width - sum(key_width(k) for k in helps) + 1   # the space after the last key may fall off
        for k in keys:
            if k in helps:
                continue
            w = key_width(k) if isinstance(k, FooterKey) else 0
            if w > room:
                break
            room -= w
            yield k
        yield from helps

    def on_resize(self, event: events.Resize) -> None:
        if self.app.size.width != self._laid_width:
            self.call_after_refresh(self.recompose)
