"""The transport httpx is given: Careen's own connection pool, a last-in first-out stack of
idle HTTP/1.1 connections, each an asyncio protocol whose messages h11 reads and writes.

Why not httpcore's pool: on every request start and every response close it re-examines
every connection against every queued request (``_assign_requests_to_connections``: 900,000
``is_idle`` calls for the 1,022 requests of a 10,000-artifact inventory), and each exchange
of its HTTP/1.1 connection goes through anyio (a lock, a cancel scope per read and write)
and four tracing context managers; httpx's transport turns each request and response into
httpcore's models and back: together about 1 ms of CPU per request, half of
``careen images`` (bench/README.md). Careen never needs the queue:
:class:`careen.registries.http.HarborHttp` bounds the requests in flight with a semaphore
equal to ``max_connections``.

What is kept of httpcore's behaviour: a connection is taken from the idle ones only when it
has not expired (keep-alive expiry, and a server that closed it or sent something while it
was idle: checked on the protocol and, as httpcore does, with a poll of the socket); a
connection serves one request at a time and is closed when its response was not read to
the end; at most ``max_connections`` are in use (a request beyond waits, up to httpx's pool
timeout) and ``max_keepalive_connections`` idle; closing the pool closes them all. Timeouts
(connect, and each read and write), TLS (the context httpx makes of ``verify``, SNI, ALPN
``http/1.1``) and errors are httpx's transport's: the same httpx exception classes, with the
socket or TLS error as their cause. HTTP/1.1 only, as httpx makes its transport unless asked
for HTTP/2 (Careen never asks); a proxy from the environment is mounted by httpx with a
transport of its own, as before. Only httpx's public transport interface is used
(``httpx.AsyncBaseTransport``); ``tests/registries/test_pool.py`` checks that httpx's own
transport would have had the same settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, Protocol

import h11
import httpx

#: The largest response head h11 buffers (httpcore's figure).
MAX_INCOMPLETE_EVENT_SIZE = 100 * 1024
#: Where a connection goes: scheme, host (as sent, IDNA-encoded), port.
Origin = tuple[str, bytes, int]
_DEFAULT_PORTS = {"http": 80, "https": 443}


class _HasFileno(Protocol):
    def fileno(self) -> int: ...


def socket_readable(sock: _HasFileno | None) -> bool:
    """Whether ``sock`` has something to read, or is gone (an idle HTTP/1.1 connection with
    something to read was closed by the server); as httpcore's own check, without a wait."""
    if sock is None or sock.fileno() < 0:
        return True
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


class Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: the bytes asyncio delivers, buffered until h11 asks."""

    def __init__(self, origin: Origin, keepalive_expiry: float | None) -> None:
        self.origin = origin
        self._keepalive_expiry = keepalive_expiry
        self._transport: asyncio.Transport | None = None
        self._socket: _HasFileno | None = None
        self._received: list[bytes] = []
        self._eof = False
        self._lost: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._h11 = h11.Connection(our_role=h11.CLIENT,
                                   max_incomplete_event_size=MAX_INCOMPLETE_EVENT_SIZE)
        self._expire_at: float | None = None
        self.closed = False

    # -- asyncio's side ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # a stream's: a Transport
        self._socket = transport.get_extra_info("socket")

    def data_received(self, data: bytes) -> None:
        self._received.append(data)
        self._wake()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # asyncio closes the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._lost = exc
        self.closed = True
        self._wake()
        self.resume_writing()

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self._writable = self._writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- reading and writing -----------------------------------------------------------------

    async def _read(self, timeout: float | None) -> bytes:
        """What arrived (waiting up to ``timeout`` for something), or ``b""`` at the end."""
        if not self._received and not self._eof:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                async with asyncio.timeout(timeout):
                    await self._waiter
            except TimeoutError:
                raise httpx.ReadTimeout("no data within the read timeout") from None
            finally:
                self._waiter = None
        if self._received:
            data = self._received[0] if len(self._received) == 1 else b"".join(self._received)
            self._received.clear()
            return data
        if self._lost is not None:
            raise httpx.ReadError(str(self._lost) or type(self._lost).__name__) \
                from self._lost
        return b""

    async def _write(self, data: bytes, timeout: float | None) -> None:
        if self._transport is None or self._transport.is_closing():
            raise httpx.WriteError("the connection is closed")
        self._transport.write(data)
        if self._writable is not None:
            try:
                async with asyncio.timeout(timeout):
                    await self._writable
            except TimeoutError:
                raise httpx.WriteTimeout("could not write within the write timeout") \
                    from None
        if self._lost is not None:
            raise httpx.WriteError(str(self._lost)) from self._lost

    async def _next_event(self, timeout: float | None) -> Any:
        h11_state = self._h11
        while True:
            try:
                event = h11_state.next_event()
            except h11.RemoteProtocolError as error:
                raise httpx.RemoteProtocolError(str(error)) from error
            if event is not h11.NEED_DATA:
                return event
            data = await self._read(timeout)
            if data == b"" and h11_state.their_state == h11.SEND_RESPONSE:
                raise httpx.RemoteProtocolError(
                    "Server disconnected without sending a response.")
            h11_state.receive_data(data)

    # -- one exchange ------------------------------------------------------------------------

    async def send(self, request: httpx.Request) -> httpx.Response:
        """Send ``request`` and read the response's head; the body is read by iterating the
        response's stream. Any failure closes the connection."""
        timeouts = request.extensions.get("timeout", {})
        self._expire_at = None
        try:
            # As httpcore: the server may have answered and closed early; read that.
            with contextlib.suppress(httpx.WriteError):
                await self._send_request(request, timeouts.get("write"))
            read_timeout = timeouts.get("read")
            while True:
                event = await self._next_event(read_timeout)
                if isinstance(event, h11.Response):
                    break
                if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                    break
        except BaseException:
            self.close()
            raise
        return httpx.Response(
            status_code=event.status_code, headers=event.headers.raw_items(),
            stream=_Body(self, read_timeout),
            extensions={"http_version": b"HTTP/" + event.http_version,
                        "reason_phrase": event.reason})

    async def _send_request(self, request: httpx.Request, timeout: float | None) -> None:
        h11_state = self._h11
        try:
            head = h11_state.send(h11.Request(method=request.method,
                                              target=request.url.raw_path,
                                              headers=request.headers.raw))
            await self._write(head or b"", timeout)
            stream: AsyncIterable[bytes] = request.stream  # type: ignore[assignment]
            async for chunk in stream:
                data = h11_state.send(h11.Data(data=chunk))
                if data:
                    await self._write(data, timeout)
            end = h11_state.send(h11.EndOfMessage())
        except h11.LocalProtocolError as error:
            raise httpx.LocalProtocolError(str(error)) from error
        if end:
            await self._write(end, timeout)

    async def body(self, timeout: float | None) -> AsyncIterator[bytes]:
        while True:
            event = await self._next_event(timeout)
            if isinstance(event, h11.Data):
                yield bytes(event.data)
            elif isinstance(event, h11.EndOfMessage | h11.PAUSED):
                return

    def finish(self) -> None:
        """The response was closed: ready for the next request if both sides are done with
        this one and the server sent nothing after it, else closed."""
        h11_state = self._h11
        if (not self.closed and h11_state.our_state is h11.DONE
                and h11_state.their_state is h11.DONE and not h11_state.trailing_data[0]):
            h11_state.start_next_cycle()
            if self._keepalive_expiry is not None:
                self._expire_at = time.monotonic() + self._keepalive_expiry
        else:
            self.close()

    # -- state -------------------------------------------------------------------------------

    @property
    def is_idle(self) -> bool:
        return not self.closed and self._h11.our_state is h11.IDLE

    def has_expired(self) -> bool:
        """Idle too long, or the server closed it or sent something while it was idle (then
        it can only be closing): such a connection must not be used again."""
        if self.closed or self._eof or self._received:
            return True
        if self._expire_at is not None and time.monotonic() > self._expire_at:
            return True
        return socket_readable(self._socket)

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class _Body(httpx.AsyncByteStream):
    """A response body: read from its connection, which is given back to the pool (or
    closed) when the body is closed."""

    __slots__ = ("_closed", "_connection", "_pool", "_timeout")

    def __init__(self, connection: Connection, timeout: float | None) -> None:
        self._connection = connection
        self._timeout = timeout
        self._pool: ConnectionPool | None = None
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._connection.body(self._timeout):
                yield chunk
        except BaseException:
            self._connection.close()
            raise

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._connection.finish()
        if self._pool is not None:
            self._pool.give_back(self._connection)


