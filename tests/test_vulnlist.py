"""vulnerable.list: the seed's format byte for byte, tolerant reading, and the JSON form."""

from __future__ import annotations

import io
import re
import string
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from careen.errors import InputFileError, InvalidReferenceError
from careen.inventory import Image
from careen.policy import Policy, VerdictKind, select_vulnerable
from careen.reference import ImageReference
from careen.scan import ScanStatus, ScanSummary, Severity, SeverityCounts
from careen.vulnlist import (
    SCHEMA_VERSION,
    LineProblem,
    VulnerableEntry,
    format_entry,
    read_vulnerable_list,
    render_processing_line,
    render_vulnerable_list,
    vulnerable_json,
    write_vulnerable_list,
)
from tests.strategies import concatenations

SEED_LIST = Path(__file__).parent / "data" / "seed-vulnerable.list"
DIGEST = "sha256:" + "b" * 64


def make_image(ref: str, *, status: ScanStatus = ScanStatus.SUCCESS, **counts: int) -> Image:
    scan = ScanSummary(
        status=status, counts=SeverityCounts(**counts) if status is ScanStatus.SUCCESS else None,
        scanner="Trivy@0.50.1", scanned_at=datetime(2017, 12, 8, 0, 0, 5, tzinfo=UTC),
    )
    return Image(reference=ImageReference.parse(ref), digest=DIGEST, scan=scan)


def ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


# -- the seed's format -----------------------------------------------------------------------


def test_seed_example_round_trips_byte_for_byte() -> None:
    original = SEED_LIST.read_bytes()
    result = read_vulnerable_list(original.decode("utf-8"), source=str(SEED_LIST), strict=True)
    assert result.problems == ()
    assert len(result.entries) == 10
    assert render_vulnerable_list(result.entries).encode("utf-8") == original
    stream = io.StringIO()
    write_vulnerable_list(result.entries, stream)
    assert stream.getvalue().encode("utf-8") == original


def test_seed_example_reads_as_severity_count_and_image() -> None:
    entries = read_vulnerable_list(SEED_LIST.read_bytes(), source="seed").entries
    assert entries[0] == VulnerableEntry(ref("library/activemq:5.14.4"), Severity.HIGH, 6)
    assert entries[0].line == 1
    assert entries[1] == VulnerableEntry(ref("library/apache-php:latest"), Severity.HIGH, 12)
    assert [e.line for e in entries] == list(range(1, 11))


@pytest.mark.parametrize(
    ("entry", "line"),
    [
        (VulnerableEntry(ref("library/activemq:5.14.4"), Severity.HIGH, 6),
         "5=6,   library/activemq:5.14.4"),
        (VulnerableEntry(ref("library/httpd:2.4"), Severity.HIGH, 12),
         "5=12,  library/httpd:2.4"),
        (VulnerableEntry(ref("library/x:1"), Severity.CRITICAL, 123),
         "6=123, library/x:1"),
        (VulnerableEntry(ref("library/x:1"), Severity.MEDIUM, 12345),
         "4=12345, library/x:1"),
        (VulnerableEntry(ref("harbor.example.com/library/x:1"), Severity.LOW, 3),
         "3=3,   library/x:1"),
        (VulnerableEntry(ref("library/x")), "library/x:latest"),
        (VulnerableEntry(ref(f"library/x@{DIGEST}")), f"library/x@{DIGEST}"),
    ],
)
def test_format_entry(entry: VulnerableEntry, line: str) -> None:
    assert format_entry(entry) == line


