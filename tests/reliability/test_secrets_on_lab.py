"""The registry password, set as Careen is given it (the environment, or ``password_file``),
goes through a real login, build and push on the lab and is found nowhere afterwards.

While the login, the build and the push run, a watcher samples ``ps -eo args`` and every
process's ``/proc/PID/cmdline``, and the environment of the build tools it sees. Afterwards
the build log, everything under the work folder, the lab, the temporary folder's Careen and
container-tool entries and the (temporary) home folder are read byte by byte for the password
and for the ``user:password`` pair base64-encoded as auth files hold it. The private auth
folder must be gone, and neither ``~/.docker/config.json`` nor the containers tools' default
auth files may have been written.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pytest

from careen.builders import (
    BuildahBuilder,
    Builder,
    BuildRequest,
    DockerBuilder,
    LoginTool,
    RegistryLogin,
    build_and_push,
    private_auth,
    standard_labels,
)
from careen.config import Config, load_config
from careen.lab import Lab
from careen.reference import ImageReference

pytestmark = pytest.mark.lab

#: Files the containers tools write credentials to by default (root), besides ~/.docker.
DEFAULT_AUTH_FILES = (Path("/run/containers/0/auth.json"),)


@dataclass
class Watch:
    """What the watcher saw: ``ps`` snapshots, command lines, and the build tools' environment
    (by PID) from ``/proc``."""

    marker: str
    ps: list[str] = field(default_factory=list)
    cmdlines: set[bytes] = field(default_factory=set)
    tool_environments: dict[int, bytes] = field(default_factory=dict)

    def sample(self) -> None:
        self.ps.append(subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True,
                                      text=True, check=False).stdout)
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                cmdline = (entry / "cmdline").read_bytes()
                self.cmdlines.add(cmdline)
                # The build and push name the image; the login reads its password on stdin.
                if self.marker.encode() in cmdline or b"--password-stdin" in cmdline:
                    self.tool_environments[int(entry.name)] = (entry / "environ").read_bytes()

    def saw_the_tools(self) -> bool:
        return any(self.marker.encode() in c for c in self.cmdlines)


@contextlib.contextmanager
def watching(marker: str) -> Iterator[Watch]:
    watch = Watch(marker)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            watch.sample()
            stop.wait(0.02)

    thread = threading.Thread(target=loop, name="secret-watcher")
    thread.start()
    try:
        yield watch
    finally:
        stop.set()
        thread.join()


def files_holding(root: Path, needles: tuple[bytes, ...], *, skip: frozenset[Path] = frozenset(),
                  ) -> list[Path]:
    """Regular files under ``root`` (or ``root`` itself) that contain any of ``needles``.
    (``os.walk`` skips what vanishes meanwhile: other runs share the temporary folder.)"""
    if root.is_symlink() or not root.exists():
        return []
    paths = [root] if root.is_file() else [
        Path(folder) / name for folder, _, names in os.walk(root) for name in names]
    found = []
    for path in paths:
        if path in skip or path.is_symlink() or not path.is_file():
            continue
        with contextlib.suppress(OSError):
            if any(needle in path.read_bytes() for needle in needles):
                found.append(path)
    return found


def _config(source: str, registry: str, lab: Lab, work: Path, secrets: Path,
            monkeypatch: pytest.MonkeyPatch) -> Config:
    """The registry settings as Careen reads them; the password from ``source``."""
    password = lab.password().get_secret_value()
    if source == "env":
        # Set in this process too, as a Jenkins job exports it: the tools must not inherit it.
        environ = {"CAREEN_REGISTRY_SERVER": registry, "CAREEN_REGISTRY_USER": lab.user,
                   "CAREEN_REGISTRY_PASSWORD": password, "CAREEN_REGISTRY_VERIFY_TLS": "false"}
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return load_config(cwd=work, environ=environ)
    secrets.mkdir()
    password_file = secrets / "registry-password"
    password_file.write_text(password + "\n")
    password_file.chmod(0o600)
    (work / "careen.toml").write_text(
        f'[registry]\nserver = "{registry}"\nuser = "{lab.user}"\n'
        f'password_file = "{password_file}"\nverify_tls = false\n')
    return load_config(cwd=work, environ={})


@pytest.mark.parametrize("source", ["env", "password_file"])
@pytest.mark.parametrize("kind", ["buildah", "docker"])
def test_the_password_is_in_no_argv_log_or_file(
        kind: str, source: str, lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        request: pytest.FixtureRequest) -> None:
    if kind == "docker":
        request.getfixturevalue("docker_cli")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    registry = lab.auth_registry if kind == "buildah" else lab.docker_auth_registry
    open_registry = lab.open_registry if kind == "buildah" else lab.docker_open_registry
    config = _config(source, registry, lab, work, tmp_path / "secrets", monkeypatch)
    assert config.sources["registry.password"] == (
        "CAREEN_REGISTRY_PASSWORD" if source == "env" else "password_file")
    assert config.registry.password is not None and config.registry.server == registry
    password = config.registry.password.get_secret_value()
    needles = (password.encode(), base64.b64encode(f"{lab.user}:{password}".encode()))
    defaults_before = {p: p.read_bytes() if p.exists() else None for p in DEFAULT_AUTH_FILES}

    marker = f"library/secret-{kind}-{source.replace('_', '-')}"
    context = work / "context"
    context.mkdir()
    (context / "Dockerfile").write_text(
        f"FROM {open_registry}/library/busybox-base:1.0\nARG STAMP\nRUN echo $STAMP > /stamp\n")
    build_log = work / "logs" / "build.log"
    env = lab.buildah_env() if kind == "buildah" else lab.docker_env()
    with watching(marker) as watch, private_auth() as auth:
        auth_dir = auth.directory
        tool = LoginTool.BUILDAH if kind == "buildah" else LoginTool.DOCKER
        assert config.registry.user is not None
        login = auth.login(RegistryLogin(registry, config.registry.user,
                                         config.registry.password,
                                         insecure=not config.registry.verify_tls),
                           tool=tool, env=env, log_path=work / "logs" / "login.log")
        assert login.ok, login.log_tail
        builder: Builder = (
            BuildahBuilder(auth=auth, env=env, insecure_registries=auth.insecure_registries)
            if kind == "buildah" else DockerBuilder(auth=auth, env=env))
        image = ImageReference.parse(f"{registry}/{marker}:1")
        built, pushed = build_and_push(builder, BuildRequest(
            image, context, build_log, build_args={"STAMP": "careen"},
            labels=standard_labels(datetime.now(UTC), "0" * 40, "https://git.example/f", "r1"),
            timeout=300, push_timeout=120))
        assert built.ok, built.log_tail
        assert pushed is not None and pushed.ok, pushed and pushed.log_tail

    # Not in any argument list, nor in a build tool's environment, while they ran.
    assert watch.saw_the_tools(), "the watcher never saw the build tools run"
    assert not [snapshot for snapshot in watch.ps if password in snapshot]
    assert not [c for c in watch.cmdlines if any(n in c for n in needles)]
    assert watch.tool_environments, "the watcher never read a tool's environment"
    leaked = [pid for pid, environ in watch.tool_environments.items()
              if any(n in environ for n in needles)]
    assert leaked == [], "a build tool was given the password in its environment"
    # Not in the results Careen hands on, nor in the logs.
    for shown in (repr(login), repr(built), repr(pushed), repr(auth), repr(config.registry)):
        assert password not in shown
    assert build_log.is_file() and password not in build_log.read_text(errors="replace")
    # Nothing on disk: the work folder, the lab, Careen's and the tools' temporary entries,
    # the home folder. (The password file the user gave is the one place it may be.)
    temp = Path(tempfile.gettempdir())
    roots = [work, lab.dir, home,
             *[p for p in temp.iterdir()
               if p.name.startswith(("careen", "podman", "buildah", "auth", "docker"))]]
    assert [leak for root in roots for leak in files_holding(
        root, needles, skip=frozenset({lab.password_file}))] == []
    # The private auth folder is gone, and no default credentials file was written.
    assert not auth_dir.exists()
    assert not list(temp.glob(f"careen-auth-{os.getpid()}-*"))
    assert not (home / ".docker").exists()
    assert not (home / ".config" / "containers").exists()
    assert {p: p.read_bytes() if p.exists() else None for p in DEFAULT_AUTH_FILES} == (
        defaults_before)
    assert os.environ["HOME"] == str(home)
