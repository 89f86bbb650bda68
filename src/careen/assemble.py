"""Build the core's objects from a :class:`careen.config.Config`.

The config module knows keys and layers; the adapters know nothing of config files. This is
the one place that turns the first into the second, so the CLI (and library users holding a
Config) never repeat it.
"""

from __future__ import annotations

from careen.config import Config
from careen.policy import Policy
from careen.registries.http import HarborSettings


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


def policy(config: Config) -> Policy:
    section = config.policy
    return Policy.from_settings(
        section.rule, section.fixable_only, section.ignore, section.unscanned,
        source=config.source_of("policy.rule"),
    )
