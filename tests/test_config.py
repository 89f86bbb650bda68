"""Tests of careen.config: layering, the seed's variables, secrets, errors, ``show``."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from careen.config import (
    MASK,
    SECRET_KEYS,
    SECTIONS,
    Config,
    environment_variable_for,
    find_config_file,
    load_config,
)
from careen.errors import ConfigError, ExitCode
from tests.strategies import text_favouring

SECRET = "hunter2-Zq9!xK"


def write(folder: Path, text: str, name: str = "careen.toml") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    # A new file rather than the old one truncated: ext4 flushes a file rewritten in place
    # to disk when it is closed (about 2 ms of waiting, paid by each hypothesis example).
    path.unlink(missing_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(
    cwd: Path,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    path: Path | None = None,
) -> Config:
    return load_config(path, cwd=cwd, environ=environ or {}, overrides=overrides or {})


def error_of(
    cwd: Path,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, object] | None = None,
    path: Path | None = None,
) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(cwd, environ, overrides, path)
    return caught.value


# ---------------------------------------------------------------------------- defaults, files


def test_no_file_gives_the_defaults(tmp_path: Path) -> None:
    config = load(tmp_path)

    assert config.file is None
    assert config.harbor.url is None
    assert config.harbor.verify_tls is True
    assert config.harbor.timeout == 30.0
    assert config.harbor.concurrency == 16
    assert config.harbor.api_version == "auto"
    assert config.harbor.page_size == 100
    assert config.harbor.projects == ()
    assert config.registry.server is None
    assert config.policy.rule is None
    assert config.policy.unscanned == "report"
    assert config.tree.root == tmp_path
    assert config.tree.layout == "auto"
    assert config.tree.project == "library"
    assert config.build.builder == "docker"
    assert config.build.no_cache is True
    assert config.build.pull is True
    assert config.build.timeout == 3600.0
    assert config.build.jobs == 1
    assert config.output.vulnerable_list == tmp_path / "vulnerable.list"
    assert config.output.json_file is None
    assert config.output.reports_dir == tmp_path / "careen-reports"
    assert config.state.path is None
    assert config.warnings == ()
    assert config.source_of("harbor.url") == "default"


def test_careen_toml_in_the_working_folder_is_read(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nurl = "https://harbor.test"\nprojects = ["library", "team"]\n')

    config = load(tmp_path)

    assert config.file == Path("careen.toml")
    assert config.harbor.url == "https://harbor.test"
    assert config.harbor.projects == ("library", "team")
    assert config.source_of("harbor.url") == "careen.toml"


def test_config_flag_names_a_file_elsewhere_and_its_relative_paths_are_from_its_folder(
    tmp_path: Path,
) -> None:
    write(tmp_path, '[harbor]\nurl = "https://ignored.test"\n')  # not read: --config wins
    other = write(tmp_path / "etc", '[harbor]\nurl = "https://h.test"\n[tree]\nroot = "trees"\n',
                  name="site.toml")

    config = load(tmp_path, path=other)

    assert config.harbor.url == "https://h.test"
    assert config.tree.root == tmp_path / "etc" / "trees"
    assert config.output.vulnerable_list == tmp_path / "vulnerable.list"


def test_config_flag_with_a_missing_file_is_an_error(tmp_path: Path) -> None:
    error = error_of(tmp_path, path=Path("nope.toml"))

    assert "nope.toml" in str(error)
    assert "does not exist" in str(error)
    assert error.exit_code == ExitCode.USAGE


def test_config_flag_naming_a_folder_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    assert "is not a file" in str(error_of(tmp_path, path=Path("conf")))


def test_careen_config_variable_names_the_file_and_is_not_an_unknown_setting(
    tmp_path: Path,
) -> None:
    other = write(tmp_path / "x", '[tree]\nproject = "team"\n')

    assert load(tmp_path, {"CAREEN_CONFIG": str(other)}).tree.project == "team"
    assert "does not exist" in str(error_of(tmp_path, {"CAREEN_CONFIG": "missing.toml"}))


def test_find_config_file_prefers_the_flag(tmp_path: Path) -> None:
    write(tmp_path, "")
    flag = write(tmp_path, "", name="flag.toml")

    assert find_config_file(None, cwd=tmp_path, environ={}) == Path("careen.toml")
    assert find_config_file(flag, cwd=tmp_path, environ={"CAREEN_CONFIG": "x"}) == flag
    assert find_config_file(None, cwd=tmp_path / "empty", environ={}) is None


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nurl = "https://h.test"\nverify_tls = \n')

    error = error_of(tmp_path)

    assert str(error).startswith("careen.toml: not valid TOML")
    assert "line 3" in str(error)


def test_toml_error_at_end_of_document_still_names_a_line(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nurl = "https://h.test"\nuser =')
    assert "line 3" in str(error_of(tmp_path))


def test_file_that_is_not_utf8_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "careen.toml").write_bytes(b'[tree]\nproject = "\xff"\n')
    assert "not UTF-8" in str(error_of(tmp_path))


# ---------------------------------------------------------------------------- layering


def test_layers_file_then_environment_then_flags(tmp_path: Path) -> None:
    write(tmp_path, """
