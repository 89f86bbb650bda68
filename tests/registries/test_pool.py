"""The httpx internals :mod:`careen.registries.pool` relies on, pinned: the day httpx keeps
its pool elsewhere, builds it with other settings, or httpcore's pool stops taking a network
backend, these fail instead of Careen silently running on httpx's own pool (which costs a
fifth of the client's CPU; bench/README.md)."""

from __future__ import annotations

import inspect
import ssl

import httpcore
import httpx

from careen.registries.pool import SocketKeepingBackend, pooled_transport

LIMITS = httpx.Limits(max_connections=16, max_keepalive_connections=16)


def test_httpx_keeps_its_pool_in_underscore_pool() -> None:
    transport = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(), limits=LIMITS)
    assert isinstance(transport._pool, httpcore.AsyncConnectionPool)


def test_httpcore_pool_takes_a_network_backend() -> None:
    parameters = inspect.signature(httpcore.AsyncConnectionPool.__init__).parameters
    assert "network_backend" in parameters


def test_careen_pool_is_httpx_pool_but_for_the_backend() -> None:
    """Every setting httpx gives its own pool (TLS context, limits, HTTP versions, retries,
    socket options...) is what Careen's pool has too; only the network backend differs."""
    context = ssl.create_default_context()
    theirs = httpx.AsyncHTTPTransport(verify=context, limits=LIMITS)._pool
    ours = pooled_transport(context, LIMITS)._pool
    assert isinstance(ours, httpcore.AsyncConnectionPool)
    assert isinstance(ours._network_backend, SocketKeepingBackend)
    differ = {"_network_backend", "_optional_thread_lock", "_connections", "_requests"}
    assert set(vars(ours)) == set(vars(theirs))
    for name in set(vars(theirs)) - differ:
        assert getattr(ours, name) == getattr(theirs, name), name


def test_unverified_tls_is_kept_in_the_replaced_pool() -> None:
    ours = pooled_transport(False, LIMITS)._pool
    assert isinstance(ours, httpcore.AsyncConnectionPool)
    assert ours._ssl_context is not None
    assert ours._ssl_context.verify_mode is ssl.CERT_NONE
