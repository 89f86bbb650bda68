"""The connection pool httpx is given: Careen's own, a last-in first-out stack of idle
httpcore HTTP/1.1 connections, over a network backend whose streams keep their socket.

Why not httpcore's pool: on every request start and every response close it re-examines
every connection against every queued request (``_assign_requests_to_connections``: 900,000
``is_idle`` calls for the 1,022 requests of a 10,000-artifact inventory, about 0.8 ms of CPU
per request, a quarter of ``careen images``; bench/README.md). Careen never needs its queue:
:class:`careen.registries.http.HarborHttp` bounds the requests in flight with a semaphore
equal to ``max_connections``. What is kept of httpcore's pool: a connection is taken from
the idle ones only when it has not expired (keep-alive expiry, and the check that the server
did not close it while idle), a connection is never shared by two requests, at most
``max_connections`` are in use (a request beyond waits, up to httpx's pool timeout), at
most ``max_keepalive_connections`` are kept idle, and closing the pool closes them all.
HTTP/1.1 only, as httpx's own pool is made unless asked for HTTP/2 (Careen never asks); a
proxy from the environment is mounted by httpx with its own transport, as before.

This relies on httpx internals, pinned by ``tests/registries/test_pool.py`` so that the
day httpx changes them a test fails instead of Careen silently running on httpx's own pool:
``httpx.AsyncHTTPTransport`` keeps its pool in ``_pool`` and hands it ``httpcore.Request``
values through ``handle_async_request``, and closes it with ``aclose``.
"""

from __future__ import annotations

import asyncio
import select
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpcore
import httpx

# Before each request is given a connection, httpcore's pool asks every pooled connection
# whether it has expired, and an idle HTTP/1.1 connection answers by checking whether the
# server closed its socket: it asks anyio for the raw socket, and anyio rebuilds its table of
# socket attributes for that (a getpeername() system call included) before the poll() that
# does the check. With 16 connections that was a fifth of the client's CPU per request on a
# fast Harbor (bench/README.md; upstream: encode/httpcore PR #928). The streams below keep
# the socket they were opened with, so the check is one poll() again, and still done: a
# connection the server closed while idle is never reused.


