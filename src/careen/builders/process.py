"""Running the build tools: argument lists only, output into a log file, a hard timeout.

A build tool's output can be long (a vfs build logs every layer) and is wanted twice: whole, in
the image's log file, and short, as the last lines of a report. So the child writes straight
into the log file (no pipe to fill up), and the tail is read back from the part of the file
this run wrote.

A hung build must not outlive its timeout, and neither may its children (a ``RUN`` step is a
grandchild of ``buildah``): each child gets its own session, and on expiry the whole process
group is terminated, then killed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt
from tenacity.wait import wait_exponential

#: How many lines of output a result keeps for a report.
TAIL_LINES = 40
#: Environment variables that carry Careen's secrets (``careen.config``'s secret keys as
#: ``CAREEN_*`` variables, and the seed job's ``registry_password``). No build tool needs
#: them (logins go through stdin and a private auth file), so no tool is given them: a child's
#: environment is readable in ``/proc`` and may be dumped by a tool's debug output.
SECRET_VARIABLES = frozenset({
    "CAREEN_REGISTRY_PASSWORD", "CAREEN_HARBOR_PASSWORD", "CAREEN_NOTIFY_WEBHOOK",
    "registry_password", "REGISTRY_PASSWORD",
})
#: Seconds between SIGTERM and SIGKILL when a timed-out process group is stopped.
KILL_GRACE_SECONDS = 5.0
#: util-linux's setpriv (on every Debian): run a tool so that the kernel kills it when the
#: Careen process that started it dies. Tools run in a session of their own (so a timeout
#: kills their whole group) and would otherwise outlive a ``kill -9``'d Careen: a push still
#: in flight would complete unrecorded, and the resumed run would push the image again.
SETPRIV = shutil.which("setpriv")


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """How one run of a tool ended. ``returncode`` is ``None`` when it was killed on timeout,
    or when the program could not be started (``not_found``)."""

    argv: tuple[str, ...]
    returncode: int | None
    duration: float
    log_path: Path
    tail: tuple[str, ...]
    timed_out: bool = False
    not_found: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def tail_text(self) -> str:
        return "\n".join(self.tail)


def tool_environment(*layers: Mapping[str, str] | None) -> dict[str, str]:
    """The environment for a build tool: this process's, updated by ``layers`` in order,
    without :data:`SECRET_VARIABLES`."""
    env = dict(os.environ)
    for layer in layers:
        env.update(layer or {})
    return without_secrets(env)


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without :data:`SECRET_VARIABLES`."""
    return {name: value for name, value in env.items() if name not in SECRET_VARIABLES}


def run_logged(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    timeout: float,
    stdin_data: bytes | None = None,
    cwd: Path | None = None,
    tail_lines: int = TAIL_LINES,
) -> ProcessResult:
    """Run ``argv`` (never a shell), appending its combined stdout/stderr to ``log_path``.

    ``env`` is the child's whole environment (nothing is inherited implicitly), less
    :data:`SECRET_VARIABLES`, which are never passed on. ``stdin_data``
    is written to the child's stdin (this is how passwords reach ``login --password-stdin``;
    they never appear in ``argv``). On timeout the child's process group is killed.
    """
    args = tuple(argv)
    if not args:
        raise ValueError("empty argument list")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with log_path.open("ab") as log:
        start_offset = log.tell()
        # The command line is safe to log: secrets are passed on stdin or in files, never argv.
        log.write(f"$ {' '.join(args)}\n".encode(errors="replace"))
        log.flush()
        try:
            child = subprocess.Popen(
                _dying_with_careen(args, env.get("PATH", os.defpath)),
                stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=without_secrets(env),
                cwd=cwd,
                start_new_session=True,
            )
        except (FileNotFoundError, PermissionError) as error:
            log.write(f"careen: cannot run {args[0]}: {error.strerror}\n".encode())
            log.flush()
            return ProcessResult(
                args, None, time.monotonic() - started, log_path,
                read_tail(log_path, start_offset, tail_lines), not_found=True,
            )
        timed_out = False
        try:
            if stdin_data is not None:
                assert child.stdin is not None  # noqa: S101 - stdin=PIPE above
                try:
                    child.stdin.write(stdin_data)
                    child.stdin.close()
                except BrokenPipeError:
                    pass
            child.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            kill_process_group(child)
            log.write(f"careen: killed after {timeout:g} s (timeout)\n".encode())
        except BaseException:
            # Interrupted (Ctrl-C): take the child and its group down with us.
            kill_process_group(child)
            raise
        finally:
            # Children of the tool that outlived it (a RUN step's sleep) go too.
            _signal_group(child.pid, signal.SIGKILL)
        log.flush()
    duration = time.monotonic() - started
    return ProcessResult(
        args,
        None if timed_out else child.returncode,
        duration,
        log_path,
        read_tail(log_path, start_offset, tail_lines),
        timed_out=timed_out,
    )


