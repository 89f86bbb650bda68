"""One build, every tag, and the folder label, against the real lab registry (buildah): what
the registry holds after a multi-tag step, read through its own /v2/ API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from careen.builders import AuthContext, BuildahBuilder, LoginTool, RegistryLogin, private_auth
from careen.builders.interface import LABEL_TREE_PATH, build_and_push
from careen.lab import Lab
from careen.plan import Candidate, make_plan
from careen.reference import ImageReference
from careen.tree.discover import MappingEntry, discover_tree
from careen.update import UpdateOptions, build_request

pytestmark = pytest.mark.lab

MANIFEST_TYPES = ", ".join([
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
])


@pytest.fixture
def auth(lab: Lab) -> Iterator[AuthContext]:
    with private_auth() as context:
        login = context.login(RegistryLogin(lab.auth_registry, lab.user, lab.password(),
                                            insecure=True),
                              tool=LoginTool.BUILDAH, env=lab.buildah_env())
        assert login.ok, login.log_tail
        yield context


def test_a_multi_tag_step_pushes_one_digest_under_every_tag_with_its_folder(
    lab: Lab, auth: AuthContext, tmp_path: Path,
) -> None:
    root = tmp_path / "tree"
    (root / "redis/7.2").mkdir(parents=True)
    (root / "redis/7.2/Dockerfile").write_text(
        f"FROM {lab.open_registry}/library/busybox-base:1.0\nRUN echo redis > /redis\n")
    (root / "redis/latest").symlink_to("7.2", target_is_directory=True)
    tree = discover_tree(root, registry=lab.auth_registry, mapping={
        "library/redis-tags:7.2": MappingEntry("redis/7.2", ("7",)),
        "library/redis-tags:latest": "redis/latest"})
    plan = make_plan([Candidate(ImageReference.parse("library/redis-tags:7"), "high 1")], tree)
    [step] = plan.steps
    assert set(step.tags) == {"7.2", "7", "latest"} and step.tags[0] == "7.2"
    options = UpdateOptions(registry=lab.auth_registry, run_id="lab-tags",
                            log_dir=tmp_path / "logs", revision="f" * 40,
                            source="https://git.example/fleet")
    request = build_request(step, plan, options, datetime.now(UTC))
    builder = BuildahBuilder(auth=auth, env=lab.buildah_env(),
                             insecure_registries=lab.registries)
    built, pushed = build_and_push(builder, request)
    assert built.ok, built.log_tail
    assert pushed is not None and pushed.ok, pushed and pushed.log_tail

    with httpx.Client(base_url=lab.auth_registry_url, timeout=10,
                      auth=(lab.user, lab.password().get_secret_value())) as registry:
        listed = registry.get("/v2/library/redis-tags/tags/list").json()["tags"]
        assert set(listed) >= {"7.2", "7", "latest"}
        digests = {
            tag: registry.head(f"/v2/library/redis-tags/manifests/{tag}",
                               headers={"Accept": MANIFEST_TYPES}).headers["Docker-Content-Digest"]
            for tag in ("7.2", "7", "latest")
        }
        assert set(digests.values()) == {pushed.digest}
        manifest = registry.get(f"/v2/library/redis-tags/manifests/{pushed.digest}",
                                headers={"Accept": MANIFEST_TYPES}).json()
        config = registry.get(f"/v2/library/redis-tags/blobs/{manifest['config']['digest']}")
    labels = config.json()["config"]["Labels"]
    assert labels[LABEL_TREE_PATH] == "redis/7.2"
    assert labels["org.opencontainers.image.revision"] == "f" * 40
    assert labels["org.opencontainers.image.source"] == "https://git.example/fleet"
