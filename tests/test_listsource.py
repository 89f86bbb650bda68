"""Where a vulnerable.list comes from: a file, stdin, or another job's artifact by URL."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import pytest

from careen.errors import InputFileError, ServiceError
from careen.listsource import MAX_LIST_BYTES, read_list

LIST = "5=6,   library/activemq:5.14.4\nlibrary/base:1.0\n"
URL = "https://jenkins:api-token-123@ci.example.com/job/scan/lastSuccessfulBuild/artifact/vulnerable.list?x=1"


def test_a_list_from_a_url_is_fetched_with_its_credentials_which_are_never_shown() -> None:
    seen: list[httpx.Request] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, text=LIST)

    listed = read_list(URL, stdin=io.StringIO(), transport=httpx.MockTransport(answer))
    [request] = seen
    assert request.url.host == "ci.example.com" and request.url.query == b"x=1"
    assert request.headers["Authorization"].startswith("Basic ")
    assert [str(e.image) for e in listed.listing.entries] == ["library/activemq:5.14.4",
                                                                "library/base:1.0"]
    assert "api-token-123" not in listed.source and listed.source.startswith("url:https://")


# Ids of their own: by default the second case's id was its 32 MB body, which pytest encoded
# and put in the environment (PYTEST_CURRENT_TEST) at each phase of the test.
@pytest.mark.parametrize(("status", "body"), [(404, "no"), (200, "x" * (MAX_LIST_BYTES + 1))],
                         ids=["http-404", "200-one-byte-over-the-size-bound"])
def test_a_url_that_is_not_a_list_is_an_error_naming_it_without_credentials(
    status: int, body: str,
) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, text=body))
    with pytest.raises((ServiceError, InputFileError)) as error:
        read_list(URL, stdin=io.StringIO(), transport=transport)
    assert "ci.example.com" in str(error.value) and "api-token-123" not in str(error.value)


def test_stdin_and_files(tmp_path: Path) -> None:
    assert read_list("-", stdin=io.StringIO(LIST)).source == "stdin"
    (tmp_path / "v.list").write_text(LIST)
    assert len(read_list(str(tmp_path / "v.list"), stdin=io.StringIO()).listing.entries) == 2
    with pytest.raises(InputFileError, match="no such file"):
        read_list(str(tmp_path / "nope.list"), stdin=io.StringIO())
