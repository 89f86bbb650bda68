"""The simulator's HTTP API over real loopback HTTP; every response goes through the spec
check of ``validating_client`` (tests/sim/conftest.py). Docstrings cite the NOTES section of
the real-Harbor behaviour each test pins down."""

from __future__ import annotations

import time
import uuid

import httpx

from careen.sim.harbor import ScanDelays, SimulatorServer
from tests.sim.conftest import ADMIN, API, make_client

REPO = f"{API}/projects/library/repositories"


def errors(response: httpx.Response) -> tuple[str, str]:
    body = response.json()
    assert list(body) == ["errors"]
    return body["errors"][0]["code"], body["errors"][0]["message"]


def test_ping_is_plain_text_pong(anonymous: httpx.Client) -> None:
    """NOTES §6.8: /ping answers text/plain Pong without auth."""
    response = anonymous.get(f"{API}/ping")
    assert response.status_code == 200
    assert response.text == "Pong"
    assert response.headers["content-type"].startswith("text/plain")


def test_health_lists_components(anonymous: httpx.Client) -> None:
    """NOTES §6.8: /health gives {status, components}."""
    body = anonymous.get(f"{API}/health").json()
    assert body["status"] == "healthy"
    assert {"core", "database", "trivy"} <= {c["name"] for c in body["components"]}


def test_systeminfo_version_only_when_authenticated(admin: httpx.Client,
                                                    anonymous: httpx.Client) -> None:
    """NOTES §6.8: harbor_version only for authenticated callers."""
    assert "harbor_version" not in anonymous.get(f"{API}/systeminfo").json()
    assert admin.get(f"{API}/systeminfo").json()["harbor_version"].startswith("v2.14.0")


def test_request_id_echoed_or_generated(admin: httpx.Client) -> None:
    """NOTES §3: X-Request-Id echoed, or a UUID made, on every response, errors included."""
    sent = admin.get(f"{API}/projects", headers={"X-Request-Id": "abc-123"})
    assert sent.headers["x-request-id"] == "abc-123"
    made = admin.get(f"{API}/projects/nope/repositories")
    assert made.status_code == 404
    uuid.UUID(made.headers["x-request-id"])


def test_projects_anonymous_sees_only_public(admin: httpx.Client,
                                            anonymous: httpx.Client) -> None:
    """NOTES §6.1: anonymous callers see public projects only."""
    assert [p["name"] for p in admin.get(f"{API}/projects").json()] == ["library", "public-demo"]
    public = anonymous.get(f"{API}/projects").json()
    assert [p["name"] for p in public] == ["public-demo"]
    assert public[0]["metadata"] == {"public": "true"}


def test_bad_credentials_fall_back_to_anonymous(sim: SimulatorServer) -> None:
    """NOTES §2: bad credentials are anonymous: public GET works, private gives 401."""
    with make_client(sim, auth=("admin", "wrong")) as client:
        assert client.get(f"{API}/projects/public-demo/repositories").status_code == 200
        response = client.get(f"{REPO}")
        assert response.status_code == 401
        assert errors(response) == ("UNAUTHORIZED", "unauthorized")


def test_forbidden_before_not_found(sim: SimulatorServer) -> None:
    """NOTES §2: permission is checked before existence: a non-admin gets 403 for a project
    that does not exist, an admin 404, anonymous 401."""
    with make_client(sim, auth=("robot$library+ci", "ci")) as robot:
        assert robot.get(f"{API}/projects/ghost/repositories").status_code == 403
        assert robot.get(f"{REPO}").status_code == 200
    with make_client(sim) as admin:
        assert admin.get(f"{API}/projects/ghost/repositories").status_code == 404
    with make_client(sim, auth=None) as anonymous:
        assert anonymous.get(f"{API}/projects/ghost/repositories").status_code == 401