@pytest.mark.parametrize(
    ("counts", "severity", "count"),
    [
        ({"high": 6, "medium": 9}, Severity.HIGH, 6),
        ({"critical": 1, "high": 6}, Severity.CRITICAL, 1),
        ({"medium": 3, "low": 20}, Severity.MEDIUM, 3),
        ({"unknown": 4, "none": 7}, Severity.UNKNOWN, 4),
        ({"none": 7}, Severity.NONE, 7),
        ({}, None, None),
    ],
)
def test_entry_from_image_uses_the_highest_non_zero_severity(
    counts: dict[str, int], severity: Severity | None, count: int | None,
) -> None:
    scan = ScanSummary(ScanStatus.SUCCESS, SeverityCounts(**counts))
    entry = VulnerableEntry.from_image(Image(ref("library/x:1"), DIGEST, scan))
    assert (entry.severity, entry.count) == (severity, count)


def test_entry_from_an_unscanned_image_is_a_plain_line() -> None:
    entry = VulnerableEntry.from_image(make_image("library/x:1", status=ScanStatus.NOT_SCANNED))
    assert format_entry(entry) == "library/x:1"


def test_entry_refuses_half_a_head_or_a_negative_count() -> None:
    with pytest.raises(ValueError, match="together"):
        VulnerableEntry(ref("library/x:1"), Severity.HIGH, None)
    with pytest.raises(ValueError, match="0 or more"):
        VulnerableEntry(ref("library/x:1"), Severity.HIGH, -1)


def test_processing_line_is_the_seeds_log_line() -> None:
    now = datetime(2017, 12, 8, 8, 58, 1)
    expected = "2017-12-08 08:58:01 Processing library/activemq:5.14.4"
    assert render_processing_line(make_image("library/activemq:5.14.4"), now) == expected
    assert render_processing_line(ref("harbor.abc.com/library/activemq:5.14.4"), now) == expected
    assert render_processing_line("library/activemq:5.14.4", now) == expected


# -- tolerant reading ------------------------------------------------------------------------


def test_tolerant_reading_of_hand_edited_files() -> None:
    text = (
        "\ufeff# images to rebuild\r\n"
        "5=6,\tlibrary/activemq:5.14.4\r\n"
        "\r\n"
        "   \t\r\n"
        "5=12,library/apache-php   # php is old\r\n"
        "  5 = 3 ,   library/elasticsearch-head:5.2.1  \r\n"
        "library/grafana:4.1.2\r\n"
        "library/httpd:\r\n"
        "\tlibrary/nginx\t\r\n"
        "harbor.abc.com/library/redis:3.2\r\n"
    )
    result = read_vulnerable_list(text, source="vulnerable.list")
    assert result.problems == ()
    assert [(format_entry(e), e.line) for e in result.entries] == [
        ("5=6,   library/activemq:5.14.4", 2),
        ("5=12,  library/apache-php:latest", 5),
        ("5=3,   library/elasticsearch-head:5.2.1", 6),
        ("library/grafana:4.1.2", 7),
        ("library/httpd:latest", 8),
        ("library/nginx:latest", 9),
        ("library/redis:3.2", 10),
    ]
    assert result.entries[-1].image.registry == "harbor.abc.com"


def test_malformed_lines_are_reported_with_their_numbers_and_skipped() -> None:
    text = "\n".join([
        "5=6,   library/activemq:5.14.4",    # 1 fine
        "5=6,   Library/Bad:1",              # 2 upper case
        "7=1,   library/x:1",                # 3 severity out of range
        "0=1,   library/x:2",                # 4 severity out of range
        "5=-2,  library/x:3",                # 5 negative count
        "high=2, library/x:4",               # 6 bad head
        "5=2,",                              # 7 no image
        "5=2 library/x:5",                   # 8 no comma
        "library/x:6 library/x:7",           # 9 two images
        "5=1,   library/activemq:5.14.4",    # 10 duplicate
        "library/x:1#not-a-comment",         # 11 '#' glued to the image
        "library/ok:1",                      # 12 fine
    ]) + "\n"
    result = read_vulnerable_list(text, source="vulnerable.list")
    assert [e.image.short for e in result.entries] == ["library/activemq:5.14.4",
                                                        "library/ok:1"]
    assert [p.line for p in result.problems] == list(range(2, 12))
    reasons = {p.line: p.reason for p in result.problems}
    assert "lower-case" in reasons[2]
    assert "severity 7 is outside 1..6" in reasons[3]
    assert "severity 0 is outside 1..6" in reasons[4]
    assert "count -2 is negative" in reasons[5]
    assert "SEVERITY=COUNT" in reasons[6]
    assert "no image after the comma" in reasons[7]
    assert "expected a comma" in reasons[8]
    assert "one image per line" in reasons[9]
    assert reasons[10] == "library/activemq:5.14.4 is listed already on line 1"
    assert "not an image reference" in reasons[11]
    assert result.problems[0] == LineProblem(2, "5=6,   Library/Bad:1", reasons[2])
    assert str(result.problems[0]).startswith("line 2: ")


