"""Registry logins kept in a private, temporary place.

``docker login`` and ``buildah login`` store the credentials (base64, not encrypted) in a file:
by default the user's own ``~/.docker/config.json`` or ``/run/containers/$UID/auth.json``.
Careen never writes those: every run logs in into a private temporary directory (mode 0700,
the file 0600) that is removed when the run ends. The docker CLI finds it through
``DOCKER_CONFIG``, buildah/podman/skopeo through ``REGISTRY_AUTH_FILE``; both formats are the
same ``{"auths": {...}}`` document, so one file serves both tools.

The password travels as a :class:`pydantic.SecretStr` (its repr and str are masked) and is
turned into a ``str`` only when it is written to the login command's stdin; it is never part
of an argument list, a log line or an error message.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from careen.builders.process import (
    TAIL_LINES,
    looks_auth_rejected,
    run_logged,
    tool_environment,
)
from careen.errors import ServiceError

LOGIN_TIMEOUT_SECONDS = 60.0


class LoginTool(StrEnum):
    DOCKER = "docker"
    BUILDAH = "buildah"


@dataclass(frozen=True, slots=True)
class RegistryLogin:
    """Who logs in where. ``registry`` is ``host[:port]``; ``insecure`` means plain HTTP or an
    unverified certificate (lab registries on loopback), and only then is TLS verification
    turned off for this registry."""

    registry: str
    user: str
    password: SecretStr = field(repr=False)
    insecure: bool = False

    def __post_init__(self) -> None:
        if not self.registry or "/" in self.registry or self.registry.startswith("-"):
            raise ValueError(f"registry must be host[:port], not {self.registry!r}")
        if not self.user or self.user.startswith("-"):
            raise ValueError("registry user must be non-empty and must not start with '-'")


#: What a login tool says when the registry cannot be reached at all (Go's net errors).
_UNREACHABLE = re.compile(
    r"connection refused|no such host|i/o timeout|network is unreachable|no route to host|"
    r"connection reset|TLS handshake timeout|server misbehaving|dial tcp|"
    r"context deadline exceeded|EOF$",
    re.IGNORECASE | re.MULTILINE,
)


@dataclass(frozen=True, slots=True)
class LoginResult:
    registry: str
    ok: bool
    auth_rejected: bool
    log_tail: tuple[str, ...]
    tool_missing: bool = False
    #: The registry could not be reached (down, wrong port, no route): not the credentials.
    unreachable: bool = False

    def failure(self) -> ServiceError:
        """What a failed login means, said once (issue 18 row 16): the registry down is
        not a password problem."""
        if self.unreachable and not self.auth_rejected:
            return ServiceError("registry", self.registry, "unreachable at login: "
                                + " | ".join(self.log_tail[-2:]),
                                hint="check [registry] server and that the registry is "
                                     "running and reachable from here")
        return ServiceError("registry", self.registry,
                            "login rejected" if self.auth_rejected else "login failed: "
                            + " | ".join(self.log_tail[-2:]),
                            hint="check [registry] user and CAREEN_REGISTRY_PASSWORD "
                                 "(or registry_user and registry_password)")


class AuthContext:
    """A private credentials directory. Use :func:`private_auth` to get one."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.insecure_registries: set[str] = set()
        self._closed = False

    @property
    def config_file(self) -> Path:
        """``$DOCKER_CONFIG/config.json``, also used as ``REGISTRY_AUTH_FILE``."""
        return self.directory / "config.json"

    def env(self) -> dict[str, str]:
        """Environment variables that point docker and the containers tools at this context."""
        return {"DOCKER_CONFIG": str(self.directory), "REGISTRY_AUTH_FILE": str(self.config_file)}

    def login(
        self,
        login: RegistryLogin,
        *,
        tool: LoginTool,
        env: Mapping[str, str] | None = None,
        timeout: float = LOGIN_TIMEOUT_SECONDS,
        log_path: Path | None = None,
    ) -> LoginResult:
        """Log in with ``tool`` (the password on stdin). ``env`` is added to this process's
        environment (e.g. ``DOCKER_HOST``). The login output goes to ``log_path`` (default: a
        file inside this context, removed with it)."""
        if self._closed:
            raise RuntimeError("this auth context is closed")
        if tool is LoginTool.DOCKER:
            argv = ["docker", "login", "--username", login.user, "--password-stdin",
                    login.registry]
        else:
            argv = ["buildah", "login", "--authfile", str(self.config_file),
                    "--username", login.user, "--password-stdin"]
            if login.insecure:
                argv.append("--tls-verify=false")
            argv.append(login.registry)
        result = run_logged(
            argv,
            env=tool_environment(env, self.env()),
            log_path=log_path or self.directory / "login.log",
            timeout=timeout,
            # The last moment the secret becomes plain text: the bytes on the child's stdin.
            stdin_data=login.password.get_secret_value().encode() + b"\n",
            tail_lines=TAIL_LINES,
        )
        if self.config_file.exists():
            self.config_file.chmod(0o600)
        if result.ok and login.insecure:
            self.insecure_registries.add(login.registry)
        return LoginResult(
            registry=login.registry,
            ok=result.ok,
            auth_rejected=not result.ok and looks_auth_rejected(result.tail_text),
            log_tail=result.tail,
            tool_missing=result.not_found,
            unreachable=not result.ok and not result.not_found and (
                result.timed_out or _UNREACHABLE.search(result.tail_text) is not None),
        )

    def close(self) -> None:
        """Remove the directory and the credentials in it."""
        self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return f"AuthContext(directory={str(self.directory)!r})"


#: Private auth folders are named ``careen-auth-<PID>-<random>``: the PID of the run that made
#: one lets a later run tell a folder whose run was killed (SIGKILL runs no clean-up, and the
#: folder holds the credentials) from one in use, and remove it.
AUTH_DIR_PREFIX = "careen-auth-"
_AUTH_DIR_NAME = re.compile(rf"{AUTH_DIR_PREFIX}(?P<pid>[0-9]{{1,10}})-")


def remove_abandoned_auth(parent: Path | None = None) -> list[Path]:
    """Remove the private auth folders under ``parent`` (default: the system's temporary
    directory) that runs killed before their clean-up left behind: folders of this user whose
    run's process no longer exists. Returns the folders removed. :func:`private_auth` calls
    it, so the next run (``careen run --resume`` after a crash) clears what a killed one left.
    """
    base = Path(parent) if parent is not None else Path(tempfile.gettempdir())
    try:
        entries = list(base.iterdir())
    except OSError:
        return []
    removed = []
    for entry in entries:
        match = _AUTH_DIR_NAME.match(entry.name)
        if match is None:
            continue
        try:
            info = entry.lstat()
        except OSError:
            continue
        # Only real folders of this user: never a symlink, never someone else's folder.
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
            continue
        if _process_exists(int(match["pid"])):
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _process_exists(pid: int) -> bool:
    if pid <= 0:
        return True  # not a PID a folder of ours can carry: leave the folder alone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextmanager
def private_auth(parent: Path | None = None) -> Iterator[AuthContext]:
    """A fresh :class:`AuthContext` in a new mode-0700 directory (under ``parent`` or the
    system's temporary directory), removed on exit even when the body raises. Folders that
    killed runs left there are removed first (:func:`remove_abandoned_auth`)."""
    remove_abandoned_auth(parent)
    directory = Path(tempfile.mkdtemp(prefix=f"{AUTH_DIR_PREFIX}{os.getpid()}-", dir=parent))
    directory.chmod(0o700)
    context = AuthContext(directory)
    try:
        yield context
    finally:
        context.close()
