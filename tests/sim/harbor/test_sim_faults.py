"""Fault injection: reproducible per seed, and what a client really sees."""

from __future__ import annotations

import httpx
import pytest

from careen.sim.harbor import Fault, FaultPlan, Fleet, SimOptions, SimulatorServer
from tests.sim.conftest import ADMIN, API, FLEET


def test_same_seed_same_sequence() -> None:
    plan = FaultPlan(error_rate=0.1, rate_limit_rate=0.05, drop_rate=0.05, slow_rate=0.02,
                     seed=42)
    from careen.sim.harbor.faults import FaultInjector

    first = FaultInjector(plan).sequence(500)
    assert first == FaultInjector(plan).sequence(500)
    assert first != FaultInjector(FaultPlan(error_rate=0.1, rate_limit_rate=0.05,
                                            drop_rate=0.05, slow_rate=0.02, seed=43)
                                  ).sequence(500)
    assert {Fault.ERROR, Fault.RATE_LIMIT, Fault.DROP, Fault.SLOW} <= set(first)


def test_rates_are_checked() -> None:
    with pytest.raises(ValueError, match="add up to at most 1"):
        FaultPlan(error_rate=0.7, drop_rate=0.5)


def _observe(sim: SimulatorServer, n: int) -> list[str]:
    seen = []
    with httpx.Client(base_url=sim.url, auth=ADMIN, timeout=5) as client:
        for _ in range(n):
            try:
                response = client.get(f"{API}/projects")
            except httpx.RemoteProtocolError:
                seen.append("dropped")
                continue
            seen.append(str(response.status_code))
    return seen


def test_faults_over_http_are_deterministic_and_real() -> None:
    """A drop closes the TCP connection without a response; 500 is masked (NOTES §4); 429
    carries Retry-After. The same seed and request order give the same outcomes."""
    plan = FaultPlan(error_rate=0.2, rate_limit_rate=0.2, drop_rate=0.2, retry_after=3,
                     seed=7)
    options = SimOptions(faults=plan)
    with SimulatorServer(Fleet.from_dict(FLEET), options) as sim:
        first = _observe(sim, 30)
        expected = {"none": "200", "error": "500", "rate_limit": "429", "drop": "dropped"}
        assert first == [expected[f.value] for f in sim.app.faults.history]  # type: ignore[union-attr]
        sim.reset()
        assert _observe(sim, 30) == first
        assert {"200", "500", "429", "dropped"} <= set(first)
        # Look at one of each closely.
        sim.reset()
        with httpx.Client(base_url=sim.url, auth=ADMIN) as client:
            for fault in sim.app.faults.sequence(30):  # type: ignore[union-attr]
                try:
                    response = client.get(f"{API}/projects")
                except httpx.RemoteProtocolError as exc:
                    assert fault is Fault.DROP
                    assert "without sending" in str(exc) or "disconnected" in str(exc)
                    continue
                if fault is Fault.ERROR:
                    assert response.json() == {"errors": [
                        {"code": "UNKNOWN", "message": "internal server error"}]}
                if fault is Fault.RATE_LIMIT:
                    assert response.headers["retry-after"] == "3"
                    assert response.json()["errors"][0]["code"] == "TOO_MANY_REQUEST"


def test_ping_is_not_faulted() -> None:
    with SimulatorServer(Fleet.from_dict(FLEET), SimOptions(faults=FaultPlan(
            error_rate=1.0))) as sim, httpx.Client(base_url=sim.url) as client:
        assert client.get(f"{API}/ping").status_code == 200
        assert client.get(f"{API}/projects").status_code == 500
