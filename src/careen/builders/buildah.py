"""Building with buildah (no daemon).

``buildah --storage-driver vfs bud --isolation chroot --pull-always --no-cache --layers=false
-t IMAGE ... -f DOCKERFILE DIR`` then ``buildah push --digestfile F IMAGE docker://IMAGE``.
vfs storage and chroot isolation make RUN steps work without overlayfs, cgroups or a user
namespace (the machines this runs on have none of them).

Several platforms: ``bud --platform a,b --manifest IMAGE`` collects one image per platform in
a local manifest list, ``buildah manifest push --all`` pushes it. (RUN steps of a foreign
platform need qemu-user emulation on the build machine; only the native platform is tested.)

TLS: the push registry's settings hold for the push *and* for the pulls inside the build
(a child pulls its rebuilt parent from there). For a registry listed in
``insecure_registries`` (or marked so by :meth:`AuthContext.trust`: ``[registry] verify_tls =
false``), ``bud`` and ``push`` get ``--tls-verify=false``; buildah has one such switch per
command, so the build's other pulls (a FROM on another registry) are not verified either.
A private CA (``[registry] ca_bundle``) is given as ``--cert-dir`` (a folder of the auth
context holding ``ca.crt``); it adds to the system's CAs, so other registries still verify.
Without either, ``registries.conf`` and ``/etc/containers/certs.d`` decide, as for any
buildah. A failure to trust the registry ends the log with what to set.

Builds at once (``--jobs N``): buildah holds its storage's lock for most of a build, so two
builds in one storage take as long as one after the other (measured: 2.0 s against 1.8 s for
two small images). With ``storage_slots`` each build and its push use a storage of their own
(``--root``/``--runroot``), taken from a pool for the length of the step: two builds then
take 1.1 s. The cost is disk: each slot keeps its own copy of the base layers.
"""

from __future__ import annotations

import functools
import os
import queue
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from careen.builders.credentials import AuthContext, LoginTool, tls_hint
from careen.builders.interface import (
    BuildRequest,
    BuildResult,
    PushResult,
    build_result,
    push_result,
    with_tls_hint,
)
from careen.builders.process import (
    ProcessResult,
    push_retrying,
    read_tool_output,
    run_logged,
    tool_environment,
)
from careen.errors import ServiceError

CHECK_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class StorageSlot:
    """One buildah storage: ``root`` (images, layers) and ``runroot`` (locks, state)."""

    root: Path
    runroot: Path


def storage_slots(count: int, root: Path, runroot: Path) -> tuple[StorageSlot, ...]:
    """``count`` storages under ``root`` and ``runroot`` (``slot-1``...); none for one job,
    which keeps buildah's own storage."""
    if count < 2:
        return ()
    return tuple(StorageSlot(root / f"slot-{n}", runroot / f"slot-{n}")
                 for n in range(1, count + 1))


def default_slot_folders(environ: Mapping[str, str], home: Path) -> tuple[Path, Path]:
    """Where slot storages live: ``$XDG_CACHE_HOME/careen/buildah`` (kept between nights,
    so base layers are pulled once per slot) and a short run folder under /tmp (buildah's
    run root holds sockets, whose paths must stay short)."""
    cache = environ.get("XDG_CACHE_HOME", "")
    base = Path(cache) if cache and os.path.isabs(cache) else home / ".cache"
    return base / "careen" / "buildah", Path(tempfile.gettempdir()) / f"careen-{os.getuid()}"


