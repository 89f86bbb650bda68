"""Shared fixtures.

``lab``: one real lab (two registries, podman's Docker API, buildah storage; see
``careen.lab``) per test session, in a temporary directory, stopped at the end. A test that
uses it is marked ``lab`` automatically (``pytest -m "not lab"`` leaves it out). When the lab's
Debian packages are missing they are installed if this machine can (root + apt-get); if it
cannot, lab tests are skipped, except in CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import fcntl
import gc
import itertools
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

if sys.dont_write_bytecode and not sys.pycache_prefix:
    # With PYTHONDONTWRITEBYTECODE (set in this project's containers) every pytest worker
    # rewrote the asserts of every test module and compiled every careen module from source
    # at each run: about 4 s a worker before the first test, and again in each interpreter a
    # test starts. The bytecode goes under .pytest_cache instead, never next to the sources,
    # which is what the variable is there to prevent; the interpreters tests start (xdist's
    # workers among them) are told the same through the environment.
    sys.pycache_prefix = str(Path(__file__).resolve().parents[1] / ".pytest_cache" / "pycache")
    sys.dont_write_bytecode = False
    os.environ["PYTHONPYCACHEPREFIX"] = sys.pycache_prefix
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

from hypothesis import settings
from hypothesis import strategies as st

from careen.errors import ConfigError
from careen.lab import (
    Lab,
    can_install_packages,
    install_packages,
    missing_packages,
    missing_packages_message,
    running_lab,
)

LAB_FIXTURES = frozenset({"lab", "docker_cli"})

# No deadline per hypothesis example: hypothesis' default of 200 ms of wall time is a timing
# check, which these tests do not make (their standard), and an example of a few milliseconds
# of CPU can outlast it on a loaded machine (-n auto runs three workers on two CPUs). The
# number of examples and everything else stay hypothesis' defaults; --hypothesis-profile still
# chooses another profile.
settings.register_profile("careen", deadline=None)
settings.load_profile("careen")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine; fail in CI, where the lab must work."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: lab tests must run)", pytrace=False)
    pytest.skip(reason)


def require_program(program: str, package: str) -> str:
    """The path of ``program``. When it is missing, Debian's ``package`` is installed with
    apt-get, as the lab's packages are (root + apt-get; one install at a time across pytest
    workers); when that cannot be done, skipped (failed in CI) saying how to install it."""
    path = shutil.which(program)
    if path is None and can_install_packages():
        with open("/tmp/careen-tests-apt.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if shutil.which(program) is None:
                environ = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                install = ["apt-get", "install", "-y", "-qq", package]
                if subprocess.run(install, env=environ, capture_output=True,
                                  check=False).returncode != 0:
                    subprocess.run(["apt-get", "update", "-qq"], env=environ,
                                   capture_output=True, check=False)
                    subprocess.run(install, env=environ, capture_output=True, check=False)
            path = shutil.which(program)
    if path is None:
        skip_or_fail(f"{program} is not installed and cannot be installed here "
                     f"(run as root: apt-get install {package})")
        raise AssertionError("unreachable")  # pragma: no cover
    return path


@pytest.fixture(scope="session")
def _state_homes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A new, not yet existing folder at each ``next()``, all under one temporary folder.
    (Not ``tmp_path``: pytest lists every folder it made before to name the next one, and
    this fixture runs for every test, most of which never use a temporary folder.)"""
    parent = tmp_path_factory.mktemp("xdg-state")
    return (parent / str(number) for number in itertools.count())


@pytest.fixture(autouse=True)
def _private_state_home(monkeypatch: pytest.MonkeyPatch, _state_homes: Iterator[Path]) -> None:
    """Commands keep their state under $XDG_STATE_HOME: a test never touches the state of
    the person (or CI job) running it, nor that of another test. And no ``CAREEN_*`` setting
    of the machine (nor CI's ``CAREEN_FUZZ_EXAMPLES``, read at import) reaches a command a
    test runs."""
    monkeypatch.setenv("XDG_STATE_HOME", str(next(_state_homes)))
    for name in list(os.environ):
        if name.startswith("CAREEN_") and not name.startswith("CAREEN_LAB_"):
            monkeypatch.delenv(name)


