from __future__ import annotations

import os
import string
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.builders.credentials import AuthContext
from careen.builders.docker import DockerBuilder, parse_push_digest
from careen.builders.interface import BuildRequest, Failure, Status
from careen.errors import ServiceError
from careen.reference import ImageReference

IMAGE = ImageReference.parse("harbor.example:8443/library/grafana:4.1.2")
DIGEST = "sha256:" + "0123456789abcdef" * 4


def _request(tmp_path: Path, **kwargs: object) -> BuildRequest:
    fields: dict[str, object] = {
        "image": IMAGE, "context": tmp_path / "library/grafana/4.1.2",
        "log_path": tmp_path / "grafana.log",
        "build_args": {"REGISTRY": "harbor.example:8443"},
        "labels": {"careen.run": "run-1", "org.opencontainers.image.revision": "abc"},
    }
    fields.update(kwargs)
    return BuildRequest(**fields)  # type: ignore[arg-type]


def _fake_docker(tmp_path: Path, *, buildx: bool, server: bool = True) -> Path:
    """A stand-in for the docker CLI: answers `version` and `buildx version`, records argv."""
    script = tmp_path / "docker"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/calls"\n'
        'case "$1" in\n'
        f'  version) {"echo 4.3.1" if server else "echo cannot connect >&2; exit 1"};;\n'
        f'  buildx) exit {0 if buildx else 1};;\n'
        "  push) echo \"The push refers to repository [$2]\"; "
        f'echo "4.1.2: digest: {DIGEST} size: 579";;\n'
        "esac\n"
    )
    script.chmod(0o755)
    return script


def test_build_argv_legacy(tmp_path: Path) -> None:
    builder = DockerBuilder()
    request = _request(tmp_path)
    assert builder.build_argv(request, buildx=False, iidfile=tmp_path / "iid") == [
        "docker", "build", "--pull", "--no-cache", "--iidfile", str(tmp_path / "iid"),
        "-t", "harbor.example:8443/library/grafana:4.1.2",
        "--build-arg", "REGISTRY=harbor.example:8443",
        "--label", "careen.run=run-1", "--label", "org.opencontainers.image.revision=abc",
        "-f", str(tmp_path / "library/grafana/4.1.2/Dockerfile"),
        str(tmp_path / "library/grafana/4.1.2"),
    ]


def test_build_argv_without_pull_and_cache_flags_and_other_dockerfile(tmp_path: Path) -> None:
    request = _request(tmp_path, pull=False, no_cache=False, build_args={}, labels={},
                       dockerfile=tmp_path / "Dockerfile.alt")
    assert DockerBuilder(docker="/opt/docker").build_argv(request, buildx=False) == [
        "/opt/docker", "build", "-t", "harbor.example:8443/library/grafana:4.1.2",
        "-f", str(tmp_path / "Dockerfile.alt"), str(tmp_path / "library/grafana/4.1.2"),
    ]


def test_build_argv_buildx_multi_platform_pushes_itself(tmp_path: Path) -> None:
    request = _request(tmp_path, platforms=("linux/amd64", "linux/arm64"), labels={},
                       build_args={})
    assert DockerBuilder().build_argv(request, buildx=True, metadata_file=tmp_path / "m") == [
        "docker", "buildx", "build", "--pull", "--no-cache",
        "--platform", "linux/amd64,linux/arm64",
        "-t", "harbor.example:8443/library/grafana:4.1.2",
        "--push", "--metadata-file", str(tmp_path / "m"),
        "-f", str(tmp_path / "library/grafana/4.1.2/Dockerfile"),
        str(tmp_path / "library/grafana/4.1.2"),
    ]


def test_build_argv_buildx_one_platform_loads(tmp_path: Path) -> None:
    request = _request(tmp_path, platforms=("linux/amd64",), labels={}, build_args={})
    argv = DockerBuilder().build_argv(request, buildx=True)
    assert argv[:3] == ["docker", "buildx", "build"]
    assert "--load" in argv and "--push" not in argv
    assert argv[argv.index("--platform") + 1] == "linux/amd64"


def test_push_argv(tmp_path: Path) -> None:
    assert DockerBuilder().push_argv(_request(tmp_path)) == [
        "docker", "push", "harbor.example:8443/library/grafana:4.1.2"]


def test_untrusted_names_stay_single_arguments(tmp_path: Path) -> None:
    request = _request(tmp_path, build_args={"X": "$(rm -rf /); echo"},
                       labels={"note": "a b;c"})
    argv = DockerBuilder().build_argv(request, buildx=False)
    assert "X=$(rm -rf /); echo" in argv
    assert "note=a b;c" in argv


