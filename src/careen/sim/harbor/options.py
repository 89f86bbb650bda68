"""How a simulator behaves (:class:`SimOptions`) and what it counted (:class:`SimStats`)."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field

from careen.sim.harbor.faults import FaultPlan
from careen.sim.harbor.scanner import Scanner
from careen.sim.harbor.state import ScanDelays

DEFAULT_DELAYS = ScanDelays()


@dataclass(frozen=True, slots=True)
class SimOptions:
    """Options of one simulator.

    ``api``: ``"v2.0"`` or ``"v1"``; ``None`` follows the fleet's ``harbor_version``.
    ``scan_delay``: time a requested scan stays Pending and then Running (a float sets both).
    ``latency``: seconds added to every response (``asyncio.sleep``, never blocking).
    ``overview_latency``: extra seconds on ``with_scan_overview=true`` list calls (NOTES §12.3).
    ``faults``: seeded fault injection. ``registry_url``/``registry_auth``: read artifacts from
    a real OCI registry (refreshed at most every ``registry_refresh`` seconds when listed,
    and, with ``registry_watch`` > 0, every ``registry_watch`` seconds in the background:
    Harbor hears of a push from the registry's notification, so a scan asked for a digest
    just pushed finds it; :class:`~careen.sim.harbor.server.SimulatorServer` only).
    ``session_cookie``: send ``Set-Cookie: sid=…`` like Harbor does (NOTES §3).
    ``scanner``: replaces the fleet's table scanner.
    """

    api: str | None = None
    scan_delay: ScanDelays | float = DEFAULT_DELAYS
    latency: float = 0.0
    overview_latency: float = 0.0
    faults: FaultPlan | None = None
    registry_url: str | None = None
    registry_auth: tuple[str, str] | None = field(default=None, repr=False)
    registry_refresh: float = 1.0
    registry_watch: float = 0.0
    session_cookie: bool = True
    scanner: Scanner | None = None
    host: str = "127.0.0.1"
    port: int = 0

    @property
    def delays(self) -> ScanDelays:
        if isinstance(self.scan_delay, ScanDelays):
            return self.scan_delay
        return ScanDelays(float(self.scan_delay), float(self.scan_delay))


class SimStats:
    """Request counters: total, per path template (``GET /projects/{project_name}/...``),
    per status code, per injected fault."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_template: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()

    def record(self, template: str, status: int) -> None:
        with self._lock:
            self.total += 1
            self.by_template[template] += 1
            self.by_status[status] += 1

    def fault(self, kind: str) -> None:
        with self._lock:
            self.faults[kind] += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            return {"total": self.total, "by_template": dict(self.by_template),
                    "by_status": dict(self.by_status), "faults": dict(self.faults)}

    def reset(self) -> None:
        with self._lock:
            self.total = 0
            self.by_template.clear()
            self.by_status.clear()
            self.faults.clear()
