""":func:`careen.registries.paging.crawl_pages`: on while pages are full, the first short
page ends it, totals are hints only, and a window of ``concurrency`` pages at most is in
flight (issue 18 rows 4-6; Harbor NOTES section 5)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from careen.errors import ServiceError
from careen.registries.http import HarborHttp
from careen.registries.paging import crawl_pages

from .fakes import FakeHarbor, json_response, paged, query, settings

PATH = "/api/v2.0/projects"


async def crawl(fake: FakeHarbor, *, concurrency: int = 4, page_size: int = 10,
                known_total: int | None = None, max_pages: int = 100_000) -> list[Any]:
    http = HarborHttp(settings(concurrency=concurrency, page_size=page_size),
                      transport=fake.transport())
    seen: list[Any] = []

    async def keep(items: list[Any]) -> None:
        seen.extend(items)

    try:
        await crawl_pages(http, PATH, {}, page_size=page_size, on_page=keep,
                          slots=asyncio.Semaphore(concurrency), known_total=known_total,
                          max_pages=max_pages)
    finally:
        await http.aclose()
    return seen


def claiming(items: list[Any], total: str | None) -> Any:
    def handle(request: httpx.Request) -> httpx.Response:
        q = query(request)
        page, size = int(q["page"]), int(q["page_size"])
        response = json_response(items[(page - 1) * size: page * size])
        if total is not None:
            response.headers["X-Total-Count"] = total
        return response
    return handle


async def test_a_listing_that_fits_is_read_in_its_pages() -> None:
    fake = FakeHarbor()
    fake.route(PATH, paged(list(range(25))))
    assert sorted(await crawl(fake)) == list(range(25))
    assert sorted(fake.pages_of(PATH)) == [1, 2, 3]


async def test_an_understated_total_is_read_until_a_short_page() -> None:
    fake = FakeHarbor()
    fake.route(PATH, claiming(list(range(95)), "1"))
    assert sorted(await crawl(fake)) == list(range(95))
    assert sorted(fake.pages_of(PATH)) == list(range(1, 11))


@pytest.mark.parametrize("total", ["100000000", "100000000000000000000"])
async def test_an_absurd_total_asks_a_window_of_pages_at_most(total: str) -> None:
    fake = FakeHarbor()
    fake.route(PATH, claiming(list(range(35)), total))
    assert sorted(await crawl(fake, concurrency=4)) == list(range(35))
    pages = fake.pages_of(PATH)
    assert 4 in pages and len(pages) <= 4 + 4  # the short page 4, plus one window at most
    assert fake.max_in_flight <= 4


async def test_an_absurd_artifact_count_is_a_hint_too() -> None:
    fake = FakeHarbor()
    fake.route(PATH, paged(list(range(5))))
    assert await crawl(fake, concurrency=3, known_total=10**20) == list(range(5))
    assert len(fake.pages_of(PATH)) <= 3


async def test_next_links_on_empty_pages_end_at_the_first_one() -> None:
    fake = FakeHarbor()

    def forever(request: httpx.Request) -> httpx.Response:
        page = int(query(request)["page"])
        response = json_response([])
        response.headers["Link"] = f'<{PATH}?page={page + 1}&page_size=10>; rel="next"'
        return response

    fake.route(PATH, forever)
    assert await crawl(fake) == []
    assert fake.pages_of(PATH) == [1]


async def test_full_pages_forever_are_refused_not_cut_short() -> None:
    fake = FakeHarbor()
    fake.route(PATH, lambda request: json_response(list(range(10))))
    with pytest.raises(ServiceError, match="more than 20 full pages"):
        await crawl(fake, max_pages=20)
