"""vulnerable.list: the seed's hand-over file between listing and rebuilding, plus its JSON form.

One image per line, as the 2017 script ``list-vulnerable-images`` wrote it::

    5=6,   library/activemq:5.14.4
    5=12,  library/apache-php:latest

``SEVERITY=COUNT,`` (the highest severity present, by its seed number, and how many findings
it has), padded to six characters, a space, then ``repository:tag`` without the registry host.

One exception keeps every line readable one way only: Harbor accepts project names that read as
a registry host (``team.a``, ``localhost``, ``cdn.example.com``), so ``team.a/app:1`` would read
back as image ``app:1`` on host ``team.a``. Such an image is written with its registry in front
(``harbor.example.com/team.a/app:1``), which reads back as what it is. Lines are read by the
distribution reference grammar (Docker's reading), so the seed's own lines, which never start
with a host, mean what they always meant, and a line another tool wrote with a registry keeps
its registry. An image of such a project with no registry known cannot be written unambiguously
and is refused when its entry is made.
Reading is tolerant, because people edit this file by hand and other tools produce it: plain
image lines (``library/x:1``; ``library/x`` and ``library/x:`` mean ``latest``, as in the
``harbor list | awk`` output), blank lines, ``#`` comments, tabs, CRLF and a UTF-8 BOM are
accepted; every other line is reported with its number, never dropped silently.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, Any, Final

from careen.errors import InputFileError, InvalidReferenceError
from careen.inventory import Image
from careen.policy import Judged, Policy, Selection, Verdict
from careen.reference import ImageReference, reads_as_host
from careen.scan import Severity

#: Version of the JSON document :func:`vulnerable_json` returns; bumped on incompatible change.
SCHEMA_VERSION: Final = 1
#: The seed's log line timestamp.
TIMESTAMP_FORMAT: Final = "%Y-%m-%d %H:%M:%S"

_HEAD = re.compile(r"\s*(?P<severity>[+-]?\d+)\s*=\s*(?P<count>[+-]?\d+)\s*\Z", re.ASCII)
_COMMENT = re.compile(r"(?:\A|\s)#")
_SHOWN_TEXT_LENGTH = 80
_MAX_DIGITS = 18


@dataclass(frozen=True, slots=True)
class VulnerableEntry:
    """One line of vulnerable.list. ``severity`` and ``count`` are ``None`` for a plain image
    line; ``line`` is the 1-based line number it was read from (not part of equality)."""

    image: ImageReference
    severity: Severity | None = None
    count: int | None = None
    line: int | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if (self.severity is None) != (self.count is None):
            raise ValueError("severity and count are given together or not at all")
        if self.count is not None and self.count < 0:
            raise ValueError("count must be 0 or more")
        if self.image.registry is None and reads_as_host(self.image.repository):
            raise InvalidReferenceError(
                self.image.short,
                f"project {self.image.project!r} reads as a registry host in vulnerable.list; "
                "the image needs its registry (the Harbor host) to be listed",
            )

    @classmethod
    def from_image(cls, image: Image) -> VulnerableEntry:
        """The entry for a selected image: its highest severity with a non-zero count and
        that count. An image whose only findings are ``unknown`` or ``none`` gets that
        severity (the seed wrote whatever came first, so a non-zero head is always
        informative); an image without findings or without a scan (selected because the
        policy selects unscanned images) gets a plain line."""
        counts = image.scan.counts if image.scan.succeeded else None
        highest = counts.highest if counts is not None else None
        if counts is None or highest is None:
            return cls(image.reference)
        return cls(image.reference, highest, counts.get(highest))


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    text: str
    reason: str

    @property
    def shown_text(self) -> str:
        """The line as messages show it: quoted, cut at 80 characters."""
        return _shown(self.text)

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}: {self.shown_text}"


@dataclass(frozen=True, slots=True)
class ReadResult:
    entries: tuple[VulnerableEntry, ...]
    problems: tuple[LineProblem, ...]

    @property
    def images(self) -> tuple[ImageReference, ...]:
        return tuple(entry.image for entry in self.entries)


# -- writing ---------------------------------------------------------------------------------


def listed_name(image: ImageReference) -> str:
    """How a line names ``image``: ``repository:tag`` as the seed did, or with the registry in
    front when the project would otherwise read back as a registry host."""
    if image.registry is not None and reads_as_host(image.repository):
        return f"{image.registry}/{image.short}"
    return image.short


def format_entry(entry: VulnerableEntry) -> str:
    """One line, without its newline: ``f"{head:<6} {image}"`` as the seed's script wrote."""
    if entry.severity is None or entry.count is None:
        return listed_name(entry.image)
    head = f"{int(entry.severity)}={entry.count},"
    return f"{head:<6} {listed_name(entry.image)}"