def test_repository_names_are_full_and_ordered(admin: httpx.Client) -> None:
    """NOTES §6.2 and §5: full names; creation_time desc then id desc."""
    repos = admin.get(f"{REPO}", params={"page_size": 100}).json()
    names = [r["name"] for r in repos]
    assert "library/team/app" in names
    keys = [(r["creation_time"], r["id"]) for r in repos]
    assert keys == sorted(keys, reverse=True)
    everything = admin.get(f"{API}/repositories", params={"page_size": 100}).json()
    assert {r["name"] for r in everything} == set(names) | {"public-demo/nginx"}


def test_paging_total_count_and_link(admin: httpx.Client) -> None:
    """NOTES §5: default page_size 10, X-Total-Count, Link joined by ' , ', relative URLs,
    prev only after page 1, next only while more remain."""
    first = admin.get(f"{REPO}/httpd/artifacts")
    assert len(first.json()) == 10
    assert first.headers["x-total-count"] == "13"
    assert first.headers["link"] == (f'<{REPO}/httpd/artifacts?page=2&page_size=10>; rel="next"')
    middle = admin.get(f"{REPO}/httpd/artifacts", params={"page": 2, "page_size": 5,
                                                          "with_tag": "true"})
    assert middle.headers["link"] == (
        f'<{REPO}/httpd/artifacts?page=1&page_size=5&with_tag=true>; rel="prev" , '
        f'<{REPO}/httpd/artifacts?page=3&page_size=5&with_tag=true>; rel="next"')
    last = admin.get(f"{REPO}/httpd/artifacts", params={"page": 2})
    assert len(last.json()) == 3
    assert 'rel="next"' not in last.headers["link"]
    beyond = admin.get(f"{REPO}/httpd/artifacts", params={"page": 5})
    assert beyond.json() == []
    assert "link" not in beyond.headers


def test_page_size_over_100_is_422(sim: SimulatorServer) -> None:
    """NOTES §4/§5: page_size > 100 -> 422 UNPROCESSABLE_ENTITY, go-swagger message."""
    with make_client(sim, check_requests=False) as client:
        response = client.get(f"{REPO}/httpd/artifacts", params={"page_size": 101})
    assert response.status_code == 422
    assert errors(response) == ("UNPROCESSABLE_ENTITY", "validation failure list:\n"
                                "page_size in query should be less than or equal to 100")


def test_artifact_default_ordering_and_fields(admin: httpx.Client) -> None:
    """NOTES §5, §1: push_time desc; zero pull_time; empty arrays are null."""
    artifacts = admin.get(f"{REPO}/httpd/artifacts", params={"page_size": 100}).json()
    keys = [(a["push_time"], a["id"]) for a in artifacts]
    assert keys == sorted(keys, reverse=True)
    untagged = [a for a in artifacts if a["tags"] is None]
    assert len(untagged) == 1
    assert untagged[0]["pull_time"] == "0001-01-01T00:00:00.000Z"
    assert untagged[0]["labels"] is None and untagged[0]["references"] is None
    assert "scan_overview" not in artifacts[0]  # with_scan_overview defaults to false


def test_tags_query_filters(admin: httpx.Client) -> None:
    """NOTES §5: q=tags=* tagged only, q=tags=nil untagged only."""
    tagged = admin.get(f"{REPO}/httpd/artifacts", params={"q": "tags=*", "page_size": 100})
    assert tagged.headers["x-total-count"] == "12"
    untagged = admin.get(f"{REPO}/httpd/artifacts", params={"q": "tags=nil"}).json()
    assert len(untagged) == 1 and untagged[0]["tags"] is None


def test_double_encoded_repository(admin: httpx.Client, sim: SimulatorServer) -> None:
    """NOTES §7: a%2Fb must be sent as a%252Fb; single encoding is 404 'path … not found'."""
    good = admin.get(f"{REPO}/team%252Fapp/artifacts")
    assert good.status_code == 200
    assert {a["repository_name"] for a in good.json()} == {"library/team/app"}
    href = good.json()[0]["addition_links"]["vulnerabilities"]["href"]
    assert "/team%252Fapp/artifacts/sha256:" in href
    with make_client(sim, check_requests=False) as client:
        bad = client.get(f"{REPO}/team%2Fapp/artifacts")
    assert bad.status_code == 404
    assert errors(bad) == ("NOT_FOUND",
                           f"path {REPO}/team/app/artifacts was not found")


