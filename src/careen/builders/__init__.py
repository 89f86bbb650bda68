"""Image builders: build an image from a Dockerfile folder, push it, report the digest.

:mod:`~careen.builders.interface` holds the :class:`Builder` protocol and its values;
:mod:`~careen.builders.docker` and :mod:`~careen.builders.buildah` implement it;
:mod:`~careen.builders.credentials` keeps registry logins in a private temporary place;
:mod:`~careen.builders.process` runs the tools (logs, timeouts, retries).

:data:`BUILDERS` is the table ``[build] builder`` is looked up in: a new builder is one module
implementing :class:`Builder` and one entry here.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from careen.builders.buildah import BuildahBuilder, default_slot_folders, storage_slots
from careen.builders.credentials import (
    AuthContext,
    LoginTool,
    RegistryLogin,
    private_auth,
    remove_abandoned_auth,
)
from careen.builders.docker import DockerBuilder
from careen.builders.interface import (
    Builder,
    BuildRequest,
    BuildResult,
    Failure,
    PushResult,
    Status,
    build_and_push,
    standard_labels,
)

__all__ = [
    "BUILDERS",
    "AuthContext",
    "BuildRequest",
    "BuildResult",
    "BuildahBuilder",
    "Builder",
    "BuilderKind",
    "DockerBuilder",
    "Failure",
    "LoginTool",
    "PushResult",
    "RegistryLogin",
    "Status",
    "build_and_push",
    "private_auth",
    "remove_abandoned_auth",
    "standard_labels",
]


@dataclass(frozen=True)
class BuilderKind:
    """One entry of :data:`BUILDERS`: which tool logs in to the registry for this builder,
    and how to make it once logged in (the private auth folder, the builds run at once)."""

    login_tool: LoginTool
    make: Callable[[AuthContext, int], Builder]


def _buildah(auth: AuthContext, jobs: int) -> Builder:
    # Builds at once each get a storage of their own: buildah's storage lock would run them
    # one after the other.
    root, runroot = default_slot_folders(os.environ, Path.home())
    return BuildahBuilder(auth=auth, insecure_registries=auth.insecure_registries,
                          slots=storage_slots(jobs, root, runroot))


def _docker(auth: AuthContext, jobs: int) -> Builder:
    return DockerBuilder(auth=auth)


#: ``[build] builder`` -> the builder. The docker CLI also drives podman's Docker API.
BUILDERS: dict[str, BuilderKind] = {
    "docker": BuilderKind(LoginTool.DOCKER, _docker),
    "buildah": BuilderKind(LoginTool.BUILDAH, _buildah),
}
