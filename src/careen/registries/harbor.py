"""Open the right Harbor client: v2 (Harbor 2.x) or v1 (Harbor 1.x).

``api_version = "auto"`` asks Harbor: ``/api/v2.0/systeminfo`` (or ``/api/v2.0/ping``, for a
Harbor whose system info is locked down) means 2.x; otherwise ``/api/systeminfo`` means 1.x.

With a user configured, the client is only handed out once Harbor has shown it took the
credentials. Harbor lets bad credentials fall through to anonymous (NOTES §2): a rotated robot
password would otherwise read the public projects only and turn the nightly job into a green
no-op. Harbor 2.x shows ``harbor_version`` in ``/systeminfo`` to authenticated callers only;
both versions answer ``/users/current`` with 401 for an anonymous one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import httpx

from careen.errors import CareenError, ServiceError
from careen.events import NULL_OBSERVER, Observer
from careen.registries import AUTO, harbor_api
from careen.registries.harbor_v1 import API_V1, HarborV1Client
from careen.registries.harbor_v2 import API_V2, HarborV2Client
from careen.registries.http import SERVICE, EventHook, HarborApiError, HarborSettings, Sleep

__all__ = ["CredentialsRejectedError", "HarborClient", "HarborSettings", "check_credentials",
           "detect_api_version", "open_harbor"]

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

    if settings.user is not None and settings.password is None:
        raise _no_password(settings.host, settings.user)  # before anything is sent
    client: HarborClient
    if settings.api_version != AUTO:
        client = speaking(settings.api_version)
    else:
        client = HarborV2Client(settings, observer=observer, transport=transport,
                                event_hooks=event_hooks, sleep=sleep)
        try:
            version = await detect_api_version(client)
        except BaseException:
            await client.aclose()
            raise
        if version != client.api_version:
            await client.aclose()
            observer.info(f"Harbor at {settings.host} speaks the 1.x API")
            client = speaking(version)
    try:
        await check_credentials(client)
    except BaseException:
        await client.aclose()
        raise
    return client


class CredentialsRejectedError(ServiceError):
    """A user is configured and Harbor answered as anonymous: its credentials were not taken."""

    def __init__(self, host: str, user: str, *, hint: str) -> None:
        CareenError.__init__(self, f"{SERVICE} at {host} did not accept the credentials of "
                                   f"{user}", hint=hint)
        self.service = SERVICE
        self.host = host
        self.user = user


async def check_credentials(client: HarborClient) -> None:
    """Raise :class:`CredentialsRejectedError` when a user is configured and Harbor answers
    ``client`` as anonymous. Anonymous reading is for a configuration without a user only.
    When Harbor gives no sign either way (an API that hides both), the client is trusted."""
    settings = client.settings
    user = settings.user
    if user is None:
        return
    if settings.password is None:
        raise _no_password(settings.host, user)
    if await client.answers_as_user() is False:
        raise CredentialsRejectedError(
            settings.host, user,
            hint="Harbor answered as anonymous. Was the robot account's password rotated, or "
                 "the account disabled or expired? Check CAREEN_HARBOR_PASSWORD or [harbor] "
                 "password_file, and [harbor] user (a robot is robot$name or "
                 "robot$project+name)")


def _no_password(host: str, user: str) -> CredentialsRejectedError:
    return CredentialsRejectedError(
        host, user, hint=f"no password is set for {user}: set CAREEN_HARBOR_PASSWORD or "
                         "[harbor] password_file (or remove [harbor] user to read as anonymous)")
