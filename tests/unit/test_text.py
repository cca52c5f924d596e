"""printable(): no control sequence from outside reaches the terminal, whatever it holds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudisense.node._text import UNSAFE, printable

pytestmark = pytest.mark.timeout(60)


def test_known_attacks_are_shown_not_executed() -> None:
    assert printable("ok\r\x1b[2Kstep 1: supervisor.status") == "ok\\x0d\\x1b[2Kstep 1: supervisor.status"
    assert printable("\x1b]0;pwned\x07title") == "\\x1b]0;pwned\\x07title"
    assert printable("abc\u202edcba") == "abc\\u202edcba"
    assert printable("\x9b31m") == "\\x9b31m"
    assert printable("a\nb") == "a\\x0ab"
    assert printable("a\nb\tc", keep_newlines=True) == "a\nb\tc"
    assert printable("x" * 10, limit=4) == "xxxx…"


@settings(max_examples=500, deadline=None)
@given(st.text(), st.booleans())
def test_no_unsafe_character_survives(s: str, keep: bool) -> None:
    out = printable(s, keep_newlines=keep)
    assert not UNSAFE.search(out)
    assert "\x1b" not in out and "\r" not in out
    if not keep:
        assert "\n" not in out and "\t" not in out
