from __future__ import annotations

import json
import sys
from pathlib import Path

from bench import startup


def fake_venv(folder: Path) -> Path:
    """A venv-shaped folder running this interpreter (the development environment, with
    Careen from these sources): what the benchmark must not call a plain install."""
    bin_ = folder / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").symlink_to(sys.executable)
    careen = bin_ / "careen"
    careen.write_text(f"#!{sys.executable}\nfrom careen.cli.main import main\nmain()\n")
    careen.chmod(0o755)
    return folder


def test_startup_runs_at_a_toy_size_and_says_what_venv_it_measured(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    folder = fake_venv(tmp_path / "venv")
    assert startup.main(["--venv", str(folder), "--repeat", "1", "--importtime",
                         "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert set(report["median_seconds"]) == {"python -c 'import httpx'", "careen --version",
                                             "careen --help"}
    assert all(len(times) == 1 for times in report["seconds"].values())
    assert [t["target"] for t in report["targets"]] == [
        "careen --version <= 3x import httpx", "careen --help <= 3x import httpx"]
    # The development environment holds the test extras: not what users install.
    assert report["venv"]["plain"] is False
    assert report["venv_kind"].startswith("NOT a plain `pip install .` venv")
    names = [name for name, _ in report["import_list"]]
    assert "careen.cli.main" in names
    assert not any(name.startswith(("careen.sim", "jsonschema", "starlette")) for name in names)
