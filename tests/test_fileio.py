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


def test_the_next_write_removes_what_a_killed_writer_left_and_only_that(tmp_path: Path) -> None:
    """A writer killed between writing and renaming (SIGKILL: the crash-anywhere test of
    issue 7) leaves its temporary file; the next write of the same file removes it, and never
    a live writer's, nor another file's, nor one it cannot tell the writer of."""
    import subprocess
    import sys

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        killed = tmp_path / f".careen.json.{dead_pid}.abc123.tmp"
        running = tmp_path / f".careen.json.{live.pid}.def456.tmp"
        other_file = tmp_path / f".vulnerable.list.{dead_pid}.ghi789.tmp"
        no_pid = tmp_path / ".careen.json.jkl012.tmp"
        for leftover in (killed, running, other_file, no_pid):
            leftover.write_text("half a report")

        write_atomically(tmp_path / "careen.json", "{}\n")

        assert (tmp_path / "careen.json").read_text() == "{}\n"
        assert not killed.exists()
        assert running.exists() and other_file.exists() and no_pid.exists()
    finally:
        live.kill()
        live.wait()