class BuildahBuilder:
    """Builds with ``buildah``. ``env`` is added to this process's environment (e.g. the
    lab's ``CONTAINERS_STORAGE_CONF``); ``auth`` supplies the auth file."""

    name = "buildah"

    def __init__(
        self,
        *,
        auth: AuthContext | None = None,
        env: Mapping[str, str] | None = None,
        insecure_registries: Iterable[str] = (),
        storage_driver: str = "vfs",
        isolation: str = "chroot",
        buildah: str = "buildah",
        push_attempts: int = 3,
        retry_wait: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        slots: Sequence[StorageSlot] = (),
    ) -> None:
        self.auth = auth
        self.extra_env = dict(env or {})
        self.insecure_registries = frozenset(insecure_registries)
        self.storage_driver = storage_driver
        self.isolation = isolation
        self.buildah = buildah
        self.push_attempts = push_attempts
        self.retry_wait = retry_wait
        self.sleep = sleep
        self._available = False
        self._free: queue.Queue[StorageSlot] = queue.Queue()
        for slot in slots:
            self._free.put(slot)
        self._slotted = bool(slots)
        self._held: dict[str, StorageSlot] = {}
        self._lock = threading.Lock()

    def env(self) -> dict[str, str]:
        """The tool's environment: this process's (less Careen's secrets), ``env``, and the
        auth context's variables."""
        return tool_environment(self.extra_env, self.auth.env() if self.auth else None)

    def ensure_available(self) -> None:
        """Raise :class:`ServiceError` unless ``buildah`` runs."""
        if self._available:
            return
        try:
            answer = subprocess.run(
                [self.buildah, "version"], env=self.env(), capture_output=True, text=True,
                timeout=CHECK_TIMEOUT_SECONDS, check=False, stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise ServiceError(
                "buildah", "PATH", f"the {self.buildah!r} command is not installed",
                hint="install it (apt-get install -y buildah), or use the docker builder",
            ) from None
        except subprocess.TimeoutExpired:
            raise ServiceError("buildah", "localhost", "'buildah version' hung") from None
        if answer.returncode != 0:
            reason = (answer.stderr.strip().splitlines() or ["failed"])[-1]
            raise ServiceError("buildah", "localhost", f"'buildah version' failed: {reason}")
        self._available = True

    # -- argument lists --------------------------------------------------------------------

    def _global(self, slot: StorageSlot | None = None) -> list[str]:
        argv = [self.buildah, "--storage-driver", self.storage_driver]
        if slot is not None:
            argv += ["--root", str(slot.root), "--runroot", str(slot.runroot)]
        return argv

    def _take_slot(self, request: BuildRequest) -> StorageSlot | None:
        """The storage this step builds in (and later pushes from), or None (the shared
        one). Blocks while every slot is busy."""
        if not self._slotted:
            return None
        slot = self._free.get()
        with self._lock:
            self._held[request.target] = slot
        return slot

    def _slot_of(self, request: BuildRequest) -> StorageSlot | None:
        with self._lock:
            return self._held.get(request.target)

    def _release_slot(self, request: BuildRequest) -> None:
        with self._lock:
            slot = self._held.pop(request.target, None)
        if slot is not None:
            self._free.put(slot)

    def _auth_args(self) -> list[str]:
        authfile = self.auth.authfile if self.auth is not None else None
        return ["--authfile", str(authfile)] if authfile is not None else []

    def _tls_args(self, request: BuildRequest) -> list[str]:
        """TLS settings of the registry ``request`` pushes to (for the build's pulls too)."""
        registry = request.image.registry
        argv = []
        if registry in self.insecure_registries or (
                self.auth is not None and registry in self.auth.insecure_registries):
            argv.append("--tls-verify=false")
        cert_dir = self.auth.cert_dir(registry) if self.auth is not None else None
        if cert_dir is not None:
            argv += ["--cert-dir", str(cert_dir)]
        return argv

    def _with_hint(self, run: ProcessResult, request: BuildRequest) -> ProcessResult:
        return with_tls_hint(run, lambda host: tls_hint(LoginTool.BUILDAH, host),
                             request.image.registry or "")

    def build_argv(self, request: BuildRequest, *, iidfile: Path | None = None,
                   slot: StorageSlot | None = None) -> list[str]:
        argv = [*self._global(slot), "bud", "--isolation", self.isolation]
        if request.pull:
            argv.append("--pull-always")
        if request.no_cache:
            argv += ["--no-cache", "--layers=false"]
        argv += [*self._auth_args(), *self._tls_args(request)]
        if iidfile is not None:
            argv += ["--iidfile", str(iidfile)]
        if request.platforms:
            argv += ["--platform", ",".join(request.platforms)]
        if len(request.platforms) > 1:
            argv += ["--manifest", request.target]
        else:
            argv += ["-t", request.target]
        for key, value in request.build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        for key, value in request.labels.items():
            argv += ["--label", f"{key}={value}"]
        argv += ["-f", str(request.dockerfile_path), str(request.context)]
        return argv

    def push_argv(self, request: BuildRequest, *, digestfile: Path,
                  slot: StorageSlot | None = None, destination: str | None = None) -> list[str]:
        if len(request.platforms) > 1:
            argv = [*self._global(slot), "manifest", "push", "--all"]
        else:
            argv = [*self._global(slot), "push"]
        argv += ["--digestfile", str(digestfile), *self._auth_args(), *self._tls_args(request)]
        argv += [request.target, f"docker://{destination or request.target}"]
        return argv

    # -- Builder ---------------------------------------------------------------------------

    def build(self, request: BuildRequest) -> BuildResult:
        self.ensure_available()
        slot = self._take_slot(request)
        try:
            result = self._build_in(request, slot)
        except BaseException:
            self._release_slot(request)
            raise
        if not result.ok:
            self._release_slot(request)  # no push follows a failed build
        return result

    def _build_in(self, request: BuildRequest, slot: StorageSlot | None) -> BuildResult:
        if len(request.platforms) > 1:
            # --manifest adds to an existing local list: start from an empty one.
            subprocess.run(
                [*self._global(slot), "manifest", "rm", request.target], env=self.env(),
                capture_output=True, check=False, timeout=CHECK_TIMEOUT_SECONDS,
                stdin=subprocess.DEVNULL,
            )
        with tempfile.TemporaryDirectory(prefix="careen-buildah-") as scratch:
            iidfile = Path(scratch) / "iid"
            run = run_logged(self.build_argv(request, iidfile=iidfile, slot=slot),
                             env=self.env(), log_path=request.log_path,
                             timeout=request.timeout)
            image_id = read_tool_output(iidfile)
        return build_result(request, self._with_hint(run, request), image_id)

    def push(self, request: BuildRequest) -> PushResult:
        self.ensure_available()
        slot = self._slot_of(request)
        started = time.monotonic()
        try:
            with tempfile.TemporaryDirectory(prefix="careen-buildah-") as scratch:
                digestfile = Path(scratch) / "digest"
                digest: str | None = None
                # The image's own tag first (its digest is the result), then its other tags.
                for destination in (request.target, *request.extra_targets):
                    argv = self.push_argv(request, digestfile=digestfile, slot=slot,
                                          destination=destination)
                    retrying = push_retrying(attempts=self.push_attempts,
                                             initial_wait=self.retry_wait, sleep=self.sleep)
                    run: ProcessResult = retrying(functools.partial(
                        run_logged, argv, env=self.env(), log_path=request.log_path,
                        timeout=request.push_timeout))
                    attempts = int(retrying.statistics["attempt_number"])
                    if digest is None:
                        digest = read_tool_output(digestfile)
                    if not run.ok:
                        break
        finally:
            self._release_slot(request)
        return push_result(request, self._with_hint(run, request), digest, attempts,
                           time.monotonic() - started)
