"""HarborSpec: operation matching, request checks, and that broken responses are caught."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.sim.harbor import ContractViolation, HarborSpec

ART = "/api/v2.0/projects/library/repositories/team%252Fapp/artifacts"
GOOD_ARTIFACT = {
    "id": 1, "type": "IMAGE", "digest": "sha256:" + "a" * 64, "tags": None, "labels": None,
    "push_time": "2024-05-02T10:12:00.512Z", "pull_time": "0001-01-01T00:00:00.000Z",
    "addition_links": {"vulnerabilities": {"href": "/x", "absolute": False}},
}
HEADERS = {"X-Request-Id": "r1", "X-Total-Count": "1"}


def test_match_double_encoded_repository(spec: HarborSpec) -> None:
    """NOTES §7: the repository segment is double-encoded and decoded twice."""
    op, params = spec.match("GET", ART + "/latest/tags")
    assert op.operation_id == "listTags"
    assert params["repository_name"] == "team/app"
    with pytest.raises(ContractViolation, match="double-encoded"):
        spec.match("GET", "/api/v2.0/projects/library/repositories/team%2Fapp/artifacts")


def test_request_query_checks(spec: HarborSpec) -> None:
    spec.validate_request("GET", ART + "?page=2&page_size=100&with_scan_overview=true&q=tags%3D*")
    with pytest.raises(ContractViolation, match="page_size: 101 exceeds the maximum 100"):
        spec.validate_request("GET", ART + "?page_size=101")
    with pytest.raises(ContractViolation, match="unknown query parameter"):
        spec.validate_request("GET", ART + "?with_tags=true")
    with pytest.raises(ContractViolation, match="not a boolean"):
        spec.validate_request("GET", ART + "?with_tag=yes")
    with pytest.raises(ContractViolation, match="X-Request-Id: shorter than 1"):
        spec.validate_request("GET", ART, {"X-Request-Id": ""})


def test_request_body_checks(spec: HarborSpec) -> None:
    url = "/api/v2.0/system/scanAll/schedule"
    spec.validate_request("PUT", url, {}, json.dumps({"schedule": {"type": "Daily",
                                                                   "cron": "0 0 0 * * *"}}))
    with pytest.raises(ContractViolation, match="required but missing"):
        spec.validate_request("PUT", url, {}, b"")
    with pytest.raises(ContractViolation, match="is not one of"):
        spec.validate_request("POST", url, {}, json.dumps({"schedule": {"type": "Yearly"}}))
    with pytest.raises(ContractViolation, match="takes no body"):
        spec.validate_request("GET", ART, {}, b"{}")


def test_good_response_passes(spec: HarborSpec) -> None:
    spec.validate_response("GET", ART, 200, HEADERS, json.dumps([GOOD_ARTIFACT]))


@pytest.mark.parametrize(("change", "field"), [
    ({"id": "1"}, "['id']"),  # wrong type
    ({"push_time": "yesterday"}, "['push_time']"),  # bad date-time
    ({"colour": "blue"}, "body[0]"),  # unknown field: stricter than go-swagger on purpose
    ({"addition_links": {"vulnerabilities": {"href": 3}}}, "['href']"),
])
def test_broken_response_is_caught(spec: HarborSpec, change: dict[str, object],
                                   field: str) -> None:
    broken = {**GOOD_ARTIFACT, **change}
    with pytest.raises(ContractViolation) as caught:
        spec.validate_response("GET", ART, 200, HEADERS, json.dumps([broken]))
    assert caught.value.operation == "listArtifacts"
    assert field in caught.value.field


def test_missing_required_field_is_caught(spec: HarborSpec) -> None:
    """Harbor's Errors items always have code and message (NOTES §4)."""
    with pytest.raises(ContractViolation, match="error bodies"):
        spec.validate_response("GET", ART, 404, {"X-Request-Id": "r"},
                               json.dumps({"errors": [{"code": "NOT_FOUND"}]}))


def test_response_needs_request_id_and_declared_status(spec: HarborSpec) -> None:
    with pytest.raises(ContractViolation, match="X-Request-Id"):
        spec.validate_response("GET", ART, 200, {}, b"[]")
    with pytest.raises(ContractViolation, match="not a declared response"):
        spec.validate_response("GET", ART, 418, {"X-Request-Id": "r"}, b"[]")
    # 409 on scan is real Harbor behaviour the spec omits (NOTES §6.5).
    spec.validate_response("POST", ART + "/latest/scan", 409, {"X-Request-Id": "r"},
                           json.dumps({"errors": [{"code": "CONFLICT", "message": "m"}]}))


def test_link_header_format(spec: HarborSpec) -> None:
    """NOTES §5: entries joined by ' , '."""
    with pytest.raises(ContractViolation, match="Link"):
        spec.validate_response("GET", ART, 200, {**HEADERS, "Link": "</a>; rel=\"prev\", </b>; "
                                                                    "rel=\"next\""}, b"[]")


def test_nullable_arrays_and_omitted_maps(spec: HarborSpec) -> None:
    """NOTES §1: nil slices are null; x-nullable strings may be null."""
    project = {"project_id": 1, "name": "p", "current_user_role_ids": None, "repo_count": 0,
               "metadata": {"public": "false", "severity": None}}
    spec.validate_response("GET", "/api/v2.0/projects", 200, HEADERS, json.dumps([project]))


def test_v1_spec_loads() -> None:
    v1 = HarborSpec.load("v1")
    assert v1.match("GET", "/api/repositories/library/nginx/tags")[0].template.endswith("/tags")


@given(st.text(alphabet="abc/%-_.", min_size=1, max_size=30))
def test_match_never_crashes_on_odd_paths(text: str) -> None:
    spec = HarborSpec.load("v2.0")
    with contextlib.suppress(ContractViolation):
        op, params = spec.match("GET", f"/api/v2.0/projects/library/repositories/{text}/"
                                "artifacts")
        assert op.operation_id == "listArtifacts"
        assert "/" not in params["repository_name"] or "%2" in text.lower()
