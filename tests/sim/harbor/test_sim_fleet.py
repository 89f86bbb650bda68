"""The fleet file format and synthetic fleets."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest

from careen.errors import InputFileError
from careen.sim.harbor import Fleet, SimState
from careen.sim.harbor.fleet import MIME_V10, synthetic_digest

SAMPLE = Path(__file__).parents[3] / "samples" / "fleet.yaml"


def test_sample_fleet_loads() -> None:
    fleet = Fleet.from_file(SAMPLE)
    assert fleet.api == "v2.0"
    names = {p.name for p in fleet.projects}
    assert names == {"library", "public-demo"}
    state = SimState(fleet)
    artifact = state.find_artifact("library/activemq", "5.14.4")
    assert artifact is not None and artifact.scan is not None
    assert artifact.scan.result is not None and artifact.scan.result.count("High") == 6
    assert state.find_artifact("library/mysql", "5.6.35").scan is None  # type: ignore[union-attr]


def test_digests_are_deterministic() -> None:
    data = {"projects": [{"name": "p", "repositories": [{"name": "r", "artifacts": [
        {"tags": ["a"]}, {"tags": []}]}]}]}
    one, two = Fleet.from_dict(data), Fleet.from_dict(data)
    digests = [a.digest for a in one.projects[0].repositories[0].artifacts]
    assert digests == [a.digest for a in two.projects[0].repositories[0].artifacts]
    assert len(set(digests)) == 2
    assert synthetic_digest("x").startswith("sha256:") and len(synthetic_digest("x")) == 71


@pytest.mark.parametrize(("data", "message"), [
    ({"projects": [{"name": "a/b"}]}, "cannot contain '/'"),
    ({"projects": [{"name": "p", "repositories": [{"name": "r", "artifacts": [
        {"scan": {"high": -1}}]}]}]}, "projects[0].repositories[0].artifacts[0].scan.high"),
    ({"projects": [{"name": "p", "repositories": [{"name": "r", "artifacts": [
        {"scan": {"high": 1, "fixable": 2}}]}]}]}, "2 fixable but only 1"),
    ({"robots": [{"name": "careen", "secret": "x"}]}, "must start with 'robot$'"),
    ({"projects": [], "colour": 1}, "unknown key(s) colour"),
    ({"scanner": {"mime": "text/plain"}}, "scanner.mime"),
    ({"projects": [{"name": "p", "repositories": [{"name": "r", "artifacts": [
        {"tags": ["x"]}, {"tags": ["x"]}]}]}]}, "already used"),
])
def test_bad_fleet_names_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(InputFileError) as caught:
        Fleet.from_dict(data, source="f.yaml")
    assert message in str(caught.value)
    assert str(caught.value).startswith("f.yaml")


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputFileError, match="cannot read"):
        Fleet.from_file(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("projects: [\n")
    with pytest.raises(InputFileError, match="not valid YAML"):
        Fleet.from_file(bad)


def test_scan_mime_and_status() -> None:
    fleet = Fleet.from_dict({"projects": [{"name": "p", "repositories": [{"name": "r",
        "artifacts": [{"tags": ["a"], "scan": {"status": "Pending", "mime": MIME_V10}}]}]}]})
    scan = fleet.projects[0].repositories[0].artifacts[0].scan
    assert scan is not None and scan.status == "Pending" and scan.result is None
    assert scan.mime == MIME_V10


def test_generate_is_deterministic_with_a_mix() -> None:
    one = Fleet.generate(projects=2, repos_per_project=5, artifacts_per_repo=20, seed=3)
    assert one == Fleet.generate(projects=2, repos_per_project=5, artifacts_per_repo=20, seed=3)
    artifacts = [a for p in one.projects for r in p.repositories for a in r.artifacts]
    assert len(artifacts) == 200
    vulnerable = [a for a in artifacts if a.scan and a.scan.result and (
        a.scan.result.count("High") > 0 or a.scan.result.count("Medium") >= 3)]
    assert 0.15 < len(vulnerable) / len(artifacts) < 0.45
    assert any(a.scan is None for a in artifacts)


def test_ten_thousand_artifacts_are_compact() -> None:
    """Per-artifact memory stays small (slotted records, no per-artifact dicts)."""
    tracemalloc.start()
    fleet = Fleet.generate(projects=2, repos_per_project=50, artifacts_per_repo=100, seed=1)
    state = SimState(fleet)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(state.artifacts) == 10_000
    assert peak / 10_000 < 2_000  # bytes per artifact, fleet spec and live state together


@pytest.mark.lab
def test_hundred_thousand_artifacts_fit() -> None:
    """100,000 artifacts load (slow-ish: a benchmark-sized fleet; no timing asserted)."""
    state = SimState(Fleet.generate(projects=10, repos_per_project=100,
                                    artifacts_per_repo=100, seed=1))
    assert len(state.artifacts) == 100_000
    assert len(state.projects["library"].ordered_artifacts()) == 10_000