def test_unknown_repository_lists_empty(admin: httpx.Client) -> None:
    """NOTES §6.3: listing an unknown repository is 200 [] with X-Total-Count 0."""
    response = admin.get(f"{REPO}/nothing-here/artifacts")
    assert response.status_code == 200
    assert response.json() == []
    assert response.headers["x-total-count"] == "0"


def test_scan_overview_shapes(admin: httpx.Client) -> None:
    """NOTES §6.4: keyed by MIME; summary.summary only non-zero; absent when never scanned;
    non-Success shape without summary/severity/scanner."""
    params = {"with_scan_overview": "true", "page_size": 100}
    by_tag = {t["name"]: a for a in
              admin.get(f"{REPO}/team%252Fapp/artifacts", params=params).json()
              for t in a["tags"]}
    overview = by_tag["1.0"]["scan_overview"]
    ((mime, summary),) = overview.items()
    assert mime == "application/vnd.security.vulnerability.report; version=1.1"
    assert summary["scan_status"] == "Success"
    assert summary["severity"] == "Critical"
    assert summary["summary"] == {"total": 3, "fixable": 1, "summary": {"Critical": 1, "Low": 2}}
    failed = by_tag["0.8"]["scan_overview"][mime]
    assert failed["scan_status"] == "Error"
    assert not {"summary", "severity", "scanner", "complete_percent"} & set(failed)
    never = admin.get(f"{REPO}/mysql/artifacts", params=params).json()[0]
    assert "scan_overview" not in never


def test_accept_vulnerabilities_header_picks_the_key(admin: httpx.Client) -> None:
    """NOTES §6.3: the first listed MIME that has a report is used; none -> no overview."""
    old = "application/vnd.scanner.adapter.vuln.report.harbor+json; version=1.0"
    response = admin.get(f"{REPO}/activemq/artifacts/5.14.4",
                         params={"with_scan_overview": "true"},
                         headers={"X-Accept-Vulnerabilities": old})
    assert "scan_overview" not in response.json()


def test_get_artifact_by_tag_and_digest_and_404(admin: httpx.Client) -> None:
    """NOTES §6.3: reference is a tag or a digest; unknown -> 404 NOT_FOUND."""
    by_tag = admin.get(f"{REPO}/activemq/artifacts/5.14.4").json()
    by_digest = admin.get(f"{REPO}/activemq/artifacts/{by_tag['digest']}").json()
    assert by_tag["id"] == by_digest["id"]
    missing = admin.get(f"{REPO}/activemq/artifacts/9.9")
    assert missing.status_code == 404
    assert errors(missing)[0] == "NOT_FOUND"


def test_index_references_children(admin: httpx.Client) -> None:
    """NOTES §6.3: an image index lists its children in references with platforms."""
    index = admin.get(f"{REPO}/multi/artifacts/1").json()
    platforms = [r["platform"] for r in index["references"]]
    assert platforms == [{"architecture": "amd64", "os": "linux"},
                         {"architecture": "arm64", "os": "linux", "variant": "v8"}]
    assert "build_history" not in index["addition_links"]


def test_list_tags(admin: httpx.Client) -> None:
    tags = admin.get(f"{REPO}/team%252Fapp/artifacts/latest/tags").json()
    assert {t["name"] for t in tags} == {"1.0", "latest"}
    assert all(t["immutable"] is False for t in tags)


