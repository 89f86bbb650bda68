"""Choosing the Harbor client: ``api_version`` auto, v2, v1."""

from __future__ import annotations

import httpx
import pytest

from careen.errors import ServiceError
from careen.registries.harbor import open_harbor
from careen.registries.harbor_v1 import HarborV1Client
from careen.registries.harbor_v2 import HarborV2Client

from .fakes import FakeHarbor, error, settings


async def test_auto_finds_v2_by_systeminfo(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/systeminfo", {"auth_mode": "db_auth", "harbor_version": "v2.9.0"})
    harbor = await open_harbor(settings(), transport=fake.transport())
    await harbor.aclose()
    assert isinstance(harbor, HarborV2Client)
    assert fake.paths() == ["/api/v2.0/systeminfo"]


async def test_auto_finds_v2_by_ping_when_systeminfo_is_missing(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/ping", lambda r: httpx.Response(200, text="Pong"))
    harbor = await open_harbor(settings(), transport=fake.transport())
    await harbor.aclose()
    assert isinstance(harbor, HarborV2Client)


async def test_auto_falls_back_to_v1(fake: FakeHarbor) -> None:
    fake.route("/api/systeminfo", {"harbor_version": "v1.6.3-abc", "auth_mode": "db_auth"})
    harbor = await open_harbor(settings(), transport=fake.transport())
    await harbor.aclose()
    assert isinstance(harbor, HarborV1Client)
    assert fake.paths() == ["/api/v2.0/systeminfo", "/api/v2.0/ping", "/api/systeminfo"]


async def test_auto_without_any_harbor_api_names_the_url(fake: FakeHarbor) -> None:
    with pytest.raises(ServiceError) as caught:
        await open_harbor(settings(), transport=fake.transport())
    assert "harbor.example.com" in str(caught.value) and "[harbor] url" in (caught.value.hint
                                                                           or "")


async def test_auto_does_not_hide_server_failures(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/systeminfo", lambda r: error(400, "BAD_REQUEST", "bad"))
    with pytest.raises(ServiceError):
        await open_harbor(settings(), transport=fake.transport())


@pytest.mark.parametrize(("version", "kind"), [("v2", HarborV2Client), ("v1", HarborV1Client)])
async def test_explicit_version_sends_nothing(fake: FakeHarbor, version: str,
                                              kind: type) -> None:
    harbor = await open_harbor(settings(api_version=version), transport=fake.transport())
    await harbor.aclose()
    assert isinstance(harbor, kind) and fake.requests == []
