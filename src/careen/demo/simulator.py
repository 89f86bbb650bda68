"""The demo's Harbor simulator: what it mirrors, how it scans, and the settings file its
process reads (:mod:`careen.demo.harbor_process` runs it).

:class:`SimulatorSettings` names the registry it mirrors and the files holding the
passwords: no secret is ever on the process's command line.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from careen.fileio import write_atomically
from careen.sim.harbor import Fleet, ScanDelays, SimOptions, SimulatorServer
from careen.sim.harbor.fleet import UserSpec
from careen.sim.harbor.package_scanner import package_scanner_from_file

#: A scan stays Pending, then Running this long (seconds): visible, but quick.
SCAN_DELAYS = ScanDelays(pending=0.1, running=0.3)
#: The mirror reads the registry again on every listing (a push shows up at once, as it does
#: in a real Harbor, whose registry the push goes through) and every second in the background
#: (so a scan asked for a digest just pushed finds it, listing or not).
REGISTRY_REFRESH_SECONDS = 0.0
REGISTRY_WATCH_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class SimulatorSettings:
    registry_url: str
    registry_user: str
    registry_password_file: str
    harbor_user: str
    harbor_password_file: str
    advisories: str
    ready_file: str
    host: str = "127.0.0.1"
    port: int = 0

    def write(self, path: Path) -> None:
        write_atomically(path, json.dumps(asdict(self), indent=2) + "\n")

    @classmethod
    def read(cls, path: Path) -> SimulatorSettings:
        return cls(**json.loads(path.read_text(encoding="utf-8")))


def _secret(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def build_server(settings: SimulatorSettings) -> SimulatorServer:
    """The simulator the settings describe (not started)."""
    fleet = Fleet(users=(UserSpec(settings.harbor_user, _secret(settings.harbor_password_file),
                                  admin=True),), source="careen demo")
    options = SimOptions(
        registry_url=settings.registry_url,
        registry_auth=(settings.registry_user, _secret(settings.registry_password_file)),
        registry_refresh=REGISTRY_REFRESH_SECONDS, registry_watch=REGISTRY_WATCH_SECONDS,
        scanner=package_scanner_from_file(settings.advisories),
        scan_delay=SCAN_DELAYS, host=settings.host, port=settings.port,
    )
    return SimulatorServer(fleet, options)
