from __future__ import annotations

import json
import os
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

import careen.lab
from careen.errors import ConfigError, UsageError
from careen.lab import (
    INSTALL_COMMAND,
    REQUIRED_PACKAGES,
    Lab,
    install_packages,
    main,
    missing_packages,
    missing_packages_message,
)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lab"


def _fake_dpkg(tmp_path: Path, missing: set[str]) -> str:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    query = bin_dir / "dpkg-query"
    cases = "|".join(sorted(missing)) or "careen-none"
    query.write_text(
        "#!/bin/sh\n"
        'package="$3"\n'
        f'case "$package" in {cases}) echo "no packages found" >&2; exit 1;; esac\n'
        'printf "install ok installed"\n'
    )
    query.chmod(0o755)
    return f"{bin_dir}:/usr/bin:/bin"


# -- packages (no lab) ----------------------------------------------------------------------

def test_missing_packages_asks_dpkg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", _fake_dpkg(tmp_path, {"skopeo", "busybox-static"}))
    assert missing_packages() == ["skopeo", "busybox-static"]


def test_nothing_missing_means_nothing_installed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", _fake_dpkg(tmp_path, set()))
    assert missing_packages() == []
    assert install_packages() == []


def test_cannot_install_without_root_or_apt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", _fake_dpkg(tmp_path, {"podman"}))
    monkeypatch.setattr(careen.lab, "can_install_packages", lambda: False)
    with pytest.raises(ConfigError, match="podman") as raised:
        install_packages()
    assert INSTALL_COMMAND in str(raised.value)


def test_message_names_the_one_install_command() -> None:
    message = missing_packages_message(["podman", "runc"])
    assert "podman, runc" in message
    assert "apt-get update && apt-get install -y " + " ".join(REQUIRED_PACKAGES) in message


def test_load_without_a_lab(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="no lab in") as raised:
        Lab.load(tmp_path)
    assert raised.value.hint is not None and "scripts/lab up" in raised.value.hint


def test_load_a_broken_description(tmp_path: Path) -> None:
    (tmp_path / "lab.json").write_text('{"dir": "x"}')
    with pytest.raises(ConfigError, match="unreadable lab description"):
        Lab.load(tmp_path)


def test_command_line_reports_a_missing_lab(tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path)]) == 2
    assert "no lab in" in capsys.readouterr().err


def test_script_without_a_command_shows_usage() -> None:
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, check=False)
    assert done.returncode != 0
    assert "scripts/lab up DIR" in done.stdout


# -- a running lab ---------------------------------------------------------------------------

@pytest.mark.lab
def test_the_lab_is_described_and_answers(lab: Lab) -> None:
    described = json.loads((lab.dir / "lab.json").read_text())
    assert Lab.load(lab.dir) == lab
    assert described["auth_registry"]["user"] == lab.user
    assert lab.open_registry != lab.auth_registry
    assert all(lab.status().values())
    password = lab.password().get_secret_value()
    assert len(password) >= 24
    assert password not in (lab.dir / "lab.json").read_text()
    assert stat.S_IMODE(lab.password_file.stat().st_mode) == 0o600
    assert (lab.dir / "htpasswd").read_text().startswith(f"{lab.user}:$2")  # bcrypt

    assert httpx.get(f"{lab.open_registry_url}/v2/").status_code == 200
    assert httpx.get(f"{lab.auth_registry_url}/v2/").status_code == 401
    for url, auth in ((lab.open_registry_url, None), (lab.auth_registry_url,
                                                      (lab.user, password))):
        tags = httpx.get(f"{url}/v2/library/busybox-base/tags/list", auth=auth)
        assert tags.status_code == 200 and tags.json()["tags"] == ["1.0"]
    assert httpx.get(f"{lab.auth_registry_url}/v2/library/busybox-base/tags/list",
                     auth=(lab.user, "wrong")).status_code == 401


