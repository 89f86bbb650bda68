from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from careen.builders.process import (
    SECRET_VARIABLES,
    ProcessResult,
    looks_auth_rejected,
    looks_transient,
    push_retrying,
    read_tail,
    run_logged,
    should_retry,
    tool_environment,
)

ENV = dict(os.environ)


def _alive(marker: str) -> list[str]:
    out = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True, check=True)
    return [line for line in out.stdout.splitlines() if marker in line and "ps -eo" not in line]


def test_output_goes_to_the_log_and_the_tail(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "build.log"
    result = run_logged(
        [sys.executable, "-c", "import sys\nfor i in range(100): print('line', i)\n"
         "print('oops', file=sys.stderr); sys.exit(3)"],
        env=ENV, log_path=log, timeout=30,
    )
    assert result.returncode == 3
    assert not result.ok and not result.timed_out
    assert len(result.tail) == 40
    assert result.tail[-1] == "oops"
    text = log.read_text()
    assert "line 0\n" in text and "line 99\n" in text
    assert text.startswith("$ ")


def test_tail_covers_only_this_run(tmp_path: Path) -> None:
    log = tmp_path / "build.log"
    run_logged(["echo", "first-run"], env=ENV, log_path=log, timeout=30)
    second = run_logged(["echo", "second-run"], env=ENV, log_path=log, timeout=30)
    assert second.ok
    assert "second-run" in second.tail
    assert not any("first-run" in line for line in second.tail)
    assert "first-run" in log.read_text()


def test_stdin_reaches_the_child(tmp_path: Path) -> None:
    result = run_logged(["cat"], env=ENV, log_path=tmp_path / "log", timeout=30,
                        stdin_data=b"from-stdin\n")
    assert result.ok
    assert "from-stdin" in result.tail


def test_environment_is_exactly_the_given_one(tmp_path: Path) -> None:
    result = run_logged(["/usr/bin/env"], env={"ONLY_THIS": "1"}, log_path=tmp_path / "log",
                        timeout=30)
    assert result.tail[1:] == ("ONLY_THIS=1",)


def test_missing_program_is_reported_not_raised(tmp_path: Path) -> None:
    result = run_logged(["careen-no-such-tool-xyz"], env=ENV, log_path=tmp_path / "log",
                        timeout=30)
    assert result.not_found
    assert result.returncode is None
    assert "cannot run careen-no-such-tool-xyz" in result.tail_text


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = f"careen-hang-{os.getpid()}-{time.monotonic_ns()}"
    # A shell whose grandchild sleeps: both must go when the timeout expires.
    script = f"{sys.executable} -c 'import time; time.sleep(600)' {marker} & wait"
    # The shell (whose argv carries the marker) and its fork exist within milliseconds of the
    # start, so a short timeout still finds the whole group running when it kills it.
    result = run_logged(["sh", "-c", script], env=ENV, log_path=tmp_path / "log", timeout=0.3)
    assert result.timed_out
    assert result.returncode is None
    assert "killed after 0.3 s (timeout)" in result.tail_text
    assert _alive(marker) == []


def test_a_grandchild_left_behind_by_a_quick_exit_is_killed(tmp_path: Path) -> None:
    marker = f"careen-orphan-{os.getpid()}-{time.monotonic_ns()}"
    script = f"{sys.executable} -c 'import time; time.sleep(600)' {marker} > /dev/null &"
    result = run_logged(["sh", "-c", script], env=ENV, log_path=tmp_path / "log", timeout=30)
    assert result.ok
    for _ in range(50):  # the SIGKILL is delivered asynchronously
        if not _alive(marker):
            break
        time.sleep(0.05)
    assert _alive(marker) == []


def test_empty_argv_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="empty"):
        run_logged([], env=ENV, log_path=tmp_path / "log", timeout=1)


def test_read_tail_of_missing_file_is_empty(tmp_path: Path) -> None:
    assert read_tail(tmp_path / "nothing") == ()


@pytest.mark.parametrize("output", [
    "Error: pushing image: unauthorized: authentication required",
    "denied: requested access to the resource is denied",
    "received unexpected HTTP status: 401 Unauthorized",
    "error parsing HTTP 403 response body: status code 403",
    "Error response from daemon: unauthorized: incorrect username or password",
    # buildah and podman (containers/image) on Harbor's 403 DENIED to a blob upload:
    "Error: pushing image \"h:1/library/x:1\" to \"docker://h:1/library/x:1\": writing blob: "
    "initiating layer upload to /v2/library/x/blobs/uploads/ in h:1: denied",
    "writing blob: initiating layer upload to /v2/x/blobs/uploads/ in localhost:5000: denied\n"
    "careen: exit 125",
])
def test_auth_errors_are_recognised_and_not_transient(output: str) -> None:
    assert looks_auth_rejected(output)
    assert not looks_transient(output)


@pytest.mark.parametrize("output", [
    "received unexpected HTTP status: 503 Service Unavailable",
    "write tcp 127.0.0.1:4455->127.0.0.1:5000: connection reset by peer",
    "dial tcp 127.0.0.1:5000: connect: connection refused",
    "Error: writing blob: unexpected EOF",
    "error: status code 502",
])
def test_transient_errors_are_recognised(output: str) -> None:
    assert looks_transient(output)
    assert not looks_auth_rejected(output)


