"""The one module that talks HTTP: client factory, auth, TLS, retries, the concurrency limit,
and the translation of HTTP failures into :class:`careen.errors.ServiceError`.

Everything Harbor-specific about the wire lives here too, because it is about how to talk to
Harbor at all rather than about what to ask it:

- Basic auth on **every** request and **no cookies kept**. Harbor answers API calls with
  ``Set-Cookie: sid=...``; a client that sends ``sid`` back turns every POST/PUT into
  ``403 CSRF token invalid`` (Harbor NOTES section 3). The cookie jar given to httpx never
  stores anything.
- An ``X-Request-Id`` (a UUID) on every request, quoted in error messages so a Harbor admin can
  find the request in Harbor's logs.
- Retries with exponential backoff and jitter (tenacity) on connection errors, timeouts, 429
  (honouring ``Retry-After``, capped) and 500/502/503/504, per request: one failed page is
  retried alone, never a whole listing. Attempts and total time per request are bounded, so a
  Harbor that is down for good is given up on in bounded time.
- One concurrency limit shared by every request of a client (Harbor has no rate limiting of
  its own; NOTES section 2).

Secrets: the password is a :class:`pydantic.SecretStr` until httpx builds the Authorization
header; no message, log line or repr made here contains it or that header.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import socket
import ssl
import time
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.cookiejar import Cookie, CookieJar
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit
from urllib.request import Request

import httpx
import sniffio  # noqa: F401  (a runtime dependency: see pyproject.toml; issue 16)
from pydantic import SecretStr
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from careen.errors import ConfigError, ServiceError
from careen.events import NULL_OBSERVER, Observer
from careen.registries.pool import pooled_transport
from careen.registries.text import one_line, whole_number

SERVICE = "Harbor"
#: Statuses worth another try: Harbor masks every 5xx as ``UNKNOWN internal server error``,
#: and 502/503/504 come from the proxy in front of it while core restarts.
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})

#: ``auto`` or a name of :data:`careen.registries.HARBOR_APIS`.
ApiVersion = str
Sleep = Callable[[float], Awaitable[None]]
EventHook = Callable[[Any], Any]


def _api_versions() -> list[str]:
    from careen.registries import AUTO, HARBOR_APIS  # the package imports this module

    return [AUTO, *HARBOR_APIS]


@dataclass(frozen=True, slots=True)
class HarborSettings:
    """How to reach one Harbor. The config module fills it from ``[harbor]``; every field has
    the documented default so tests and library users can give only ``url``.

    ``concurrency`` bounds the requests in flight at once for the whole client;
    ``max_attempts`` and ``max_retry_seconds`` bound one request's retries;
    ``retry_after_max`` caps how long a ``Retry-After`` may make it wait;
    ``queue_size`` bounds the artifacts buffered between the crawl and its consumer;
    ``max_response_bytes`` bounds one answer's body, counted once decoded (a gzip bomb is
    refused as it inflates); ``timeout`` bounds one whole exchange, not each read.
    """

    url: str
    user: str | None = None
    password: SecretStr | None = field(default=None, repr=False)
    verify_tls: bool = True
    ca_bundle: str | Path | None = None
    timeout: float = 30.0
    concurrency: int = 16
    page_size: int = 100
    v1_page_size: int = 500
    api_version: ApiVersion = "auto"
    max_attempts: int = 5
    max_retry_seconds: float = 120.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    retry_after_max: float = 60.0
    queue_size: int = 1000
    max_response_bytes: int = 16 * 1024 * 1024

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError("expected an http:// or https:// URL with a host, e.g. "
                              "https://harbor.example.com", key="harbor.url")
        if parts.username is not None or parts.password is not None:
            raise ConfigError("the URL holds a user name or password; remove it and set "
                              "[harbor] user and CAREEN_HARBOR_PASSWORD instead",
                              key="harbor.url")
        if self.password is not None and not isinstance(self.password, SecretStr):
            raise ConfigError("must be a pydantic SecretStr", key="harbor.password")
        checks: list[tuple[str, bool, str]] = [
            ("harbor.timeout", self.timeout > 0, "must be more than 0 seconds"),
            ("harbor.concurrency", 1 <= self.concurrency <= 256, "must be 1 to 256"),
            # Harbor v2 answers 422 above 100 instead of clamping (NOTES section 5).
            ("harbor.page_size", 1 <= self.page_size <= 100, "must be 1 to 100"),
            ("harbor.v1_page_size", 1 <= self.v1_page_size <= 500, "must be 1 to 500"),
            ("harbor.api_version", self.api_version in _api_versions(),
             "must be " + ", ".join(_api_versions()[:-1]) + " or " + _api_versions()[-1]),
            ("harbor.max_attempts", self.max_attempts >= 1, "must be at least 1"),
            ("harbor.max_retry_seconds", self.max_retry_seconds > 0, "must be more than 0"),
            ("harbor.backoff_initial", self.backoff_initial >= 0, "must be 0 or more"),
            ("harbor.backoff_max", self.backoff_max >= 0, "must be 0 or more"),
            ("harbor.retry_after_max", self.retry_after_max >= 0, "must be 0 or more"),
            ("harbor.queue_size", self.queue_size >= 1, "must be at least 1"),
            ("harbor.max_response_bytes", self.max_response_bytes >= 1024,
             "must be at least 1024"),
        ]
        for key, ok, message in checks:
            if not ok:
                raise ConfigError(message, key=key)

    @property
    def base_url(self) -> str:
        return self.url.rstrip("/")

    @property
    def host(self) -> str:
        """``host[:port]``: what error messages name, and the registry images are pulled from."""
        return urlsplit(self.url).netloc

    @property
    def has_credentials(self) -> bool:
        return self.user is not None and self.password is not None


@dataclass(slots=True)
class RequestStats:
    """What a client sent: read by benchmarks and reports. ``requests`` counts every HTTP
    request sent, retries included; ``retries`` only the repeated ones."""

    requests: int = 0
    retries: int = 0
    by_status: Counter[int] = field(default_factory=Counter)
    transport_errors: int = 0


class _NeverStoreCookieJar(CookieJar):
    """A cookie jar that drops every cookie: Harbor's ``sid`` must never be sent back."""

    def set_cookie(self, cookie: Cookie) -> None:
        return None

    def extract_cookies(self, response: Any, request: Request) -> None:
        return None


