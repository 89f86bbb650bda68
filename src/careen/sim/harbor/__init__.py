"""A Harbor API simulator held to Harbor's own swagger spec (and NOTES.md where the real
server departs from it).

    from careen.sim.harbor import Fleet, SimOptions, SimulatorServer, HarborSpec
    with SimulatorServer(Fleet.from_file("samples/fleet.yaml"), SimOptions()) as sim:
        sim.url, sim.state, sim.stats
"""

from typing import TYPE_CHECKING, Any

from careen.sim.harbor.faults import Fault, FaultPlan
from careen.sim.harbor.fleet import ArtifactSpec, Fleet, ScannerSpec, ScanResult
from careen.sim.harbor.options import SimOptions, SimStats
from careen.sim.harbor.scanner import Scanner, ScanTarget, TableScanner
from careen.sim.harbor.server import SimulatorServer, build_app, serve
from careen.sim.harbor.state import ScanDelays, SimState

if TYPE_CHECKING:
    from careen.sim.harbor.contract import (
        ContractViolation,
        HarborSpec,
        validating_async_client,
        validating_client,
    )

#: Checking answers against Harbor's swagger needs jsonschema (the test extra): loaded when
#: one of these names is first used, so the simulator runs from a plain ``pip install .``.
_CONTRACT = frozenset({"ContractViolation", "HarborSpec", "validating_async_client",
                       "validating_client"})

__all__ = [
    "ArtifactSpec", "ContractViolation", "Fault", "FaultPlan", "Fleet", "HarborSpec",
    "ScanDelays", "ScanResult", "ScanTarget", "Scanner", "ScannerSpec", "SimOptions",
    "SimState", "SimStats", "SimulatorServer", "TableScanner", "build_app", "serve",
    "validating_async_client", "validating_client",
]


def __getattr__(name: str) -> Any:
    if name in _CONTRACT:
        from careen.sim.harbor import contract

        return getattr(contract, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
