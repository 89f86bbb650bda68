from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from careen.builders.credentials import LoginTool, RegistryLogin, private_auth

PASSWORD = "s3cret-Pa55-word"


def _fake_tools(tmp_path: Path, *, reject: bool = False) -> Path:
    """`docker` and `buildah` stand-ins that record argv and stdin, and write a config file."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    outcome = ("echo 'Error: unauthorized: authentication required' >&2; exit 1" if reject
               else 'echo \'{"auths": {}}\' > "$DOCKER_CONFIG/config.json"; echo ok')
    for tool in ("docker", "buildah"):
        script = bin_dir / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "$@" > "{tmp_path}/{tool}.argv"\n'
            f'cat > "{tmp_path}/{tool}.stdin"\n'
            f'env > "{tmp_path}/{tool}.env"\n'
            f"{outcome}\n"
        )
        script.chmod(0o755)
    return bin_dir


def test_login_repr_hides_the_password() -> None:
    login = RegistryLogin("harbor.example", "robot", SecretStr(PASSWORD))
    assert PASSWORD not in repr(login)
    assert PASSWORD not in str(login)


@pytest.mark.parametrize("registry, user", [("", "u"), ("a/b", "u"), ("-x", "u"), ("h", "")])
def test_bad_logins_are_refused(registry: str, user: str) -> None:
    with pytest.raises(ValueError):
        RegistryLogin(registry, user, SecretStr("p"))


def test_private_directory_is_private_and_removed(tmp_path: Path) -> None:
    with private_auth(tmp_path) as auth:
        directory = auth.directory
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert auth.env() == {"DOCKER_CONFIG": str(directory),
                              "REGISTRY_AUTH_FILE": str(directory / "config.json")}
        (directory / "config.json").write_text("{}")
    assert not directory.exists()


def test_private_directory_is_removed_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), private_auth(tmp_path) as auth:
        directory = auth.directory
        raise RuntimeError("boom")
    assert not directory.exists()


@pytest.mark.parametrize("tool, expected_argv", [
    (LoginTool.DOCKER, "login --username robot --password-stdin harbor.example:8443"),
    (LoginTool.BUILDAH, "login --authfile {config} --username robot --password-stdin "
                        "--tls-verify=false harbor.example:8443"),
])
def test_password_goes_on_stdin_never_in_argv(
    tmp_path: Path, tool: LoginTool, expected_argv: str,
) -> None:
    bin_dir = _fake_tools(tmp_path)
    login = RegistryLogin("harbor.example:8443", "robot", SecretStr(PASSWORD), insecure=True)
    with private_auth(tmp_path) as auth:
        result = auth.login(login, tool=tool, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
        assert result.ok and not result.auth_rejected
        assert stat.S_IMODE(auth.config_file.stat().st_mode) == 0o600
        assert "harbor.example:8443" in auth.insecure_registries
        config = auth.config_file
        login_log = (auth.directory / "login.log").read_text()
    argv = (tmp_path / f"{tool}.argv").read_text().strip()
    assert argv == expected_argv.format(config=config)
    assert PASSWORD not in argv
    assert (tmp_path / f"{tool}.stdin").read_text() == PASSWORD + "\n"
    assert PASSWORD not in login_log
    env = (tmp_path / f"{tool}.env").read_text()
    assert PASSWORD not in env
    assert f"DOCKER_CONFIG={config.parent}" in env.splitlines()


def test_rejected_login_is_reported(tmp_path: Path) -> None:
    bin_dir = _fake_tools(tmp_path, reject=True)
    login = RegistryLogin("harbor.example", "robot", SecretStr("wrong"))
    with private_auth(tmp_path) as auth:
        result = auth.login(login, tool=LoginTool.DOCKER, env={"PATH": f"{bin_dir}:/usr/bin:/bin"})
        assert not auth.insecure_registries
    assert not result.ok and result.auth_rejected
    assert "unauthorized" in result.log_tail[-1]


def test_missing_tool_is_reported(tmp_path: Path) -> None:
    login = RegistryLogin("harbor.example", "robot", SecretStr("p"))
    with private_auth(tmp_path) as auth:
        result = auth.login(login, tool=LoginTool.BUILDAH, env={"PATH": str(tmp_path)})
    assert not result.ok and result.tool_missing


def test_closed_context_refuses_logins(tmp_path: Path) -> None:
    with private_auth(tmp_path) as auth:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        auth.login(RegistryLogin("h", "u", SecretStr("p")), tool=LoginTool.DOCKER)
