"""HarborHttp makes a request's URL in one piece (one parse by httpx instead of three): it
must be the URL httpx makes of the base URL, the path and the params given apart."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from careen.registries.http import HarborHttp, HarborSettings

BASES = ["http://127.0.0.1:8080", "https://harbor.example.com", "https://Harbor.Example.com:443/",
         "https://harbor.example.com/prefix", "https://harbor.example.com/a%20b/"]
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


def httpx_own(http: HarborHttp, path: str, query: dict[str, str]) -> str:
    return str(http._client.build_request("GET", path, params=query or None).url)


def ours(http: HarborHttp, path: str, query: dict[str, str]) -> str:
    url, params = http._url(path, query)
    return str(http._client.build_request("GET", url, params=params).url)


@pytest.mark.parametrize("base", BASES)
@pytest.mark.parametrize(("path", "query"), [
    ("/api/v2.0/projects", {}),
    ("/api/v2.0/projects", {"page": "1", "page_size": "100"}),
    ("/api/v2.0/projects/p/repositories/team%252Fapp/artifacts",
     {"with_tag": "true", "q": "name=~a b,c/d&é"}),
    ("/api/v2.0/search?q=x", {"page": "2"}),  # a query in the path: httpx merges it
    ("api/relative", {"a": "1"}),
    ("/", {}),
    ("//harbor.example.org/x", {}),  # a network-path reference: httpx reads a host
])
def test_the_url_is_httpx_own(base: str, path: str, query: dict[str, str]) -> None:
    http = HarborHttp(HarborSettings(base))
    assert ours(http, path, query) == httpx_own(http, path, query)


#: One client for every example (no connection is made; no TLS context to load each time).
PREFIXED = HarborHttp(HarborSettings("https://harbor.example.com/prefix", verify_tls=False))


@settings(deadline=None)  # a loaded machine is no failure
@given(segments=st.lists(TEXT.filter(lambda t: "?" not in t and "#" not in t), max_size=4),
       query=st.dictionaries(TEXT, TEXT, max_size=4))
def test_any_path_and_query_make_httpx_own_url(segments: list[str],
                                               query: dict[str, str]) -> None:
    http = PREFIXED
    path = "/" + "/".join(segments)
    try:
        expected = httpx_own(http, path, query)
    except httpx.InvalidURL:
        with pytest.raises(httpx.InvalidURL):
            ours(http, path, query)
        return
    assert ours(http, path, query) == expected
