"""Atomic writes: whole files or none, nothing left behind."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from careen.errors import CareenError
from careen.fileio import NEW_FILE_MODE, write_atomically


def test_writes_text_exactly_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "vulnerable.list"
    write_atomically(target, "5=6,   library/activemq:5.14.4\n")
    assert target.read_bytes() == b"5=6,   library/activemq:5.14.4\n"
    assert os.listdir(tmp_path) == ["vulnerable.list"]
    assert stat.S_IMODE(target.stat().st_mode) == NEW_FILE_MODE


def test_replaces_an_existing_file_and_keeps_its_mode(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o600)
    write_atomically(str(target), b"{}\r\n")
    assert target.read_bytes() == b"{}\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["report.json"]


def test_a_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    target = tmp_path / "no-such-folder" / "vulnerable.list"
    with pytest.raises(CareenError, match=r"cannot write .*no-such-folder/vulnerable\.list"):
        write_atomically(target, "x\n")
    assert not target.parent.exists()


def test_a_failed_rename_removes_the_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "inside").write_text("keep")
    with pytest.raises(CareenError, match="cannot write"):
        write_atomically(target, "x\n")
    assert sorted(os.listdir(tmp_path)) == ["taken"]
    assert (target / "inside").read_text() == "keep"
