"""A registry that fails a push once, one that refuses it, and a build that hangs — on the lab.

The registry faults come from :mod:`.registry_proxy`, a loopback proxy in front of the lab's
login registry that answers chosen requests with an error; the image is named for the proxy,
so the whole push goes through it. Whether the tool retried on its own (buildah's ``--retry``)
or Careen's :func:`careen.builders.process.push_retrying` did, the push must succeed, the
image must be in the registry with the digest the push reported, and an auth refusal must
never be retried.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
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
    private_auth,
)
from careen.lab import Lab, podman_answers
from careen.reference import ImageReference

from .podman_service import PodmanService, podman_service
from .registry_proxy import (
    BLOB_UPLOAD,
    DENIED_BODY,
    MANIFEST_PUT,
    Fault,
    RegistryProxy,
    registry_proxy,
)

pytestmark = pytest.mark.lab

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


@dataclass
class Pusher:
    """One builder kind, pushing through a proxy in front of the lab's login registry."""

    kind: str
    lab: Lab
    auth: AuthContext
    proxy: RegistryProxy
    environment: dict[str, str]
    waits: list[float]

    @property
    def registry(self) -> str:
        # podman's Docker API skips TLS for "localhost" only: the docker CLI names the proxy so.
        return self.proxy.host("127.0.0.1" if self.kind == "buildah" else "localhost")

    @property
    def open_registry(self) -> str:
        return self.lab.open_registry if self.kind == "buildah" else self.lab.docker_open_registry

    def env(self) -> dict[str, str]:
        return self.environment

    def login(self, password: SecretStr) -> bool:
        tool = LoginTool.BUILDAH if self.kind == "buildah" else LoginTool.DOCKER
        result = self.auth.login(RegistryLogin(self.registry, self.lab.user, password,
                                               insecure=True), tool=tool, env=self.env())
        return result.ok

    def builder(self) -> Builder:
        if self.kind == "buildah":
            return BuildahBuilder(auth=self.auth, env=self.env(),
                                  insecure_registries=self.auth.insecure_registries,
                                  push_attempts=3, sleep=self.waits.append)
        return DockerBuilder(auth=self.auth, env=self.env(), push_attempts=3,
                             sleep=self.waits.append)

    def request(self, name: str, tmp_path: Path) -> BuildRequest:
        context = tmp_path / "context"
        context.mkdir(exist_ok=True)
        # A layer of its own, so the push has a blob to upload (not only the base's).
        (context / "Dockerfile").write_text(
            f"FROM {self.open_registry}/library/busybox-base:1.0\n"
            f"RUN echo {name} > /careen-{name}\n")
        image = ImageReference.parse(f"{self.registry}/library/{name}:1")
        return BuildRequest(image, context, tmp_path / "build.log", timeout=300,
                            push_timeout=120)


@pytest.fixture(scope="module")
def proxy(lab: Lab) -> Iterator[RegistryProxy]:
    """The proxy in front of the lab's login registry (one per module: the docker path needs
    its port before the podman service starts)."""
    with registry_proxy(lab.auth_registry, []) as running:
        yield running


