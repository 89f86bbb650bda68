"""Hypothesis strategies shared by several test files, built to be cheap per example.

Hypothesis' cost per example grows with the number of draws: a list of ``n`` elements is
about ``2n`` choices (one "one more?" and the element each), each with its own bookkeeping,
while a string of ``n`` characters is a single choice, drawn in one call. So these draw
strings whose characters say what to build. Each gives the same values as the plain strategy
named in its docstring, with the same distribution; shrinking differs, not what is tried.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

from hypothesis import strategies as st

#: Where the private alphabets below start (any code point would do: their characters are
#: only indexes, never part of a generated value).
_FIRST = 0x100

T = TypeVar("T")


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


def text_favouring(favoured: Sequence[str], *, max_size: int) -> st.SearchStrategy[str]:
    """The strings ``st.text(alphabet=st.sampled_from(favoured) | st.characters(
    exclude_categories=["Cs"]), max_size=max_size)`` gives, with the same distribution: each
    character, with even odds, one of ``favoured`` (equally likely) or any character but a
    surrogate. Drawn as two strings (which positions are favoured and which, then the other
    characters in one go) rather than as a choice of alternative per character: about a
    quarter of the CPU per example."""
    if not favoured or len(favoured) > 128:
        raise ValueError(f"1 to 128 favoured characters, not {len(favoured)}")
    chosen = tuple(favoured)
    # Codes below _FIRST + len(chosen) name a favoured character; as many above stand for
    # "any character", so each kind is drawn as often as the other.
    codes = st.text("".join(chr(_FIRST + index) for index in range(2 * len(chosen))),
                    max_size=max_size)
    any_character = st.characters(exclude_categories=["Cs"])

    @st.composite
    def favouring(draw: st.DrawFn) -> str:
        layout = [ord(code) - _FIRST for code in draw(codes)]
        others = sum(index >= len(chosen) for index in layout)
        filler = iter(draw(st.text(any_character, min_size=others, max_size=others)))
        return "".join(chosen[index] if index < len(chosen) else next(filler)
                       for index in layout)

    return favouring()


def pieces_or(pieces: Sequence[str], other: st.SearchStrategy[str], *,
              max_size: int) -> st.SearchStrategy[str]:
    """The strings ``st.lists(st.sampled_from(pieces) | other, max_size=max_size)
    .map("".join)`` gives, with the same distribution: up to ``max_size`` parts, each with
    even odds one of ``pieces`` (equally likely) or a value of ``other``. Drawn as a string
    saying which part is which, then the values of ``other`` it asks for as one list: about
    half the CPU per example of a choice of alternative per part."""
    if not pieces or len(pieces) > 128:
        raise ValueError(f"1 to 128 pieces, not {len(pieces)}")
    chosen = tuple(pieces)
    codes = st.text("".join(chr(_FIRST + index) for index in range(2 * len(chosen))),
                    max_size=max_size)

    @st.composite
    def joined(draw: st.DrawFn) -> str:
        layout = [ord(code) - _FIRST for code in draw(codes)]
        count = sum(index >= len(chosen) for index in layout)
        others = iter(draw(st.lists(other, min_size=count, max_size=count)))
        return "".join([chosen[index] if index < len(chosen) else next(others)
                        for index in layout])

    return joined()


def lists_of_one_of(alternatives: Sequence[st.SearchStrategy[T]], *,
                    max_size: int | None = None, min_size: int = 0) -> st.SearchStrategy[list[T]]:
    """The lists ``st.lists(st.one_of(*alternatives), min_size=min_size, max_size=max_size)``
    gives, with the same distribution. Like ``one_of``, each element comes from one of the
    *branches* of ``alternatives``, equally likely: nested ``one_of`` flattened, a strategy
    named twice counted once (hypothesis tells strategies apart by identity). Drawn as a
    string saying which branch each element comes from, then, per branch, its values as one
    list of known size: no "one more?" and no choice of branch per element."""
    branches = list(st.one_of(*alternatives).branches)
    if not branches or len(branches) > 256:
        # Beyond 256 characters hypothesis draws the first 256 more often: no longer uniform.
        raise ValueError(f"1 to 256 branches, not {len(branches)}")
    codes = st.text("".join(chr(_FIRST + index) for index in range(len(branches))),
                    min_size=min_size, max_size=max_size)

    @st.composite
    def listed(draw: st.DrawFn) -> list[T]:
        layout = [ord(code) - _FIRST for code in draw(codes)]
        values: list[Iterator[T]] = []
        for index, branch in enumerate(branches):
            count = layout.count(index)
            values.append(iter(draw(st.lists(branch, min_size=count, max_size=count)))
                          if count else iter(()))
        return [next(values[index]) for index in layout]

    return listed()
