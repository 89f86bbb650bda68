"""Image references follow the distribution reference grammar; anything else is refused."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.errors import ExitCode, InvalidReferenceError
from careen.reference import ImageReference, is_valid_reference, reads_as_host

DIGEST = "sha256:" + "ab" * 32


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("library/activemq:5.14.4", None, "library/activemq", "5.14.4", None),
        ("library/apache-php", None, "library/apache-php", "latest", None),
        ("library/httpd:2.4.6-5.5", None, "library/httpd", "2.4.6-5.5", None),
        ("registry.abc.com/library/jre:8u191", "registry.abc.com", "library/jre", "8u191", None),
        ("127.0.0.1:5555/library/app:2.0", "127.0.0.1:5555", "library/app", "2.0", None),
        ("localhost/team/app", "localhost", "team/app", "latest", None),
        ("proj/team/sub/app:v1", None, "proj/team/sub/app", "v1", None),
        (f"library/app@{DIGEST}", None, "library/app", None, DIGEST),
        (f"h.io:443/library/app:1@{DIGEST}", "h.io:443", "library/app", "1", DIGEST),
        ("alpine", None, "alpine", "latest", None),
        ("a__b/c-d.e_f:_T.1-x", None, "a__b/c-d.e_f", "_T.1-x", None),
        ("[::1]:5000/library/app:1", "[::1]:5000", "library/app", "1", None),
    ],
)
def test_valid_references_parse_into_parts(
    text: str, registry: str | None, repository: str, tag: str | None, digest: str | None
) -> None:
    ref = ImageReference.parse(text)
    parts = (ref.registry, ref.repository, ref.tag, ref.digest)
    assert parts == (registry, repository, tag, digest)


def test_views_of_a_reference() -> None:
    ref = ImageReference.parse("registry.abc.com/library/team/app:1.0")
    assert ref.project == "library"
    assert ref.name_in_project == "team/app"
    assert ref.short == "library/team/app:1.0"
    assert ref.name == "registry.abc.com/library/team/app"
    assert str(ref) == "registry.abc.com/library/team/app:1.0"
    assert str(ImageReference.parse("library/app")) == "library/app:latest"
    assert ImageReference.parse(f"library/app@{DIGEST}").short == f"library/app@{DIGEST}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        ("library/app;rm -rf /", "white space"),
        ("library/app;id", "path component"),
        ("library/$(id):1", "path component"),
        ("library/`id`", "path component"),
        ("library/app:1;id", "tag"),
        ("library/app\n:1", "white space"),
        ("library/../etc/passwd", "'..'"),
        ("library/./app", "'.'"),
        ("library//app", "empty"),
        ("Library/app", "lower-case"),
        ("library/App:1", "lower-case"),
        ("library/app:" + "a" * 129, "128"),
        ("library/app:", "empty tag"),
        ("library/app:-x", "must not start"),
        ("library/app:.x", "must not start"),
        ("library/app@sha256:abc", "digest"),
        ("library/app@sha256:" + "g" * 64, "digest"),
        ("library/" + "a" * 300, "longer than 255"),
        ("library/app_-x", "path component"),
        ("library/app-", "path component"),
        ("library/caf\u00e9", "printable ASCII"),
        ("bad_host:99999999/library/app", "registry host"),
    ],
)
def test_invalid_references_are_refused_with_a_reason(text: str, fragment: str) -> None:
    with pytest.raises(InvalidReferenceError) as excinfo:
        ImageReference.parse(text)
    assert fragment in str(excinfo.value)
    assert excinfo.value.exit_code == ExitCode.USAGE


def test_tag_of_exactly_128_characters_is_accepted() -> None:
    assert ImageReference.parse("library/app:" + "a" * 128).tag == "a" * 128


def test_normalized_makes_docker_hub_names_uniform() -> None:
    assert ImageReference.parse("docker.io/acme/jre:8u191").normalized() == ImageReference.parse(
        "acme/jre:8u191"
    )
    assert ImageReference.parse("alpine:3.19").normalized().repository == "library/alpine"
    assert ImageReference.parse("index.docker.io/library/alpine").normalized() == (
        ImageReference.parse("library/alpine")
    )
    harbor = ImageReference.parse("registry.abc.com/library/jre:8u191").normalized()
    assert harbor.registry == "registry.abc.com"


def test_of_builds_and_validates_from_parts() -> None:
    ref = ImageReference.of("library/team/app", tag="1.0", registry="h.io")
    assert str(ref) == "h.io/library/team/app:1.0"
    with pytest.raises(InvalidReferenceError):
        ImageReference.of("library/app", tag="1;id")
    with pytest.raises(InvalidReferenceError):
        ImageReference.of("h.io/app", tag="1")  # a host where a repository was expected


# Parts built from alphabets rather than ``st.from_regex`` (the same strings; generating and
# rejecting through the regex was most of these tests' seconds).
_LOWER_DIGITS = string.ascii_lowercase + string.digits
_TAG_FIRST = string.ascii_letters + string.digits + "_"


def _word(min_size: int, max_size: int, alphabet: str = _LOWER_DIGITS) -> st.SearchStrategy[str]:
    return st.text(alphabet, min_size=min_size, max_size=max_size)


def _joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


def _repeated(part: st.SearchStrategy[str], min_size: int,
              max_size: int) -> st.SearchStrategy[str]:
    return st.lists(part, min_size=min_size, max_size=max_size).map("".join)


#: ``[a-z0-9]{1,8}(?:[._-][a-z0-9]{1,8}){0,2}``
_component = _joined(_word(1, 8), _repeated(_joined(st.sampled_from("._-"), _word(1, 8)), 0, 2))
#: ``[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}``
_tag = _joined(st.sampled_from(_TAG_FIRST), _word(0, 20, _TAG_FIRST + ".-"))


@given(st.lists(_component, min_size=1, max_size=4), _tag)
def test_generated_valid_references_round_trip(components: list[str], tag: str) -> None:
    text = "/".join(["library", *components]) + ":" + tag
    ref = ImageReference.parse(text)
    assert str(ref) == text
    assert ImageReference.parse(str(ref)) == ref


@given(st.text(max_size=300))
def test_arbitrary_text_parses_or_raises_invalid_reference(text: str) -> None:
    try:
        ref = ImageReference.parse(text)
    except InvalidReferenceError:
        return
    # Whatever parsed is safe to hand to a subprocess as one argument and to a URL path.
    rendered = str(ref)
    assert rendered.isprintable() and rendered.isascii()
    assert not any(c in rendered for c in " ;$`'\"\\|&<>(){}*?!\n")
    assert ".." not in rendered.split("/")
    assert is_valid_reference(rendered)


# -- the constructor checks every part ------------------------------------------------------


@pytest.mark.parametrize(
    ("parts", "fragment"),
    [
        (("library/app", "1", None, "evil;host"), "registry host"),
        (("library/app", "1", None, "harbor"), "would read as a repository path"),
        (("library/app", "1", None, "h.io/x"), "registry host"),
        (("library/app;id", "1", None, None), "path component"),
        (("../etc/passwd", "1", None, None), "'..'"),
        (("Library/app", "1", None, None), "lower-case"),
        (("", "1", None, None), "no repository name"),
        ((None, "1", None, None), "repository is not a string"),
        (("library/app", "1;id", None, None), "tag"),
        (("library/app", "-rf", None, None), "must not start"),
        (("library/app", "t" * 129, None, None), "128"),
        (("library/app", "", None, None), "tag"),
        (("library/app", None, "sha256:abc", None), "digest"),
        (("library/app", None, None, None), "neither a tag nor a digest"),
        (("library/" + "a" * 250, "1", None, "harbor.example.com"), "longer than 255"),
        ((b"library/app", "1", None, None), "not a string"),
        (("library/app", 1, None, None), "tag is not a string"),
    ],
)
def test_the_constructor_refuses_bad_parts(parts: tuple[object, ...], fragment: str) -> None:
    with pytest.raises(InvalidReferenceError) as excinfo:
        ImageReference(*parts)  # type: ignore[arg-type]
    assert fragment in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_derived_references_are_checked_too() -> None:
    ref = ImageReference.parse("h.io/library/app:1")
    with pytest.raises(InvalidReferenceError):
        ref.with_registry("evil host")
    with pytest.raises(InvalidReferenceError):
        ref.with_digest("sha256:short")
    with pytest.raises(InvalidReferenceError):
        ref.with_tag("1 2")
    assert ref.with_registry(None) == ImageReference("library/app", "1")


def test_a_registry_less_key_may_start_with_a_host_like_project() -> None:
    # The key of an image in Harbor project 'team.a' (as the tree and the plan use it).
    key = ImageReference("team.a/app", "1")
    assert key.project == "team.a" and key.registry is None
    # ...but parse reads that text Docker's way, and of() refuses the ambiguity.
    assert ImageReference.parse(key.short) == ImageReference("app", "1", None, "team.a")
    with pytest.raises(InvalidReferenceError, match="looks like a registry host"):
        ImageReference.of("team.a/app", tag="1")
    assert ImageReference.of("team.a/app", tag="1", registry="h.io").registry == "h.io"
    assert key.with_tag("2") == ImageReference("team.a/app", "2")


@pytest.mark.parametrize(
    ("text", "repository", "tag"),
    [
        ("team.a/app:1", "team.a/app", "1"),
        ("localhost/app", "localhost/app", "latest"),
        ("cdn.example.com/team/app:2", "cdn.example.com/team/app", "2"),
        ("library/activemq:5.14.4", "library/activemq", "5.14.4"),
    ],
)
def test_parse_short_takes_the_whole_name_for_the_repository(
        text: str, repository: str, tag: str) -> None:
    ref = ImageReference.parse_short(text)
    assert (ref.registry, ref.repository, ref.tag) == (None, repository, tag)
    assert ref.short == (text if ":" in text else f"{text}:latest")


def test_parse_short_refuses_what_parse_refuses() -> None:
    for text in ("h.io:5000/app:1", "library/app;id", "library/app:", "a b"):
        with pytest.raises(InvalidReferenceError):
            ImageReference.parse_short(text)


@pytest.mark.parametrize(
    ("repository", "expected"),
    [("team.a/app", True), ("localhost/app", True), ("h:5000/app", True),
     ("library/app", False), ("team.a", False), ("localhost", False), ("a-b/c.d", False)],
)
def test_reads_as_host(repository: str, expected: bool) -> None:
    assert reads_as_host(repository) is expected


#: Hosts as the grammar reads them: a dot, a port, or localhost.
_host = st.one_of(
    # [a-z0-9]{1,6}(\.[a-z0-9]{1,6}){1,2}(:[0-9]{1,5})?
    _joined(_word(1, 6), _repeated(_joined(st.just("."), _word(1, 6)), 1, 2),
            st.one_of(st.just(""), _joined(st.just(":"), _word(1, 5, string.digits)))),
    # [a-z0-9]{1,6}:[0-9]{1,5}
    _joined(_word(1, 6), st.just(":"), _word(1, 5, string.digits)),
    st.just("localhost"),
)
_any_part = st.one_of(st.none(), st.text(max_size=40), _component, _tag)


@given(_any_part, _any_part, _any_part, st.one_of(_any_part, _host))
def test_the_constructor_builds_only_references_that_read_back(
        repository: str | None, tag: str | None, digest: str | None,
        registry: str | None) -> None:
    try:
        ref = ImageReference(repository, tag, digest, registry)  # type: ignore[arg-type]
    except InvalidReferenceError:
        return
    rendered = str(ref)
    assert rendered.isascii() and rendered.isprintable()
    assert not any(c in rendered for c in " ;$`'\"\\|&<>(){}*?!\n")
    if registry is not None or not reads_as_host(ref.repository):
        assert ImageReference.parse(rendered) == ref
    assert ImageReference.parse_short(ref.short).repository == ref.repository


@given(st.lists(_component, min_size=1, max_size=4), _tag, _host)
def test_generated_parts_build_what_the_text_parses_to(
        components: list[str], tag: str, host: str) -> None:
    repository = "/".join(components)
    built = ImageReference(repository, tag, None, host)
    assert ImageReference.parse(f"{host}/{repository}:{tag}") == built
