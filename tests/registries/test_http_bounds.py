""":func:`careen.registries.http.read_bounded`: a body is counted once decoded, and a
compressed one is inflated only as far as the bound (issue 18 row 7)."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator

import pytest

from careen.registries.http import ACCEPT_ENCODING, _BadEncoding, _TooLarge, read_bounded


async def chunks(data: bytes, size: int = 4096) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


BODY = b'[{"name": "library"}]' * 500


@pytest.mark.parametrize(("encoding", "encode"), [
    ("identity", lambda b: b), ("", lambda b: b), ("gzip", gzip.compress),
    ("GZIP", gzip.compress), ("deflate", zlib.compress)])
async def test_every_coding_asked_for_is_decoded(encoding: str, encode: object) -> None:
    assert callable(encode)
    assert await read_bounded(chunks(encode(BODY)), encoding, len(BODY)) == BODY


async def test_one_byte_over_the_bound_is_refused() -> None:
    with pytest.raises(_TooLarge):
        await read_bounded(chunks(BODY), "identity", len(BODY) - 1)


async def test_an_inflating_body_is_refused_after_the_bound_not_after_inflating() -> None:
    """64 MiB of zeros in one chunk of about 64 KiB: refused with at most the bound
    inflated (zlib is asked for ``limit + 1`` bytes at a time)."""
    bomb = gzip.compress(b"\0" * (64 << 20), compresslevel=9)
    assert len(bomb) < 128 * 1024
    with pytest.raises(_TooLarge):
        await read_bounded(chunks(bomb, size=len(bomb)), "gzip", 1 << 20)


async def test_a_coding_not_asked_for_or_broken_is_refused() -> None:
    assert "br" not in ACCEPT_ENCODING
    with pytest.raises(_BadEncoding):
        await read_bounded(chunks(b"x"), "br", 1024)
    with pytest.raises(_BadEncoding):
        await read_bounded(chunks(b"not gzip at all"), "gzip", 1024)
