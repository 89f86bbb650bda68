"""The small interface every image builder implements, and the values it works with.

A builder turns a :class:`BuildRequest` (a Dockerfile folder and the image name to give the
result) into an image, then pushes it. A new builder (kaniko, podman, ...) is one new module
with a class that has ``build`` and ``push``.

Builders do not raise for a failed build or push: they return a result whose ``error`` says
what went wrong (the run goes on with the next image). They raise
:class:`careen.errors.ServiceError` only when the tool itself cannot be used at all (not
installed, its daemon unreachable), which stops the run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from careen.builders.process import (
    TAIL_LINES,
    ProcessResult,
    looks_auth_rejected,
    looks_tls_rejected,
    tls_rejected_host,
)
from careen.reference import ImageReference

DEFAULT_BUILD_TIMEOUT_SECONDS = 1800.0
DEFAULT_PUSH_TIMEOUT_SECONDS = 600.0

#: OCI annotation keys Careen puts on every image it builds.
LABEL_CREATED = "org.opencontainers.image.created"
LABEL_REVISION = "org.opencontainers.image.revision"
LABEL_SOURCE = "org.opencontainers.image.source"
LABEL_RUN = "careen.run"
#: The tree folder the image was built from: read back from Harbor's listing before the next
#: rebuild overwrites the tag (a tag built from another folder is refused).
LABEL_TREE_PATH = "careen.tree.path"


class Status(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    #: The builder cannot do what was asked (several platforms without BuildKit): skip it.
    UNSUPPORTED = "unsupported"


class Failure(StrEnum):
    """Why a build or push failed; decides whether to retry and what to tell the user."""

    BUILD_FAILED = "build failed"
    PUSH_FAILED = "push failed"
    #: The registry answered 401/403: wrong credentials or no push right. Never retried.
    AUTH_REJECTED = "auth rejected"
    #: The registry's certificate is not trusted, or it speaks plain HTTP where HTTPS was
    #: expected: a TLS setting must change (the log's last line says which). Never retried.
    TLS_REJECTED = "registry TLS rejected"
    TIMED_OUT = "timed out"
    TOOL_MISSING = "tool missing"
    MULTI_PLATFORM_UNSUPPORTED = "cannot build multi-platform"


def _frozen_mapping(values: Mapping[str, str], what: str) -> Mapping[str, str]:
    for key, value in values.items():
        if not isinstance(key, str) or not key or "=" in key or key.startswith("-"):
            raise ValueError(f"{what} name {key!r} must be non-empty, without '=' or a leading '-'")
        if not isinstance(value, str):
            raise ValueError(f"{what} {key!r} must have a string value")
        if "\n" in key or "\0" in key or "\0" in value:
            raise ValueError(f"{what} {key!r} holds a control character")
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class BuildRequest:
    """What to build and where the result goes.

    ``image`` must name its registry (the builder tags and pushes exactly that).
    ``dockerfile`` defaults to ``context/Dockerfile``. ``platforms`` empty means the builder's
    own platform; several need a builder that can produce a manifest list. ``log_path`` receives
    the whole output of the build and of the push.
    """

    image: ImageReference
    context: Path
    log_path: Path
    dockerfile: Path | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    no_cache: bool = True
    pull: bool = True
    platforms: tuple[str, ...] = ()
    timeout: float = DEFAULT_BUILD_TIMEOUT_SECONDS
    push_timeout: float = DEFAULT_PUSH_TIMEOUT_SECONDS
    #: More tags of the same repository the one build is pushed under (``7``, ``latest``).
    extra_tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.image.registry is None:
            raise ValueError(f"image {self.image} must name the registry it is pushed to")
        if self.image.tag is None:
            raise ValueError(f"image {self.image} must have a tag to build")
        if self.timeout <= 0 or self.push_timeout <= 0:
            raise ValueError("timeouts must be positive")
        object.__setattr__(self, "build_args", _frozen_mapping(self.build_args, "build arg"))
        object.__setattr__(self, "labels", _frozen_mapping(self.labels, "label"))
        object.__setattr__(self, "platforms", tuple(self.platforms))
        object.__setattr__(self, "extra_tags", tuple(
            tag for tag in dict.fromkeys(self.extra_tags) if tag != self.image.tag))
        for tag in self.extra_tags:
            self.image.with_tag(tag)  # a bad tag raises here, before any tool runs

    @property
    def extra_targets(self) -> tuple[str, ...]:
        """The other names the image is pushed under: ``registry/repository:TAG``."""
        return tuple(str(self.image.with_tag(tag).without_digest()) for tag in self.extra_tags)

    @property
    def dockerfile_path(self) -> Path:
        return self.dockerfile if self.dockerfile is not None else self.context / "Dockerfile"

    @property
    def target(self) -> str:
        """The image name given to the tool: ``registry/repository:tag`` (no digest)."""
        return str(self.image.without_digest())


@dataclass(frozen=True, slots=True)
class BuildResult:
    image: ImageReference
    status: Status
    duration: float
    log_path: Path
    log_tail: tuple[str, ...] = ()
    image_id: str | None = None
    error: Failure | None = None

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED


@dataclass(frozen=True, slots=True)
class PushResult:
    """``digest`` is the manifest digest the registry serves for the pushed tag (what a
    ``HEAD /v2/NAME/manifests/TAG`` returns as ``Docker-Content-Digest``)."""

    image: ImageReference
    status: Status
    duration: float
    log_path: Path
    log_tail: tuple[str, ...] = ()
    digest: str | None = None
    error: Failure | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status is Status.SUCCEEDED


class Builder(Protocol):
    """Builds images and pushes them. Implementations: :mod:`careen.builders.docker`,
    :mod:`careen.builders.buildah`."""

    name: str

    def build(self, request: BuildRequest) -> BuildResult:
        """Build ``request.image`` locally (not pushed yet)."""
        ...

    def push(self, request: BuildRequest) -> PushResult:
        """Push the image :meth:`build` made for ``request``; retried on transient errors."""
        ...


def build_and_push(
    builder: Builder, request: BuildRequest,
) -> tuple[BuildResult, PushResult | None]:
    """Build, then push if the build succeeded (``None`` for the push otherwise)."""
    built = builder.build(request)
    if not built.ok:
        return built, None
    return built, builder.push(request)


def standard_labels(
    created: datetime, revision: str, source: str, run_id: str, tree_path: str | None = None,
) -> dict[str, str]:
    """The labels every image Careen builds carries. ``created`` must be timezone-aware; it is
    written in RFC 3339 UTC (``2017-12-08T08:58:01Z``)."""
    if created.tzinfo is None or created.utcoffset() is None:
        raise ValueError("created must be a timezone-aware datetime")
    # isoformat, not strftime: strftime drops the leading zeros of years before 1000.
    stamp = created.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"
    labels = {
        LABEL_CREATED: stamp,
        LABEL_REVISION: revision,
        LABEL_SOURCE: source,
        LABEL_RUN: run_id,
    }
    if tree_path is not None:
        labels[LABEL_TREE_PATH] = tree_path
    return labels


def classify_failure(result: ProcessResult, phase: Failure) -> Failure:
    """Why a failed run of a build tool failed. ``phase`` is what to call an ordinary failure
    (:attr:`Failure.BUILD_FAILED` or :attr:`Failure.PUSH_FAILED`)."""
    if result.not_found:
        return Failure.TOOL_MISSING
    if result.timed_out:
        return Failure.TIMED_OUT
    if looks_tls_rejected(result.tail_text):
        return Failure.TLS_REJECTED
    if looks_auth_rejected(result.tail_text):
        return Failure.AUTH_REJECTED
    return phase


def with_tls_hint(run: ProcessResult, hint: Callable[[str], str], registry: str) -> ProcessResult:
    """``run`` unchanged, unless it failed on TLS: then ``careen: hint(HOST)`` ends its log and
    its tail (HOST: the registry the tool's error names, else ``registry``), so the report says
    what to change."""
    if run.ok or not looks_tls_rejected(run.tail_text):
        return run
    line = "careen: " + hint(tls_rejected_host(run.tail_text) or registry)
    with run.log_path.open("a") as log:
        log.write(line + "\n")
    return replace(run, tail=(*run.tail, line)[-TAIL_LINES:])


def build_result(request: BuildRequest, run: ProcessResult, image_id: str | None) -> BuildResult:
    """A :class:`BuildResult` from the run of a build command."""
    return BuildResult(
        image=request.image,
        status=Status.SUCCEEDED if run.ok else Status.FAILED,
        duration=run.duration,
        log_path=run.log_path,
        log_tail=run.tail,
        image_id=image_id if run.ok else None,
        error=None if run.ok else classify_failure(run, Failure.BUILD_FAILED),
    )


def push_result(
    request: BuildRequest, run: ProcessResult, digest: str | None, attempts: int,
    duration: float,
) -> PushResult:
    """A :class:`PushResult` from the last run of a push command."""
    return PushResult(
        image=request.image,
        status=Status.SUCCEEDED if run.ok else Status.FAILED,
        duration=duration,
        log_path=run.log_path,
        log_tail=run.tail,
        digest=digest if run.ok else None,
        error=None if run.ok else classify_failure(run, Failure.PUSH_FAILED),
        attempts=attempts,
    )


def unsupported_result(request: BuildRequest, why: str) -> BuildResult:
    """The builder cannot build this request (the caller skips the image)."""
    request.log_path.parent.mkdir(parents=True, exist_ok=True)
    with request.log_path.open("a") as log:
        log.write(f"careen: {why}\n")
    return BuildResult(
        image=request.image, status=Status.UNSUPPORTED, duration=0.0,
        log_path=request.log_path, log_tail=(why,),
        error=Failure.MULTI_PLATFORM_UNSUPPORTED,
    )
