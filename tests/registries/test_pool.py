"""Careen's transport (:mod:`careen.registries.pool`) has the settings httpx's own transport
would have had: the day httpx gives its transport a setting Careen's does not honour, or
builds its TLS context otherwise, these fail instead of Careen silently dropping it. (They
read httpx's own transport's private pool for that; Careen itself uses only httpx's public
transport interface.)"""

from __future__ import annotations

import ssl

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


def test_httpx_gives_its_transport_no_setting_careen_transport_does_not_honour() -> None:
    theirs = httpx.AsyncHTTPTransport(verify=ssl.create_default_context(), limits=LIMITS)._pool
    assert set(vars(theirs)) == TAKEN | set(ASSUMED) | STATE
    for name, value in ASSUMED.items():
        assert getattr(theirs, name) == value, name


@pytest.mark.parametrize("verify", [ssl.create_default_context(), False, True],
                         ids=["context", "no-verify", "default"])
def test_careen_transport_has_httpx_settings(verify: ssl.SSLContext | bool) -> None:
    """The TLS context, limits and keep-alive expiry httpx gives its own transport are
    Careen's transport's too."""
    theirs = httpx.AsyncHTTPTransport(verify=verify, limits=LIMITS)._pool
    pool = pooled_transport(verify, LIMITS)
    assert isinstance(pool, ConnectionPool) and isinstance(pool, httpx.AsyncBaseTransport)
    assert pool._ssl_context is not None and theirs._ssl_context is not None
    for name in ("verify_mode", "check_hostname", "minimum_version", "options"):
        assert getattr(pool._ssl_context, name) == getattr(theirs._ssl_context, name), name
    assert pool._slots is not None
    assert pool._slots._value == theirs._max_connections
    assert pool._max_keepalive == theirs._max_keepalive_connections
    assert pool._keepalive_expiry == theirs._keepalive_expiry


def test_unverified_tls_is_kept() -> None:
    pool = pooled_transport(False, LIMITS)
    assert pool._ssl_context is not None
    assert pool._ssl_context.verify_mode is ssl.CERT_NONE
