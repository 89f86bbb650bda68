"""The Harbor 1.x read API (NOTES §8(d), §9)."""

from __future__ import annotations

import json
from collections.abc import Iterator

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


# -- the seed's writes and its client's calls, every request and response held to the spec ------

WRITES_FLEET: dict[str, object] = {
    "harbor_version": "1.6.3",
    "users": {"admin": "Harbor12345", "dev": {"password": "devpw", "projects": ["library"]}},
    "scan_results": {"library/team/app:1.0": {"high": 2}},
    "projects": [{"name": "library", "repositories": [
        {"name": "grafana", "artifacts": [{"tags": ["4.1.2"], "size": 44_700_000,
                                           "scan": {"medium": 3}}]},
        {"name": "team/app", "artifacts": [{"tags": ["1.0"], "scan": None}]},
    ]}, {"name": "other", "repositories": [
        {"name": "nginx", "artifacts": [{"tags": ["1.13"], "scan": None}]}]}],
}
FAST = SimOptions(scan_delay=ScanDelays(0.05, 0.05))


def spec_client(sim: SimulatorServer, version: str = "v1",
                auth: tuple[str, str] | None = ("admin", "Harbor12345")) -> httpx.Client:
    return validating_client(sim.url, HarborSpec.load(version), auth=auth)


@pytest.fixture
def v16() -> Iterator[SimulatorServer]:
    with SimulatorServer(Fleet.from_dict(WRITES_FLEET), FAST) as sim:
        yield sim


@pytest.fixture
def v19() -> Iterator[SimulatorServer]:
    fleet = Fleet.from_dict({**WRITES_FLEET, "harbor_version": "1.9.4"})
    with SimulatorServer(fleet, FAST) as sim:
        yield sim


def test_login_gives_a_beego_session_the_api_accepts(v16: SimulatorServer) -> None:
    """NOTES §10: python-harborclient posts the form to /login (later /c/login) and sends
    the beegosessionID cookie back instead of credentials."""
    with httpx.Client(base_url=v16.url) as plain:
        assert plain.post("/login", data={"principal": "admin", "password": "no"}
                          ).status_code == 401
        for path in ("/login", "/c/login"):
            answer = plain.post(path, data={"principal": "admin", "password": "Harbor12345"})
            assert answer.status_code == 200 and answer.cookies.get("beegosessionID")
        session = answer.cookies["beegosessionID"]
    with spec_client(v16, auth=None) as client:
        assert client.get("/api/repositories/library/grafana/tags").status_code == 401
        tags = client.get("/api/repositories/library/grafana/tags",
                          headers={"Cookie": f"beegosessionID={session}"})
        assert tags.status_code == 200 and tags.json()[0]["name"] == "4.1.2"
        assert client.get("/api/repositories/library/grafana/tags",
                          headers={"Cookie": "beegosessionID=forged"}).status_code == 401


def test_manifest_layers_add_up_to_the_tag_size(v16: SimulatorServer) -> None:
    """NOTES §10: `harbor list` sums the manifest's layer sizes."""
    with spec_client(v16) as client:
        body = client.get("/api/repositories/library/grafana/tags/4.1.2/manifest").json()
        size = client.get("/api/repositories/library/grafana/tags/4.1.2").json()["size"]
    assert sum(layer["size"] for layer in body["manifest"]["layers"]) == size == 44_700_000
    assert json.loads(body["config"])["os"] == "linux"


def test_tag_scan_raw_nested_name_then_finished_overview(v16: SimulatorServer) -> None:
    """NOTES §9.1: POST …/tags/{tag}/scan with the repository raw; 200; then the tag's
    scan_overview goes pending -> finished with the scanner's counts (packages)."""
    with spec_client(v16) as client:
        assert "scan_overview" not in client.get(
            "/api/repositories/library/team/app/tags/1.0").json()
        assert client.post("/api/repositories/library/team/app/tags/1.0/scan").status_code == 200
        assert client.post("/api/repositories/library/team/app/tags/1.0/scan").status_code == 200
        pending = client.get("/api/repositories/library/team/app/tags/1.0").json()
        assert pending["scan_overview"]["scan_status"] in ("pending", "running")
        assert "components" not in pending["scan_overview"]
        v16.state.finish_scans()
        done = client.get("/api/repositories/library/team/app/tags/1.0").json()["scan_overview"]
    assert done["scan_status"] == "finished" and done["severity"] == 5
    assert {e["severity"]: e["count"] for e in done["components"]["summary"]}[5] == 2


