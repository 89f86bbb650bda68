"""The composition root: the one place that turns a :class:`careen.config.Config` into the
parts the core works with.

The config module knows keys and layers; the core (:mod:`careen.nightly` and what it uses)
and the adapters know nothing of config files. Here, and only here, settings become objects:
the Harbor client (its API version looked up in :data:`careen.registries.HARBOR_APIS`), the
logged-in builder (looked up in :data:`careen.builders.BUILDERS`), the state store's path,
the Dockerfile tree and the policy, gathered into a :class:`careen.nightly.JobParts`. The CLI
(and a library user holding a Config) calls these and hands the parts down.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from careen.config import Config
from careen.errors import UsageError
from careen.events import NULL_OBSERVER, Observer
from careen.policy import Policy
from careen.registries.harbor import open_harbor
from careen.registries.http import HarborSettings

# The job's parts (the nightly job, the builders, the tree, the state, the digest resolver)
# are imported by the functions that make them: commands that only read Harbor (careen
# images, careen vulnerable) take their settings from here and would otherwise import the
# whole job at start-up, a third of a second of 'careen images' (bench/README.md).
if TYPE_CHECKING:
    from careen.builders.credentials import AuthContext, LoginTool
    from careen.builders.interface import Builder
    from careen.nightly import BuilderOpener, HarborOpener, JobParts
    from careen.registries.resolve import DigestResolver
    from careen.tree.discover import DockerfileTree
    from careen.tree.scm import TreeRevision


def harbor_settings(config: Config) -> HarborSettings:
    """``[harbor]`` as the client's settings; a missing URL is a ConfigError saying where to
    set it."""
    harbor = config.harbor
    url: str = config.require("harbor.url")
    return HarborSettings(
        url=url, user=harbor.user, password=harbor.password, verify_tls=harbor.verify_tls,
        ca_bundle=harbor.ca_bundle, timeout=harbor.timeout, concurrency=harbor.concurrency,
        page_size=harbor.page_size, api_version=harbor.api_version,
        max_response_bytes=harbor.max_response_bytes,
    )


def harbor_opener(config: Config, observer: Observer = NULL_OBSERVER) -> HarborOpener:
    """Opens the Harbor client when the job first needs it (a job that never reads Harbor,
    ``careen update``, needs no ``[harbor] url``)."""
    return lambda: open_harbor(harbor_settings(config), observer=observer)


def policy(config: Config) -> Policy:
    section = config.policy
    return Policy.from_settings(
        section.rule, section.fixable_only, section.ignore, section.unscanned,
        source=config.source_of("policy.rule"),
    )


def state_path(config: Config, override: Path | None = None) -> Path:
    """``--state`` > ``[state] path`` > the XDG state folder."""
    if override is not None:
        return override
    from careen.state.store import default_state_path

    if config.state.path is not None:
        return config.state.path
    return default_state_path(os.environ, Path.home())


def open_tree(config: Config, *, allow_dirty: bool, sync: bool = True,
              observer: Observer = NULL_OBSERVER) -> tuple[DockerfileTree, TreeRevision]:
    """The Dockerfile tree, brought up to date from ``[tree] git`` first if set, and its
    revision. A git tree with uncommitted changes is refused unless ``allow_dirty``: an image
    must be rebuildable from the commit its label names."""
    from careen.tree.discover import discover_configured
    from careen.tree.scm import describe_tree, require_clean, sync_tree

    root = config.tree.root
    if sync and config.tree.git:
        revision = sync_tree(root, url=config.tree.git, branch=config.tree.branch,
                             observer=observer)
    else:
        revision = describe_tree(root)
    if revision.is_git:
        require_clean(revision, allow_dirty=allow_dirty)
    tree = discover_configured(config, root=root)
    return tree, revision


def push_registry(config: Config) -> str:
    if config.registry.server is None:
        raise UsageError("no registry to push to",
                         hint="set [registry] server, CAREEN_REGISTRY_SERVER or registry_server")
    return config.registry.server


@contextmanager
def logged_in_builder(config: Config) -> Iterator[Builder]:
    """The configured builder (``[build] builder``, looked up in
    :data:`careen.builders.BUILDERS`), logged in to ``[registry] server`` in a private,
    temporary auth folder removed afterwards (the user's own ``~/.docker/config.json`` is
    never read nor written). The password goes to the login tool on stdin, never in argv."""
    from careen.builders import BUILDERS
    from careen.builders.credentials import private_auth

    registry = push_registry(config)
    kind = BUILDERS[config.build.builder]
    with private_auth() as auth:
        # [registry] verify_tls and ca_bundle hold for the login, the push and the pulls of
        # the build (a child pulls its rebuilt parent from this registry).
        auth.trust(registry, verify=config.registry.verify_tls,
                   ca_bundle=config.registry.ca_bundle)
        _login(config, auth, registry, kind.login_tool)
        yield kind.make(auth, config.build.jobs)


def _login(config: Config, auth: AuthContext, registry: str, tool: LoginTool) -> None:
    from careen.builders.credentials import RegistryLogin

    user, password = config.registry.user, config.registry.password
    if user is None or password is None:
        return  # an open registry (or one the builder is already allowed to push to)
    result = auth.login(RegistryLogin(registry, user, password,
                                      insecure=not config.registry.verify_tls), tool=tool)
    if not result.ok:
        raise result.failure()


def job_parts(config: Config, *, observer: Observer = NULL_OBSERVER,
              open_builder: BuilderOpener | None = None,
              open_harbor: HarborOpener | None = None) -> JobParts:
    """The parts of a job (``careen run``, ``careen update``, ``careen demo``) from
    ``config``: the policy and the push registry checked now (bad settings fail before
    anything starts); Harbor, the builder and the tree opened when the job needs them.
    ``open_builder`` and ``open_harbor`` replace the configured ones (tests, embedders)."""
    from careen.nightly import BuildDefaults, JobParts

    rules = policy(config)
    registry = push_registry(config)
    build = config.build
    webhook = config.notify.webhook
    # One client of the push registry: FROM digests (issue 19), and a resume's question
    # whether a push interrupted by a crash arrived.
    resolver = base_digests(config)
    return JobParts(
        policy=rules,
        registry=registry,
        open_harbor=open_harbor or harbor_opener(config, observer),
        open_builder=open_builder or (lambda: logged_in_builder(config)),
        open_tree=lambda allow_dirty, seen: open_tree(config, allow_dirty=allow_dirty,
                                                      observer=seen),
        tree_root=config.tree.root,
        build=BuildDefaults(build_args=dict(build.build_args), labels=dict(build.labels),
                            no_cache=build.no_cache, pull=build.pull, timeout=build.timeout),
        harbor_url=config.harbor.url,
        projects=tuple(config.harbor.projects),
        vulnerable_list=config.output.vulnerable_list,
        json_file=config.output.json_file,
        webhook=webhook.get_secret_value() if webhook is not None else None,
        title=config.notify.title,
        base_digests=resolver,
        pushed_tags=resolver,
    )


def base_digests(config: Config) -> DigestResolver:
    """Issue 19: the resolver of FROM images' digests; it may log in to the push registry
    (``[registry]``'s credentials), and to no other."""
    from careen.registries.resolve import resolver_for

    registry = config.registry
    return resolver_for(registry.server, registry.user, registry.password,
                        tls_verify=registry.verify_tls, ca_bundle=registry.ca_bundle)
