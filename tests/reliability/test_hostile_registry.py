"""A broken or malicious registry never gets a name into a list, a report or a command.

The hostile Harbor below answers Harbor's list calls with repository names and tags Harbor
itself would refuse (``;``, ``$(..)``, backticks, spaces, ``../``, newlines, 10,000
characters, raw bytes that are not UTF-8) next to good ones. Each bad one must be skipped with
a one-line warning that quotes it escaped and shortened; the good artifacts must all be there;
no bad one may reach vulnerable.list, the JSON form, or a builder's argument list.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from careen.builders.buildah import BuildahBuilder
from careen.builders.docker import DockerBuilder
from careen.errors import CareenError, ExitCode, InvalidReferenceError
from careen.events import RecordingObserver
from careen.inventory import Artifact
from careen.plan import Plan, PlanStep, StepReason
from careen.policy import Policy
from careen.reference import ImageReference
from careen.registries.harbor_v2 import HarborV2Client
from careen.registries.http import HarborSettings
from careen.registries.text import shown
from careen.scan import ScanSummary
from careen.update import UpdateOptions, build_request
from careen.vulnerable import find_vulnerable
from careen.vulnlist import (
    VulnerableEntry,
    read_vulnerable_list,
    render_vulnerable_list,
    vulnerable_json,
)

from .conftest import Careen
from .support import FUZZ, Answer, loopback_server

MIME = "application/vnd.security.vulnerability.report; version=1.1"
#: Stands for bytes that are not UTF-8 in a body: replaced on the wire (see ``encode``).
NOT_UTF8 = "\x00NOT-UTF8\x00"
LONG = "a" * 10_000

#: Repository names (below the project) a hostile server sends.
HOSTILE_NAMES = (
    "app;rm -rf /", "$(id)", "`id`", "app name", "../../etc/passwd", "app\nevil",
    "app\r\nX-Injected: 1", LONG, f"caf{NOT_UTF8}", "app|sh", "app&&id", "-rf", "APP",
    "app\x1b[31mred", "app/../../x", "app\u202eevil",
)
#: Tags a hostile server sends on otherwise good artifacts.
HOSTILE_TAGS = (
    "1.0;rm -rf /", "$(id)", "`id`", "a b", "../x", "x\ny", "t" * 10_000, "-rf", "--push",
    f"v{NOT_UTF8}", ".hidden", "1.0&&id", "",
)
#: What none of the outputs may contain, whatever the escaping.
#: (Line breaks are checked by reading each output back: one entry per line.)
FORBIDDEN = (";", "$(", "`", "..", "\r", "&&", "|", " -rf", "--push", LONG[:200],
             "NOT-UTF8", "\ufffd", "\x1b", "\u202e", "X-Injected")


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


def overview(high: int) -> dict[str, Any]:
    counts = {"High": high, "Medium": 1} if high else {"Low": 1}
    return {MIME: {"report_id": "r", "scan_status": "Success", "severity": "High",
                   "summary": {"total": sum(counts.values()), "fixable": 0, "summary": counts},
                   "start_time": "2024-05-02T10:12:05Z", "end_time": "2024-05-02T10:12:17Z",
                   "scanner": {"name": "Trivy", "vendor": "Aqua Security",
                               "version": "v0.50.1"}}}


def artifact_json(repository: str, n: int, tags: list[str], *, high: int = 1) -> dict[str, Any]:
    return {"id": n, "digest": digest(n), "repository_name": repository,
            "manifest_media_type": "application/vnd.docker.distribution.manifest.v2+json",
            "media_type": "application/vnd.docker.container.image.v1+json",
            "push_time": "2024-05-02T10:12:00Z", "size": 1000, "type": "IMAGE",
            "tags": [{"id": n * 100 + i, "name": t, "immutable": False}
                     for i, t in enumerate(tags)],
            "scan_overview": overview(high)}


@dataclass(frozen=True)
class Good:
    repository: str
    digest: str
    tags: tuple[str, ...]


class HostileHarbor:
    """Harbor's list calls (2.14: per project; ``per_repository``: 2.11's way) over a fleet
    where every hostile name and tag sits beside good artifacts, all of them vulnerable (so
    a bad one that slipped through would be selected and written out)."""

    def __init__(self, *, per_repository: bool) -> None:
        self.per_repository = per_repository
        self.version = "v2.11.0" if per_repository else "v2.14.0"
        self.repositories: dict[str, list[dict[str, Any]]] = {}
        self.good: list[Good] = []
        n = 1
        for index in range(3):
            name = f"library/good{index}"
            self.repositories[name] = [artifact_json(name, n, [f"{index}.0", "latest"])]
            self.good.append(Good(name, digest(n), (f"{index}.0", "latest")))
            n += 1
        for bad in HOSTILE_NAMES:
            name = f"library/{bad}"
            self.repositories[name] = [artifact_json(name, n, ["1.0"])]
            n += 1
        # One good repository whose artifacts carry every hostile tag: the good tag stays,
        # the bad ones go; an artifact with only bad tags goes entirely.
        mixed = "library/mixed"
        self.repositories[mixed] = [
            artifact_json(mixed, n, ["ok", *HOSTILE_TAGS]),
            artifact_json(mixed, n + 1, list(HOSTILE_TAGS)),
        ]
        self.good.append(Good(mixed, digest(n), ("ok",)))

    @property
    def artifacts(self) -> list[dict[str, Any]]:
        return [a for items in self.repositories.values() for a in items]

    def answer(self, method: str, raw_path: str) -> tuple[int, bytes, dict[str, str]]:
        parts = urlsplit(raw_path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        if path == "/api/v2.0/systeminfo":
            return self.page({"harbor_version": self.version, "auth_mode": "db_auth"})
        if path == "/api/v2.0/projects":
            return self.paged([{"name": "library", "project_id": 1}], query)
        if path == "/api/v2.0/projects/library/artifacts" and not self.per_repository:
            return self.paged(self.artifacts, query)
        if path == "/api/v2.0/projects/library/repositories" and self.per_repository:
            return self.paged([{"name": name, "artifact_count": len(items)}
                               for name, items in self.repositories.items()], query)
        prefix = "/api/v2.0/projects/library/repositories/"
        if self.per_repository and path.startswith(prefix) and path.endswith("/artifacts"):
            below = unquote(unquote(path[len(prefix):-len("/artifacts")]))
            items = self.repositories.get(f"library/{below}")
            if items is not None:
                return self.paged(items, query)
        body = {"errors": [{"code": "NOT_FOUND", "message": "not found"}]}
        return 404, json.dumps(body).encode(), {"Content-Type": "application/json"}

    def page(self, body: Any, headers: dict[str, str] | None = None) -> tuple[
            int, bytes, dict[str, str]]:
        return 200, encode(body), {"Content-Type": "application/json", **(headers or {})}

    def paged(self, items: list[Any], query: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
        page, size = int(query.get("page", "1")), int(query.get("page_size", "10"))
        return self.page(items[(page - 1) * size: page * size],
                         {"X-Total-Count": str(len(items))})

    def transport(self) -> httpx.MockTransport:
        def handle(request: httpx.Request) -> httpx.Response:
            status, body, headers = self.answer(request.method,
                                                request.url.raw_path.decode("ascii"))
            return httpx.Response(status, content=body, headers=headers)
        return httpx.MockTransport(handle)

    def route(self, raw_path: str) -> Answer:
        status, body, headers = self.answer("GET", raw_path)
        return Answer(status, body, tuple(headers.items()))


def encode(body: Any) -> bytes:
    """JSON as a hostile server may send it: the NOT_UTF8 marker becomes raw 0xff 0xfe."""
    text = json.dumps(body, ensure_ascii=False)
    return text.encode("utf-8").replace(json.dumps(NOT_UTF8)[1:-1].encode(), b"\xff\xfe")


def settings(url: str = "https://harbor.example.com") -> HarborSettings:
    return HarborSettings(url=url, user="admin", password=SecretStr("pw"), page_size=7,
                          max_attempts=1)


def assert_clean(text: str, where: str) -> None:
    for bad in FORBIDDEN:
        assert bad not in text, f"{bad!r} reached {where}"


def expected_warning(value: str) -> str:
    """How a skipped name is quoted: the text a hostile server sent after the client's
    decoding (bytes that are not UTF-8 become U+FFFD), escaped and shortened."""
    return shown(value.replace(NOT_UTF8, "\ufffd\ufffd"))


# -- the client -------------------------------------------------------------------------------


@pytest.fixture(params=[False, True], ids=["harbor-2.14", "harbor-2.11"])
def hostile(request: pytest.FixtureRequest) -> HostileHarbor:
    return HostileHarbor(per_repository=request.param)


async def test_bad_names_are_skipped_with_a_warning_and_the_rest_is_intact(
        hostile: HostileHarbor) -> None:
    observer = RecordingObserver()
    async with HarborV2Client(settings(), observer=observer,
                              transport=hostile.transport()) as client:
        seen = [a async for a in client.artifacts()]
    assert sorted((a.repository, a.digest, a.tags) for a in seen) == sorted(
        (g.repository, g.digest, g.tags) for g in hostile.good)
    warnings = observer.of_kind("warning")
    for bad in HOSTILE_NAMES:
        quoted = expected_warning(f"library/{bad}")
        assert any(quoted in w for w in warnings), f"no warning names {quoted}"
    for bad in HOSTILE_TAGS:
        quoted = expected_warning(bad)
        assert any(f"skipped tag {quoted}" in w for w in warnings), f"no warning for {quoted}"
    assert any(w.endswith("none of its tags is valid") for w in warnings)
    for warning in warnings:
        # One line each, bounded, and nothing a terminal would act on.
        assert warning.isprintable() or "\ufffd" in warning, repr(warning)
        assert len(warning) < 400, len(warning)
        assert "\n" not in warning and "\r" not in warning and "\x1b" not in warning


async def test_nothing_bad_reaches_the_list_the_json_or_a_build(
        hostile: HostileHarbor, tmp_path: Path) -> None:
    policy = Policy()
    async with HarborV2Client(settings(), transport=hostile.transport()) as client:
        selection = await find_vulnerable(client, policy)
    selected = [image for image, _ in selection.selected]
    # Every good image is vulnerable, so it is selected; nothing else is.
    assert sorted(i.reference.short for i in selected) == sorted(
        f"{g.repository}:{t}" for g in hostile.good for t in g.tags)
    listing = render_vulnerable_list(VulnerableEntry.from_image(i) for i in selected)
    assert_clean(listing, "vulnerable.list")
    document = json.dumps(vulnerable_json(selection, policy), ensure_ascii=False)
    assert_clean(document, "the JSON form")
    # What the list says is what a later run reads back: every line an entry.
    assert not read_vulnerable_list(listing, source="vulnerable.list", strict=True).problems

    for image in selected:
        for argv in argv_for(image.reference, tmp_path):
            assert_clean(" ".join(argv), "a builder's argv")
            target = f"harbor.example.com/{image.reference.short}"
            assert target in argv


def argv_for(image: ImageReference, root: Path) -> Iterator[list[str]]:
    """The argument lists the builders would run to rebuild ``image`` (nothing is run)."""
    step = PlanStep(image=image, level=0, reason=StepReason.SELECTED, detail="test",
                    parents=(), folder="app/1.0", dockerfile="app/1.0/Dockerfile")
    plan = Plan(steps=(step,), skipped=(), tree_root=str(root),
                created_at=datetime.now(UTC))
    options = UpdateOptions(registry="harbor.example.com", run_id="run-1", log_dir=root)
    request = build_request(step, plan, options, datetime.now(UTC))
    docker, buildah = DockerBuilder(), BuildahBuilder()
    yield docker.build_argv(request, buildx=False)
    yield docker.build_argv(request, buildx=True)
    yield docker.push_argv(request)
    yield buildah.build_argv(request)
    yield buildah.push_argv(request, digestfile=root / "digest")


#: What a line of ``careen vulnerable``'s stderr starts with (a broken-up name would not).
STDERR_LINE = re.compile(r"warning: |\d{4}-\d\d-\d\d \d\d:\d\d:\d\d Processing "
                         r"library/[a-z0-9]+:[\w.-]+\Z|\d+ images judged by ")


def test_the_cli_warns_and_writes_only_good_images(careen: Careen, tmp_path: Path) -> None:
    hostile = HostileHarbor(per_repository=False)
    with loopback_server(hostile.route) as server:
        result = careen("vulnerable", "-o", "-", "--json", "out.json",
                        "--harbor-url", server.url)
    assert result.code == ExitCode.FAILED  # the good images break the policy
    listed = read_vulnerable_list(result.out, source="stdout", strict=True)
    assert sorted(e.image.short for e in listed.entries) == sorted(
        f"{g.repository}:{t}" for g in hostile.good for t in g.tags)
    assert_clean(result.out, "stdout")
    assert_clean((tmp_path / "out.json").read_text(encoding="utf-8"), "the JSON file")
    # stderr: one line per event; no line made by a hostile name.
    for line in result.err.splitlines():
        assert STDERR_LINE.match(line), line
    for bad in HOSTILE_NAMES:
        assert expected_warning(f"library/{bad}") in result.err


# -- references and argv, for any input -----------------------------------------------------


def hostile_text() -> st.SearchStrategy[str]:
    """Reference-like text with shell syntax, paths, controls and unicode mixed in."""
    pieces = st.sampled_from([
        "library", "app", "/", ":", "@", "sha256:", "a" * 64, ";", "$(", ")", "`", " ", "\n",
        "..", "-", "--", "&&", "|", ">", "<", "'", '"', "\\", "\x00", "\x1b", "\u202e", "é",
        "1.0", "latest", "harbor.example.com", ":5000", "*", "?", "[", "~", "#", "%2F",
    ])
    return st.one_of(st.text(max_size=80), st.lists(pieces, max_size=12).map("".join))


SHELL_META = frozenset(";$`|&<>()'\"\\ \t\n*?[]{}~#!")


@FUZZ
@given(hostile_text())
def test_only_well_formed_text_becomes_a_reference(text: str) -> None:
    try:
        reference = ImageReference.parse(text)
    except InvalidReferenceError:
        return
    shown_text = str(reference)
    assert not SHELL_META & set(shown_text), shown_text
    assert not shown_text.startswith("-")
    assert shown_text.isascii() and shown_text.isprintable()
    assert ".." not in reference.repository.split("/")
    assert ImageReference.parse(shown_text) == reference


@FUZZ
@given(hostile_text(), hostile_text())
def test_parts_from_a_registry_are_checked_like_text(repository: str, tag: str) -> None:
    try:
        reference = ImageReference.of(repository, tag=tag)
    except CareenError:
        return
    assert reference.repository == repository and reference.tag == tag
    assert not SHELL_META & set(str(reference))


def test_builders_put_the_image_in_one_argv_item(tmp_path: Path) -> None:
    image = ImageReference.parse("library/team/app:1.0-r1")
    for argv in argv_for(image, tmp_path):
        target = "harbor.example.com/library/team/app:1.0-r1"
        assert target in argv or f"docker://{target}" in argv
        assert all(isinstance(item, str) for item in argv)


# -- the hand-over file ----------------------------------------------------------------------


HOSTILE_LINES = (
    "library/app;rm -rf /", "5=3, library/app;rm -rf /", "$(id)", "5=1, $(id)", "`id`",
    "../../etc", "5=2, ../../etc/passwd", "library/app:1.0 ; reboot", "library/app:$(id)",
    "library/app:1.0\x00", "5=1, library/app:1.0 && id", "-rf", "5=1, --push",
    "library/" + LONG, "library/app:\u202e1.0", "library/\x1b[31mapp",
)


@pytest.mark.parametrize("strict", [False, True])
def test_hostile_vulnerable_list_lines_are_problems_never_entries(strict: bool) -> None:
    good = "5=6,   library/activemq:5.14.4"
    text = "\n".join([good, *HOSTILE_LINES, "library/ok:1"]) + "\n"
    if strict:
        with pytest.raises(CareenError) as caught:
            read_vulnerable_list(text, source="vulnerable.list", strict=True)
        assert caught.value.exit_code == ExitCode.USAGE
        assert "vulnerable.list:2:" in str(caught.value)
        assert "\n" not in str(caught.value)
        return
    result = read_vulnerable_list(text, source="vulnerable.list")
    assert [e.image.short for e in result.entries] == ["library/activemq:5.14.4",
                                                       "library/ok:1"]
    assert [p.line for p in result.problems] == list(range(2, 2 + len(HOSTILE_LINES)))
    for problem in result.problems:
        message = str(problem)
        assert "\n" not in message and "\x00" not in message and "\x1b" not in message
        assert len(message) < 300


def test_hostile_bytes_in_vulnerable_list_are_problems() -> None:
    data = b"5=6, library/ok:1\n5=1, library/caf\xff\xfe:1\n\xff\xfe\xfd\nlibrary/x:1\n"
    result = read_vulnerable_list(data, source="vulnerable.list")
    assert [e.image.short for e in result.entries] == ["library/ok:1", "library/x:1"]
    assert [p.line for p in result.problems] == [2, 3]


def test_artifact_model_only_holds_checked_names() -> None:
    """The adapter builds Artifacts only from names that passed the reference check, so
    every Image an Artifact yields has a parsed reference."""
    from careen.registries.harbor_v2 import artifact_from_json

    warnings: list[str] = []
    for bad in HOSTILE_NAMES:
        raw = artifact_json(f"library/{bad}", 1, ["1.0"])
        assert artifact_from_json(raw, registry="harbor.example.com", warn=warnings.append) is None
    kept = artifact_from_json(artifact_json("library/app", 2, ["1.0", *HOSTILE_TAGS]),
                              registry="harbor.example.com", warn=warnings.append)
    assert isinstance(kept, Artifact)
    assert [i.reference for i in kept.images()] == [
        ImageReference.parse("harbor.example.com/library/app:1.0")]
    assert len(warnings) == len(HOSTILE_NAMES) + len(HOSTILE_TAGS)


# -- names that read two ways, references built from parts ---------------------------------


@pytest.mark.parametrize("project", ["team.a", "localhost", "cdn.example.com"])
def test_a_project_named_like_a_host_survives_vulnerable_list(project: str) -> None:
    # Harbor accepts these project names (^[a-z0-9]+(?:[._-][a-z0-9]+)*$), so the adapter
    # lists their images; a later `update` reads vulnerable.list to know where to push.
    image = ImageReference.of(f"{project}/app", tag="1", registry="harbor.example.com")
    listing = render_vulnerable_list([VulnerableEntry(image)])
    [entry] = read_vulnerable_list(listing, source="vulnerable.list", strict=True).entries
    assert entry.image.registry in (None, "harbor.example.com")
    assert entry.image.repository == f"{project}/app"


def test_a_reference_cannot_be_built_unchecked() -> None:
    with pytest.raises(InvalidReferenceError):
        ImageReference("library/app", "1", None, "evil;host")
    # Every hostile part a server sends, through the constructor as through parse.
    for bad in HOSTILE_NAMES:
        with pytest.raises(InvalidReferenceError):
            ImageReference(f"library/{bad}", "1", None, "harbor.example.com")
    for bad in HOSTILE_TAGS:
        with pytest.raises(InvalidReferenceError):
            ImageReference("library/app", bad, None, "harbor.example.com")
    for host in ("evil;$(id)", "a b", "-rf", "h.io/x", "harbor", "h.io:99999999", LONG):
        with pytest.raises(InvalidReferenceError):
            ImageReference("library/app", "1", None, host)
    # The artifact model builds its references with the constructor: it cannot hold one
    # that was never checked either.
    artifact = Artifact("library/$(id)", digest(1), ("1.0",), ScanSummary.not_scanned())
    with pytest.raises(InvalidReferenceError):
        list(artifact.images())
