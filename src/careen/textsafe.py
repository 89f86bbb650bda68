"""Text from a server made safe for where it goes: a terminal or a spreadsheet.

A Harbor (or a proxy in front of it) chooses scanner names, messages and versions. Written raw,
``\\x1b[2J`` clears a terminal and ``=HYPERLINK("...")`` runs as a formula when the CSV of
``careen images -f csv`` is opened in a spreadsheet (issue 18 row 11; OWASP "CSV injection").
"""

from __future__ import annotations

import re

#: Terminal escape sequences: CSI (``ESC [ ... final``), OSC (``ESC ] ... BEL/ST``) and the
#: two-character ones.
_ESCAPES = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b.?")
#: C0 and C1 control characters and DEL, and the bidirectional overrides that reorder text.
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
#: What a spreadsheet reads as the start of a formula (a tab or CR before one as well).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def terminal_text(text: str) -> str:
    """``text`` without terminal escapes and control characters, on one line."""
    return _CONTROLS.sub("", _ESCAPES.sub("", text.replace("\n", " ").replace("\t", " ")))


def csv_cell(value: object) -> object:
    """A CSV cell: text stripped of control characters and, when a spreadsheet would read
    it as a formula, prefixed with ``'`` so it stays text. Numbers, booleans and ``None``
    pass unchanged (a count of -3 is a number, not a formula)."""
    if not isinstance(value, str):
        return value
    clean = terminal_text(value)
    if value.startswith(FORMULA_STARTS) or clean.startswith(FORMULA_STARTS):
        return "'" + clean
    return clean


def csv_row(row: dict[str, object]) -> dict[str, object]:
    """Every cell of ``row`` through :func:`csv_cell`."""
    return {key: csv_cell(value) for key, value in row.items()}
