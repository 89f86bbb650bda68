"""The digest a FROM reference names now, asked of its registry with one HEAD request.

``HEAD /v2/NAME/manifests/TAG`` with every Docker v2 and OCI manifest and index media type in
``Accept`` answers the digest in ``Docker-Content-Digest`` (the digest of the manifest list for
a multi-arch image: what a FROM of that tag pulls changes whenever any platform changes). A
registry that answers without the header is asked with GET, and the digest is the SHA-256 of
the manifest's bytes. HEAD requests do not count against Docker Hub's pull rate limit.

Authentication, as registries ask for it:

* none (an open registry);
* ``WWW-Authenticate: Basic`` — the credentials given for that host (the push registry's);
* ``WWW-Authenticate: Bearer realm=...,service=...,scope=...`` — a token from the realm
  (anonymous, or with the host's credentials when given), as Docker Hub, GHCR, Quay and
  Harbor ask.

Anything else (404, 401 without usable credentials, an unreachable host, a timeout) is
*unknown*: the resolution says why, and the caller never treats unknown as "unchanged".
Credentials never appear in a message.

:meth:`DigestResolver.manifest` reads what a tag of the push registry serves (GET, the same
authentication): the manifest's digest and, for one image's manifest, its config's digest —
the image id a builder reports (``--iidfile``). A resume compares the two to learn whether a
push interrupted by a crash reached the registry (:mod:`careen.nightly`).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
import ssl
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from pydantic import SecretStr

from careen.errors import ConfigError
from careen.reference import ImageReference

__all__ = ["MANIFEST_TYPES", "DigestResolver", "Resolution", "TagManifest", "registry_endpoint"]

#: What a FROM can name: single manifests and indexes, Docker's and OCI's.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
)
#: The index (manifest list) types of :data:`MANIFEST_TYPES`: several images, no one config.
INDEX_TYPES = frozenset(MANIFEST_TYPES[:2])
#: The largest manifest read (the distribution registry refuses larger ones too).
MANIFEST_LIMIT_BYTES = 4 * 1024 * 1024
DOCKER_HUB_API = "registry-1.docker.io"
_DOCKER_HUB = {"docker.io", "index.docker.io", "registry-1.docker.io"}
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class Resolution:
    reference: ImageReference
    digest: str | None
    #: Why the digest is unknown (``not found``, ``unreachable: ...``), else ``None``.
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class TagManifest:
    """What a tag serves now. ``digest``: its manifest's (SHA-256 of the bytes served);
    ``config``: the config digest of a single image's manifest (``None`` for an index);
    ``problem``: why nothing is known (the other fields are then ``None``)."""

    reference: ImageReference
    digest: str | None = None
    media_type: str | None = None
    config: str | None = None
    problem: str | None = None

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES


def registry_endpoint(reference: ImageReference) -> tuple[str, str]:
    """The API host and the repository path: Docker Hub's ``alpine`` is
    ``registry-1.docker.io`` and ``library/alpine``."""
    normalized = reference.normalized()
    host = reference.registry or "docker.io"
    if host in _DOCKER_HUB:
        return DOCKER_HUB_API, normalized.repository
    return host, reference.repository


@dataclass
class DigestResolver:
    """Resolves references through one HTTP client. ``credentials`` maps a registry host to
    ``(user, password)`` (only the push registry's are ever given); ``insecure`` hosts are
    asked over HTTPS without verification first, then over plain HTTP (a loopback registry,
    as ``[registry] verify_tls = false`` means for the builder). ``ca_bundle`` is trusted
    besides the system's certificate authorities (``[registry] ca_bundle``: a registry with
    a private CA)."""

    credentials: Mapping[str, tuple[str, SecretStr]] = field(default_factory=dict)
    insecure: Collection[str] = ()
    ca_bundle: Path | None = None
    timeout: float = 15.0
    concurrency: int = 8
    transport: httpx.AsyncBaseTransport | None = None
    problems: dict[ImageReference, str] = field(default_factory=dict)
    _tokens: dict[tuple[str, str], str] = field(default_factory=dict, repr=False)

    async def resolve_many(
        self, references: Iterable[ImageReference],
    ) -> Mapping[ImageReference, str | None]:
        """Every reference's digest (``None`` when unknown; :attr:`problems` says why)."""
        wanted = list(dict.fromkeys(references))
        limit = asyncio.Semaphore(self.concurrency)
        async with self._client(verify=True) as secure, self._client(verify=False) as loose:

            async def one(reference: ImageReference) -> Resolution:
                async with limit:
                    return await self._resolve(reference, secure, loose)

            found = await asyncio.gather(*(one(reference) for reference in wanted))
        answers: dict[ImageReference, str | None] = {}
        for resolution in found:
            answers[resolution.reference] = resolution.digest
            if resolution.problem is not None:
                self.problems[resolution.reference] = resolution.problem
        return answers

    async def resolve(self, reference: ImageReference) -> Resolution:
        answer = await self.resolve_many([reference])
        return Resolution(reference, answer[reference], self.problems.get(reference))

    def _client(self, *, verify: bool) -> httpx.AsyncClient:
        return httpx.AsyncClient(timeout=self.timeout,
                                 verify=self._trust() if verify else False,
                                 transport=self.transport, follow_redirects=True,
                                 trust_env=False)

    def _trust(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.ca_bundle is not None:
            try:
                context.load_verify_locations(cafile=str(self.ca_bundle))
            except (OSError, ssl.SSLError) as error:
                raise ConfigError(f"cannot read CA bundle {str(self.ca_bundle)!r}: "
                                  f"{error.__class__.__name__}", key="registry.ca_bundle",
                                  ) from None
        return context

    async def _resolve(self, reference: ImageReference, secure: httpx.AsyncClient,
                       loose: httpx.AsyncClient) -> Resolution:
        if reference.digest is not None:
            return Resolution(reference, reference.digest)
        host, repository, urls = self._manifest_urls(reference)
        problem = "unreachable"
        for url, verify in urls:
            try:
                return await self._ask(reference, url, host, repository,
                                       secure if verify else loose)
            except httpx.HTTPError as error:
                problem = f"unreachable: {type(error).__name__}"
        return Resolution(reference, None, f"{host}: {problem}")

    def _manifest_urls(self, reference: ImageReference,
                       ) -> tuple[str, str, list[tuple[str, bool]]]:
        """The API host, the repository path, and the URLs of the tag's manifest to try in
        order, each with whether TLS is verified (an insecure host: HTTPS unverified, then
        plain HTTP)."""
        host, repository = registry_endpoint(reference)
        schemes = [("https", False), ("http", False)] if host in self.insecure else [
            ("https", True)]
        path = f"{host}/v2/{repository}/manifests/{reference.tag or 'latest'}"
        return host, repository, [(f"{scheme}://{path}", verify) for scheme, verify in schemes]

    async def manifest(self, reference: ImageReference) -> TagManifest:
        """What ``reference``'s tag serves now (one GET of its manifest); a problem, never
        a guess, when the registry cannot say."""
        host, repository, urls = self._manifest_urls(reference)
        problem = "unreachable"
        for url, verify in urls:
            try:
                async with self._client(verify=verify) as client:
                    return await self._read_manifest(reference, url, host, repository, client)
            except httpx.HTTPError as error:
                problem = f"unreachable: {type(error).__name__}"
        return TagManifest(reference, problem=f"{host}: {problem}")

    async def _read_manifest(self, reference: ImageReference, url: str, host: str,
                             repository: str, client: httpx.AsyncClient) -> TagManifest:
        answer = await self._authorized("GET", url, host, repository, client)
        if isinstance(answer, str):
            return TagManifest(reference, problem=answer)
        response, _ = answer
        if response.status_code != 200:
            return TagManifest(reference, problem=self._refusal(response, reference, host,
                                                                 repository))
        body = response.content
        if len(body) > MANIFEST_LIMIT_BYTES:
            return TagManifest(reference, problem=f"{host}: a manifest of {len(body)} bytes")
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        said = response.headers.get("Docker-Content-Digest")
        if said is not None and said != digest:
            return TagManifest(reference, problem=f"{host}: the manifest served does not "
                               f"match its Docker-Content-Digest ({said})")
        try:
            document = json.loads(body)
        except ValueError:
            return TagManifest(reference, problem=f"{host}: the manifest is not JSON")
        if not isinstance(document, dict):
            return TagManifest(reference, problem=f"{host}: the manifest is not an object")
        media_type = document.get("mediaType") or response.headers.get(
            "Content-Type", "").partition(";")[0].strip() or None
        if isinstance(document.get("manifests"), list):  # an index, whatever it is called
            return TagManifest(reference, digest, str(media_type or MANIFEST_TYPES[0]))
        config = document.get("config")
        config_digest = config.get("digest") if isinstance(config, dict) else None
        if not isinstance(config_digest, str) or not _DIGEST.match(config_digest):
            return TagManifest(reference, problem=f"{host}: the manifest names no config")
        return TagManifest(reference, digest, str(media_type) if media_type else None,
                           config_digest)

    async def _authorized(self, method: str, url: str, host: str, repository: str,
                          client: httpx.AsyncClient,
                          ) -> tuple[httpx.Response, dict[str, str]] | str:
        """The answer to ``method url``, logged in as the registry asks (the token kept for
        the next request); the headers it was sent with. A problem's text when the registry
        asks for credentials there are none for."""
        headers = {"Accept": ", ".join(MANIFEST_TYPES)}
        scope = f"repository:{repository}:pull"
        token = self._tokens.get((host, scope))
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        response = await client.request(method, url, headers=headers)
        if response.status_code == 401:
            authorization = await self._authorize(response, host, scope, client)
            if authorization is None:
                return f"{host}: authentication required (no credentials for this registry)"
            headers["Authorization"] = authorization
            response = await client.request(method, url, headers=headers)
        return response, headers

    @staticmethod
    def _refusal(response: httpx.Response, reference: ImageReference, host: str,
                 repository: str) -> str:
        if response.status_code == 404:
            return f"{host}: {repository}:{reference.tag} not found"
        if response.status_code in (401, 403):
            return f"{host}: access denied ({response.status_code})"
        return f"{host}: answered {response.status_code}"

    async def _ask(self, reference: ImageReference, url: str, host: str, repository: str,
                   client: httpx.AsyncClient) -> Resolution:
        answer = await self._authorized("HEAD", url, host, repository, client)
        if isinstance(answer, str):
            return Resolution(reference, None, answer)
        response, headers = answer
        if response.status_code != 200:
            return Resolution(reference, None, self._refusal(response, reference, host,
                                                             repository))
        digest = response.headers.get("Docker-Content-Digest", "")
        if not _DIGEST.match(digest):
            body = await client.get(url, headers=headers)
            if body.status_code != 200:
                return Resolution(reference, None, f"{host}: no digest in the answer")
            digest = "sha256:" + hashlib.sha256(body.content).hexdigest()
        return Resolution(reference, digest)

    async def _authorize(self, response: httpx.Response, host: str, scope: str,
                         client: httpx.AsyncClient) -> str | None:
        challenge = response.headers.get("WWW-Authenticate", "")
        scheme, _, rest = challenge.partition(" ")
        creds = self.credentials.get(host)
        basic = httpx.BasicAuth(creds[0], creds[1].get_secret_value()) if creds else None
        if scheme.lower() == "basic":
            if basic is None:
                return None
            assert creds is not None  # noqa: S101 - basic is built from it
            pair = f"{creds[0]}:{creds[1].get_secret_value()}".encode()
            return "Basic " + base64.b64encode(pair).decode()
        if scheme.lower() != "bearer":
            return None
        params = dict(_CHALLENGE_PARAM.findall(rest))
        realm = params.get("realm")
        if not realm:
            return None
        query = {"scope": params.get("scope") or scope}
        if params.get("service"):
            query["service"] = params["service"]
        try:
            answer = await client.get(realm, params=query, auth=basic)
        except httpx.HTTPError:
            return None
        if answer.status_code != 200:
            return None
        try:
            document = answer.json()
        except ValueError:
            return None
        token = document.get("token") or document.get("access_token") if isinstance(
            document, dict) else None
        if not isinstance(token, str) or not token:
            return None
        self._tokens[(host, scope)] = token
        return f"Bearer {token}"


def resolver_for(server: str | None, user: str | None, password: SecretStr | None, *,
                 tls_verify: bool = True, ca_bundle: Path | None = None) -> DigestResolver:
    """A resolver that may log in to the push registry ``server`` (and only to it)."""
    credentials = {server: (user, password)} if server and user and password else {}
    insecure = {server} if server and not tls_verify else set()
    return DigestResolver(credentials=credentials, insecure=insecure, ca_bundle=ca_bundle)
