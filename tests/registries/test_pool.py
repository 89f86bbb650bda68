"""The httpx and httpcore internals :mod:`careen.registries.pool` relies on, pinned: the day
httpx keeps its pool elsewhere, talks to it otherwise, gives it a setting Careen's pool does
not honour, or stops turning httpcore's exceptions into its own, these fail instead of
Careen silently running on httpx's own pool (which costs half of ``careen images``' CPU;
bench/README.md) or on a pool that drops a setting or an error."""

from __future__ import annotations

import ssl
from typing import Any

import httpcore
import httpx
import pytest

from careen.registries.pool import ConnectionPool, pooled_transport

LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16)

#: What httpx's own pool holds that Careen's pool takes over, and the values Careen's pool
#: assumes for the settings it does not take (HTTP/1.1 only, no connect retries, no local
#: address, no Unix socket, no socket options, no proxy: httpx mounts a proxy with a
#: transport of its own).
TAKEN = {"_ssl_context", "_max_connections", "_max_keepalive_connections",
         "_keepalive_expiry"}
ASSUMED = {"_http1": True, "_http2": False, "_retries": 0, "_local_address": None,
           "_uds": None, "_socket_options": None, "_proxy": None}
#: httpx's pool's own state, not settings.
STATE = {"_network_backend", "_optional_thread_lock", "_connections", "_requests"}


def test_httpx_keeps_its_pool_in_underscore_pool() -> None:
    transport = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(), limits=LIMITS)
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)


def test_httpx_gives_its_pool_no_setting_careen_pool_does_not_honour() -> None:
    theirs = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(), limits=LIMITS)._pool
    assert set(vars(theirs)) == TAKEN | set(ASSUMED) | STATE
    for name, value in ASSUMED.items():
        assert getattr(theirs, name) == value, name


def test_careen_pool_has_httpx_settings() -> None:
    """The TLS context, limits and keep-alive expiry httpx gives its own pool are Careen's
    pool's too."""
    for verify in (ssl.create_default_context(), False, True):
        theirs = httpx.AsyncHTTPTransport(verify=verify, limits=LIMITS)._pool
        pool = pooled_transport(verify, LIMITS)._pool
        assert isinstance(pool, ConnectionPool)
        assert pool._ssl_context is not None and theirs._ssl_context is not None
        for name in ("verify_mode", "check_hostname", "minimum_version", "options"):
            assert getattr(pool._ssl_context, name) == getattr(theirs._ssl_context, name), name
        assert pool._slots is not None
        assert pool._slots._value == theirs._max_connections
        assert pool._max_keepalive == theirs._max_keepalive_connections
        assert pool._keepalive_expiry == theirs._keepalive_expiry


def test_unverified_tls_is_kept_in_the_replaced_pool() -> None:
    pool = pooled_transport(False, LIMITS)._pool
    assert isinstance(pool, ConnectionPool)
    assert pool._ssl_context is not None
    assert pool._ssl_context.verify_mode is ssl.CERT_NONE


class RecordingPool:
    """Stands in for a pool: records what the transport hands it."""

    def __init__(self) -> None:
        self.requests: list[Any] = []
        self.closed = False

    async def handle_async_request(self, request: Any) -> httpcore.Response:
        self.requests.append(request)
        return httpcore.Response(200, headers=[(b"Content-Length", b"2")], content=b"[]")

    async def aclose(self) -> None:
        self.closed = True


async def test_httpx_transport_hands_its_pool_httpcore_requests_and_closes_it() -> None:
    transport = httpx.AsyncHTTPTransport(limits=LIMITS)
    recording = RecordingPool()
    transport._pool = recording  # type: ignore[assignment]
    client = httpx.AsyncClient(transport=transport)
    response = await client.get("http://harbor.example/api/v2.0/projects?page=1")
    assert response.status_code == 200 and response.json() == []
    await client.aclose()
    [request] = recording.requests
    assert isinstance(request, httpcore.Request)
    assert request.url.origin == httpcore.Origin(b"http", b"harbor.example", 80)
    assert request.url.target == b"/api/v2.0/projects?page=1"
    assert recording.closed


class FailingPool(RecordingPool):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    async def handle_async_request(self, request: Any) -> httpcore.Response:
        raise self.error


@pytest.mark.parametrize(("raised", "seen"), [
    (httpcore.ConnectError, httpx.ConnectError), (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout), (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.WriteError, httpx.WriteError),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
])
async def test_httpx_turns_the_pool_errors_into_its_own_keeping_the_cause(
        raised: type[Exception], seen: type[Exception]) -> None:
    cause = ConnectionRefusedError("refused")
    try:
        raise raised("failed") from cause
    except raised as error:
        failure = error
    transport = httpx.AsyncHTTPTransport(limits=LIMITS)
    transport._pool = FailingPool(failure)  # type: ignore[assignment]
    client = httpx.AsyncClient(transport=transport)
    with pytest.raises(seen) as caught:
        await client.get("http://harbor.example/api/v2.0/projects")
    await client.aclose()
    assert caught.value.__cause__ is failure and failure.__cause__ is cause