def test_strict_mode_raises_for_the_first_problem() -> None:
    text = "library/ok:1\r\n\r\n5=9,  library/x:1\r\n7=1, library/y:1\r\nBAD\r\n"
    with pytest.raises(InputFileError) as caught:
        read_vulnerable_list(text, source="/srv/vulnerable.list", strict=True)
    assert caught.value.line == 4
    assert caught.value.path == "/srv/vulnerable.list"
    assert str(caught.value).startswith("/srv/vulnerable.list:4: severity 7 is outside 1..6")
    assert "'7=1, library/y:1'" in str(caught.value)


def test_strict_mode_rejects_duplicates() -> None:
    with pytest.raises(InputFileError, match=r"^f:3: library/x:latest is listed already on "
                                             r"line 1"):
        read_vulnerable_list("library/x\nlibrary/x:1\nlibrary/x:latest\n", source="f",
                             strict=True)


def test_reads_streams_and_bytes_with_invalid_utf8() -> None:
    assert read_vulnerable_list(io.StringIO("library/x:1\n"), source="-").images == (
        ref("library/x:1"),
    )
    result = read_vulnerable_list(io.BytesIO(b"library/x:1\nlibrary/\xff:1\n"), source="-")
    assert result.images == (ref("library/x:1"),)
    assert [p.line for p in result.problems] == [2]


def test_empty_input_gives_nothing() -> None:
    assert read_vulnerable_list("", source="f") == read_vulnerable_list("\n\n# x\n", source="f")
    assert read_vulnerable_list("", source="f").entries == ()


def _content_lines(text: str) -> set[int]:
    """Line numbers that are neither blank nor only a comment (a '#' at the start of the line
    or after white space begins a comment)."""
    numbers = set()
    for number, line in enumerate(text.removeprefix("\ufeff").split("\n"), start=1):
        if re.split(r"(?<!\S)#", line, maxsplit=1)[0].strip():
            numbers.add(number)
    return numbers


_LINE_PARTS = [
    "5=6,", "5=12,  ", "7=1,", "5=-1,", "x=1,", "library/x:1", "library/y", "library/z:",
    "Library/A:1", "# comment", " ", "\t", "\r", "#", ",", "=", "\ufeff", "library/x:1#a",
]
_lines_text = st.lists(concatenations(_LINE_PARTS, max_size=4), max_size=12).map("\n".join)


@settings(max_examples=300)
@given(st.one_of(st.text(max_size=200), _lines_text))
def test_arbitrary_text_never_raises_and_every_line_is_accounted_for(text: str) -> None:
    result = read_vulnerable_list(text, source="fuzz")
    entry_lines = {e.line for e in result.entries}
    problem_lines = {p.line for p in result.problems}
    assert len(entry_lines) == len(result.entries)
    assert entry_lines.isdisjoint(problem_lines)
    assert entry_lines | problem_lines == _content_lines(text)


# Names built from alphabets rather than ``st.from_regex`` (the same strings; generating and
# rejecting through the regex was most of these tests' seconds).
_LOWER_DIGITS = string.ascii_lowercase + string.digits


def _word(min_size: int, max_size: int, alphabet: str = _LOWER_DIGITS) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=min_size, max_size=max_size)


