"""Building with the docker CLI (against a Docker engine or podman's Docker-compatible API).

``docker build --pull --no-cache -t IMAGE ... -f DOCKERFILE DIR`` then ``docker push IMAGE``.
When ``docker buildx`` works, BuildKit builds instead (``docker buildx build``), which can
produce several platforms as one manifest list (pushed by the build itself). The legacy
builder cannot: a request for several platforms is answered with
:attr:`~careen.builders.interface.Status.UNSUPPORTED`, so the caller can skip the image.

TLS: a Docker engine (or podman's service) pulls and pushes itself, with its own settings;
the docker CLI has no TLS option for a build or a push. ``[registry] verify_tls = false`` and
``ca_bundle`` therefore cannot reach it: the daemon must trust the registry (its
``certs.d/HOST:PORT/ca.crt``, or the registry listed as insecure in ``daemon.json`` or, for
podman, in ``registries.conf``, read when the service starts). When it does not, the failure
says so and ends the log with where to set it.

The pushed digest is the registry's manifest digest from the push output's last line
(``TAG: digest: sha256:... size: N``), not ``--iidfile`` (the image config's digest).
"""

from __future__ import annotations

import functools
import json
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from careen.builders.credentials import AuthContext, LoginTool, tls_hint
from careen.builders.interface import (
    BuildRequest,
    BuildResult,
    PushResult,
    Status,
    build_result,
    push_result,
    unsupported_result,
    with_tls_hint,
)
from careen.builders.process import (
    ProcessResult,
    push_retrying,
    read_tool_output,
    run_logged,
    tool_environment,
)
from careen.errors import ServiceError

CHECK_TIMEOUT_SECONDS = 30.0

_PUSH_DIGEST_LINE = re.compile(
    r"^(?P<tag>[\w][\w.-]{0,127}): digest: (?P<digest>sha256:[0-9a-f]{64}) size: (?P<size>\d+)\s*$",
    re.MULTILINE,
)


def parse_push_digest(output: str, tag: str | None = None) -> str | None:
    """The manifest digest in ``docker push`` output (``TAG: digest: sha256:... size: N``):
    the last such line for ``tag`` (or the last one at all when ``tag`` is ``None``)."""
    found = None
    for match in _PUSH_DIGEST_LINE.finditer(output):
        if tag is None or match["tag"] == tag:
            found = match["digest"]
    return found


