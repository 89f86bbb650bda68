"""Careen's connection pool (``careen.registries.pool``): a connection the server closed, or
sent something on, while it was idle is never reused; and what httpcore's pool guaranteed
still holds (limits, pool timeout, keep-alive expiry, closing, a body left unread or a
cancelled request never leaving its connection in use)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

import httpx
import pytest
from pydantic import SecretStr

from careen.registries.http import HarborHttp, HarborSettings
from careen.registries.pool import Connection, ConnectionPool, pooled_transport, socket_readable

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


async def test_the_client_keeps_one_connection_alive_for_requests_one_after_another(
) -> None:
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
        pool = http._client._transport  # type: ignore[attr-defined]
        assert isinstance(pool, ConnectionPool)
        connections = pool.connections
        assert len(connections) == 1  # one keep-alive connection, reused
        assert isinstance(connections[0], Connection)
        assert connections[0].is_idle and not connections[0].has_expired()
    finally:
        await http.aclose()
        server.close()
        await server.wait_closed()


class KeepAliveServer:
    """Answers every request of a connection after ``delay`` seconds; counts connections,
    the most open at once, and the connections that ended."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self.ended = 0
        self.server: asyncio.Server | None = None

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                try:
                    await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    break
                await asyncio.sleep(self.delay)
                writer.write(RESPONSE)
                await writer.drain()
        finally:
            self.open -= 1
            self.ended += 1
            writer.close()

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc_info: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


def client(limits: httpx.Limits, timeout: float | httpx.Timeout = 5.0) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=pooled_transport(False, limits),
                             timeout=httpx.Timeout(timeout))


