"""valid_reference judges the parts of a reference apart (with caches); it must agree with
asking ImageReference.of about the whole, on any text a server may send."""

from __future__ import annotations

from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from careen.registries.harbor_v2 import artifact_from_json, parses_as_reference, valid_reference
from tests.strategies import concatenations

HEX = "0123456789abcdef"
DIGEST = "sha256:" + "ab" * 32
# Text built mostly from the characters the grammar cares about, so the two checks are
# compared on near misses and not only on noise.
_PIECES = ["a", "b", "lib", "x1", "/", ":", "@", ".", "..", "_", "__", "-", " ", "\n", "A", "é",
           "5000", "latest", "v1.2", "sha256:", DIGEST, "ab" * 16, "localhost", "h.io"]
_hostile = st.one_of(concatenations(_PIECES, max_size=8), st.text(max_size=40))
_HOSTS = ["harbor.example.com", "h.io:5000", "localhost", "bad host", "a:b"]
# ``st.one_of(st.none(), st.sampled_from(_HOSTS))`` (None half the time, each host a tenth) as
# one choice instead of two: about an eighth of these tests' CPU.
_registry = st.sampled_from([None] * len(_HOSTS) + _HOSTS)


@hsettings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile, st.one_of(st.none(), _hostile), _registry)
def test_tag_check_agrees_with_parsing_the_whole(repository: str, tag: str | None,
                                                 registry: str | None) -> None:
    fast = valid_reference(repository, tag=tag if tag is not None else "latest",
                           registry=registry)
    slow = parses_as_reference(repository, tag=tag if tag is not None else "latest",
                               registry=registry)
    assert fast == slow


@hsettings(max_examples=600, suppress_health_check=[HealthCheck.too_slow])
@given(_hostile, st.one_of(_hostile, st.just(DIGEST),
                           st.text(alphabet=HEX + "G:\n", min_size=60, max_size=72).map(
                               lambda h: "sha256:" + h)), _registry)
def test_digest_check_agrees_with_parsing_the_whole(repository: str, digest: str,
                                                    registry: str | None) -> None:
    assert (valid_reference(repository, digest=digest, registry=registry)
            == parses_as_reference(repository, digest=digest, registry=registry))


def test_known_answers() -> None:
    assert valid_reference("library/nginx", tag="1.25")
    assert valid_reference("library/nginx", digest=DIGEST, registry="h.io:5000")
    assert not valid_reference("library/nginx", tag="bad tag")
    assert not valid_reference("library/$(reboot)", tag="1")
    assert not valid_reference("library/nginx", digest="sha256:zz;")
    assert not valid_reference("library/nginx")  # neither tag nor digest
    assert valid_reference("library/nginx", tag="1", digest=DIGEST)  # both: parsed whole
    # A name refused once is refused again (the cache holds verdicts, not references).
    assert not valid_reference("Library/nginx", tag="1")
    assert not valid_reference("Library/nginx", tag="1")


def test_artifacts_sharing_a_repository_each_get_their_own_tags_checked() -> None:
    warnings: list[str] = []
    raw = [{"repository_name": "p/app", "digest": "sha256:" + c * 64,
            "tags": [{"name": tag}]} for c, tag in (("a", "1"), ("b", "bad tag"), ("c", "2"))]
    found = [artifact_from_json(r, registry="h.io", warn=warnings.append) for r in raw]
    assert [a.tags if a else None for a in found] == [("1",), None, ("2",)]
    assert len(warnings) == 2
