"""Fixtures for the Harbor simulator tests: a small fleet, a running simulator, and httpx
clients that check every request and response against Harbor's spec."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from careen.sim.harbor import (
    Fleet,
    HarborSpec,
    ScanDelays,
    SimOptions,
    SimulatorServer,
    validating_client,
)

ADMIN = ("admin", "Harbor12345")
API = "/api/v2.0"

FLEET: dict[str, Any] = {
    "harbor_version": "2.14.0",
    "users": {"admin": "Harbor12345", "dev": {"password": "devpw", "projects": ["library"]}},
    "robots": [
        {"name": "robot$careen", "secret": "s3cret", "permissions": ["read", "scan", "addition"]},
        {"name": "robot$reader", "secret": "r3ad", "permissions": ["read"]},
        {"name": "robot$library+ci", "secret": "ci", "permissions": ["read", "scan"]},
        {"name": "robot$admin", "secret": "all", "permissions": ["read", "scan", "scan-all"]},
    ],
    "scan_results": {"library/grafana:4.1.2": {"high": 1}},
    "projects": [
        {"name": "library", "public": False, "repositories": [
            {"name": "activemq", "artifacts": [
                {"tags": ["5.14.4"], "scan": {"high": 6, "medium": 2, "fixable": 5}},
            ]},
            {"name": "httpd", "artifacts": [
                {"tags": [f"2.4.{i}"], "scan": {"medium": i}} for i in range(12)
            ] + [{"tags": [], "scan": None}]},
            {"name": "team/app", "artifacts": [
                {"tags": ["1.0", "latest"], "scan": {"critical": 1, "low": 2, "fixable": 1}},
                {"tags": ["0.9"], "scan": {"status": "Running"}},
                {"tags": ["0.8"], "scan": {"status": "Error"}},
            ]},
            {"name": "mysql", "artifacts": [{"tags": ["5.7.18"], "scan": None}]},
            {"name": "multi", "artifacts": [{"tags": ["1"], "platforms": [
                {"os": "linux", "architecture": "amd64"},
                {"os": "linux", "architecture": "arm64", "variant": "v8"}],
                "scan": {"medium": 1}}]},
        ]},
        {"name": "public-demo", "public": True, "repositories": [
            {"name": "nginx", "artifacts": [{"tags": ["1.25"], "scan": {"high": 1}}]},
        ]},
    ],
}


@pytest.fixture(scope="session")
def spec() -> HarborSpec:
    return HarborSpec.load("v2.0")


@pytest.fixture
def fleet() -> Fleet:
    return Fleet.from_dict(FLEET)


@pytest.fixture(scope="session")
def shared_sim() -> Iterator[SimulatorServer]:
    options = SimOptions(scan_delay=ScanDelays(pending=0.05, running=0.05), session_cookie=True)
    with SimulatorServer(Fleet.from_dict(FLEET), options) as server:
        yield server


@pytest.fixture
def sim(shared_sim: SimulatorServer, fleet: Fleet) -> SimulatorServer:
    """One server for the session, reset to the fleet for each test (starting uvicorn for
    every test would make the suite slow)."""
    shared_sim.reset(fleet)
    return shared_sim


def make_client(sim: SimulatorServer, auth: tuple[str, str] | None = ADMIN,
                **kwargs: Any) -> httpx.Client:
    """A validating client that, like a well-behaved API client, keeps no cookies."""
    return validating_client(sim.url, auth=auth, timeout=10, **kwargs)


@pytest.fixture
def admin(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with make_client(sim) as client:
        yield client


@pytest.fixture
def anonymous(sim: SimulatorServer) -> Iterator[httpx.Client]:
    with make_client(sim, auth=None) as client:
        yield client