def render_vulnerable_list(entries: Iterable[VulnerableEntry]) -> str:
    """The whole file: one line per entry, each ending in ``\\n``."""
    return "".join(format_entry(entry) + "\n" for entry in entries)


def write_vulnerable_list(entries: Iterable[VulnerableEntry], stream: IO[str]) -> None:
    """Write entries to an open text stream (to write a file, pass
    :func:`render_vulnerable_list` output to :func:`careen.fileio.write_atomically`)."""
    for entry in entries:
        stream.write(format_entry(entry) + "\n")


def render_processing_line(image: Image | ImageReference | str, now: datetime) -> str:
    """The seed's log line: ``2017-12-08 08:58:01 Processing library/activemq:5.14.4``."""
    if isinstance(image, Image):
        name = image.reference.short
    elif isinstance(image, ImageReference):
        name = image.short
    else:
        name = image
    return f"{now.strftime(TIMESTAMP_FORMAT)} Processing {name}"


# -- reading ---------------------------------------------------------------------------------


def read_vulnerable_list(
    data: str | bytes | IO[str] | IO[bytes], *, source: str, strict: bool = False,
) -> ReadResult:
    """Read vulnerable.list from text, bytes or an open stream. ``source`` names it in errors
    (a path, ``-`` for standard input).

    A malformed line becomes a :class:`LineProblem` and is skipped; with ``strict=True`` the
    first one raises :class:`InputFileError` instead. A repeated image keeps its first line;
    the repeat is a problem too.
    """
    raw = data if isinstance(data, str | bytes) else data.read()
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    text = text.removeprefix("\ufeff")

    entries: list[VulnerableEntry] = []
    problems: list[LineProblem] = []
    first_line_of: dict[str, int] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        content = _strip_comment(line.removesuffix("\r")).strip()
        if not content:
            continue
        try:
            entry = _parse_line(content, number)
            key = entry.image.short
            if key in first_line_of:
                raise _LineError(f"{key} is listed already on line {first_line_of[key]}")
        except _LineError as error:
            problem = LineProblem(number, line.removesuffix("\r"), str(error))
            if strict:
                raise InputFileError(
                    source, f"{problem.reason}: {_shown(problem.text)}", line=number
                ) from None
            problems.append(problem)
            continue
        first_line_of[key] = number
        entries.append(entry)
    return ReadResult(tuple(entries), tuple(problems))


class _LineError(Exception):
    pass


def _strip_comment(line: str) -> str:
    match = _COMMENT.search(line)
    return line[: match.start()] if match else line


def _parse_line(content: str, number: int) -> VulnerableEntry:
    severity: Severity | None = None
    count: int | None = None
    image_text = content
    head_text, comma, rest = content.partition(",")
    if comma:
        severity, count = _parse_head(head_text)
        image_text = rest.strip()
        if not image_text:
            raise _LineError("no image after the comma")
    elif "=" in content.split(maxsplit=1)[0]:
        raise _LineError("expected a comma after the 'SEVERITY=COUNT' head")
    if len(image_text.split()) > 1:
        raise _LineError(
            "expected one image per line ('SEVERITY=COUNT, project/name:tag' or "
            "'project/name:tag')"
        )
    # ``harbor list`` shows the default tag as an empty one: ``library/x:``.
    if image_text.endswith(":"):
        image_text += "latest"
    try:
        image = ImageReference.parse(image_text)
    except InvalidReferenceError as error:
        raise _LineError(f"not an image reference ({error.reason})") from None
    return VulnerableEntry(image, severity, count, number)