@pytest.fixture(scope="module")
def proxy_podman(lab: Lab, docker_cli: str, proxy: RegistryProxy,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[PodmanService]:
    """A podman service that knows the proxy as a plain-HTTP registry."""
    with podman_service(lab, tmp_path_factory.mktemp("podman-proxy"),
                        [proxy.host("localhost"), proxy.host()]) as service:
        yield service


@pytest.fixture(params=["buildah", "docker"])
def kind(request: pytest.FixtureRequest, lab: Lab) -> str:
    if request.param == "docker":
        request.getfixturevalue("proxy_podman")
    return str(request.param)


@pytest.fixture
def pusher(kind: str, lab: Lab, proxy: RegistryProxy,
           request: pytest.FixtureRequest) -> Iterator[Pusher]:
    proxy.faults.clear()
    proxy.seen.clear()
    env = lab.buildah_env() if kind == "buildah" else {
        **lab.docker_env(), "DOCKER_HOST": request.getfixturevalue("proxy_podman").docker_host}
    with private_auth() as auth:
        chosen = Pusher(kind, lab, auth, proxy, env, [])
        assert chosen.login(lab.password())
        proxy.seen.clear()
        yield chosen


def _served_digest(lab: Lab, name: str) -> str | None:
    with httpx.Client(base_url=lab.auth_registry_url, timeout=10,
                      auth=(lab.user, lab.password().get_secret_value())) as registry:
        head = registry.head(f"/v2/library/{name}/manifests/1",
                             headers={"Accept": MANIFEST_TYPES})
    return head.headers.get("Docker-Content-Digest") if head.status_code == 200 else None


#: Harbor's masked 5xx answer (core hides the detail; NOTES.md section 4).
HARBOR_500 = b'{"errors":[{"code":"UNKNOWN","message":"internal server error"}]}'


def _fault(where: str, status: int) -> Fault:
    method, path = ("POST", BLOB_UPLOAD) if where == "blob" else ("PUT", MANIFEST_PUT)
    if status == 500:
        return Fault(method, path, status, HARBOR_500, "application/json; charset=utf-8")
    return Fault(method, path, status)


@pytest.mark.parametrize(("where", "status"), [("blob", 503), ("manifest", 503),
                                               ("blob", 500)])
def test_a_push_that_meets_one_5xx_is_retried_and_succeeds(
        pusher: Pusher, where: str, status: int, tmp_path: Path) -> None:
    name = f"flaky-{where}-{status}-{pusher.kind}"
    request = pusher.request(name, tmp_path)
    builder = pusher.builder()
    assert builder.build(request).ok

    pusher.proxy.faults.append(_fault(where, status))
    pushed = builder.push(request)

    assert pushed.ok, pushed.log_tail
    assert pushed.error is None and pushed.status is Status.SUCCEEDED
    assert [s.status for s in pusher.proxy.injected] == [status]
    # The failed attempt is in the log, and the upload was made again after it.
    assert str(status) in request.log_path.read_text()
    uploads = [(s.method, s.status) for s in pusher.proxy.uploads()]
    assert uploads.index((uploads[-1][0], 201)) > uploads.index(
        ("POST" if where == "blob" else "PUT", status))
    # Whoever retried (Careen here: the tools do not retry these), each retry of Careen's
    # waited first; never more than the attempts allowed.
    assert pushed.attempts == len(pusher.waits) + 1 <= 3
    assert pushed.digest is not None
    assert _served_digest(pusher.lab, name) == pushed.digest


def test_a_push_with_a_wrong_password_is_rejected_once_and_not_retried(
        pusher: Pusher, tmp_path: Path) -> None:
    name = f"wrong-password-{pusher.kind}"
    request = pusher.request(name, tmp_path)
    builder = pusher.builder()
    assert builder.build(request).ok
    # The credentials went stale after the login (a rotated robot secret): the auth file
    # now holds a wrong password, so the registry answers 401.
    stale = base64.b64encode(f"{pusher.lab.user}:not-the-password".encode()).decode()
    pusher.auth.config_file.write_text(
        json.dumps({"auths": {pusher.registry: {"auth": stale}}}))

    pushed = builder.push(request)

    assert pushed.status is Status.FAILED
    assert pushed.error is Failure.AUTH_REJECTED
    assert pushed.attempts == 1 and pusher.waits == []
    assert 401 in {s.status for s in pusher.proxy.seen}
    assert all(s.status == 401 for s in pusher.proxy.uploads())
    _assert_nothing_refused_was_asked_again(pusher.proxy)
    assert _served_digest(pusher.lab, name) is None


def test_a_push_denied_by_the_registry_is_not_retried(pusher: Pusher, tmp_path: Path) -> None:
    """Harbor's answer to an account without the push permission: 403 DENIED."""
    name = f"denied-{pusher.kind}"
    request = pusher.request(name, tmp_path)
    builder = pusher.builder()
    assert builder.build(request).ok
    pusher.proxy.faults.append(Fault("POST", BLOB_UPLOAD, 403, DENIED_BODY,
                                     "application/json; charset=utf-8", times=100))

    pushed = builder.push(request)

    assert pushed.status is Status.FAILED
    assert pushed.error is Failure.AUTH_REJECTED
    assert pushed.attempts == 1 and pusher.waits == []
    assert pusher.proxy.injected
    _assert_nothing_refused_was_asked_again(pusher.proxy)
    assert _served_digest(pusher.lab, name) is None


def _assert_nothing_refused_was_asked_again(proxy: RegistryProxy) -> None:
    """No tool-side retry either: no request the registry refused was sent a second time.
    (A push may send several requests for one blob: a cross-repository mount per repository
    holding it, then a plain upload start, which names no blob: one per blob at most.)"""
    refused = [(s.method, s.path, s.query) for s in proxy.seen if s.status in (401, 403)]
    plain_starts = [r for r in refused if r[0] == "POST" and not r[2]]
    others = [r for r in refused if r not in plain_starts]
    blobs = {s.path for s in proxy.seen if s.method == "HEAD" and "/blobs/" in s.path}
    assert len(plain_starts) <= len(blobs), refused
    assert len(others) == len(set(others)), refused


# -- a build that hangs ----------------------------------------------------------------------


def _processes_with(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line holds ``marker`` (from /proc; not this one)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if marker in args and state != "Z":
            found.append((int(entry.name), args.strip()))
    return found


def test_a_hanging_buildah_build_is_killed_with_its_run_step(lab: Lab, tmp_path: Path) -> None:
    context = _hanging_context(tmp_path, lab.open_registry, 613)
    image = ImageReference.parse(f"{lab.open_registry}/library/hang-buildah:1")
    builder = BuildahBuilder(env=lab.buildah_env(), insecure_registries=lab.registries)

    result = builder.build(BuildRequest(image, context, tmp_path / "build.log", timeout=4))

    assert result.status is Status.FAILED
    assert result.error is Failure.TIMED_OUT
    assert result.log_tail[-1] == "careen: killed after 4 s (timeout)"
    # buildah, and the RUN step it started (a grandchild), are gone when build() returns.
    assert _processes_with("library/hang-buildah:1") == []
    assert _processes_with("sleep 613") == []


def test_a_hanging_docker_build_is_killed_and_only_the_engine_keeps_its_step(
        lab: Lab, proxy_podman: PodmanService, tmp_path: Path) -> None:
    """The docker CLI is killed at the timeout. The RUN step belongs to the engine: a Docker
    engine cancels the build when its client goes away; podman 4.3 goes on running it, so a
    step left running must be the service's (then this test ends it), never Careen's."""
    context = _hanging_context(tmp_path, lab.docker_open_registry, 617)
    image = ImageReference.parse(f"{lab.docker_open_registry}/library/hang-docker:1")
    builder = DockerBuilder(env={**lab.docker_env(), "DOCKER_HOST": proxy_podman.docker_host})

    result = builder.build(BuildRequest(image, context, tmp_path / "build.log", timeout=4))

    assert result.status is Status.FAILED
    assert result.error is Failure.TIMED_OUT
    assert result.log_tail[-1] == "careen: killed after 4 s (timeout)"
    assert [p for p in _processes_with("library/hang-docker:1") if "docker" in p[1]] == []
    steps = [pid for pid, _ in _processes_with("sleep 617")]
    assert all(proxy_podman.runs(pid) for pid in steps), steps
    for pid in steps:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert podman_answers(Path(proxy_podman.docker_host.removeprefix("unix://")))


def _hanging_context(tmp_path: Path, registry: str, seconds: int) -> Path:
    """A Dockerfile whose RUN step sleeps ``seconds`` (a marker no other process has)."""
    context = tmp_path / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {registry}/library/busybox-base:1.0\nRUN sleep {seconds}\n")
    return context
