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

:func:`load_config` is pure: the environment and the working folder are passed in. The objects it
returns are frozen; secrets are :class:`pydantic.SecretStr`, so ``repr``, ``str`` and
:meth:`Config.show` never reveal them.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

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
    api_version: Literal["auto", "v2", "v1"] = "auto"
    page_size: Annotated[int, Strict(), Field(ge=1, le=100)] = 100

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


class TreeConfig(_Section):
    """``[tree]``: where the Dockerfiles are (``app/version/Dockerfile``)."""

    root: Path = Path()
    layout: Literal["auto", "app/version", "project/app/version"] = "auto"
    #: The Harbor project of ``app/version`` folders.
    project: Annotated[str, Strict(), Field(min_length=1)] = "library"
    #: Explicit image -> folder (relative to ``root``) pairs, for folders off the layout.
    mapping: Table = Field(default_factory=_empty_table)
    #: A git URL to clone the tree from, and the branch to use.
    git: Text | None = None
    branch: Text | None = None


class BuildConfig(_Section):
    """``[build]``: how images are rebuilt."""

    builder: Literal["docker", "buildah"] = "docker"
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


SECTIONS: Mapping[str, type[_Section]] = MappingProxyType({
    "harbor": HarborConfig,
    "registry": RegistryConfig,
    "policy": PolicyConfig,
    "tree": TreeConfig,
    "build": BuildConfig,
    "output": OutputConfig,
    "state": StateConfig,
    "run": RunConfig,
    "notify": NotifyConfig,
    "jenkins": JenkinsConfig,
})

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

# The seed's plain variables, lowest precedence first.
_SEED_VARIABLES: tuple[tuple[str, str], ...] = (
    ("registry_server", "registry.server"),
    ("registry_user", "registry.user"),
    ("registry_password", "registry.password"),
    ("REGISTRY_SERVER", "registry.server"),
    ("REGISTRY_USER", "registry.user"),
    ("REGISTRY_PASSWORD", "registry.password"),
)


def environment_variable_for(key: str) -> str:
    """``harbor.verify_tls`` -> ``CAREEN_HARBOR_VERIFY_TLS``."""
    return ENVIRONMENT_PREFIX + key.replace(".", "_").upper()


# --------------------------------------------------------------------------------------------
# Key kinds: how a text value (environment, string flags) is read for each key.

_Kind = Literal["bool", "int", "float", "list", "table", "path", "secret", "text"]


