"""Server text made safe to quote in a message, and whole numbers read from headers."""

from __future__ import annotations

#: Longest text of a server message quoted in an error (Harbor's can hold a whole list).
MESSAGE_MAX = 200


def one_line(text: str, limit: int = MESSAGE_MAX) -> str:
    """Server text made safe to quote: control characters escaped, length bounded."""
    flat = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text.strip())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def shown(value: str, limit: int = 80) -> str:
    """An untrusted name quoted for a message (``repr`` escapes newlines and quotes)."""
    return repr(value if len(value) <= limit else value[: limit - 3] + "...")


def whole_number(text: str) -> int | None:
    """``text`` as a whole number >= 0 if it is only ASCII digits (``str.isdigit`` also takes
    ``'²'``, which ``int`` refuses)."""
    return int(text) if text.isascii() and text.isdigit() else None