def test_scan_all_up_to_1_7(v16: SimulatorServer) -> None:
    """NOTES §9.4: POST /api/repositories/scanAll[?project_id=N], 202, system admin only."""
    with spec_client(v16, auth=("dev", "devpw")) as dev, spec_client(v16, auth=None) as anon:
        assert dev.post("/api/repositories/scanAll").status_code == 403
        assert anon.post("/api/repositories/scanAll").status_code == 401
    other = v16.state.projects["other"].id
    with spec_client(v16) as client:
        assert client.post("/api/repositories/scanAll", params={"project_id": other}
                           ).status_code == 202
        assert v16.state.repos["other/nginx"].artifacts[0].scan is not None
        assert v16.state.repos["library/team/app"].artifacts[0].scan is None
        assert client.post("/api/repositories/scanAll").status_code == 202
    assert v16.state.repos["library/team/app"].artifacts[0].scan is not None
    assert len(v16.state.executions) == 1


def test_daily_scan_all_policy_in_the_configurations(v16: SimulatorServer) -> None:
    """NOTES §9.4: GET/PUT /api/configurations; scan_all_policy daily_time is seconds after
    00:00 UTC; read back as {value, editable}; a bad policy is 400."""
    with spec_client(v16) as client:
        first = client.get("/api/configurations").json()["scan_all_policy"]
        assert first == {"value": {"type": "none"}, "editable": True}
        policy = {"type": "daily", "parameter": {"daily_time": 57600}}
        assert client.put("/api/configurations", json={"scan_all_policy": policy}
                          ).status_code == 200
        assert client.get("/api/configurations").json()["scan_all_policy"]["value"] == policy
        for bad in ({"type": "weekly"}, {"type": "daily", "parameter": {"daily_time": 86400}}):
            assert client.put("/api/configurations", json={"scan_all_policy": bad}
                              ).status_code == 400
        assert v16.state.scan_all_policy == policy
    with httpx.Client(base_url=v16.url, auth=("admin", "Harbor12345")) as plain:
        # Not in the 1.6 spec, nor in this Harbor: from 1.8 on only.
        assert plain.get("/api/system/scanAll/schedule").status_code == 404
    with spec_client(v16, auth=("dev", "devpw")) as dev:
        assert dev.get("/api/configurations").status_code == 403
        assert dev.put("/api/configurations", json={"scan_all_policy": {"type": "none"}}
                       ).status_code == 403


def test_scan_all_schedule_from_1_8(v19: SimulatorServer) -> None:
    """NOTES §9.1, harbor-v1.10-swagger.yaml: /api/system/scanAll/schedule with
    {schedule:{type, cron}}; POST Manual scans everything now (409 while it runs); scanAll
    and scan_all_policy are gone."""
    with spec_client(v19, "v1.10") as client:
        assert client.get("/api/system/scanAll/schedule").json() == {}
        daily = {"schedule": {"type": "Custom", "cron": "0 0 16 * * *"}}
        assert client.post("/api/system/scanAll/schedule", json=daily).status_code == 200
        assert client.post("/api/system/scanAll/schedule", json=daily).status_code == 409
        assert client.get("/api/system/scanAll/schedule").json() == daily
        assert client.put("/api/system/scanAll/schedule", json={"schedule": {
            "type": "Daily", "cron": "not a cron"}}).status_code == 400
        assert client.put("/api/system/scanAll/schedule", json={"schedule": {"type": "None"}}
                          ).status_code == 200
        assert client.get("/api/system/scanAll/schedule").json() == {}
        manual = {"schedule": {"type": "Manual"}}
        assert client.post("/api/system/scanAll/schedule", json=manual).status_code == 200
        assert client.post("/api/system/scanAll/schedule", json=manual).status_code == 409
        assert "scan_all_policy" not in client.get("/api/configurations").json()
    with httpx.Client(base_url=v19.url, auth=("admin", "Harbor12345")) as plain:
        assert plain.post("/api/repositories/scanAll").status_code == 404  # gone in 1.8
    with spec_client(v19) as client:
        # Never scanned before the manual scan-all; now it has been (or is being).
        assert "scan_overview" in client.get("/api/repositories/library/team/app/tags/1.0"
                                             ).json()


def test_1_10_tags_carry_the_mime_keyed_overview_and_scans_are_202() -> None:
    """NOTES §9.3 (harbor-v1.10-swagger.yaml): the tag's scan_overview is a map keyed by MIME
    type; POST …/scan is 202."""
    fleet = Fleet.from_dict({**WRITES_FLEET, "harbor_version": "1.10.1"})
    with SimulatorServer(fleet, FAST) as sim, spec_client(sim, "v1.10") as client:
        tag = client.get("/api/repositories/library/grafana/tags/4.1.2").json()
        (summary,) = tag["scan_overview"].values()
        assert summary["scan_status"] == "Success"
        assert summary["summary"]["summary"] == {"Medium": 3}
        assert client.post("/api/repositories/library/team/app/tags/1.0/scan"
                           ).status_code == 202
        sim.state.finish_scans()
        done = client.get("/api/repositories/library/team/app/tags").json()[0]
        assert next(iter(done["scan_overview"].values()))["severity"] == "High"
