"""Vulnerability details: which CVEs, in which packages, an image carries — and what a rebuild
changed about them.

Harbor's summary counts say *how many*; a person deciding what to do needs *which*: the CVE,
the package, the installed version and the version that fixes it. Careen reads the details
only for the images that matter — every image of the plan before its rebuild, and every
rebuilt digest after its rescan — through ``GET …/artifacts/{ref}/additions/vulnerabilities``
(Harbor 2.x, NOTES §6.6) or ``GET /api/repositories/{repo}/tags/{tag}/vulnerability/details``
(Harbor 1.x, NOTES §9.1), a bounded number at once. The inventory stays the summary listing.

A robot account without the ``artifact-addition`` read right gets 403 on the first request:
Careen then stops asking, says so once, and the reports show counts only.

Comparing the lists before and after gives per image the CVEs fixed, the ones remaining (with
package, installed version and fix version) and the new ones; and, for a rebuild that did not
help, *why* from the data: no fix exists upstream (the packages named), or a fix exists but
the rebuilt image still has the old version, so the base image or a pin holds it (the package,
the version, and the ``FROM`` line that brings it).

Text in a finding comes from the scanner and is untrusted: the reports escape it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from careen.errors import CareenError
from careen.events import NULL_OBSERVER, Observer
from careen.reference import ImageReference
from careen.registries.http import HarborApiError
from careen.scan import Severity

__all__ = [
    "DETAILS_CONCURRENCY",
    "CveDiff",
    "DetailsSource",
    "Finding",
    "diff_findings",
    "explain_not_helped",
    "findings_from_dicts",
    "findings_to_dicts",
    "parse_v1_details",
    "parse_v2_report",
    "read_details",
]

#: Detail requests sent to Harbor at once.
DETAILS_CONCURRENCY = 8
#: Characters of a finding's description kept (scanners copy whole advisories).
DESCRIPTION_LIMIT = 500
#: Links kept per finding.
LINKS_LIMIT = 5


@dataclass(frozen=True, slots=True)
class Finding:
    """One vulnerability of one package in one image. ``fix_version`` is ``None`` when no
    fixed version exists upstream; ``cvss`` is the preferred CVSS score (v3, else v2) when
    the scanner gives one."""

    id: str
    package: str
    version: str
    severity: Severity
    fix_version: str | None = None
    cvss: float | None = None
    links: tuple[str, ...] = ()
    description: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """What makes a finding the same before and after a rebuild: the CVE in the package
        (its version is what the rebuild changes)."""
        return (self.id, self.package)

    @property
    def fixable(self) -> bool:
        return bool(self.fix_version)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "package": self.package, "version": self.version,
                "fix_version": self.fix_version, "severity": self.severity.label,
                "cvss": self.cvss, "links": list(self.links), "description": self.description}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        cvss = data.get("cvss")
        fix = data.get("fix_version")
        return cls(id=_text(data["id"]), package=_text(data["package"]),
                   version=_text(data.get("version", "")),
                   severity=Severity.from_name(_text(data.get("severity", "unknown"))),
                   fix_version=_text(fix) if fix else None,
                   cvss=float(cvss) if isinstance(cvss, int | float) and
                   not isinstance(cvss, bool) else None,
                   links=tuple(_text(link) for link in data.get("links") or ()),
                   description=_text(data.get("description") or ""))


def _text(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, not {type(value).__name__}")
    return value


def findings_to_dicts(findings: Iterable[Finding]) -> list[dict[str, Any]]:
    return [finding.to_dict() for finding in findings]


def findings_from_dicts(data: Iterable[Mapping[str, Any]]) -> tuple[Finding, ...]:
    return tuple(Finding.from_dict(entry) for entry in data)


def sort_findings(findings: Iterable[Finding]) -> tuple[Finding, ...]:
    """Worst first (severity, then CVSS), then by CVE and package: the order reports list."""
    return tuple(sorted(findings, key=lambda f: (-int(f.severity), -(f.cvss or 0.0), f.id,
                                                 f.package, f.version)))


# -- parsing Harbor's answers ------------------------------------------------------------------


def parse_v2_report(body: Any, mime_types: Sequence[str]) -> tuple[Finding, ...] | None:
    """``additions/vulnerabilities`` (NOTES §6.6): ``{mime: Report}``; ``{}`` for an artifact
    never scanned (``None``). The first of ``mime_types`` present is read."""
    if not isinstance(body, dict):
        return None
    report = next((body[m] for m in mime_types if isinstance(body.get(m), dict)), None)
    if report is None:
        report = next((v for v in body.values() if isinstance(v, dict)), None)
    if report is None:
        return None
    findings: list[Finding] = []
    for raw in report.get("vulnerabilities") or ():
        if not isinstance(raw, dict) or not raw.get("id"):
            continue
        findings.append(Finding(
            id=str(raw["id"]), package=str(raw.get("package") or ""),
            version=str(raw.get("version") or ""),
            severity=Severity.from_name(str(raw.get("severity") or "Unknown")),
            fix_version=str(raw["fix_version"]) if raw.get("fix_version") else None,
            cvss=_cvss(raw.get("preferred_cvss")),
            links=_links(raw.get("links")),
            description=str(raw.get("description") or "")[:DESCRIPTION_LIMIT]))
    return sort_findings(findings)


def parse_v1_details(body: Any) -> tuple[Finding, ...] | None:
    """Harbor 1.x ``vulnerability/details`` (NOTES §9.1): ``[{id, severity (int 1 none ..
    5 high), package, version, description, link, fixedVersion}]``."""
    if not isinstance(body, list):
        return None
    findings: list[Finding] = []
    for raw in body:
        if not isinstance(raw, dict) or not raw.get("id"):
            continue
        level = raw.get("severity")
        severity = (Severity(level) if isinstance(level, int) and not isinstance(level, bool)
                    and Severity.NONE <= level <= Severity.HIGH else Severity.UNKNOWN)
        link = raw.get("link")
        findings.append(Finding(
            id=str(raw["id"]), package=str(raw.get("package") or ""),
            version=str(raw.get("version") or ""), severity=severity,
            fix_version=str(raw["fixedVersion"]) if raw.get("fixedVersion") else None,
            links=(link,) if isinstance(link, str) and link else (),
            description=str(raw.get("description") or "")[:DESCRIPTION_LIMIT]))
    return sort_findings(findings)


def _cvss(raw: Any) -> float | None:
    if not isinstance(raw, dict):
        return None
    for key in ("score_v3", "score_v2"):
        value = raw.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 10:
            return float(value)
    return None


def _links(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list):
        return ()
    return tuple(str(link) for link in raw if isinstance(link, str) and link)[:LINKS_LIMIT]


# -- reading them for the images that matter ---------------------------------------------------


@runtime_checkable
class DetailsSource(Protocol):
    async def vulnerability_details(self,
                                    image: ImageReference) -> tuple[Finding, ...] | None: ...


#: An image's findings, or ``None`` when they could not be read (never scanned, no right).
Details = dict[ImageReference, tuple[Finding, ...] | None]


async def read_details(source: DetailsSource, images: Iterable[ImageReference], *,
                       what: str, concurrency: int = DETAILS_CONCURRENCY,
                       observer: Observer = NULL_OBSERVER) -> Details:
    """The findings of each of ``images`` (``what`` names them in messages: "plan images"),
    ``concurrency`` requests at once. A 401/403 (a robot without the ``artifact-addition``
    read right) stops the reading: one warning, and the reports show counts only. Any other
    failure (a 404 for an artifact that is not scannable, Harbor unreachable after its
    retries) leaves that image without details, said in one warning; none raises: details
    explain a night, they never fail it."""
    wanted = list(dict.fromkeys(images))
    found: Details = {}
    limit = asyncio.Semaphore(max(1, concurrency))
    denied: list[HarborApiError] = []
    failed: list[tuple[ImageReference, CareenError]] = []

    async def one(image: ImageReference) -> None:
        async with limit:
            if denied:
                return
            try:
                found[image] = await source.vulnerability_details(image)
            except HarborApiError as error:
                if error.status in (401, 403):
                    denied.append(error)
                    return
                found[image] = None
                if error.status != 404:
                    failed.append((image, error))
            except CareenError as error:
                found[image] = None
                failed.append((image, error))

    await asyncio.gather(*(one(image) for image in wanted))
    if failed and not denied:
        image, error = failed[0]
        observer.warning(f"vulnerability details of {len(failed)} of the {what} not read "
                         f"(first: {image.short}: {error}); their reports show counts only")
    if denied:
        observer.warning(
            "Harbor refused the vulnerability details (HTTP "
            f"{denied[0].status}): the reports show counts only, no CVE lists; grant the "
            "robot account 'artifact-addition' read to see which CVEs were fixed")
        return {}
    return found


# -- before and after --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CveDiff:
    """One image's findings before and after its rebuild, compared by CVE and package."""

    fixed: tuple[Finding, ...]
    remaining: tuple[Finding, ...]
    new: tuple[Finding, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"fixed": findings_to_dicts(self.fixed),
                "remaining": findings_to_dicts(self.remaining),
                "new": findings_to_dicts(self.new)}


