"""A second podman Docker-API service for tests that name a registry the lab's service does not
know: podman reads registries.conf once, when it starts, and uses TLS for any registry not
listed there as insecure (``localhost`` included, unlike a Docker engine). So a test that puts
a proxy in front of a lab registry starts the proxy first, then this service with a
registries.conf that lists the proxy too. Storage, run root and socket are the test's own; the
lab's containers.conf is reused (RUN steps need its settings)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from careen.lab import Lab, descendants, podman_answers

READY_SECONDS = 30.0


@dataclass(frozen=True)
class PodmanService:
    docker_host: str
    pid: int

    def runs(self, pid: int) -> bool:
        """Whether ``pid`` is this service or runs under it."""
        return pid == self.pid or pid in descendants(self.pid)


@contextmanager
def podman_service(lab: Lab, directory: Path, insecure: Sequence[str]) -> Iterator[PodmanService]:
    """Run ``podman system service`` with the lab's registries and ``insecure`` (``host:port``
    names) as plain-HTTP registries. Stopped (its process group, then anything it left
    running) on exit."""
    directory.mkdir(parents=True, exist_ok=True)
    names = [*lab.registries, lab.docker_open_registry, lab.docker_auth_registry, *insecure]
    registries_conf = directory / "registries.conf"
    registries_conf.write_text("".join(
        f'[[registry]]\nlocation = "{name}"\ninsecure = true\n\n' for name in names))
    socket_path = directory / "podman.sock"
    runroot = Path(tempfile.mkdtemp(prefix="careen-rp-"))  # podman wants it short
    env = {**os.environ, "CONTAINERS_CONF": str(lab.containers_conf),
           "CONTAINERS_REGISTRIES_CONF": str(registries_conf)}
    argv = ["podman", "--storage-driver", "vfs", "--root", str(directory / "root"),
            "--runroot", str(runroot), "--tmpdir", str(directory / "tmp"),
            "system", "service", "--time=0", f"unix://{socket_path}"]
    (directory / "tmp").mkdir(exist_ok=True)
    with (directory / "podman.log").open("ab") as log:
        child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + READY_SECONDS
        while not podman_answers(socket_path):
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("podman service did not start: "
                                   + (directory / "podman.log").read_text()[-500:])
            time.sleep(0.1)
        yield PodmanService(f"unix://{socket_path}", child.pid)
    finally:
        left = descendants(child.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        for pid in left:  # a RUN step runs in a session of its own
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(runroot, ignore_errors=True)