def _joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


#: ``[a-z0-9][a-z0-9._-]{0,10}``
_tags = _joined(_word(1, 1), _word(0, 10, _LOWER_DIGITS + "._-"))
#: ``[a-z0-9]{1,8}/[a-z0-9]{1,8}(-[a-z0-9]{1,5})?``
_repos = _joined(_word(1, 8), st.just("/"), _word(1, 8),
                 st.one_of(st.just(""), _joined(st.just("-"), _word(1, 5))))
_entries = st.builds(
    lambda repo, tag, head: VulnerableEntry(ImageReference.of(repo, tag=tag), *head),
    _repos, _tags,
    st.one_of(st.just((None, None)), st.tuples(st.sampled_from(Severity),
                                                st.integers(0, 10**6))),
)


@given(st.lists(_entries, max_size=20, unique_by=lambda e: e.image.short))
def test_written_entries_read_back_equal(entries: list[VulnerableEntry]) -> None:
    text = render_vulnerable_list(entries)
    result = read_vulnerable_list(text, source="round-trip", strict=True)
    assert list(result.entries) == entries
    assert render_vulnerable_list(result.entries) == text


# -- JSON ------------------------------------------------------------------------------------


def test_json_form_lists_every_group_with_counts_and_verdicts() -> None:
    fixable_image = make_image("library/grafana:4.1.2", high=6, medium=1)
    fixable_image = Image(fixable_image.reference, fixable_image.digest,
                          fixable_image.scan.with_fixable(SeverityCounts(high=2)))
    images = [
        make_image("harbor.abc.com/library/activemq:5.14.4", high=6, low=2),
        fixable_image,
        make_image("library/alpine:3.6", medium=2),
        make_image("library/new:1", status=ScanStatus.NOT_SCANNED),
        make_image("library/broken:1", status=ScanStatus.ERROR),
        make_image("library/busy:1", status=ScanStatus.PENDING),
        make_image("library/debug-tools:1", critical=1),
        # A superseded digest Harbor keeps untagged until retention or GC: no line, own key.
        make_image("library/activemq@sha256:" + "9" * 64, high=6, low=2),
    ]
    policy = Policy.from_settings(None, ignore=["library/debug-*"])
    selection = select_vulnerable(images, policy)
    when = datetime(2017, 12, 8, 8, 58, 1, tzinfo=UTC)
    document = vulnerable_json(selection, policy, generated_at=when)

    assert document["schema_version"] == SCHEMA_VERSION == 1
    assert document["generated_at"] == "2017-12-08T08:58:01+00:00"
    assert document["policy"] == {
        "rule": "critical > 0 or high > 0 or medium >= 3", "fixable_only": False,
        "ignore": ["library/debug-*"], "unscanned": "report",
    }
    assert document["summary"] == {
        "selected": 2, "not_scanned": 1, "scan_failed": 1, "scan_in_progress": 1,
        "ignored": 1, "needs_details": 0, "untagged": 1, "passed": 1,
        "unscanned_not_listed": 0, "total": 8,
    }
    first = document["selected"][0]
    assert first == {
        "image": "library/activemq:5.14.4",
        "reference": "harbor.abc.com/library/activemq:5.14.4",
        "registry": "harbor.abc.com",
        "repository": "library/activemq",
        "tag": "5.14.4",
        "digest": DIGEST,
        "scan_status": "success",
        "scanner": "Trivy@0.50.1",
        "scanned_at": "2017-12-08T00:00:05+00:00",
        "counts_unit": "vulnerabilities",
        "counts": {"critical": 0, "high": 6, "medium": 0, "low": 2, "unknown": 0, "none": 0},
        "fixable": None,
        "fixable_total": None,
        "severity": 5,
        "count": 6,
        "verdict": {"kind": "violates", "reason": "high 6 > 0", "matched": ["high 6 > 0"],
                    "selected": True},
    }
    second = document["selected"][1]
    assert second["fixable"] == {"critical": 0, "high": 2, "medium": 0, "low": 0, "unknown": 0,
                                 "none": 0}
    assert second["fixable_total"] == 2
    assert [r["image"] for r in document["not_scanned"]] == ["library/new:1"]
    assert document["not_scanned"][0]["counts"] is None
    assert document["not_scanned"][0]["verdict"]["kind"] == VerdictKind.NOT_SCANNED.value
    assert [r["scan_status"] for r in document["scan_failed"]] == ["error"]
    assert [r["scan_status"] for r in document["scan_in_progress"]] == ["pending"]
    assert document["ignored"][0]["verdict"]["reason"] == (
        "ignored by policy.ignore 'library/debug-*'"
    )
    assert document["needs_details"] == []
    assert [(r["image"], r["tag"]) for r in document["untagged"]] == [
        ("library/activemq@sha256:" + "9" * 64, None)]
    assert all(r["tag"] is not None for r in document["selected"])


