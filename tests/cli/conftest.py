"""Run the CLI in-process as a user would: arguments in, exit code and streams out."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from careen.cli.main import SEED_COMMANDS, _run, run_seed_command
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def careen(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[object]:
    """``careen("vulnerable", "-o", "-")`` runs the command in ``tmp_path`` with a clean
    environment (no CAREEN_* or registry_* variables of the machine leak in)."""
    import os

    for name in list(os.environ):
        if name.startswith("CAREEN_") or name.lower().startswith("registry_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)

    def run(*args: str, prog: str = "careen") -> Result:
        capsys.readouterr()
        code = run_seed_command(prog, args) if prog in SEED_COMMANDS else _run(list(args), prog)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    yield run


@pytest.fixture(scope="session")
def sample_harbor() -> Iterator[SimulatorServer]:
    options = SimOptions(scan_delay=ScanDelays(pending=0.05, running=0.05))
    with SimulatorServer(Fleet.from_file(SAMPLES / "fleet.yaml"), options) as server:
        yield server


def point_careen_at(harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch) -> SimulatorServer:
    """A fresh copy of the simulator's fleet, and careen's environment aimed at it with the
    simulator's admin account."""
    harbor.reset()
    monkeypatch.setenv("CAREEN_HARBOR_URL", harbor.url)
    monkeypatch.setenv("CAREEN_HARBOR_USER", "admin")
    monkeypatch.setenv("CAREEN_HARBOR_PASSWORD", "Harbor12345")
    return harbor


@pytest.fixture
def harbor_env(sample_harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
               careen: object) -> SimulatorServer:
    return point_careen_at(sample_harbor, monkeypatch)