class _NoCookies(httpx.Cookies):
    """httpx's cookies over :class:`_NeverStoreCookieJar`, which does not even look at a
    response: httpx wraps every response and its request in urllib's shapes for the jar to
    read its ``Set-Cookie`` (a URL parse included), a tenth of the client's CPU per request
    (bench/README.md), for a jar that keeps nothing."""

    def __init__(self) -> None:
        super().__init__(_NeverStoreCookieJar())

    def extract_cookies(self, response: httpx.Response) -> None:
        return None


class _CookielessClient(httpx.AsyncClient):
    """httpx's client whose cookies are always an empty :class:`_NoCookies`: none is kept
    from an answer, none is set by a caller."""

    _none = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._none

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        return None


class HarborApiError(ServiceError):
    """Harbor answered with an error status. ``status``, ``code`` (Harbor's error code, e.g.
    ``NOT_FOUND``) and ``request_id`` let callers react to a specific answer."""

    def __init__(self, host: str, message: str, *, status: int, code: str | None,
                 request_id: str | None, hint: str | None = None) -> None:
        super().__init__(SERVICE, host, message, hint=hint)
        self.status = status
        self.code = code
        self.request_id = request_id


class _RetryableStatus(Exception):
    """Raised inside one attempt so tenacity retries it; never leaves this module."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date (RFC 9110)."""
    if value is None:
        return None
    text = value.strip()
    seconds = whole_number(text)
    if seconds is not None:
        return float(seconds)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def error_fields(response: httpx.Response) -> tuple[str | None, str]:
    """Harbor's ``{"errors":[{"code","message"}]}``, or v1's plain text: (code, message)."""
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("errors"), list) and body["errors"]:
        first = body["errors"][0]
        if isinstance(first, dict):
            code = first.get("code")
            return (str(code) if code is not None else None,
                    one_line(str(first.get("message", ""))))
    if isinstance(body, dict) and "code" in body and "message" in body:
        return str(body["code"]), one_line(str(body["message"]))
    return None, one_line(text.splitlines()[0] if text.strip() else response.reason_phrase)