def _parse_head(head: str) -> tuple[Severity, int]:
    match = _HEAD.match(head)
    if match is None:
        raise _LineError("the head before the comma must be 'SEVERITY=COUNT', e.g. '5=6'")
    if len(match["severity"]) > _MAX_DIGITS or len(match["count"]) > _MAX_DIGITS:
        raise _LineError("number too large in the 'SEVERITY=COUNT' head")
    severity_number, count = int(match["severity"]), int(match["count"])
    if not Severity.NONE <= severity_number <= Severity.CRITICAL:
        raise _LineError(
            f"severity {severity_number} is outside 1..6 (1 none, 2 unknown, 3 low, "
            "4 medium, 5 high, 6 critical)"
        )
    if count < 0:
        raise _LineError(f"count {count} is negative")
    return Severity(severity_number), count


def _shown(text: str) -> str:
    shown = text if len(text) <= _SHOWN_TEXT_LENGTH else text[: _SHOWN_TEXT_LENGTH - 3] + "..."
    return repr(shown)


# -- JSON ------------------------------------------------------------------------------------


def vulnerable_json(
    selection: Selection, policy: Policy, *, generated_at: datetime | None = None,
) -> dict[str, Any]:
    """The JSON form of a listing (pure: returns the document; the caller writes it).

    Holds the policy that judged, a summary of counts, and one record per listed image in
    ``selected``, ``not_scanned``, ``scan_failed``, ``scan_in_progress``, ``ignored`` and
    ``needs_details``; untagged artifacts the policy selects (superseded digests awaiting
    retention or GC, nothing to rebuild) under ``untagged``. Images that pass are only
    counted.
    """
    when = generated_at if generated_at is not None else datetime.now(UTC)
    groups: dict[str, list[Judged]] = {
        "selected": selection.selected,
        "not_scanned": selection.not_scanned,
        "scan_failed": selection.scan_failed,
        "scan_in_progress": selection.scan_in_progress,
        "ignored": selection.ignored,
        "needs_details": selection.needs_details,
        "untagged": selection.untagged,
    }
    summary = {name: len(items) for name, items in groups.items()}
    summary["passed"] = selection.passed_count
    summary["unscanned_not_listed"] = selection.unlisted_unscanned_count
    summary["total"] = selection.total
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "generated_at": when.isoformat(),
        "policy": {
            "rule": str(policy.rule),
            "fixable_only": policy.fixable_only,
            "ignore": list(policy.ignore),
            "unscanned": policy.unscanned.value,
        },
        "summary": summary,
    }
    for name, items in groups.items():
        document[name] = [image_record(image, verdict) for image, verdict in items]
    return document


def image_record(image: Image, verdict: Verdict) -> dict[str, Any]:
    """One image in the JSON form."""
    ref = image.reference
    scan = image.scan
    entry = VulnerableEntry.from_image(image)
    return {
        "image": ref.short,
        "reference": str(ref),
        "registry": ref.registry,
        "repository": ref.repository,
        "tag": ref.tag,
        "digest": image.digest,
        "scan_status": scan.status.value,
        "scanner": scan.scanner,
        "scanned_at": scan.scanned_at.isoformat() if scan.scanned_at else None,
        "counts_unit": scan.counts_unit,
        "counts": scan.counts.as_dict() if scan.counts is not None else None,
        "fixable": scan.fixable.as_dict() if scan.fixable is not None else None,
        "fixable_total": (
            scan.fixable_total if scan.fixable_total is not None
            else scan.fixable.total if scan.fixable is not None else None
        ),
        "severity": int(entry.severity) if entry.severity is not None else None,
        "count": entry.count,
        "verdict": {
            "kind": verdict.kind.value,
            "reason": verdict.reason,
            "matched": list(verdict.matched),
            "selected": verdict.selected,
        },
    }