def diff_findings(before: Sequence[Finding], after: Sequence[Finding]) -> CveDiff:
    """Fixed: before, not after. Remaining: in both (as found after, with the version the
    rebuilt image has). New: after, not before."""
    old = {f.key for f in before}
    now = {f.key for f in after}
    return CveDiff(fixed=sort_findings(f for f in before if f.key not in now),
                   remaining=sort_findings(f for f in after if f.key in old),
                   new=sort_findings(f for f in after if f.key not in old))


def explain_not_helped(after: Sequence[Finding], from_lines: Sequence[str] = (),
                       pins: Mapping[str, str] | None = None, *, limit: int = 3) -> str:
    """Why the findings left after a rebuild are still there, from the data: a fix exists
    but the rebuilt image still has the old version — held by a pin (``pins``: package ->
    the Dockerfile line that pins it) or else by the base image (``from_lines``: the
    Dockerfile's ``FROM`` lines); no fix upstream (the packages named). ``""`` when nothing
    is left."""
    if not after:
        return ""
    pins = pins or {}
    held = _by_package(f for f in after if f.fixable)
    pinned = [h for h in held if h[0] in pins]
    by_base = [h for h in held if h[0] not in pins]
    unfixed = _by_package(f for f in after if not f.fixable)
    parts = [f"{package} {version} is pinned ({pins[package]}) though {fix} fixes it"
             for package, version, fix in pinned[:limit]]
    if by_base:
        shown = ", ".join(f"{package} {version} (fixed in {fix})"
                          for package, version, fix in by_base[:limit])
        more = f" and {len(by_base) - limit} more" if len(by_base) > limit else ""
        base = "; ".join(from_lines[:2])
        parts.append(f"a fix exists but the rebuilt image still has {shown}{more}: the base "
                     "image holds it" + (f" ({base})" if base else ""))
    if unfixed:
        names = ", ".join(f"{package} {version}" for package, version, _ in unfixed[:limit])
        more = f" and {len(unfixed) - limit} more" if len(unfixed) > limit else ""
        parts.append(f"no fix upstream yet for {names}{more}")
    return "; ".join(parts)


def _by_package(findings: Iterable[Finding]) -> list[tuple[str, str, str]]:
    """(package, installed version, highest fix version) once per package, worst first."""
    seen: dict[tuple[str, str], str] = {}
    for finding in sort_findings(findings):
        key = (finding.package, finding.version)
        if key not in seen:
            seen[key] = finding.fix_version or ""
    return [(package, version, fix) for (package, version), fix in seen.items()]
