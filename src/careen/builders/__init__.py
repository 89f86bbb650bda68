"""Image builders: build an image from a Dockerfile folder, push it, report the digest.

:mod:`~careen.builders.interface` holds the :class:`Builder` protocol and its values;
:mod:`~careen.builders.docker` and :mod:`~careen.builders.buildah` implement it;
:mod:`~careen.builders.credentials` keeps registry logins in a private temporary place;
:mod:`~careen.builders.process` runs the tools (logs, timeouts, retries).
"""

from careen.builders.buildah import BuildahBuilder
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
    "AuthContext",
    "BuildRequest",
    "BuildResult",
    "BuildahBuilder",
    "Builder",
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