def _cause_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _is_tls_verify_failure(exc: BaseException) -> bool:
    return any(isinstance(e, ssl.SSLCertVerificationError)
               or "CERTIFICATE_VERIFY_FAILED" in str(e) for e in _cause_chain(exc))


def _is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, _RetryableStatus):
        return True
    # A certificate that does not verify will not verify on the next try either.
    return isinstance(exc, httpx.TransportError) and not _is_tls_verify_failure(exc)


#: Content codings Careen asks for and decodes itself, bounded (see :func:`read_bounded`).
ACCEPT_ENCODING = "gzip, deflate"


class _TooLarge(Exception):
    """The decoded body passed ``max_response_bytes``; never leaves this module."""


class _BadEncoding(Exception):
    """A content coding Careen did not ask for, or bytes that do not decode."""


async def _chunks_of(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def read_bounded(chunks: AsyncIterator[bytes], encoding: str, limit: int) -> bytes:
    """The body of ``chunks`` (raw, as sent) decoded from ``encoding`` (identity, gzip or
    deflate), refused with :class:`_TooLarge` as soon as the decoded bytes pass ``limit``.
    Inflating is bounded too: at most ``limit + 1`` bytes are inflated from any input, so a
    1 MB gzip body that inflates to 1 GiB costs ``limit`` bytes of memory, not a GiB."""
    coding = encoding.strip().lower()
    inflater: Any = None
    if coding in {"gzip", "x-gzip"}:
        inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif coding == "deflate":
        inflater = zlib.decompressobj()
    elif coding not in ("", "identity"):
        raise _BadEncoding(f"content coding {one_line(coding, 40)!r} was not asked for")
    parts: list[bytes] = []
    size = 0

    def keep(data: bytes) -> None:
        nonlocal size
        size += len(data)
        if size > limit:
            raise _TooLarge
        parts.append(data)

    try:
        async for chunk in chunks:
            if inflater is None:
                keep(chunk)
                continue
            data = chunk
            while data:
                keep(inflater.decompress(data, limit - size + 1))
                data = inflater.unconsumed_tail
        if inflater is not None:
            # All input was taken with bounded output: what zlib still holds is at most
            # its window (32 KiB).
            keep(inflater.flush())
    except zlib.error as error:
        raise _BadEncoding(f"{coding}: {one_line(str(error), 80)}") from None
    return b"".join(parts)


class HarborHttp:
    """An httpx client set up for Harbor, shared by the v2 and v1 clients.

    ``transport`` replaces the network (``httpx.MockTransport`` in tests); ``event_hooks`` are
    passed to httpx (integration tests validate every request against the spec with one);
    ``sleep`` is what retries wait with (tests pass a recorder to check the backoff without
    waiting).
    """

    def __init__(self, settings: HarborSettings, *, observer: Observer = NULL_OBSERVER,
                 transport: httpx.AsyncBaseTransport | None = None,
                 event_hooks: Mapping[str, list[EventHook]] | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.settings = settings
        self.host = settings.host
        self.observer = observer
        self.stats = RequestStats()
        self._sleep = sleep
        self._limit = asyncio.Semaphore(settings.concurrency)
        auth = None
        if settings.user is not None and settings.password is not None:
            auth = httpx.BasicAuth(settings.user, settings.password.get_secret_value())
        verify = _tls_verify(settings)
        limits = httpx.Limits(max_connections=settings.concurrency,
                              max_keepalive_connections=settings.concurrency)
        # What httpx's base URL merge makes of it: the path prefix, without its last "/".
        self._base_url = str(httpx.URL(settings.base_url + "/")).rstrip("/")
        self._client = _CookielessClient(
            base_url=settings.base_url,
            auth=auth,
            verify=verify,
            timeout=httpx.Timeout(settings.timeout),
            transport=transport if transport is not None else pooled_transport(verify, limits),
            event_hooks={k: list(v) for k, v in (event_hooks or {}).items()},
            limits=limits,
            follow_redirects=False,
            headers={"Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(
        self, method: str, path: str, *,
        params: Mapping[str, str | int | bool] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        accept: Collection[int] = (200,),
        permission: str | None = None,
    ) -> httpx.Response:
        """Send one request (retried as documented) and return the response when its status
        is in ``accept``; raise :class:`HarborApiError` for any other status and
        :class:`ServiceError` when Harbor cannot be reached. ``permission`` names what a 403
        means the account lacks."""
        query = {k: _query_value(v) for k, v in (params or {}).items()}
        # The first attempt is made here, outside tenacity: nearly every request needs no
        # other, and setting up the retry loop was a tenth of the client's CPU per request
        # (bench/README.md). Only a failure tenacity would retry starts the loop, which
        # replays that failure as its first attempt: the waits, the attempt numbers, the
        # warnings and the total delay are the same as when the loop made every attempt.
        started = time.monotonic()
        first: BaseException
        try:
            response = await self._send_once(method, path, query, json_body, headers)
        except httpx.TransportError as exc:
            if not _is_retryable(exc):
                raise self._transport_error(method, path, exc, attempts=1) from None
            first = exc
        else:
            if response.status_code not in RETRY_STATUSES or response.status_code in accept:
                if response.status_code not in accept:
                    raise self._status_error(method, path, response, permission, attempts=1)
                return response
            first = _RetryableStatus(response)
        retrying = AsyncRetrying(
            stop=(stop_after_attempt(self.settings.max_attempts)
                  | stop_after_delay(max(0.0, self.settings.max_retry_seconds
                                         - (time.monotonic() - started)))),
            wait=self._wait,
            retry=retry_if_exception(_is_retryable),
            sleep=self._sleep,
            before_sleep=lambda state: self._note_retry(method, path, state),
            reraise=True,
        )
        attempts = 0
        replay: BaseException | None = first
        try:
            async for attempt in retrying:
                with attempt:
                    attempts += 1
                    if replay is not None:
                        failure, replay = replay, None
                        raise failure
                    response = await self._send_once(method, path, query, json_body, headers)
                    if response.status_code in RETRY_STATUSES and (
                            response.status_code not in accept):
                        raise _RetryableStatus(response)
        except _RetryableStatus as failed:
            raise self._status_error(method, path, failed.response, permission,
                                     attempts=attempts) from None
        except httpx.TransportError as exc:
            raise self._transport_error(method, path, exc, attempts=attempts) from None
        if response.status_code not in accept:
            raise self._status_error(method, path, response, permission, attempts=attempts)
        return response

    async def get_json(self, path: str, *, params: Mapping[str, str | int | bool] | None = None,
                       headers: Mapping[str, str] | None = None,
                       permission: str | None = None) -> Any:
        response = await self.request("GET", path, params=params, headers=headers,
                                      permission=permission)
        return self.json_of(response, "GET", path)

    def json_of(self, response: httpx.Response, method: str, path: str) -> Any:
        """The response body as JSON; an empty body is ``None`` (Harbor's nil payload).

        Bytes that are not UTF-8 become U+FFFD, as Harbor's own JSON encoder (Go's) writes
        them: a name holding them is then refused like any other invalid name, instead of one
        such name failing the whole page and with it the listing."""
        if not response.content.strip():
            return None
        try:
            return json.loads(response.content.decode("utf-8-sig", errors="replace"))
        except (ValueError, RecursionError):  # RecursionError: 200,000 nested ``[``
            raise ServiceError(
                SERVICE, self.host,
                f"{method} {path}: the answer is not JSON "
                f"(request id {response.request.headers.get('X-Request-Id', '?')})",
                hint="check that [harbor] url points at Harbor itself, not a login page "
                     "or another proxy") from None

    # -- internals --------------------------------------------------------------------------

    async def _send_once(self, method: str, path: str, query: Mapping[str, str],
                         json_body: Any, headers: Mapping[str, str] | None) -> httpx.Response:
        request_headers = {"X-Request-Id": str(uuid.uuid4()), "Accept-Encoding": ACCEPT_ENCODING,
                           **(headers or {})}
        async with self._limit:
            self.stats.requests += 1
            try:
                # One deadline for the whole exchange (connect, headers, every byte of the
                # body): httpx's timeouts are per read, and a server trickling a byte a
                # second never trips them (issue 18 row 8).
                async with asyncio.timeout(self.settings.timeout):
                    response = await self._exchange(method, path, query, json_body,
                                                    request_headers)
            except TimeoutError:
                self.stats.transport_errors += 1
                raise httpx.ReadTimeout(
                    f"no complete answer within {self.settings.timeout:g} s") from None
            except httpx.TransportError:
                self.stats.transport_errors += 1
                raise
        self.stats.by_status[response.status_code] += 1
        return response

    async def _exchange(self, method: str, path: str, query: Mapping[str, str],
                        json_body: Any, headers: Mapping[str, str]) -> httpx.Response:
        """Send one request and read its body, decoded, up to ``max_response_bytes``."""
        url, params = self._url(path, query)
        request = self._client.build_request(method, url, params=params, json=json_body,
                                             headers=headers)
        response = await self._client.send(request, stream=True)
        try:
            if response.is_stream_consumed:  # a transport that read it (httpx.MockTransport)
                chunks, encoding = _chunks_of(response.content), "identity"
            else:
                chunks = response.aiter_raw()
                encoding = response.headers.get("Content-Encoding", "identity")
            body = await read_bounded(chunks, encoding, self.settings.max_response_bytes)
        except _TooLarge:
            raise ServiceError(
                SERVICE, self.host,
                f"{method} {path}: the answer is larger than [harbor] max_response_bytes "
                f"({self.settings.max_response_bytes} bytes once decoded; request id "
                f"{headers.get('X-Request-Id', '?')})",
                hint="this is not Harbor's answer, or raise [harbor] max_response_bytes") \
                from None
        except _BadEncoding as bad:
            raise ServiceError(
                SERVICE, self.host, f"{method} {path}: the answer cannot be decoded ({bad})",
                hint="check [harbor] url and any proxy in front of Harbor") from None
        finally:
            await response.aclose()
        kept = [(k, v) for k, v in response.headers.multi_items()
                if k.lower() not in ("content-encoding", "content-length", "transfer-encoding")]
        return httpx.Response(response.status_code, headers=kept, content=body,
                              request=response.request, extensions=response.extensions)

    def _url(self, path: str, query: Mapping[str, str]) -> tuple[httpx.URL | str,
                                                                 Mapping[str, str] | None]:
        """The URL and params to ask httpx for. A path below the base URL with its query is
        made into one URL here, parsed once: given the path and the params apart, httpx
        parses and checks, character by character, the path, the path merged with the base
        and that URL merged with the params: a fifth of the client's CPU per request
        (bench/README.md). The URL is the same (tests check it)."""
        if path[:1] != "/" or path[:2] == "//" or "?" in path or "#" in path:
            return path, query or None
        text = self._base_url + path
        if query:
            text += "?" + str(httpx.QueryParams(query))
        return httpx.URL(text), None

    def _wait(self, state: RetryCallState) -> float:
        backoff = wait_random_exponential(multiplier=self.settings.backoff_initial,
                                          max=self.settings.backoff_max)(state)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if isinstance(exc, _RetryableStatus) and exc.response.status_code in (429, 503):
            after = parse_retry_after(exc.response.headers.get("Retry-After"))
            if after is not None:
                return min(after, self.settings.retry_after_max)
        return float(backoff)

    def _note_retry(self, method: str, path: str, state: RetryCallState) -> None:
        self.stats.retries += 1
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        why = (f"HTTP {exc.response.status_code}" if isinstance(exc, _RetryableStatus)
               else type(exc).__name__)
        self.observer.warning(
            f"Harbor at {self.host}: {method} {path} failed ({why}); retrying "
            f"(attempt {state.attempt_number + 1} of {self.settings.max_attempts})")

    def _status_error(self, method: str, path: str, response: httpx.Response,
                      permission: str | None, *, attempts: int) -> HarborApiError:
        status = response.status_code
        code, message = error_fields(response)
        request_id = (response.headers.get("X-Request-Id")
                      or response.request.headers.get("X-Request-Id"))
        text = f"{method} {path}: HTTP {status}"
        if code:
            text += f" {code}"
        if message:
            text += f": {message}"
        if attempts > 1:
            text += f" (after {attempts} attempts)"
        if request_id:
            text += f" (request id {request_id})"
        return HarborApiError(self.host, text, status=status, code=code,
                              request_id=request_id,
                              hint=self._status_hint(status, message, permission))

    def _status_hint(self, status: int, message: str, permission: str | None) -> str | None:
        who = (f"the Harbor account {self.settings.user!r}" if self.settings.user
               else "anonymous access")
        if status == 401:
            if self.settings.user is None:
                return ("Harbor wants credentials for this: set [harbor] user and "
                        "CAREEN_HARBOR_PASSWORD")
            return ("check [harbor] user and CAREEN_HARBOR_PASSWORD (a robot account is "
                    "named robot$name or robot$project+name)")
        if status == 403:
            if "csrf" in message.lower():
                return "Harbor took the request for a browser session; report this as a bug"
            need = permission or "this operation"
            return f"{who} lacks the permission for {need}; ask a Harbor admin to grant it"
        if status == 429 or status >= 500:
            return "Harbor is overloaded or failing; try again later or lower [harbor] concurrency"
        return None

    def _transport_error(self, method: str, path: str, exc: httpx.TransportError, *,
                         attempts: int) -> ServiceError:
        tries = f" (after {attempts} attempts)" if attempts > 1 else ""
        chain = _cause_chain(exc)
        if _is_tls_verify_failure(exc):
            return ServiceError(
                SERVICE, self.host, f"{method} {path}: TLS certificate verify failed",
                hint="certificate verify failed — set [harbor] ca_bundle or, for a lab only, "
                     "verify_tls = false")
        if isinstance(exc, httpx.TimeoutException):
            return ServiceError(
                SERVICE, self.host,
                f"{method} {path}: no answer within {self.settings.timeout:g} s{tries}",
                hint="Harbor is slow or unreachable; raise [harbor] timeout or lower "
                     "[harbor] concurrency")
        if any(isinstance(e, socket.gaierror) for e in chain) or any(
                "name or service not known" in str(e).lower()
                or "nodename nor servname" in str(e).lower()
                or "temporary failure in name resolution" in str(e).lower() for e in chain):
            return ServiceError(
                SERVICE, self.host, f"{method} {path}: the host name does not resolve{tries}",
                hint="check [harbor] url")
        if any(isinstance(e, ConnectionRefusedError) for e in chain) or any(
                "connection refused" in str(e).lower() for e in chain):
            return ServiceError(
                SERVICE, self.host, f"{method} {path}: connection refused{tries}",
                hint="check [harbor] url and that Harbor is running")
        if any(isinstance(e, ssl.SSLError) for e in chain):
            return ServiceError(SERVICE, self.host, f"{method} {path}: TLS handshake failed",
                                hint="check that [harbor] url uses the right scheme and port")
        return ServiceError(
            SERVICE, self.host,
            f"{method} {path}: connection failed ({type(exc).__name__}){tries}",
            hint="check [harbor] url and the network between here and Harbor")


def _query_value(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@functools.cache
def _system_trust() -> ssl.SSLContext:
    """The system's CA certificates, read once per process: reading them takes about 30 ms
    and a run (or a test) opens many clients. An SSLContext is safe to share."""
    return ssl.create_default_context()


def _tls_verify(settings: HarborSettings) -> ssl.SSLContext | bool:
    if not settings.verify_tls:
        return False
    if settings.ca_bundle is None:
        return _system_trust()
    try:
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot read CA bundle {str(settings.ca_bundle)!r}: "
                          f"{exc.__class__.__name__}", key="harbor.ca_bundle",
                          hint="give a PEM file of the CA that signed Harbor's certificate") \
            from None


class HarborClientBase:
    """What every Harbor client shares: its HTTP layer, the layer's counters, whether Harbor
    took its credentials, and closing."""

    http: HarborHttp
    #: The API's path prefix (``/api/v2.0``, ``/api``).
    api_root: str

    async def answers_as_user(self) -> bool | None:
        """Whether Harbor took the configured credentials: ``True``, ``False`` (it answered
        as anonymous: bad credentials fall through to anonymous, NOTES section 2), or
        ``None`` when it gives no sign either way."""
        # 401 is the anonymous caller's answer; a user gets 200, a robot 200, 403 or 412 by
        # version (it is no "user"), which all prove the credentials were taken.
        response = await self.http.request("GET", f"{self.api_root}/users/current",
                                           accept=(200, 401, 403, 404, 412))
        if response.status_code == 401:
            return False
        if response.status_code == 404:
            return None
        return True

    @property
    def stats(self) -> RequestStats:
        return self.http.stats

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()
