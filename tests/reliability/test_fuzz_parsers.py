"""Every parser of outside input either parses or raises its typed error, quickly.

Targets: image references, policy rules, vulnerable.list, Dockerfiles (``FROM``/``ARG``), the
config (TOML file plus environment). Each gets random text *and* grammar-built near misses
(valid inputs with one part broken), since random text rarely gets past a parser's first
check. A case that raises anything but a :class:`~careen.errors.CareenError`, or runs longer
than :data:`~.support.CASE_SECONDS`, fails. Volume: ``CAREEN_FUZZ_EXAMPLES`` per test.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.config import SECTIONS, load_config
from careen.errors import CareenError, ConfigError, InputFileError, PolicySyntaxError
from careen.policy import NAMES, Policy, Rule
from careen.reference import ImageReference
from careen.tree.dockerfile import parse_dockerfile
from careen.vulnlist import read_vulnerable_list
from tests.strategies import lists_of_one_of

from .support import FUZZ, time_bound

T = TypeVar("T")


def parses_or_raises(parse: Callable[[], T], *expected: type[CareenError]) -> T | None:
    """``parse()`` within the time bound: its result, or ``None`` when it raised one of
    ``expected`` (any :class:`CareenError` when none is given). Anything else propagates."""
    with time_bound():
        try:
            return parse()
        except CareenError as error:
            allowed = expected or (CareenError,)
            assert isinstance(error, allowed), f"{type(error).__name__}: {error}"
            assert str(error).strip(), "an error must say something"
            return None


def near_miss(pieces: st.SearchStrategy[str], noise: st.SearchStrategy[str],
              max_pieces: int = 12) -> st.SearchStrategy[str]:
    """Grammar pieces joined, with now and then a piece replaced by noise."""
    return lists_of_one_of([pieces, pieces, pieces, noise], max_size=max_pieces).map("".join)


NOISE = st.one_of(
    st.text(max_size=4),
    st.sampled_from(["", " ", "\t", "\n", "\r\n", "\x00", "\ufeff", "\\", "\\\n", "'", '"',
                     "${", "}", "$", "#", "=", ",", ":", "@", "/", "(", ")", "é", "\u202e",
                     "9" * 30, "-1", "\U0001f600"]),
)

# -- image references ----------------------------------------------------------------------

LOWER = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=8)
COMPONENT = st.one_of(LOWER, st.builds(lambda a, s, b: a + s + b, LOWER,
                                       st.sampled_from([".", "_", "__", "-", "--", "..", "___"]),
                                       LOWER))
TAG = st.text(alphabet=string.ascii_letters + string.digits + "_.-", min_size=1, max_size=130)
HEX = st.text(alphabet="0123456789abcdefABCDEF", min_size=60, max_size=66)
REFERENCE_PIECES = st.one_of(
    COMPONENT, st.just("/"), st.builds(":{}".format, TAG), st.builds("@sha256:{}".format, HEX),
    st.sampled_from(["harbor.example.com/", "localhost:5000/", "[::1]:5000/", "docker.io/",
                     "UPPER", ":", "@", "sha512:", "a" * 256]),
)
REFERENCE_TEXT = st.one_of(st.text(max_size=300), near_miss(REFERENCE_PIECES, NOISE))


@FUZZ
@given(REFERENCE_TEXT)
def test_image_reference(text: str) -> None:
    reference = parses_or_raises(lambda: ImageReference.parse(text))
    if reference is not None:
        # What parsed is a fixed point: its text parses back to it.
        assert ImageReference.parse(str(reference)) == reference


@FUZZ
@given(REFERENCE_TEXT, st.one_of(st.none(), st.text(max_size=40), TAG),
       st.one_of(st.none(), st.text(max_size=30), st.just("harbor.example.com")))
def test_image_reference_from_parts(repository: str, tag: str | None,
                                    registry: str | None) -> None:
    reference = parses_or_raises(lambda: ImageReference.of(repository, tag=tag,
                                                           registry=registry))
    if reference is not None:
        assert reference.repository == repository and reference.registry == registry


# -- policy rules ---------------------------------------------------------------------------

NAME = st.one_of(st.sampled_from(NAMES), st.sampled_from(["HIGH", "fixable", "hihg", "cve",
                                                          "_", "critical2"]))
OPERATOR = st.sampled_from([">", ">=", "<", "<=", "==", "!=", "=", "=>", "<>", "!"])
NUMBER = st.one_of(st.integers(0, 1000).map(str), st.sampled_from(["-1", "1e3", "3.5",
                                                                  "9" * 40, "0x10", ""]))


def rules() -> st.SearchStrategy[str]:
    """Rules from the grammar (``expr := or_expr ...``), the odd piece broken."""
    comparison = st.builds(lambda n, o, v: f"{n} {o} {v}", NAME, OPERATOR, NUMBER)
    atom = st.one_of(comparison, st.sampled_from(["true", "false", "TRUE", "()"]))
    return st.recursive(
        atom,
        lambda inner: st.one_of(
            st.builds(lambda a, k, b: f"{a} {k} {b}", inner,
                      st.sampled_from(["and", "or", "AND", "Or", "xor", "&&", ""]), inner),
            st.builds("not {}".format, inner),
            st.builds("({})".format, inner),
            st.builds("({}".format, inner),
            st.builds(lambda a, n: a + n, inner, NOISE),
        ),
        max_leaves=25,
    )


RULE_TEXT = st.one_of(st.text(max_size=200), rules(),
                      st.integers(1, 200).map(lambda n: "(" * n + "high > 0" + ")" * n),
                      st.integers(1, 3000).map(lambda n: "not " * n + "true"))
COUNTS = st.dictionaries(st.sampled_from(NAMES), st.one_of(st.none(), st.integers(0, 10**6)))


@FUZZ
@given(RULE_TEXT, COUNTS)
def test_policy_rule(text: str, counts: dict[str, int | None]) -> None:
    rule = parses_or_raises(lambda: Rule.parse(text), PolicySyntaxError)
    if rule is not None:
        assert Rule.parse(str(rule)) == rule  # the normalised text parses back
        with time_bound():
            outcome, _ = rule.evaluate({name: counts.get(name, 0) for name in NAMES})
        assert outcome in (True, False, None)


@FUZZ
@given(st.one_of(st.none(), RULE_TEXT), lists_of_one_of([st.text(max_size=20),
                                                         st.sampled_from(["*", "[", "**"])]),
       st.one_of(st.sampled_from(["report", "select", "ignore"]), st.text(max_size=10)))
def test_policy_settings(rule: str | None, ignore: list[str], unscanned: str) -> None:
    parses_or_raises(lambda: Policy.from_settings(rule, False, ignore, unscanned,
                                                  source="careen.toml"),
                     PolicySyntaxError, ConfigError)


# -- vulnerable.list ------------------------------------------------------------------------

HEAD = st.one_of(
    st.builds(lambda s, c: f"{s}={c},", st.integers(-2, 8), st.integers(-5, 10**20)),
    st.sampled_from(["5=6,  ", "5=,", "=6,", "5=6", "5==6,", "+5=+6,", "5 = 6 ,", ",", "x=1,"]),
)
IMAGE = st.one_of(near_miss(REFERENCE_PIECES, NOISE, max_pieces=6),
                  st.sampled_from(["library/app:1", "library/app:", "library/app",
                                   "library/app;rm -rf /", "$(id)", "../../etc"]))
LINE = st.one_of(
    st.builds(lambda h, sp, i: f"{h}{sp}{i}", HEAD, st.sampled_from(["", " ", "   ", "\t"]),
              IMAGE),
    IMAGE, st.sampled_from(["", "# comment", "  # x", "library/a:1 # note", "a b c"]),
    st.text(max_size=60),
)
LIST_TEXT = st.builds(lambda lines, newline: newline.join(lines),
                      lists_of_one_of([LINE], max_size=30), st.sampled_from(["\n", "\r\n"]))


@FUZZ
@given(st.one_of(LIST_TEXT, st.text(max_size=500)), st.booleans())
def test_vulnerable_list_text(text: str, strict: bool) -> None:
    result = parses_or_raises(
        lambda: read_vulnerable_list(text, source="vulnerable.list", strict=strict),
        InputFileError)
    if result is None:
        assert strict, "only --strict reading raises; otherwise bad lines are problems"
        return
    for entry in result.entries:
        assert ImageReference.parse(str(entry.image)) == entry.image
    if strict:
        assert not result.problems


@FUZZ
@given(st.one_of(st.binary(max_size=300), LIST_TEXT.map(lambda t: t.encode("utf-8")
                                                         .replace(b"a", b"\xff"))))
def test_vulnerable_list_bytes(data: bytes) -> None:
    result = parses_or_raises(lambda: read_vulnerable_list(data, source="-"))
    assert result is not None  # tolerant reading never raises


# -- Dockerfiles ----------------------------------------------------------------------------

VARIABLE = st.sampled_from(["BASE", "TAG", "TARGETARCH", "X", "_", "a1", "1A", ""])
WORD = st.one_of(
    st.sampled_from(["alpine", "library/alpine:3.19", "harbor.example.com/library/base:1.0",
                     "scratch", "base", "builder", "0", "$BASE", "${BASE}", "${TAG:-1.0}",
                     "${BASE:+x}", "${BASE-}", "${X:?err}", "${", "$", "\\$BASE", "'${BASE}'",
                     '"$BASE"', "`", "$(id)", "alpine@sha256:" + "a" * 64, "AS", "as"]),
    st.builds(lambda v: f"${{{v}}}", VARIABLE),
    st.builds(lambda v, d: f"${{{v}:-{d}}}", VARIABLE, st.sampled_from(["1", "${TAG}", "}"])),
    st.text(max_size=6),
)
INSTRUCTION = st.one_of(
    st.builds(lambda v, d: f"ARG {v}={d}", VARIABLE, WORD),
    st.builds("ARG {}".format, VARIABLE),
    st.builds(lambda f, w, n: f"FROM {f}{w}{n}",
              st.sampled_from(["", "--platform=$BUILDPLATFORM ", "--platform= ", "--x "]),
              WORD, st.sampled_from(["", " AS builder", " as Base", " AS", " AS a b"])),
    st.builds("COPY --from={} /a /b".format, WORD),
    st.builds("RUN --mount=type=cache,from={},target=/x true".format, WORD),
    st.sampled_from(["RUN <<EOF\nFROM evil\nEOF", "RUN <<-'END'\n\tx\n\tEND", "RUN <<EOF",
                     "RUN echo \\", "  \\", "# escape=`", "# escape=\\", "# syntax=x",
                     "FROM", "from alpine", "COPY --from= /a /b", "ENV A=1", "", "#"]),
    st.text(max_size=30),
)
DOCKERFILE = lists_of_one_of([INSTRUCTION], max_size=15).map("\n".join)
BUILD_ARGS = st.dictionaries(VARIABLE, st.one_of(WORD, st.text(max_size=10)), max_size=4)


@FUZZ
@given(st.one_of(DOCKERFILE, st.text(max_size=400)), BUILD_ARGS)
def test_dockerfile(text: str, build_args: dict[str, str]) -> None:
    parsed = parses_or_raises(
        lambda: parse_dockerfile(text, build_args=build_args, source="app/1.0/Dockerfile"),
        InputFileError)
    if parsed is not None:
        assert parsed.stages
        for parent in parsed.parents:
            assert ImageReference.parse(str(parent)) == parent


# -- config ---------------------------------------------------------------------------------

KEYS = {name: sorted(model.model_fields) for name, model in SECTIONS.items()}
ALL_KEYS = sorted({key for keys in KEYS.values() for key in keys})
SECTION = st.sampled_from([*sorted(SECTIONS), "harbour", "Harbor", "x", "a.b"])


def toml_value(depth: int = 0) -> st.SearchStrategy[str]:
    """A TOML value, as text: every TOML type, and the odd value that is not TOML."""
    scalar = st.one_of(
        st.text(max_size=20).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"')
                                 + '"'),
        st.text(alphabet=string.printable, max_size=20).map(lambda s: "'" + s.replace("'", "")
                                                            .replace("\n", "") + "'"),
        st.integers(-(2**70), 2**70).map(str),
        st.floats(allow_nan=True).map(lambda f: str(f).replace("inf", "inf")),
        st.sampled_from(["true", "false", "1979-05-27T07:32:00Z", "07:32:00", "nan", "+inf",
                         '"https://harbor.example.com"', '"http://u:p@h"', '"/tmp/x"',
                         '"~/x"', '"\\u0000"', '"auto"', '"v3"', "0x1F", "1_000", '"""a"""',
                         "yes", "", '"', "[", "{"]),
    )
    if depth >= 2:
        return scalar
    inner = toml_value(depth + 1)
    return st.one_of(
        scalar, scalar,
        lists_of_one_of([inner], max_size=4).map(lambda items: "[" + ", ".join(items) + "]"),
        st.dictionaries(st.sampled_from(["a", "b", "KEY", "x y"]), inner, max_size=3).map(
            lambda d: "{" + ", ".join(f'"{k}" = {v}' for k, v in d.items()) + "}"),
    )


TOML_VALUE = toml_value()


def toml_table(section: str) -> st.SearchStrategy[str]:
    key = st.one_of(st.sampled_from(KEYS.get(section, ["url"])),
                    st.sampled_from(["urll", "password", "json", "x-y", '"quoted"']))
    entries = lists_of_one_of([st.builds(lambda k, v: f"{k} = {v}", key, TOML_VALUE)],
                              max_size=5)
    return entries.map(lambda lines: "\n".join([f"[{section}]", *lines]))


# Built once: strategies made inside a draw (flatmap) cost more than the parsing under test.
TOML_DOCUMENT = lists_of_one_of([toml_table(name) for name in
                                 [*sorted(SECTIONS), "harbour", "Harbor", "x", "a.b"]],
                                max_size=4).map("\n\n".join)


ENV_NAME = st.one_of(
    st.builds(lambda s, k: f"CAREEN_{s.upper()}_{k.upper()}", SECTION,
              st.one_of(st.sampled_from(ALL_KEYS), st.just("nope"))),
    st.sampled_from(["CAREEN_CONFIG", "CAREEN_LAB_X", "registry_server", "REGISTRY_USER",
                     "registry_password", "CAREEN_", "CAREEN_HARBOR", "HOME"]),
)
ENV_VALUE = st.one_of(st.text(max_size=30).map(lambda s: s.replace("\x00", "")),
                      st.sampled_from(["", "true", "no", "0", "-1", "1e999", "a=b,c",
                                       "https://harbor.example.com", "missing.toml", "~"]))


@pytest.fixture(scope="module")
def config_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One working folder for every case (each case rewrites or removes careen.toml)."""
    return tmp_path_factory.mktemp("config")


@FUZZ
@given(st.one_of(TOML_DOCUMENT, st.text(max_size=300)),
       st.dictionaries(ENV_NAME, ENV_VALUE, max_size=4), st.booleans())
def test_config(config_folder: Path, document: str, environ: Mapping[str, str],
                with_file: bool) -> None:
    file = config_folder / "careen.toml"
    # Removed first, and written anew when wanted: ext4 flushes a file rewritten in place to
    # disk when it is closed (about 2 ms of waiting a case).
    file.unlink(missing_ok=True)
    if with_file:
        file.write_text(document, encoding="utf-8")
    config: Any = parses_or_raises(lambda: load_config(cwd=config_folder, environ=environ),
                                   ConfigError)
    if config is not None:
        # A config that loads can be shown (secrets masked) without failing.
        with time_bound():
            config.show()