def _kind_of(annotation: Any) -> _Kind:
    origin = typing.get_origin(annotation)
    if origin is Annotated:
        return _kind_of(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _kind_of(inner[0])
    if annotation is bool:
        return "bool"
    if annotation is int:
        return "int"
    if annotation is float:
        return "float"
    if origin is tuple:
        return "list"
    if origin in (Mapping, dict):
        return "table"
    if annotation is Path:
        return "path"
    if annotation is SecretStr:
        return "secret"
    return "text"


@dataclass(frozen=True)
class _KeyInfo:
    kind: _Kind
    optional: bool
    #: The model attribute holding the key (the key itself but for ``output.json``).
    attribute: str


def _key_infos() -> Mapping[str, Mapping[str, _KeyInfo]]:
    infos: dict[str, Mapping[str, _KeyInfo]] = {}
    for section, model in SECTIONS.items():
        infos[section] = MappingProxyType({
            info.alias or name: _KeyInfo(_kind_of(info.annotation),
                                         not info.is_required() and info.default is None, name)
            for name, info in model.model_fields.items()
        })
    return MappingProxyType(infos)


_KEYS = _key_infos()


# --------------------------------------------------------------------------------------------
# Where a value came from.


@dataclass(frozen=True)
class _Origin:
    #: How errors name it: ``careen.toml``, ``environment variable CAREEN_X``, ``command line``.
    error_label: str
    #: How ``config show`` names it: ``careen.toml``, ``CAREEN_X``, ``command line``.
    show_label: str
    #: Relative paths given here are relative to this folder.
    base: Path | None = None
    #: Values of this origin are text to be read by kind (environment, string flags).
    textual: bool = False


_DEFAULT = _Origin("default", "default")


def _environment_origin(name: str, cwd: Path) -> _Origin:
    return _Origin(f"environment variable {name}", name, cwd, textual=True)


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
        return getattr(self.section(section), _KEYS[section][name].attribute)

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
        return self.sources.get(key, _DEFAULT.show_label)

    def show(self, fmt: Literal["toml", "json"] = "toml") -> str:
        """The effective config with secrets masked.

        TOML: one line per key with its source as a comment; keys without a value and secrets
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
            for key in _KEYS[name]:
                dotted = f"{name}.{key}"
                value = self.get(dotted)
                origin = self.source_of(dotted)
                source = "  # default" if origin == _DEFAULT.show_label else f"  # from {origin}"
                if dotted in SECRET_KEYS:
                    shown = NOT_SET if value is None else f'"{MASK}"'
                    lines.append(f"# {key} = {shown}{source if value is not None else ''}")
                elif value is None:
                    lines.append(f"# {key} = {NOT_SET}")
                else:
                    lines.append(f"{key} = {toml_value(_plain(value, masked=False))}{source}")
        return "\n".join(lines) + "\n"


def _plain(value: object, *, masked: bool) -> object:
    """``value`` as JSON-able data; secrets (and anything marked ``masked``) as the mask."""
    if value is None:
        return None
    if masked or isinstance(value, SecretStr):
        return MASK
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(item, masked=False) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v, masked=False) for k, v in value.items()}
    return value


def toml_value(value: object) -> str:
    """``value`` (bool, number, string, list, table) written as TOML (``config show``, the
    demo's careen.toml). JSON string escapes are valid in TOML basic strings."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        pairs = ", ".join(f"{json.dumps(str(k), ensure_ascii=False)} = {toml_value(v)}"
                          for k, v in value.items())
        return "{ " + pairs + " }" if pairs else "{}"
    raise TypeError(f"cannot show {type(value).__name__} as TOML")


# --------------------------------------------------------------------------------------------
# Loading.


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
    loader = _Loader(cwd=cwd, environ=environ)
    file = find_config_file(path, cwd=cwd, environ=environ)
    if file is not None:
        loader.read_file(file)
    loader.read_seed_environment()
    loader.read_environment()
    loader.read_overrides(overrides or {})
    return loader.build(file)


class _Loader:
    def __init__(self, *, cwd: Path, environ: Mapping[str, str]) -> None:
        self.cwd = cwd
        self.environ = environ
        self.values: dict[str, dict[str, object]] = {name: {} for name in SECTIONS}
        self.origins: dict[str, _Origin] = {}

    # -- layers ----------------------------------------------------------------------------

    def read_file(self, file: Path) -> None:
        shown = str(file)
        resolved = file if file.is_absolute() else self.cwd / file
        try:
            data = tomllib.loads(resolved.read_bytes().decode("utf-8"))
        except OSError as error:
            raise ConfigError(f"cannot read the config file: {error.strerror or error}",
                              source=shown) from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"not UTF-8 text (byte {error.start})", source=shown) from None
        except tomllib.TOMLDecodeError as error:
            message = str(error)
            if "at end of document" in message:
                text = resolved.read_bytes().decode("utf-8")
                message += f" (line {text.count(chr(10)) + 1}, the last)"
            raise ConfigError(f"not valid TOML: {message}", source=shown) from None
        origin = _Origin(shown, shown, resolved.parent)
        for section, table in data.items():
            if section not in SECTIONS:
                raise ConfigError(
                    f"unknown section [{section}]{_suggest(section, SECTIONS)}; "
                    f"valid sections: {', '.join(SECTIONS)}", source=shown)
            if not isinstance(table, dict):
                raise ConfigError(f"expected a table [{section}], got {_describe(table)}",
                                  source=shown, key=section)
            for key, value in table.items():
                dotted = f"{section}.{key}"
                if key not in _KEYS[section]:
                    raise ConfigError(
                        f"unknown key {key!r}{_suggest(key, _KEYS[section])}; valid keys in "
                        f"[{section}]: {', '.join(_KEYS[section])}", source=shown, key=dotted)
                if dotted in SECRET_KEYS:
                    raise ConfigError(
                        "secrets are not read from the config file (it may be shared or "
                        f"committed); set {environment_variable_for(dotted)} or "
                        f"[{section}] {SECRET_FILES[dotted]}", source=shown, key=dotted)
                self._set(dotted, value, origin)

    def read_seed_environment(self) -> None:
        for name, dotted in _SEED_VARIABLES:
            if name in self.environ:
                self._set(dotted, self.environ[name], _environment_origin(name, self.cwd))

    def read_environment(self) -> None:
        for name in sorted(self.environ):
            if (not name.startswith(ENVIRONMENT_PREFIX) or name in NON_SETTING_VARIABLES
                    or name.startswith(NON_SETTING_PREFIXES)):
                continue
            origin = _environment_origin(name, self.cwd)
            section, _, key = name[len(ENVIRONMENT_PREFIX):].lower().partition("_")
            if section not in SECTIONS:
                known = {environment_variable_for(f"{s}.{k}"): None
                         for s in SECTIONS for k in _KEYS[s]}
                raise ConfigError(
                    f"unknown setting{_suggest(name, known)}; variables are "
                    f"CAREEN_<SECTION>_<KEY> with a section among {', '.join(SECTIONS)}",
                    source=origin.error_label)
            if key not in _KEYS[section]:
                known = {environment_variable_for(f"{section}.{k}"): None
                         for k in _KEYS[section]}
                raise ConfigError(
                    f"unknown setting{_suggest(name, known)}; valid variables for [{section}]: "
                    f"{', '.join(known)}", source=origin.error_label)
            self._set(f"{section}.{key}", self.environ[name], origin)

    def read_overrides(self, overrides: Mapping[str, object]) -> None:
        for dotted, value in overrides.items():
            if value is None:
                continue
            section, _, key = dotted.partition(".")
            if section not in SECTIONS or key not in _KEYS[section]:
                every = {f"{s}.{k}": None for s in SECTIONS for k in _KEYS[s]}
                raise ConfigError(f"unknown setting {dotted!r}{_suggest(dotted, every)}",
                                  source="command line")
            if dotted in SECRET_KEYS:
                raise ConfigError(
                    "secrets are not taken from the command line (other users can see it); "
                    f"set {environment_variable_for(dotted)} or [{section}] "
                    f"{SECRET_FILES[dotted]}",
                    source="command line", key=dotted)
            origin = _Origin("command line", "command line", self.cwd,
                             textual=isinstance(value, str))
            self._set(dotted, value, origin)

    def _set(self, dotted: str, value: object, origin: _Origin) -> None:
        section, _, key = dotted.partition(".")
        info = _KEYS[section][key]
        if origin.textual and isinstance(value, str):
            value = _read_text(value, info, dotted, origin)
        if info.kind == "path" and isinstance(value, str | Path):
            value = self._resolve(Path(value), origin)
        if isinstance(value, list):
            value = tuple(value)
        self.values[section][key] = value
        self.origins[dotted] = origin

    def _resolve(self, path: Path, origin: _Origin) -> Path:
        home = self.environ.get("HOME")
        if home and path.parts and path.parts[0] == "~":
            path = Path(home, *path.parts[1:])
        return path if path.is_absolute() else (origin.base or self.cwd) / path

    # -- validation --------------------------------------------------------------------------

    def build(self, file: Path | None) -> Config:
        sections: dict[str, _Section] = {}
        for name, model in SECTIONS.items():
            data = self.values[name]
            for key in _KEYS[name]:
                # A default relative path is relative to the working folder.
                info = _KEYS[name][key]
                if (info.kind == "path" and key not in data
                        and isinstance(default := model.model_fields[info.attribute].default,
                                       Path)):
                    data[key] = self._resolve(default, _DEFAULT)
            try:
                sections[name] = model.model_validate(data)
            except ValidationError as error:
                raise self._translate(name, error.errors(include_url=False)[0]) from None
        sources = {dotted: origin.show_label for dotted, origin in self.origins.items()}

        harbor = typing.cast(HarborConfig, sections["harbor"])
        registry = typing.cast(RegistryConfig, sections["registry"])
        harbor = _with_password_file(harbor, "harbor", sources, self.origins)
        registry = _with_password_file(registry, "registry", sources, self.origins)
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

        build = typing.cast(BuildConfig, sections["build"])
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
            policy=typing.cast(PolicyConfig, sections["policy"]),
            tree=typing.cast(TreeConfig, sections["tree"]),
            build=build,
            output=typing.cast(OutputConfig, sections["output"]),
            state=typing.cast(StateConfig, sections["state"]),
            run=typing.cast(RunConfig, sections["run"]),
            notify=_with_webhook_file(typing.cast(NotifyConfig, sections["notify"]), sources,
                                      self.origins),
            jenkins=typing.cast(JenkinsConfig, sections["jenkins"]),
            file=file,
            warnings=tuple(warnings),
            sources=MappingProxyType(sources),
        )

    def _translate(self, section: str, error: ErrorDetails) -> ConfigError:
        loc = error["loc"]
        key = str(loc[0]) if loc else ""
        dotted = f"{section}.{key}" if key else section
        origin = self.origins.get(dotted, _DEFAULT)
        where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
        message = _expected(error)
        if where:
            message = f"{where.lstrip('.')}: {message}"
        # Messages of our validators say what they got (or, for a URL with a password, not).
        if dotted not in SECRET_KEYS and error["type"] != "value_error":
            message += f", got {_describe(error['input'])}"
        return ConfigError(message, source=origin.error_label, key=dotted)