@pytest.mark.lab
def test_the_environment_points_into_the_lab(lab: Lab) -> None:
    docker = lab.docker_env()
    assert docker["DOCKER_HOST"] == f"unix://{lab.socket}"
    assert docker["DOCKER_BUILDKIT"] == "0"
    buildah = lab.buildah_env()
    for key in ("CONTAINERS_CONF", "CONTAINERS_REGISTRIES_CONF", "CONTAINERS_STORAGE_CONF"):
        assert Path(buildah[key]).is_relative_to(lab.dir) and Path(buildah[key]).is_file()
    registries = lab.registries_conf.read_text()
    for name in (*lab.registries, lab.docker_auth_registry, lab.docker_open_registry):
        assert f'location = "{name}"\ninsecure = true' in registries
    assert str(lab.buildah_root) in lab.storage_conf.read_text()


@pytest.mark.lab
def test_a_second_lab_through_the_script_stops_completely(lab: Lab, tmp_path: Path) -> None:
    directory = tmp_path / "second lab"  # a space: paths are data, never shell text
    env = dict(os.environ)
    up = subprocess.run([str(SCRIPT), "up", str(directory)], capture_output=True, text=True,
                        env=env, check=False, timeout=300)
    assert up.returncode == 0, up.stderr
    second = Lab.load(directory)
    try:
        assert set(second.registries).isdisjoint(lab.registries)
        assert second.socket != lab.socket
        status = subprocess.run([str(SCRIPT), "status", str(directory)], capture_output=True,
                                text=True, check=False)
        assert status.returncode == 0, status.stdout
        exported = subprocess.run([str(SCRIPT), "env", str(directory)], capture_output=True,
                                  text=True, check=True).stdout
        assert f"export DOCKER_HOST='unix://{second.socket}'" in exported
        with pytest.raises(UsageError, match="already running"):
            Lab.start(directory)
    finally:
        down = subprocess.run([str(SCRIPT), "down", str(directory)], capture_output=True,
                              text=True, check=False, timeout=120)
    assert down.returncode == 0, down.stderr
    assert not second.running()
    ps = subprocess.run(["ps", "-ww", "-eo", "stat=,args="], capture_output=True, text=True,
                        check=True).stdout
    left = [line for line in ps.splitlines()
            if str(directory) in line and not line.startswith("Z")]
    assert left == []
    assert all(lab.status().values())  # the session's lab is untouched


def _described_lab(tmp_path: Path) -> Lab:
    return Lab(dir=tmp_path, open_registry="127.0.0.1:5001", auth_registry="127.0.0.1:5002",
               user="careen", password_file=tmp_path / "password", socket=tmp_path / "p.sock")


def test_an_extra_tls_registry_needs_its_certificate_and_key(tmp_path: Path) -> None:
    lab = _described_lab(tmp_path)
    with pytest.raises(UsageError, match="both a certificate and its key"):
        lab.start_registry("tls", certificate=tmp_path / "srv.crt")
    with pytest.raises(UsageError, match="letters, digits and '-' only"):
        lab.start_registry("../elsewhere")
    with pytest.raises(UsageError, match="letters, digits and '-' only"):
        lab.start_daemon("a/b", ["127.0.0.1:5003"])
    assert not (tmp_path / "tls").exists()


def test_a_daemons_registries_conf_lists_the_lab_and_its_own_registries(tmp_path: Path) -> None:
    import tomllib

    from careen.lab import _write_registries_conf

    lab = _described_lab(tmp_path)
    path = tmp_path / "cells-registries.conf"
    _write_registries_conf(path, [*lab.registries, "127.0.0.1:5003"])
    listed = tomllib.loads(path.read_text())["registry"]
    assert [entry["location"] for entry in listed] == [
        "127.0.0.1:5001", "localhost:5001", "127.0.0.1:5002", "localhost:5002",
        "127.0.0.1:5003", "localhost:5003"]
    assert all(entry["insecure"] is True for entry in listed)
