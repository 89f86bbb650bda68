"""bench/venv.py: a benchmark measures the Careen users install, and says which one it measured
(issue 16: "Every benchmark runs Careen from a virtual environment made with pip install .").
No venv is made here: the installer is replaced, the command it would run is checked."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import planning, venv


def test_a_benchmark_reruns_itself_with_the_user_install_and_only_bench_on_the_path(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user = tmp_path / "venv" / "bin" / "python"
    seen: list[tuple[list[str], dict[str, str]]] = []

    def run(command: list[str], *, env: dict[str, str], check: bool) -> Any:
        seen.append((command, env))
        return subprocess.CompletedProcess(command, 7)

    monkeypatch.setattr(venv, "user_python", lambda: user)
    monkeypatch.setattr(venv.subprocess, "run", run)
    monkeypatch.setenv("PYTHONPATH", "/somewhere/src")
    monkeypatch.delenv("CAREEN_BENCH_RERUN", raising=False)

    assert planning.main(["--sizes", "20", "--repeat", "1"]) == 7  # the re-run's exit code
    ((command, env),) = seen
    assert command == [str(user), "-m", "bench.planning", "--sizes", "20", "--repeat", "1"]
    # The repository's top holds bench/, not careen (it is under src/): the venv's own copy
    # of Careen is the one imported, never the working tree.
    assert env["PYTHONPATH"] == str(venv.REPO)
    assert not (venv.REPO / "careen").exists() and (venv.REPO / "src" / "careen").is_dir()


def test_a_rerun_that_lands_outside_a_user_install_stops_instead_of_looping(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAREEN_BENCH_RERUN", "1")
    with pytest.raises(SystemExit, match="was to be a user's venv"):
        venv.rerun_in_user_venv("bench.planning", [])


def test_the_report_names_the_install_it_measured(tmp_path: Path) -> None:
    out = tmp_path / "p.json"
    assert planning.main(["--in-process", "--sizes", "20", "--repeat", "1",
                          "--workdir", str(tmp_path), "--json", str(out)]) == 0
    install = json.loads(out.read_text())["install"]
    assert install.startswith("careen ") and "--in-process, not a user's install" in install
