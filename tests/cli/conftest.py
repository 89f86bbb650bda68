"""Run the CLI in-process as a user would: arguments in, exit code and streams out."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from tests.cli_runner import Careen, in_process_careen

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture
def careen(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
           tmp_path: Path) -> Iterator[Careen]:
    """``careen("vulnerable", "-o", "-")`` runs the command in ``tmp_path`` with a clean
    environment (no CAREEN_* or registry_* variables of the machine leak in)."""
    yield in_process_careen(capsys, monkeypatch, tmp_path)


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
