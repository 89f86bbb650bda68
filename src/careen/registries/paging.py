"""Paged listings of Harbor (v2 and v1): reading every page of one, lazily and bounded.

The one rule that holds against a Harbor that is broken, half-upgraded or hostile: **a full
page means there may be more, a short or empty page is the last one**. ``X-Total-Count`` and
a repository's ``artifact_count`` are hints only: they let the pages they claim be asked
concurrently (never more than ``concurrency`` pages of one listing in flight, and a task is
made for a page only when it is about to be asked), but an understated total does not end
a listing early (issue 18 row 4) and an absurd one (1e20) costs no memory and no request
beyond the first short page (rows 5 and 6). ``Link: rel="next"`` is not followed: a page
that is full is followed by the next whatever the links say, and one that is not ends it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

from careen.errors import ServiceError
from careen.registries.http import SERVICE, HarborHttp
from careen.registries.streaming import first_error
from careen.registries.text import whole_number

OnPage = Callable[[list[Any]], Awaitable[None]]
#: Pages of one listing after which Careen gives up: 10 million artifacts at 100 a page.
MAX_PAGES = 100_000


def total_count(response: httpx.Response) -> int | None:
    """``X-Total-Count`` (the number of items before paging), or ``None`` when absent or bad."""
    return whole_number(response.headers.get("X-Total-Count", "").strip())


def listing_of(http: HarborHttp, response: httpx.Response, path: str, *,
               null_is_empty: bool = False) -> list[Any]:
    """The body of one listing page, which must be a JSON array; anything else (an empty
    body, ``null``, an object) is not Harbor's answer and ends the run (exit 3) naming the
    URL. Harbor 2.x sends ``[]`` for an empty list (NOTES section 1); Harbor 1.x's Go
    encoder may send ``null``, which ``null_is_empty`` accepts."""
    body = http.json_of(response, "GET", path)
    if body is None and null_is_empty:
        return []
    if not isinstance(body, list):
        got = ("an empty answer" if not response.content.strip()
               else "null" if body is None else f"a JSON {type(body).__name__}")
        raise ServiceError(
            SERVICE, http.host,
            f"GET {response.request.url}: a listing must be a JSON array, got {got} "
            f"(request id {response.request.headers.get('X-Request-Id', '?')})",
            hint="this is not Harbor's answer; check [harbor] url and any proxy in front "
                 "of Harbor")
    return body


async def crawl_pages(
    http: HarborHttp, path: str, params: Mapping[str, str | int | bool], *,
    page_size: int, on_page: OnPage, slots: asyncio.Semaphore,
    known_total: int | None = None, headers: Mapping[str, str] | None = None,
    permission: str | None = None, max_pages: int = MAX_PAGES, null_is_empty: bool = False,
) -> None:
    """Read every page of one paged listing, handing each page's items to ``on_page``.

    Pages are asked in order, lazily: page ``n`` is asked once the pages before it that the
    hints (``known_total``, e.g. a repository's ``artifact_count``, or ``X-Total-Count``)
    do not cover came back full; at most ``http.settings.concurrency`` pages of this
    listing are in flight. The first short or empty page ends the listing. A page that
    fails is retried alone by :meth:`HarborHttp.request`. ``slots`` is held from a page's
    request until ``on_page`` returns, so the pages held in memory are bounded across
    listings. More than ``max_pages`` full pages is not a Harbor: exit 3, never a listing
    cut short in silence.
    """
    if known_total == 0:
        return
    window = asyncio.Semaphore(http.settings.concurrency)
    changed = asyncio.Event()
    claimed = max(1, math.ceil(known_total / page_size)) if known_total else 1
    last: int | None = None  # the first short page seen: the listing ends there
    full_upto = 0  # the highest page that came back full

    async def fetch(page: int) -> None:
        nonlocal claimed, last, full_upto
        try:
            async with slots:
                query = {**params, "page": page, "page_size": page_size}
                response = await http.request("GET", path, params=query, headers=headers,
                                              permission=permission)
                items = listing_of(http, response, path, null_is_empty=null_is_empty)
                total = total_count(response)
                if total is not None:
                    # A hint only: it widens what may be asked at once, never what is held.
                    claimed = max(claimed, min(math.ceil(total / page_size), max_pages))
                if len(items) < page_size:
                    last = page if last is None else min(last, page)
                else:
                    full_upto = max(full_upto, page)
                await on_page(items)
        finally:
            window.release()
            changed.set()

    page = 1
    try:
        async with asyncio.TaskGroup() as group:
            while True:
                await window.acquire()
                while last is None and page > claimed and page > full_upto + 1:
                    changed.clear()
                    await changed.wait()
                if last is not None or page > max_pages:
                    window.release()
                    break
                group.create_task(fetch(page))
                page += 1
    except BaseExceptionGroup as failed:
        # One page's error (not Harbor's answer, unreachable...) is the listing's error.
        raise first_error(failed) from None
    if last is None:
        raise ServiceError(
            SERVICE, http.host,
            f"GET {path}: more than {max_pages} full pages of {page_size}; Harbor keeps "
            "sending more",
            hint="this is not Harbor's answer; check [harbor] url and any proxy in front of "
                 "Harbor")
