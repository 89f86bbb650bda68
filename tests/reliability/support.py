"""Helpers of the reliability suite: the fuzzing profile, the per-case time bound, a
retry ``sleep`` that records instead of waiting, and small loopback HTTP servers.

Fuzzing volume: ``CAREEN_FUZZ_EXAMPLES`` examples per fuzzed target (default 100); CI sets
more. The profile is registered here and applied per test with ``@FUZZ`` (not loaded for the
session, so the other suites keep hypothesis' defaults).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from hypothesis import HealthCheck, settings

#: Examples per fuzzed target; CI raises it (e.g. ``CAREEN_FUZZ_EXAMPLES=2000``).
FUZZ_EXAMPLES = int(os.environ.get("CAREEN_FUZZ_EXAMPLES", "100"))
#: Longest a single parse may take before it counts as a hang.
CASE_SECONDS = 2.0

settings.register_profile(
    "careen-fuzz",
    max_examples=FUZZ_EXAMPLES,
    # The time bound below is per case; hypothesis' own deadline would flag a slow CI machine.
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"},
    print_blob=True,
)
#: Decorator giving a ``@given`` test the fuzzing profile.
FUZZ = settings.get_profile("careen-fuzz")


class CaseTimeout(Exception):
    """A parse ran longer than :data:`CASE_SECONDS`: a hang (or catastrophic backtracking)."""


@contextmanager
def time_bound(seconds: float = CASE_SECONDS) -> Iterator[None]:
    """Raise :class:`CaseTimeout` in the main thread if the block runs longer than
    ``seconds`` (``setitimer``: sub-second, Linux main thread only)."""
    if threading.current_thread() is not threading.main_thread():  # pragma: no cover
        raise RuntimeError("time_bound needs the main thread (signals)")

    def expired(signum: int, frame: FrameType | None) -> None:
        raise CaseTimeout(f"one case ran longer than {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class RecordingSleep:
    """Stands in for ``asyncio.sleep`` in the client's retries: records each wait the client
    asked for (so tests check Retry-After and backoff) and yields without waiting."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        await asyncio.sleep(0)


def free_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


Route = Callable[[str], Answer]


@dataclass
class LoopbackServer:
    """A threaded stdlib HTTP server on 127.0.0.1 answering every GET with ``route(path)``
    (path with query). ``paths`` records what was asked, in order."""

    route: Route
    paths: list[str] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def loopback_server(route: Route) -> Iterator[LoopbackServer]:
    record = LoopbackServer(route)
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in two writes: with Nagle's algorithm the body waited for
        # the client's delayed ACK, about 40 ms an answer on loopback.
        disable_nagle_algorithm = True

        def do_GET(self) -> None:
            with lock:
                record.paths.append(self.path)
            answer = record.route(self.path)
            self.send_response(answer.status)
            for name, value in answer.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(answer.body)))
            self.end_headers()
            self.wfile.write(answer.body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    with serving(Handler, "loopback-http") as port:
        record.port = port
        yield record


#: How often a serving thread checks for shutdown: ``serve_forever``'s default of 0.5 s
#: made every test that stops a server wait up to half a second in its teardown.
SHUTDOWN_POLL_SECONDS = 0.02


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler], name: str) -> Iterator[int]:
    """Serve ``handler`` on a free loopback port from a thread; yields the port, and stops
    the server (and its thread) when the block ends."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name=name, daemon=True,
                              kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS})
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