def test_vulnerabilities_consistent_with_summary(admin: httpx.Client) -> None:
    """NOTES §6.6: one report keyed by MIME, items per severity, fix_version when fixable."""
    body = admin.get(f"{REPO}/activemq/artifacts/5.14.4/additions/vulnerabilities").json()
    ((_, report),) = body.items()
    items = report["vulnerabilities"]
    assert sum(1 for v in items if v["severity"] == "High") == 6
    assert sum(1 for v in items if v["severity"] == "Medium") == 2
    assert sum(1 for v in items if v["fix_version"]) == 5
    assert all(v["description"] for v in items)
    never = admin.get(f"{REPO}/mysql/artifacts/5.7.18/additions/vulnerabilities")
    assert never.json() == {}


def test_list_artifacts_of_project(admin: httpx.Client) -> None:
    """NOTES §6.3: /projects/{p}/artifacts (2.12+) lists a whole project."""
    response = admin.get(f"{API}/projects/library/artifacts", params={"page_size": 100})
    assert response.headers["x-total-count"] == str(1 + 13 + 3 + 1 + 3)
    latest = admin.get(f"{API}/projects/library/artifacts",
                       params={"latest_in_repository": "true", "page_size": 100}).json()
    assert len(latest) == 5


def test_project_artifacts_absent_before_2_12(fleet: object) -> None:
    """NOTES §1: listArtifactsOfProject is 2.12+; before, an unknown route (404)."""
    from dataclasses import replace

    from careen.sim.harbor import Fleet, SimOptions

    assert isinstance(fleet, Fleet)
    with SimulatorServer(replace(fleet, harbor_version="2.10.0"), SimOptions()) as old, \
            make_client(old) as client:
        response = client.get(f"{API}/projects/library/artifacts")
        assert response.status_code == 404
        assert errors(response)[1] == f"path {API}/projects/library/artifacts was not found"


def test_scan_lifecycle(admin: httpx.Client, sim: SimulatorServer) -> None:
    """NOTES §6.5: 202 empty; 409 while Pending/Running; Pending -> Running -> Success,
    driven by the state's clock so the test does not depend on timing."""
    sim.state.scan_delays = ScanDelays(pending=60, running=60)
    sim.state.push("library/grafana", "4.1.2", "sha256:" + "a" * 64)
    url = f"{REPO}/grafana/artifacts/4.1.2"

    def status() -> str | None:
        overview = admin.get(url, params={"with_scan_overview": "true"}).json().get(
            "scan_overview")
        return next(iter(overview.values()))["scan_status"] if overview else None

    accepted = admin.post(f"{url}/scan")
    assert accepted.status_code == 202 and accepted.content == b""
    conflict = admin.post(f"{url}/scan")
    assert errors(conflict) == ("CONFLICT", "a previous scan process is Pending")
    assert status() is None  # queued, never scanned before: no overview (NOTES §6.4)
    sim.state.clock.advance(61)
    assert status() == "Running"
    assert errors(admin.post(f"{url}/scan")) == ("CONFLICT", "a previous scan process is Running")
    sim.state.clock.advance(60)
    assert status() == "Success"
    final = next(iter(admin.get(url, params={"with_scan_overview": "true"}).json()[
        "scan_overview"].values()))
    assert final["summary"]["summary"] == {"High": 1}  # the scan_results table entry
    assert final["duration"] == 60


def test_scan_finishes_in_real_time(admin: httpx.Client, sim: SimulatorServer) -> None:
    """With the fixture's 0.05 s + 0.05 s delays a scan ends by itself."""
    url = f"{REPO}/mysql/artifacts/5.7.18"
    assert admin.post(f"{url}/scan").status_code == 202
    time.sleep(0.15)
    overview = admin.get(url, params={"with_scan_overview": "true"}).json()["scan_overview"]
    assert next(iter(overview.values()))["scan_status"] == "Success"


