"""A Python interpreter started once that starts each case of a test module as a fork of itself.

Some tests need a process of its own per case: which modules a command imports
(tests/cli/test_main.py), how much memory a command's process reaches
(tests/reliability/test_bounded.py). A new interpreter for each case costs its start (a tenth
of a second of CPU) and the import of Careen's command line (several tenths) again and again.
The fork server is an interpreter that runs a ``preamble`` once (imports only: what every case
would import before it does anything else) and then forks for each case. The child is a
process of its own: its own memory (rlimits, ``VmHWM`` and ``ru_maxrss`` are its own), its
own table of modules, environment, working folder, standard streams and exit status; it
starts where a new interpreter would be once it had run the preamble, and then runs the
case's code as ``python -c CODE ARGS...`` would (as ``__main__``, ``sys.argv`` set; an
uncaught exception prints its traceback and exits 1, ``SystemExit`` gives the exit status,
``atexit`` functions run at the end).

When a case starts, its table of modules holds what any interpreter imports at start, the
preamble's modules, and ``json`` (the server's own; ``os`` and ``sys`` are always there). The
server has no threads, so forking it is safe.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: The server: ``python -c SERVER PREAMBLE``. One request (a JSON line) on stdin per case;
#: on stdout it answers ``{"pid": ...}`` once the case is forked and ``{"status": ...,
#: "maxrss": ...}`` (``os.wait4``'s) when it ended. End of stdin ends the server.
SERVER = r"""
import json, os, sys

exec(compile(sys.argv[1], "<preamble>", "exec"), {"__name__": "__preamble__"})


def answer(**fields):
    os.write(1, (json.dumps(fields) + "\n").encode())


answer(ready=True)
# os.wait4 imports `resource` (for its struct_rusage) into this server: a case starts with
# the table of modules as it was here, before any wait.
modules_at_start = set(sys.modules)
pending = b""
while True:
    while b"\n" not in pending:
        chunk = os.read(0, 1 << 16)
        if not chunk:
            sys.exit(0)
        pending += chunk
    line, pending = pending.split(b"\n", 1)
    case = json.loads(line)
    pid = os.fork()
    if pid == 0:
        break
    answer(pid=pid)
    _, status, usage = os.wait4(pid, 0)
    answer(status=status, maxrss=usage.ru_maxrss)

# The child: becomes the case.
for name in set(sys.modules) - modules_at_start:
    del sys.modules[name]
os.chdir(case["cwd"])
os.environ.clear()
os.environ.update(case["env"])
for fd, name, flags in ((0, os.devnull, os.O_RDONLY),
                        (1, case["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
                        (2, case["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC)):
    opened = os.open(name, flags, 0o600)
    os.dup2(opened, fd)
    os.close(opened)
sys.argv = ["-c", *case["argv"]]
exec(compile(case["code"], "<string>", "exec"),
     {"__name__": "__main__", "__builtins__": __builtins__})
"""

#: How long the server may take to run its preamble, and to fork a case.
START_SECONDS = 120.0


class CaseTimeout(Exception):
    """A case outlasted its time: it was killed."""


@dataclass(frozen=True)
class Forked:
    """How one case ended and what it printed."""

    code: int
    out: bytes
    err: bytes
    #: ``ru_maxrss`` of the case's process, in KiB.
    maxrss: int


class ForkServer:
    """``python -c SERVER PREAMBLE`` started with ``env`` in ``cwd``; :meth:`run` runs a case
    in a fork of it. Close it (or use it as a context manager) when done."""

    def __init__(self, preamble: str, *, env: Mapping[str, str], cwd: Path) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-c", SERVER, preamble], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=dict(env), cwd=cwd)
        self._pending = b""
        self._answer(START_SECONDS, "ready")

    def __enter__(self) -> ForkServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, code: str, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
            timeout: float) -> Forked:
        """``python -c CODE ARGV...`` with ``env`` in ``cwd``, as a fork of the server;
        killed (and :class:`CaseTimeout` raised) if it has not ended within ``timeout``."""
        streams = Path(tempfile.mkdtemp(prefix="careen-fork-"))
        try:
            request = {"code": code, "argv": list(argv), "env": dict(env), "cwd": str(cwd),
                       "stdout": str(streams / "out"), "stderr": str(streams / "err")}
            assert self._process.stdin is not None
            self._process.stdin.write((json.dumps(request) + "\n").encode())
            self._process.stdin.flush()
            pid = self._answer(START_SECONDS, "pid")["pid"]
            try:
                ended = self._answer(timeout, "status")
            except CaseTimeout:
                os.kill(pid, signal.SIGKILL)
                self._answer(START_SECONDS, "status")
                raise
            return Forked(os.waitstatus_to_exitcode(ended["status"]),
                          (streams / "out").read_bytes(), (streams / "err").read_bytes(),
                          ended["maxrss"])
        finally:
            shutil.rmtree(streams, ignore_errors=True)

    def close(self) -> None:
        if self._process.poll() is None:
            assert self._process.stdin is not None
            self._process.stdin.close()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        for stream in (self._process.stdout, self._process.stderr):
            if stream is not None:
                stream.close()

    def _answer(self, timeout: float, key: str) -> dict[str, Any]:
        """The server's next answer, which must hold ``key``."""
        assert self._process.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaseTimeout(f"no answer from the fork server within {timeout:g} s")
            ready, _, _ = select.select([self._process.stdout], [], [], left)
            if ready:
                chunk = os.read(self._process.stdout.fileno(), 1 << 16)
                if not chunk:
                    raise AssertionError(self._died())
                self._pending += chunk
        line, self._pending = self._pending.split(b"\n", 1)
        answer: dict[str, Any] = json.loads(line)
        assert key in answer, answer
        return answer

    def _died(self) -> str:
        assert self._process.stderr is not None
        self._process.wait(timeout=30)
        return (f"the fork server ended (exit {self._process.returncode}): "
                + self._process.stderr.read().decode(errors="replace"))