#: Why ``[registry] verify_tls`` and ``ca_bundle`` cannot reach a docker daemon.
_DOCKER_TLS = ("; the docker builder cannot hand TLS settings to its daemon, which pulls and "
               "pushes itself: the daemon must trust the registry (its certs.d/HOST:PORT/ca.crt"
               ", or the registry listed as insecure in daemon.json or, for podman, in "
               "registries.conf); the buildah builder takes both settings")


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


def _read_secret_file(path: Path, what: str, dotted: str,
                      origins: Mapping[str, _Origin]) -> SecretStr:
    """The secret a file holds, without the newline editors end it with."""
    try:
        text = path.read_bytes().decode("utf-8")
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
# Text values (environment variables, string flags).

_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})


def _read_text(text: str, info: _KeyInfo, dotted: str, origin: _Origin) -> object:
    def fail(expected: str) -> ConfigError:
        shown = "" if dotted in SECRET_KEYS else f", got {json.dumps(text)}"
        return ConfigError(f"{expected}{shown}", source=origin.error_label, key=dotted)

    stripped = text.strip()
    if info.kind == "list":
        return tuple(item.strip() for item in text.split(",") if item.strip())
    if info.kind == "table":
        table: dict[str, str] = {}
        for item in (part.strip() for part in text.split(",")):
            if not item:
                continue
            name, equals, value = item.partition("=")
            if not equals or not name.strip():
                raise fail("expected NAME=VALUE pairs separated by commas")
            table[name.strip()] = value.strip()
        return table
    if info.optional and not stripped:
        return None  # an empty variable unsets an optional key
    if info.kind == "bool":
        if stripped.lower() in _TRUE:
            return True
        if stripped.lower() in _FALSE:
            return False
        raise fail("expected true or false (or 1/0, yes/no)")
    if info.kind == "int":
        try:
            return int(stripped)
        except ValueError:
            raise fail("expected a whole number") from None
    if info.kind == "float":
        try:
            return float(stripped)
        except ValueError:
            raise fail("expected a number") from None
    if info.kind == "path":
        return stripped
    return text  # text and secrets as given: spaces may matter


# --------------------------------------------------------------------------------------------
# Messages.

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