def test_rescan_shows_pending_then_finish_on_demand(admin: httpx.Client,
                                                   sim: SimulatorServer) -> None:
    """NOTES §11.8: state hook finishes scans now; a rescan keeps the old result's digest."""
    sim.state.scan_delays = ScanDelays(pending=60, running=60)
    url = f"{REPO}/activemq/artifacts/5.14.4"
    assert admin.post(f"{url}/scan").status_code == 202
    pending = admin.get(url, params={"with_scan_overview": "true"}).json()["scan_overview"]
    assert next(iter(pending.values()))["scan_status"] == "Pending"
    assert sim.state.finish_scans() >= 1
    done = next(iter(admin.get(url, params={"with_scan_overview": "true"}).json()[
        "scan_overview"].values()))
    assert done["summary"]["summary"] == {"High": 6, "Medium": 2}


def test_pushed_tag_moves_to_new_artifact_without_overview(admin: httpx.Client,
                                                           sim: SimulatorServer) -> None:
    """NOTES §11.8: a rebuilt image is a new digest; the tag moves; no overview until scanned."""
    old = admin.get(f"{REPO}/activemq/artifacts/5.14.4").json()
    sim.state.push("library/activemq", "5.14.4", "sha256:" + "b" * 64)
    new = admin.get(f"{REPO}/activemq/artifacts/5.14.4", params={"with_scan_overview": "true"})
    assert new.json()["digest"] == "sha256:" + "b" * 64
    assert "scan_overview" not in new.json()
    still = admin.get(f"{REPO}/activemq/artifacts/{old['digest']}").json()
    assert still["tags"] is None


def test_scan_errors(sim: SimulatorServer, admin: httpx.Client) -> None:
    """NOTES §2, §6.5: anonymous 401, robot without scan 403 (before 404), unknown 404."""
    url = f"{REPO}/activemq/artifacts/5.14.4/scan"
    with make_client(sim, auth=None) as anonymous:
        assert anonymous.post(url).status_code == 401
    with make_client(sim, auth=("robot$reader", "r3ad")) as reader:
        assert reader.get(f"{REPO}/activemq/artifacts/5.14.4").status_code == 200
        assert reader.post(url).status_code == 403
        assert reader.post(f"{REPO}/activemq/artifacts/nope/scan").status_code == 403
    assert admin.post(f"{REPO}/activemq/artifacts/nope/scan").status_code == 404


def test_project_robot_is_limited_to_its_project(sim: SimulatorServer) -> None:
    """NOTES §2: robot$<project>+<name> is a project robot."""
    with make_client(sim, auth=("robot$library+ci", "ci")) as robot:
        assert robot.post(f"{REPO}/activemq/artifacts/5.14.4/scan").status_code == 202
        assert robot.post(f"{API}/projects/public-demo/repositories/nginx/artifacts/1.25/scan"
                          ).status_code == 403


def test_csrf_with_session_cookie(sim: SimulatorServer) -> None:
    """NOTES §3: a client that keeps the sid cookie gets 403 CSRF on POST, even as admin."""
    with httpx.Client(base_url=sim.url, auth=ADMIN) as keeper:
        first = keeper.get(f"{API}/projects")
        assert "sid=" in first.headers["set-cookie"]
        response = keeper.post(f"{REPO}/activemq/artifacts/5.14.4/scan")
    assert response.status_code == 403
    assert errors(response) == ("FORBIDDEN", "CSRF token invalid")


def test_unknown_route_is_404(admin: httpx.Client, sim: SimulatorServer) -> None:
    with make_client(sim, check_requests=False) as client:
        response = client.get(f"{API}/no/such/thing")
    assert response.status_code == 404
    assert errors(response) == ("NOT_FOUND", f"path {API}/no/such/thing was not found")


