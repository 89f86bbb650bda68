"""Image references: ``[server/]project/name[:tag][@digest]``.

Follows the distribution reference grammar (github.com/distribution/reference, ``regexp.go``):
lower-case path components separated by ``/`` (Harbor v2 allows several: ``proj/team/app``),
a tag ``[\\w][\\w.-]{0,127}``, a digest ``algorithm:hex``. A reference without tag or digest
means the tag ``latest``. Image names come from a registry and are untrusted: they are parsed
into this type at the edge and only ever handled as data (argument-list items, URL path
segments after quoting), never as shell text. Every way of making one checks it (the
constructor too), so no unchecked reference exists.

A name's first component is a registry host when it has a dot or a port or is ``localhost``
(Docker's rule). Harbor accepts such project names (``team.a``), so a registry-less text form
of their images is ambiguous: :meth:`ImageReference.parse` reads it Docker's way,
:meth:`ImageReference.parse_short` reads it as a repository path, and writers of registry-less
text (vulnerable.list) use :func:`reads_as_host` to put the registry in front when needed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from careen.errors import InvalidReferenceError

DEFAULT_TAG = "latest"
#: The distribution reference grammar's limit on the name (host and path, without tag).
NAME_MAX_LENGTH = 255
#: Docker Hub's hosts; a reference there names the same image without them.
DOCKER_HUB_HOSTS = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})

_PATH_COMPONENT_PATTERN = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH_COMPONENT = re.compile(rf"{_PATH_COMPONENT_PATTERN}\Z")
#: A whole repository path at once: one regex call on the hot path instead of one per component.
_REPOSITORY = re.compile(rf"{_PATH_COMPONENT_PATTERN}(?:/{_PATH_COMPONENT_PATTERN})*\Z")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = re.compile(
    rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]{{1,5}})?\Z"
)
_TAG = re.compile(r"[\w][\w.-]{0,127}\Z", re.ASCII)
_DIGEST = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}\Z")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}\Z")
_WHITE_SPACE = re.compile(r"\s")


def looks_like_host(component: str) -> bool:
    """Docker's rule: the first component of a name is a registry host if it has a dot or a
    port, or is ``localhost``. (Docker also takes an upper-case first component for a host;
    Careen calls that a mistyped repository name instead, which is the likelier reading.)

    Harbor accepts project names that pass this test (``team.a``, ``localhost``): written
    without a registry in front, such a project reads back as a host (see
    :func:`reads_as_host`)."""
    return "." in component or ":" in component or component == "localhost"


def reads_as_host(repository: str) -> bool:
    """Whether ``repository`` written without a registry host (``repository:tag``) would be
    read back with its first component taken for a registry host."""
    head, sep, _ = repository.partition("/")
    return bool(sep) and looks_like_host(head)


@dataclass(frozen=True, slots=True, order=True)
class ImageReference:
    """A parsed image reference; every field is checked when it is built, however it is
    built (:meth:`parse`, :meth:`of`, or the constructor): an :class:`ImageReference` that
    exists is safe to hand to a subprocess as one argument and to put in a URL path.

    ``repository`` is the full path inside the registry, project first (``library/team/app``).
    ``tag`` is ``None`` only for a digest-only reference (an untagged artifact). ``registry``
    is ``host[:port]`` and must read as a host (a dot, a port or ``localhost``), so that
    :func:`str` reads back as the same reference. A reference without a registry may have a
    first component that reads as a host (the key of an image in a Harbor project named
    ``team.a``); :meth:`parse` never makes one, :meth:`parse_short` does.
    """

    repository: str
    tag: str | None = DEFAULT_TAG
    digest: str | None = None
    registry: str | None = None
    #: The hash of the four fields, worked out once: references are dictionary keys
    #: everywhere (a 50,000-image build graph looks each up millions of times).
    _hash: int = field(init=False, repr=False, compare=False)

    def __hash__(self) -> int:
        return self._hash

    def __reduce__(self) -> tuple[type[ImageReference], tuple[str, str | None, str | None,
                                                              str | None]]:
        # Rebuilt from its fields, never with the hash: another process hashes strings
        # differently.
        return (type(self), (self.repository, self.tag, self.digest, self.registry))

    def __post_init__(self) -> None:
        # The hot path (100,000 artifacts listed): one regex per field, no per-component loop.
        # Only when something fails does _problem_with work out which part and why.
        repository, tag, digest, registry = self.repository, self.tag, self.digest, self.registry
        if (
            isinstance(repository, str)
            and (registry is None or isinstance(registry, str))
            and len(repository) + (0 if registry is None else len(registry) + 1)
            <= NAME_MAX_LENGTH
            and _REPOSITORY.match(repository) is not None
            and (tag is None or (isinstance(tag, str) and _TAG.match(tag) is not None))
            and (digest is None or (isinstance(digest, str) and _digest_problem(digest) is None))
            and (registry is None or (_DOMAIN.match(registry) is not None
                                      and looks_like_host(registry)))
            and (tag is not None or digest is not None)
        ):
            object.__setattr__(self, "_hash", hash((repository, tag, digest, registry)))
            return
        raise InvalidReferenceError(_display(repository, tag, digest, registry),
                                    _problem_with(repository, tag, digest, registry))

    @classmethod
    def parse(cls, text: str) -> ImageReference:
        """Parse ``text`` (``[host[:port]/]path[:tag][@digest]``); raise
        :class:`InvalidReferenceError` saying what is wrong."""
        return cls._parse(text, registry_allowed=True)

    @classmethod
    def parse_short(cls, text: str) -> ImageReference:
        """Parse the registry-less form :attr:`short` writes (``path[:tag][@digest]``): the
        whole name is the repository, even when its first component looks like a host
        (``team.a/app:1`` is project ``team.a``), so ``parse_short(ref.short)`` gives ``ref``
        back without its registry (and without its digest when it has a tag)."""
        return cls._parse(text, registry_allowed=False)

    @classmethod
    def _parse(cls, text: str, *, registry_allowed: bool) -> ImageReference:
        if not isinstance(text, str):
            raise InvalidReferenceError(repr(text), "not a string")
        if not text:
            raise InvalidReferenceError(text, "empty")
        if _WHITE_SPACE.search(text) is not None:
            raise InvalidReferenceError(text, "contains white space")
        if not text.isprintable() or not text.isascii():
            raise InvalidReferenceError(text, "contains characters outside printable ASCII")

        remainder, digest = text, None
        if "@" in remainder:
            remainder, digest = remainder.split("@", 1)

        tag: str | None = None
        # A ':' after the last '/' separates the tag; one before it belongs to host:port.
        last_slash = remainder.rfind("/")
        colon = remainder.rfind(":")
        if colon > last_slash:
            remainder, tag = remainder[:colon], remainder[colon + 1 :]
            if not tag:
                raise InvalidReferenceError(text, "empty tag after ':' (omit ':' for 'latest')")
        if not remainder:
            raise InvalidReferenceError(text, "no repository name")

        registry: str | None = None
        repository = remainder
        if registry_allowed:
            head, sep, rest = remainder.partition("/")
            if sep and looks_like_host(head):
                registry, repository = head, rest
        if tag is None and digest is None:
            tag = DEFAULT_TAG
        try:
            # The constructor checks every part (once: nothing is checked twice here).
            return cls(repository, tag, digest, registry)
        except InvalidReferenceError as error:
            raise InvalidReferenceError(text, error.reason) from None

    @classmethod
    def of(cls, repository: str, *, tag: str | None = DEFAULT_TAG, digest: str | None = None,
           registry: str | None = None) -> ImageReference:
        """Build a reference from parts, validating them like :meth:`parse`; without a
        registry, a repository whose first component reads as a host is refused (it names a
        registry where a repository was expected)."""
        reference = cls(repository, tag, digest, registry)
        if registry is None and reads_as_host(repository):
            raise InvalidReferenceError(str(reference),
                                        "repository name looks like a registry host")
        return reference

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
        return ImageReference(self.repository, tag, None, self.registry)

    def with_digest(self, digest: str | None) -> ImageReference:
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


def _digest_problem(digest: str) -> str | None:
    if not _DIGEST.match(digest):
        return "digest must look like 'sha256:<64 hex digits>'"
    algorithm, _, hex_part = digest.partition(":")
    if algorithm == "sha256" and not _SHA256_HEX.match(hex_part):
        return "a sha256 digest has exactly 64 lower-case hex digits"
    return None


def _display(repository: object, tag: object, digest: object, registry: object) -> str:
    """The parts as one text for an error message (escaped and shortened by the error)."""
    def part(value: object) -> str:
        return value if isinstance(value, str) else repr(value)

    text = part(repository) if registry is None else f"{part(registry)}/{part(repository)}"
    if tag is not None:
        text += f":{part(tag)}"
    if digest is not None:
        text += f"@{part(digest)}"
    return text


def _problem_with(repository: object, tag: object, digest: object, registry: object) -> str:
    """Why these parts do not make a reference (the slow path, after a check failed)."""
    if not isinstance(repository, str):
        return f"repository is not a string but {type(repository).__name__}"
    for what, value in (("tag", tag), ("digest", digest), ("registry", registry)):
        if value is not None and not isinstance(value, str):
            return f"{what} is not a string but {type(value).__name__}"
    if isinstance(registry, str):
        if not _DOMAIN.match(registry):
            return f"registry host {registry!r} is not valid"
        if not looks_like_host(registry):
            return (f"registry host {registry!r} would read as a repository path: give it a "
                    "'.', a port or use 'localhost'")
    name_length = len(repository) + (0 if registry is None else len(str(registry)) + 1)
    if name_length > NAME_MAX_LENGTH:
        return f"name longer than {NAME_MAX_LENGTH} characters"
    if not repository:
        return "no repository name"
    for component in repository.split("/"):
        if component in ("", ".", ".."):
            return "empty, '.' or '..' path component in the repository name"
        if component != component.lower():
            return "repository names must be lower-case"
        if not _PATH_COMPONENT.match(component):
            return (f"path component {component!r} may hold only a-z, 0-9 and single "
                    "separators ('.', '_', '__', '-') between them")
    if isinstance(tag, str) and not _TAG.match(tag):
        if len(tag) > 128:
            return "tag longer than 128 characters"
        return (f"tag {tag!r} may hold only letters, digits, '_', '.' and '-', and must not "
                "start with '.' or '-'")
    if isinstance(digest, str):
        problem = _digest_problem(digest)
        if problem is not None:
            return problem
    if tag is None and digest is None:
        return "neither a tag nor a digest"
    return "not a valid reference"  # pragma: no cover - every failed check is named above


def is_valid_reference(text: str) -> bool:
    try:
        ImageReference.parse(text)
    except InvalidReferenceError:
        return False
    return True