class DockerBuilder:
    """Builds with ``docker``. ``env`` is added to this process's environment (e.g.
    ``DOCKER_HOST``, ``DOCKER_BUILDKIT=0``); ``auth`` supplies ``DOCKER_CONFIG``."""

    name = "docker"

    def __init__(
        self,
        *,
        auth: AuthContext | None = None,
        env: Mapping[str, str] | None = None,
        docker: str = "docker",
        push_attempts: int = 3,
        retry_wait: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.auth = auth
        self.extra_env = dict(env or {})
        self.docker = docker
        self.push_attempts = push_attempts
        self.retry_wait = retry_wait
        self.sleep = sleep
        self._available = False
        self._buildx: bool | None = None
        # Digests of images BuildKit pushed during the build (multi-platform builds).
        self._pushed_by_build: dict[str, str] = {}

    # -- the tool --------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """The tool's environment: this process's (less Careen's secrets), ``env``, and the
        auth context's variables."""
        return tool_environment(self.extra_env, self.auth.env() if self.auth else None)

    @property
    def daemon(self) -> str:
        return self.env().get("DOCKER_HOST", "unix:///var/run/docker.sock")

    def _run_quietly(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.docker, *args], env=self.env(), capture_output=True, text=True,
            timeout=CHECK_TIMEOUT_SECONDS, check=False, stdin=subprocess.DEVNULL,
        )

    def ensure_available(self) -> None:
        """Raise :class:`ServiceError` unless the docker CLI runs and its daemon answers."""
        if self._available:
            return
        try:
            answer = self._run_quietly("version", "--format", "{{.Server.Version}}")
        except FileNotFoundError:
            raise ServiceError(
                "docker", "PATH", f"the {self.docker!r} command is not installed",
                hint="install the docker CLI, or use the buildah builder",
            ) from None
        except subprocess.TimeoutExpired:
            raise ServiceError("docker", self.daemon, "the daemon did not answer") from None
        if answer.returncode != 0:
            reason = (answer.stderr.strip().splitlines() or ["no answer"])[-1]
            raise ServiceError(
                "docker", self.daemon, f"the daemon is not reachable: {reason}",
                hint="start the Docker engine (or podman system service) and check DOCKER_HOST",
            )
        self._available = True

    def buildx_available(self) -> bool:
        """Whether ``docker buildx`` (BuildKit) works here; checked once."""
        if self._buildx is None:
            try:
                self._buildx = self._run_quietly("buildx", "version").returncode == 0
            except (FileNotFoundError, subprocess.TimeoutExpired):
                self._buildx = False
        return self._buildx

    # -- argument lists --------------------------------------------------------------------

    def build_argv(
        self, request: BuildRequest, *, buildx: bool, iidfile: Path | None = None,
        metadata_file: Path | None = None,
    ) -> list[str]:
        argv = [self.docker, "buildx", "build"] if buildx else [self.docker, "build"]
        if request.pull:
            argv.append("--pull")
        if request.no_cache:
            argv.append("--no-cache")
        if request.platforms:
            argv += ["--platform", ",".join(request.platforms)]
        if iidfile is not None:
            argv += ["--iidfile", str(iidfile)]
        argv += ["-t", request.target]
        for extra in request.extra_targets:
            argv += ["-t", extra]
        for key, value in request.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in request.labels.items():
            argv += ["--label", f"{key}={value}"]
        if buildx:
            if len(request.platforms) > 1:
                # A manifest list cannot be loaded into the engine's image store: BuildKit
                # pushes it itself and reports the digest in the metadata file.
                argv.append("--push")
                if metadata_file is not None:
                    argv += ["--metadata-file", str(metadata_file)]
            else:
                argv.append("--load")
        argv += ["-f", str(request.dockerfile_path), str(request.context)]
        return argv

    def push_argv(self, request: BuildRequest, target: str | None = None) -> list[str]:
        return [self.docker, "push", target or request.target]

    # -- Builder ---------------------------------------------------------------------------

    def build(self, request: BuildRequest) -> BuildResult:
        self.ensure_available()
        buildx = self.buildx_available()
        if len(request.platforms) > 1 and not buildx:
            return unsupported_result(
                request,
                f"cannot build multi-platform ({', '.join(request.platforms)}): docker buildx "
                "(BuildKit) is not available and the legacy builder makes one platform",
            )
        with tempfile.TemporaryDirectory(prefix="careen-docker-") as scratch:
            iidfile = Path(scratch) / "iid"
            metadata = Path(scratch) / "metadata.json"
            run = run_logged(
                self.build_argv(request, buildx=buildx, iidfile=iidfile, metadata_file=metadata),
                env=self.env(), log_path=request.log_path, timeout=request.timeout,
            )
            image_id = read_tool_output(iidfile)
            if run.ok and buildx and len(request.platforms) > 1:
                digest = _metadata_digest(metadata)
                if digest is not None:
                    self._pushed_by_build[request.target] = digest
        return build_result(request, self._with_hint(run, request), image_id)

    def push(self, request: BuildRequest) -> PushResult:
        self.ensure_available()
        pushed = self._pushed_by_build.pop(request.target, None)
        if pushed is not None:
            return PushResult(request.image, Status.SUCCEEDED, 0.0, request.log_path,
                              ("pushed by docker buildx build --push",), pushed)
        started = time.monotonic()
        digest: str | None = None
        # The image's own tag first (its digest is the result), then its other tags.
        for index, target in enumerate((request.target, *request.extra_targets)):
            retrying = push_retrying(attempts=self.push_attempts, initial_wait=self.retry_wait,
                                     sleep=self.sleep)
            run: ProcessResult = retrying(functools.partial(
                run_logged, self.push_argv(request, target), env=self.env(),
                log_path=request.log_path, timeout=request.push_timeout))
            attempts = int(retrying.statistics["attempt_number"])
            if index == 0 and run.ok:
                digest = parse_push_digest(run.tail_text, request.image.tag)
            if not run.ok:
                digest = None
                break
        return push_result(request, self._with_hint(run, request), digest, attempts,
                           time.monotonic() - started)

    def _with_hint(self, run: ProcessResult, request: BuildRequest) -> ProcessResult:
        return with_tls_hint(run, lambda host: tls_hint(LoginTool.DOCKER, host),
                             request.image.registry or "")


def _metadata_digest(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    digest = data.get("containerimage.digest") if isinstance(data, dict) else None
    return digest if isinstance(digest, str) else None
