"""The demo: its data (tree, OS image versions, advisories) and, in the lab, its environment."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from pydantic import SecretStr

from careen.builders import BuildahBuilder, BuildRequest, LoginTool, build_and_push, private_auth
from careen.config import load_config
from careen.demo import EXPECTED, DemoSite, load_demo, start_demo, stop_demo
from careen.demo import environment as demo_environment
from careen.demo.environment import PROJECT, UPSTREAM_IMAGE, check_requirements, config_text
from careen.errors import ConfigError, UsageError
from careen.events import RecordingObserver
from careen.lab import Lab, missing_packages
from careen.policy import DEFAULT_RULE, Policy, Rule
from careen.reference import ImageReference
from careen.registries.harbor import open_harbor
from careen.registries.harbor_v2 import HarborV2Client
from careen.registries.http import HarborApiError, HarborSettings
from careen.scan import ScanSummary
from careen.sim.harbor.package_scanner import (
    AdvisoryDatabase,
    Package,
    parse_package_list,
)
from careen.sim.harbor.scanner import DetailedScanResult
from careen.tree.discover import DockerfileTree, discover_tree
from careen.tree.graph import BuildGraph
from careen.vulnerable import find_vulnerable

REGISTRY = "registry.test:5000"
DATA = resources.files("careen.demo") / "data"


def _ref(text: str) -> ImageReference:
    return ImageReference.parse(text)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> DockerfileTree:
    root = tmp_path_factory.mktemp("demo") / "tree"
    with resources.as_file(DATA / "tree") as shipped:
        shutil.copytree(shipped, root)
    return discover_tree(root, project=PROJECT, registry=REGISTRY,
                         build_args={"REGISTRY": REGISTRY}, layout="app/version")


@pytest.fixture(scope="module")
def advisories() -> AdvisoryDatabase:
    with resources.as_file(DATA / "advisories.toml") as path:
        return AdvisoryDatabase.from_file(path)


def _upstream_packages(version: str) -> tuple[Package, ...]:
    return parse_package_list((DATA / "upstream" / version / "packages.txt").read_text())


def _image_packages(tree: DockerfileTree, reference: ImageReference,
                    os_version: str) -> tuple[Package, ...]:
    """What the image holds when built on ``os_version`` of the OS image: its own list plus
    its parents', down to the OS image (or to the bare busybox base, which has none)."""
    image = tree.images[reference]
    own = parse_package_list((image.folder / "packages.txt").read_text())
    (parent,) = image.parents
    inherited: tuple[Package, ...] = ()
    resolved = tree.resolve_parent(parent)
    if resolved is not None:
        inherited = _image_packages(tree, resolved, os_version)
    elif parent.normalized().repository == UPSTREAM_IMAGE.split(":")[0]:
        inherited = _upstream_packages(os_version)
    return (*inherited, *own)


def _breaks_default_policy(result: DetailedScanResult) -> bool:
    values = {word.lower(): result.count(word)
              for word in ("Critical", "High", "Medium", "Low", "Unknown", "None")}
    verdict, _ = Rule.parse(DEFAULT_RULE).evaluate(values)
    return bool(verdict)


# -- the shipped data ---------------------------------------------------------------------------

def test_the_tree_builds_the_fleet_with_the_expected_parents(tree: DockerfileTree) -> None:
    assert not tree.problems
    assert sorted(r.short for r in tree.images) == sorted(EXPECTED.selected + EXPECTED.unrelated)
    parents = {r.short: tuple(p.short for p in tree.tree_parents(r)) for r in tree.images}
    assert parents == {
        "library/base:1.0": (), "library/jre:8": ("library/base:1.0",),
        "library/tomcat:8.5": ("library/jre:8",), "library/nginx:1.25": ("library/base:1.0",),
        "library/python:3.11": ("library/base:1.0",), "library/redis:7.2": (),
        "library/postgres:16": (), "library/memcached:1.6": (),
    }
    # Every FROM is registry-qualified, so builders pull from the lab and nowhere else.
    for image in tree.images.values():
        assert not image.unresolved
        assert all(p.registry == REGISTRY for p in image.parents), image.reference
    external = {p.normalized().short for i in tree.images.values() for p in i.parents
                if tree.resolve_parent(p) is None}
    assert external == {UPSTREAM_IMAGE, "library/busybox-base:1.0"}


def test_the_rebuild_order_is_parents_first(tree: DockerfileTree) -> None:
    order = BuildGraph.from_tree(tree).build_order(_ref(s) for s in EXPECTED.selected)
    assert tuple(tuple(r.short for r in level) for level in order) == EXPECTED.order