def socket_readable(sock: socket.socket | None) -> bool:
    """Whether ``sock`` has something to read, or is gone (an idle HTTP/1.1 connection with
    something to read was closed by the server); as httpcore's own check, without a wait."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class SocketKeepingStream(httpcore.AsyncNetworkStream):
    """An httpcore network stream that remembers its raw socket (see above)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner
        self._socket: socket.socket | None = inner.get_extra_info("socket")

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max_bytes, timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                        timeout: float | None = None) -> httpcore.AsyncNetworkStream:
        return SocketKeepingStream(
            await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self._socket is not None:
            return socket_readable(self._socket)
        return self._inner.get_extra_info(info)


class SocketKeepingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's anyio backend, whose streams are :class:`SocketKeepingStream`."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._inner = inner if inner is not None else httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None,
                          socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return SocketKeepingStream(await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address,
            socket_options=socket_options))

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Any = None) -> httpcore.AsyncNetworkStream:
        return SocketKeepingStream(await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


#: An origin as a dictionary key (``httpcore.Origin`` is not hashable): scheme, host, port.
_OriginKey = tuple[bytes, bytes, int]


def _key(origin: httpcore.Origin) -> _OriginKey:
    return (origin.scheme, origin.host, origin.port)


class ConnectionPool:
    """Idle HTTP/1.1 connections per origin, reused last-in first-out (see the module
    docstring). Used by one event loop; nothing here awaits between taking a connection and
    marking it in use, so no lock is needed."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None, max_connections: int | None,
                 max_keepalive_connections: int | None, keepalive_expiry: float | None,
                 network_backend: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._ssl_context = ssl_context
        self._max_keepalive = (max_keepalive_connections
                               if max_keepalive_connections is not None else 2**31)
        if max_connections is not None:
            self._max_keepalive = min(self._max_keepalive, max_connections)
        self._keepalive_expiry = keepalive_expiry
        self._backend = network_backend if network_backend is not None else (
            SocketKeepingBackend())
        self._slots = (asyncio.Semaphore(max_connections) if max_connections is not None
                       else None)
        #: Idle connections by origin, the most recently used last.
        self._idle: dict[_OriginKey, list[httpcore.AsyncHTTPConnection]] = {}
        self._idle_count = 0
        self._in_use: set[httpcore.AsyncHTTPConnection] = set()
        self._closed = False

    @property
    def connections(self) -> list[httpcore.AsyncHTTPConnection]:
        """Every open connection: idle ones, then those in use."""
        idle = [c for stack in self._idle.values() for c in stack]
        return idle + list(self._in_use)

    async def handle_async_request(self, request: httpcore.Request) -> httpcore.Response:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        scheme = request.url.scheme
        if scheme not in (b"http", b"https"):
            raise httpcore.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme.decode()}://'.")
        origin = request.url.origin
        await self._take_slot(request)
        try:
            connection = await self._connection_for(origin)
        except BaseException:
            self._release_slot()
            raise
        self._in_use.add(connection)
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await self._give_back(connection, origin)
            raise
        stream = _PooledStream(response.stream, self, connection, origin)
        return httpcore.Response(status=response.status, headers=response.headers,
                                 content=stream, extensions=response.extensions)

    async def _take_slot(self, request: httpcore.Request) -> None:
        if self._slots is None:
            return
        if not self._slots.locked():
            await self._slots.acquire()  # free: returns at once
            return
        timeout = request.extensions.get("timeout", {}).get("pool")
        try:
            async with asyncio.timeout(timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise httpcore.PoolTimeout("no connection was free within the pool timeout") \
                from None

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    async def _connection_for(self, origin: httpcore.Origin) -> httpcore.AsyncHTTPConnection:
        """The most recently used idle connection to ``origin`` that is still good (expired
        ones on the way are closed), else a new one."""
        stack = self._idle.get(_key(origin))
        while stack:
            connection = stack.pop()
            self._idle_count -= 1
            if not connection.has_expired():
                return connection
            await connection.aclose()
        return httpcore.AsyncHTTPConnection(
            origin, ssl_context=self._ssl_context, keepalive_expiry=self._keepalive_expiry,
            http1=True, http2=False, network_backend=self._backend)

    async def _give_back(self, connection: httpcore.AsyncHTTPConnection,
                         origin: httpcore.Origin) -> None:
        """A request is done with ``connection``: keep it idle if it can serve another,
        else close it. The oldest idle connection of its origin is checked too, so one the
        server closed or that outlived the keep-alive expiry does not hold its socket
        until the pool closes."""
        self._in_use.discard(connection)
        self._release_slot()
        to_close: list[httpcore.AsyncHTTPConnection] = []
        if connection.is_closed():  # failed, or closed by httpcore after an error
            pass
        elif (connection.is_idle() and not self._closed
                and self._idle_count < self._max_keepalive):
            stack = self._idle.setdefault(_key(origin), [])
            if stack and stack[0].has_expired():
                to_close.append(stack.pop(0))
                self._idle_count -= 1
            stack.append(connection)
            self._idle_count += 1
        else:
            to_close.append(connection)
        for stale in to_close:
            await stale.aclose()

    async def aclose(self) -> None:
        self._closed = True
        connections = self.connections
        self._idle.clear()
        self._idle_count = 0
        self._in_use.clear()
        for connection in connections:
            await connection.aclose()

    async def __aenter__(self) -> ConnectionPool:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


class _PooledStream:
    """A response body that gives its connection back to the pool when closed."""

    __slots__ = ("_closed", "_connection", "_inner", "_origin", "_pool")

    def __init__(self, inner: Any, pool: ConnectionPool,
                 connection: httpcore.AsyncHTTPConnection, origin: httpcore.Origin) -> None:
        self._inner = inner
        self._pool = pool
        self._connection = connection
        self._origin = origin
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._inner:
            yield chunk

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._inner.aclose()
        finally:
            await self._pool._give_back(self._connection, self._origin)


def pooled_transport(verify: ssl.SSLContext | bool,
                     limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport, set up as ``AsyncClient`` would set it up, over a
    :class:`ConnectionPool` (same TLS context, limits and keep-alive expiry) whose network
    backend is :class:`SocketKeepingBackend`."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    transport._pool = ConnectionPool(  # type: ignore[assignment]
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry)
    return transport