[harbor]
url = "https://file.test"
timeout = 10
projects = ["from-file"]
concurrency = 4
[build]
no_cache = true
jobs = 2
""")
    environ = {
        "CAREEN_HARBOR_URL": "https://env.test",
        "CAREEN_HARBOR_TIMEOUT": "20.5",
        "CAREEN_HARBOR_PROJECTS": "library, team",
        "CAREEN_BUILD_NO_CACHE": "false",
    }
    overrides: dict[str, object] = {"harbor.url": "https://flag.test", "build.jobs": 8}

    file_only = load(tmp_path)
    with_env = load(tmp_path, environ)
    with_flags = load(tmp_path, environ, overrides)

    assert (file_only.harbor.url, with_env.harbor.url, with_flags.harbor.url) == (
        "https://file.test", "https://env.test", "https://flag.test")
    assert (file_only.harbor.timeout, with_env.harbor.timeout) == (10.0, 20.5)
    assert with_env.harbor.projects == ("library", "team")
    assert (file_only.build.no_cache, with_env.build.no_cache) == (True, False)
    assert (file_only.build.jobs, with_env.build.jobs, with_flags.build.jobs) == (2, 2, 8)
    assert with_flags.harbor.concurrency == 4  # untouched keys keep the file's value
    assert with_flags.source_of("harbor.url") == "command line"
    assert with_flags.source_of("harbor.timeout") == "CAREEN_HARBOR_TIMEOUT"
    assert with_flags.source_of("harbor.concurrency") == "careen.toml"
    assert with_flags.source_of("build.pull") == "default"


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("TRUE", True), ("1", True), ("yes", True), (" Yes ", True),
    ("false", False), ("0", False), ("no", False), ("False", False),
])
def test_environment_booleans(tmp_path: Path, text: str, expected: bool) -> None:
    assert load(tmp_path, {"CAREEN_HARBOR_VERIFY_TLS": text}).harbor.verify_tls is expected


def test_environment_bad_boolean_names_variable_key_and_value(tmp_path: Path) -> None:
    error = error_of(tmp_path, {"CAREEN_HARBOR_VERIFY_TLS": "maybe"})

    assert str(error).startswith(
        "environment variable CAREEN_HARBOR_VERIFY_TLS: harbor.verify_tls: expected true or false")
    assert '"maybe"' in str(error)
    assert error.key == "harbor.verify_tls"


def test_environment_numbers_lists_tables_and_empty_values(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nca_bundle = "ca.pem"\nprojects = ["a"]\n')
    config = load(tmp_path, {
        "CAREEN_HARBOR_PAGE_SIZE": "50",
        "CAREEN_BUILD_BUILD_ARGS": "HTTP_PROXY=http://p:3128, EMPTY=",
        "CAREEN_BUILD_PLATFORMS": "linux/amd64,,linux/arm64",
        "CAREEN_HARBOR_CA_BUNDLE": "",
        "CAREEN_HARBOR_PROJECTS": "",
    })

    assert config.harbor.page_size == 50
    assert dict(config.build.build_args) == {"HTTP_PROXY": "http://p:3128", "EMPTY": ""}
    assert config.build.platforms == ("linux/amd64", "linux/arm64")
    assert config.harbor.ca_bundle is None  # an empty variable unsets an optional key
    assert config.harbor.projects == ()


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("CAREEN_HARBOR_CONCURRENCY", "many", "expected a whole number"),
    ("CAREEN_HARBOR_TIMEOUT", "soon", "expected a number"),
    ("CAREEN_BUILD_LABELS", "novalue", "expected NAME=VALUE pairs"),
    ("CAREEN_HARBOR_PAGE_SIZE", "500", "at most 100"),
    ("CAREEN_HARBOR_API_VERSION", "v3", 'expected one of "auto", "v2" or "v1"'),
])
def test_environment_bad_values(tmp_path: Path, name: str, value: str, expected: str) -> None:
    error = error_of(tmp_path, {name: value})

    assert str(error).startswith(f"environment variable {name}: ")
    assert expected in str(error)


def test_flags_given_as_text_are_read_like_the_environment_and_none_means_not_given(
    tmp_path: Path,
) -> None:
    write(tmp_path, "[build]\npull = true\njobs = 3\n")

    config = load(tmp_path, overrides={
        "build.pull": "no", "build.jobs": None, "tree.root": Path("src"),
        "policy.ignore": ["a/*", "b/*"],
    })

    assert config.build.pull is False
    assert config.build.jobs == 3
    assert config.tree.root == tmp_path / "src"
    assert config.policy.ignore == ("a/*", "b/*")


def test_only_the_given_environment_is_read_never_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """pydantic-settings' environment source reads os.environ by default; load_config hands
    it the mapping it was given instead."""
    monkeypatch.setenv("CAREEN_HARBOR_URL", "https://process.test")
    monkeypatch.setenv("CAREEN_HARBOR_BOGUS", "x")  # would be an unknown setting if read
    monkeypatch.setenv("registry_user", "process-user")

    config = load(tmp_path, {"CAREEN_HARBOR_USER": "given"})

    assert config.harbor.url is None
    assert config.harbor.user == "given"
    assert config.registry.user != "process-user"
    assert config.source_of("registry.user") != "registry_user"


def test_spaces_around_environment_values_count_only_for_text_and_secrets(
    tmp_path: Path,
) -> None:
    config = load(tmp_path, {"CAREEN_HARBOR_TIMEOUT": " 20 ", "CAREEN_HARBOR_CONCURRENCY": "\t4\n",
                             "CAREEN_HARBOR_USER": " robot ",
                             "CAREEN_HARBOR_PASSWORD": f" {SECRET} ",
                             "CAREEN_STATE_PATH": " st "})

    assert config.harbor.timeout == 20.0
    assert config.harbor.concurrency == 4
    assert config.harbor.user == " robot "
    assert config.harbor.password is not None
    assert config.harbor.password.get_secret_value() == f" {SECRET} "
    assert config.state.path == tmp_path / "st"
    error = error_of(tmp_path, {"CAREEN_HARBOR_API_VERSION": " v2 "})
    assert str(error).startswith("environment variable CAREEN_HARBOR_API_VERSION: "
                                 "harbor.api_version: expected one of")


def test_seed_variable_with_a_bad_value_names_the_variable(tmp_path: Path) -> None:
    error = error_of(tmp_path, {"REGISTRY_SERVER": "evil;$(id)"})

    assert str(error).startswith("environment variable REGISTRY_SERVER: registry.server: "
                                 "expected host[:port]")


def test_a_table_from_a_later_layer_replaces_the_earlier_table_whole(tmp_path: Path) -> None:
    write(tmp_path, '[build.labels]\na = "from-file"\nb = "from-file"\n')

    from_env = load(tmp_path, {"CAREEN_BUILD_LABELS": "a=from-env"})
    from_flag = load(tmp_path, {"CAREEN_BUILD_LABELS": "a=from-env"},
                     {"build.labels": {"c": "from-flag"}})

    assert dict(from_env.build.labels) == {"a": "from-env"}
    assert dict(from_flag.build.labels) == {"c": "from-flag"}
    assert from_flag.source_of("build.labels") == "command line"


@pytest.mark.parametrize("text", ["00", "[1]", "{}", "null"])
def test_optional_flags_read_from_text_never_as_json(tmp_path: Path, text: str) -> None:
    """pydantic-settings would JSON-decode the text of an optional strict key such as
    registry.tls_verify (``00`` made it crash); Careen reads the text itself."""
    error = error_of(tmp_path, {"CAREEN_REGISTRY_TLS_VERIFY": text})

    assert str(error).startswith("environment variable CAREEN_REGISTRY_TLS_VERIFY: "
                                 "registry.tls_verify: expected true or false")
    assert load(tmp_path, {"CAREEN_REGISTRY_TLS_VERIFY": ""}).registry.tls_verify is None


def test_unknown_flag_key_is_an_error_with_a_suggestion(tmp_path: Path) -> None:
    error = error_of(tmp_path, overrides={"harbor.ulr": "https://x.test"})

    assert str(error).startswith("command line: ")
    assert "'harbor.url'" in str(error)


def test_paths_from_the_environment_are_relative_to_the_working_folder(tmp_path: Path) -> None:
    config = load(tmp_path, {"CAREEN_OUTPUT_JSON": "out/v.json", "CAREEN_STATE_PATH": "~/st",
                             "HOME": "/home/ci"})

    assert config.output.json_file == tmp_path / "out" / "v.json"
    assert config.state.path == Path("/home/ci/st")
    assert config.get("output.json") == tmp_path / "out" / "v.json"


# ---------------------------------------------------------------------------- registry, seed


def test_seed_variables_set_the_registry(tmp_path: Path) -> None:
    config = load(tmp_path, {"registry_server": "registry.abc.com", "registry_user": "jenkins",
                             "registry_password": SECRET})

    assert config.registry.server == "registry.abc.com"
    assert config.registry.user == "jenkins"
    assert config.registry.password is not None
    assert config.registry.password.get_secret_value() == SECRET
    assert config.source_of("registry.user") == "registry_user"


@pytest.mark.parametrize(("environ", "expected"), [
    ({}, "file-user"),
    ({"registry_user": "lower"}, "lower"),
    ({"registry_user": "lower", "REGISTRY_USER": "upper"}, "upper"),
    ({"registry_user": "lower", "REGISTRY_USER": "upper", "CAREEN_REGISTRY_USER": "careen"},
     "careen"),
    ({"registry_user": "lower", "CAREEN_REGISTRY_USER": "careen"}, "careen"),
])
def test_seed_variable_precedence(
    tmp_path: Path, environ: dict[str, str], expected: str,
) -> None:
    write(tmp_path, '[registry]\nuser = "file-user"\n')
    assert load(tmp_path, environ).registry.user == expected


def test_flags_beat_every_registry_variable(tmp_path: Path) -> None:
    config = load(tmp_path, {"registry_server": "a.test", "REGISTRY_SERVER": "b.test",
                             "CAREEN_REGISTRY_SERVER": "c.test"},
                  overrides={"registry.server": "d.test:5000"})
    assert config.registry.server == "d.test:5000"


@pytest.mark.parametrize("where", ["file", "seed", "careen"])
def test_registry_server_with_a_scheme_is_rejected_with_a_hint(tmp_path: Path, where: str) -> None:
    url = "https://registry.abc.com/v2"
    environ: dict[str, str] = {}
    if where == "file":
        write(tmp_path, f'[registry]\nserver = "{url}"\n')
    elif where == "seed":
        environ["registry_server"] = url
    else:
        environ["CAREEN_REGISTRY_SERVER"] = url

    error = error_of(tmp_path, environ)

    assert error.key == "registry.server"
    assert "without a scheme" in str(error)
    assert "'registry.abc.com'" in str(error)
    expected_source = {"file": "careen.toml", "seed": "environment variable registry_server",
                       "careen": "environment variable CAREEN_REGISTRY_SERVER"}[where]
    assert error.source == expected_source


@pytest.mark.parametrize("server", ["registry.abc.com/path", "user@host", "two words", "",
                                    "evil;$(id)", "host:port", "-leading.dash", "a..b",
                                    "host:123456"])
def test_registry_server_must_be_host_and_port(tmp_path: Path, server: str) -> None:
    write(tmp_path, f'[registry]\nserver = "{server}"\n')
    assert "expected host[:port]" in str(error_of(tmp_path))


def test_a_registry_server_docker_would_read_as_a_docker_hub_namespace_is_refused(
    tmp_path: Path,
) -> None:
    write(tmp_path, '[registry]\nserver = "harbor"\n')
    message = str(error_of(tmp_path))
    assert "does not read as a registry host" in message and "harbor:443" in message


@pytest.mark.parametrize("server", ["localhost:5000", "127.0.0.1:41234", "[::1]:5000",
                                    "registry.abc.com", "r-1.example.com:443"])
def test_registry_server_accepts_real_hosts(tmp_path: Path, server: str) -> None:
    write(tmp_path, f'[registry]\nserver = "{server}"\n')
    assert load(tmp_path).registry.server == server


def test_webhook_is_a_secret_read_from_environment_or_file(tmp_path: Path) -> None:
    url = "https://hooks.slack.test/services/T0/B0/" + SECRET
    write(tmp_path, f'[notify]\nwebhook = "{url}"\n')
    with pytest.raises(ConfigError) as refused:
        load(tmp_path)
    assert SECRET not in str(refused.value) and "CAREEN_NOTIFY_WEBHOOK" in str(refused.value)

    (tmp_path / "hook").write_text(url + "\n", encoding="utf-8")
    write(tmp_path, '[notify]\nwebhook_file = "hook"\n')
    config = load(tmp_path)
    assert config.notify.webhook is not None
    assert config.notify.webhook.get_secret_value() == url
    assert SECRET not in config.show() and SECRET not in repr(config)
    assert load(tmp_path, {"CAREEN_NOTIFY_WEBHOOK": "https://x.test/h"}).notify.webhook \
        is not None


def test_registry_server_defaults_to_harbors_host_with_harbors_account(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nurl = "https://harbor.abc.com:8443/"\nuser = "robot"\n')

    config = load(tmp_path, {"CAREEN_HARBOR_PASSWORD": SECRET})

    assert config.harbor.url == "https://harbor.abc.com:8443"
    assert config.registry.server == "harbor.abc.com:8443"
    assert config.registry.user == "robot"
    assert config.registry.password is not None
    assert config.registry.password.get_secret_value() == SECRET
    assert config.source_of("registry.server") == "harbor.url"


def test_harbors_account_never_goes_to_another_registry(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nurl = "https://harbor.abc.com"\nuser = "robot"\n'
                    '[registry]\nserver = "elsewhere.test"\n')

    config = load(tmp_path, {"CAREEN_HARBOR_PASSWORD": SECRET})

    assert config.registry.user is None
    assert config.registry.password is None


def test_an_explicit_registry_user_is_kept(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nurl = "https://harbor.abc.com"\nuser = "robot"\n')
    config = load(tmp_path, {"registry_user": "pusher"})
    assert config.registry.user == "pusher"
    assert config.registry.password is None


# ---------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("section", ["harbor", "registry"])
def test_password_in_the_file_is_rejected_without_echoing_it(tmp_path: Path, section: str) -> None:
    write(tmp_path, f'[{section}]\npassword = "{SECRET}"\n')

    error = error_of(tmp_path)

    assert error.key == f"{section}.password"
    assert environment_variable_for(f"{section}.password") in str(error)
    assert "password_file" in str(error)
    assert SECRET not in str(error)


def test_password_on_the_command_line_is_rejected(tmp_path: Path) -> None:
    error = error_of(tmp_path, overrides={"harbor.password": SECRET})
    assert "CAREEN_HARBOR_PASSWORD" in str(error)
    assert SECRET not in str(error)


def test_password_file_is_read_relative_to_the_config_file(tmp_path: Path) -> None:
    write(tmp_path / "conf", SECRET + "\n\n", name="harbor.pw")
    config_file = write(tmp_path / "conf", '[harbor]\npassword_file = "harbor.pw"\n')

    config = load(tmp_path, path=config_file)

    assert config.harbor.password is not None
    # Only one trailing newline is dropped.
    assert config.harbor.password.get_secret_value() == SECRET + "\n"
    assert config.source_of("harbor.password") == "password_file"


def test_password_file_with_crlf(tmp_path: Path) -> None:
    (tmp_path / "pw").write_bytes(SECRET.encode() + b"\r\n")
    config = load(tmp_path, {"CAREEN_REGISTRY_PASSWORD_FILE": "pw"})
    assert config.registry.password is not None
    assert config.registry.password.get_secret_value() == SECRET


def test_missing_password_file_names_the_path(tmp_path: Path) -> None:
    write(tmp_path, '[registry]\npassword_file = "secrets/none"\n')

    error = error_of(tmp_path)

    assert error.key == "registry.password_file"
    assert str(tmp_path / "secrets" / "none") in str(error)
    assert error.source == "careen.toml"


def test_empty_password_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("\n")
    assert "is empty" in str(error_of(tmp_path, {"CAREEN_HARBOR_PASSWORD_FILE": "pw"}))


def test_password_variable_beats_password_file_which_is_then_not_read(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\npassword_file = "does-not-exist"\n')
    config = load(tmp_path, {"CAREEN_HARBOR_PASSWORD": SECRET})
    assert config.harbor.password is not None
    assert config.harbor.password.get_secret_value() == SECRET


def test_harbor_url_with_credentials_is_rejected_without_echoing_them(tmp_path: Path) -> None:
    error = error_of(tmp_path, {"CAREEN_HARBOR_URL": f"https://admin:{SECRET}@harbor.test"})
    assert SECRET not in str(error)
    assert "user name or password" in str(error)


def test_show_and_repr_never_reveal_secrets(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text(SECRET + "-file\n")
    write(tmp_path, '[harbor]\nurl = "https://h.test"\nuser = "robot"\n'
                    '[registry]\nserver = "r.test"\npassword_file = "pw"\n')

    config = load(tmp_path, {"CAREEN_HARBOR_PASSWORD": SECRET})
    as_toml = config.show("toml")
    as_json = config.show("json")

    for text in (as_toml, as_json, repr(config), str(config), repr(config.harbor),
                 repr(config.registry), config.harbor.model_dump_json()):
        assert SECRET not in text
    assert MASK in as_toml
    data = json.loads(as_json)
    assert data["harbor"]["password"] == MASK
    assert data["registry"]["password"] == MASK


# ---------------------------------------------------------------------------- unknown keys, types


def test_unknown_key_in_the_file_suggests_and_lists_the_valid_keys(tmp_path: Path) -> None:
    write(tmp_path, "[harbor]\nverfy_tls = false\n")

    error = error_of(tmp_path)

    assert error.source == "careen.toml"
    assert error.key == "harbor.verfy_tls"
    assert "did you mean 'verify_tls'?" in str(error)
    for key in ("url", "projects", "page_size", "api_version"):
        assert key in str(error)


def test_unknown_section_in_the_file(tmp_path: Path) -> None:
    write(tmp_path, "[harbour]\nurl = 'https://h.test'\n")
    error = error_of(tmp_path)
    assert "unknown section [harbour]" in str(error)
    assert "did you mean 'harbor'?" in str(error)


def test_section_that_is_not_a_table(tmp_path: Path) -> None:
    write(tmp_path, "harbor = 3\n")
    assert "expected a table [harbor], got 3" in str(error_of(tmp_path))


def test_unknown_environment_variable_suggests_the_right_one(tmp_path: Path) -> None:
    error = error_of(tmp_path, {"CAREEN_HARBOR_VERIFYTLS": "false"})

    assert error.source == "environment variable CAREEN_HARBOR_VERIFYTLS"
    assert "did you mean 'CAREEN_HARBOR_VERIFY_TLS'?" in str(error)
    assert "CAREEN_HARBOR_PAGE_SIZE" in str(error)


def test_unknown_environment_section(tmp_path: Path) -> None:
    error = error_of(tmp_path, {"CAREEN_HARBR_URL": "https://h.test"})
    assert "did you mean 'CAREEN_HARBOR_URL'?" in str(error)


def test_unrelated_variables_are_ignored(tmp_path: Path) -> None:
    config = load(tmp_path, {"PATH": "/bin", "careen_harbor_url": "x", "HARBOR_URL": "y",
                             "CAREEN_LAB_USER": "lab", "CAREEN_LAB_PASSWORD_FILE": "/x"})
    assert config.harbor.url is None


def test_wrong_type_in_the_file_names_file_key_and_value(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nverify_tls = "maybe"\n')

    error = error_of(tmp_path)

    assert str(error) == 'careen.toml: harbor.verify_tls: expected true or false, got "maybe"'
    assert error.exit_code == ExitCode.USAGE


@pytest.mark.parametrize(("line", "key", "expected"), [
    ('[build]\njobs = "2"', "build.jobs", 'expected a whole number, got "2"'),
    ("[build]\njobs = 0", "build.jobs", "expected a number at least 1, got 0"),
    ("[harbor]\ntimeout = true", "harbor.timeout", "expected a number, got true"),
    ("[harbor]\nprojects = \"library\"", "harbor.projects", "expected a list of strings"),
    ("[harbor]\nprojects = [\"a\", 2]", "harbor.projects", "[1]: expected a string, got 2"),
    ("[build]\nbuilder = \"podman\"", "build.builder", 'expected one of "docker" or "buildah"'),
    ("[tree.mapping]\n\"a/b:1\" = 3", "tree.mapping",
     "a/b:1: expected a string (a folder) or a table, got 3"),
    ("[harbor]\nurl = \"harbor.test\"", "harbor.url", "expected an http:// or https:// URL"),
    ("[output]\njson = 3", "output.json", "expected a path"),
])
def test_wrong_values_in_the_file(tmp_path: Path, line: str, key: str, expected: str) -> None:
    write(tmp_path, line + "\n")

    error = error_of(tmp_path)

    assert error.source == "careen.toml"
    assert error.key == key
    assert expected in str(error)


# ---------------------------------------------------------------------------- Config behaviour


def test_require_explains_how_to_set_a_missing_key(tmp_path: Path) -> None:
    config = load(tmp_path)

    with pytest.raises(ConfigError) as caught:
        config.require("harbor.url")

    assert "set [harbor] url in careen.toml or CAREEN_HARBOR_URL" in str(caught.value)
    assert load(tmp_path, {"CAREEN_HARBOR_URL": "https://h.test"}).require(
        "harbor.url") == "https://h.test"
    with pytest.raises(KeyError):
        config.require("harbor.nope")


def test_verify_tls_false_gives_a_warning(tmp_path: Path) -> None:
    write(tmp_path, "[harbor]\nverify_tls = false\n[registry]\nverify_tls = false\n")

    warnings = load(tmp_path).warnings

    assert len(warnings) == 2
    assert "harbor.verify_tls = false" in warnings[0]
    assert "from careen.toml" in warnings[0]
    assert "registry.verify_tls = false" in warnings[1]


def test_config_is_frozen(tmp_path: Path) -> None:
    config = load(tmp_path, {"CAREEN_BUILD_LABELS": "a=b"})

    with pytest.raises(dataclasses.FrozenInstanceError):
        config.harbor = config.harbor  # type: ignore[misc]
    with pytest.raises(ValueError, match="frozen"):
        config.harbor.url = "https://x.test"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.build.labels["c"] = "d"  # type: ignore[index]


def test_show_toml_annotates_sources_and_loads_back(tmp_path: Path) -> None:
    write(tmp_path, '[harbor]\nurl = "https://h.test"\n[build.labels]\n"a.b" = "x \\"y\\""\n')
    config = load(tmp_path, {"CAREEN_BUILD_JOBS": "4"}, {"tree.project": "team"})

    text = config.show("toml")

    assert 'url = "https://h.test"  # from careen.toml' in text
    assert "jobs = 4  # from CAREEN_BUILD_JOBS" in text
    assert 'project = "team"  # from command line' in text
    assert "pull = true  # default" in text
    assert "# ca_bundle = (not set)" in text
    reloaded_folder = tmp_path / "again"
    write(reloaded_folder, text)
    assert load(reloaded_folder).show("json") == config.show("json")


def test_show_json_has_every_section_and_key(tmp_path: Path) -> None:
    data = json.loads(load(tmp_path).show("json"))

    assert list(data) == list(SECTIONS)
    assert data["harbor"]["password"] is None
    assert data["output"]["json"] is None
    assert data["build"]["no_cache"] is True


def test_example_file_is_a_valid_config(tmp_path: Path) -> None:
    example = Path(__file__).resolve().parents[1] / "careen.example.toml"

    config = load(tmp_path, path=example)

    assert config.harbor.url == "https://harbor.example.com"
    # Every key is documented in the example, set or commented out.
    text = example.read_text(encoding="utf-8")
    for section, model in SECTIONS.items():
        assert f"[{section}]" in text
        for name, info in model.model_fields.items():
            if f"{section}.{name}" in SECRET_KEYS:  # documented as "never here"
                continue
            key = info.alias or name
            documented = f"{key} =" in text or f"[{section}.{key}]" in text
            assert documented, f"{section}.{key} is not in the example"


# ---------------------------------------------------------------------------- hypothesis

_SCALARS = st.one_of(
    st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=20),
    st.sampled_from(["https://h.test", "a.test:5000", "https://x", "docker", "v2", "~/p", ""]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=5), inner, max_size=3)),
    max_leaves=6,
)
_KEYS = [f"{section}.{key}" for section, model in SECTIONS.items()
         for key in (info.alias or name for name, info in model.model_fields.items())]


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    assert isinstance(value, dict)
    return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=text_favouring(list('[]="\'.,{}\n #ab_ 1tf'), max_size=200))
def test_arbitrary_text_only_raises_config_error(tmp_path: Path, text: str) -> None:
    write(tmp_path, text)
    try:
        load(tmp_path)
    except ConfigError as error:
        assert "careen.toml" in str(error)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(entries=st.dictionaries(st.sampled_from([*_KEYS, "harbor.nope", "nope.x"]), _VALUES,
                               max_size=4))
def test_arbitrary_values_for_real_keys_only_raise_config_error(
    tmp_path: Path, entries: dict[str, object],
) -> None:
    sections: dict[str, list[str]] = {}
    for dotted, value in entries.items():
        section, _, key = dotted.partition(".")
        sections.setdefault(section, []).append(f"{json.dumps(key)} = {_toml(value)}")
    text = "\n".join(f"[{name}]\n" + "\n".join(lines) for name, lines in sections.items())
    write(tmp_path, text)
    try:
        config = load(tmp_path)
    except ConfigError as error:
        assert str(error).startswith("careen.toml")
    else:
        tomllib.loads(config.show("toml"))
        json.loads(config.show("json"))


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(_KEYS), value=st.text(max_size=30))
def test_arbitrary_environment_values_only_raise_config_error(
    tmp_path: Path, name: str, value: str,
) -> None:
    variable = environment_variable_for(name)
    try:
        load(tmp_path, {variable: value})
    except ConfigError as error:
        assert str(error).startswith(f"environment variable {variable}: ")
        if name.endswith(".password"):
            assert value not in str(error) or not value


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=100))
def test_arbitrary_bytes_only_raise_config_error(tmp_path: Path, data: bytes) -> None:
    (tmp_path / "careen.toml").write_bytes(data)
    try:
        load(tmp_path)
    except ConfigError as error:
        assert str(error).startswith("careen.toml: ")