async def wait_for(condition: Callable[[], bool]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition did not come true within 2 s")


async def test_requests_beyond_max_connections_wait_for_a_free_one() -> None:
    server = KeepAliveServer(delay=0.05)
    async with server as url:
        http = client(httpx.Limits(max_connections=2, max_keepalive_connections=2))
        answers = await asyncio.gather(*(http.get(f"{url}/x") for _ in range(6)))
        await http.aclose()
    assert [a.status_code for a in answers] == [200] * 6
    assert server.most_open == 2 and server.connections == 2


async def test_a_request_waits_no_longer_than_the_pool_timeout() -> None:
    server = KeepAliveServer()
    async with server as url:
        # Only the wait for a free connection is short: it is the wait under test.
        http = client(httpx.Limits(max_connections=1), timeout=httpx.Timeout(5.0, pool=0.05))
        async with http.stream("GET", f"{url}/x") as held:
            assert held.status_code == 200
            with pytest.raises(httpx.PoolTimeout):
                await http.get(f"{url}/y")
            await held.aread()
        assert (await http.get(f"{url}/z")).status_code == 200  # freed once read and closed
        await http.aclose()
    assert server.connections == 1


async def test_a_connection_past_its_keepalive_expiry_is_closed_not_reused() -> None:
    server = KeepAliveServer()
    async with server as url:
        http = client(httpx.Limits(max_connections=4, keepalive_expiry=0.05))
        await http.get(f"{url}/x")
        await asyncio.sleep(0.1)
        await http.get(f"{url}/y")
        await wait_for(lambda: server.ended == 1)  # the expired one was closed
        await http.aclose()
    assert server.connections == 2


async def test_idle_connections_beyond_max_keepalive_are_closed() -> None:
    server = KeepAliveServer(delay=0.05)
    async with server as url:
        http = client(httpx.Limits(max_connections=4, max_keepalive_connections=1))
        await asyncio.gather(*(http.get(f"{url}/x") for _ in range(4)))
        pool = http._transport  # type: ignore[attr-defined]
        assert len(pool.connections) == 1
        await wait_for(lambda: server.ended == 3)
        await http.aclose()


async def test_closing_the_client_closes_every_idle_connection() -> None:
    server = KeepAliveServer(delay=0.02)
    async with server as url:
        http = client(httpx.Limits(max_connections=3))
        await asyncio.gather(*(http.get(f"{url}/x") for _ in range(3)))
        assert server.open == 3
        await http.aclose()
        await wait_for(lambda: server.open == 0)
        with pytest.raises(RuntimeError):
            await http.get(f"{url}/y")


async def test_a_body_left_unread_or_a_cancelled_request_does_not_leave_its_connection_in_use(
) -> None:
    server = KeepAliveServer(delay=0.05)
    async with server as url:
        http = client(httpx.Limits(max_connections=1))
        async with http.stream("GET", f"{url}/x"):
            pass  # closed with its body unread: the connection cannot serve another
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await http.get(f"{url}/y")  # cancelled while waiting for the answer
        assert (await http.get(f"{url}/z")).status_code == 200
        pool = http._transport  # type: ignore[attr-defined]
        assert pool._in_use == set() and pool._slots._value == 1
        await http.aclose()
    assert server.connections == 3


async def test_a_failed_connect_frees_its_place() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, never listening: connection refused
        http = client(httpx.Limits(max_connections=1))
        for _ in range(2):
            with pytest.raises(httpx.ConnectError) as refused:
                await http.get(f"http://127.0.0.1:{port}/x")
            assert isinstance(refused.value.__cause__, ConnectionRefusedError)
        pool = http._transport  # type: ignore[attr-defined]
        assert pool.connections == [] and pool._slots._value == 1
        await http.aclose()


async def test_a_scheme_other_than_http_or_https_is_refused() -> None:
    transport = pooled_transport(False, httpx.Limits(max_connections=1))
    with pytest.raises(httpx.UnsupportedProtocol):
        await transport.handle_async_request(httpx.Request("GET", "ftp://harbor.example/x"))
    await transport.aclose()


async def serve_once(answer: bytes, *, then: bytes = b"") -> tuple[asyncio.Server, str,
                                                                  list[bytes]]:
    """A server that answers each request of a connection with ``answer`` (then ``then``);
    what it received is kept."""
    received: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                received.append(head + await reader.readexactly(length))
                writer.write(answer + then)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", received


async def test_bytes_sent_on_an_idle_connection_keep_it_from_being_reused() -> None:
    server, url, received = await serve_once(RESPONSE, then=b"HTTP/1.1 200 OK\r\n")
    http = client(httpx.Limits(max_connections=1))
    try:
        for _ in range(2):
            assert (await http.get(f"{url}/x")).json() == []
            await asyncio.sleep(0.05)
        pool = http._transport  # type: ignore[attr-defined]
        assert len(received) == 2 and len(pool.connections) <= 1
    finally:
        await http.aclose()
        server.close()


async def test_chunked_and_closing_answers_and_a_request_body() -> None:
    chunked = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"1\r\n[\r\n1\r\n]\r\n0\r\n\r\n")
    server, url, received = await serve_once(chunked)
    http = client(httpx.Limits(max_connections=1))
    try:
        answer = await http.post(f"{url}/scan", json={"a": 1})
        assert answer.json() == [] and answer.reason_phrase == "OK"
        assert answer.http_version == "HTTP/1.1"
        assert received[0].endswith(b'\r\n\r\n{"a":1}')
        await asyncio.sleep(0.05)
        pool = http._transport  # type: ignore[attr-defined]
        assert pool.connections == []  # "Connection: close": not kept
        assert (await http.get(f"{url}/again")).json() == []
    finally:
        await http.aclose()
        server.close()


async def test_no_answer_within_the_read_timeout_is_a_read_timeout() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # Only the read is short: it is the wait under test (connecting may take its time).
    http = client(httpx.Limits(max_connections=1), timeout=httpx.Timeout(5.0, read=0.05))
    try:
        with pytest.raises(httpx.ReadTimeout):
            await http.get(f"http://127.0.0.1:{port}/x")
        pool = http._transport  # type: ignore[attr-defined]
        assert pool.connections == [] and pool._slots._value == 1
    finally:
        await http.aclose()
        server.close()


async def test_a_server_closing_before_answering_is_a_remote_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hang_up, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = client(httpx.Limits(max_connections=1))
    try:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"http://127.0.0.1:{port}/x")
    finally:
        await http.aclose()
        server.close()
