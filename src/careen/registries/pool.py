"""The connection pool httpx is given: httpcore's own, over a network backend whose streams
keep their socket.

This relies on two httpx internals, pinned by ``tests/registries/test_pool.py`` so that the
day httpx changes them a test fails instead of the pool silently falling back:
``httpx.AsyncHTTPTransport`` keeps its pool in ``_pool``, an
``httpcore.AsyncConnectionPool``, and that pool takes ``network_backend``.
"""

from __future__ import annotations

import select
import socket
import ssl
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


def pooled_transport(verify: ssl.SSLContext | bool,
                     limits: httpx.Limits) -> httpx.AsyncHTTPTransport:
    """httpx's transport, set up as ``AsyncClient`` would set it up, over a connection pool
    whose network backend is :class:`SocketKeepingBackend`. httpx takes no backend of its
    own, so the pool it made is replaced; if a future httpx keeps it elsewhere, its own pool
    is kept, which only costs the CPU described above."""
    transport = httpx.AsyncHTTPTransport(verify=verify, limits=limits)
    if isinstance(getattr(transport, "_pool", None), httpcore.AsyncConnectionPool):
        transport._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(verify=verify),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=SocketKeepingBackend())
    return transport
