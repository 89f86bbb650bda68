"""What the simulator's API versions share: a request parsed (:class:`Call`), a reply under
construction (:class:`Reply`), Harbor's error shape, go-swagger's query checks and paging
(NOTES §4, §5). ``app.py`` (v2.0) and ``v1.py`` both build on it; neither imports the other
back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping, MutableMapping, Sequence
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers

from careen.sim.harbor.fleet import MIME_V10, MIME_V11
from careen.sim.harbor.state import ANONYMOUS, Identity, SimError, SimState

try:  # orjson is optional: faster serialisation of large pages.
    import orjson

    def dump_json(value: object) -> bytes:
        return orjson.dumps(value)
except ImportError:  # pragma: no cover - depends on the environment
    def dump_json(value: object) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_ACCEPT = (MIME_V11, MIME_V10)
TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

class Reply:
    """A response under construction."""

    __slots__ = ("body", "headers", "status", "template")

    def __init__(self, status: int = 200, body: bytes = b"",
                 headers: list[tuple[bytes, bytes]] | None = None,
                 template: str = "") -> None:
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.template = template

    @classmethod
    def json(cls, value: object, status: int = 200,
             headers: list[tuple[bytes, bytes]] | None = None) -> Reply:
        reply = cls(status, dump_json(value), headers)
        reply.headers.append((b"content-type", b"application/json"))
        return reply


def error_reply(status: int, code: str, message: str) -> Reply:
    """Harbor's error shape (NOTES §4); 5xx are masked."""
    if status >= 500:
        code, message = "UNKNOWN", "internal server error"
    body = {"errors": [{"code": code, "message": message}]}
    return Reply(status, dump_json(body),
                 [(b"content-type", b"application/json; charset=utf-8")])


class Call:
    """One request, parsed: method, raw and decoded path, query, identity."""

    __slots__ = ("cookies", "headers", "identity", "method", "query", "query_items", "raw_path",
                 "raw_query", "state", "template")

    def __init__(self, scope: Scope, state: SimState) -> None:
        self.method: str = scope["method"]
        raw = scope.get("raw_path") or scope["path"].encode()
        self.raw_path = raw.decode("latin-1")
        self.raw_query = scope.get("query_string", b"").decode("latin-1")
        self.headers = Headers(scope=scope)
        self.state = state
        self.identity: Identity = ANONYMOUS
        self.query_items: list[tuple[str, str]] = []
        self.query: dict[str, str] = {}
        self.cookies = self.headers.get("cookie", "")
        self.template = ""

    def flag(self, name: str, default: bool) -> bool:
        value = self.query.get(name)
        return default if value is None else value in TRUE

    def accept_mimes(self) -> Sequence[str]:
        raw = self.headers.get("x-accept-vulnerabilities")
        if not raw:
            return DEFAULT_ACCEPT
        return [m.strip() for m in _split_mimes(raw)]


def _split_mimes(raw: str) -> list[str]:
    """Split ``a; version=1.1, b; version=1.0`` on the commas between MIME types."""
    return [part for part in re.split(r",\s*(?=[a-z]+/)", raw) if part.strip()]


def parse_query(call: Call, known: Mapping[str, str]) -> None:
    """Parse and type-check the query the way go-swagger does (NOTES §4, §5)."""
    try:
        items = parse_qsl(call.raw_query, keep_blank_values=True, strict_parsing=False,
                          max_num_fields=200)
    except ValueError as exc:
        raise SimError(400, "BAD_REQUEST", f"invalid query string: {exc}") from exc
    if "%" in call.raw_query and re.search(r"%(?![0-9A-Fa-f]{2})", call.raw_query):
        raise SimError(400, "BAD_REQUEST", "invalid URL escape in the query string")
    call.query_items = items
    call.query = {}
    failures = []
    for name, value in items:
        call.query.setdefault(name, value)
        kind = known.get(name)
        if kind == "int":
            try:
                number = int(value)
            except ValueError:
                failures.append(f'{name} in query must be of type int64: "{value}"')
                continue
            if name == "page_size" and number > 100:
                failures.append("page_size in query should be less than or equal to 100")
        elif kind == "bool" and value not in TRUE and value not in FALSE:
            failures.append(f'{name} in query must be of type bool: "{value}"')
    if failures:
        raise SimError(422, "UNPROCESSABLE_ENTITY",
                       "validation failure list:\n" + "\n".join(failures))


def paging(call: Call) -> tuple[int, int]:
    page = int(call.query.get("page", "1") or 1)
    size = int(call.query.get("page_size", "10") or 10)
    return max(page, 1), size


def paged(call: Call, items: Sequence[Any]) -> tuple[Sequence[Any], list[tuple[bytes, bytes]]]:
    """Slice one page and build ``X-Total-Count`` and ``Link`` (NOTES §5)."""
    page, size = paging(call)
    total = len(items)
    headers = [(b"x-total-count", str(total).encode())]
    if size <= 0:  # Harbor's undocumented page_size=0: no LIMIT, no Link
        return items, headers
    chunk = items[(page - 1) * size: page * size]
    links = []
    if page > 1 and (page - 1) * size < total:
        links.append(f'<{_page_url(call, page - 1, size)}>; rel="prev"')
    if page * size < total:
        links.append(f'<{_page_url(call, page + 1, size)}>; rel="next"')
    if links:
        headers.append((b"link", " , ".join(links).encode("latin-1", "replace")))
    return chunk, headers


def _page_url(call: Call, page: int, size: int) -> str:
    query = {k: v for k, v in call.query_items if k not in ("page", "page_size")}
    query["page"] = str(page)
    query["page_size"] = str(size)
    text = "&".join(f"{k}={query[k]}" for k in sorted(query))
    return f"{call.raw_path}?{text}"