class ConnectionPool(httpx.AsyncBaseTransport):
    """Idle HTTP/1.1 connections per origin, reused last-in first-out (see the module
    docstring). Used by one event loop; nothing here awaits between taking a connection and
    marking it in use, so no lock is needed."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None, max_connections: int | None,
                 max_keepalive_connections: int | None,
                 keepalive_expiry: float | None) -> None:
        self._ssl_context = ssl_context
        if ssl_context is not None:
            ssl_context.set_alpn_protocols(["http/1.1"])
        self._max_keepalive = (max_keepalive_connections
                               if max_keepalive_connections is not None else 2**31)
        if max_connections is not None:
            self._max_keepalive = min(self._max_keepalive, max_connections)
        self._keepalive_expiry = keepalive_expiry
        self._slots = (asyncio.Semaphore(max_connections) if max_connections is not None
                       else None)
        #: Idle connections by origin, the most recently used last.
        self._idle: dict[Origin, list[Connection]] = {}
        self._idle_count = 0
        self._in_use: set[Connection] = set()
        self._closed = False

    @property
    def connections(self) -> list[Connection]:
        """Every open connection: idle ones, then those in use."""
        idle = [c for stack in self._idle.values() for c in stack]
        return idle + list(self._in_use)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._closed:
            raise RuntimeError("the connection pool is closed")
        url = request.url
        scheme = url.scheme
        if scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(
                f"Request URL has an unsupported protocol '{scheme}://'.", request=request)
        if not url.raw_host:
            raise httpx.UnsupportedProtocol("Request URL is missing a host.", request=request)
        origin = (scheme, url.raw_host, url.port or _DEFAULT_PORTS[scheme])
        await self._take_slot(request)
        try:
            connection = self._idle_connection(origin)
            if connection is None:
                connection = await self._connect(request, origin)
        except BaseException:
            self._release_slot()
            raise
        self._in_use.add(connection)
        try:
            response = await connection.send(request)
        except BaseException:
            self.give_back(connection)
            raise
        body: _Body = response.stream  # type: ignore[assignment]  # Connection.send's
        body._pool = self
        return response

    async def _take_slot(self, request: httpx.Request) -> None:
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
            raise httpx.PoolTimeout("no connection was free within the pool timeout",
                                    request=request) from None

    def _release_slot(self) -> None:
        if self._slots is not None:
            self._slots.release()

    def _idle_connection(self, origin: Origin) -> Connection | None:
        """The most recently used idle connection to ``origin`` that is still good; expired
        ones on the way are closed."""
        stack = self._idle.get(origin)
        while stack:
            connection = stack.pop()
            self._idle_count -= 1
            if not connection.has_expired():
                return connection
            connection.close()
        return None

    async def _connect(self, request: httpx.Request, origin: Origin) -> Connection:
        scheme, raw_host, port = origin
        host = raw_host.decode("ascii")
        timeouts = request.extensions.get("timeout", {})
        context = None
        server_hostname = None
        if scheme == "https":
            context = self._ssl_context if self._ssl_context is not None else (
                httpx.create_ssl_context())
            server_hostname = request.extensions.get("sni_hostname") or host
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeouts.get("connect")):
                _, connection = await loop.create_connection(
                    lambda: Connection(origin, self._keepalive_expiry), host, port,
                    ssl=context, server_hostname=server_hostname)
        except TimeoutError:
            raise httpx.ConnectTimeout("no connection within the connect timeout",
                                       request=request) from None
        except OSError as error:  # refused, unresolvable, TLS (ssl.SSLError is an OSError)
            raise httpx.ConnectError(str(error) or type(error).__name__,
                                     request=request) from error
        return connection

    def give_back(self, connection: Connection) -> None:
        """A request is done with ``connection``: keep it idle if it can serve another,
        else close it. The oldest idle connection of its origin is checked too, so one the
        server closed or that outlived the keep-alive expiry does not hold its socket
        until the pool closes."""
        if connection not in self._in_use:
            return
        self._in_use.discard(connection)
        self._release_slot()
        if not connection.is_idle or self._closed or self._idle_count >= self._max_keepalive:
            connection.close()
            return
        stack = self._idle.setdefault(connection.origin, [])
        if stack and stack[0].has_expired():
            stack.pop(0).close()
            self._idle_count -= 1
        stack.append(connection)
        self._idle_count += 1

    async def aclose(self) -> None:
        self._closed = True
        connections = self.connections
        self._idle.clear()
        self._idle_count = 0
        self._in_use.clear()
        for connection in connections:
            connection.close()



def pooled_transport(verify: ssl.SSLContext | bool, limits: httpx.Limits) -> ConnectionPool:
    """The transport for an ``httpx.AsyncClient``: a :class:`ConnectionPool` with the TLS
    context, limits and keep-alive expiry httpx's own transport would have."""
    return ConnectionPool(
        ssl_context=httpx.create_ssl_context(verify=verify),
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=limits.keepalive_expiry)
