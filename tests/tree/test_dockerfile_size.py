"""The size bound of a Dockerfile read from disk: read whole up to it, refused past it."""

from __future__ import annotations

from pathlib import Path

import pytest

from careen.errors import InputFileError
from careen.tree.dockerfile import MAX_DOCKERFILE_BYTES, read_dockerfile


def dockerfile_of(path: Path, size: int) -> Path:
    """A Dockerfile of exactly ``size`` bytes: one long comment line, then its one FROM."""
    last = b"FROM library/base:1.0\n"
    path.write_bytes(b"#" + b"x" * (size - len(last) - 2) + b"\n" + last)
    assert path.stat().st_size == size
    return path


@pytest.mark.parametrize("size", [100, 64 * 1024 - 1, 64 * 1024, 64 * 1024 + 1, 300_000,
                                  MAX_DOCKERFILE_BYTES])
def test_a_dockerfile_up_to_the_bound_is_read_to_its_last_line(tmp_path: Path,
                                                               size: int) -> None:
    parsed = read_dockerfile(dockerfile_of(tmp_path / "Dockerfile", size))
    assert [parent.short for parent in parsed.parents] == ["library/base:1.0"]


def test_a_dockerfile_past_the_bound_is_refused(tmp_path: Path) -> None:
    path = dockerfile_of(tmp_path / "Dockerfile", MAX_DOCKERFILE_BYTES + 1)
    with pytest.raises(InputFileError, match="larger than 4 MiB: not a Dockerfile"):
        read_dockerfile(path)
