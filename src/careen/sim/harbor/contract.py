"""Holding client and simulator to Harbor's own swagger spec.

:class:`HarborSpec` loads a swagger 2.0 file (the copies under ``spec/``), maps a method and
raw path to its operation (Harbor's double-encoded repository segment included, NOTES §7),
and checks requests (query names, types, enums, maxima, headers, body) and responses (status
declared, headers, JSON body against the schema) with :mod:`jsonschema` (draft 4, which
swagger 2.0 schemas are close to). It is *stricter* than go-swagger in one way on purpose:
an object schema with ``properties`` and no ``additionalProperties`` rejects unknown fields,
so neither the simulator nor a client can invent a field Harbor does not send.

Swagger extensions as go-swagger serialises them (NOTES §1): arrays may be ``null`` (nil
slices), ``x-nullable: true`` fields may be ``null``, maps with ``x-omitempty: false`` may be
``null``, a bare ``{type: object}`` is ``interface{}`` (anything).

Where the real server departs from its spec, NOTES wins and the departure is listed in
:data:`UNDECLARED_STATUSES` and the special cases of :meth:`HarborSpec.validate_response`.
"""

from __future__ import annotations

import functools
import json
import re
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx
import yaml
from jsonschema import Draft4Validator, FormatChecker  # type: ignore[import-untyped]
from jsonschema.exceptions import ValidationError  # type: ignore[import-untyped]

SPEC_DIR = Path(__file__).parent / "spec"
SPEC_FILES = {"v2.0": "harbor-v2.0-swagger.yaml", "v1": "harbor-v1-swagger.yaml",
              "v1.10": "harbor-v1.10-swagger.yaml"}

#: What Harbor 1.x sends that its 1.6.3 spec (``v1``) does not declare, added to the spec's
#: definitions on load (NOTES §9.2: the overview's wire key is ``image_digest`` and it has
#: times; NOTES §10: a tag carries its image ``config``; NOTES §9.4: every configuration is
#: read back as ``{"value", "editable"}``, ``scan_all_policy`` included).
V1_WIRE_DEPARTURES: Mapping[str, Mapping[str, Any]] = {
    "DetailedTag.scan_overview": {"image_digest": {"type": "string"},
                                  "creation_time": {"type": "string"},
                                  "update_time": {"type": "string"},
                                  "components": {"type": "object"}},
    "DetailedTag": {"config": {"type": "object"}, "labels": {"type": "array"}},
}

#: Statuses the real server returns although the spec does not declare them, by operation
#: (NOTES §6.5: scan conflicts and missing scanner; §2: 429 only behind a proxy cache or a
#: gateway, modelled by fault injection; 5xx masked, §4).
UNDECLARED_STATUSES: Mapping[str, frozenset[int]] = {
    "scanArtifact": frozenset({409, 412}),
    "getArtifact": frozenset({422}),
    "listAllRepositories": frozenset({401, 422}),
    # Harbor 1.x: bad values are 400 (NOTES §9.4); a missing repository or tag 404 (§9.1).
    "put /configurations": frozenset({400}),
    "get /repositories/{repo_name}/tags/{tag}": frozenset({401, 403, 404}),
    "get /repositories/{repo_name}/tags": frozenset({401, 403, 404}),
    "getVulnerabilitiesAddition": frozenset({422}),
    "*": frozenset({429, 500}),
}

_DATE_TIME = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_BOOL_WORDS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


class ContractViolation(AssertionError):
    """A request or response does not follow Harbor's spec. ``operation`` is the swagger
    operationId (or the method and path when none matched), ``field`` the parameter, header
    or JSON path, ``reason`` what is wrong."""

    def __init__(self, operation: str, field: str, reason: str) -> None:
        super().__init__(f"{operation}: {field}: {reason}")
        self.operation = operation
        self.field = field
        self.reason = reason


_FORMATS = FormatChecker(())


@_FORMATS.checks("date-time", raises=())  # type: ignore[untyped-decorator]
def _is_date_time(value: object) -> bool:
    return not isinstance(value, str) or bool(_DATE_TIME.match(value))


@dataclass(frozen=True, slots=True)
class Operation:
    method: str
    template: str
    operation_id: str
    segments: tuple[str, ...]
    parameters: tuple[Mapping[str, Any], ...]
    responses: Mapping[str, Mapping[str, Any]]
    produces: tuple[str, ...] = ()
    validators: dict[str, Draft4Validator] = field(default_factory=dict, compare=False,
                                                   hash=False)

    @property
    def literal_count(self) -> int:
        return sum(1 for s in self.segments if not s.startswith("{"))