# -- projects named like a host --------------------------------------------------------------


@pytest.mark.parametrize("project", ["team.a", "localhost", "cdn.example.com"])
@pytest.mark.parametrize("below", ["app", "team/app"])
def test_a_project_that_reads_as_a_host_is_written_with_its_registry(
        project: str, below: str) -> None:
    image = ImageReference.of(f"{project}/{below}", tag="1.0", registry="harbor.example.com")
    entry = VulnerableEntry(image, Severity.HIGH, 3)
    line = format_entry(entry)
    assert line == f"5=3,   harbor.example.com/{project}/{below}:1.0"
    [read] = read_vulnerable_list(line + "\n", source="vulnerable.list", strict=True).entries
    assert read == entry
    assert (read.image.registry, read.image.repository) == ("harbor.example.com",
                                                            f"{project}/{below}")


def test_other_projects_are_written_as_the_seed_wrote_them() -> None:
    image = ImageReference.of("library/app", tag="1", registry="harbor.example.com")
    assert format_entry(VulnerableEntry(image, Severity.MEDIUM, 4)) == "4=4,   library/app:1"
    # A project whose name has '-' or '_' but no '.' is no host.
    image = ImageReference.of("team-a_b/app", tag="1", registry="harbor.example.com")
    assert format_entry(VulnerableEntry(image)) == "team-a_b/app:1"


def test_a_line_with_a_registry_keeps_it() -> None:
    text = "5=6, harbor.example.com/library/app:1\nregistry.abc.com:5000/team.a/x:2\n"
    result = read_vulnerable_list(text, source="vulnerable.list", strict=True)
    assert [(e.image.registry, e.image.repository) for e in result.entries] == [
        ("harbor.example.com", "library/app"), ("registry.abc.com:5000", "team.a/x")]


def test_an_ambiguous_image_without_a_registry_cannot_be_listed() -> None:
    key = ImageReference("team.a/app", "1")  # no registry: 'team.a' would read as the host
    with pytest.raises(InvalidReferenceError, match="reads as a registry host"):
        VulnerableEntry(key)


#: ``[a-z0-9]{1,6}\.[a-z0-9]{1,6}|localhost``
_hostlike_projects = st.one_of(_joined(_word(1, 6), st.just("."), _word(1, 6)),
                               st.just("localhost"))


@given(st.lists(st.one_of(_repos, st.builds(lambda p, r: f"{p}/{r}", _hostlike_projects,
                                            _repos)),
                max_size=10, unique=True), _tags)
def test_any_harbor_listing_reads_back_to_the_same_repositories(
        repositories: list[str], tag: str) -> None:
    entries = [VulnerableEntry(ImageReference.of(r, tag=tag, registry="harbor.example.com"))
               for r in repositories]
    result = read_vulnerable_list(render_vulnerable_list(entries), source="x", strict=True)
    assert [e.image.repository for e in result.entries] == repositories
    assert all(e.image.registry in (None, "harbor.example.com") for e in result.entries)
