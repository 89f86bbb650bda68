"""The composition root: Config -> the parts a job works with; builders and Harbor API
versions looked up by name; what differs between Harbor versions read as a capability."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

from careen import assemble, builders
from careen.builders import BUILDERS, BuildahBuilder, BuilderKind, DockerBuilder
from careen.builders.credentials import AuthContext, LoginTool
from careen.builders.interface import Builder
from careen.config import Config, load_config
from careen.errors import ConfigError, PolicySyntaxError, UsageError
from careen.events import NULL_OBSERVER
from careen.registries import HARBOR_APIS, harbor_api
from careen.registries.harbor import open_harbor

REGISTRY = "registry.example:5443"


def config_of(tmp_path: Path, **environ: str) -> Config:
    base: Mapping[str, str] = {"CAREEN_REGISTRY_SERVER": REGISTRY,
                               "CAREEN_HARBOR_URL": "https://harbor.example",
                               "CAREEN_TREE_ROOT": str(tmp_path)}
    return load_config(None, cwd=tmp_path, environ={**base, **environ})


@pytest.mark.parametrize(("name", "kind"), [("docker", DockerBuilder),
                                            ("buildah", BuildahBuilder)])
def test_the_configured_builder_is_looked_up_by_name(
    tmp_path: Path, name: str, kind: type[Builder],
) -> None:
    config = config_of(tmp_path, CAREEN_BUILD_BUILDER=name)  # no credentials: no login
    with assemble.logged_in_builder(config) as builder:
        assert isinstance(builder, kind)


def test_a_new_builder_is_one_entry_in_the_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[tuple[AuthContext, int]] = []

    class Kaniko:
        name = "kaniko"

    def make(auth: AuthContext, jobs: int) -> Builder:
        made.append((auth, jobs))
        return Kaniko()  # type: ignore[return-value]

    monkeypatch.setitem(BUILDERS, "kaniko", BuilderKind(LoginTool.DOCKER, make))
    config = config_of(tmp_path, CAREEN_BUILD_BUILDER="kaniko", CAREEN_BUILD_JOBS="3")
    with assemble.logged_in_builder(config) as builder:
        assert isinstance(builder, Kaniko)
    assert [jobs for _, jobs in made] == [3]


def test_a_builder_not_in_the_table_is_a_config_error_naming_the_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_of(tmp_path, CAREEN_BUILD_BUILDER="podman")
    assert caught.value.key == "build.builder"
    assert 'expected one of "docker" or "buildah"' in str(caught.value)
    assert list(builders.BUILDERS) == ["docker", "buildah"]


def test_an_api_version_not_in_the_table_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        config_of(tmp_path, CAREEN_HARBOR_API_VERSION="v3")
    assert caught.value.key == "harbor.api_version"
    assert 'expected one of "auto", "v2" or "v1"' in str(caught.value)


@pytest.mark.parametrize(("version", "by_digest"), [("v2", True), ("v1", False)])
def test_each_harbor_api_says_how_it_rescans(
    tmp_path: Path, version: str, by_digest: bool,
) -> None:
    """Harbor 1.x's scan API names tags only (NOTES §9): a rescan names the tag there, the
    pushed digest on 2.x. The nightly job reads this, not the client's class."""
    config = config_of(tmp_path, CAREEN_HARBOR_API_VERSION=version)

    async def capability() -> tuple[str, bool]:
        client = await open_harbor(assemble.harbor_settings(config))  # no request sent
        try:
            return type(client).__name__, client.rescans_by_digest
        finally:
            await client.aclose()

    name, rescans_by_digest = asyncio.run(capability())
    assert name == HARBOR_APIS[version].rpartition(":")[2] == harbor_api(version).__name__
    assert rescans_by_digest is by_digest


def test_job_parts_check_the_policy_and_the_registry_first(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no registry to push to"):
        assemble.job_parts(load_config(None, cwd=tmp_path, environ={}))
    with pytest.raises(PolicySyntaxError, match="column 7"):
        assemble.job_parts(config_of(tmp_path, CAREEN_POLICY_RULE="high >>> 2"))


def test_job_parts_carry_the_settings_the_job_needs_and_never_the_config(
    tmp_path: Path,
) -> None:
    config = config_of(tmp_path, CAREEN_HARBOR_PROJECTS="library,apps",
                       CAREEN_NOTIFY_WEBHOOK="https://hooks.example/T0/SECRET",
                       CAREEN_BUILD_TIMEOUT="600")
    parts = assemble.job_parts(config)
    assert parts.registry == REGISTRY
    assert parts.projects == ("library", "apps")
    assert parts.harbor_url == "https://harbor.example"
    assert parts.build.timeout == 600.0
    assert parts.webhook == "https://hooks.example/T0/SECRET"
    assert "SECRET" not in repr(parts)
    assert not any(isinstance(value, Config) for value in vars(parts).values())
    tree, revision = parts.open_tree(False, NULL_OBSERVER)
    assert tree.images == {} and revision.commit is None


@pytest.fixture(autouse=True)
def _no_login_tools(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # Nothing here logs in (no credentials are configured); a login would be a bug.
    monkeypatch.setattr(AuthContext, "login", lambda *a, **k: pytest.fail("logged in"))
    yield
