"""Making text a server sent safe to show on a terminal.

Error messages, node titles and file names come from the server, and a hostile one can put
escape sequences in them that recolour, rewrite or hide what the terminal shows (or set its
title, or ring forever).  :func:`printable` removes escape sequences whole, other control
characters, and the Unicode controls that reorder text; newlines and tabs stay.
"""

from __future__ import annotations

import re

__all__ = ["printable"]

# ESC followed by a CSI / OSC / other sequence, matched whole so that no "[31m" is left behind.
_ESCAPE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]"          # CSI: ESC [ params intermediates final
    r"|\][^\x07\x1b]*(?:\x07|\x1b\\)?"     # OSC: ESC ] ... BEL or ST
    r"|[PX^_][^\x1b]*(?:\x1b\\)?"          # DCS, SOS, PM, APC ... ST
    r"|[ -/]*[0-~]?)"                      # two- and three-character sequences, or a lone ESC
)
# C0 controls but tab and newline, DEL, C1 controls (0x9b is a one-byte CSI), bidi controls.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without terminal escape sequences and control characters (newlines and tabs kept)."""
    if text.isprintable():
        return text  # the common case, checked in C
    return _CONTROL.sub("", _ESCAPE.sub("", text))
