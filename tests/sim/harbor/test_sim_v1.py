"""The Harbor 1.x read API (NOTES §8(d), §9)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from careen.sim.harbor import Fleet, HarborSpec, SimOptions, SimulatorServer

FLEET = {
    "harbor_version": "1.6.3",
    "projects": [{"name": "library", "repositories": [
        {"name": "grafana", "artifacts": [{"tags": ["4.1.2"],
                                           "scan": {"high": 6, "critical": 1, "medium": 2}}]},
        {"name": "team/app", "artifacts": [{"tags": ["1.0"], "scan": None}]},
    ]}],
}


@pytest.fixture(scope="module")
def v1() -> Iterator[tuple[SimulatorServer, httpx.Client]]:
    with SimulatorServer(Fleet.from_dict(FLEET), SimOptions()) as sim, httpx.Client(
            base_url=sim.url, auth=("admin", "Harbor12345")) as client:
        yield sim, client


def test_v1_tags_with_integer_scan_overview(v1: tuple[SimulatorServer, httpx.Client]) -> None:
    """NOTES §9.2: image_digest, 'finished', severity 5 (critical counted as high), components
    summary with integer severities."""
    sim, client = v1
    assert sim.api_url.endswith("/api")
    projects = client.get("/api/projects").json()
    repos = client.get("/api/repositories", params={"project_id": projects[0]["project_id"]})
    assert {r["name"] for r in repos.json()} == {"library/grafana", "library/team/app"}
    tags = client.get("/api/repositories/library/grafana/tags")
    overview = tags.json()[0]["scan_overview"]
    assert overview["scan_status"] == "finished"
    assert overview["severity"] == 5
    counts = {e["severity"]: e["count"] for e in overview["components"]["summary"]}
    assert counts[5] == 7 and counts[4] == 2 and counts[1] > 0
    assert overview["components"]["total"] == sum(counts.values())
    spec = HarborSpec.load("v1")
    assert spec.find("GET", "/api/repositories/library/grafana/tags") is not None


def test_v1_nested_repo_unencoded_and_never_scanned(
        v1: tuple[SimulatorServer, httpx.Client]) -> None:
    """NOTES §9.1: repo names go raw; scan_overview omitted when never scanned."""
    _, client = v1
    tag = client.get("/api/repositories/library/team/app/tags/1.0").json()
    assert tag["name"] == "1.0" and "scan_overview" not in tag


def test_v1_errors_are_plain_text(v1: tuple[SimulatorServer, httpx.Client]) -> None:
    """NOTES §9.1: errors via http.Error, plain text."""
    _, client = v1
    response = client.get("/api/repositories")
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/plain")
    assert client.get("/api/repositories/library/none/tags").status_code == 404
    assert client.get("/api/v2.0/projects").status_code == 404


def test_v1_page_size_is_clamped(v1: tuple[SimulatorServer, httpx.Client]) -> None:
    """NOTES §9.1: page_size above 500 silently clamps; no 422."""
    _, client = v1
    response = client.get("/api/projects", params={"page_size": 5000})
    assert response.status_code == 200 and response.headers["x-total-count"] == "1"
