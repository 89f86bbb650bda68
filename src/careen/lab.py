"""A real container lab on loopback: two registries, podman's Docker API, buildah storage.

Harbor cannot run on the project's machines, but everything else in the update loop can
(``/work/shared/lab.md``): CNCF distribution (``docker-registry``) as the registry, buildah
and the docker CLI (talking to ``podman system service``) as builders. :class:`Lab` starts all
of it inside one directory, so nothing touches the user's own storage or credentials:

- an open registry and one that needs a login (htpasswd, bcrypt), each on a free port;
- the podman Docker-API service on ``DIR/podman.sock``, with its storage under ``DIR``;
- ``containers.conf``, ``registries.conf`` (both registries insecure: plain HTTP) and a
  ``storage.conf`` (vfs, under ``DIR``) for buildah;
- a base image ``library/busybox-base:1.0`` built ``FROM scratch`` with busybox, pushed to
  both registries;
- ``DIR/lab.json`` describing the above, with the PIDs :meth:`Lab.stop` ends.

``python -m careen.lab install|up|down|status|env DIR`` (or ``scripts/lab``) drives it from a
shell; tests use it through the fixtures in ``tests/conftest.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr

from careen.builders.credentials import LoginTool, RegistryLogin, private_auth
from careen.builders.process import run_logged
from careen.errors import ConfigError, ServiceError, UsageError
from careen.events import NULL_OBSERVER, Observer
from careen.reference import ImageReference

#: Debian packages the lab needs (the docker CLI is not one: it is installed separately).
REQUIRED_PACKAGES: tuple[str, ...] = (
    "buildah", "podman", "skopeo", "docker-registry", "runc", "busybox-static", "apache2-utils",
)
INSTALL_COMMAND = "apt-get update && apt-get install -y " + " ".join(REQUIRED_PACKAGES)
#: A program each package provides, for machines without dpkg.
_PACKAGE_PROGRAMS: Mapping[str, str] = {
    "buildah": "buildah", "podman": "podman", "skopeo": "skopeo",
    "docker-registry": "docker-registry", "runc": "runc", "busybox-static": "busybox",
    "apache2-utils": "htpasswd",
}
BUSYBOX_PATH = Path("/bin/busybox")
BASE_IMAGE = "library/busybox-base:1.0"
LAB_USER = "careen"
STATE_FILE = "lab.json"
READY_TIMEOUT_SECONDS = 30.0
#: sun_path holds 108 bytes, the last one NUL.
SOCKET_PATH_MAX = 107
BASE_BUILD_TIMEOUT_SECONDS = 180.0


# -- packages -------------------------------------------------------------------------------

def missing_packages() -> list[str]:
    """The required Debian packages that are not installed (by dpkg, else by their programs)."""
    if shutil.which("dpkg-query"):
        missing = []
        for package in REQUIRED_PACKAGES:
            query = subprocess.run(
                ["dpkg-query", "-W", "-f=${Status}", package],
                capture_output=True, text=True, check=False,
            )
            if query.returncode != 0 or "install ok installed" not in query.stdout:
                missing.append(package)
        return missing
    return [p for p in REQUIRED_PACKAGES if shutil.which(_PACKAGE_PROGRAMS[p]) is None]


def missing_packages_message(missing: Sequence[str]) -> str:
    return (
        f"the lab needs Debian packages that are not installed: {', '.join(missing)}; "
        f"install them with: {INSTALL_COMMAND}  (or: scripts/lab install)"
    )


def can_install_packages() -> bool:
    """Whether :func:`install_packages` can work here: root, with apt-get."""
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install_packages(observer: Observer = NULL_OBSERVER) -> list[str]:
    """Install the missing packages with apt-get (``update`` once, then ``install -y``).
    Returns what was missing (empty: nothing to do). Raises :class:`ConfigError` when this
    machine cannot install them (not root, no apt-get) or apt-get fails."""
    missing = missing_packages()
    if not missing:
        observer.info("lab packages: all present")
        return []
    if not can_install_packages():
        raise ConfigError(
            missing_packages_message(missing),
            source="lab", hint="run it as root on a Debian/Ubuntu machine",
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update"], ["apt-get", "install", "-y", *REQUIRED_PACKAGES]):
        observer.info("running: " + shlex.join(argv))
        done = subprocess.run(argv, env=env, check=False)
        if done.returncode != 0:
            raise ConfigError(
                f"{shlex.join(argv)} failed with exit code {done.returncode}",
                source="lab", hint=f"run by hand: {INSTALL_COMMAND}",
            )
    still = missing_packages()
    if still:
        raise ConfigError(missing_packages_message(still), source="lab")
    return missing


# -- the lab --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Lab:
    """A running lab (or the description of one, as read from ``DIR/lab.json``)."""

    dir: Path
    open_registry: str
    auth_registry: str
    user: str
    password_file: Path
    socket: Path
    pids: Mapping[str, int] = field(default_factory=dict)
    base_image: str = BASE_IMAGE
    #: podman's run root: outside ``dir`` because podman refuses one longer than 50 characters.
    podman_runroot: Path | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def start(cls, directory: Path | str, observer: Observer = NULL_OBSERVER) -> Lab:
        """Start a lab in ``directory`` (created if needed) and wait until it works.
        On failure everything started so far is stopped again."""
        directory = Path(directory).resolve()
        missing = missing_packages()
        if missing:
            raise ConfigError(missing_packages_message(missing), source="lab")
        if (directory / STATE_FILE).exists():
            existing = cls.load(directory)
            if existing.running():
                raise UsageError(
                    f"a lab is already running in {directory}",
                    hint=f"stop it first: scripts/lab down {directory}",
                )
        return _Starter(directory, observer).start()

    @classmethod
    def load(cls, directory: Path | str) -> Lab:
        """Read ``DIR/lab.json`` written by :meth:`start`."""
        path = Path(directory).resolve() / STATE_FILE
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            return cls(
                dir=Path(data["dir"]),
                open_registry=str(data["open_registry"]["host"]),
                auth_registry=str(data["auth_registry"]["host"]),
                user=str(data["auth_registry"]["user"]),
                password_file=Path(data["auth_registry"]["password_file"]),
                socket=Path(data["podman"]["socket"]),
                pids={str(k): int(v) for k, v in data["pids"].items()},
                base_image=str(data["base_image"]),
                podman_runroot=Path(data["podman"]["runroot"]),
            )
        except FileNotFoundError:
            raise UsageError(
                f"no lab in {path.parent}: {path.name} not found",
                hint=f"start one: scripts/lab up {path.parent}",
            ) from None
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"unreadable lab description: {error}", source=str(path)) from None

    def stop(self) -> None:
        """Stop exactly the processes this lab started (each one's whole process group)."""
        for name in reversed(list(self.pids)):
            _stop_process(self.pids[name], self.dir)
        if self.podman_runroot is not None and self.podman_runroot.name.startswith("careen-lab-"):
            shutil.rmtree(self.podman_runroot, ignore_errors=True)

    def running(self) -> bool:
        return bool(self.pids) and all(_is_ours(pid, self.dir) for pid in self.pids.values())

    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the lab offers ---------------------------------------------------------------

    @property
    def open_registry_url(self) -> str:
        return f"http://{self.open_registry}"

    @property
    def auth_registry_url(self) -> str:
        return f"http://{self.auth_registry}"

    @property
    def docker_auth_registry(self) -> str:
        """The login registry as ``localhost:PORT``: the name ``docker login`` must use through
        podman's Docker API (it skips TLS for ``localhost`` only, whatever registries.conf
        says). Push images meant for the docker CLI to this name."""
        return _localhost_alias(self.auth_registry)

    @property
    def docker_open_registry(self) -> str:
        return _localhost_alias(self.open_registry)

    @property
    def registries(self) -> tuple[str, str]:
        return (self.open_registry, self.auth_registry)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    @property
    def containers_conf(self) -> Path:
        return self.dir / "containers.conf"

    @property
    def registries_conf(self) -> Path:
        return self.dir / "registries.conf"

    @property
    def storage_conf(self) -> Path:
        return self.dir / "storage.conf"

    @property
    def buildah_root(self) -> Path:
        return self.dir / "buildah" / "root"

    @property
    def buildah_runroot(self) -> Path:
        return self.dir / "buildah" / "runroot"

    def start_registry(
        self, name: str, *, auth: bool = False, certificate: Path | None = None,
        key: Path | None = None, observer: Observer = NULL_OBSERVER,
    ) -> LabRegistry:
        """One more registry (storage ``DIR/name``), not in the lab's registries.conf: open
        or behind the lab's login (``auth``), plain HTTP or HTTPS with ``certificate`` and
        ``key`` (PEM files; for 127.0.0.1). The caller stops it."""
        return _start_extra_registry(self, name, auth=auth, certificate=certificate, key=key,
                                     observer=observer)

    def start_daemon(self, name: str, insecure: Sequence[str],
                     observer: Observer = NULL_OBSERVER) -> LabDaemon:
        """One more podman Docker-API service whose registries.conf lists ``insecure``
        (``host:port`` names, plain HTTP or unverified TLS) besides the lab's own registries,
        each also under its ``localhost:PORT`` name. Use it with :meth:`docker_env_for`."""
        if not name.replace("-", "").isalnum():
            raise UsageError(f"daemon name {name!r}: letters, digits and '-' only")
        socket_path = self.dir / f"{name}.sock"
        if len(str(socket_path)) > SOCKET_PATH_MAX:
            raise UsageError(f"lab directory path too long for a unix socket: {self.dir}",
                             hint="use a shorter directory")
        registries_conf = self.dir / f"{name}-registries.conf"
        _write_registries_conf(registries_conf, [*self.registries, *insecure])
        tag = hashlib.sha256(f"{self.dir}/{name}".encode()).hexdigest()[:12]
        runroot = Path(tempfile.gettempdir()) / f"careen-lab-{tag}"
        pid = serve_podman(self.dir, name, socket_path, runroot, registries_conf, observer)
        return LabDaemon(name, socket_path, pid, self.dir, runroot, registries_conf)

    def docker_env_for(self, daemon: LabDaemon) -> dict[str, str]:
        """:meth:`docker_env`, but talking to ``daemon``."""
        return {**self.docker_env(), "DOCKER_HOST": daemon.docker_host,
                "CONTAINERS_REGISTRIES_CONF": str(daemon.registries_conf)}

    def password(self) -> SecretStr:
        return SecretStr(self.password_file.read_text().strip())

    def login(self) -> RegistryLogin:
        """The login for the registry that requires one."""
        return RegistryLogin(self.auth_registry, self.user, self.password(), insecure=True)

    def base_image_in(self, registry: str) -> ImageReference:
        return ImageReference.parse(f"{registry}/{self.base_image}")

    def containers_env(self) -> dict[str, str]:
        return {
            "CONTAINERS_CONF": str(self.containers_conf),
            "CONTAINERS_REGISTRIES_CONF": str(self.registries_conf),
            "CONTAINERS_STORAGE_CONF": str(self.storage_conf),
        }

    def buildah_env(self) -> dict[str, str]:
        """Environment for buildah: the lab's containers.conf, registries.conf and storage."""
        return {**self.containers_env(), "STORAGE_DRIVER": "vfs"}

    def docker_env(self) -> dict[str, str]:
        """Environment for the docker CLI: the podman socket, the legacy builder."""
        return {**self.containers_env(), "DOCKER_HOST": self.docker_host, "DOCKER_BUILDKIT": "0"}

    def describe(self) -> dict[str, Any]:
        """The ``lab.json`` document."""
        return {
            "dir": str(self.dir),
            "open_registry": {"host": self.open_registry, "url": self.open_registry_url},
            "auth_registry": {
                "host": self.auth_registry, "url": self.auth_registry_url,
                "user": self.user, "password_file": str(self.password_file),
            },
            "podman": {"socket": str(self.socket), "docker_host": self.docker_host,
                       "runroot": str(self.podman_runroot)},
            "buildah": {"root": str(self.buildah_root), "runroot": str(self.buildah_runroot)},
            "containers_conf": str(self.containers_conf),
            "registries_conf": str(self.registries_conf),
            "storage_conf": str(self.storage_conf),
            "base_image": self.base_image,
            "pids": dict(self.pids),
        }

    def status(self) -> dict[str, bool]:
        """Which services answer right now."""
        return {
            "open_registry": _registry_answers(self.open_registry_url, (200,)),
            "auth_registry": _registry_answers(self.auth_registry_url, (401,)),
            "podman": podman_answers(self.socket),
            **{f"pid {name}": _is_ours(pid, self.dir) for name, pid in self.pids.items()},
        }


class _Starter:
    """The steps of :meth:`Lab.start`, with the PIDs started so far for clean-up."""

    def __init__(self, directory: Path, observer: Observer) -> None:
        self.dir = directory
        self.observer = observer
        self.pids: dict[str, int] = {}
        # Short and unique per lab directory; podman rejects a run root over 50 characters.
        tag = hashlib.sha256(str(directory).encode()).hexdigest()[:12]
        self.podman_runroot = Path(tempfile.gettempdir()) / f"careen-lab-{tag}"

    def start(self) -> Lab:
        try:
            return self._start()
        except BaseException:
            for pid in reversed(list(self.pids.values())):
                _stop_process(pid, self.dir)
            shutil.rmtree(self.podman_runroot, ignore_errors=True)
            raise

    def _start(self) -> Lab:
        d = self.dir
        for sub in ("logs", "registry-open", "registry-auth", "podman/root", "podman/tmp",
                    "buildah/root", "buildah/runroot", "base"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        password_file = d / "password"
        password = secrets.token_urlsafe(24)
        _write_private(password_file, password + "\n")
        htpasswd = subprocess.run(
            ["htpasswd", "-Bin", LAB_USER], input=password + "\n",
            capture_output=True, text=True, check=False,
        )
        if htpasswd.returncode != 0:
            raise ServiceError("htpasswd", "localhost", htpasswd.stderr.strip() or "failed")
        _write_private(d / "htpasswd", htpasswd.stdout)

        open_host = self._start_registry("registry-open", auth=False)
        auth_host = self._start_registry("registry-auth", auth=True)
        self._write_containers_files((open_host, auth_host))
        socket_path = d / "podman.sock"
        if len(str(socket_path)) > SOCKET_PATH_MAX:
            raise UsageError(f"lab directory path too long for a unix socket: {d}",
                             hint="use a shorter directory")
        self._start_podman(socket_path)
        lab = Lab(
            dir=d, open_registry=open_host, auth_registry=auth_host, user=LAB_USER,
            password_file=password_file, socket=socket_path, pids=dict(self.pids),
            podman_runroot=self.podman_runroot,
        )
        # Written before the base image so a failed build still leaves `down` its PIDs.
        (d / STATE_FILE).write_text(json.dumps(lab.describe(), indent=2) + "\n")
        self._push_base_image(lab)
        self.observer.info(f"lab up in {d}: registries {open_host} (open), {auth_host} (login)")
        return lab

    def _start_registry(self, name: str, *, auth: bool) -> str:
        """Start ``docker-registry`` on a free port; retry when another process took it."""
        host, pid = serve_registry(self.dir, name,
                                   htpasswd=self.dir / "htpasswd" if auth else None,
                                   observer=self.observer)
        self.pids[name] = pid
        return host

    def _write_containers_files(self, registries: Sequence[str]) -> None:
        d = self.dir
        (d / "containers.conf").write_text(
            "# Written by careen.lab. Without these, RUN steps fail with\n"
            '# "cgroups in hybrid mode not supported" on these machines.\n'
            "[containers]\n"
            'cgroups = "disabled"\n'
            "[engine]\n"
            'cgroup_manager = "cgroupfs"\n'
            'runtime = "runc"\n'
            'events_logger = "file"\n'
        )
        _write_registries_conf(d / "registries.conf", registries)
        (d / "storage.conf").write_text(
            "# Written by careen.lab: buildah's storage stays inside the lab directory.\n"
            "[storage]\n"
            'driver = "vfs"\n'
            f'graphroot = "{d / "buildah" / "root"}"\n'
            f'runroot = "{d / "buildah" / "runroot"}"\n'
        )

    def _start_podman(self, socket_path: Path) -> None:
        d = self.dir
        self.pids["podman"] = serve_podman(
            d, "podman", socket_path, self.podman_runroot, d / "registries.conf", self.observer)

    def _push_base_image(self, lab: Lab) -> None:
        """Build ``FROM scratch`` + busybox with buildah; push it to both registries."""
        context = self.dir / "base"
        shutil.copy2(BUSYBOX_PATH, context / "busybox")
        (context / "Dockerfile").write_text(
            "FROM scratch\n"
            "COPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        )
        env = {**os.environ, **lab.buildah_env()}
        log = self.dir / "logs" / "base-image.log"
        local = lab.base_image_in(lab.open_registry)
        self.observer.info(f"building {lab.base_image}")
        steps: list[list[str]] = [[
            "buildah", "--storage-driver", "vfs", "bud", "--isolation", "chroot",
            "-t", str(local), "-f", str(context / "Dockerfile"), str(context),
        ]]
        with private_auth(self.dir) as auth:
            login = auth.login(lab.login(), tool=LoginTool.BUILDAH, env=env)
            if not login.ok:
                raise ServiceError("docker-registry", lab.auth_registry,
                                   "lab login failed: " + " | ".join(login.log_tail[-3:]))
            for registry in lab.registries:
                steps.append([
                    "buildah", "--storage-driver", "vfs", "push", "--tls-verify=false",
                    "--authfile", str(auth.config_file),
                    str(local), f"docker://{lab.base_image_in(registry)}",
                ])
            for argv in steps:
                result = run_logged(argv, env=env, log_path=log,
                                    timeout=BASE_BUILD_TIMEOUT_SECONDS)
                if not result.ok:
                    raise ServiceError("buildah", "localhost",
                                       f"base image step failed: {result.tail_text[-500:]}",
                                       hint=f"see {log}")


# -- more registries ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class LabRegistry:
    """A registry started beside a lab (:meth:`Lab.start_registry`): plain HTTP or HTTPS with
    the given certificate, open or behind the lab's htpasswd login. Stop it with :meth:`stop`
    (the lab's own :meth:`Lab.stop` does not know it)."""

    name: str
    host: str
    pid: int
    dir: Path
    tls: bool
    auth: bool

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}"

    def stop(self) -> None:
        _stop_process(self.pid, self.dir)

    def __enter__(self) -> LabRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _start_extra_registry(
    lab: Lab, name: str, *, auth: bool, certificate: Path | None, key: Path | None,
    observer: Observer,
) -> LabRegistry:
    if (certificate is None) != (key is None):
        raise UsageError("a TLS registry needs both a certificate and its key")
    if not name.replace("-", "").isalnum():
        raise UsageError(f"registry name {name!r}: letters, digits and '-' only")
    (lab.dir / name).mkdir(exist_ok=True)
    tls = (certificate, key) if certificate is not None and key is not None else None
    host, pid = serve_registry(lab.dir, name, htpasswd=lab.dir / "htpasswd" if auth else None,
                               tls=tls, observer=observer)
    return LabRegistry(name, host, pid, lab.dir, tls is not None, auth)


def serve_podman(directory: Path, name: str, socket_path: Path, runroot: Path,
                 registries_conf: Path, observer: Observer = NULL_OBSERVER) -> int:
    """Start ``podman system service`` (the Docker API) on ``socket_path``, its storage in
    ``directory/name``, reading ``registries_conf`` (once, at start) and the lab's
    containers.conf. Returns its PID once it answers."""
    socket_path.unlink(missing_ok=True)
    runroot.mkdir(mode=0o700, exist_ok=True)
    for sub in ("root", "tmp"):
        (directory / name / sub).mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CONTAINERS_CONF": str(directory / "containers.conf"),
        "CONTAINERS_REGISTRIES_CONF": str(registries_conf),
    }
    argv = [
        "podman", "--storage-driver", "vfs",
        "--root", str(directory / name / "root"), "--runroot", str(runroot),
        "--tmpdir", str(directory / name / "tmp"),
        "system", "service", "--time=0", f"unix://{socket_path}",
    ]
    observer.info(f"starting podman service on {socket_path}")
    pid = _spawn(argv, directory, name, env)
    if not _wait_until(lambda: podman_answers(socket_path), pid=pid):
        _stop_process(pid, directory)
        raise ServiceError(
            "podman", str(socket_path),
            f"the Docker API service did not start: "
            f"{_log_tail(directory / 'logs' / f'{name}.log')}",
        )
    return pid


@dataclass(frozen=True, slots=True)
class LabDaemon:
    """One more podman Docker-API service (:meth:`Lab.start_daemon`), configured as a
    daemon's administrator would: its own registries.conf. The caller stops it."""

    name: str
    socket: Path
    pid: int
    dir: Path
    runroot: Path
    registries_conf: Path

    @property
    def docker_host(self) -> str:
        return f"unix://{self.socket}"

    def stop(self) -> None:
        _stop_process(self.pid, self.dir)
        shutil.rmtree(self.runroot, ignore_errors=True)


def serve_registry(
    directory: Path, name: str, *, htpasswd: Path | None = None,
    tls: tuple[Path, Path] | None = None, observer: Observer = NULL_OBSERVER,
) -> tuple[str, int]:
    """Start ``docker-registry`` on a free loopback port with its storage in
    ``directory/name`` and its log in ``directory/logs/name.log``; ``htpasswd`` asks for a
    login, ``tls`` (certificate, key) serves HTTPS. Retries when another process took the
    port. Returns ``(host:port, pid)`` once ``/v2/`` answers."""
    last_error = ""
    scheme = "https" if tls is not None else "http"
    for _ in range(5):
        port = _free_port()
        host = f"127.0.0.1:{port}"
        http: dict[str, Any] = {"addr": host, "secret": secrets.token_hex(16)}
        if tls is not None:
            http["tls"] = {"certificate": str(tls[0]), "key": str(tls[1])}
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info"},
            "storage": {"filesystem": {"rootdirectory": str(directory / name)},
                        "delete": {"enabled": True}},
            "http": http,
        }
        if htpasswd is not None:
            config["auth"] = {"htpasswd": {"realm": "careen-lab", "path": str(htpasswd)}}
        config_path = directory / f"{name}.yml"
        # JSON is YAML: no YAML writer needed.
        config_path.write_text(json.dumps(config, indent=2) + "\n")
        observer.info(f"starting {name} on {scheme}://{host}")
        pid = _spawn(["docker-registry", "serve", str(config_path)], directory, name,
                     dict(os.environ))
        if _wait_until(lambda h=host: _registry_answers(f"{scheme}://{h}", (200, 401)),
                       pid=pid):
            return host, pid
        _stop_process(pid, directory)
        last_error = _log_tail(directory / "logs" / f"{name}.log")
    raise ServiceError("docker-registry", "127.0.0.1", f"{name} did not start: {last_error}")


