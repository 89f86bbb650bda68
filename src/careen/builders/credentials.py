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
    looks_tls_rejected,
    run_logged,
    tool_environment,
)
from careen.errors import ConfigError, ServiceError

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
    #: The registry's certificate was not trusted, or it speaks plain HTTP.
    tls_rejected: bool = False
    #: What to do about it: :func:`tls_hint`.
    hint: str | None = None
    #: The registry could not be reached (down, wrong port, no route): not the credentials.
    unreachable: bool = False

    def failure(self) -> ServiceError:
        """What a failed login means, said once (issue 18 row 16): the registry down is
        not a password problem."""
        if self.unreachable and not self.auth_rejected and not self.tls_rejected:
            return ServiceError("registry", self.registry, "unreachable at login: "
                                + " | ".join(self.log_tail[-2:]),
                                hint="check [registry] server and that the registry is "
                                     "running and reachable from here")
        return ServiceError("registry", self.registry,
                            "login rejected" if self.auth_rejected else "login failed: "
                            + " | ".join(self.log_tail[-2:]),
                            hint=self.hint or "check [registry] user and "
                                 "CAREEN_REGISTRY_PASSWORD (or registry_user and "
                                 "registry_password)")


class AuthContext:
    """A private credentials directory. Use :func:`private_auth` to get one.

    It also keeps how the tools reach each registry over TLS (:meth:`trust`): the registries
    whose certificate is not verified (plain HTTP, self-signed) and the private CA each one's
    certificate is checked against, as the ``--cert-dir`` folder the containers tools take.

    Until a login writes :attr:`config_file`, the context points no tool anywhere
    (:attr:`authfile` is ``None``, :meth:`env` is empty): an open registry, or a builder
    already logged in with its own credentials, is used as it is.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.insecure_registries: set[str] = set()
        self._cert_dirs: dict[str, Path] = {}
        self._closed = False

    @property
    def config_file(self) -> Path:
        """``$DOCKER_CONFIG/config.json``, also used as ``REGISTRY_AUTH_FILE``."""
        return self.directory / "config.json"

    @property
    def authfile(self) -> Path | None:
        """:attr:`config_file` once a login wrote it, else ``None`` (nothing to pass)."""
        return self.config_file if self.config_file.is_file() else None

    def env(self) -> dict[str, str]:
        """Environment variables that point docker and the containers tools at this context;
        none before a login (a tool given an auth file that does not exist fails)."""
        return self._login_env() if self.authfile is not None else {}

    def _login_env(self) -> dict[str, str]:
        return {"DOCKER_CONFIG": str(self.directory), "REGISTRY_AUTH_FILE": str(self.config_file)}

    def trust(self, registry: str, *, verify: bool = True, ca_bundle: Path | None = None,
              setting: str = "registry.ca_bundle") -> None:
        """How the tools connect to ``registry`` (``host[:port]``): ``verify=False`` turns
        certificate verification off for it (and allows plain HTTP); ``ca_bundle``, a PEM file,
        is the private CA its certificate is checked against (copied into a folder of this
        context, as ``ca.crt``: :meth:`cert_dir`). ``setting`` names the file's setting in
        errors. Raises :class:`~careen.errors.ConfigError` for a file that is not a PEM
        certificate."""
        if self._closed:
            raise RuntimeError("this auth context is closed")
        if not verify:
            self.insecure_registries.add(registry)
        if ca_bundle is not None:
            pem = _read_ca_bundle(ca_bundle, setting)
            folder = self.directory / "certs.d" / registry
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            (folder / "ca.crt").write_bytes(pem)
            self._cert_dirs[registry] = folder

    def cert_dir(self, registry: str | None) -> Path | None:
        """The ``--cert-dir`` folder holding ``registry``'s CA (``ca.crt``), if one was given."""
        return self._cert_dirs.get(registry) if registry is not None else None

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
            if login.insecure or login.registry in self.insecure_registries:
                argv.append("--tls-verify=false")
            cert_dir = self.cert_dir(login.registry)
            if cert_dir is not None:
                argv += ["--cert-dir", str(cert_dir)]
            argv.append(login.registry)
        result = run_logged(
            argv,
            env=tool_environment(env, self._login_env()),
            log_path=log_path or self.directory / "login.log",
            timeout=timeout,
            # The last moment the secret becomes plain text: the bytes on the child's stdin.
            stdin_data=login.password.get_secret_value().encode() + b"\n",
            tail_lines=TAIL_LINES,
        )
        if self.config_file.exists():
            self.config_file.chmod(0o600)
        tls_rejected = not result.ok and looks_tls_rejected(result.tail_text)
        if result.ok and login.insecure:
            self.insecure_registries.add(login.registry)
        return LoginResult(
            registry=login.registry,
            ok=result.ok,
            auth_rejected=not result.ok and looks_auth_rejected(result.tail_text),
            log_tail=result.tail,
            tool_missing=result.not_found,
            tls_rejected=tls_rejected,
            hint=tls_hint(tool, login.registry, login=True) if tls_rejected else None,
            unreachable=not result.ok and not result.not_found and (
                result.timed_out or _UNREACHABLE.search(result.tail_text) is not None),
        )

    def close(self) -> None:
        """Remove the directory and the credentials in it."""
        self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)

    def __repr__(self) -> str:
        return f"AuthContext(directory={str(self.directory)!r})"


def tls_hint(tool: LoginTool, host: str, *, login: bool = False) -> str:
    """What to change when ``tool`` did not trust ``host`` (``host[:port]``); ``login``: the
    failure was the login's."""
    if tool is LoginTool.BUILDAH:
        return (f"{host} is not trusted over TLS (or speaks plain HTTP): set [registry] "
                "ca_bundle to the PEM file of the CA that signed its certificate, or "
                "[registry] verify_tls = false for plain HTTP or a self-signed certificate "
                "(CAREEN_REGISTRY_CA_BUNDLE, CAREEN_REGISTRY_VERIFY_TLS)")
    return (f"the docker daemon does not trust {host} over TLS (or it speaks plain HTTP), "
            "and Careen cannot hand TLS settings to a daemon: give the daemon the registry's "
            f"CA (/etc/docker/certs.d/{host}/ca.crt; podman: /etc/containers/certs.d/{host}/"
            "ca.crt) or mark the registry insecure (Docker: \"insecure-registries\" in "
            "/etc/docker/daemon.json; podman: [[registry]] location = "
            f"\"{host}\", insecure = true in registries.conf), then restart the daemon; "
            "or use the buildah builder, which takes [registry] ca_bundle and verify_tls"
            + ("; podman's Docker API logs in over plain HTTP or an unverified certificate only "
               "to a localhost:PORT name, whatever its registries.conf says: set [registry] "
               f"server = \"localhost:{host.rpartition(':')[2]}\" for a registry on this machine"
               if login and ":" in host else ""))


_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"


def _read_ca_bundle(path: Path, setting: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read the CA file {str(path)!r}: {error.strerror or error}",
                          key=setting, hint="give the PEM file of the CA that signed the "
                          "registry's certificate") from None
    if _PEM_CERTIFICATE not in data:
        raise ConfigError(f"the CA file {str(path)!r} holds no PEM certificate "
                          "(-----BEGIN CERTIFICATE-----)",
                          key=setting, hint="give the PEM file of the CA that signed the "
                          "registry's certificate (convert DER with: openssl x509 -inform der "
                          "-in CA.cer -out ca.pem)")
    return data


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
