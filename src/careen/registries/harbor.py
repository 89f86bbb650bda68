"""Open the right Harbor client: v2 (Harbor 2.x) or v1 (Harbor 1.x).

``api_version = "auto"`` asks Harbor: ``/api/v2.0/systeminfo`` (or ``/api/v2.0/ping``, for a
Harbor whose system info is locked down) means 2.x; otherwise ``/api/systeminfo`` means 1.x.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx

from careen.errors import ServiceError
from careen.events import NULL_OBSERVER, Observer
from careen.registries import AUTO, harbor_api
from careen.registries.harbor_v1 import API_V1, HarborV1Client
from careen.registries.harbor_v2 import API_V2, HarborV2Client
from careen.registries.http import SERVICE, EventHook, HarborApiError, HarborSettings, Sleep

__all__ = ["HarborClient", "HarborSettings", "detect_api_version", "open_harbor"]

HarborClient = HarborV2Client | HarborV1Client


async def detect_api_version(client: HarborV2Client) -> str:
    """``"v2"`` or ``"v1"``, asked through ``client``'s connection (no other client is
    opened). A Harbor that answers neither is an error naming the URL."""
    try:
        await client.systeminfo()
    except HarborApiError as error:
        if error.status != 404:
            if error.status in (401, 403):
                # A locked-down system info still proves the v2 API is there.
                return "v2"
            raise
    else:
        return "v2"
    for path, version in ((f"{API_V2}/ping", "v2"), (f"{API_V1}/systeminfo", "v1")):
        response = await client.http.request("GET", path, accept=(200, 401, 403, 404))
        if response.status_code != 404:
            return version
    raise ServiceError(SERVICE, client.settings.host,
                       "no Harbor API at this URL (neither /api/v2.0 nor /api answers)",
                       hint="check [harbor] url: it is Harbor's address, e.g. "
                            "https://harbor.example.com, without /api")


async def open_harbor(settings: HarborSettings, *, observer: Observer = NULL_OBSERVER,
                      transport: httpx.AsyncBaseTransport | None = None,
                      event_hooks: Mapping[str, list[EventHook]] | None = None,
                      sleep: Sleep = asyncio.sleep) -> HarborClient:
    """A client for ``settings.api_version`` (``auto`` probes Harbor). The caller closes it
    (``await client.aclose()`` or ``async with``). Both clients implement
    :class:`careen.registries.interface.ScanSource`."""
    def speaking(version: str) -> HarborClient:
        client: HarborClient = harbor_api(version)(
            settings, observer=observer, transport=transport, event_hooks=event_hooks,
            sleep=sleep)
        return client

    if settings.api_version != AUTO:
        return speaking(settings.api_version)
    client = HarborV2Client(settings, observer=observer, transport=transport,
                            event_hooks=event_hooks, sleep=sleep)
    try:
        version = await detect_api_version(client)
    except BaseException:
        await client.aclose()
        raise
    if version == client.api_version:
        return client
    await client.aclose()
    observer.info(f"Harbor at {settings.host} speaks the 1.x API")
    return speaking(version)