# -- processes ------------------------------------------------------------------------------

def _spawn(argv: Sequence[str], directory: Path, name: str, env: Mapping[str, str]) -> int:
    log = (directory / "logs" / f"{name}.log").open("ab")
    with log:
        child = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=dict(env), cwd=directory, start_new_session=True,
        )
    return child.pid


def _is_ours(pid: int, directory: Path) -> bool:
    """Whether ``pid`` is alive and is a process this lab started (its command line names the
    lab directory), so a recycled PID is never signalled."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and str(directory).encode() in cmdline


def _stop_process(pid: int, directory: Path, grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid`` (if it is ours), SIGKILL it after ``grace``,
    then SIGKILL every descendant that left the group (podman runs a build's RUN step in a
    session of its own, which outlives the service when only the group is signalled)."""
    if not _is_ours(pid, directory):
        _reap(pid)
        return
    children = descendants(pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not _is_ours(pid, directory):
            break
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for child in children:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(child, signal.SIGKILL)
    for _ in range(100):
        _reap(pid)
        if not _is_ours(pid, directory):
            return
        time.sleep(0.05)


def descendants(root: int) -> list[int]:
    """Every live process below ``root`` in the process tree (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[-1].split()[1])
    found: list[int] = []
    frontier = [root]
    while frontier:
        current = frontier.pop()
        children = [pid for pid, parent in parents.items() if parent == current]
        found.extend(children)
        frontier.extend(children)
    return found


def _reap(pid: int) -> None:
    """Collect the exit status of a child of this process (no zombie left behind)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _write_registries_conf(path: Path, registries: Sequence[str]) -> None:
    # Each registry also under its ``localhost:PORT`` name: podman's Docker-API login
    # endpoint skips TLS only for ``localhost`` (it ignores registries.conf), so
    # ``docker login`` through podman works only with that name.
    names = [n for r in registries for n in (r, _localhost_alias(r))]
    blocks = [f'[[registry]]\nlocation = "{n}"\ninsecure = true\n' for n in names]
    path.write_text(
        "# Written by careen.lab: the lab's registries speak plain HTTP on loopback.\n"
        + "\n".join(blocks)
    )


def _localhost_alias(host: str) -> str:
    return "localhost:" + host.rpartition(":")[2]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _wait_until(ready: Any, *, pid: int, timeout: float = READY_TIMEOUT_SECONDS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        _reap(pid)
        if not Path(f"/proc/{pid}").exists():
            return False
        time.sleep(0.1)
    return False


def _registry_answers(url: str, statuses: Sequence[int]) -> bool:
    try:
        # Whether it answers, not whom to trust: a lab registry's certificate is the lab's.
        return httpx.get(f"{url}/v2/", timeout=2.0, verify=False).status_code in statuses  # noqa: S501
    except httpx.HTTPError:
        return False


def podman_answers(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        with httpx.Client(transport=httpx.HTTPTransport(uds=str(socket_path)),
                          timeout=2.0) as client:
            return client.get("http://podman/_ping").status_code == 200
    except httpx.HTTPError:
        return False


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def running_lab(directory: Path | str, observer: Observer = NULL_OBSERVER) -> Iterator[Lab]:
    """``with running_lab(dir) as lab:`` — start, yield, stop."""
    lab = Lab.start(directory, observer)
    try:
        yield lab
    finally:
        lab.stop()


# -- command line (scripts/lab) --------------------------------------------------------------

class _PrintObserver:
    def processing(self, image: str) -> None:
        print(f"lab: processing {image}", file=sys.stderr)

    def progress(self, task: str, done: int, total: int | None) -> None:
        pass

    def info(self, message: str) -> None:
        print(f"lab: {message}", file=sys.stderr)

    def warning(self, message: str) -> None:
        print(f"lab: warning: {message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/lab", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="apt-get install the packages the lab needs")
    for name, text in (("up", "start a lab in DIR"), ("down", "stop the lab in DIR"),
                       ("status", "show whether the lab in DIR answers"),
                       ("env", "print shell exports for using the lab in DIR")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("dir", type=Path)
    args = parser.parse_args(argv)
    observer = _PrintObserver()
    try:
        if args.command == "install":
            installed = install_packages(observer)
            print("installed: " + " ".join(installed) if installed else "nothing to install")
        elif args.command == "up":
            lab = Lab.start(args.dir, observer)
            print(json.dumps(lab.describe(), indent=2))
        elif args.command == "down":
            Lab.load(args.dir).stop()
            print(f"lab in {args.dir.resolve()} stopped")
        elif args.command == "status":
            lab = Lab.load(args.dir)
            state = lab.status()
            for name, up in state.items():
                print(f"{name}: {'up' if up else 'DOWN'}")
            return 0 if all(state.values()) else 1
        elif args.command == "env":
            lab = Lab.load(args.dir)
            env = {**lab.docker_env(), **lab.buildah_env(),
                   "CAREEN_LAB_OPEN_REGISTRY": lab.open_registry,
                   "CAREEN_LAB_AUTH_REGISTRY": lab.auth_registry,
                   "CAREEN_LAB_USER": lab.user,
                   "CAREEN_LAB_PASSWORD_FILE": str(lab.password_file)}
            for key, value in env.items():
                print(f"export {key}={shlex.quote(value)}")
    except (UsageError, ServiceError) as error:
        print(f"lab: {error}", file=sys.stderr)
        if error.hint:
            print(f"lab: hint: {error.hint}", file=sys.stderr)
        return int(error.exit_code)
    return 0


if __name__ == "__main__":
    sys.exit(main())
