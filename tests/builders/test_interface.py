from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.builders.interface import (
    BuildRequest,
    Failure,
    Status,
    build_result,
    classify_failure,
    push_result,
    standard_labels,
    unsupported_result,
)
from careen.builders.process import ProcessResult
from careen.reference import ImageReference

IMAGE = ImageReference.parse("registry.example:5000/library/app:1.0")


def _run(returncode: int | None, tail: str = "", **flags: bool) -> ProcessResult:
    return ProcessResult(("tool",), returncode, 1.5, Path("x.log"), tuple(tail.splitlines()),
                         **flags)


def test_standard_labels() -> None:
    created = datetime(2017, 12, 8, 8, 58, 1, 123456, tzinfo=timezone(timedelta(hours=8)))
    assert standard_labels(created, "0123abc", "https://git.example/fleet", "run-42") == {
        "org.opencontainers.image.created": "2017-12-08T00:58:01Z",
        "org.opencontainers.image.revision": "0123abc",
        "org.opencontainers.image.source": "https://git.example/fleet",
        "careen.run": "run-42",
    }


def test_standard_labels_refuse_a_naive_time() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        standard_labels(datetime(2017, 12, 8), "r", "s", "run")


@given(st.datetimes(timezones=st.just(UTC)))
def test_created_label_is_rfc3339_utc(moment: datetime) -> None:
    stamp = standard_labels(moment, "r", "s", "run")["org.opencontainers.image.created"]
    assert len(stamp) == 20 and stamp.endswith("Z")
    assert datetime.fromisoformat(stamp) == moment.replace(microsecond=0)


def test_request_defaults_and_frozen_mappings(tmp_path: Path) -> None:
    args = {"REGISTRY": "r.example"}
    request = BuildRequest(IMAGE, tmp_path, tmp_path / "log", build_args=args)
    args["LATER"] = "x"
    assert dict(request.build_args) == {"REGISTRY": "r.example"}
    assert request.dockerfile_path == tmp_path / "Dockerfile"
    assert request.target == "registry.example:5000/library/app:1.0"
    assert request.no_cache and request.pull
    with pytest.raises(TypeError):
        request.build_args["X"] = "y"  # type: ignore[index]


@pytest.mark.parametrize("kwargs, message", [
    ({"image": ImageReference.parse("library/app:1.0")}, "must name the registry"),
    ({"build_args": {"A=B": "c"}}, "build arg name"),
    ({"labels": {"": "c"}}, "label name"),
    ({"labels": {"--rm": "c"}}, "label name"),
    ({"timeout": 0}, "positive"),
])
def test_bad_requests_are_refused(tmp_path: Path, kwargs: dict[str, object],
                                  message: str) -> None:
    fields: dict[str, object] = {"image": IMAGE, "context": tmp_path, "log_path": tmp_path / "l"}
    fields.update(kwargs)
    with pytest.raises(ValueError, match=message):
        BuildRequest(**fields)  # type: ignore[arg-type]


def test_digest_only_image_is_refused(tmp_path: Path) -> None:
    image = ImageReference.parse("r.example/library/app@sha256:" + "a" * 64)
    with pytest.raises(ValueError, match="tag"):
        BuildRequest(image, tmp_path, tmp_path / "log")


@pytest.mark.parametrize("run, phase, expected", [
    (_run(None, not_found=True), Failure.BUILD_FAILED, Failure.TOOL_MISSING),
    (_run(None, "connection refused", timed_out=True), Failure.PUSH_FAILED, Failure.TIMED_OUT),
    (_run(1, "unauthorized: authentication required"), Failure.PUSH_FAILED,
     Failure.AUTH_REJECTED),
    (_run(1, "reading manifest 1.0: unauthorized"), Failure.BUILD_FAILED, Failure.AUTH_REJECTED),
    (_run(1, "Error: building at STEP: exit status 1"), Failure.BUILD_FAILED,
     Failure.BUILD_FAILED),
    (_run(1, "writing blob: unexpected EOF"), Failure.PUSH_FAILED, Failure.PUSH_FAILED),
])
def test_classify_failure(run: ProcessResult, phase: Failure, expected: Failure) -> None:
    assert classify_failure(run, phase) is expected


def test_results_from_runs(tmp_path: Path) -> None:
    request = BuildRequest(IMAGE, tmp_path, tmp_path / "log")
    ok = build_result(request, _run(0), "sha256:" + "1" * 64)
    assert ok.ok and ok.error is None and ok.image_id == "sha256:" + "1" * 64
    failed = build_result(request, _run(1, "boom"), "sha256:" + "1" * 64)
    assert failed.status is Status.FAILED and failed.error is Failure.BUILD_FAILED
    assert failed.image_id is None and failed.log_tail == ("boom",)
    pushed = push_result(request, _run(1, "denied: no"), "sha256:" + "2" * 64, 1, 2.0)
    assert pushed.error is Failure.AUTH_REJECTED and pushed.digest is None


def test_unsupported_result_is_logged(tmp_path: Path) -> None:
    request = BuildRequest(IMAGE, tmp_path, tmp_path / "logs" / "app.log")
    result = unsupported_result(request, "cannot build multi-platform")
    assert result.status is Status.UNSUPPORTED
    assert result.error is Failure.MULTI_PLATFORM_UNSUPPORTED
    assert "cannot build multi-platform" in request.log_path.read_text()
