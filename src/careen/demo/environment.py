"""The demo's whole environment on one machine, under one folder: lab, fleet, Harbor.

:func:`start_demo` sets up what ``careen demo`` (and a person exploring with ``--keep``) needs:

1. the lab in ``FOLDER/lab`` (:class:`careen.lab.Lab`: a registry that needs a login, the
   builders' configuration, a ``FROM scratch`` busybox base image);
2. the distribution's OS image ``upstream/os:stable`` published with old package versions;
3. the Dockerfile tree in ``FOLDER/tree`` (the seed's ``app/version/Dockerfile`` layout, a git
   repository with one commit), built and pushed parents first with buildah (careen's own
   :class:`~careen.builders.BuildahBuilder`, whichever builder the run will use: the images
   in the registry are the same);
4. ``upstream/os:stable`` re-published with patched packages (the distribution's security
   update: rebuilding ``base`` now picks it up);
5. the Harbor simulator as a detached process (``FOLDER/harbor``, log in
   ``FOLDER/logs/harbor-sim.log``), mirroring the lab registry and scanning with the package
   scanner (:mod:`careen.sim.harbor.package_scanner`) against the demo's advisories, then a
   scan of everything (the seed's nightly scan-all), so the fleet has scan results;
6. ``FOLDER/careen.toml`` for ``careen run`` (no password in it: ``password_file`` paths).

Ports are free loopback ports chosen when each service starts, so demos and tests do not
collide. Nothing here prints: progress goes to the :class:`~careen.events.Observer`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import tomli_w
from pydantic import SecretStr

from careen.builders import (
    BuildahBuilder,
    BuildRequest,
    LoginTool,
    build_and_push,
    private_auth,
)
from careen.demo.simulator import SimulatorSettings
from careen.errors import ConfigError, ServiceError, UsageError
from careen.events import Observer
from careen.fileio import write_atomically
from careen.lab import (
    Lab,
    _is_ours,
    _spawn,
    _stop_process,
    missing_packages,
    missing_packages_message,
)
from careen.reference import ImageReference
from careen.registries.harbor import open_harbor
from careen.registries.harbor_v2 import HarborV2Client
from careen.registries.http import HarborSettings
from careen.tree.discover import discover_tree
from careen.tree.graph import BuildGraph

Builder = Literal["buildah", "docker"]
BUILDERS: tuple[Builder, ...] = ("buildah", "docker")

#: The Harbor project of the tree's ``app/version`` folders.
PROJECT = "library"
#: The distribution's OS image the demo publishes twice (not in the tree).
UPSTREAM_IMAGE = "upstream/os:stable"
HARBOR_USER = "admin"
SITE_FILE = "demo.json"
SIM_LOG_NAME = "harbor-sim"
#: Seconds to wait for the simulator to listen, and for the initial scan of the fleet.
SIMULATOR_START_TIMEOUT = 30.0
INITIAL_SCAN_TIMEOUT = 60.0
BUILD_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class DemoExpectation:
    """What the demo's data makes the default policy do (tests and the demo's summary
    check against it). Images as ``project/repository:tag``."""

    #: Images that break the policy before the run; all are rebuilt and pass after it.
    selected: tuple[str, ...]
    #: Tree images that pass the policy and are not rebuilt.
    unrelated: tuple[str, ...]
    #: The rebuild order of :attr:`selected`, level by level (parents first).
    order: tuple[tuple[str, ...], ...]
    #: Images in Harbor that are not in the tree.
    outside_tree: tuple[str, ...]


EXPECTED = DemoExpectation(
    selected=("library/base:1.0", "library/jre:8", "library/nginx:1.25", "library/python:3.11",
              "library/tomcat:8.5"),
    unrelated=("library/memcached:1.6", "library/postgres:16", "library/redis:7.2"),
    order=(("library/base:1.0",), ("library/jre:8", "library/nginx:1.25",
                                   "library/python:3.11"), ("library/tomcat:8.5",)),
    outside_tree=(UPSTREAM_IMAGE, "library/busybox-base:1.0"),
)


def data_path() -> resources.abc.Traversable:
    """The demo's shipped files: ``tree/``, ``upstream/``, ``advisories.toml``."""
    return resources.files("careen.demo") / "data"


