"""``[registry] verify_tls`` and ``ca_bundle`` from the config to the build tools' argument
lists, no auth file without a login, and what a TLS failure tells the user (issue 12 point 5;
the same set-ups against a real registry: test_registry_setups_lab.py)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydantic import SecretStr

from careen.builders.buildah import BuildahBuilder
from careen.builders.credentials import AuthContext, LoginTool, RegistryLogin, private_auth
from careen.builders.docker import DockerBuilder
from careen.builders.interface import BuildRequest, Failure, Status
from careen.builders.process import looks_tls_rejected, tls_rejected_host
from careen.config import Config, load_config
from careen.errors import ConfigError
from careen.reference import ImageReference

REGISTRY = "registry.example:5443"
IMAGE = ImageReference.parse(f"{REGISTRY}/library/httpd:2.4")
PEM = (b"-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n")
# What containers/image and the docker daemon print (buildah 1.28, podman 4.3).
UNKNOWN_CA = (f'Error: initializing source docker://{REGISTRY}/library/base:1: pinging container '
              f'registry {REGISTRY}: Get "https://{REGISTRY}/v2/": x509: certificate signed '
              "by unknown authority")
PLAIN_HTTP = ('trying to reuse blob sha256:024f at destination: pinging container registry '
              'localhost:5000: Get "https://localhost:5000/v2/": http: server gave HTTP '
              "response to HTTPS client")


def _load(tmp_path: Path, environ: Mapping[str, str], toml: str | None = None) -> Config:
    if toml is not None:
        (tmp_path / "careen.toml").write_text(toml)
    return load_config(None, cwd=tmp_path, environ=environ)


def _request(tmp_path: Path) -> BuildRequest:
    return BuildRequest(IMAGE, tmp_path / "ctx", tmp_path / "httpd.log")


# -- config -----------------------------------------------------------------------------

def test_verify_tls_is_spelled_as_in_harbor(tmp_path: Path) -> None:
    config = _load(tmp_path, {"CAREEN_REGISTRY_VERIFY_TLS": "false",
                              "CAREEN_BUILD_BUILDER": "buildah"})
    assert config.registry.verify_tls is False
    assert config.registry.tls_verify is None
    assert config.warnings == (
        "TLS certificates of the registry are not verified (registry.verify_tls = false, "
        "from CAREEN_REGISTRY_VERIFY_TLS): pushed images and credentials can be intercepted",)
    assert _load(tmp_path, {}).registry.verify_tls is True


@pytest.mark.parametrize("toml, environ, source", [
    ("[registry]\ntls_verify = false\n", {}, "careen.toml"),
    (None, {"CAREEN_REGISTRY_TLS_VERIFY": "no"}, "CAREEN_REGISTRY_TLS_VERIFY"),
])
def test_the_old_spelling_still_works_with_a_deprecation_warning(
    tmp_path: Path, toml: str | None, environ: dict[str, str], source: str,
) -> None:
    config = _load(tmp_path, {**environ, "CAREEN_BUILD_BUILDER": "buildah"}, toml)
    assert config.registry.verify_tls is False
    assert config.warnings[0] == (
        f"registry.tls_verify (from {source}) is deprecated: write verify_tls, as in [harbor] "
        "(variable CAREEN_REGISTRY_VERIFY_TLS)")
    assert f"registry.tls_verify = false, from {source}" in config.warnings[1]


def test_both_spellings_must_agree(tmp_path: Path) -> None:
    assert _load(tmp_path, {"CAREEN_REGISTRY_TLS_VERIFY": "true"},
                 "[registry]\nverify_tls = true\n").registry.verify_tls is True
    with pytest.raises(ConfigError) as raised:
        _load(tmp_path, {"CAREEN_REGISTRY_TLS_VERIFY": "true"},
              "[registry]\nverify_tls = false\n")
    assert str(raised.value) == (
        "environment variable CAREEN_REGISTRY_TLS_VERIFY: registry.tls_verify: tls_verify (the "
        "old spelling of verify_tls) disagrees with verify_tls; keep verify_tls only")


def test_ca_bundle_is_a_path_relative_to_the_config_file(tmp_path: Path) -> None:
    config = _load(tmp_path, {}, '[registry]\nca_bundle = "certs/ca.pem"\n[build]\n'
                                 'builder = "buildah"\n')
    assert config.registry.ca_bundle == tmp_path / "certs" / "ca.pem"
    assert config.warnings == ()


def test_the_docker_builder_warns_that_its_daemon_decides(tmp_path: Path) -> None:
    config = _load(tmp_path, {"CAREEN_REGISTRY_VERIFY_TLS": "false",
                              "CAREEN_REGISTRY_CA_BUNDLE": "ca.pem"})
    assert config.build.builder == "docker"
    not_verified, ca_unused = config.warnings
    assert not_verified.endswith(
        "; the docker builder cannot hand TLS settings to its daemon, which pulls and pushes "
        "itself: the daemon must trust the registry (its certs.d/HOST:PORT/ca.crt, or the "
        "registry listed as insecure in daemon.json or, for podman, in registries.conf); the "
        "buildah builder takes both settings")
    assert ca_unused.startswith("registry.ca_bundle (from CAREEN_REGISTRY_CA_BUNDLE) is not "
                                "used by the docker builder; the docker builder cannot hand")


def test_the_deprecation_warning_reaches_stderr_through_the_cli(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CAREEN_")}
    env.update({"CAREEN_REGISTRY_TLS_VERIFY": "false", "CAREEN_BUILD_BUILDER": "buildah"})
    shown = subprocess.run([sys.executable, "-m", "careen", "config", "show"], env=env,
                           cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert ("registry.tls_verify (from CAREEN_REGISTRY_TLS_VERIFY) is deprecated: write "
            "verify_tls") in shown.stderr
    # Both keys show the value and where it came from.
    assert "\nverify_tls = false  # from CAREEN_REGISTRY_TLS_VERIFY\n" in shown.stdout
    assert "\ntls_verify = false  # from CAREEN_REGISTRY_TLS_VERIFY\n" in shown.stdout


# -- the auth context: no file before a login, TLS per registry ---------------------------

def test_trust_turns_verification_off_and_keeps_the_ca_privately(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(PEM)
    with private_auth(tmp_path) as auth:
        auth.trust("plain.example:5000", verify=False)
        auth.trust(REGISTRY, ca_bundle=bundle)
        assert auth.insecure_registries == {"plain.example:5000"}
        folder = auth.cert_dir(REGISTRY)
        assert folder is not None and folder.parent.parent == auth.directory
        assert (folder / "ca.crt").read_bytes() == PEM
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert auth.cert_dir("plain.example:5000") is None and auth.cert_dir(None) is None
        # Trust is not a login: still no auth file for the tools.
        assert auth.authfile is None and auth.env() == {}
    assert not folder.exists()


@pytest.mark.parametrize("content, message", [
    (None, "cannot read the CA file"),
    (b"not a certificate\n", "the CA file"),
])
def test_a_bad_ca_bundle_is_a_config_error(tmp_path: Path, content: bytes | None,
                                          message: str) -> None:
    bundle = tmp_path / "ca.pem"
    if content is not None:
        bundle.write_bytes(content)
    with private_auth(tmp_path) as auth, pytest.raises(ConfigError) as raised:
        auth.trust(REGISTRY, ca_bundle=bundle)
    assert str(raised.value).startswith(f"registry.ca_bundle: {message}")
    assert str(bundle) in str(raised.value)
    assert raised.value.hint is not None and "PEM file of the CA" in raised.value.hint


def _fake_tool(tmp_path: Path, name: str, output: str, code: int = 0) -> Path:
    """A tool that records its argv and prints ``output``; ``version`` always works."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/{name}.argv"\n'
        'case "$1" in version) echo 1.0; exit 0;; esac\n'
        f"cat > /dev/null; printf '%s\\n' '{output}'; exit {code}\n"
    )
    script.chmod(0o755)
    return script