def test_parse_push_digest() -> None:
    output = (
        "The push refers to repository [127.0.0.1:5000/library/app:1]\n"
        "5f70bf18a086: Pushed\n"
        f"1: digest: {DIGEST} size: 579\n"
    )
    assert parse_push_digest(output) == DIGEST
    assert parse_push_digest(output, "1") == DIGEST
    assert parse_push_digest(output, "2") is None
    assert parse_push_digest("error: unauthorized") is None


def test_parse_push_digest_takes_the_line_of_the_tag() -> None:
    other = "sha256:" + "f" * 64
    output = f"1.0: digest: {DIGEST} size: 579\nlatest: digest: {other} size: 579\n"
    assert parse_push_digest(output, "1.0") == DIGEST
    assert parse_push_digest(output) == other


#: The characters of a tag (``[A-Za-z0-9_][A-Za-z0-9_.-]*``). Built from alphabets rather
#: than ``st.from_regex``, which spent most of this test's seconds generating and rejecting.
TAG_FIRST = string.ascii_letters + string.digits + "_"
TAG_REST = TAG_FIRST + ".-"


@given(
    tag=st.builds(str.__add__, st.sampled_from(TAG_FIRST), st.text(TAG_REST, max_size=20)),
    hexdigits=st.text("0123456789abcdef", min_size=64, max_size=64),
    size=st.integers(min_value=0, max_value=10**9),
    noise=st.lists(st.text(st.characters(blacklist_characters="\r\n\x1c\x1d\x1e\x85\u2028\u2029"
                                                             "\x0b\x0c"), max_size=40),
                   max_size=5),
)
def test_parse_push_digest_finds_any_well_formed_line(
    tag: str, hexdigits: str, size: int, noise: list[str],
) -> None:
    output = "\n".join([*noise, f"{tag}: digest: sha256:{hexdigits} size: {size}"])
    assert parse_push_digest(output, tag) == f"sha256:{hexdigits}"


def test_buildx_detection(tmp_path: Path) -> None:
    with_buildx = DockerBuilder(docker=str(_fake_docker(tmp_path, buildx=True)))
    assert with_buildx.buildx_available()
    other = tmp_path / "other"
    other.mkdir()
    without = DockerBuilder(docker=str(_fake_docker(other, buildx=False)))
    assert not without.buildx_available()
    assert not DockerBuilder(docker=str(tmp_path / "absent")).buildx_available()


def test_buildx_detection_runs_once(tmp_path: Path) -> None:
    builder = DockerBuilder(docker=str(_fake_docker(tmp_path, buildx=False)))
    builder.buildx_available()
    builder.buildx_available()
    assert (tmp_path / "calls").read_text().splitlines() == ["buildx version"]


def test_multi_platform_without_buildkit_is_unsupported(tmp_path: Path) -> None:
    builder = DockerBuilder(docker=str(_fake_docker(tmp_path, buildx=False)))
    result = builder.build(_request(tmp_path, platforms=("linux/amd64", "linux/arm64")))
    assert result.status is Status.UNSUPPORTED
    assert result.error is Failure.MULTI_PLATFORM_UNSUPPORTED
    assert "cannot build multi-platform" in result.log_tail[0]
    assert not any(line.split()[0] == "build" for line in
                   (tmp_path / "calls").read_text().splitlines())


def test_missing_cli_raises_service_error(tmp_path: Path) -> None:
    builder = DockerBuilder(docker=str(tmp_path / "no-docker"))
    with pytest.raises(ServiceError, match="not installed"):
        builder.build(_request(tmp_path))


def test_unreachable_daemon_raises_service_error(tmp_path: Path) -> None:
    builder = DockerBuilder(docker=str(_fake_docker(tmp_path, buildx=False, server=False)),
                            env={"DOCKER_HOST": "unix:///nowhere.sock"})
    with pytest.raises(ServiceError, match=r"unix:///nowhere.sock: the daemon is not reachable"):
        builder.ensure_available()


def test_push_reports_the_digest_from_the_output(tmp_path: Path) -> None:
    builder = DockerBuilder(docker=str(_fake_docker(tmp_path, buildx=False)))
    result = builder.push(_request(tmp_path))
    assert result.ok and result.digest == DIGEST and result.attempts == 1


def test_auth_context_sets_docker_config(tmp_path: Path) -> None:
    auth = AuthContext(tmp_path / "auth")
    builder = DockerBuilder(auth=auth, env={"DOCKER_HOST": "unix:///x.sock"})
    # Before a login (an open registry, or a daemon's user already logged in): the user's
    # own docker config is used, not an empty private folder.
    assert "DOCKER_CONFIG" not in builder.env()
    auth.directory.mkdir()
    auth.config_file.write_text('{"auths": {}}')
    env = builder.env()
    assert env["DOCKER_CONFIG"] == str(tmp_path / "auth")
    assert env["DOCKER_HOST"] == "unix:///x.sock"
    assert env["PATH"] == os.environ["PATH"]
