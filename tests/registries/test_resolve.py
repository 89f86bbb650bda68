"""The base-digest resolver against small local registries: open, Basic, the anonymous Bearer
token challenge Docker Hub and most registries use (``WWW-Authenticate: Bearer realm=...,
service=...,scope=...``, then ``GET realm?service=...&scope=...`` -> ``{"token": ...}``),
404 and an unreachable host, which are "unknown" (never "unchanged")."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import SecretStr

from careen.errors import ConfigError
from careen.reference import ImageReference
from careen.registries.resolve import (
    MANIFEST_TYPES,
    DigestResolver,
    Resolution,
    TagManifest,
    registry_endpoint,
)
from tests.tls import self_signed_server

DIGEST = "sha256:" + "ab" * 32
#: Docker Hub's token answer carries both spellings (distribution's token spec).
TOKEN_ANSWER = {"token": "tok-123", "access_token": "tok-123", "expires_in": 300}


class Registry:
    """A registry serving one manifest, ``library/alpine:3.20``; ``auth`` is ``None``,
    ``"basic"`` or ``"bearer"``; ``digest_header`` False answers HEAD without the digest (as
    some registries do), so the client must GET and hash the bytes."""

    def __init__(self, auth: str | None = None, *, digest_header: bool = True,
                 tls: ssl.SSLContext | None = None) -> None:
        self.auth = auth
        self.digest_header = digest_header
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.manifest = json.dumps({"schemaVersion": 2, "mediaType": MANIFEST_TYPES[0],
                                    "manifests": []}).encode()
        self.content_type = MANIFEST_TYPES[0]
        #: The Docker-Content-Digest answered (with ``digest_header``).
        self.digest = DIGEST
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                registry.answer(self, body=False)

            def do_GET(self) -> None:
                registry.answer(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
        self.host = f"127.0.0.1:{self.server.server_address[1]}"
        # shutdown() waits for serve_forever to look again: every 10 ms, not every 0.5 s.
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.01}, daemon=True)

    def __enter__(self) -> Registry:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, *, body: bool) -> None:
        headers = dict(handler.headers.items())
        self.requests.append((handler.command, handler.path, headers))
        path = urlsplit(handler.path)
        if path.path == "/token":
            query = parse_qs(path.query)
            ok = query.get("service") == ["lab-registry"] and query.get("scope") == [
                "repository:library/alpine:pull"]
            self.send(handler, 200 if ok else 400, json.dumps(TOKEN_ANSWER).encode(), body,
                      {"Content-Type": "application/json"})
            return
        given = headers.get("Authorization")
        if self.auth == "basic" and given != "Basic " + base64.b64encode(b"robot:s3cret")\
                .decode():
            self.send(handler, 401, b"", body, {"WWW-Authenticate": 'Basic realm="lab"'})
            return
        if self.auth == "bearer" and given != "Bearer tok-123":
            challenge = (f'Bearer realm="http://{self.host}/token",service="lab-registry",'
                         'scope="repository:library/alpine:pull"')
            self.send(handler, 401, b"", body, {"WWW-Authenticate": challenge})
            return
        if path.path != "/v2/library/alpine/manifests/3.20":
            self.send(handler, 404, b'{"errors":[{"code":"MANIFEST_UNKNOWN"}]}', body, {})
            return
        extra = {"Content-Type": self.content_type}
        if self.digest_header:
            extra["Docker-Content-Digest"] = self.digest
        self.send(handler, 200, self.manifest, body, extra)

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, status: int, payload: bytes, body: bool,
             headers: dict[str, str]) -> None:
        handler.send_response(status)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(payload)))
        handler.end_headers()
        if body:
            handler.wfile.write(payload)


def resolve(resolver: DigestResolver, text: str) -> Resolution:
    return asyncio.run(resolver.resolve(ImageReference.parse(text)))


@pytest.fixture
def free_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    yield port  # nothing listens there any more


def test_an_open_registry_answers_the_digest_of_a_head_with_every_manifest_type() -> None:
    with Registry() as registry:
        found = resolve(DigestResolver(insecure={registry.host}),
                        f"{registry.host}/library/alpine:3.20")
    assert found.digest == DIGEST and found.problem is None
    heads = [r for r in registry.requests if r[0] == "HEAD"]
    accept = heads[-1][2]["Accept"]
    for media_type in MANIFEST_TYPES:
        assert media_type in accept
    assert not [r for r in registry.requests if r[0] == "GET"]  # HEAD only


def test_without_the_digest_header_the_manifest_bytes_are_hashed() -> None:
    with Registry(digest_header=False) as registry:
        found = resolve(DigestResolver(insecure={registry.host}),
                        f"{registry.host}/library/alpine:3.20")
    assert found.digest == "sha256:" + hashlib.sha256(registry.manifest).hexdigest()


def test_basic_uses_the_push_registry_credentials_and_never_shows_them() -> None:
    with Registry("basic") as registry:
        resolver = DigestResolver(credentials={registry.host: ("robot", SecretStr("s3cret"))},
                                  insecure={registry.host})
        found = resolve(resolver, f"{registry.host}/library/alpine:3.20")
        anonymous = resolve(DigestResolver(insecure={registry.host}),
                            f"{registry.host}/library/alpine:3.20")
    assert found.digest == DIGEST
    assert anonymous.digest is None
    assert anonymous.problem is not None and "authentication required" in anonymous.problem
    assert "s3cret" not in repr(resolver)


def test_the_anonymous_bearer_challenge_is_answered_with_a_token_once() -> None:
    with Registry("bearer") as registry:
        resolver = DigestResolver(insecure={registry.host})
        first = resolve(resolver, f"{registry.host}/library/alpine:3.20")
        second = resolve(resolver, f"{registry.host}/library/alpine:3.20")
    assert first.digest == DIGEST == second.digest
    tokens = [r for r in registry.requests if r[1].startswith("/token")]
    assert len(tokens) == 1  # the token is kept for the scope
    assert "Authorization" not in tokens[0][2]  # anonymous: no credentials for this host


def test_a_missing_tag_is_unknown_and_says_not_found() -> None:
    with Registry() as registry:
        found = resolve(DigestResolver(insecure={registry.host}),
                        f"{registry.host}/library/alpine:9.99")
    assert found.digest is None
    assert found.problem is not None and "not found" in found.problem


def test_an_unreachable_registry_is_unknown(free_port: int) -> None:
    found = resolve(DigestResolver(insecure={f"127.0.0.1:{free_port}"}, timeout=2),
                    f"127.0.0.1:{free_port}/library/alpine:3.20")
    assert found.digest is None
    assert found.problem is not None and "unreachable" in found.problem


def test_a_reference_pinned_by_digest_asks_nothing() -> None:
    resolver = DigestResolver()
    found = resolve(resolver, f"alpine:3.20@{DIGEST}")
    assert found.digest == DIGEST


@pytest.mark.parametrize(("text", "expected"), [
    ("alpine:3.20", ("registry-1.docker.io", "library/alpine")),
    ("docker.io/bitnami/redis:7.2", ("registry-1.docker.io", "bitnami/redis")),
    ("quay.io/prometheus/node-exporter:v1.8.0", ("quay.io", "prometheus/node-exporter")),
    ("ghcr.io/home-assistant/home-assistant:2024.6", ("ghcr.io",
                                                      "home-assistant/home-assistant")),
])
def test_docker_hub_names_are_asked_of_its_api_host(text: str,
                                                    expected: tuple[str, str]) -> None:
    assert registry_endpoint(ImageReference.parse(text)) == expected


def test_a_registry_with_a_private_ca_is_trusted_with_its_bundle(tmp_path: Path) -> None:
    """Harbor behind an internal CA: ``[registry] ca_bundle`` (the system's CAs still hold
    for every other registry); without it the certificate is refused: unknown."""
    context, cert = self_signed_server(tmp_path)
    with Registry(tls=context) as registry:
        trusted = resolve(DigestResolver(ca_bundle=cert), f"{registry.host}/library/alpine:3.20")
        refused = resolve(DigestResolver(), f"{registry.host}/library/alpine:3.20")
    assert trusted.digest == DIGEST
    assert refused.digest is None and refused.problem is not None
    with pytest.raises(ConfigError, match="cannot read CA bundle"):
        resolve(DigestResolver(ca_bundle=tmp_path / "nosuch.pem"),
                f"{registry.host}/library/alpine:3.20")


# -- what a tag serves (a resume asking whether an interrupted push arrived) -----------------

CONFIG = "sha256:" + "cf" * 32
#: A single image's manifest as the distribution registry serves it after a buildah push.
IMAGE_MANIFEST = {
    "schemaVersion": 2, "mediaType": MANIFEST_TYPES[2],
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG,
               "size": 1234},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                "digest": "sha256:" + "1a" * 32, "size": 99}],
}


def manifest_of(registry: Registry, text: str = "library/alpine:3.20",
                resolver: DigestResolver | None = None) -> TagManifest:
    resolver = resolver or DigestResolver(insecure={registry.host})
    return asyncio.run(resolver.manifest(ImageReference.parse(f"{registry.host}/{text}")))


def serve(registry: Registry, document: dict[str, object], content_type: str) -> str:
    registry.manifest = json.dumps(document).encode()
    registry.content_type = content_type
    registry.digest = "sha256:" + hashlib.sha256(registry.manifest).hexdigest()
    return registry.digest


def test_a_tags_manifest_gives_its_digest_and_its_config_digest() -> None:
    with Registry("bearer") as registry:
        digest = serve(registry, IMAGE_MANIFEST, MANIFEST_TYPES[2])
        served = manifest_of(registry)
    assert served == TagManifest(served.reference, digest, MANIFEST_TYPES[2], CONFIG)
    assert not served.is_index
    gets = [r for r in registry.requests if r[0] == "GET" and "/manifests/" in r[1]]
    assert gets and all(MANIFEST_TYPES[2] in r[2]["Accept"] for r in gets)


def test_an_oci_manifest_without_media_type_is_typed_by_its_content_type() -> None:
    document = {key: value for key, value in IMAGE_MANIFEST.items() if key != "mediaType"}
    with Registry(digest_header=False) as registry:
        digest = serve(registry, document, MANIFEST_TYPES[2] + "; charset=utf-8")
        served = manifest_of(registry)
    assert (served.digest, served.media_type, served.config) == (digest,
                                                                 MANIFEST_TYPES[2], CONFIG)


def test_an_index_has_no_config_to_compare() -> None:
    with Registry() as registry:
        serve(registry, {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[1],
                         "manifests": [{"digest": "sha256:" + "1b" * 32}]}, MANIFEST_TYPES[1])
        served = manifest_of(registry)
    assert served.is_index and served.config is None and served.problem is None


@pytest.mark.parametrize(("case", "problem"), [
    ("digest mismatch", "does not match its Docker-Content-Digest"),
    ("no config", "names no config"),
    ("not json", "not JSON"),
    ("missing tag", "not found"),
    ("no credentials", "authentication required"),
])
def test_a_tag_the_registry_cannot_vouch_for_is_a_problem(case: str, problem: str) -> None:
    with Registry("basic" if case == "no credentials" else None) as registry:
        serve(registry, IMAGE_MANIFEST, MANIFEST_TYPES[2])
        text = "library/alpine:3.20"
        if case == "digest mismatch":
            registry.digest = DIGEST  # not the bytes served
        elif case == "no config":
            serve(registry, {"schemaVersion": 2, "mediaType": MANIFEST_TYPES[2],
                             "config": {"digest": "md5:nope"}}, MANIFEST_TYPES[2])
        elif case == "not json":
            registry.manifest = b"<html>proxy error</html>"
            registry.digest = "sha256:" + hashlib.sha256(registry.manifest).hexdigest()
        elif case == "missing tag":
            text = "library/alpine:9.99"
        served = manifest_of(registry, text)
    assert served.problem is not None and problem in served.problem, served.problem
    assert (served.digest, served.config) == (None, None)


def test_an_unreachable_registry_serves_nothing_known(free_port: int) -> None:
    resolver = DigestResolver(insecure={f"127.0.0.1:{free_port}"}, timeout=2)
    served = asyncio.run(resolver.manifest(
        ImageReference.parse(f"127.0.0.1:{free_port}/library/alpine:3.20")))
    assert served.problem is not None and "unreachable" in served.problem
    assert served.config is None