def test_the_old_fleet_breaks_the_policy_exactly_where_expected(
        tree: DockerfileTree, advisories: AdvisoryDatabase) -> None:
    before = {r.short: advisories.scan(_image_packages(tree, r, "os-stable-old"))
              for r in tree.images}
    assert sorted(s for s, result in before.items() if _breaks_default_policy(result)) == sorted(
        EXPECTED.selected)
    assert {s: dict(before[s].counts) for s in EXPECTED.unrelated} == {
        "library/redis:7.2": {"Low": 1}, "library/postgres:16": {}, "library/memcached:1.6": {}}


def test_rebuilding_on_the_patched_os_fixes_every_selected_image(
        tree: DockerfileTree, advisories: AdvisoryDatabase) -> None:
    for reference in tree.images:
        before = advisories.scan(_image_packages(tree, reference, "os-stable-old"))
        after = advisories.scan(_image_packages(tree, reference, "os-stable-patched"))
        assert not _breaks_default_policy(after), reference
        if reference.short in EXPECTED.selected:
            assert after.total < before.total, reference
        else:
            assert after == before, reference  # not on the OS image: the update changes nothing
    # What a rebuild cannot fix stays, honestly: pins the Dockerfiles do not move.
    nginx = advisories.scan(_image_packages(tree, _ref("library/nginx:1.25"),
                                            "os-stable-patched"))
    assert {(f.package, f.fix_version) for f in nginx.findings} == {
        ("nginx", "1.25.4"), ("libxml2", "")}


def test_the_patched_os_image_passes_the_policy(advisories: AdvisoryDatabase) -> None:
    assert _breaks_default_policy(advisories.scan(_upstream_packages("os-stable-old")))
    assert not _breaks_default_policy(advisories.scan(_upstream_packages("os-stable-patched")))


def test_every_advisory_names_a_package_the_fleet_installs(
        advisories: AdvisoryDatabase, tree: DockerfileTree) -> None:
    installed = {p.name for r in tree.images for p in _image_packages(tree, r, "os-stable-old")}
    assert {a.package for a in advisories.advisories} <= installed


# -- careen.toml and the site description -------------------------------------------------------

def _site(tmp_path: Path, builder: str = "buildah") -> DemoSite:
    lab = Lab(dir=tmp_path / "lab", open_registry="127.0.0.1:5001",
              auth_registry="127.0.0.1:5002", user="careen",
              password_file=tmp_path / "lab" / "password", socket=tmp_path / "lab" / "p.sock")
    (tmp_path / "lab").mkdir()
    lab.password_file.write_text("registry-secret\n")
    harbor_password = tmp_path / "harbor-password"
    harbor_password.write_text("harbor-secret\n")
    return DemoSite(folder=tmp_path, config_path=tmp_path / "careen.toml", lab=lab,
                    harbor_url="http://127.0.0.1:5003",
                    registry="localhost:5002" if builder == "docker" else "127.0.0.1:5002",
                    builder="docker" if builder == "docker" else "buildah",
                    harbor_password_file=harbor_password, simulator_pid=0)


@pytest.mark.parametrize("builder", ["buildah", "docker"])
def test_the_config_points_careen_at_the_demo(tmp_path: Path, builder: str) -> None:
    site = _site(tmp_path, builder)
    text = config_text(site)
    assert "secret" not in text
    site.config_path.write_text(text)
    config = load_config(site.config_path, cwd=tmp_path, environ={})
    assert config.harbor.url == "http://127.0.0.1:5003"
    assert config.harbor.password is not None
    assert config.harbor.password.get_secret_value() == "harbor-secret"
    assert config.registry.server == site.registry
    assert config.registry.password is not None
    assert config.registry.password.get_secret_value() == "registry-secret"
    assert config.registry.verify_tls is False
    assert config.tree.root == tmp_path / "tree"
    assert config.build.builder == builder
    assert dict(config.build.build_args) == {"REGISTRY": site.registry}
    assert config.state.path == tmp_path / "state.sqlite"
    assert config.output.reports_dir == tmp_path / "reports"
    assert config.output.vulnerable_list == tmp_path / "vulnerable.list"


def test_the_environment_names_the_config_and_the_builders_settings(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    (tmp_path / "d").mkdir()
    site = _site(tmp_path / "b")
    buildah = site.environ()
    assert buildah["CAREEN_CONFIG"] == str(tmp_path / "b" / "careen.toml")
    assert buildah["CONTAINERS_STORAGE_CONF"] == str(tmp_path / "b" / "lab" / "storage.conf")
    assert "DOCKER_HOST" not in buildah
    docker = _site(tmp_path / "d", "docker").environ()
    assert docker["DOCKER_HOST"] == f"unix://{tmp_path / 'd' / 'lab' / 'p.sock'}"
    assert not any("secret" in value for value in (*buildah.values(), *docker.values()))
    text = site.describe()
    assert "export CAREEN_CONFIG=" in text and "careen plan" in text and "secret" not in text


def test_an_unknown_builder_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="unknown builder 'kaniko'"):
        check_requirements("kaniko")


