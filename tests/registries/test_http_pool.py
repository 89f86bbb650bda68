"""The connection pool's sockets (``careen.registries.pool``): the readability check that
keeps a connection the server closed from being reused is still made, on the socket each
stream kept."""

from __future__ import annotations

import asyncio
import socket

import httpcore
from pydantic import SecretStr

from careen.registries.http import HarborHttp, HarborSettings
from careen.registries.pool import SocketKeepingBackend, SocketKeepingStream, socket_readable

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
            b"Connection: keep-alive\r\n\r\n[]")


def test_socket_readable_sees_data_and_a_closed_peer() -> None:
    left, right = socket.socketpair()
    try:
        assert not socket_readable(left)
        right.sendall(b"x")
        assert socket_readable(left)
        left.recv(1)
        assert not socket_readable(left)
        right.close()
        assert socket_readable(left)  # the next read returns b"": the peer closed
    finally:
        left.close()
        right.close()
    assert socket_readable(None)
    assert socket_readable(left)  # closed here: treated as gone


class OneAnswerServer:
    """Answers one request per connection, then closes it (as a Harbor proxy closing idle
    keep-alive connections does). Counts the connections it accepted."""

    def __init__(self) -> None:
        self.connections = 0
        self.closed = asyncio.Event()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(RESPONSE)
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        self.closed.set()


async def test_a_connection_the_server_closed_while_idle_is_not_reused() -> None:
    answers = OneAnswerServer()
    server = await asyncio.start_server(answers.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = HarborHttp(HarborSettings(f"http://127.0.0.1:{port}", user="u",
                                     password=SecretStr("p"), concurrency=4, max_attempts=1))
    try:
        for _ in range(3):
            answers.closed.clear()
            await http.get_json("/api/v2.0/projects")
            await asyncio.wait_for(answers.closed.wait(), 5)
            await asyncio.sleep(0.05)  # the FIN reaches the client's socket
        # With max_attempts=1 a reused dead connection would have failed the request.
        assert answers.connections == 3
        assert http.stats.requests == 3 and http.stats.retries == 0
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()


async def test_the_client_pools_connections_over_socket_keeping_streams() -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            writer.write(RESPONSE)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = HarborHttp(HarborSettings(f"http://127.0.0.1:{port}", concurrency=2))
    try:
        for _ in range(4):
            assert await http.get_json("/api/v2.0/projects") == []
        pool = http._client._transport._pool  # type: ignore[attr-defined]
        assert isinstance(pool, httpcore.AsyncConnectionPool)
        assert isinstance(pool._network_backend, SocketKeepingBackend)
        streams = [c._connection._network_stream  # type: ignore[attr-defined]
                   for c in pool.connections]
        assert len(streams) == 1  # one keep-alive connection, reused
        assert all(isinstance(stream, SocketKeepingStream) for stream in streams)
        assert streams[0].get_extra_info("is_readable") is False
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()