@pytest.mark.parametrize("output", [
    "Copying blob sha256:abc... 401 B / 401 B",
    "1.0: digest: sha256:" + "a" * 64 + " size: 503",
    "Error: building at STEP \"RUN exit 1\": exit status 1",
    "Error: open /var/lib/containers/storage/vfs/dir/x: permission denied",
    "the request was denied by nobody",
])
def test_ordinary_output_is_neither(output: str) -> None:
    assert not looks_auth_rejected(output)
    assert not looks_transient(output)


def _result(tail: str, returncode: int | None = 1, **flags: bool) -> ProcessResult:
    return ProcessResult(("x",), returncode, 0.1, Path("log"), tuple(tail.splitlines()), **flags)


def test_should_retry_only_transient_failures() -> None:
    assert should_retry(_result("connection reset by peer"))
    assert not should_retry(_result("connection reset by peer", returncode=0))
    assert not should_retry(_result("unauthorized: authentication required"))
    assert not should_retry(_result("connection refused", returncode=None, timed_out=True))
    assert not should_retry(_result("cannot run", returncode=None, not_found=True))
    assert not should_retry(_result("exit status 1"))


def test_push_retrying_retries_with_growing_waits_then_stops() -> None:
    waits: list[float] = []
    calls = 0

    def flaky() -> ProcessResult:
        nonlocal calls
        calls += 1
        return _result("received unexpected HTTP status: 503 Service Unavailable")

    retrying = push_retrying(attempts=4, initial_wait=1.0, sleep=waits.append)
    result = retrying(flaky)
    assert not result.ok and "503" in result.tail_text  # the last run, not a RetryError
    assert (retrying.statistics["attempt_number"], calls) == (4, 4)
    assert len(waits) == 3
    assert waits == sorted(waits) and waits[0] < waits[-1]


def test_push_retrying_stops_at_first_good_result() -> None:
    outcomes = iter([_result("connection reset by peer"), _result("pushed", returncode=0),
                     _result("never")])
    waits: list[float] = []
    retrying = push_retrying(attempts=5, sleep=waits.append)
    result = retrying(lambda: next(outcomes))
    assert result.ok and result.tail_text == "pushed"
    assert retrying.statistics["attempt_number"] == 2
    assert len(waits) == 1


@pytest.mark.parametrize("tail", [
    "unauthorized: authentication required",
    'Get "https://127.0.0.1:5557/v2/": x509: certificate signed by unknown authority',
    'Get "https://127.0.0.1:5555/v2/": http: server gave HTTP response to HTTPS client',
    "error: exit status 1",
])
def test_push_retrying_does_not_retry_a_permanent_failure(tail: str) -> None:
    waits: list[float] = []
    retrying = push_retrying(attempts=5, sleep=waits.append)
    result = retrying(lambda: _result(tail))
    assert (result.tail_text, retrying.statistics["attempt_number"], waits) == (tail, 1, [])


def test_push_retrying_needs_one_attempt() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        push_retrying(attempts=0)


def test_secret_variables_never_reach_a_child(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in SECRET_VARIABLES:
        monkeypatch.setenv(variable, f"secret-of-{variable}")
    env = tool_environment({"CAREEN_TEST_LAYER": "1"}, None, {"CAREEN_TEST_LAYER": "2"})
    assert env["CAREEN_TEST_LAYER"] == "2"
    assert not SECRET_VARIABLES & set(env)
    # run_logged drops them even from an environment given whole.
    result = run_logged([sys.executable, "-c", "import os; print(sorted(os.environ))"],
                        env=dict(os.environ), log_path=tmp_path / "log", timeout=30)
    assert result.ok
    assert "secret-of-" not in (tmp_path / "log").read_text()
    assert not any(variable in result.tail_text for variable in SECRET_VARIABLES)


def test_secret_variables_cover_every_secret_the_config_reads(tmp_path: Path) -> None:
    from careen.config import SECRET_KEYS, environment_variable_for, load_config

    assert {environment_variable_for(key) for key in SECRET_KEYS} <= SECRET_VARIABLES
    # The seed's spellings of the registry password, as the config reads them.
    for name in ("registry_password", "REGISTRY_PASSWORD"):
        config = load_config(cwd=tmp_path, environ={name: "pw"})
        assert config.sources["registry.password"] == name
        assert name in SECRET_VARIABLES


def test_a_tool_dies_with_the_careen_process_that_started_it(tmp_path: Path) -> None:
    """A ``kill -9``'d Careen must not leave a push running that nobody will record."""
    import textwrap

    from careen.builders import process

    if process.SETPRIV is None:
        pytest.skip("setpriv (util-linux) is not installed")
    marker = tmp_path / "tool.pid"
    script = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from careen.builders.process import run_logged
        run_logged(["sh", "-c", "echo $$ > {marker}; exec sleep 600"], env=dict(os.environ),
                   log_path=Path({str(tmp_path / "log")!r}), timeout=600)
    """)
    careen = subprocess.Popen([sys.executable, "-c", script])
    try:
        for _ in range(200):
            if marker.exists() and marker.read_text().strip():
                break
            time.sleep(0.05)
        tool = int(marker.read_text())
    finally:
        careen.kill()
        careen.wait()
    for _ in range(100):
        if not _running(tool):
            break
        time.sleep(0.05)
    assert not _running(tool)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