def kill_process_group(child: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, then SIGKILL it if it has not exited in time."""
    _signal_group(child.pid, signal.SIGTERM)
    try:
        child.wait(timeout=KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        _signal_group(child.pid, signal.SIGKILL)
        child.wait()


def _signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def read_tail(path: Path, offset: int = 0, lines: int = TAIL_LINES) -> tuple[str, ...]:
    """The last ``lines`` lines of ``path`` after byte ``offset`` (decoded leniently)."""
    try:
        with path.open("rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except FileNotFoundError:
        return ()
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n").replace("\r", "\n")
    return tuple(text.splitlines()[-lines:])


# -- retries --------------------------------------------------------------------------------

# Status codes are matched only next to words that make them HTTP statuses: a bare "401" may be
# a blob size in a push log.
# containers/image (buildah, podman) ends a registry's DENIED error as "...uploads/ in HOST:
# denied" (found by tests/reliability/test_flaky_registry.py); a line ending in ": denied",
# not "permission denied", which is a local file error.
_AUTH_REJECTED = re.compile(
    r"\b40[13]\s+(unauthorized|forbidden)|(status|code|error)[ :=]*40[13]\b|unauthorized|"
    r"authentication required|access denied|denied:|requested access to the resource is denied|"
    r"invalid username/password|incorrect username or password|authorization failed|"
    r":\s*denied\s*$",
    re.IGNORECASE | re.MULTILINE,
)
_TRANSIENT = re.compile(
    r"\b5\d\d\s+(internal server error|bad gateway|service unavailable|gateway timeout)|"
    r"(status|code|error)[ :=]*5\d\d\b|internal server error|bad gateway|service unavailable|"
    r"gateway timeout|connection reset|connection refused|unexpected EOF|broken pipe|"
    r"i/o timeout|TLS handshake timeout|too many requests|\b429\b",
    re.IGNORECASE,
)


#: containers/image and the docker daemon (Go's crypto/tls, net/http) when the registry's
#: certificate is not trusted, or the registry speaks plain HTTP where HTTPS was expected.
_TLS_REJECTED = re.compile(
    r"x509:|certificate signed by unknown authority|tls: failed to verify certificate|"
    r"server gave HTTP response to HTTPS client|"
    r"first record does not look like a TLS handshake",
    re.IGNORECASE,
)
_TLS_HOST = re.compile(r'https?://(?P<host>[^/"\s]+)/v2/')


def looks_tls_rejected(output: str) -> bool:
    """The registry's certificate is not trusted, or it speaks plain HTTP: the TLS settings
    must change, retrying cannot help."""
    return _TLS_REJECTED.search(output) is not None


def tls_rejected_host(output: str) -> str | None:
    """The ``host[:port]`` a TLS failure in ``output`` names (Go's errors quote the URL:
    ``Get "https://HOST/v2/": x509: ...``), or ``None``."""
    for line in reversed(output.splitlines()):
        if _TLS_REJECTED.search(line):
            found = _TLS_HOST.search(line)
            if found:
                return found["host"]
    return None


def looks_auth_rejected(output: str) -> bool:
    """The registry refused the credentials (or their lack): retrying cannot help."""
    return _AUTH_REJECTED.search(output) is not None


def looks_transient(output: str) -> bool:
    """A failure that may go away on its own (server error, dropped connection)."""
    return (not looks_auth_rejected(output) and not looks_tls_rejected(output)
            and _TRANSIENT.search(output) is not None)


def should_retry(result: ProcessResult) -> bool:
    """Retry a failed run only when its output shows a transient error, never on auth errors,
    a timeout (the budget is spent) or a missing tool."""
    if result.ok or result.timed_out or result.not_found:
        return False
    return looks_transient(result.tail_text)


def push_retrying(
    *,
    attempts: int = 3,
    initial_wait: float = 2.0,
    max_wait: float = 20.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Retrying:
    """tenacity's :class:`~tenacity.Retrying` for a push: the run is repeated while
    :func:`should_retry` says its failure is transient, at most ``attempts`` times, waiting
    exponentially longer between tries; the last run's result is returned (never a
    ``RetryError``). How many runs were made: ``retrying.statistics["attempt_number"]``."""
    if attempts < 1:
        raise ValueError("attempts must be at least 1")
    return Retrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential(multiplier=initial_wait, min=initial_wait, max=max_wait),
        retry=retry_if_result(should_retry),
        retry_error_callback=_last_result,
        sleep=sleep,
        reraise=True,
    )


def _last_result(state: RetryCallState) -> object:
    assert state.outcome is not None  # noqa: S101 - tenacity calls this after an attempt
    return state.outcome.result()


def read_tool_output(path: Path) -> str | None:
    """The stripped text a build tool wrote to a file it was asked for (``--iidfile``,
    ``--digestfile``), or ``None`` when it wrote nothing."""
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def _dying_with_careen(args: tuple[str, ...], path: str) -> tuple[str, ...]:
    """``args`` run under ``setpriv --pdeathsig KILL`` when setpriv exists (not a
    ``preexec_fn``: that is unsafe with the executor's threads). A program that cannot be
    found on the tool's ``path`` is left to Popen, which reports it as such."""
    if SETPRIV is None or shutil.which(args[0], path=path) is None:
        return args
    return (SETPRIV, "--pdeathsig", "KILL", "--", *args)