@dataclass(frozen=True)
class DemoSite:
    """A demo that was started (or the description of one, read back by :func:`load_demo`).

    ``registry`` is the push registry as the chosen builder must name it (``localhost:PORT``
    for docker through podman, ``127.0.0.1:PORT`` for buildah).
    """

    folder: Path
    config_path: Path
    lab: Lab
    harbor_url: str
    registry: str
    builder: Builder
    harbor_user: str = HARBOR_USER
    harbor_password_file: Path = field(default=Path())
    simulator_pid: int = 0
    expected: DemoExpectation = EXPECTED

    @property
    def tree(self) -> Path:
        return self.folder / "tree"

    @property
    def reports_dir(self) -> Path:
        return self.folder / "reports"

    @property
    def simulator_log(self) -> Path:
        return self.folder / "logs" / f"{SIM_LOG_NAME}.log"

    def environ(self) -> dict[str, str]:
        """The environment ``careen`` needs to use this demo: ``CAREEN_CONFIG`` and what the
        builder needs (the lab's containers files; ``DOCKER_HOST`` for docker). Passwords are
        not in it: ``careen.toml`` names the files holding them."""
        tool = self.lab.docker_env() if self.builder == "docker" else self.lab.buildah_env()
        return {**tool, "CAREEN_CONFIG": str(self.config_path)}

    def simulator_running(self) -> bool:
        return self.simulator_pid > 0 and _is_ours(self.simulator_pid, self.folder)

    def describe(self) -> str:
        """Lines telling a person how to explore the running demo from a shell."""
        exports = " ".join(f"{key}={shlex.quote(value)}"
                           for key, value in sorted(self.environ().items()))
        return "\n".join([
            f"The demo runs in {self.folder}:",
            f"  Harbor (simulator): {self.harbor_url}  user {self.harbor_user}, password in "
            f"{self.harbor_password_file}",
            f"  registry:           {self.registry}  user {self.lab.user}, password in "
            f"{self.lab.password_file}",
            f"  Dockerfile tree:    {self.tree}",
            "Point careen at it:",
            f"  export {exports}",
            "  careen images          # what Harbor holds, with scan summaries",
            "  careen vulnerable -o - # what breaks the policy (vulnerable.list)",
            "  careen plan            # what a run would rebuild, parents first",
            "  careen run             # rebuild, push, rescan, verify, report",
            f"Stop it with: careen demo --down {self.folder}",
        ])

    def to_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder), "config_path": str(self.config_path),
            "lab": str(self.lab.dir), "harbor_url": self.harbor_url,
            "registry": self.registry, "builder": self.builder,
            "harbor_user": self.harbor_user,
            "harbor_password_file": str(self.harbor_password_file),
            "simulator_pid": self.simulator_pid,
        }


# -- start ------------------------------------------------------------------------------------

def check_requirements(builder: str) -> None:
    """Raise :class:`ConfigError` naming what is missing and the command that installs it."""
    if builder not in BUILDERS:
        raise UsageError(f"unknown builder {builder!r}", hint="use buildah or docker")
    missing = missing_packages()
    if shutil.which("git") is None:
        missing.append("git")
    if missing:
        command = missing_packages_message(missing)
        if "git" in missing:
            command += " git"
        raise ConfigError(command, source="careen demo")
    if builder == "docker" and shutil.which("docker") is None:
        raise ConfigError("the docker builder needs the docker CLI, which is not installed",
                          source="careen demo",
                          hint="install the docker CLI, or run the demo with buildah")


