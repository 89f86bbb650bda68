"""A Harbor API simulator held to Harbor's own swagger spec (and NOTES.md where the real
server departs from it).

    from careen.sim.harbor import Fleet, SimOptions, SimulatorServer, HarborSpec
    with SimulatorServer(Fleet.from_file("samples/fleet.yaml"), SimOptions()) as sim:
        sim.url, sim.state, sim.stats
"""

from careen.sim.harbor.contract import (
    ContractViolation,
    HarborSpec,
    validating_async_client,
    validating_client,
)
from careen.sim.harbor.faults import Fault, FaultPlan
from careen.sim.harbor.fleet import ArtifactSpec, Fleet, ScannerSpec, ScanResult
from careen.sim.harbor.options import SimOptions, SimStats
from careen.sim.harbor.scanner import Scanner, ScanTarget, TableScanner
from careen.sim.harbor.server import SimulatorServer, build_app, serve
from careen.sim.harbor.state import ScanDelays, SimState

__all__ = [
    "ArtifactSpec", "ContractViolation", "Fault", "FaultPlan", "Fleet", "HarborSpec",
    "ScanDelays", "ScanResult", "ScanTarget", "Scanner", "ScannerSpec", "SimOptions",
    "SimState", "SimStats", "SimulatorServer", "TableScanner", "build_app", "serve",
    "validating_async_client", "validating_client",
]
