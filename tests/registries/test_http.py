"""The HTTP layer: auth, cookies, request ids, retries, error translation, TLS, paging parsers."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from careen.errors import ConfigError, ExitCode, ServiceError
from careen.events import RecordingObserver
from careen.registries.http import (
    HarborApiError,
    HarborHttp,
    HarborSettings,
    parse_retry_after,
)
from careen.registries.paging import total_count
from tests.tls import self_signed_server

from .fakes import PASSWORD, FakeHarbor, RecordingSleep, error, json_response, settings

# -- settings ---------------------------------------------------------------------------------


def test_settings_repr_hides_the_password() -> None:
    s = settings()
    assert PASSWORD not in repr(s)
    assert PASSWORD not in str(s)
    assert s.host == "harbor.example.com"
    assert s.has_credentials


@pytest.mark.parametrize(("overrides", "key"), [
    ({"url": "harbor.example.com"}, "harbor.url"),
    ({"url": "ftp://harbor.example.com"}, "harbor.url"),
    ({"url": "https://admin:pw@harbor.example.com"}, "harbor.url"),
    ({"page_size": 101}, "harbor.page_size"),
    ({"page_size": 0}, "harbor.page_size"),
    ({"concurrency": 0}, "harbor.concurrency"),
    ({"max_attempts": 0}, "harbor.max_attempts"),
    ({"timeout": 0}, "harbor.timeout"),
    ({"api_version": "v3"}, "harbor.api_version"),
])
def test_bad_settings_name_the_key(overrides: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings(**overrides)
    assert caught.value.key == key
    assert "pw@" not in str(caught.value)


def test_missing_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        HarborHttp(settings(ca_bundle=tmp_path / "missing.pem"))
    assert caught.value.key == "harbor.ca_bundle"


# -- what every request carries ---------------------------------------------------------------


async def test_basic_auth_and_request_id_on_every_request_and_no_cookie_sent_back(
        fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/ping", lambda r: httpx.Response(
        200, text="Pong", headers={"Set-Cookie": "sid=abc123; Path=/; HttpOnly"}))
    fake.route("/api/v2.0/thing", lambda r: httpx.Response(201))
    http = HarborHttp(settings(user="robot$ci"), transport=fake.transport())
    await http.request("GET", "/api/v2.0/ping")
    await http.request("POST", "/api/v2.0/thing", json_body={}, accept=(201,))
    await http.request("GET", "/api/v2.0/ping")
    await http.aclose()
    expected = "Basic " + base64.b64encode(f"robot$ci:{PASSWORD}".encode()).decode()
    ids = []
    for request in fake.requests:
        assert request.headers["Authorization"] == expected
        assert "cookie" not in request.headers
        ids.append(uuid.UUID(request.headers["X-Request-Id"]))
    assert len(set(ids)) == 3


async def test_anonymous_without_credentials(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/ping", lambda r: httpx.Response(200, text="Pong"))
    http = HarborHttp(settings(user=None, password=None), transport=fake.transport())
    await http.request("GET", "/api/v2.0/ping")
    await http.aclose()
    assert "authorization" not in fake.requests[0].headers


# -- retries ----------------------------------------------------------------------------------


def flaky(statuses: list[int], headers: dict[str, str] | None = None) -> object:
    """Answers the given statuses in turn, then 200."""
    remaining = list(statuses)

    def handle(request: httpx.Request) -> httpx.Response:
        if remaining:
            status = remaining.pop(0)
            response = error(status, "UNKNOWN", "internal server error")
            response.headers.update(headers or {})
            return response
        return json_response({"ok": True})

    return handle


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
async def test_retries_transient_statuses(fake: FakeHarbor, sleep: RecordingSleep,
                                          status: int) -> None:
    fake.route("/api/v2.0/x", flaky([status, status]))
    observer = RecordingObserver()
    http = HarborHttp(settings(), transport=fake.transport(), sleep=sleep, observer=observer)
    assert await http.get_json("/api/v2.0/x") == {"ok": True}
    await http.aclose()
    assert len(fake.requests) == 3
    assert http.stats.requests == 3 and http.stats.retries == 2
    assert len(sleep.waits) == 2 and all(0 <= w <= 0.05 for w in sleep.waits)
    assert len(observer.of_kind("warning")) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 412, 422])
async def test_does_not_retry_client_errors(fake: FakeHarbor, sleep: RecordingSleep,
                                            status: int) -> None:
    fake.route("/api/v2.0/x", flaky([status]))
    http = HarborHttp(settings(), transport=fake.transport(), sleep=sleep)
    with pytest.raises(HarborApiError) as caught:
        await http.get_json("/api/v2.0/x")
    await http.aclose()
    assert caught.value.status == status
    assert len(fake.requests) == 1 and sleep.waits == []


async def test_retry_after_seconds_is_honoured_and_capped(fake: FakeHarbor,
                                                          sleep: RecordingSleep) -> None:
    fake.route("/api/v2.0/a", flaky([429], {"Retry-After": "7"}))
    fake.route("/api/v2.0/b", flaky([429], {"Retry-After": "3600"}))
    http = HarborHttp(settings(retry_after_max=30), transport=fake.transport(), sleep=sleep)
    await http.get_json("/api/v2.0/a")
    await http.get_json("/api/v2.0/b")
    await http.aclose()
    assert sleep.waits == [7.0, 30.0]


async def test_retry_after_http_date(fake: FakeHarbor, sleep: RecordingSleep) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
    fake.route("/api/v2.0/a", flaky([503], {
        "Retry-After": when.strftime("%a, %d %b %Y %H:%M:%S GMT")}))
    http = HarborHttp(settings(), transport=fake.transport(), sleep=sleep)
    await http.get_json("/api/v2.0/a")
    await http.aclose()
    assert len(sleep.waits) == 1 and 15 <= sleep.waits[0] <= 21


async def test_retries_dropped_connections(fake: FakeHarbor, sleep: RecordingSleep) -> None:
    calls = 0

    def handle(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        if calls == 2:
            raise httpx.ReadError("connection reset by peer")
        return json_response([])

    fake.route("/api/v2.0/x", handle)
    http = HarborHttp(settings(), transport=fake.transport(), sleep=sleep)
    assert await http.get_json("/api/v2.0/x") == []
    await http.aclose()
    assert calls == 3 and http.stats.transport_errors == 2


async def test_gives_up_after_bounded_attempts(fake: FakeHarbor, sleep: RecordingSleep) -> None:
    fake.route("/api/v2.0/x", lambda r: error(500, "UNKNOWN", "internal server error"))
    http = HarborHttp(settings(max_attempts=3), transport=fake.transport(), sleep=sleep)
    with pytest.raises(ServiceError) as caught:
        await http.get_json("/api/v2.0/x")
    await http.aclose()
    assert len(fake.requests) == 3
    message = str(caught.value)
    assert caught.value.exit_code is ExitCode.UNREACHABLE
    assert "harbor.example.com" in message and "500" in message and "3 attempts" in message
    assert fake.requests[-1].headers["X-Request-Id"] in message


async def test_gives_up_after_bounded_total_time(fake: FakeHarbor) -> None:
    """The total-time bound stops retrying even when attempts remain."""
    fake.route("/api/v2.0/x", lambda r: error(503, "UNKNOWN", "internal server error"))

    async def slow_sleep(seconds: float) -> None:
        await asyncio.sleep(0.06)

    http = HarborHttp(settings(max_attempts=1000, max_retry_seconds=0.1),
                      transport=fake.transport(), sleep=slow_sleep)
    with pytest.raises(ServiceError):
        await http.get_json("/api/v2.0/x")
    await http.aclose()
    assert 1 < len(fake.requests) < 10


# -- error translation ------------------------------------------------------------------------


def assert_one_line_without_secrets(error_: ServiceError) -> None:
    for text in (str(error_), error_.hint or ""):
        assert "\n" not in text
        assert PASSWORD not in text
        assert "Authorization" not in text and "Basic " not in text


async def test_401_names_the_settings_to_check(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/x", lambda r: error(401, "UNAUTHORIZED", "unauthorized"))
    http = HarborHttp(settings(), transport=fake.transport())
    with pytest.raises(ServiceError) as caught:
        await http.get_json("/api/v2.0/x")
    await http.aclose()
    assert "harbor.example.com" in str(caught.value) and "401" in str(caught.value)
    assert "CAREEN_HARBOR_PASSWORD" in (caught.value.hint or "")
    assert_one_line_without_secrets(caught.value)


async def test_403_says_which_permission(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/x", lambda r: error(403, "FORBIDDEN", "forbidden"))
    http = HarborHttp(settings(), transport=fake.transport())
    with pytest.raises(ServiceError) as caught:
        await http.request("POST", "/api/v2.0/x", permission="scan create")
    await http.aclose()
    assert "403" in str(caught.value)
    assert "scan create" in (caught.value.hint or "") and "admin" in (caught.value.hint or "")
    assert_one_line_without_secrets(caught.value)


async def test_multi_line_server_messages_become_one_line(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/x", lambda r: error(
        422, "UNPROCESSABLE_ENTITY",
        "validation failure list:\npage_size in query should be less than or equal to 100"))
    http = HarborHttp(settings(), transport=fake.transport())
    with pytest.raises(HarborApiError) as caught:
        await http.get_json("/api/v2.0/x")
    await http.aclose()
    assert caught.value.code == "UNPROCESSABLE_ENTITY"
    assert "page_size" in str(caught.value)
    assert_one_line_without_secrets(caught.value)


async def test_plain_text_errors_of_harbor_1(fake: FakeHarbor) -> None:
    fake.route("/api/projects", lambda r: httpx.Response(404, text="project library not found\n"))
    http = HarborHttp(settings(), transport=fake.transport())
    with pytest.raises(HarborApiError) as caught:
        await http.get_json("/api/projects")
    await http.aclose()
    assert "project library not found" in str(caught.value)


async def test_dns_failure(fake: FakeHarbor, sleep: RecordingSleep) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        try:
            raise socket.gaierror(-2, "Name or service not known")
        except socket.gaierror as cause:
            raise httpx.ConnectError("[Errno -2] Name or service not known") from cause

    fake.route("/api/v2.0/x", handle)
    http = HarborHttp(settings(max_attempts=2), transport=fake.transport(), sleep=sleep)
    with pytest.raises(ServiceError) as caught:
        await http.get_json("/api/v2.0/x")
    await http.aclose()
    assert "does not resolve" in str(caught.value)
    assert_one_line_without_secrets(caught.value)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_connection_refused_over_real_loopback(sleep: RecordingSleep) -> None:
    port = free_port()
    http = HarborHttp(settings(url=f"http://127.0.0.1:{port}", max_attempts=2), sleep=sleep)
    with pytest.raises(ServiceError) as caught:
        await http.get_json("/api/v2.0/systeminfo")
    await http.aclose()
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "connection refused" in str(caught.value)
    assert "2 attempts" in str(caught.value)
    assert_one_line_without_secrets(caught.value)


@pytest.fixture
async def tls_server(tmp_path: Path) -> AsyncIterator[tuple[int, Path]]:
    """A loopback HTTPS server with a self-signed certificate: (port, certificate file)."""
    context, cert_file = self_signed_server(tmp_path)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"auth_mode":"db_auth"}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, cert_file


async def test_tls_verify_failure_is_not_retried_and_says_what_to_set(
        tls_server: tuple[int, Path], sleep: RecordingSleep) -> None:
    port, _ = tls_server
    http = HarborHttp(settings(url=f"https://127.0.0.1:{port}"), sleep=sleep)
    with pytest.raises(ServiceError) as caught:
        await http.get_json("/api/v2.0/systeminfo")
    await http.aclose()
    assert "certificate verify failed" in (caught.value.hint or "")
    assert "ca_bundle" in (caught.value.hint or "")
    assert http.stats.requests == 1 and sleep.waits == []
    assert_one_line_without_secrets(caught.value)


async def test_ca_bundle_and_verify_false_both_connect(tls_server: tuple[int, Path]) -> None:
    port, cert_file = tls_server
    for options in ({"ca_bundle": cert_file}, {"verify_tls": False}):
        http = HarborHttp(settings(url=f"https://127.0.0.1:{port}", **options))
        assert await http.get_json("/api/v2.0/systeminfo") == {"auth_mode": "db_auth"}
        await http.aclose()


# -- concurrency limit ------------------------------------------------------------------------


async def test_one_limit_bounds_requests_in_flight(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/x", lambda r: json_response([]))
    http = HarborHttp(settings(concurrency=3), transport=fake.transport())
    await asyncio.gather(*(http.get_json("/api/v2.0/x") for _ in range(20)))
    await http.aclose()
    assert fake.max_in_flight == 3


# -- parsers ----------------------------------------------------------------------------------


def response_with(headers: dict[str, str]) -> httpx.Response:
    return httpx.Response(200, headers=headers)


@given(st.text(max_size=40))
def test_total_count_is_a_whole_number_or_none(value: str) -> None:
    header = value.encode("ascii", "ignore").decode().replace("\r", "").replace("\n", "")
    result = total_count(response_with({"X-Total-Count": header}))
    assert result is None or (isinstance(result, int) and result >= 0)


def test_parse_retry_after() -> None:
    now = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


@given(st.text(max_size=60))
def test_parse_retry_after_never_crashes(value: str) -> None:
    result = parse_retry_after(value)
    assert result is None or result >= 0


def test_settings_accept_secret_only_as_secretstr() -> None:
    with pytest.raises(ConfigError):
        HarborSettings(url="https://h.example", user="u", password="plain")  # type: ignore[arg-type]
    assert HarborSettings(url="https://h.example", password=SecretStr("x")).password is not None