def start_demo(folder: Path, *, builder: str = "buildah", observer: Observer) -> DemoSite:
    """Start the demo in ``folder`` (created if needed; a demo already running there is an
    error). On failure everything started so far is stopped again."""
    check_requirements(builder)
    folder = folder.resolve()
    if (folder / SITE_FILE).exists():
        with contextlib.suppress(UsageError, ConfigError):
            if load_demo(folder).simulator_running():
                raise UsageError(f"a demo is already running in {folder}",
                                 hint=f"stop it first: careen demo --down {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    started: list[Lab | int] = []
    try:
        chosen: Builder = "docker" if builder == "docker" else "buildah"
        return _start(folder, chosen, observer, started)
    except BaseException:
        for thing in reversed(started):
            if isinstance(thing, Lab):
                thing.stop()
            else:
                _stop_process(thing, folder)
        raise


def _start(folder: Path, builder: Builder, observer: Observer,
           started: list[Lab | int]) -> DemoSite:
    for sub in ("logs", "harbor", "secrets"):
        (folder / sub).mkdir(exist_ok=True)
    (folder / "secrets").chmod(0o700)
    lab = Lab.start(folder / "lab", observer)
    started.append(lab)

    with resources.as_file(data_path()) as shipped:
        for name in ("tree", "upstream"):
            shutil.rmtree(folder / name, ignore_errors=True)
            shutil.copytree(shipped / name, folder / name)
        shutil.copy2(shipped / "advisories.toml", folder / "advisories.toml")
    commit_tree(folder / "tree")
    observer.info(f"Dockerfile tree in {folder / 'tree'} (a git repository, one commit)")

    registry = lab.auth_registry
    with private_auth(folder / "secrets") as auth:
        login = auth.login(lab.login(), tool=LoginTool.BUILDAH, env=lab.buildah_env())
        if not login.ok:
            raise ServiceError("registry", registry, "the lab registry refused the login")
        buildah = BuildahBuilder(auth=auth, env=lab.buildah_env(),
                                 insecure_registries=lab.registries)
        publish_upstream(buildah, folder / "upstream" / "os-stable-old", registry,
                         folder / "logs", observer)
        build_fleet(buildah, folder / "tree", registry, folder / "logs", observer)
        publish_upstream(buildah, folder / "upstream" / "os-stable-patched", registry,
                         folder / "logs", observer)
        observer.info(f"{UPSTREAM_IMAGE} re-published with the distribution's security update")

    harbor_password = folder / "secrets" / "harbor-password"
    _write_private(harbor_password, secrets.token_urlsafe(24) + "\n")
    url, pid = start_simulator(folder, lab, harbor_password, observer)
    started.append(pid)
    scan_everything(url, HARBOR_USER, SecretStr(harbor_password.read_text().strip()), observer)

    site = DemoSite(
        folder=folder, config_path=folder / "careen.toml", lab=lab, harbor_url=url,
        registry=lab.docker_auth_registry if builder == "docker" else lab.auth_registry,
        builder=builder, harbor_password_file=harbor_password, simulator_pid=pid,
    )
    write_atomically(site.config_path, config_text(site))
    write_atomically(folder / SITE_FILE, json.dumps(site.to_dict(), indent=2) + "\n")
    observer.info(f"demo ready in {folder}: Harbor simulator at {url}")
    return site


def commit_tree(tree: Path) -> None:
    """Make ``tree`` a git repository with everything in one commit (careen records it)."""
    env = {**os.environ, "GIT_CONFIG_NOSYSTEM": "1", "GIT_TERMINAL_PROMPT": "0",
           "LC_ALL": "C"}
    steps = (
        ["git", "init", "--quiet"],
        ["git", "config", "user.name", "Careen demo"],
        ["git", "config", "user.email", "demo@careen.invalid"],
        ["git", "config", "commit.gpgsign", "false"],
        ["git", "add", "--all"],
        ["git", "commit", "--quiet", "--no-verify", "-m", "The demo fleet's Dockerfiles"],
    )
    for argv in steps:
        done = subprocess.run([argv[0], "-C", str(tree), *argv[1:]], env=env,
                              capture_output=True, text=True, check=False, timeout=60)
        if done.returncode != 0:
            raise ServiceError("git", str(tree), f"{' '.join(argv[:2])} failed: "
                               f"{done.stderr.strip()[-300:]}")


def _build(builder: BuildahBuilder, context: Path, image: ImageReference, registry: str,
           logs: Path, observer: Observer) -> None:
    observer.processing(image.short)
    request = BuildRequest(image=image, context=context, log_path=logs / _log_name(image),
                           build_args={"REGISTRY": registry}, timeout=BUILD_TIMEOUT,
                           push_timeout=BUILD_TIMEOUT)
    built, pushed = build_and_push(builder, request)
    if not built.ok or pushed is None or not pushed.ok:
        step = "build" if not built.ok else "push"
        tail = " | ".join((built.log_tail if not built.ok else
                           pushed.log_tail if pushed is not None else ())[-3:])
        raise ServiceError("buildah", "localhost", f"{step} of {image.short} failed: {tail}",
                           hint=f"see {request.log_path}")


def _log_name(image: ImageReference) -> str:
    return image.short.replace("/", "_").replace(":", "_") + ".log"


def publish_upstream(builder: BuildahBuilder, context: Path, registry: str, logs: Path,
                     observer: Observer) -> None:
    """Build ``context`` (an ``upstream/`` folder) as ``registry/upstream/os:stable``, push."""
    image = ImageReference.parse(f"{registry}/{UPSTREAM_IMAGE}")
    observer.info(f"publishing {UPSTREAM_IMAGE} ({context.name})")
    _build(builder, context, image, registry, logs, observer)


def build_fleet(builder: BuildahBuilder, tree_root: Path, registry: str, logs: Path,
                observer: Observer) -> list[list[ImageReference]]:
    """Build and push every image of the tree, parents first; the levels built."""
    tree = discover_tree(tree_root, project=PROJECT, registry=registry,
                         build_args={"REGISTRY": registry}, layout="app/version")
    if tree.problems:
        raise UsageError("the demo tree has problems: "
                         + "; ".join(str(p) for p in tree.problems))
    levels = BuildGraph.from_tree(tree).levels()
    total = sum(len(level) for level in levels)
    done = 0
    for level in levels:
        for reference in level:
            image = tree.images[reference]
            target = ImageReference.parse(f"{registry}/{reference.short}")
            _build(builder, image.folder, target, registry, logs, observer)
            done += 1
            observer.progress("demo images", done, total)
    return levels


def start_simulator(folder: Path, lab: Lab, harbor_password: Path,
                    observer: Observer) -> tuple[str, int]:
    """Start the simulator process (detached, its own session); its URL and PID."""
    ready = folder / "harbor" / "ready.json"
    ready.unlink(missing_ok=True)
    settings = SimulatorSettings(
        registry_url=lab.auth_registry_url, registry_user=lab.user,
        registry_password_file=str(lab.password_file), harbor_user=HARBOR_USER,
        harbor_password_file=str(harbor_password),
        advisories=str(folder / "advisories.toml"), ready_file=str(ready))
    settings_path = folder / "harbor" / "settings.json"
    settings.write(settings_path)
    pid = _spawn([sys.executable, "-m", "careen.demo.harbor_process", str(settings_path)], folder,
                 SIM_LOG_NAME, dict(os.environ))
    deadline = time.monotonic() + SIMULATOR_START_TIMEOUT
    while time.monotonic() < deadline:
        if ready.exists():
            url = str(json.loads(ready.read_text())["url"])
            observer.info(f"Harbor simulator on {url} (log: logs/{SIM_LOG_NAME}.log)")
            return url, pid
        if _exited(pid):
            break
        time.sleep(0.05)
    _stop_process(pid, folder)
    log = folder / "logs" / f"{SIM_LOG_NAME}.log"
    tail = " | ".join(log.read_text(errors="replace").splitlines()[-5:]) if log.exists() else ""
    raise ServiceError("Harbor simulator", "127.0.0.1", f"did not start: {tail}",
                       hint=f"see {log}")


def _exited(pid: int) -> bool:
    """Whether our child ``pid`` has ended (reaping it). Not :func:`careen.lab._is_ours`: a
    process that was just started shows an empty command line for a moment."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return not Path(f"/proc/{pid}").exists()
    return done == pid


def scan_everything(url: str, user: str, password: SecretStr, observer: Observer,
                    timeout: float = INITIAL_SCAN_TIMEOUT) -> None:
    """List the fleet (so the simulator reads the registry), run a scan-all and wait for it,
    as Harbor's nightly scan-all would have done before the job runs."""
    async def work() -> None:
        settings = HarborSettings(url=url, user=user, password=password, api_version="v2")
        client = await open_harbor(settings, observer=observer)
        async with client:
            assert isinstance(client, HarborV2Client)  # noqa: S101 - api_version="v2"
            await client.projects()
            async for _ in client.artifacts(None):
                pass
            await client.trigger_scan_all()
            deadline = time.monotonic() + timeout
            while True:
                metrics = await client.scan_all_metrics()
                if not metrics.ongoing and metrics.completed >= metrics.total:
                    observer.info(f"initial scan: {metrics.completed} artifacts scanned")
                    return
                if time.monotonic() > deadline:
                    raise ServiceError("Harbor simulator", url,
                                       f"the initial scan did not finish in {timeout:g} s")
                await asyncio.sleep(0.1)

    asyncio.run(work())


def config_text(site: DemoSite) -> str:
    """``careen.toml`` for the demo. No secret in it: the passwords stay in their files."""
    folder = site.folder
    sections: list[tuple[str, Mapping[str, object]]] = [
        ("harbor", {"url": site.harbor_url, "user": site.harbor_user,
                    "password_file": str(site.harbor_password_file), "api_version": "v2"}),
        ("registry", {"server": site.registry, "user": site.lab.user,
                      "password_file": str(site.lab.password_file), "verify_tls": False}),
        ("tree", {"root": str(site.tree), "layout": "app/version", "project": PROJECT}),
        ("build", {"builder": site.builder, "build_args": {"REGISTRY": site.registry}}),
        ("run", {"rescan_timeout": 120.0, "rescan_interval": 0.5}),
        ("state", {"path": str(folder / "state.sqlite")}),
        ("output", {"vulnerable_list": str(folder / "vulnerable.list"),
                    "json": str(folder / "vulnerable.json"),
                    "reports_dir": str(site.reports_dir)}),
    ]
    return ("# Written by careen demo: this demo's Harbor (the simulator), registry and tree.\n"
            "# The passwords are in the files named here, never in this file.\n\n"
            + tomli_w.dumps(dict(sections)))


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


# -- load and stop ----------------------------------------------------------------------------

def load_demo(folder: Path) -> DemoSite:
    """The demo started in ``folder`` (from ``FOLDER/demo.json``)."""
    folder = folder.resolve()
    path = folder / SITE_FILE
    try:
        data: dict[str, Any] = json.loads(path.read_text())
        builder = data["builder"]
        if builder not in BUILDERS:
            raise ValueError(f"unknown builder {builder!r}")
        return DemoSite(
            folder=Path(data["folder"]), config_path=Path(data["config_path"]),
            lab=Lab.load(data["lab"]), harbor_url=str(data["harbor_url"]),
            registry=str(data["registry"]), builder=builder,
            harbor_user=str(data["harbor_user"]),
            harbor_password_file=Path(data["harbor_password_file"]),
            simulator_pid=int(data["simulator_pid"]),
        )
    except FileNotFoundError:
        raise UsageError(f"no demo in {folder}: {SITE_FILE} not found",
                         hint="start one with: careen demo --keep") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ConfigError(f"unreadable demo description: {error}", source=str(path)) from None


def stop_demo(folder: Path, *, remove: bool = False) -> None:
    """Stop the demo's simulator and lab in ``folder``; nothing to stop is fine. ``remove``
    then deletes the folder."""
    folder = folder.resolve()
    with contextlib.suppress(UsageError, ConfigError):
        site = load_demo(folder)
        if site.simulator_pid:
            _stop_process(site.simulator_pid, folder)
    settings_pid = _pid_from_ready(folder)
    if settings_pid is not None:  # started, but demo.json was never written
        _stop_process(settings_pid, folder)
    if (folder / "lab" / "lab.json").exists():
        with contextlib.suppress(UsageError, ConfigError):
            Lab.load(folder / "lab").stop()
    if remove and folder.exists():
        shutil.rmtree(folder, ignore_errors=True)


def _pid_from_ready(folder: Path) -> int | None:
    try:
        return int(json.loads((folder / "harbor" / "ready.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


__all__ = [
    "BUILDERS", "EXPECTED", "DemoExpectation", "DemoSite", "config_text", "load_demo",
    "start_demo", "stop_demo",
]
