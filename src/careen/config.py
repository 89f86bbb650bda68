"""Careen's settings: ``careen.toml``, ``CAREEN_*`` environment variables and command-line flags.

Values are layered, each layer overriding the one before it, key by key:

1. defaults (the models below);
2. the config file: ``--config PATH`` (must exist), else ``$CAREEN_CONFIG`` (must exist), else
   ``careen.toml`` in the working folder if there is one;
3. the seed's plain variables for the registry, oldest spelling first: ``registry_server``,
   ``registry_user``, ``registry_password`` (as the 2017 job set them), then ``REGISTRY_SERVER``,
   ``REGISTRY_USER``, ``REGISTRY_PASSWORD``;
4. ``CAREEN_<SECTION>_<KEY>`` variables (``CAREEN_HARBOR_VERIFY_TLS`` -> ``harbor.verify_tls``);
5. flags, handed over by the CLI as dotted keys (``{"harbor.url": ...}``).

Passwords are never read from the config file nor from flags (files get committed, argv is
visible to every user of the machine): only from the environment or a ``password_file``.

:func:`load_config` is pure: the environment and the working folder are passed in. The layers
are pydantic-settings sources (its TOML and environment sources, fed the given file and
variables, never ``os.environ``), merged and validated by it. This module adds what Careen
promises on top: where each value came from, messages naming the file, variable or flag and
the key ("did you mean"), secrets refused from the file and flags, relative paths, secret
files. The objects it returns are frozen; secrets are :class:`pydantic.SecretStr`, so ``repr``,
``str`` and :meth:`Config.show` never reveal them.
"""

from __future__ import annotations

import difflib
import functools
import json
import os
import re
import stat
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    SecretStr,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from careen.errors import ConfigError
from careen.reference import looks_like_host

__all__ = [
    "CONFIG_FILE_NAME",
    "ENVIRONMENT_PREFIX",
    "MASK",
    "NOT_SET",
    "BuildConfig",
    "Config",
    "HarborConfig",
    "JenkinsConfig",
    "NotifyConfig",
    "OutputConfig",
    "PolicyConfig",
    "RegistryConfig",
    "RunConfig",
    "StateConfig",
    "TreeConfig",
    "environment_variable_for",
    "find_config_file",
    "load_config",
]

CONFIG_FILE_NAME = "careen.toml"
ENVIRONMENT_PREFIX = "CAREEN_"
#: ``CAREEN_*`` variables that are not settings (so not "unknown setting" errors).
#: ``CAREEN_CONFIG`` names the config file.
NON_SETTING_VARIABLES = frozenset({"CAREEN_CONFIG"})
#: Prefixes of ``CAREEN_*`` variables owned by other tools: ``python -m careen.lab env``
#: exports ``CAREEN_LAB_*`` for the lab tests, and a shell that sourced it must still run careen.
NON_SETTING_PREFIXES = ("CAREEN_LAB_",)
#: What :meth:`Config.show` prints instead of a secret.
MASK = "********"
NOT_SET = "(not set)"

# --------------------------------------------------------------------------------------------
# Value types. Strict scalars: from TOML, ``verify_tls = "yes"`` is a mistake, not a yes.
# Lists become tuples and tables read-only mappings, so a loaded config cannot be changed.

Text = Annotated[str, Strict()]
Flag = Annotated[bool, Strict()]
Count = Annotated[int, Strict(), Field(ge=1)]
Seconds = Annotated[float, Strict(), Field(gt=0, allow_inf_nan=False)]
TextList = tuple[Text, ...]
Table = Annotated[
    Mapping[Text, Text],
    AfterValidator(MappingProxyType),
    PlainSerializer(dict),
]


