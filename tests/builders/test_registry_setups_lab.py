"""Registry set-ups that failed every build (issue 12 point 5), on the real lab.

For each cell of {open, htpasswd} x {plain HTTP with ``verify_tls = false``, HTTPS with a
private CA given as ``[registry] ca_bundle``, HTTPS self-signed with ``verify_tls = false``}
a real registry (CNCF distribution) is started once for the module; ``careen update`` then
rebuilds a base and, by cascade, its child: the base is built (on the lab's busybox image),
pushed, and the child's ``FROM`` pulls it back from that registry during the build. That
pull is what failed before (``tls_verify = false`` reached only the push; and without
credentials buildah was given an auth file that did not exist).

Builders: buildah (Careen hands it every TLS setting: ``--tls-verify=false``, ``--cert-dir``)
and the docker CLI against podman's Docker API. A daemon pulls and pushes with its own
settings, so for docker the cells run against a daemon configured by its administrator
(``insecure = true`` in its registries.conf for the plain-HTTP and self-signed registries,
read when the service starts). The private-CA cells cannot work with docker: the CA is the
daemon's ``/etc/containers/certs.d/HOST:PORT/ca.crt`` (a system folder this shared machine's
tests leave alone) and no docker CLI option carries it; those cells, and a daemon that was
not configured at all, assert the error Careen gives instead.

Certificates are made here with ``cryptography``: a CA and a server certificate it signed for
127.0.0.1 and localhost, and a self-signed server certificate.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import re
import ssl
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from careen.lab import Lab, LabDaemon, LabRegistry

pytestmark = pytest.mark.lab

TRANSPORTS = ("plain", "private-ca", "self-signed")
AUTHS = ("open", "htpasswd")
CELLS = [(transport, auth) for transport in TRANSPORTS for auth in AUTHS]
ACCEPT = ", ".join([
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
])


# -- certificates ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Certificates:
    ca: Path
    ca_signed: tuple[Path, Path]
    self_signed: tuple[Path, Path]


def _make_certificates(folder: Path) -> Certificates:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)
    names = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                         x509.DNSName("localhost")])

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None,
              ) -> tuple[Path, Path]:
        cert_file, key_file = folder / f"{name}.crt", folder / f"{name}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        if key is not None:
            key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                   serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
        return cert_file, key_file

    def builder(subject: str, issuer: str, public: ec.EllipticCurvePublicKey,
                ) -> x509.CertificateBuilder:
        return (x509.CertificateBuilder()
                .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
                .public_key(public).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(hours=1))
                .not_valid_after(now + dt.timedelta(days=2)))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (builder("careen lab CA", "careen lab CA", ca_key.public_key())
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=True,
                   crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
               .sign(ca_key, hashes.SHA256()))
    ca_file, _ = write("ca", ca_cert, None)

    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (builder("127.0.0.1", "careen lab CA", server_key.public_key())
                   .add_extension(names, critical=False)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None),
                                  critical=True)
                   .sign(ca_key, hashes.SHA256()))
    self_key = ec.generate_private_key(ec.SECP256R1())
    self_cert = (builder("127.0.0.1", "127.0.0.1", self_key.public_key())
                 .add_extension(names, critical=False)
                 .sign(self_key, hashes.SHA256()))
    return Certificates(ca_file, write("server", server_cert, server_key),
                        write("self-signed", self_cert, self_key))


# -- the registries, once per module --------------------------------------------------------

@dataclass(frozen=True)
class Matrix:
    lab: Lab
    certificates: Certificates
    registries: dict[tuple[str, str], LabRegistry]


@pytest.fixture(scope="module")
def matrix(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Matrix]:
    certificates = _make_certificates(tmp_path_factory.mktemp("certs"))
    with ExitStack() as stack:
        registries = {}
        for transport, auth in CELLS:
            pair = {"plain": None, "private-ca": certificates.ca_signed,
                    "self-signed": certificates.self_signed}[transport]
            registries[transport, auth] = stack.enter_context(lab.start_registry(
                f"cell-{transport}-{auth}", auth=auth == "htpasswd",
                certificate=pair[0] if pair else None, key=pair[1] if pair else None))
        yield Matrix(lab, certificates, registries)


@pytest.fixture(scope="module")
def configured_daemon(matrix: Matrix, docker_cli: str) -> Iterator[LabDaemon]:
    """A podman service whose registries.conf lists the plain-HTTP and self-signed registries
    as insecure (as a daemon's administrator sets it up; not the private-CA ones)."""
    insecure = [registry.host for (transport, _), registry in matrix.registries.items()
                if transport != "private-ca"]
    daemon = matrix.lab.start_daemon("cells", insecure)
    try:
        yield daemon
    finally:
        daemon.stop()


# -- one cell -------------------------------------------------------------------------------

@dataclass
class Cell:
    matrix: Matrix
    transport: str
    auth: str
    builder: str
    #: The lab environment of the builder (buildah's containers files, or the daemon's).
    builder_env: dict[str, str]
    #: How the builder names the registry (docker through podman: ``localhost:PORT``).
    server: str
    work: Path
    project: str

    @property
    def registry(self) -> LabRegistry:
        return self.matrix.registries[self.transport, self.auth]

    def settings(self) -> dict[str, str]:
        """The ``[registry]`` settings a user of this set-up writes."""
        settings = {"CAREEN_REGISTRY_SERVER": self.server}
        if self.auth == "htpasswd":
            settings["CAREEN_REGISTRY_USER"] = self.matrix.lab.user
            settings["CAREEN_REGISTRY_PASSWORD"] = (
                self.matrix.lab.password().get_secret_value())
        if self.transport == "private-ca":
            settings["CAREEN_REGISTRY_CA_BUNDLE"] = str(self.matrix.certificates.ca)
        else:
            settings["CAREEN_REGISTRY_VERIFY_TLS"] = "false"
        return settings

    def write_tree(self) -> Path:
        """``base/1`` on the lab's busybox image; ``child/1`` on ``base`` in the registry."""
        lab = self.matrix.lab
        busybox = lab.open_registry if self.builder == "buildah" else lab.docker_open_registry
        root = self.work / "tree"
        (root / "base" / "1").mkdir(parents=True)
        (root / "child" / "1").mkdir(parents=True)
        (root / "base" / "1" / "Dockerfile").write_text(
            f"FROM {busybox}/library/busybox-base:1.0\nRUN echo base > /base.txt\n")
        (root / "child" / "1" / "Dockerfile").write_text(
            f"ARG REGISTRY\nFROM ${{REGISTRY}}/{self.project}/base:1\n"
            "RUN cat /base.txt > /child.txt\n")
        return root

    def careen_update(self, settings: dict[str, str] | None = None,
                      ) -> subprocess.CompletedProcess[str]:
        root = self.write_tree()
        listing = self.work / "vulnerable.list"
        listing.write_text(f"{self.project}/base:1\n")
        env = {
            **{k: v for k, v in os.environ.items()
               if not k.startswith("CAREEN_") and not k.lower().startswith("registry_")},
            **self.builder_env,
            **(self.settings() if settings is None else settings),
            "CAREEN_TREE_ROOT": str(root), "CAREEN_TREE_PROJECT": self.project,
            "CAREEN_TREE_LAYOUT": "app/version",
            "CAREEN_BUILD_BUILDER": self.builder,
            "CAREEN_BUILD_BUILD_ARGS": f"REGISTRY={self.server}",
            "CAREEN_STATE_PATH": str(self.work / "state.sqlite"),
            "CAREEN_OUTPUT_REPORTS_DIR": str(self.work / "reports"),
            "XDG_CACHE_HOME": str(self.work / "cache"),
        }
        return subprocess.run([sys.executable, "-m", "careen", "update", "--from", str(listing)],
                              env=env, cwd=self.work, capture_output=True, text=True,
                              timeout=600, check=False)

    def client(self) -> httpx.Client:
        lab = self.matrix.lab
        verify: ssl.SSLContext | bool = (
            ssl.create_default_context(cafile=self.matrix.certificates.ca)
            if self.transport == "private-ca" else False)
        auth = ((lab.user, lab.password().get_secret_value())
                if self.auth == "htpasswd" else None)
        return httpx.Client(base_url=self.registry.url, verify=verify, auth=auth, timeout=10)

    def layers(self, repository: str) -> list[str]:
        with self.client() as client:
            response = client.get(f"/v2/{self.project}/{repository}/manifests/1",
                                  headers={"Accept": ACCEPT})
            response.raise_for_status()
        return [layer["digest"] for layer in response.json()["layers"]]

    def base_pulls_after_its_push(self) -> int:
        """GETs of the base's manifest that the registry answered 200 after the base's
        manifest PUT (the child's build pulling it), from the registry's own log."""
        log = self.matrix.lab.dir / "logs" / f"{self.registry.name}.log"
        uri = rf"http\.request\.uri=/v2/{re.escape(self.project)}/base/manifests/[^ ]+"
        put = re.compile(rf"http\.request\.method=PUT .*{uri} .*http\.response\.status=201")
        get = re.compile(rf"http\.request\.method=GET .*{uri} .*http\.response\.status=200")
        pulls, pushed = 0, False
        for line in log.read_text(errors="replace").splitlines():
            if 'msg="response completed"' not in line:
                continue
            if put.search(line):
                pushed, pulls = True, 0
            elif pushed and get.search(line):
                pulls += 1
        return pulls

    def log_text(self) -> str:
        return "\n".join(path.read_text(errors="replace")
                         for path in sorted((self.work / "reports").rglob("*.log")))


def _cell(matrix: Matrix, tmp_path: Path, transport: str, auth: str, builder: str,
          builder_env: dict[str, str], *, server: str | None = None, tag: str = "") -> Cell:
    registry = matrix.registries[transport, auth]
    if server is None:
        server = (registry.host if builder == "buildah"
                  else "localhost:" + registry.host.rpartition(":")[2])
    work = tmp_path / "work"
    work.mkdir()
    return Cell(matrix, transport, auth, builder, builder_env, server, work,
                f"{builder}{tag}")


def _assert_rebuilt(cell: Cell, result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stderr
    base, child = cell.layers("base"), cell.layers("child")
    # The child was built on the base just pushed, pulled back from the registry.
    assert child[:len(base)] == base and len(child) > len(base)
    assert cell.base_pulls_after_its_push() >= 1


# -- buildah: every cell works --------------------------------------------------------------

@pytest.mark.parametrize("transport, auth", CELLS)
def test_buildah_builds_a_base_and_its_child_in_every_setup(
    matrix: Matrix, tmp_path: Path, transport: str, auth: str,
) -> None:
    cell = _cell(matrix, tmp_path, transport, auth, "buildah", matrix.lab.buildah_env())
    result = cell.careen_update()
    _assert_rebuilt(cell, result)
    logs = cell.log_text()
    if auth == "open":
        # No credentials: no auth file handed to buildah (it failed on a missing one).
        assert "--authfile" not in logs
    else:
        assert "--authfile" in logs
    if transport == "private-ca":
        assert re.search(r"bud .*--cert-dir ", logs) and re.search(r"push .*--cert-dir ", logs)
        assert "--tls-verify=false" not in logs
    else:
        assert re.search(r"bud .*--tls-verify=false", logs)
        assert "TLS certificates of the registry are not verified" in result.stderr


def test_buildah_reads_the_old_spelling_with_a_deprecation_warning(
    matrix: Matrix, tmp_path: Path,
) -> None:
    cell = _cell(matrix, tmp_path, "plain", "open", "buildah", matrix.lab.buildah_env(),
                 tag="-old")
    settings = {"CAREEN_REGISTRY_SERVER": cell.server, "CAREEN_REGISTRY_TLS_VERIFY": "false"}
    result = cell.careen_update(settings)
    _assert_rebuilt(cell, result)
    assert ("registry.tls_verify (from CAREEN_REGISTRY_TLS_VERIFY) is deprecated: write "
            "verify_tls" in result.stderr)


def test_buildah_without_the_ca_says_to_set_ca_bundle(matrix: Matrix, tmp_path: Path) -> None:
    cell = _cell(matrix, tmp_path, "private-ca", "open", "buildah", matrix.lab.buildah_env(),
                 tag="-noca")
    result = cell.careen_update({"CAREEN_REGISTRY_SERVER": cell.server})
    assert result.returncode == 1
    assert f"{cell.server}/{cell.project}/base:1: registry TLS rejected" in result.stderr
    logs = cell.log_text()
    assert "x509: certificate signed by unknown authority" in logs
    assert (f"careen: {cell.server} is not trusted over TLS (or speaks plain HTTP): set "
            "[registry] ca_bundle") in logs


# -- docker through podman's API ------------------------------------------------------------

@pytest.mark.parametrize("transport, auth", CELLS)
def test_docker_with_a_configured_daemon(
    matrix: Matrix, configured_daemon: LabDaemon, tmp_path: Path, transport: str, auth: str,
) -> None:
    cell = _cell(matrix, tmp_path, transport, auth, "docker",
                 matrix.lab.docker_env_for(configured_daemon))
    result = cell.careen_update()
    # Careen says up front that it cannot hand TLS settings to a daemon.
    assert "the docker builder cannot hand TLS settings to its daemon" in result.stderr
    if transport != "private-ca":
        _assert_rebuilt(cell, result)
        return
    # The daemon does not know the private CA, and no docker option carries it.
    assert result.returncode == 1, result.stderr
    assert "registry.ca_bundle (from CAREEN_REGISTRY_CA_BUNDLE) is not used by the docker " \
           "builder" in result.stderr
    assert f"{cell.server}/{cell.project}/base:1: registry TLS rejected" in result.stderr
    logs = cell.log_text()
    assert "certificate signed by unknown authority" in logs
    assert (f"careen: the docker daemon does not trust {cell.server} over TLS (or it speaks "
            "plain HTTP), and Careen cannot hand TLS settings to a daemon: give the daemon "
            f"the registry's CA (/etc/docker/certs.d/{cell.server}/ca.crt; podman: "
            f"/etc/containers/certs.d/{cell.server}/ca.crt)") in logs


def test_docker_with_a_daemon_that_does_not_know_the_registry(
    matrix: Matrix, docker_cli: str, tmp_path: Path,
) -> None:
    """The lab's own podman service started before this registry existed: its
    registries.conf does not list it, so the push of the base goes over HTTPS."""
    cell = _cell(matrix, tmp_path, "plain", "open", "docker", matrix.lab.docker_env())
    result = cell.careen_update()
    assert result.returncode == 1, result.stderr
    assert f"{cell.server}/{cell.project}/base:1: registry TLS rejected" in result.stderr
    logs = cell.log_text()
    assert "server gave HTTP response to HTTPS client" in logs
    assert (f'podman: [[registry]] location = "{cell.server}", insecure = true in '
            "registries.conf), then restart the daemon") in logs


def test_docker_login_through_podman_to_an_address_it_does_not_skip_tls_for(
    matrix: Matrix, configured_daemon: LabDaemon, tmp_path: Path,
) -> None:
    """podman's Docker-API login skips TLS for ``localhost`` names only, whatever its
    registries.conf says: a login to ``127.0.0.1:PORT`` over plain HTTP fails, and Careen
    says what the daemon needs."""
    cell = _cell(matrix, tmp_path, "plain", "htpasswd", "docker",
                 matrix.lab.docker_env_for(configured_daemon),
                 server=matrix.registries["plain", "htpasswd"].host)
    result = cell.careen_update()
    assert result.returncode == 3, result.stderr
    assert f"registry at {cell.server}: login failed: " in result.stderr
    assert "server gave HTTP response to HTTPS client" in result.stderr
    assert f"the docker daemon does not trust {cell.server} over TLS" in result.stderr
    port = cell.server.rpartition(":")[2]
    assert ("podman's Docker API logs in over plain HTTP or an unverified certificate only to "
            "a localhost:PORT name, whatever its registries.conf says: set [registry] server = "
            f'"localhost:{port}"') in result.stderr
    assert matrix.lab.password().get_secret_value() not in result.stderr
