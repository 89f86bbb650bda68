"""What a Dockerfile's FROM / ARG / COPY --from lines say about its parent images."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from careen.errors import ExitCode, InputFileError
from careen.reference import ImageReference
from careen.tree.dockerfile import Dockerfile, parse_dockerfile, read_dockerfile
from tests.strategies import pieces_or


def parse(text: str, build_args: Mapping[str, str] | None = None) -> Dockerfile:
    return parse_dockerfile(text, build_args=build_args or {}, source="app/1.0/Dockerfile")


def parents(text: str, build_args: Mapping[str, str] | None = None) -> list[str]:
    return [str(p) for p in parse(text, build_args).parents]


def test_simple_from_is_the_parent() -> None:
    parsed = parse("FROM library/jre:8u191\nRUN true\n")
    assert parents("FROM library/jre:8u191\n") == ["library/jre:8u191"]
    assert parsed.stages[0].reference == ImageReference.parse("library/jre:8u191")
    assert parsed.stages[0].line == 1
    assert parsed.unresolved == ()


def test_lower_case_instructions_and_comments() -> None:
    text = "# a comment\n\n  # indented comment\nfrom alpine:3.19 as Build\nrun echo hi\n"
    parsed = parse(text)
    assert parents(text) == ["alpine:3.19"]
    assert parsed.stages[0].name == "build"
    assert parsed.stages[0].line == 4


def test_from_scratch_has_no_parent() -> None:
    parsed = parse("FROM scratch\nCOPY busybox /bin/busybox\n")
    assert parsed.parents == ()
    assert parsed.stages[0].is_scratch
    assert parsed.unresolved == ()


@pytest.mark.parametrize(
    ("text", "build_args", "expected"),
    [
        ("ARG REGISTRY=registry.example.com\nFROM ${REGISTRY}/library/base:1.0\n", {},
         "registry.example.com/library/base:1.0"),
        ("ARG REGISTRY=registry.example.com\nFROM $REGISTRY/library/base:1.0\n",
         {"REGISTRY": "127.0.0.1:5555"}, "127.0.0.1:5555/library/base:1.0"),
        ("ARG TAG\nFROM library/base:${TAG:-1.0}\n", {}, "library/base:1.0"),
        ("ARG TAG=\nFROM library/base:${TAG:-1.0}\n", {}, "library/base:1.0"),
        ("ARG TAG\nFROM library/base:${TAG:-1.0}\n", {"TAG": "2.0"}, "library/base:2.0"),
        ("ARG TAG\nFROM library/base:${TAG-1.0}\n", {}, "library/base:1.0"),
        ("ARG TAG=\nFROM library/base${TAG-:1.0}\n", {}, "library/base:latest"),
        ("ARG SLIM=yes\nFROM library/base:1.0${SLIM:+-slim}\n", {}, "library/base:1.0-slim"),
        ("ARG SLIM\nFROM library/base:1.0${SLIM:+-slim}\n", {}, "library/base:1.0"),
        ("ARG SLIM=\nFROM library/base:1.0${SLIM+-slim}\n", {}, "library/base:1.0-slim"),
        ("ARG V=1.0\nARG IMG=library/base:${V}\nFROM $IMG\n", {}, "library/base:1.0"),
        ("ARG A\nFROM library/base:${A:-${B:-1.0}}\n", {}, "library/base:1.0"),
        ("ARG NAME=base VERSION=1.0\nFROM library/${NAME}:${VERSION}\n", {},
         "library/base:1.0"),
        ('ARG NAME="base"\nFROM library/${NAME}:1.0\n', {}, "library/base:1.0"),
        ("FROM library/base-${TARGETARCH}:1\n", {"TARGETARCH": "arm64"},
         "library/base-arm64:1"),
    ],
)
def test_global_args_and_substitution(
    text: str, build_args: dict[str, str], expected: str
) -> None:
    parsed = parse(text, build_args)
    assert [str(p) for p in parsed.parents] == [expected]
    assert parsed.unresolved == ()


def test_build_arg_for_an_undeclared_arg_is_not_seen_by_from() -> None:
    # BuildKit's rule: only ARGs declared before the first FROM reach a FROM.
    parsed = parse("FROM ${REGISTRY}/library/base:1.0\n", {"REGISTRY": "h.example.com"})
    assert parsed.parents == ()
    assert parsed.unresolved == ("${REGISTRY}/library/base:1.0",)


@pytest.mark.parametrize(
    "text",
    [
        "ARG REGISTRY\nFROM ${REGISTRY}/library/base:1.0\n",
        "FROM $UNSET\n",
        "FROM library/base:1.0${SUFFIX}\n",  # parses without the variable, still unresolved
        "ARG A\nARG B=${A}/base\nFROM $B\n",  # a default built from an unset arg
        "ARG T\nFROM library/base:${T:?need-a-tag}\n",
        "FROM library/base:${T\n",
        "FROM library/Base:1.0\n",  # does not parse as a reference
        "FROM library/base:${T/x/y}\n",
    ],
)
def test_unresolved_from_is_reported_not_fatal(text: str) -> None:
    parsed = parse(text + "FROM library/other:1\n")
    assert len(parsed.unresolved) == 1
    assert parsed.unresolved[0] == text.splitlines()[-1].split(" ", 1)[1]
    assert [str(p) for p in parsed.parents] == ["library/other:1"]
    assert parsed.stages[0].reference is None
    assert parsed.stages[0].problem
    from_line = text.splitlines()[-1]
    assert parsed.problems == (
        f"line {len(text.splitlines())}: {from_line}: {parsed.stages[0].problem}",
    )


def test_unset_variable_message_names_the_variable_and_the_fix() -> None:
    parsed = parse("ARG REGISTRY\nFROM ${REGISTRY}/library/base:1.0\n")
    problem = parsed.stages[0].problem
    assert problem is not None
    assert "REGISTRY" in problem
    assert "build arg" in problem


def test_multi_stage_with_stage_names() -> None:
    text = (
        "FROM library/jre:8u191 AS build\n"
        "RUN make\n"
        "FROM BUILD AS test\n"  # stage names are case-insensitive
        "FROM library/base:1.0\n"
        "COPY --from=build /out /app\n"
        "COPY --from=0 /x /x\n"
        "COPY --from=library/tools:latest /t /t\n"
        "COPY --from=library/jre:8u191 /j /j\n"
    )
    parsed = parse(text)
    assert parents(text) == ["library/jre:8u191", "library/base:1.0", "library/tools:latest"]
    assert [s.name for s in parsed.stages] == ["build", "test", None]
    assert parsed.stages[1].from_stage == 0
    assert parsed.stages[1].reference is None
    kinds = [(str(p.reference), p.kind, p.line) for p in parsed.parent_images]
    assert kinds == [
        ("library/jre:8u191", "from", 1),
        ("library/base:1.0", "from", 4),
        ("library/tools:latest", "copy-from", 7),
        ("library/jre:8u191", "copy-from", 8),
    ]


def test_from_a_later_stage_name_is_an_image() -> None:
    # Only an *earlier* stage can be a base; a name defined later is an image reference.
    text = "FROM helper\nFROM library/base:1.0 AS helper\n"
    assert parents(text) == ["helper:latest", "library/base:1.0"]


def test_run_mount_from_an_image_is_a_parent() -> None:
    text = (
        "FROM library/base:1.0 AS b\n"
        "RUN --mount=type=bind,from=library/tools:latest,target=/t true\n"
        "RUN --mount=type=cache,target=/c --mount=from=b,target=/b true\n"
    )
    parsed = parse(text)
    assert [(str(p.reference), p.kind) for p in parsed.parent_images] == [
        ("library/base:1.0", "from"), ("library/tools:latest", "mount-from")
    ]


def test_copy_from_uses_only_stage_scoped_args() -> None:
    text = (
        "ARG TOOLS=library/tools:1\n"
        "FROM library/base:1.0\n"
        "COPY --from=$TOOLS /a /a\n"  # TOOLS is not in the stage's scope
        "ARG TOOLS\n"
        "COPY --from=$TOOLS /b /b\n"  # redeclared: the global default applies
    )
    parsed = parse(text)
    assert [str(p) for p in parsed.parents] == ["library/base:1.0", "library/tools:1"]
    assert parsed.unresolved == ("$TOOLS",)
    assert len(parsed.problems) == 1
    assert parsed.problems[0].startswith("line 3: COPY --from=$TOOLS: variable TOOLS is not set")
    assert "in this stage" in parsed.problems[0]


def test_platform_flag_is_kept() -> None:
    text = (
        "ARG ARCH=arm64\n"
        "FROM --platform=$BUILDPLATFORM library/jre:8u191 AS build\n"
        "FROM --platform=linux/${ARCH} library/base:1.0\n"
        "FROM --platform=linux/amd64 library/base:1.0\n"
    )
    parsed = parse(text)
    assert [s.platform for s in parsed.stages] == ["$BUILDPLATFORM", "linux/arm64", "linux/amd64"]
    assert parsed.platforms == ("$BUILDPLATFORM", "linux/arm64", "linux/amd64")
    assert parents(text) == ["library/jre:8u191", "library/base:1.0"]


def test_continuation_lines_with_comments_and_blank_lines_inside() -> None:
    text = (
        "ARG REGISTRY=registry.\\\n"
        "example.com\n"
        "FROM \\\n"
        "# a comment inside the instruction\n"
        "\n"
        "    ${REGISTRY}/library/base:1.0 \\  \n"
        "    AS base\n"
        "RUN echo one \\\n"
        "FROM nothing:here\n"  # continues the RUN: not an instruction
    )
    parsed = parse(text)
    assert [str(p) for p in parsed.parents] == ["registry.example.com/library/base:1.0"]
    assert parsed.stages[0].name == "base"
    assert parsed.stages[0].line == 3


def test_escape_directive_with_backtick() -> None:
    text = (
        "# escape=`\n"
        "\n"
        "FROM `\n"
        "  mcr.microsoft.com/windows/servercore:ltsc2022\n"
        "RUN dir c:\\ \n"  # a backslash does not continue the line any more
        "FROM library/base:1.0\n"
    )
    parsed = parse(text)
    assert parsed.escape == "`"
    assert [str(p) for p in parsed.parents] == [
        "mcr.microsoft.com/windows/servercore:ltsc2022", "library/base:1.0"
    ]


def test_escape_directive_only_at_the_very_top() -> None:
    text = "# a comment first\n# escape=`\nFROM library/base:1.0 `\nRUN x\n"
    parsed = parse(text)
    assert parsed.escape == "\\"
    # The backtick is no escape, so "`" is a third word of the FROM, not a continuation.
    assert [str(p) for p in parsed.parents] == ["library/base:1.0"]


def test_directives_are_case_insensitive_and_may_follow_syntax() -> None:
    text = "# syntax=docker/dockerfile:1\n#  ESCAPE = `\nFROM `\n library/base:1.0\n"
    assert parse(text).escape == "`"
    assert parents(text) == ["library/base:1.0"]


def test_heredoc_bodies_are_not_instructions() -> None:
    text = (
        "FROM library/base:1.0\n"
        "RUN <<EOF\n"
        "FROM not/an:instruction\n"
        "EOF\n"
        "COPY <<-'END' /etc/x\n"
        "\tFROM also/not:one\n"
        "\tEND\n"
        "FROM library/jre:8u191\n"
    )
    assert parents(text) == ["library/base:1.0", "library/jre:8u191"]


def test_windows_line_endings_and_bom() -> None:
    text = "\ufeffARG T=1.0\r\nFROM library/base:$T \\\r\n  AS x\r\n"
    assert parents(text) == ["library/base:1.0"]


def test_parents_are_deduplicated_in_order() -> None:
    text = "FROM b:1 AS one\nFROM a:1\nFROM b:1\nCOPY --from=a:1 / /\n"
    assert parents(text) == ["b:1", "a:1"]


def test_digest_reference() -> None:
    digest = "sha256:" + "ab" * 32
    parsed = parse(f"FROM library/base:1.0@{digest}\n")
    assert parsed.parents[0].digest == digest
    assert parsed.parents[0].tag == "1.0"


def test_no_from_is_an_input_file_error() -> None:
    with pytest.raises(InputFileError) as caught:
        parse("# just a comment\nRUN echo\n")
    assert caught.value.path == "app/1.0/Dockerfile"
    assert "no FROM" in str(caught.value)
    assert caught.value.exit_code == ExitCode.USAGE


@pytest.mark.parametrize("text", ["ARG X\n\nFROM\n", "ARG X\n\nFROM --platform=linux/amd64\n"])
def test_from_without_image_names_the_line(text: str) -> None:
    with pytest.raises(InputFileError) as caught:
        parse(text)
    assert caught.value.line == 3
    assert str(caught.value).startswith("app/1.0/Dockerfile:3: FROM without an image")


def test_read_dockerfile_from_disk(tmp_path: Path) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text("ARG R=registry.example.com\nFROM $R/library/base:1.0\n", encoding="utf-8")
    parsed = read_dockerfile(path, build_args={"R": "127.0.0.1:5555"}, source="base/1.0")
    assert [str(p) for p in parsed.parents] == ["127.0.0.1:5555/library/base:1.0"]
    assert parsed.source == "base/1.0"


def test_read_dockerfile_refuses_binary_and_missing_files(tmp_path: Path) -> None:
    binary = tmp_path / "Dockerfile"
    binary.write_bytes(b"FROM a\n\xff\xfe")
    with pytest.raises(InputFileError, match="not UTF-8"):
        read_dockerfile(binary)
    with pytest.raises(InputFileError, match="cannot read"):
        read_dockerfile(tmp_path / "missing" / "Dockerfile")


_DOCKERFILE_PIECES = [
    "FROM ", "from ", "ARG ", "COPY --from=", "RUN --mount=from=", " AS ", " as ", "$", "${",
    "}", ":-", ":+", "-", "+", ":?", "\\", "`", "\n", "\r\n", " ", "\t", "#", "# escape=`\n",
    "'", '"', "<<EOF", "EOF", "scratch", "library/base:1.0", "=", "--platform=", "@sha256:",
    "A", "B", "0", "1", "/", ":", ".", "..", "[", "]", "\ufeff",
]


@settings(max_examples=400, deadline=None)
@given(st.one_of(
    st.text(),
    pieces_or(_DOCKERFILE_PIECES, st.text(max_size=3), max_size=40),
), st.dictionaries(st.sampled_from(["A", "B", "TARGETARCH"]), st.text(max_size=5), max_size=3))
def test_arbitrary_text_raises_only_input_file_error(
    text: str, build_args: dict[str, str]
) -> None:
    try:
        parsed = parse(text, build_args)
    except InputFileError:
        return
    assert parsed.stages
    for parent in parsed.parents:
        assert isinstance(parent, ImageReference)