@pytest.hookimpl(optionalhook=True)  # without pytest-xdist (or with -p no:xdist) it is unknown
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """``-n auto``: one worker more than the CPUs this process may use. Many tests wait
    rather than compute (a simulated Harbor's slow answers outlast the client's timeout,
    ``careen`` subprocesses start, servers stop), and an extra worker computes meanwhile.
    Measured on 2 CPUs (fast set): 2 workers 55-59 s, 3 workers 45 s, 4 workers 48 s.
    PYTEST_XDIST_AUTO_NUM_WORKERS still decides when it is set."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own hook reads it
    return len(os.sched_getaffinity(0)) + 1


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if LAB_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.lab)


def pytest_configure(config: pytest.Config) -> None:
    """With xdist workers to come (``-n``), hypothesis' table of the characters text may use
    is made here once, before they start: it is cached in .hypothesis/, and in a checkout
    without that cache (CI) each worker computed it, about 1.3 s of CPU apiece."""
    if getattr(config.option, "numprocesses", None) and not hasattr(config, "workerinput"):
        st.text().validate()  # validating st.text() builds and caches the table
    use_memory_for_temporary_files(config)


#: A folder in memory (tmpfs) on most Linux machines, CI runners included.
MEMORY_TEMP_ROOT = Path("/dev/shm")
#: Free space /dev/shm must have to be used: the fast set leaves well under 100 MiB there.
MEMORY_TEMP_MIN_FREE = 1024**3


def use_memory_for_temporary_files(config: pytest.Config) -> None:
    """Tests' ``tmp_path`` folders go under /dev/shm when lab tests are left out (``-m "not
    lab"``), unless ``--basetemp`` or ``PYTEST_DEBUG_TEMPROOT`` says where. Tests write
    thousands of small files (Dockerfile trees, git repositories, state databases); on this
    machine's disk, with another job writing, creating them cost more CPU in the kernel than
    the tests spent in Python (tests/tree: 5.2-7.0 s of system time on disk, 2.8-3.0 s in
    memory). pytest still numbers the folders, keeps the last three and locks them against
    concurrent runs; xdist's workers get their folders from this process. The lab's storages
    (hundreds of megabytes) stay on disk."""
    if (hasattr(config, "workerinput") or config.option.basetemp
            or os.environ.get("PYTEST_DEBUG_TEMPROOT")
            or "not lab" not in (config.option.markexpr or "")):
        return
    if not (MEMORY_TEMP_ROOT.is_dir() and os.access(MEMORY_TEMP_ROOT, os.W_OK | os.X_OK)):
        return
    # Docker gives a container 64 MiB of /dev/shm by default: too little to be sure of.
    space = os.statvfs(MEMORY_TEMP_ROOT)
    if space.f_bavail * space.f_frsize >= MEMORY_TEMP_MIN_FREE:
        os.environ["PYTEST_DEBUG_TEMPROOT"] = str(MEMORY_TEMP_ROOT)


def pytest_collection_finish(session: pytest.Session) -> None:
    """What collection built (modules, test items, hypothesis strategies, parametrize values)
    lives until the process ends: moved out of the cyclic garbage collector's sight, so its
    full collections during the tests and pytest's five at the end stop walking it again
    (measured, this file's slice serially: 1.26 s of full collections down to 0.38 s).
    Objects still go when their last reference does; only cycles among them stay."""
    gc.freeze()


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    missing = missing_packages()
    if missing:
        if not can_install_packages():
            skip_or_fail(missing_packages_message(missing)
                         + " (cannot install them here: not root, or no apt-get)")
        try:
            install_packages()
        except ConfigError as error:
            skip_or_fail(str(error))
    with running_lab(tmp_path_factory.mktemp("lab")) as started:
        yield started


@pytest.fixture(scope="session")
def docker_cli(lab: Lab) -> str:
    """The docker CLI (not a Debian package of the lab: installed on the machine apart)."""
    path = shutil.which("docker")
    if path is None:
        skip_or_fail("the docker CLI is not installed")
    assert path is not None
    return path
