"""Server-sent text reaches the terminal without escape sequences or control characters."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from comfykit.text import printable


def test_colours_titles_and_cursor_moves_are_removed_whole() -> None:
    assert printable("\x1b[31mred\x1b[0m text") == "red text"
    assert printable("\x1b]0;pwned title\x07after") == "after"
    assert printable("a\x1b[2J\x1b[Hb") == "ab"
    assert printable("bell\x07\x07 and \x9b31m c1") == "bell and 31m c1"


def test_newlines_tabs_and_ordinary_unicode_stay() -> None:
    text = "KSampler\tfailed:\nCUDA out of memory — 日本語 ✓"
    assert printable(text) == text


def test_bidi_overrides_are_removed() -> None:
    assert printable("file\u202egnp.exe") == "filegnp.exe"


@given(st.text())
def test_nothing_that_controls_a_terminal_survives(text: str) -> None:
    shown = printable(text)
    assert "\x1b" not in shown and "\x9b" not in shown and "\x07" not in shown
    assert not any(_is_control(ch) for ch in shown if ch not in "\n\t")


def _is_control(ch: str) -> bool:
    return ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F or ch in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cf", "Cs", "Zl", "Zp"))))
def test_printable_text_is_unchanged(text: str) -> None:
    assert printable(text) == text