class HarborSpec:
    """One loaded swagger file. ``HarborSpec.load("v2.0")`` (or ``"v1"``) is cached."""

    def __init__(self, document: Mapping[str, Any], name: str) -> None:
        self.name = name
        self.document = document
        self.base_path = str(document.get("basePath", "")).rstrip("/")
        self.definitions = {k: _convert(v) for k, v in
                            (document.get("definitions") or {}).items()}
        self.operations: dict[int, list[Operation]] = {}
        for template, item in (document.get("paths") or {}).items():
            shared = item.get("parameters", [])
            for method, op in item.items():
                if method == "parameters" or not isinstance(op, Mapping):
                    continue
                params = tuple(self._param(p) for p in [*shared, *op.get("parameters", [])])
                responses = {str(code): self._response(r) for code, r in
                             (op.get("responses") or {}).items()}
                segments = tuple(template.strip("/").split("/"))
                operation = Operation(method.upper(), template,
                                      op.get("operationId", f"{method} {template}"),
                                      segments, params, responses,
                                      tuple(op.get("produces") or document.get("produces")
                                            or ()))
                self.operations.setdefault(len(segments), []).append(operation)
        self._wildcard_ops = [op for ops in self.operations.values() for op in ops
                              if "{repo_name}" in op.segments]

    @classmethod
    def load(cls, version: str = "v2.0") -> HarborSpec:
        return _load(version)

    @classmethod
    def from_file(cls, path: str | Path, name: str | None = None) -> HarborSpec:
        with open(path, encoding="utf-8") as handle:
            document = yaml.load(handle, Loader=yaml.CSafeLoader)
        return cls(document, name or Path(path).name)

    def _resolve(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        ref = node.get("$ref")
        if not isinstance(ref, str):
            return node
        target: Any = self.document
        for part in ref.lstrip("#/").split("/"):
            target = target[part]
        return dict(target)

    def _param(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._resolve(node)

    def _response(self, node: Mapping[str, Any]) -> Mapping[str, Any]:
        return self._resolve(node)

    # ---- matching -------------------------------------------------------------------------------

    def match(self, method: str, raw_path: str) -> tuple[Operation, dict[str, str]]:
        """The operation for ``method`` and a raw path (percent-encoding as sent), with its
        path parameters decoded as Harbor does. Raise :class:`ContractViolation`."""
        path = urlsplit(raw_path).path
        if not path.startswith(self.base_path + "/"):
            raise ContractViolation(f"{method} {path}", "path",
                                    f"not under the base path {self.base_path}")
        # nginx decodes once (NOTES §7): a single-encoded slash splits the segment.
        segments = unquote(path[len(self.base_path) + 1:]).split("/")
        best: tuple[Operation, dict[str, str]] | None = None
        methods: set[str] = set()
        candidates = [(op, segments) for op in self.operations.get(len(segments), [])]
        for op in self._wildcard_ops:  # v1: beego wildcard repository (NOTES §9.1)
            i = op.segments.index("{repo_name}")
            tail = len(op.segments) - i - 1
            if len(segments) > len(op.segments):
                joined = "/".join(segments[i:len(segments) - tail])
                candidates.append((op, [*segments[:i], joined, *segments[len(segments) - tail:]]))
        for op, parts in candidates:
            params: dict[str, str] = {}
            for want, got in zip(op.segments, parts, strict=True):
                if want.startswith("{"):
                    if not got:
                        break
                    name = want.strip("{}")
                    params[name] = unquote(got) if name == "repository_name" else got
                elif want != got:
                    break
            else:
                if op.method != method.upper():
                    methods.add(op.method)
                    continue
                if best is None or op.literal_count > best[0].literal_count:
                    best = (op, params)
        if best is None:
            hint = ""
            if "%2f" in path.lower() and "%252f" not in path.lower():
                hint = " (a repository name containing '/' must be double-encoded, NOTES §7)"
            reason = (f"method not allowed here (allowed: {sorted(methods)})" if methods else
                      "no such operation in the spec" + hint)
            raise ContractViolation(f"{method.upper()} {path}", "path", reason)
        return best

    def find(self, method: str, raw_path: str) -> Operation | None:
        try:
            return self.match(method, raw_path)[0]
        except ContractViolation:
            return None

    # ---- requests -------------------------------------------------------------------------------

    def validate_request(self, method: str, raw_path_and_query: str,
                         headers: Mapping[str, str] | None = None,
                         body: bytes | str | None = None) -> Operation:
        """Check a request the way go-swagger binds it; return its operation."""
        op, _ = self.match(method, raw_path_and_query)
        opname = op.operation_id
        query_text = urlsplit(raw_path_and_query).query
        try:
            query = parse_qsl(query_text, keep_blank_values=True, strict_parsing=bool(query_text))
        except ValueError as exc:
            raise ContractViolation(opname, "query", f"does not parse: {exc}") from exc
        lower_headers = {k.lower(): v for k, v in (headers or {}).items()}
        declared = {(p.get("in"), str(p.get("name"))): p for p in op.parameters}
        for name, value in query:
            param = declared.get(("query", name))
            if param is None:
                known = sorted(n for i, n in declared if i == "query")
                raise ContractViolation(opname, f"query {name}",
                                        f"unknown query parameter (known: {known})")
            _check_simple(opname, f"query {name}", param, value)
        for (where, name), param in declared.items():
            if where == "header":
                header_value = lower_headers.get(name.lower())
                if header_value is not None:
                    _check_simple(opname, f"header {name}", param, header_value)
                elif param.get("required"):
                    raise ContractViolation(opname, f"header {name}", "required but missing")
            elif where == "query" and param.get("required") and all(n != name for n, _ in query):
                raise ContractViolation(opname, f"query {name}", "required but missing")
        body_param = next((p for p in op.parameters if p.get("in") == "body"), None)
        raw = body.encode() if isinstance(body, str) else (body or b"")
        if body_param is None:
            if raw.strip():
                raise ContractViolation(opname, "body", "this operation takes no body")
            return op
        if not raw.strip():
            if body_param.get("required"):
                raise ContractViolation(opname, "body", "required but missing")
            return op
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ContractViolation(opname, "body", f"not JSON: {exc}") from exc
        self._validate_schema(op, "request", body_param.get("schema") or {}, document, "body")
        return op

    # ---- responses ------------------------------------------------------------------------------

    def validate_response(self, method: str, raw_path: str, status: int,
                          headers: Mapping[str, str] | None = None,
                          body: bytes | str | None = None) -> Operation | None:
        """Check a response against the operation's declared response for ``status``."""
        lower = {k.lower(): v for k, v in (headers or {}).items()}
        raw = body.encode() if isinstance(body, str) else (body or b"")
        where = f"{method.upper()} {urlsplit(raw_path).path}"
        if "x-request-id" not in lower and self.name.startswith("v2"):
            raise ContractViolation(where, "header X-Request-Id",
                                    "missing (Harbor sets it on every response, NOTES §3)")
        op = self.find(method, raw_path)
        if op is None:
            if status in (404, 405) and self.name.startswith("v2"):
                self._check_errors(where, raw, lower)  # unknown route: NOT_FOUND (NOTES §4)
                return None
            self.match(method, raw_path)  # raises the reason
            return None
        opname = op.operation_id
        spec = op.responses.get(str(status)) or op.responses.get("default")
        if spec is None:
            extra = UNDECLARED_STATUSES.get(opname, frozenset()) | UNDECLARED_STATUSES["*"]
            if status not in extra:
                raise ContractViolation(opname, "status", f"{status} is not a declared response "
                                        f"(declared: {sorted(op.responses)})")
            if status >= 400 and self.name.startswith("v2"):
                self._check_errors(opname, raw, lower)
            return op
        for name, header in (spec.get("headers") or {}).items():
            value = lower.get(name.lower())
            if (value is not None and header.get("type") == "integer"
                    and not re.fullmatch(r"-?\d+", value)):
                raise ContractViolation(opname, f"header {name}", f"{value!r} is not an integer")
        if "link" in lower:
            _check_link(opname, lower["link"])
        schema = spec.get("schema")
        if status >= 400 and self.name.startswith("v2"):
            self._check_errors(opname, raw, lower)
            return op
        if schema is None:
            if status >= 400 and self.name.startswith("v1"):
                return op  # 1.x errors are plain text (NOTES §9.1)
            if raw.strip():
                raise ContractViolation(opname, "body", f"status {status} declares no body but "
                                                        f"got {raw[:80]!r}")
            return op
        if opname == "getPing":
            if raw != b"Pong":
                raise ContractViolation(opname, "body", f"expected 'Pong', got {raw[:80]!r}")
            return op
        if opname == "getScanAllSchedule" and not raw.strip():
            return op  # no schedule: 200 with an empty body (NOTES §6.7)
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ContractViolation(opname, "body", f"not JSON: {exc}") from exc
        if opname == "getVulnerabilitiesAddition":
            # Declared as a string; the handler writes a JSON object keyed by MIME (§6.6).
            if not isinstance(document, dict):
                raise ContractViolation(opname, "body", "expected an object keyed by MIME type")
            return op
        self._validate_schema(op, str(status), schema, document, "body")
        return op

    def _check_errors(self, where: str, raw: bytes, headers: Mapping[str, str]) -> None:
        try:
            document = json.loads(raw)
        except ValueError as exc:
            raise ContractViolation(where, "body", "an error body must be JSON "
                                    f"{{\"errors\":[...]}}, got {raw[:80]!r}") from exc
        errors = document.get("errors") if isinstance(document, dict) else None
        if (not isinstance(errors, list) or not errors or set(document) != {"errors"}
                or not all(isinstance(e, dict) and set(e) == {"code", "message"}
                           and all(isinstance(v, str) for v in e.values()) for e in errors)):
            raise ContractViolation(where, "body", "error bodies are "
                                    f"{{\"errors\":[{{\"code\",\"message\"}}]}}, got {raw[:120]!r}")

    def _validate_schema(self, op: Operation, key: str, schema: Mapping[str, Any],
                         document: Any, where: str) -> None:
        validator = op.validators.get(key)
        if validator is None:
            root = dict(_convert(schema))
            root["definitions"] = self.definitions
            validator = Draft4Validator(root, format_checker=_FORMATS)
            op.validators[key] = validator
        error = _first_error(validator.iter_errors(document))
        if error is not None:
            path = where + "".join(f"[{p!r}]" if isinstance(p, str) else f"[{p}]"
                                   for p in error.absolute_path)
            raise ContractViolation(op.operation_id, path, error.message[:300])


@functools.lru_cache(maxsize=4)
def _load(version: str) -> HarborSpec:
    filename = SPEC_FILES.get(version)
    if filename is None:
        raise ValueError(f"unknown Harbor spec {version!r}; known: {sorted(SPEC_FILES)}")
    if not version.startswith("v1"):
        return HarborSpec.from_file(SPEC_DIR / filename, version)
    with open(SPEC_DIR / filename, encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=yaml.CSafeLoader)
    return HarborSpec(_v1_as_sent(document, version), version)


def _v1_as_sent(document: dict[str, Any], version: str) -> dict[str, Any]:
    """A 1.x spec with :data:`V1_WIRE_DEPARTURES` added (1.10: only the tag's ``config``;
    its overview is declared as sent)."""
    definitions = document["definitions"]
    if version == "v1.10":
        definitions["DetailedTag"]["properties"]["config"] = {"type": "object"}
        return document
    for where, extra in V1_WIRE_DEPARTURES.items():
        node = definitions
        for i, name in enumerate(where.split(".")):
            node = node[name] if i == 0 else node["properties"][name]
        node["properties"].update(extra)
    response = definitions["ConfigurationsResponse"]["properties"]
    response["scan_all_policy"] = {"type": "object", "properties": {
        "value": definitions["Configurations"]["properties"]["scan_all_policy"],
        "editable": {"type": "boolean"}}}
    return document


def _first_error(errors: Iterator[ValidationError]) -> ValidationError | None:
    return next(errors, None)


def _check_simple(opname: str, where: str, param: Mapping[str, Any], value: str) -> None:
    kind = param.get("type")
    if kind == "integer":
        try:
            number = int(value)
        except ValueError:
            raise ContractViolation(opname, where, f"{value!r} is not an integer") from None
        if "maximum" in param and number > param["maximum"]:
            raise ContractViolation(opname, where, f"{number} exceeds the maximum "
                                                   f"{param['maximum']}")
        if "minimum" in param and number < param["minimum"]:
            raise ContractViolation(opname, where, f"{number} is below the minimum "
                                                   f"{param['minimum']}")
    elif kind == "boolean" and value not in _BOOL_WORDS:
        raise ContractViolation(opname, where, f"{value!r} is not a boolean")
    if "enum" in param and value not in [str(v) for v in param["enum"]]:
        raise ContractViolation(opname, where, f"{value!r} is not one of {param['enum']}")
    if "minLength" in param and len(value) < int(param["minLength"]):
        raise ContractViolation(opname, where, f"shorter than {param['minLength']}")


def _check_link(opname: str, link: str) -> None:
    """``<relative URL>; rel="prev|next"`` joined by ``" , "`` (NOTES §5)."""
    for entry in link.split(" , "):
        if not re.fullmatch(r'<(/[^>]*)>; rel="(prev|next)"', entry.strip()):
            raise ContractViolation(opname, "header Link", f"malformed entry {entry!r}")


def _convert(schema: Any) -> Any:
    """A swagger 2.0 schema as a draft-4 JSON schema, with go-swagger's serialisation rules."""
    if isinstance(schema, list):
        return [_convert(s) for s in schema]
    if not isinstance(schema, Mapping):
        return schema
    if "$ref" in schema:
        out: dict[str, Any] = {"$ref": schema["$ref"]}
        return {"anyOf": [out, {"type": "null"}]} if schema.get("x-nullable") else out
    out = {}
    for key, value in schema.items():
        if key.startswith("x-") or key in ("example", "readOnly", "description", "title",
                                           "discriminator", "xml", "externalDocs"):
            continue
        if key == "properties":
            out[key] = {name: _convert(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "allOf", "not"):
            out[key] = value if isinstance(value, bool) else _convert(value)
        elif key == "format" and value in _INT_RANGES:
            low, high = _INT_RANGES[value]
            out.setdefault("minimum", low)
            out.setdefault("maximum", high)
        elif key == "format" and value not in ("date-time",):
            continue  # int, float, password...: not checked
        else:
            out[key] = value
    kind = out.get("type")
    if kind == "object" and "properties" not in out and "additionalProperties" not in out:
        return {}  # interface{}: anything goes
    if kind == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False  # stricter than go-swagger, on purpose
    nullable = bool(schema.get("x-nullable"))
    if kind == "array":
        nullable = True  # nil slices are sent as null (NOTES §1)
    if kind == "object" and "additionalProperties" in out and "properties" not in out and (
            schema.get("x-omitempty") is False):
        nullable = True  # a nil map that is not omitted
    if nullable and isinstance(kind, str):
        out["type"] = [kind, "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    return out


# ---- validating httpx clients ------------------------------------------------------------------


def _hook(spec: HarborSpec, check_requests: bool) -> tuple[Callable[[httpx.Request], None],
                                                          Callable[[httpx.Response], None]]:
    def on_request(request: httpx.Request) -> None:
        if check_requests:
            raw = request.url.raw_path.decode("latin-1")
            spec.validate_request(request.method, raw, dict(request.headers),
                                  request.content if request.content else None)

    def on_response(response: httpx.Response) -> None:
        response.read()
        request = response.request
        spec.validate_response(request.method, request.url.raw_path.decode("latin-1"),
                               response.status_code, dict(response.headers), response.content)

    return on_request, on_response


@functools.cache
def _default_trust() -> ssl.SSLContext:
    """httpx's default trust, made once: each client would read the CA bundle again (about
    30 ms), and the tests make a client for most simulators they start."""
    return httpx.create_ssl_context()


def validating_client(base_url: str, spec: HarborSpec | None = None, *,
                      check_requests: bool = True, keep_cookies: bool = False,
                      **kwargs: Any) -> httpx.Client:
    """An :class:`httpx.Client` whose every request and response is checked against the
    spec; a mismatch raises :class:`ContractViolation` from the call. Unless
    ``keep_cookies``, cookies are dropped after every response, as Harbor's maintainers
    advise API clients to do (NOTES §3). Other keyword arguments go to ``httpx.Client``."""
    on_request, on_response = _hook(spec or HarborSpec.load("v2.0"), check_requests)
    kwargs.setdefault("verify", _default_trust())
    client = httpx.Client(base_url=base_url, event_hooks={"request": [on_request],
                                                          "response": [on_response]}, **kwargs)
    if not keep_cookies:
        client.event_hooks["response"].append(lambda _: client.cookies.clear())
    return client


def validating_async_client(base_url: str, spec: HarborSpec | None = None, *,
                            check_requests: bool = True, keep_cookies: bool = False,
                            **kwargs: Any) -> httpx.AsyncClient:
    """The :class:`httpx.AsyncClient` counterpart of :func:`validating_client`."""
    on_request, on_response = _hook(spec or HarborSpec.load("v2.0"), check_requests)
    kwargs.setdefault("verify", _default_trust())

    async def request_hook(request: httpx.Request) -> None:
        on_request(request)

    async def response_hook(response: httpx.Response) -> None:
        await response.aread()
        on_response(response)

    client = httpx.AsyncClient(base_url=base_url, event_hooks={
        "request": [request_hook], "response": [response_hook]}, **kwargs)
    if not keep_cookies:
        async def forget(_: httpx.Response) -> None:
            client.cookies.clear()

        client.event_hooks["response"].append(forget)
    return client
