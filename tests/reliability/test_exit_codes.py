"""Every failure class ends with its documented exit code and a one-line diagnosis.

The table :data:`ROWS` is the README's: one row per class, run through the CLI in-process
against the simulator (or a loopback server that fails the way the row says).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from careen.errors import ExitCode
from careen.sim.harbor import Fleet, SimOptions, SimulatorServer
from tests.tls import self_signed_server

from .conftest import Careen, CliResult, OpenedHarbor
from .support import SHUTDOWN_POLL_SECONDS, free_port

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
#: The sample fleet's admin password (samples/fleet.yaml): test data, not a secret.
ADMIN_PASSWORD = "Harbor12345"


@pytest.fixture(scope="module")
def sample_harbor() -> Iterator[SimulatorServer]:
    with SimulatorServer(Fleet.from_file(SAMPLES / "fleet.yaml"),
                         SimOptions(scan_delay=0.0)) as server:
        yield server


@dataclass(frozen=True)
class Context:
    careen: Careen
    harbor: SimulatorServer
    monkeypatch: pytest.MonkeyPatch
    tmp_path: Path

    def login(self, password: str = ADMIN_PASSWORD) -> None:
        self.monkeypatch.setenv("CAREEN_HARBOR_URL", self.harbor.url)
        self.monkeypatch.setenv("CAREEN_HARBOR_USER", "admin")
        self.monkeypatch.setenv("CAREEN_HARBOR_PASSWORD", password)


@dataclass(frozen=True)
class Row:
    """One failure class: how to provoke it, the exit code, what stderr must say."""

    name: str
    run: Callable[[Context], CliResult]
    code: int
    says: str


def ok(c: Context) -> CliResult:
    c.login()
    return c.careen("vulnerable", "-o", "-", "--rule", "false")


def policy_broken(c: Context) -> CliResult:
    c.login()
    return c.careen("vulnerable", "-o", "-")


def bad_flag(c: Context) -> CliResult:
    return c.careen("vulnerable", "--no-such-flag")


def bad_config_key(c: Context) -> CliResult:
    (c.tmp_path / "careen.toml").write_text('[harbor]\nurll = "https://h.example.com"\n')
    return c.careen("vulnerable", "-o", "-")


def bad_environment_value(c: Context) -> CliResult:
    c.login()
    c.monkeypatch.setenv("CAREEN_HARBOR_TIMEOUT", "soon")
    return c.careen("vulnerable", "-o", "-")


def bad_rule(c: Context) -> CliResult:
    c.login()
    return c.careen("vulnerable", "-o", "-", "--rule", "high >")


def no_harbor_url(c: Context) -> CliResult:
    return c.careen("vulnerable", "-o", "-")


def harbor_unreachable(c: Context) -> CliResult:
    return c.careen("vulnerable", "-o", "-", "--harbor-url", f"http://127.0.0.1:{free_port()}")


def wrong_password(c: Context) -> CliResult:
    c.login(password="not-the-password")
    return c.careen("vulnerable", "-o", "-", "--exit-zero")


def listed_image_without_folder(c: Context) -> CliResult:
    (c.tmp_path / "vulnerable.list").write_text("5=1,   library/nosuch:9\n")
    return c.careen("plan", "--from", "vulnerable.list", "--root", str(SAMPLES / "tree"))


def unreadable_list_line(c: Context) -> CliResult:
    (c.tmp_path / "vulnerable.list").write_text("4=x,  library/nginx:1.25\n")
    return c.careen("plan", "--from", "vulnerable.list", "--root", str(SAMPLES / "tree"))


def tree_image_in_a_cycle(c: Context) -> CliResult:
    for folder, text in {"a/1": "FROM library/b:1\n", "b/1": "FROM library/a:1\n"}.items():
        (c.tmp_path / "cyclic" / folder).mkdir(parents=True)
        (c.tmp_path / "cyclic" / folder / "Dockerfile").write_text(text)
    (c.tmp_path / "vulnerable.list").write_text("library/a:1\n")
    return c.careen("plan", "--from", "vulnerable.list", "--root", str(c.tmp_path / "cyclic"))


def internal_error(c: Context) -> CliResult:
    from careen.cli.commands import vulnerable_cmd

    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated bug")

    c.monkeypatch.setattr(vulnerable_cmd, "find_vulnerable", broken)
    c.login()
    return c.careen("vulnerable", "-o", "-")


ROWS = (
    Row("ok", ok, ExitCode.OK, ": 0 break the policy"),
    Row("images break the policy", policy_broken, ExitCode.FAILED, "break the policy"),
    Row("bad flag", bad_flag, ExitCode.USAGE, "No such option: --no-such-flag"),
    Row("bad config key", bad_config_key, ExitCode.USAGE,
        "careen: error: careen.toml: harbor.urll: unknown key 'urll'"),
    Row("bad environment value", bad_environment_value, ExitCode.USAGE,
        "careen: error: environment variable CAREEN_HARBOR_TIMEOUT: harbor.timeout"),
    Row("bad policy rule", bad_rule, ExitCode.USAGE, "careen: error: policy rule, column"),
    Row("Harbor URL not set", no_harbor_url, ExitCode.USAGE, "harbor.url"),
    Row("Harbor unreachable", harbor_unreachable, ExitCode.UNREACHABLE, "connection refused"),
    Row("wrong password (answered as anonymous)", wrong_password, ExitCode.UNREACHABLE,
        "careen: error: Harbor at 127.0.0.1:"),
    Row("listed image without a Dockerfile folder", listed_image_without_folder,
        ExitCode.FAILED, "needs attention: library/nosuch:9: no Dockerfile folder for it"),
    Row("unreadable line of vulnerable.list", unreadable_list_line, ExitCode.FAILED,
        "needs attention: vulnerable.list:1: the head before the comma must be"),
    Row("tree image in a FROM cycle", tree_image_in_a_cycle, ExitCode.FAILED,
        "needs attention: library/a:1: built FROM itself or its own children (a FROM cycle); "
        "next: break the FROM cycle in the Dockerfiles"),
    Row("internal error", internal_error, ExitCode.INTERNAL,
        "careen: internal error: RuntimeError: simulated bug"),
)


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_exit_code(row: Row, careen: Careen, sample_harbor: SimulatorServer,
                   monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                   instant_retries: OpenedHarbor) -> None:
    sample_harbor.reset()
    result = row.run(Context(careen, sample_harbor, monkeypatch, tmp_path))
    assert result.code == row.code, result.err
    assert row.says in result.err, result.err
    assert "Traceback" not in result.err
    if row.code in (ExitCode.USAGE, ExitCode.UNREACHABLE, ExitCode.INTERNAL):
        assert result.out == ""  # nothing half-done on stdout for a pipeline to pick up


def test_wrong_password_fails_instead_of_reading_public_projects(
        careen: Careen, sample_harbor: SimulatorServer, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> None:
    """Harbor (and the simulator) let bad credentials fall through to anonymous (NOTES §2):
    reading on would judge the public projects only and go green. Careen stops instead."""
    sample_harbor.reset()
    Context(careen, sample_harbor, monkeypatch, tmp_path).login(password="wrong-pw")
    list_path = tmp_path / "vulnerable.list"
    result = careen("vulnerable", "-o", str(list_path), "--exit-zero")
    host = sample_harbor.url.split("://", 1)[1]
    assert result.code == ExitCode.UNREACHABLE
    assert result.error_line == (f"careen: error: Harbor at {host} did not accept the "
                                 "credentials of admin")
    assert "CAREEN_HARBOR_PASSWORD" in result.err and "password_file" in result.err
    assert "wrong-pw" not in result.err  # the password itself is never shown
    assert not list_path.exists()  # no list of what anonymous may see
    assert "Processing" not in result.err  # nothing was judged


def test_wrong_password_on_harbor_1_exits_3(
        careen: Careen, monkeypatch: pytest.MonkeyPatch) -> None:
    """Harbor 1.x: ``/api/users/current`` is 401 for the anonymous caller bad credentials
    become (v1 swagger); the 1.x simulator answers so."""
    fleet = Fleet.from_dict({
        "harbor_version": "1.6.3", "users": {"admin": ADMIN_PASSWORD},
        "projects": [{"name": "team", "public": True, "repositories": [
            {"name": "api", "artifacts": [{"tags": ["1.0"], "scan": {"high": 1}}]}]}]})
    with SimulatorServer(fleet, SimOptions(scan_delay=0.0)) as harbor:
        monkeypatch.setenv("CAREEN_HARBOR_URL", harbor.url)
        monkeypatch.setenv("CAREEN_HARBOR_USER", "admin")
        monkeypatch.setenv("CAREEN_HARBOR_PASSWORD", "wrong-pw")
        refused = careen("vulnerable", "-o", "-")
        monkeypatch.setenv("CAREEN_HARBOR_PASSWORD", ADMIN_PASSWORD)
        accepted = careen("vulnerable", "-o", "-")
    assert refused.code == ExitCode.UNREACHABLE, refused.err
    assert "did not accept the credentials of admin" in refused.error_line
    assert refused.out == ""
    assert accepted.code == ExitCode.FAILED, accepted.err  # team/api:1.0 breaks the policy
    assert "team/api:1.0" in accepted.out


def test_malformed_vulnerable_list_under_strict(
        careen: Careen, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "vulnerable.list").write_text("5=6,   library/activemq:5.14.4\n$(id)\n")
    monkeypatch.setenv("registry_server", "registry.abc.com")
    tree = Path(__file__).resolve().parents[2] / "samples" / "tree"
    result = careen("update", "--root", str(tree), "--dry-run", "--strict")
    assert result.code == 2
    assert result.err.startswith("careen: error: ")
    assert "vulnerable.list:2: not an image reference" in result.err


# -- TLS --------------------------------------------------------------------------------------


@pytest.fixture
def tls_harbor(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTPS server with a self-signed certificate (in a thread: the CLI runs its
    own event loop in this one). Answers every request with ``{}``."""
    context, _ = self_signed_server(tmp_path)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True,
                              kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_tls_failure_exits_3_without_retrying(careen: Careen, tls_harbor: str,
                                              instant_retries: OpenedHarbor) -> None:
    result = careen("vulnerable", "-o", "-", "--harbor-url", tls_harbor)
    assert result.code == ExitCode.UNREACHABLE
    assert result.error_line.startswith("careen: error: Harbor at 127.0.0.1:")
    assert "TLS certificate verify failed" in result.error_line
    assert "ca_bundle" in result.err  # the hint says what to set
    assert instant_retries.sleep.waits == []  # a bad certificate is not retried