def test_scan_all_schedule_round_trip(admin: httpx.Client) -> None:
    """NOTES §6.7: empty body when none; POST periodic 201; again 412; PUT Manual 400;
    PUT None deletes; cron is 6 fields with seconds 0."""
    url = f"{API}/system/scanAll/schedule"
    empty = admin.get(url)
    assert empty.status_code == 200 and empty.content == b""
    daily = {"schedule": {"type": "Daily", "cron": "0 0 0 * * *"}}
    assert admin.post(url, json=daily).status_code == 201
    got = admin.get(url).json()
    assert got["schedule"] == daily["schedule"] and got["status"] == "Running"
    again = admin.post(url, json=daily)
    assert again.status_code == 412 and errors(again)[0] == "PRECONDITION"
    assert admin.put(url, json={"schedule": {"type": "Manual"}}).status_code == 400
    bad_cron = admin.put(url, json={"schedule": {"type": "Custom", "cron": "5 0 0 * * *"}})
    assert bad_cron.status_code == 400
    assert admin.put(url, json={"schedule": {"type": "Custom", "cron": "0 0 * * *"}}
                     ).status_code == 400
    weekly = {"schedule": {"type": "Weekly", "cron": "0 0 0 * * 0"}}
    assert admin.put(url, json=weekly).status_code == 200
    assert admin.get(url).json()["schedule"] == weekly["schedule"]
    assert admin.put(url, json={"schedule": {"type": "None"}}).status_code == 200
    assert admin.get(url).content == b""


def test_scan_all_manual_metrics_and_stop(admin: httpx.Client, sim: SimulatorServer) -> None:
    """NOTES §6.7: POST Manual runs now (201), 409 while running; metrics; stop 202/400."""
    url = f"{API}/system/scanAll/schedule"
    assert admin.get(f"{API}/scans/all/metrics").json() == {
        "total": 0, "completed": 0, "ongoing": False}
    assert admin.post(f"{API}/system/scanAll/stop").status_code == 400
    assert admin.post(url, json={"schedule": {"type": "Manual"}}).status_code == 201
    again = admin.post(url, json={"schedule": {"type": "Manual"}})
    assert again.status_code == 409
    metrics = admin.get(f"{API}/scans/all/metrics").json()
    assert metrics["ongoing"] is True and metrics["trigger"] == "Manual"
    assert metrics["total"] > 0 and metrics["completed"] < metrics["total"]
    assert admin.post(f"{API}/system/scanAll/stop").status_code == 202
    stopped = admin.get(f"{API}/scans/all/metrics").json()
    assert stopped["ongoing"] is False and stopped["metrics"]["Stopped"] > 0
    assert admin.get(f"{API}/scans/schedule/metrics").json()["total"] == 0


def test_scan_all_needs_system_access(sim: SimulatorServer) -> None:
    """NOTES §6.7: system admin or system robot with scan-all."""
    url = f"{API}/system/scanAll/schedule"
    with make_client(sim, auth=None) as anonymous:
        assert anonymous.get(url).status_code == 401
    with make_client(sim, auth=("robot$careen", "s3cret")) as robot:
        assert robot.get(url).status_code == 403
    with make_client(sim, auth=("robot$admin", "all")) as system:
        assert system.get(url).status_code == 200


def test_no_scanner_is_412(fleet: object) -> None:
    """NOTES §6.5/§6.7: without a scanner, scan and scan-all are 412 PRECONDITION."""
    from dataclasses import replace

    from careen.sim.harbor import Fleet, SimOptions

    assert isinstance(fleet, Fleet)
    with SimulatorServer(replace(fleet, scanner=None), SimOptions()) as bare, \
            make_client(bare) as client:
        scan = client.post(f"{REPO}/activemq/artifacts/5.14.4/scan")
        assert scan.status_code == 412 and errors(scan)[0] == "PRECONDITION"
        assert client.get(f"{API}/system/scanAll/schedule").status_code == 412
        overview = client.get(f"{REPO}/activemq/artifacts/5.14.4",
                              params={"with_scan_overview": "true"}).json()
        assert "scan_overview" not in overview


def test_stats_count_templates(admin: httpx.Client, sim: SimulatorServer) -> None:
    admin.get(f"{REPO}/activemq/artifacts")
    admin.get(f"{REPO}/httpd/artifacts")
    snapshot = sim.stats.snapshot()
    key = "GET /projects/{project_name}/repositories/{repository_name}/artifacts"
    assert snapshot["by_template"] == {key: 2}
    assert snapshot["by_status"] == {200: 2}