def test_missing_packages_name_the_install_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo_environment, "missing_packages", lambda: ["buildah", "skopeo"])
    with pytest.raises(ConfigError, match=r"buildah, skopeo.*apt-get install -y"):
        check_requirements("buildah")


def test_stopping_where_no_demo_runs_is_fine(tmp_path: Path) -> None:
    stop_demo(tmp_path)
    stop_demo(tmp_path / "never-made", remove=True)
    with pytest.raises(UsageError, match="no demo in"):
        load_demo(tmp_path)


# -- the whole environment, in the lab ----------------------------------------------------------

@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoSite]:
    missing = missing_packages()
    if missing:
        pytest.skip(f"the lab's packages are missing: {', '.join(missing)}")
    folder = tmp_path_factory.mktemp("demo-site")
    site = start_demo(folder, builder="buildah", observer=RecordingObserver())
    try:
        yield site
    finally:
        stop_demo(folder)


def _harbor(site: DemoSite) -> HarborSettings:
    return HarborSettings(url=site.harbor_url, user=site.harbor_user,
                          password=SecretStr(site.harbor_password_file.read_text().strip()),
                          api_version="v2")


@pytest.mark.lab
def test_the_simulator_lists_the_fleet_and_the_policy_selects_the_expected_images(
        demo: DemoSite) -> None:
    async def judge() -> tuple[list[str], list[str]]:
        client = await open_harbor(_harbor(demo))
        async with client:
            seen: list[str] = []
            selection = await find_vulnerable(
                client, Policy.from_settings(),
                on_image=lambda image, verdict: seen.append(image.reference.short))
        return sorted(seen), sorted(image.reference.short for image, _ in selection.selected)

    seen, selected = asyncio.run(judge())
    assert seen == sorted([*EXPECTED.selected, *EXPECTED.unrelated, *EXPECTED.outside_tree])
    assert selected == sorted(EXPECTED.selected)
    assert load_demo(demo.folder) == demo


@pytest.mark.lab
def test_a_hand_rebuilt_base_is_rescanned_with_fewer_findings(demo: DemoSite) -> None:
    async def summary_of_the_tag() -> ScanSummary:
        client = await open_harbor(_harbor(demo))
        async with client:
            return await client.scan_summary(ImageReference.parse("library/base:1.0"))

    before = asyncio.run(summary_of_the_tag())
    image = ImageReference.parse(f"{demo.registry}/library/base:1.0")
    with private_auth() as auth:
        assert auth.login(demo.lab.login(), tool=LoginTool.BUILDAH,
                          env=demo.lab.buildah_env()).ok
        builder = BuildahBuilder(auth=auth, env=demo.lab.buildah_env(),
                                 insecure_registries=demo.lab.registries)
        built, pushed = build_and_push(builder, BuildRequest(
            image=image, context=demo.tree / "base" / "1.0",
            log_path=demo.folder / "logs" / "hand-rebuild.log",
            build_args={"REGISTRY": demo.registry}))
    assert built.ok and pushed is not None and pushed.ok and pushed.digest
    rebuilt = ImageReference(image.repository, None, pushed.digest, None)

    async def rescan() -> ScanSummary:
        client = await open_harbor(_harbor(demo))
        async with client:
            assert isinstance(client, HarborV2Client)
            deadline = time.monotonic() + 30
            while True:  # Harbor learns of the push from the registry a moment later
                try:
                    await client.request_scan(rebuilt)
                    break
                except HarborApiError as error:
                    if error.status != 404 or time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.2)
            return (await client.wait_for_scans([rebuilt], timeout=30, interval=0.2))[rebuilt]

    after = asyncio.run(rescan())
    assert before.counts is not None and after.counts is not None
    assert {k: n for k, n in before.counts.as_dict().items() if n} == {
        "high": 1, "medium": 3, "low": 1}
    assert {k: n for k, n in after.counts.as_dict().items() if n} == {"low": 1}


@pytest.mark.lab
def test_stopping_the_demo_stops_everything_and_twice_is_fine(demo: DemoSite) -> None:
    # Last in the module: the module's demo is stopped here (its fixture stops it again).
    assert demo.simulator_running() and demo.lab.running()
    stop_demo(demo.folder)
    assert not demo.simulator_running()
    assert not demo.lab.running()
    stop_demo(demo.folder)
