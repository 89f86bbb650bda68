"""Both builders against the real lab: build, push to the registry that needs a login, and
check what arrived through the registry's own /v2/ API."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from careen.builders import (
    AuthContext,
    BuildahBuilder,
    Builder,
    BuildRequest,
    DockerBuilder,
    Failure,
    LoginTool,
    RegistryLogin,
    Status,
    build_and_push,
    private_auth,
    standard_labels,
)
from careen.lab import Lab
from careen.reference import ImageReference

pytestmark = pytest.mark.lab

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.index.v1+json",
])


@dataclass
class Setup:
    kind: str
    lab: Lab
    auth: AuthContext
    #: The login registry, as this builder names it.
    registry: str
    #: The open registry, as this builder names it (base images without a login).
    open_registry: str

    def builder(self, **kwargs: object) -> Builder:
        if self.kind == "buildah":
            return BuildahBuilder(auth=self.auth, env=self.lab.buildah_env(),
                                  insecure_registries=self.lab.registries, **kwargs)  # type: ignore[arg-type]
        return DockerBuilder(auth=self.auth, env=self.lab.docker_env(), **kwargs)  # type: ignore[arg-type]

    def login(self, password: SecretStr) -> RegistryLogin:
        return RegistryLogin(self.registry, self.lab.user, password, insecure=True)

    def login_env(self) -> dict[str, str]:
        return self.lab.buildah_env() if self.kind == "buildah" else self.lab.docker_env()

    @property
    def tool(self) -> LoginTool:
        return LoginTool.BUILDAH if self.kind == "buildah" else LoginTool.DOCKER


def _setup(kind: str, lab: Lab, auth: AuthContext) -> Setup:
    if kind == "buildah":
        return Setup(kind, lab, auth, lab.auth_registry, lab.open_registry)
    # podman's Docker API accepts `docker login` for plain HTTP only under "localhost".
    return Setup(kind, lab, auth, lab.docker_auth_registry, lab.docker_open_registry)


@pytest.fixture(params=["buildah", "docker"])
def setup(request: pytest.FixtureRequest, lab: Lab) -> Iterator[Setup]:
    if request.param == "docker":
        request.getfixturevalue("docker_cli")
    with private_auth() as auth:
        chosen = _setup(request.param, lab, auth)
        login = auth.login(chosen.login(lab.password()), tool=chosen.tool,
                           env=chosen.login_env())
        assert login.ok, login.log_tail
        yield chosen


def _context(tmp_path: Path, *lines: str) -> Path:
    context = tmp_path / "context"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text("\n".join(lines) + "\n")
    return context


def _child_context(tmp_path: Path) -> Path:
    return _context(tmp_path, "ARG REGISTRY", "FROM ${REGISTRY}/library/busybox-base:1.0",
                    "RUN echo hi > /hi")


def _registry(lab: Lab) -> httpx.Client:
    return httpx.Client(base_url=lab.auth_registry_url, timeout=10,
                        auth=(lab.user, lab.password().get_secret_value()))


def _labels(run_id: str) -> dict[str, str]:
    return standard_labels(datetime.now(UTC), "0123456789abcdef", "https://git.example/fleet",
                           run_id)


def test_build_and_push_to_the_login_registry(setup: Setup, tmp_path: Path) -> None:
    image = ImageReference.parse(f"{setup.registry}/library/child-{setup.kind}:1.0")
    labels = _labels(f"run-{setup.kind}")
    request = BuildRequest(image, _child_context(tmp_path), tmp_path / "build.log",
                           build_args={"REGISTRY": setup.registry}, labels=labels,
                           timeout=300, push_timeout=120)
    built, pushed = build_and_push(setup.builder(), request)
    assert built.ok, built.log_tail
    assert built.image_id is not None and built.image_id.startswith("sha256:")
    assert pushed is not None and pushed.ok, pushed and pushed.log_tail
    assert pushed.digest is not None and pushed.attempts == 1

    with _registry(setup.lab) as registry:
        tags = registry.get(f"/v2/library/child-{setup.kind}/tags/list")
        assert tags.status_code == 200 and "1.0" in tags.json()["tags"]
        head = registry.head(f"/v2/library/child-{setup.kind}/manifests/1.0",
                             headers={"Accept": MANIFEST_TYPES})
        assert head.status_code == 200
        assert head.headers["Docker-Content-Digest"] == pushed.digest
        manifest = registry.get(f"/v2/library/child-{setup.kind}/manifests/{pushed.digest}",
                                headers={"Accept": MANIFEST_TYPES})
        assert "sha256:" + hashlib.sha256(manifest.content).hexdigest() == pushed.digest
        config_digest = manifest.json()["config"]["digest"]
        config = registry.get(f"/v2/library/child-{setup.kind}/blobs/{config_digest}")
        assert config.status_code == 200
    image_labels = config.json()["config"]["Labels"]
    assert {k: image_labels.get(k) for k in labels} == labels
    assert "--iidfile" not in " ".join(pushed.log_tail)  # the digest came from the push


def test_a_failing_run_step_gives_a_failed_result(setup: Setup, tmp_path: Path) -> None:
    context = _context(tmp_path, f"FROM {setup.open_registry}/library/busybox-base:1.0",
                       "RUN echo careen-step-output && exit 1")
    image = ImageReference.parse(f"{setup.registry}/library/broken-{setup.kind}:1")
    request = BuildRequest(image, context, tmp_path / "build.log", timeout=300)
    built, pushed = build_and_push(setup.builder(), request)
    assert built.status is Status.FAILED
    assert built.error is Failure.BUILD_FAILED
    assert pushed is None
    assert "careen-step-output" in "\n".join(built.log_tail)
    assert built.log_tail == tuple(built.log_tail[-40:])
    assert "careen-step-output" in (tmp_path / "build.log").read_text()


def test_a_wrong_password_is_rejected_and_not_retried(setup: Setup, tmp_path: Path) -> None:
    wrong = SecretStr("not-the-password")
    rejected = setup.auth.login(setup.login(wrong), tool=setup.tool, env=setup.login_env())
    assert not rejected.ok and rejected.auth_rejected

    # Credentials that went stale after the login (a rotated robot account): build from the
    # open registry, then push with a wrong password in the auth file.
    context = _context(tmp_path, f"FROM {setup.open_registry}/library/busybox-base:1.0")
    image = ImageReference.parse(f"{setup.registry}/library/denied-{setup.kind}:1")
    request = BuildRequest(image, context, tmp_path / "build.log", timeout=300,
                           push_timeout=120)
    waits: list[float] = []
    builder = setup.builder(push_attempts=3, sleep=waits.append)
    assert builder.build(request).ok
    stale = base64.b64encode(f"{setup.lab.user}:not-the-password".encode()).decode()
    setup.auth.config_file.write_text(f'{{"auths": {{"{setup.registry}": {{"auth": "{stale}"}}}}}}')
    pushed = builder.push(request)
    assert pushed.status is Status.FAILED
    assert pushed.error is Failure.AUTH_REJECTED
    assert pushed.attempts == 1 and waits == []
    with _registry(setup.lab) as registry:
        assert registry.get(f"/v2/library/denied-{setup.kind}/tags/list").status_code == 404


def _files_holding(roots: list[Path], needles: list[bytes], skip: set[Path]) -> list[Path]:
    found = []
    for root in roots:
        paths = [root] if root.is_file() else root.rglob("*") if root.is_dir() else []
        for path in paths:
            if path in skip or path.is_symlink() or not path.is_file():
                continue
            try:
                data = path.read_bytes()
            except OSError:
                continue
            if any(needle in data for needle in needles):
                found.append(path)
    return found


@pytest.mark.parametrize("kind", ["buildah", "docker"])
def test_the_password_never_leaks(kind: str, lab: Lab, tmp_path: Path,
                                  request: pytest.FixtureRequest) -> None:
    if kind == "docker":
        request.getfixturevalue("docker_cli")
    password = lab.password().get_secret_value()
    user_docker_config = Path.home() / ".docker" / "config.json"
    before = user_docker_config.read_bytes() if user_docker_config.exists() else None

    snapshots: list[str] = []
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True,
                                check=False)
            snapshots.append(ps.stdout)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        with private_auth() as auth:
            auth_dir = auth.directory
            chosen = _setup(kind, lab, auth)
            login = auth.login(chosen.login(lab.password()), tool=chosen.tool,
                               env=chosen.login_env())
            assert login.ok, login.log_tail
            image = ImageReference.parse(f"{chosen.registry}/library/secret-{kind}:1")
            build = BuildRequest(image, _child_context(tmp_path), tmp_path / "build.log",
                                 build_args={"REGISTRY": chosen.registry}, timeout=300)
            built, pushed = build_and_push(chosen.builder(), build)
            assert built.ok and pushed is not None and pushed.ok
    finally:
        stop.set()
        watcher.join()

    assert not auth_dir.exists()
    tool_lines = [line for snapshot in snapshots for line in snapshot.splitlines()
                  if f"library/secret-{kind}" in line]
    assert tool_lines, "the watcher never saw the build running"
    assert not any(password in snapshot for snapshot in snapshots)

    basic = base64.b64encode(f"{lab.user}:{password}".encode())
    temp = Path(tempfile.gettempdir())
    roots = [lab.dir, tmp_path, user_docker_config, Path("/run/containers/0/auth.json"),
             Path.home() / ".config" / "containers" / "auth.json",
             *[p for p in temp.iterdir() if p.is_file() or p.name.startswith(("careen", "podman",
                                                                             "buildah"))]]
    leaks = _files_holding(roots, [password.encode(), basic], skip={lab.password_file})
    assert leaks == []
    after = user_docker_config.read_bytes() if user_docker_config.exists() else None
    assert after == before
    # No auth folder of this process is left (other processes on the machine may have theirs).
    assert not list(temp.glob(f"careen-auth-{os.getpid()}-*"))


def _processes(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if marker in line]


def test_a_hanging_buildah_build_is_killed(lab: Lab, tmp_path: Path) -> None:
    context = _context(tmp_path, f"FROM {lab.open_registry}/library/busybox-base:1.0",
                       "RUN sleep 601")
    image = ImageReference.parse(f"{lab.open_registry}/library/hang:1")
    builder = BuildahBuilder(env=lab.buildah_env(), insecure_registries=lab.registries)
    result = builder.build(BuildRequest(image, context, tmp_path / "build.log", timeout=3))
    assert result.status is Status.FAILED
    assert result.error is Failure.TIMED_OUT
    assert "timeout" in result.log_tail[-1]
    assert _processes("sleep 601") == []
    assert _processes("library/hang:1") == []


def test_a_hanging_docker_build_times_out(lab: Lab, docker_cli: str, tmp_path: Path) -> None:
    """The docker CLI is killed; podman's service, unlike a Docker engine, goes on running the
    RUN step after its client left (it is killed when the lab stops)."""
    context = _context(tmp_path, f"FROM {lab.docker_open_registry}/library/busybox-base:1.0",
                       "RUN sleep 602")
    image = ImageReference.parse(f"{lab.docker_open_registry}/library/hang-docker:1")
    builder = DockerBuilder(env=lab.docker_env())
    result = builder.build(BuildRequest(image, context, tmp_path / "build.log", timeout=3))
    assert result.error is Failure.TIMED_OUT
    assert [line for line in _processes("library/hang-docker:1") if "docker" in line] == []
    assert lab.status()["podman"]