def _empty_table() -> Mapping[str, str]:
    return MappingProxyType({})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HarborConfig(_Section):
    """``[harbor]``: where the scan results come from."""

    url: Text | None = None
    user: Text | None = None
    #: Only from ``CAREEN_HARBOR_PASSWORD`` or ``password_file``.
    password: SecretStr | None = None
    password_file: Path | None = None
    #: Harbor projects to read; empty means all of them.
    projects: TextList = ()
    verify_tls: Flag = True
    ca_bundle: Path | None = None
    timeout: Seconds = 30.0
    concurrency: Count = 16
    #: ``auto`` or a name of :data:`careen.registries.HARBOR_APIS`.
    api_version: Text = "auto"
    page_size: Annotated[int, Strict(), Field(ge=1, le=100)] = 100
    #: Largest answer read from Harbor, counted once decoded (a bigger one is exit 3).
    max_response_bytes: Annotated[int, Strict(), Field(ge=1024)] = 16 * 1024 * 1024

    @field_validator("api_version")
    @classmethod
    def _check_api_version(cls, name: str) -> str:
        from careen.registries import AUTO, HARBOR_APIS

        return _one_of(name, [AUTO, *HARBOR_APIS])

    @field_validator("url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        parts = urlsplit(url)
        if (any(c.isspace() for c in url) or parts.scheme not in ("http", "https")
                or not parts.hostname):
            raise ValueError("expected an http:// or https:// URL with a host, e.g. "
                             f"https://harbor.example.com, got {_describe(url)}")
        if parts.username is not None or parts.password is not None:
            # The URL is not echoed: it holds a credential.
            raise ValueError("the URL holds a user name or password; remove it and set "
                             "[harbor] user and CAREEN_HARBOR_PASSWORD instead")
        return url.rstrip("/")

    @property
    def host(self) -> str | None:
        """``host[:port]`` of :attr:`url` (the registry server when Harbor is the registry)."""
        if self.url is None:
            return None
        return urlsplit(self.url).netloc or None


class RegistryConfig(_Section):
    """``[registry]``: where rebuilt images are pushed (the seed's ``registry_*`` variables)."""

    #: ``host[:port]``, no scheme. Defaults to the host of ``[harbor] url``.
    server: Text | None = None
    user: Text | None = None
    #: Only from ``CAREEN_REGISTRY_PASSWORD`` (or the seed's variables) or ``password_file``.
    password: SecretStr | None = None
    password_file: Path | None = None
    #: Verify the registry's certificate, for the login, the push and the pulls of the build
    #: (false: plain HTTP or a self-signed certificate). Spelled as ``[harbor] verify_tls``.
    verify_tls: Flag = True
    #: A PEM file of the private CA that signed the registry's certificate (buildah takes it;
    #: a docker daemon must be given it in its own configuration).
    ca_bundle: Path | None = None
    #: The old spelling of ``verify_tls``: still read, with a deprecation warning.
    tls_verify: Flag | None = None

    @model_validator(mode="before")
    @classmethod
    def _old_spelling(cls, data: Any) -> Any:
        if (isinstance(data, dict) and isinstance(data.get("tls_verify"), bool)
                and "verify_tls" not in data):
            data = {**data, "verify_tls": data["tls_verify"]}
        return data

    @field_validator("tls_verify")
    @classmethod
    def _same_as_new_spelling(cls, old: bool | None, info: ValidationInfo) -> bool | None:
        if old is not None and info.data.get("verify_tls", old) != old:
            raise ValueError("tls_verify (the old spelling of verify_tls) disagrees with "
                             "verify_tls; keep verify_tls only")
        return old

    @field_validator("server")
    @classmethod
    def _check_server(cls, server: str | None) -> str | None:
        if server is None:
            return None
        if "@" in server:
            # Never echoed: what comes before the @ is a user name and a password.
            host = server.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[2]
            raise ValueError(f"expected host[:port] without a user name or password; write "
                             f"{host!r} and set [registry] user and CAREEN_REGISTRY_PASSWORD "
                             "instead")
        if "://" in server:
            bare = server.split("://", 1)[1].split("/", 1)[0]
            raise ValueError(f"expected host[:port] without a scheme; write {bare!r}, "
                             "not the URL")
        if _HOST_PORT.fullmatch(server) and not looks_like_host(server):
            # Docker reads a dot-less, port-less first component as a Docker Hub namespace:
            # images named harbor/library/app would be pushed to Docker Hub.
            raise ValueError(f"{_describe(server)} does not read as a registry host (no dot, "
                             "no port); write its full name or port, e.g. "
                             f"{server}.example.com or {server}:443")
        if not _HOST_PORT.fullmatch(server):
            # The server becomes part of image names handed to the builder: only what a
            # registry host can be passes (``evil;$(id)`` is a mistake or an attack).
            raise ValueError("expected host[:port], e.g. registry.example.com or "
                             f"registry.example.com:5000, got {_describe(server)}")
        return server


#: ``host[:port]`` as the distribution reference grammar allows it (DNS labels, an IPv4
#: address, or a bracketed IPv6 address).
_HOST_PORT = re.compile(
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*"
    r"|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
)


class PolicyConfig(_Section):
    """``[policy]``: which images must be rebuilt."""

    #: A rule of the policy module; None means its default rule
    #: ("critical > 0 or high > 0 or medium >= 3").
    rule: Text | None = None
    fixable_only: Flag = False
    #: Globs of images never selected.
    ignore: TextList = ()
    #: What to do with images Harbor has not scanned.
    unscanned: Literal["report", "select", "ignore"] = "report"


def _tree_table(value: Mapping[str, object], required: tuple[str, ...],
                what: str) -> Mapping[str, object]:
    """A read-only table of strings (and ``tags``, a list of strings) with these keys."""
    missing = [key for key in required if key not in value]
    unknown = [key for key in value if key not in (*required, "tags")]
    if missing or unknown:
        raise ValueError(f"{what} needs {', '.join(required)} (and may have tags)"
                         + (f"; unknown key {unknown[0]!r}" if unknown else ""))
    for key in required:
        if not isinstance(value[key], str):
            raise ValueError(f"{what}: {key} must be a string")
    return MappingProxyType(dict(value))


def _mapping_value(value: object) -> object:
    """A folder, or a table ``{ folder = "redis/7.2", tags = ["7", "latest"] }``."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        tags = value.get("tags", ())
        if not isinstance(tags, list | tuple) or not all(isinstance(t, str) for t in tags):
            raise ValueError("tags must be a list of strings")
        return _tree_table({**value, "tags": tuple(tags)}, ("folder",), "a mapping table")
    raise ValueError(f"expected a string (a folder) or a table, got {_describe(value)}")


#: ``[tree.mapping]`` value: a folder, or ``{ folder = "redis/7.2", tags = ["7", "latest"] }``.
MappingValue = Annotated[object, PlainValidator(_mapping_value)]
#: One ``[[tree.rule]]``: ``path``, ``image`` and optional ``tags`` templates.
RuleTable = Annotated[
    Mapping[Text, Text | TextList],
    AfterValidator(lambda value: _tree_table(value, ("path", "image"), "a [[tree.rule]]")),
]


class TreeConfig(_Section):
    """``[tree]``: where the Dockerfiles are (``app/version/Dockerfile``)."""

    root: Path = Path()
    layout: Literal["auto", "app/version", "project/app/version"] = "auto"
    #: The Harbor project of ``app/version`` folders.
    project: Annotated[str, Strict(), Field(min_length=1)] = "library"
    #: Explicit image -> folder (relative to ``root``), or -> ``{ folder, tags }``.
    mapping: Annotated[
        Mapping[Text, MappingValue], AfterValidator(MappingProxyType),
        PlainSerializer(dict),
    ] = Field(default_factory=_empty_table)
    #: ``[[tree.rule]]``: folder patterns -> image names, tried in order before the layout.
    rules: tuple[RuleTable, ...] = Field(default=(), alias="rule")
    #: More registry hosts that mean "this tree's registry" in FROM lines (mirrors, old names).
    registries: TextList = ()
    #: Skip (rather than mark "first rebuild") a tag Careen never built.
    require_provenance: Flag = False
    #: A git URL to clone the tree from, and the branch to use.
    git: Text | None = None
    branch: Text | None = None


class BuildConfig(_Section):
    """``[build]``: how images are rebuilt."""

    #: A name of :data:`careen.builders.BUILDERS`.
    builder: Text = "docker"

    @field_validator("builder")
    @classmethod
    def _check_builder(cls, name: str) -> str:
        from careen.builders import BUILDERS

        return _one_of(name, list(BUILDERS))
    build_args: Table = Field(default_factory=_empty_table)
    no_cache: Flag = True
    pull: Flag = True
    timeout: Seconds = 3600.0
    jobs: Count = 1
    #: Target platforms (``linux/amd64``...); empty means the builder's own.
    platforms: TextList = ()
    labels: Table = Field(default_factory=_empty_table)


class OutputConfig(_Section):
    """``[output]``: files Careen writes."""

    vulnerable_list: Path = Path("vulnerable.list")
    #: Key ``json`` (the attribute cannot be named so: ``BaseModel.json`` exists).
    json_file: Path | None = Field(default=None, alias="json")
    reports_dir: Path = Path("careen-reports")


class RunConfig(_Section):
    """``[run]``: the nightly job (``careen run``) beyond the build itself."""

    #: Ask Harbor to rescan every pushed image and compare before/after.
    rescan: Flag = True
    #: How long to wait for all rescans, and how often to ask.
    rescan_timeout: Seconds = 1800.0
    rescan_interval: Seconds = 10.0
    #: Report formats written to ``[output] reports_dir`` (empty: all of them).
    reports: TextList = ()
    #: Hold an image whose last rebuild did not help while none of its inputs changed
    #: (careen.hold); ``--no-hold`` turns it off for one run.
    hold: Flag = True


class NotifyConfig(_Section):
    """``[notify]``: a webhook told the summary at the end of a run."""

    #: Only from ``CAREEN_NOTIFY_WEBHOOK`` or ``webhook_file``: a Slack URL holds its token.
    webhook: SecretStr | None = None
    webhook_file: Path | None = None
    title: Text = "Careen nightly run"


class JenkinsConfig(_Section):
    """``[jenkins]``: what ``careen export jenkins`` writes into a pipeline."""

    #: The agent label the parallel build branches run on.
    agent_label: Text = "docker"


class StateConfig(_Section):
    """``[state]``: where Careen remembers runs (None: the XDG state folder, decided there)."""

    path: Path | None = None


class _Layers(BaseSettings):
    """Every section, as pydantic-settings merges them from :func:`load_config`'s sources
    (which it is always given: nothing is read from ``os.environ`` behind the caller's back)."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, case_sensitive=False,
        # CAREEN_HARBOR_VERIFY_TLS -> harbor.verify_tls: split once, after the section.
        env_nested_delimiter="_", env_nested_max_split=1,
    )

    harbor: HarborConfig = Field(default_factory=HarborConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    tree: TreeConfig = Field(default_factory=TreeConfig)
    build: BuildConfig = Field(default_factory=BuildConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    state: StateConfig = Field(default_factory=StateConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    jenkins: JenkinsConfig = Field(default_factory=JenkinsConfig)


#: Section name -> its model, in the order of the file (and of ``config show``).
SECTIONS: Mapping[str, type[_Section]] = MappingProxyType({
    name: typing.cast(type[_Section], info.annotation)
    for name, info in _Layers.model_fields.items()})

#: Keys that hold secrets: never from the file or flags, never shown.
SECRET_KEYS = frozenset({"harbor.password", "registry.password", "notify.webhook"})
#: The file each secret may be read from instead.
SECRET_FILES: Mapping[str, str] = MappingProxyType({
    "harbor.password": "password_file", "registry.password": "password_file",
    "notify.webhook": "webhook_file",
})

#: What to do when a required key is missing (:meth:`Config.require`).
_REQUIRE_HINTS: Mapping[str, str] = MappingProxyType({
    "harbor.url": "set [harbor] url in careen.toml or CAREEN_HARBOR_URL",
    "harbor.user": "set [harbor] user in careen.toml or CAREEN_HARBOR_USER",
    "harbor.password": "set CAREEN_HARBOR_PASSWORD or [harbor] password_file in careen.toml",
    "registry.server": "set [registry] server in careen.toml, CAREEN_REGISTRY_SERVER or "
                       "registry_server (or [harbor] url, whose host is the default)",
    "registry.user": "set [registry] user in careen.toml, CAREEN_REGISTRY_USER or registry_user",
    "registry.password": "set CAREEN_REGISTRY_PASSWORD, registry_password or "
                         "[registry] password_file in careen.toml",
})

# The seed's plain variables, lowest precedence first: the 2017 job's, then upper case.
_SEED_VARIABLES: tuple[tuple[str, ...], ...] = (
    ("registry_server", "registry_user", "registry_password"),
    ("REGISTRY_SERVER", "REGISTRY_USER", "REGISTRY_PASSWORD"),
)


def environment_variable_for(key: str) -> str:
    """``harbor.verify_tls`` -> ``CAREEN_HARBOR_VERIFY_TLS``."""
    return ENVIRONMENT_PREFIX + key.replace(".", "_").upper()


#: Section -> key (as written in files: ``json`` for ``output.json``) -> model attribute.
_KEYS: Mapping[str, Mapping[str, str]] = MappingProxyType({
    section: MappingProxyType({info.alias or name: name
                               for name, info in model.model_fields.items()})
    for section, model in SECTIONS.items()})


def _field(dotted: str) -> FieldInfo:
    section, _, key = dotted.partition(".")
    return SECTIONS[section].model_fields[_KEYS[section][key]]


# --------------------------------------------------------------------------------------------
# Where a value came from.


@dataclass(frozen=True)
class _Origin:
    #: How errors name it: ``careen.toml``, ``environment variable CAREEN_X``, ``command line``.
    error_label: str
    #: How ``config show`` names it: ``careen.toml``, ``CAREEN_X``, ``command line``.
    show_label: str
    #: Relative paths given here are relative to this folder.
    base: Path


# --------------------------------------------------------------------------------------------
# The loaded config.


@dataclass(frozen=True)
class Config:
    """The effective settings. Sections are frozen pydantic models; read them as attributes."""

    harbor: HarborConfig = field(default_factory=HarborConfig)
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    tree: TreeConfig = field(default_factory=TreeConfig)
    build: BuildConfig = field(default_factory=BuildConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    state: StateConfig = field(default_factory=StateConfig)
    run: RunConfig = field(default_factory=RunConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)
    jenkins: JenkinsConfig = field(default_factory=JenkinsConfig)
    #: The config file read, if any.
    file: Path | None = None
    #: Things a person should know (TLS verification off...); the CLI prints them.
    warnings: tuple[str, ...] = ()
    #: Dotted key -> where its value came from (``default``, ``careen.toml``,
    #: ``CAREEN_HARBOR_URL``, ``registry_user``, ``command line``, ``password_file``...).
    sources: Mapping[str, str] = field(default_factory=_empty_table)

    def section(self, name: str) -> _Section:
        if name not in SECTIONS:
            raise KeyError(name)
        section: _Section = getattr(self, name)
        return section

    def get(self, key: str) -> Any:
        """The value of a dotted key (``harbor.url``); ``KeyError`` for an unknown key."""
        section, _, name = key.partition(".")
        if section not in _KEYS or name not in _KEYS[section]:
            raise KeyError(key)
        return getattr(self.section(section), _KEYS[section][name])

    def require(self, key: str) -> Any:
        """The value of ``key``, or a :class:`ConfigError` saying how to set it.

        Commands call this for the settings they cannot work without (``harbor.url`` for
        anything that talks to Harbor); other commands run without them.
        """
        value = self.get(key)
        if value is None or value == "":
            hint = _REQUIRE_HINTS.get(key)
            if hint is None:
                section, _, name = key.partition(".")
                hint = (f"set [{section}] {name} in {CONFIG_FILE_NAME} or "
                        f"{environment_variable_for(key)}")
            raise ConfigError(f"not set: {hint}", key=key)
        return value

    def source_of(self, key: str) -> str:
        """Where the value of ``key`` came from (``default`` when nothing set it)."""
        return self.sources.get(key, _DEFAULT_LABEL)

    def show(self, fmt: Literal["toml", "json"] = "toml") -> str:
        """The effective config with secrets masked.

        TOML (written by tomli-w, key by key): one key per line with its source as a comment
        (tables after the other keys, as ``[section.key]``); keys without a value and secrets
        are commented out, so the output still loads as a config file. JSON:
        ``{"harbor": {...}, ...}``, unset values as ``null``, set secrets as ``"********"``.
        """
        if fmt == "json":
            return json.dumps(
                {name: {key: _plain(self.get(f"{name}.{key}"),
                                    masked=f"{name}.{key}" in SECRET_KEYS)
                        for key in _KEYS[name]}
                 for name in SECTIONS},
                indent=2,
            )
        if fmt != "toml":
            raise ValueError(f"unknown format {fmt!r}: expected 'toml' or 'json'")
        lines: list[str] = []
        if self.file is not None:
            lines.append(f"# read from {self.file}")
        for name in SECTIONS:
            if lines:
                lines.append("")
            lines.append(f"[{name}]")
            tables: list[str] = []
            for key in _KEYS[name]:
                dotted = f"{name}.{key}"
                value = self.get(dotted)
                origin = self.source_of(dotted)
                source = "  # default" if origin == _DEFAULT_LABEL else f"  # from {origin}"
                if dotted in SECRET_KEYS:
                    shown = NOT_SET if value is None else f'"{MASK}"'
                    lines.append(f"# {key} = {shown}{source if value is not None else ''}")
                elif value is None:
                    lines.append(f"# {key} = {NOT_SET}")
                elif isinstance(value, Mapping):
                    # tomli-w writes a table as its own [section.key] header, after the keys.
                    first, *rest = tomli_w.dumps({name: {key: _plain(value)}}).splitlines()
                    tables += ["", first + source, *rest]
                else:
                    first, *rest = tomli_w.dumps({key: _plain(value)}).splitlines()
                    lines += [first + source, *rest]
            lines += tables
        return "\n".join(lines) + "\n"


def _plain(value: object, *, masked: bool = False) -> Any:
    """``value`` as JSON/TOML-able data; secrets (and anything marked ``masked``) as the mask."""
    if value is None:
        return None
    if masked or isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


# --------------------------------------------------------------------------------------------
# Loading: pydantic-settings assembles the layers; the sources below feed it.


def find_config_file(path: Path | None, *, cwd: Path, environ: Mapping[str, str]) -> Path | None:
    """The config file to read: ``path`` (``--config``), else ``$CAREEN_CONFIG``, else
    ``careen.toml`` in ``cwd`` if present, else None. A file named explicitly must exist."""
    if path is None and environ.get("CAREEN_CONFIG"):
        path = Path(environ["CAREEN_CONFIG"])
    if path is not None:
        resolved = path if path.is_absolute() else cwd / path
        if not resolved.is_file():
            what = "does not exist" if not resolved.exists() else "is not a file"
            raise ConfigError(f"config file {what}", source=str(path),
                              hint="check the --config path (or CAREEN_CONFIG), or leave it "
                                   f"out to use ./{CONFIG_FILE_NAME}")
        return path
    default = cwd / CONFIG_FILE_NAME
    return Path(CONFIG_FILE_NAME) if default.is_file() else None


def load_config(
    path: Path | None = None,
    *,
    cwd: Path,
    environ: Mapping[str, str],
    overrides: Mapping[str, object] | None = None,
) -> Config:
    """Read the layered settings (see the module docstring).

    ``path`` is the ``--config`` flag (None: ``$CAREEN_CONFIG`` or ``./careen.toml`` if present).
    ``overrides`` are the flags as dotted keys; a None value means "flag not given", so the
    CLI may pass all its options. Relative paths are resolved against the config file's folder
    for values from the file, against ``cwd`` otherwise; loaded paths are absolute.

    Raises :class:`ConfigError` naming the file/variable/flag and the key for any bad value.
    """
    file = find_config_file(path, cwd=cwd, environ=environ)
    # Lowest precedence first; each source records where its keys came from.
    layers: list[_Source] = []
    if file is not None:
        layers.append(_FileSource(file, cwd))
    settings = tuple(name for name in environ if name.startswith(ENVIRONMENT_PREFIX)
                     and name not in NON_SETTING_VARIABLES
                     and not name.startswith(NON_SETTING_PREFIXES))
    for prefix, names in [*(("", seeds) for seeds in _SEED_VARIABLES),
                          (ENVIRONMENT_PREFIX, settings)]:
        variables = {name: environ[name] for name in names if name in environ}
        if variables:
            layers.append(_EnvironmentSource(variables, cwd, prefix=prefix))
    layers.append(_FlagSource(overrides or {}, cwd))
    origins: dict[str, _Origin] = {}
    for layer in layers:
        origins.update(layer.origins)
    try:
        loaded = _Layers(_build_sources=(tuple(reversed(layers)), {}))
    except ValidationError as error:
        raise _translate(error.errors(include_url=False)[0], origins) from None
    return _assemble(loaded, file, origins, cwd=cwd, home=environ.get("HOME"))


class _Source(PydanticBaseSettingsSource):
    """A source that remembers the origin of each dotted key it gives."""

    origins: dict[str, _Origin]


class _FileSource(TomlConfigSettingsSource, _Source):
    """``careen.toml``, read by pydantic-settings; its read errors and secrets are refused
    here with the file's name. Unknown keys and bad values fail validation (see
    :func:`_translate`)."""

    def __init__(self, file: Path, cwd: Path) -> None:
        self.shown = str(file)
        resolved = file if file.is_absolute() else cwd / file
        super().__init__(_Layers, toml_file=resolved)
        origin = _Origin(self.shown, self.shown, resolved.parent)
        self.origins = {}
        for section, table in self.toml_data.items():
            self.origins[section] = origin
            if section in SECTIONS and not isinstance(table, dict):
                raise ConfigError(f"expected a table [{section}], got {_describe(table)}",
                                  source=self.shown, key=section)
            for key in table if isinstance(table, dict) else ():
                dotted = f"{section}.{key}"
                if dotted in SECRET_KEYS:
                    raise ConfigError(
                        "secrets are not read from the config file (it may be shared or "
                        f"committed); set {environment_variable_for(dotted)} or "
                        f"[{section}] {SECRET_FILES[dotted]}", source=self.shown, key=dotted)
                self.origins[dotted] = origin

    def _read_file(self, file_path: Path) -> dict[str, Any]:
        try:
            return tomllib.loads(file_path.read_bytes().decode("utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read the config file: {error.strerror or error}",
                              source=self.shown) from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"not UTF-8 text (byte {error.start})",
                              source=self.shown) from None
        except tomllib.TOMLDecodeError as error:
            message = str(error)
            if "at end of document" in message:
                text = file_path.read_bytes().decode("utf-8")
                message += f" (line {text.count(chr(10)) + 1}, the last)"
            raise ConfigError(f"not valid TOML: {message}", source=self.shown) from None


class _EnvironmentSource(EnvSettingsSource, _Source):
    """``<prefix><SECTION>_<KEY>`` variables (``CAREEN_HARBOR_URL``, the seed's
    ``registry_user``) of the mapping given, not ``os.environ``: pydantic-settings nests them by
    section; their text is read here (:func:`_read_text`)."""

    def __init__(self, variables: Mapping[str, str], cwd: Path, *, prefix: str) -> None:
        self.origins = {}
        self.values: dict[str, object] = {}
        for name in sorted(variables):
            dotted = _setting_named(name, prefix)
            self.origins[dotted] = _Origin(f"environment variable {name}", name, cwd)
            self.values[name.lower()] = _read_text(variables[name], dotted, self.origins[dotted])
        super().__init__(_Layers, env_prefix=prefix)

    def _load_env_vars(self) -> Mapping[str, Any]:
        # Its hook for where variables come from (os.environ by default), lower-cased as it
        # looks names up. Their text is already read (:func:`_read_text`): the source passes
        # values that are not text through as they are, and only nests them by section.
        return self.values

    def decode_complex_value(self, field_name: str, field: FieldInfo | None, value: Any) -> Any:
        return value  # lists and tables were read from comma-separated text, not JSON


def _setting_named(name: str, prefix: str) -> str:
    """The dotted key of a ``CAREEN_*`` variable, or a :class:`ConfigError` suggesting one."""
    section, _, key = name[len(prefix):].lower().partition("_")
    if section in SECTIONS and key in _KEYS[section]:
        return f"{section}.{key}"
    if section not in SECTIONS:
        known = {environment_variable_for(f"{s}.{k}"): None for s in SECTIONS for k in _KEYS[s]}
        raise ConfigError(
            f"unknown setting{_suggest(name, known)}; variables are "
            f"CAREEN_<SECTION>_<KEY> with a section among {', '.join(SECTIONS)}",
            source=f"environment variable {name}")
    known = {environment_variable_for(f"{section}.{k}"): None for k in _KEYS[section]}
    raise ConfigError(
        f"unknown setting{_suggest(name, known)}; valid variables for [{section}]: "
        f"{', '.join(known)}", source=f"environment variable {name}")


class _FlagSource(_Source):
    """The flags, by dotted key. Text is read like the environment's; other values (a list,
    a path, a number) are taken as given."""

    def __init__(self, overrides: Mapping[str, object], cwd: Path) -> None:
        super().__init__(_Layers)
        self.data: dict[str, dict[str, object]] = {}
        self.origins = {}
        origin = _Origin("command line", "command line", cwd)
        every = {f"{s}.{k}": None for s in SECTIONS for k in _KEYS[s]}
        for dotted, given in overrides.items():
            section, _, key = dotted.partition(".")
            if given is None:
                continue
            if dotted not in every:
                raise ConfigError(f"unknown setting {dotted!r}{_suggest(dotted, every)}",
                                  source="command line")
            if dotted in SECRET_KEYS:
                raise ConfigError(
                    "secrets are not taken from the command line (other users can see it); "
                    f"set {environment_variable_for(dotted)} or [{section}] "
                    f"{SECRET_FILES[dotted]}", source="command line", key=dotted)
            value = given
            if isinstance(given, str):
                value = _read_text(given, dotted, origin)
            elif isinstance(given, dict):
                value = MappingProxyType(given)  # replaces a lower layer's table whole
            self.data.setdefault(section, {})[key] = value
            self.origins[dotted] = origin

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, True

    def __call__(self) -> dict[str, Any]:
        return {section: dict(table) for section, table in self.data.items()}


# --------------------------------------------------------------------------------------------
# Text values (environment variables, seed variables, string flags).


def _read_text(text: str, dotted: str, origin: _Origin) -> object:
    """``text`` as the value of ``dotted``. Lists are comma-separated, tables
    ``NAME=VALUE,...``; an empty value unsets an optional key; everything else is parsed by
    pydantic's string mode (``yes``/``no``, ``1``/``0`` for booleans; numbers), spaces around
    it ignored but for text and secrets, where they may matter."""
    info = _field(dotted)
    shape = typing.get_origin(info.annotation)
    if shape is tuple:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if shape in (Mapping, dict):
        table: dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, equals, value = item.partition("=")
            if not equals or not name.strip():
                shown = "" if dotted in SECRET_KEYS else f", got {json.dumps(text)}"
                raise ConfigError(f"expected NAME=VALUE pairs separated by commas{shown}",
                                  source=origin.error_label, key=dotted)
            table[name.strip()] = value.strip()
        return MappingProxyType(table)  # not a dict: replaces a lower layer's, never merged
    stripped = text.strip()
    if not stripped and not info.is_required() and info.default is None:
        return None  # an empty variable unsets an optional key
    adapter = _string_adapter(dotted)
    try:
        value = adapter.validate_strings(stripped)
        if isinstance(value, str | SecretStr) and stripped != text:
            value = adapter.validate_strings(text)
    except ValidationError as error:
        raise _translate(error.errors(include_url=False)[0], {dotted: origin},
                         dotted=dotted) from None
    return value


@functools.cache
def _string_adapter(dotted: str) -> TypeAdapter[Any]:
    annotation: Any = _field(dotted).rebuild_annotation()  # the type with its constraints
    return TypeAdapter(annotation)


# --------------------------------------------------------------------------------------------
# After validation: paths, secret files, the registry's defaults, warnings.


def _assemble(loaded: _Layers, file: Path | None, origins: Mapping[str, _Origin], *,
              cwd: Path, home: str | None) -> Config:
    sources = {dotted: origin.show_label for dotted, origin in origins.items()
               if "." in dotted}
    def resolved(name: str, section: _S) -> _S:
        return _resolve_paths(name, section, origins, cwd, home)

    harbor = _with_password_file(resolved("harbor", loaded.harbor), "harbor", sources, origins)
    registry = _with_password_file(resolved("registry", loaded.registry), "registry", sources,
                                   origins)
    if registry.server is None and harbor.host is not None:
        # Harbor is the registry: push where the scan results come from...
        registry = registry.model_copy(update={"server": harbor.host})
        sources["registry.server"] = "harbor.url"
    if (registry.server == harbor.host and registry.user is None
            and registry.password is None and harbor.user is not None):
        # ...with the same account, unless told otherwise. Only for that very host, so
        # Harbor credentials never go to another server.
        registry = registry.model_copy(update={"user": harbor.user,
                                               "password": harbor.password})
        sources["registry.user"] = "harbor.user"
        if harbor.password is not None:
            sources["registry.password"] = "harbor.password"

    build = resolved("build", loaded.build)
    warnings: list[str] = []
    if not harbor.verify_tls:
        warnings.append(f"TLS certificates of Harbor are not verified (harbor.verify_tls = "
                        f"false, from {sources['harbor.verify_tls']}): anyone on the "
                        "network path can read the credentials and forge scan results")
    spelled = "verify_tls"
    if registry.tls_verify is not None:
        warnings.append(f"registry.tls_verify (from {sources['registry.tls_verify']}) is "
                        "deprecated: write verify_tls, as in [harbor] (variable "
                        f"{environment_variable_for('registry.verify_tls')})")
        if "registry.verify_tls" not in sources:  # verify_tls took the old spelling's value
            spelled = "tls_verify"
            sources["registry.verify_tls"] = sources["registry.tls_verify"]
    if not registry.verify_tls:
        warnings.append(f"TLS certificates of the registry are not verified "
                        f"(registry.{spelled} = false, from {sources[f'registry.{spelled}']})"
                        ": pushed images and credentials can be intercepted"
                        + (_DOCKER_TLS if build.builder == "docker" else ""))
    if build.builder == "docker" and registry.ca_bundle is not None:
        warnings.append(f"registry.ca_bundle (from {sources['registry.ca_bundle']}) is "
                        f"not used by the docker builder{_DOCKER_TLS}")
    return Config(
        harbor=harbor,
        registry=registry,
        policy=resolved("policy", loaded.policy),
        tree=resolved("tree", loaded.tree),
        build=build,
        output=resolved("output", loaded.output),
        state=resolved("state", loaded.state),
        run=resolved("run", loaded.run),
        notify=_with_webhook_file(resolved("notify", loaded.notify), sources, origins),
        jenkins=resolved("jenkins", loaded.jenkins),
        file=file,
        warnings=tuple(warnings),
        sources=MappingProxyType(sources),
    )


_S = typing.TypeVar("_S", bound=_Section)


def _resolve_paths(name: str, section: _S, origins: Mapping[str, _Origin], cwd: Path,
                   home: str | None) -> _S:
    """Relative paths made absolute: against the config file's folder for values from the
    file, the working folder otherwise (defaults too); ``~`` is ``$HOME``."""
    updates: dict[str, Path] = {}
    for key, attribute in _KEYS[name].items():
        path = getattr(section, attribute)
        if not isinstance(path, Path):
            continue
        if home and path.parts and path.parts[0] == "~":
            path = Path(home, *path.parts[1:])
        origin = origins.get(f"{name}.{key}")
        updates[attribute] = path if path.is_absolute() else (
            origin.base if origin is not None else cwd) / path
    return section.model_copy(update=updates)


#: Why ``[registry] verify_tls`` and ``ca_bundle`` cannot reach a docker daemon.
_DOCKER_TLS = ("; the docker builder cannot hand TLS settings to its daemon, which pulls and "
               "pushes itself: the daemon must trust the registry (its certs.d/HOST:PORT/ca.crt"
               ", or the registry listed as insecure in daemon.json or, for podman, in "
               "registries.conf); the buildah builder takes both settings")


# Secret files are read here rather than by pydantic-settings' secrets source: that one reads
# files named after the fields from one folder (``/run/secrets/harbor_password``); here each
# secret's file is a setting of its own, relative to where it was set, and errors name it.

_WithPassword = typing.TypeVar("_WithPassword", HarborConfig, RegistryConfig)


def _with_password_file(
    section: _WithPassword, name: str, sources: dict[str, str], origins: Mapping[str, _Origin],
) -> _WithPassword:
    """Fill ``password`` from ``password_file`` unless a password was given directly."""
    if section.password is not None or section.password_file is None:
        return section
    secret = _read_secret_file(section.password_file, "password", f"{name}.password_file",
                               origins)
    sources[f"{name}.password"] = "password_file"
    return section.model_copy(update={"password": secret})


def _with_webhook_file(section: NotifyConfig, sources: dict[str, str],
                       origins: Mapping[str, _Origin]) -> NotifyConfig:
    if section.webhook is not None or section.webhook_file is None:
        return section
    secret = _read_secret_file(section.webhook_file, "webhook", "notify.webhook_file", origins)
    sources["notify.webhook"] = "webhook_file"
    return section.model_copy(update={"webhook": secret})


#: Largest secret file read: a password or a webhook URL is far smaller.
SECRET_FILE_MAX = 64 * 1024


class _NotASecretFile(Exception):
    """A secret file that is not a regular file, or too large to be one."""


def _read_small_regular_file(path: Path) -> bytes:
    # O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused just below.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _NotASecretFile("is not a regular file (a device, FIFO or folder)")
        if info.st_size > SECRET_FILE_MAX:
            raise _NotASecretFile(f"is larger than {SECRET_FILE_MAX // 1024} KiB")
        data = b""
        while len(data) <= SECRET_FILE_MAX:
            chunk = os.read(fd, SECRET_FILE_MAX + 1 - len(data))
            if not chunk:
                break
            data += chunk
        if len(data) > SECRET_FILE_MAX:
            raise _NotASecretFile(f"is larger than {SECRET_FILE_MAX // 1024} KiB")
        return data
    finally:
        os.close(fd)


def _read_secret_file(path: Path, what: str, dotted: str,
                      origins: Mapping[str, _Origin]) -> SecretStr:
    """The secret a file holds, without the newline editors end it with. Regular files of
    at most :data:`SECRET_FILE_MAX` bytes only: ``/dev/zero`` never ends and a FIFO blocks
    until someone writes (issue 18 row 13)."""
    try:
        text = _read_small_regular_file(path).decode("utf-8")
    except _NotASecretFile as error:
        raise ConfigError(f"the {what} file {str(path)!r} {error}",
                          source=origins[dotted].error_label, key=dotted,
                          hint="point it at a regular file holding only the secret") from None
    except (OSError, ValueError) as error:  # ValueError: not UTF-8, NUL in the path
        reason = error.strerror if isinstance(error, OSError) and error.strerror else (
            "not UTF-8 text" if isinstance(error, UnicodeDecodeError) else "unreadable")
        raise ConfigError(f"cannot read the {what} file {str(path)!r}: {reason}",
                          source=origins[dotted].error_label, key=dotted) from None
    # Editors and ``echo`` end files with a newline that is not part of the password.
    if text.endswith("\n"):
        text = text[:-1]
        if text.endswith("\r"):
            text = text[:-1]
    if not text:
        raise ConfigError(f"the {what} file {str(path)!r} is empty",
                          source=origins[dotted].error_label, key=dotted)
    return SecretStr(text)


# --------------------------------------------------------------------------------------------
# Messages: pydantic's errors in the words of a config file.

_DEFAULT_LABEL = "default"

_EXPECTED: Mapping[str, str] = MappingProxyType({
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "int_type": "expected a whole number",
    "int_parsing": "expected a whole number",
    "int_from_float": "expected a whole number",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "string_type": "expected a string",
    "string_too_short": "expected a non-empty string",
    "tuple_type": "expected a list of strings",
    "list_type": "expected a list of strings",
    "dict_type": "expected a table of strings",
    "mapping_type": "expected a table of strings",
    "path_type": "expected a path (a string)",
})


def _translate(error: ErrorDetails, origins: Mapping[str, _Origin], *,
               dotted: str | None = None) -> ConfigError:
    """A :class:`ConfigError` for pydantic's ``error``, naming where the value came from.
    ``loc`` is ``(section, key, ...)``, or starts below the key when ``dotted`` is given."""
    loc = tuple(error["loc"]) if dotted is None else (*dotted.split(".", 1), *error["loc"])
    section = str(loc[0])
    if len(loc) == 1:  # [section]: only an unknown one fails
        return ConfigError(f"unknown section [{section}]{_suggest(section, SECTIONS)}; "
                           f"valid sections: {', '.join(SECTIONS)}",
                           source=_label(origins, section))
    key = str(loc[1])
    dotted = f"{section}.{key}"
    source = _label(origins, dotted)
    if error["type"] == "extra_forbidden":
        return ConfigError(
            f"unknown key {key!r}{_suggest(key, _KEYS[section])}; valid keys in "
            f"[{section}]: {', '.join(_KEYS[section])}", source=source, key=dotted)
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[2:])
    message = _expected(error)
    if where:
        message = f"{where.lstrip('.')}: {message}"
    # Messages of our validators say what they got (or, for a URL with a password, not).
    if dotted not in SECRET_KEYS and error["type"] != "value_error":
        message += f", got {_describe(error['input'])}"
    return ConfigError(message, source=source, key=dotted)


def _label(origins: Mapping[str, _Origin], dotted: str) -> str:
    origin = origins.get(dotted)
    return origin.error_label if origin is not None else _DEFAULT_LABEL


def _expected(error: ErrorDetails) -> str:
    kind = error["type"]
    ctx = error.get("ctx", {})
    if kind in _EXPECTED:
        return _EXPECTED[kind]
    if kind == "literal_error":
        return f"expected one of {ctx.get('expected', '')}".replace("'", '"')
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        words = {"greater_than": "more than", "greater_than_equal": "at least",
                 "less_than": "less than", "less_than_equal": "at most"}
        bound = next(iter(ctx.values()), "")
        return f"expected a number {words[kind]} {bound}"
    return "expected " + error["msg"][0].lower() + error["msg"][1:].removeprefix("Input should ")


def _one_of(name: str, names: list[str]) -> str:
    """``name`` when it is one of ``names`` (a lookup table's keys); otherwise the error
    naming them all."""
    if name not in names:
        shown = [f'"{n}"' for n in names]
        raise ValueError(f"expected one of {', '.join(shown[:-1])} or {shown[-1]}")
    return name


def _describe(value: object) -> str:
    """A short rendering of a bad value for an error message (TOML spelling)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list | tuple):
        text = f"a list ({len(value)} items)"
    elif isinstance(value, dict):
        text = "a table"
    elif isinstance(value, Path):
        text = json.dumps(str(value), ensure_ascii=False)
    else:
        text = f"a {type(value).__name__}"
    return text if len(text) <= 60 else text[:57] + "..."


def _suggest(word: str, choices: Mapping[str, object]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
