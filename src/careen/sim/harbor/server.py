"""Running the simulator: :class:`SimulatorServer` (uvicorn in a thread, for tests and the
demo) and :func:`serve` (foreground, for ``careen sim harbor``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path
from types import TracebackType

import uvicorn

from careen.errors import ServiceError
from careen.sim.harbor.app import HarborApp
from careen.sim.harbor.fleet import Fleet
from careen.sim.harbor.options import SimOptions, SimStats
from careen.sim.harbor.registry import RegistryMirror
from careen.sim.harbor.scanner import ContentScanner
from careen.sim.harbor.state import SimState


def build_app(fleet: Fleet, options: SimOptions | None = None) -> HarborApp:
    """The ASGI app for ``fleet`` (also usable with ``httpx.ASGITransport``)."""
    options = options or SimOptions()
    state = SimState(fleet, scanner=options.scanner, scan_delays=options.delays)
    inspector = options.scanner if isinstance(options.scanner, ContentScanner) else None
    mirror = (RegistryMirror(options.registry_url, options.registry_auth,
                             options.registry_refresh, inspector)
              if options.registry_url else None)
    return HarborApp(state, options, SimStats(), mirror)


class _PromptServer(uvicorn.Server):
    """uvicorn's server, stopped without its fixed pauses: :meth:`request_exit` wakes the
    main loop at once (uvicorn looks at ``should_exit`` every 0.1 s), and shutting down waits
    for the open connections to close rather than 0.1 s before it even looks (and drops
    requests stalled by a slow fault rather than sleep them out). A test suite
    starts and stops a simulator for many of its tests; those pauses were most of the time."""

    _loop: asyncio.AbstractEventLoop | None = None
    _wake: asyncio.Event | None = None

    async def main_loop(self) -> None:
        self._wake = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        counter = 0
        while not await self.on_tick(counter):  # the tick keeps uvicorn's Date header fresh
            counter = (counter + 1) % 864000
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.1)

    def request_exit(self) -> None:
        """Ask the server to stop, from any thread."""
        self.should_exit = True
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                loop.call_soon_threadsafe(wake.set)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        if isinstance(self.config.app, HarborApp):
            self.config.app.closing.set()  # requests stalled by a slow fault: dropped now
        for sock in sockets or []:
            sock.close()
        # An idle keep-alive connection closes now; a busy one after its response.
        for connection in list(self.server_state.connections):
            connection.shutdown()
        deadline = time.monotonic() + 10
        while (self.server_state.connections or self.server_state.tasks) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


class SimulatorServer:
    """``with SimulatorServer(fleet, SimOptions()) as sim:`` serves on a free loopback port.

    ``sim.url`` is the Harbor base URL (API under ``/api/v2.0``, or ``/api`` for v1);
    ``sim.state`` the live model; ``sim.stats`` the request counters; ``sim.app`` the app.
    """

    def __init__(self, fleet: Fleet, options: SimOptions | None = None) -> None:
        self.options = options or SimOptions()
        self.fleet = fleet
        self.app = build_app(fleet, self.options)
        self._server: _PromptServer | None = None
        self._thread: threading.Thread | None = None
        self._socket: socket.socket | None = None
        self.port = 0

    @property
    def state(self) -> SimState:
        return self.app.state

    @property
    def stats(self) -> SimStats:
        return self.app.stats

    @property
    def url(self) -> str:
        return f"http://{self.options.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return self.url + ("/api" if self.app.api == "v1" else "/api/v2.0")

    def reset(self, fleet: Fleet | None = None) -> None:
        """Start over from ``fleet`` (default: the one given at construction) without
        restarting the server: fresh state, zeroed counters, fault sequence from its seed."""
        self.fleet = fleet or self.fleet
        fresh = build_app(self.fleet, self.options)
        self.app.state = fresh.state
        self.app.registry = fresh.registry
        self.app.faults = fresh.faults
        self.app.api = fresh.api
        self.app.v1 = fresh.v1
        if self.app.v1 is not None:
            self.app.v1.app = self.app
        self.app.stats.reset()

    def start(self) -> SimulatorServer:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.options.host, self.options.port))
        except OSError as exc:
            sock.close()
            raise ServiceError("Harbor simulator", f"{self.options.host}:{self.options.port}",
                               f"cannot listen: {exc.strerror}",
                               hint="choose another port, or 0 for any free one") from exc
        self.port = sock.getsockname()[1]
        self._socket = sock
        config = uvicorn.Config(self.app, log_level="warning", access_log=False,
                                lifespan="off", http="h11", loop="asyncio",
                                timeout_keep_alive=30)
        self._server = _PromptServer(config)
        self._thread = threading.Thread(target=self._run, name="harbor-sim", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServiceError("Harbor simulator", self.url, "did not start")
            time.sleep(0.005)
        return self

    def _run(self) -> None:
        assert self._server is not None and self._socket is not None  # noqa: S101
        asyncio.run(self._serve(self._server, self._socket))

    async def _serve(self, server: _PromptServer, sock: socket.socket) -> None:
        self.app.closing = asyncio.Event()  # this run's loop's (the server may be restarted)
        watch = (asyncio.create_task(self._watch_registry())
                 if self.options.registry_watch > 0 and self.app.registry is not None else None)
        try:
            await server.serve(sockets=[sock])
        finally:
            if watch is not None:
                watch.cancel()

    async def _watch_registry(self) -> None:
        """Re-read the registry now and then, as Harbor hears of pushes (its registry's
        notifications) without anyone listing. A failed read keeps the last view."""
        while True:
            await asyncio.sleep(self.options.registry_watch)
            mirror = self.app.registry
            if mirror is not None:
                await mirror.refresh(self.app.state, force=True)

    def stop(self) -> None:
        if self._server is not None:
            self._server.request_exit()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._socket is not None:
            self._socket.close()
        self._server = self._thread = self._socket = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def serve(fleet_path: str | Path | None = None, *, host: str = "127.0.0.1", port: int = 8080,
          options: SimOptions | None = None, registry_url: str | None = None,
          fleet: Fleet | None = None) -> None:
    """Run the simulator in the foreground until Ctrl-C. ``fleet_path`` is a fleet file (or
    ``fleet`` a built fleet; neither: an empty Harbor, useful with ``registry_url``)."""
    if fleet is None:
        fleet = Fleet.from_file(fleet_path) if fleet_path is not None else Fleet()
    options = replace(options or SimOptions(), host=host, port=port)
    if registry_url is not None:
        options = replace(options, registry_url=registry_url)
    app = build_app(fleet, options)
    config = uvicorn.Config(app, host=host, port=port, log_level="info", lifespan="off",
                            http="h11", loop="asyncio")
    try:
        uvicorn.Server(config).run()
    except OSError as exc:
        raise ServiceError("Harbor simulator", f"{host}:{port}", f"cannot listen: {exc}") from exc
