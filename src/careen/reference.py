"""Image references: ``[server/]project/name[:tag][@digest]``.

Follows the distribution reference grammar (github.com/distribution/reference, ``regexp.go``):
lower-case path components separated by ``/`` (Harbor v2 allows several: ``proj/team/app``),
a tag ``[\\w][\\w.-]{0,127}``, a digest ``algorithm:hex``. A reference without tag or digest
means the tag ``latest``. Image names come from a registry and are untrusted: they are parsed
into this type at the edge and only ever handled as data (argument-list items, URL path
segments after quoting), never as shell text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from careen.errors import InvalidReferenceError

DEFAULT_TAG = "latest"
#: The distribution reference grammar's limit on the name (host and path, without tag).
NAME_MAX_LENGTH = 255
#: Docker Hub's hosts; a reference there names the same image without them.
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_PATH_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*\Z")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?\Z"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}\Z")


def _looks_like_domain(component: str) -> bool:
    """Docker's rule: the first component is a registry host if it has a dot or a port, or is
    ``localhost``. (Docker also takes an upper-case first component for a host; Careen calls
    that a mistyped repository name instead, which is the likelier reading.)"""
    return "." in component or ":" in component or component == "localhost"


@dataclass(frozen=True, slots=True, order=True)
class ImageReference:
    """A parsed image reference.

    ``repository`` is the full path inside the registry, project first (``library/team/app``).
    ``tag`` is ``None`` only for a digest-only reference (an untagged artifact).
    """

    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None
    registry: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``text``; raise :class:`InvalidReferenceError` saying what is wrong."""
        if not isinstance(text, str):
            raise InvalidReferenceError(repr(text), "not a string")
        if not text:
            raise InvalidReferenceError(text, "empty")
        if text != text.strip() or any(c.isspace() for c in text):
            raise InvalidReferenceError(text, "contains white space")
        if not text.isprintable() or not text.isascii():
            raise InvalidReferenceError(text, "contains characters outside printable ASCII")

        remainder, digest = text, None
        if "@" in remainder:
            remainder, digest = remainder.split("@", 1)
            _check_digest(text, digest)

        tag: str | None = None
        # A ':' after the last '/' separates the tag; one before it belongs to host:port.
        last_slash = remainder.rfind("/")
        colon = remainder.rfind(":")
        if colon > last_slash:
            remainder, tag = remainder[:colon], remainder[colon + 1 :]
            if not tag:
                raise InvalidReferenceError(text, "empty tag after ':' (omit ':' for 'latest')")
            if not _TAG.match(tag):
                if len(tag) > 128:
                    raise InvalidReferenceError(text, "tag longer than 128 characters")
                raise InvalidReferenceError(
                    text, f"tag {tag!r} may hold only letters, digits, '_', '.' and '-', "
                    "and must not start with '.' or '-'"
                )
        if not remainder:
            raise InvalidReferenceError(text, "no repository name")
        if len(remainder) > NAME_MAX_LENGTH:
            raise InvalidReferenceError(
                text, f"name longer than {NAME_MAX_LENGTH} characters"
            )

        components = remainder.split("/")
        registry: str | None = None
        if len(components) > 1 and _looks_like_domain(components[0]):
            registry = components[0]
            if not _DOMAIN.match(registry):
                raise InvalidReferenceError(text, f"registry host {registry!r} is not valid")
            components = components[1:]
        for component in components:
            if component in ("", ".", ".."):
                raise InvalidReferenceError(
                    text, "empty, '.' or '..' path component in the repository name"
                )
            if component != component.lower():
                raise InvalidReferenceError(text, "repository names must be lower-case")
            if not _PATH_COMPONENT.match(component):
                raise InvalidReferenceError(
                    text, f"path component {component!r} may hold only a-z, 0-9 and "
                    "single separators ('.', '_', '__', '-') between them"
                )
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        return cls(repository="/".join(components), tag=tag, digest=digest, registry=registry)

    @classmethod
    def of(cls, repository: str, *, tag: str | None = DEFAULT_TAG, digest: str | None = None,
           registry: str | None = None) -> ImageReference:
        """Build a reference from parts, validating them like :meth:`parse`."""
        text = repository if registry is None else f"{registry}/{repository}"
        if tag is not None:
            text += f":{tag}"
        if digest is not None:
            text += f"@{digest}"
        parsed = cls.parse(text)
        if parsed.repository != repository or parsed.registry != registry:
            raise InvalidReferenceError(text, "repository name looks like a registry host")
        return parsed

    # -- views -------------------------------------------------------------------------------

    @property
    def project(self) -> str | None:
        """Harbor's project: the first path component, or ``None`` for a one-component name."""
        head, sep, _ = self.repository.partition("/")
        return head if sep else None

    @property
    def name_in_project(self) -> str:
        """The repository path below the project (``team/app`` in ``library/team/app``)."""
        head, sep, rest = self.repository.partition("/")
        return rest if sep else head

    @property
    def name(self) -> str:
        """``[registry/]repository`` without tag or digest."""
        return self.repository if self.registry is None else f"{self.registry}/{self.repository}"

    @property
    def short(self) -> str:
        """``repository:tag`` (or ``repository@digest``), as in vulnerable.list and Harbor."""
        if self.tag is not None:
            return f"{self.repository}:{self.tag}"
        return f"{self.repository}@{self.digest}"

    def __str__(self) -> str:
        text = self.name
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text

    # -- derived references ------------------------------------------------------------------

    def with_registry(self, registry: str | None) -> ImageReference:
        return ImageReference(self.repository, self.tag, self.digest, registry)

    def with_tag(self, tag: str) -> ImageReference:
        return ImageReference.of(self.repository, tag=tag, registry=self.registry)

    def with_digest(self, digest: str | None) -> ImageReference:
        if digest is not None:
            _check_digest(digest, digest)
        return ImageReference(self.repository, self.tag, digest, self.registry)

    def without_digest(self) -> ImageReference:
        return ImageReference(self.repository, self.tag or DEFAULT_TAG, None, self.registry)

    def normalized(self) -> ImageReference:
        """The same image with Docker Hub's host and implicit ``library/`` made uniform:
        ``docker.io/acme/jre`` and ``acme/jre`` both become ``acme/jre``; ``alpine`` and
        ``docker.io/library/alpine`` both become ``library/alpine``."""
        registry = None if self.registry in DOCKER_HUB_HOSTS else self.registry
        repository = self.repository
        if registry is None and "/" not in repository:
            repository = f"library/{repository}"
        return ImageReference(repository, self.tag, self.digest, registry)


def _check_digest(text: str, digest: str) -> None:
    if not _DIGEST.match(digest):
        raise InvalidReferenceError(text, "digest must look like 'sha256:<64 hex digits>'")
    algorithm, _, hex_part = digest.partition(":")
    if algorithm == "sha256" and not _SHA256_HEX.match(hex_part):
        raise InvalidReferenceError(text, "a sha256 digest has exactly 64 lower-case hex digits")


def is_valid_reference(text: str) -> bool:
    try:
        ImageReference.parse(text)
    except InvalidReferenceError:
        return False
    return True
