"""Hypothesis strategies shared by several test files, built to be cheap per example.

Hypothesis' cost per example grows with the number of draws: a list of ``n`` elements is
about ``2n`` choices (one "one more?" and the element each), each with its own bookkeeping,
while a string of ``n`` characters is a single choice.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

#: Where the private alphabet of :func:`concatenations` starts (any code point would do: its
#: characters are only indexes, never part of a generated value).
_FIRST = 0x100


def concatenations(pieces: Sequence[str], *, max_size: int, min_size: int = 0,
                   sep: str = "") -> st.SearchStrategy[str]:
    """``sep.join`` of ``min_size`` to ``max_size`` of ``pieces`` (with repeats, in any
    order): the values ``st.lists(st.sampled_from(pieces), min_size=min_size,
    max_size=max_size).map(sep.join)`` gives, with the same distribution (each piece equally
    likely, the same average length), drawn as one string choice whose characters name the
    pieces. Measured: about half the CPU of the list per example."""
    if not pieces or len(pieces) > 256:
        # Beyond 256 characters hypothesis draws the first 256 more often: no longer uniform.
        raise ValueError(f"1 to 256 pieces, not {len(pieces)}")
    chosen = tuple(pieces)
    alphabet = "".join(chr(_FIRST + index) for index in range(len(chosen)))

    def joined(indexes: str) -> str:
        return sep.join([chosen[ord(character) - _FIRST] for character in indexes])

    return st.text(alphabet, min_size=min_size, max_size=max_size).map(joined)
