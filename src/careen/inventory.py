"""The inventory: what a registry holds, one artifact at a time, with its scan summary.

A registry adapter (``careen.registries``) yields :class:`Artifact` values; everything after
it (policy, vulnerable.list, plan, reports) works on these and never on a registry's JSON.
An artifact may carry several tags (each is an image the seed's ``harbor list`` would show),
none (untagged; kept, addressed by digest) or be an image index whose children are the
per-platform images.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from careen.reference import ImageReference
from careen.scan import ScanSummary


@dataclass(frozen=True, slots=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    def __str__(self) -> str:
        text = f"{self.os}/{self.architecture}"
        return f"{text}/{self.variant}" if self.variant else text


@dataclass(frozen=True, slots=True)
class Artifact:
    """One artifact (manifest or index) in one repository.

    ``repository`` is the full repository path (``library/team/app``); ``registry`` the host
    images are pulled from (the Harbor host), if known. ``immutable_tags`` lists the tags a
    tag-immutability rule protects (such a tag cannot be overwritten by a rebuild).
    ``children`` are the digests an image index refers to; ``platforms`` their platforms.
    """

    repository: str
    digest: str
    tags: tuple[str, ...]
    scan: ScanSummary
    registry: str | None = None
    media_type: str | None = None
    is_index: bool = False
    platforms: tuple[Platform, ...] = ()
    children: tuple[str, ...] = ()
    immutable_tags: tuple[str, ...] = ()
    push_time: datetime | None = None
    size: int | None = None
    #: The image config's labels (Harbor's ``extra_attrs.config.Labels``); ``None`` when the
    #: listing does not say.
    labels: Mapping[str, str] | None = None

    @property
    def project(self) -> str:
        return self.repository.partition("/")[0]

    def references(self) -> Iterator[ImageReference]:
        """One reference per tag, or one by digest for an untagged artifact."""
        if not self.tags:
            yield ImageReference(self.repository, None, self.digest, self.registry)
            return
        for tag in self.tags:
            yield ImageReference(self.repository, tag, None, self.registry)

    def image_names(self) -> Iterator[tuple[str, bool]]:
        """``(image.reference.short, image.immutable)`` of each of :meth:`images`, without
        making them: what a listing prints, at 10,000 artifacts a second. The parts were
        checked when the artifact was made from the registry's answer."""
        if not self.tags:
            yield f"{self.repository}@{self.digest}", False
            return
        immutable = self.immutable_tags
        for tag in self.tags:
            yield f"{self.repository}:{tag}", tag in immutable

    def images(self) -> Iterator[Image]:
        for ref in self.references():
            yield Image(
                reference=ref, digest=self.digest, scan=self.scan,
                immutable=ref.tag is not None and ref.tag in self.immutable_tags,
                is_index=self.is_index, platforms=self.platforms, labels=self.labels,
            )


@dataclass(frozen=True, slots=True)
class Image:
    """One tagged image (or one untagged artifact): the unit the policy judges and the plan
    rebuilds. Several images can share one artifact (multi-tag)."""

    reference: ImageReference
    digest: str | None
    scan: ScanSummary
    immutable: bool = False
    is_index: bool = False
    platforms: tuple[Platform, ...] = ()
    #: The image's labels (which folder Careen built it from); ``None`` when unknown.
    labels: Mapping[str, str] | None = None
