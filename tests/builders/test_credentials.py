from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from careen.builders.credentials import (
    LoginTool,
    RegistryLogin,
    private_auth,
    remove_abandoned_auth,
)
from careen.builders.process import SECRET_VARIABLES

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
        # No login yet: the tools are pointed nowhere (an auth file that does not exist
        # fails every buildah build: "checking authfile: stat ...: no such file").
        assert auth.env() == {} and auth.authfile is None
        (directory / "config.json").write_text("{}")
        assert auth.env() == {"DOCKER_CONFIG": str(directory),
                              "REGISTRY_AUTH_FILE": str(directory / "config.json")}
        assert auth.authfile == directory / "config.json"
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


@pytest.mark.parametrize("variable", sorted(SECRET_VARIABLES))
def test_the_password_in_the_environment_does_not_reach_the_login_tool(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str,
) -> None:
    # The seed's Jenkins job exports registry_password; Careen reads it, the tool never sees it.
    monkeypatch.setenv(variable, PASSWORD)
    bin_dir = _fake_tools(tmp_path)
    login = RegistryLogin("harbor.example", "robot", SecretStr(PASSWORD))
    with private_auth(tmp_path) as auth:
        assert auth.login(login, tool=LoginTool.DOCKER,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin"}).ok
    env = (tmp_path / "docker.env").read_text()
    assert PASSWORD not in env
    assert not any(line.startswith(f"{variable}=") for line in env.splitlines())


def _dead_pid() -> int:
    """The PID of a process that has exited (and been reaped); any program will do, and
    ``true`` starts in a millisecond where an interpreter takes fifty."""
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_folders_of_killed_runs_are_removed_by_the_next_run(tmp_path: Path) -> None:
    # A run killed with SIGKILL cannot clean up: its folder (with the credentials) stays.
    script = ("import sys, time\nfrom pathlib import Path\n"
              "from careen.builders.credentials import private_auth\n"
              "with private_auth(Path(sys.argv[1])) as auth:\n"
              "    auth.config_file.write_text('{\"auths\": {\"h\": {\"auth\": \"c2VjcmV0\"}}}')\n"
              "    print(auth.directory, flush=True)\n"
              "    time.sleep(120)\n")
    child = subprocess.Popen([sys.executable, "-c", script, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    left = Path(child.stdout.readline().strip())
    assert left.name.startswith(f"careen-auth-{child.pid}-")
    # While the run lives, the next run leaves its folder alone.
    with private_auth(tmp_path) as auth:
        assert left.exists()
        assert auth.directory.name.startswith(f"careen-auth-{os.getpid()}-")
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    child.stdout.close()
    assert (left / "config.json").exists()

    with private_auth(tmp_path) as auth:
        assert not left.exists()
        assert auth.directory.exists()
    assert list(tmp_path.iterdir()) == []


def test_only_our_own_abandoned_folders_are_removed(tmp_path: Path) -> None:
    dead = _dead_pid()
    abandoned = tmp_path / f"careen-auth-{dead}-abcd"
    abandoned.mkdir()
    (abandoned / "config.json").write_text("{}")
    alive = tmp_path / f"careen-auth-{os.getpid()}-efgh"
    alive.mkdir()
    unrelated = tmp_path / f"other-auth-{dead}-x"
    unrelated.mkdir()
    old_style = tmp_path / "careen-auth-x1y2z3"
    old_style.mkdir()
    target = tmp_path / "target"
    target.mkdir()
    (target / "keep").write_text("keep")
    link = tmp_path / f"careen-auth-{dead}-link"
    link.symlink_to(target)
    plain_file = tmp_path / f"careen-auth-{dead}-file"
    plain_file.write_text("not a folder")

    assert remove_abandoned_auth(tmp_path) == [abandoned]
    assert not abandoned.exists()
    for kept in (alive, unrelated, old_style, link, plain_file, target / "keep"):
        assert kept.exists()


def test_removing_abandoned_folders_in_a_missing_parent_does_nothing(tmp_path: Path) -> None:
    assert remove_abandoned_auth(tmp_path / "missing") == []
