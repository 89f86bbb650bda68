"""Choosing the Harbor client: ``api_version`` auto, v2, v1."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from careen.errors import ExitCode, ServiceError
from careen.registries.harbor import CredentialsRejectedError, open_harbor
from careen.registries.harbor_v1 import HarborV1Client
from careen.registries.harbor_v2 import HarborV2Client

from .fakes import PASSWORD, FakeHarbor, error, settings

sim = pytest.importorskip("careen.sim.harbor")


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
    # ... and, a user being configured, asks who it is: 404 here, a Harbor that does not say.
    assert fake.paths() == ["/api/v2.0/systeminfo", "/api/v2.0/ping", "/api/systeminfo",
                            "/api/users/current"]


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
async def test_explicit_version_without_a_user_sends_nothing(fake: FakeHarbor, version: str,
                                                             kind: type) -> None:
    harbor = await open_harbor(settings(api_version=version, user=None, password=None),
                               transport=fake.transport())
    await harbor.aclose()
    assert isinstance(harbor, kind) and fake.requests == []


# -- credentials Harbor does not take (NOTES §2: bad credentials fall through to anonymous) ---


async def test_v2_credentials_answered_as_anonymous_are_an_error(fake: FakeHarbor) -> None:
    """Harbor 2.x hides ``harbor_version`` from an anonymous caller (NOTES §6.8, §11.10)."""
    fake.route("/api/v2.0/systeminfo", {"auth_mode": "db_auth", "self_registration": False})
    with pytest.raises(CredentialsRejectedError) as caught:
        await open_harbor(settings(), transport=fake.transport())
    error = caught.value
    assert error.exit_code == ExitCode.UNREACHABLE
    assert str(error) == "Harbor at harbor.example.com did not accept the credentials of admin"
    assert "CAREEN_HARBOR_PASSWORD" in (error.hint or "")
    assert "password_file" in (error.hint or "") and "rotated" in (error.hint or "")
    assert PASSWORD not in str(error) + (error.hint or "")


async def test_v2_accepted_credentials_cost_no_extra_request(fake: FakeHarbor) -> None:
    fake.route("/api/v2.0/systeminfo", {"auth_mode": "db_auth", "harbor_version": "v2.9.0"})
    harbor = await open_harbor(settings(api_version="v2"), transport=fake.transport())
    await harbor.aclose()
    assert fake.paths() == ["/api/v2.0/systeminfo"]


async def test_v2_locked_systeminfo_asks_users_current(fake: FakeHarbor) -> None:
    """No system info (Harbor 2.0/2.1, or locked down): ``/users/current`` is 401 for an
    anonymous caller."""
    fake.route("/api/v2.0/users/current",
               lambda r: error(401, "UNAUTHORIZED", "UnAuthorized"))
    with pytest.raises(CredentialsRejectedError):
        await open_harbor(settings(api_version="v2"), transport=fake.transport())
    assert fake.paths() == ["/api/v2.0/systeminfo", "/api/v2.0/users/current"]


async def test_v2_robot_is_no_user_but_is_authenticated(fake: FakeHarbor) -> None:
    """A robot asking ``/users/current`` gets 412 from Harbor 2.x: taken, not rejected."""
    fake.route("/api/v2.0/users/current",
               lambda r: error(412, "PRECONDITION", "get current user not available"))
    harbor = await open_harbor(settings(api_version="v2", user="robot$careen"),
                               transport=fake.transport())
    await harbor.aclose()
    assert isinstance(harbor, HarborV2Client)


async def test_v1_credentials_answered_as_anonymous_are_an_error(fake: FakeHarbor) -> None:
    """Harbor 1.x: ``GET /api/users/current`` is 401 "User need to log in first" for an
    anonymous caller (v1.6.3 swagger)."""
    fake.route("/api/users/current", lambda r: httpx.Response(401, text="UnAuthorize\n"))
    with pytest.raises(CredentialsRejectedError) as caught:
        await open_harbor(settings(api_version="v1"), transport=fake.transport())
    assert "did not accept the credentials of admin" in str(caught.value)


async def test_v1_accepted_credentials(fake: FakeHarbor) -> None:
    fake.route("/api/users/current", {"user_id": 1, "username": "admin"})
    harbor = await open_harbor(settings(api_version="v1"), transport=fake.transport())
    await harbor.aclose()
    assert isinstance(harbor, HarborV1Client)


async def test_a_user_without_a_password_is_refused(fake: FakeHarbor) -> None:
    with pytest.raises(CredentialsRejectedError) as caught:
        await open_harbor(settings(password=None), transport=fake.transport())
    assert "no password is set for admin" in (caught.value.hint or "")
    assert fake.requests == []


# -- the same against the simulator, which falls through to anonymous as Harbor does ---------

SIM_PASSWORD = "Harbor12345"  # the simulated fleet's admin password: test data


def _sim_fleet(version: str) -> dict[str, Any]:
    return {"harbor_version": version, "users": {"admin": SIM_PASSWORD},
            "projects": [
                {"name": "library", "public": False, "repositories": [
                    {"name": "nginx", "artifacts": [{"tags": ["1.25"], "scan": {"high": 2}}]}]},
                {"name": "team", "public": True, "repositories": [
                    {"name": "api", "artifacts": [{"tags": ["1.0"], "scan": {"high": 1}}]}]}]}


@pytest.mark.parametrize("version", ["2.10.0", "1.6.3"])
async def test_simulator_falls_through_and_careen_refuses(version: str) -> None:
    with sim.SimulatorServer(sim.Fleet.from_dict(_sim_fleet(version)),
                             sim.SimOptions()) as server:
        wrong = settings(url=server.url, password=SecretStr("rotated-away"))
        # The simulator behaves as Harbor: the bad password still reads the public project.
        async with HarborV2Client(wrong) if version.startswith("2") \
                else HarborV1Client(wrong) as raw:
            public = [a.repository async for a in raw.artifacts()]
        assert public == ["team/api"]
        with pytest.raises(CredentialsRejectedError) as caught:
            await open_harbor(wrong)
        assert str(caught.value) == (f"Harbor at {wrong.host} did not accept the credentials "
                                     "of admin")
        harbor = await open_harbor(settings(url=server.url, password=SecretStr(SIM_PASSWORD)))
        try:
            found = sorted([a.repository async for a in harbor.artifacts()])
        finally:
            await harbor.aclose()
        assert found == ["library/nginx", "team/api"]
        assert isinstance(harbor, HarborV2Client if version.startswith("2") else HarborV1Client)
        anonymous = await open_harbor(settings(url=server.url, user=None, password=None))
        await anonymous.aclose()  # no user configured: anonymous reading is allowed