def test_buildah_login_gets_the_tls_settings(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(PEM)
    fake = _fake_tool(tmp_path, "buildah", "Login Succeeded!")
    with private_auth(tmp_path) as auth:
        auth.trust(REGISTRY, verify=False, ca_bundle=bundle)
        result = auth.login(RegistryLogin(REGISTRY, "robot", SecretStr("pw")),
                            tool=LoginTool.BUILDAH, env={"PATH": f"{fake.parent}:/usr/bin:/bin"})
        cert_dir = auth.cert_dir(REGISTRY)
    assert result.ok and result.hint is None
    argv = (tmp_path / "buildah.argv").read_text().split()
    assert "--tls-verify=false" in argv
    assert argv[argv.index("--cert-dir") + 1] == str(cert_dir)


@pytest.mark.parametrize("tool, hint", [
    (LoginTool.BUILDAH, f"{REGISTRY} is not trusted over TLS (or speaks plain HTTP): set "
                        "[registry] ca_bundle"),
    (LoginTool.DOCKER, f"the docker daemon does not trust {REGISTRY} over TLS"),
])
def test_a_login_the_registry_refused_over_tls_says_what_to_set(
    tmp_path: Path, tool: LoginTool, hint: str,
) -> None:
    fake = _fake_tool(tmp_path, str(tool), UNKNOWN_CA, code=125)
    with private_auth(tmp_path) as auth:
        result = auth.login(RegistryLogin(REGISTRY, "robot", SecretStr("pw")), tool=tool,
                            env={"PATH": f"{fake.parent}:/usr/bin:/bin"})
    assert not result.ok and result.tls_rejected and not result.auth_rejected
    assert result.hint is not None and result.hint.startswith(hint)
    assert ('set [registry] server = "localhost:5443"' in result.hint) is (
        tool is LoginTool.DOCKER)


# -- buildah: the push registry's TLS settings for bud and push -----------------------------

def test_no_login_no_authfile_and_the_tls_settings_for_build_and_push(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(PEM)
    auth = AuthContext(tmp_path / "auth")
    auth.directory.mkdir()
    auth.trust(REGISTRY, verify=False, ca_bundle=bundle)
    builder = BuildahBuilder(auth=auth)
    request = _request(tmp_path)
    cert_dir = str(auth.cert_dir(REGISTRY))
    build = builder.build_argv(request)
    push = builder.push_argv(request, digestfile=tmp_path / "d")
    for argv in (build, push):
        assert "--authfile" not in argv
        assert "--tls-verify=false" in argv
        assert argv[argv.index("--cert-dir") + 1] == cert_dir
    auth.config_file.write_text('{"auths": {}}')  # a login happened
    assert builder.build_argv(request)[9:11] == ["--authfile", str(auth.config_file)]
    # Another registry keeps verification on.
    other = BuildRequest(ImageReference.parse("other.example/library/httpd:2.4"),
                         tmp_path / "ctx", tmp_path / "o.log")
    assert "--tls-verify=false" not in builder.build_argv(other)
    assert "--cert-dir" not in builder.build_argv(other)


def test_a_build_the_registry_refused_over_tls_ends_with_what_to_set(tmp_path: Path) -> None:
    fake = _fake_tool(tmp_path, "buildah", UNKNOWN_CA, code=125)
    result = BuildahBuilder(buildah=str(fake)).build(_request(tmp_path))
    assert result.status is Status.FAILED and result.error is Failure.TLS_REJECTED
    assert result.log_tail[-2] == UNKNOWN_CA
    hint = result.log_tail[-1]
    assert hint == (
        f"careen: {REGISTRY} is not trusted over TLS (or speaks plain HTTP): set [registry] "
        "ca_bundle to the PEM file of the CA that signed its certificate, or [registry] "
        "verify_tls = false for plain HTTP or a self-signed certificate "
        "(CAREEN_REGISTRY_CA_BUNDLE, CAREEN_REGISTRY_VERIFY_TLS)")
    assert (tmp_path / "httpd.log").read_text().splitlines()[-1] == hint


def test_a_push_refused_over_tls_is_not_retried(tmp_path: Path) -> None:
    fake = _fake_tool(tmp_path, "buildah", UNKNOWN_CA, code=125)
    waits: list[float] = []
    result = BuildahBuilder(buildah=str(fake), push_attempts=3, sleep=waits.append).push(
        _request(tmp_path))
    assert result.error is Failure.TLS_REJECTED and result.attempts == 1 and waits == []


# -- docker: the daemon decides; the hint says where ----------------------------------------

def test_a_docker_push_to_a_plain_http_registry_says_what_the_daemon_needs(
    tmp_path: Path,
) -> None:
    fake = _fake_tool(tmp_path, "docker", PLAIN_HTTP, code=1)
    waits: list[float] = []
    image = ImageReference.parse("localhost:5000/library/httpd:2.4")
    result = DockerBuilder(docker=str(fake), sleep=waits.append).push(
        BuildRequest(image, tmp_path / "ctx", tmp_path / "httpd.log"))
    assert result.error is Failure.TLS_REJECTED and result.attempts == 1 and waits == []
    assert result.log_tail[-1] == (
        "careen: the docker daemon does not trust localhost:5000 over TLS (or it speaks plain "
        "HTTP), and Careen cannot hand TLS settings to a daemon: give the daemon the "
        "registry's CA (/etc/docker/certs.d/localhost:5000/ca.crt; podman: "
        "/etc/containers/certs.d/localhost:5000/ca.crt) or mark the registry insecure "
        '(Docker: "insecure-registries" in /etc/docker/daemon.json; podman: [[registry]] '
        'location = "localhost:5000", insecure = true in registries.conf), then restart the '
        "daemon; or use the buildah builder, which takes [registry] ca_bundle and verify_tls")


def test_tls_failures_are_told_apart_and_name_their_host() -> None:
    assert looks_tls_rejected(UNKNOWN_CA) and looks_tls_rejected(PLAIN_HTTP)
    assert looks_tls_rejected("tls: failed to verify certificate: x509: certificate is "
                              "valid for 10.0.0.1, not 127.0.0.1")
    assert not looks_tls_rejected("Error: unauthorized: authentication required")
    assert not looks_tls_rejected("net/http: TLS handshake timeout")  # transient, retried
    assert tls_rejected_host(UNKNOWN_CA) == REGISTRY
    assert tls_rejected_host(PLAIN_HTTP) == "localhost:5000"
    assert tls_rejected_host("x509: certificate signed by unknown authority") is None


# -- the builder Careen assembles from the config -------------------------------------------

def test_the_configured_builder_without_credentials_gets_no_authfile_and_the_tls_settings(
    tmp_path: Path,
) -> None:
    from careen.assemble import logged_in_builder

    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(PEM)
    config = _load(tmp_path, {"CAREEN_REGISTRY_SERVER": REGISTRY,
                              "CAREEN_REGISTRY_VERIFY_TLS": "false",
                              "CAREEN_REGISTRY_CA_BUNDLE": str(bundle),
                              "CAREEN_BUILD_BUILDER": "buildah"})
    with logged_in_builder(config) as builder:
        assert isinstance(builder, BuildahBuilder)
        argv = builder.build_argv(_request(tmp_path))
        assert "--authfile" not in argv and "--tls-verify=false" in argv
        cert_dir = Path(argv[argv.index("--cert-dir") + 1])
        assert (cert_dir / "ca.crt").read_bytes() == PEM
    assert not cert_dir.exists()
