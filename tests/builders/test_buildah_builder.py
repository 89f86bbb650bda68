from __future__ import annotations

from pathlib import Path

import pytest

from careen.builders.buildah import BuildahBuilder
from careen.builders.credentials import AuthContext
from careen.builders.interface import BuildRequest
from careen.errors import ServiceError
from careen.reference import ImageReference

IMAGE = ImageReference.parse("127.0.0.1:5000/library/httpd:2.4")


def _request(tmp_path: Path, **kwargs: object) -> BuildRequest:
    fields: dict[str, object] = {
        "image": IMAGE, "context": tmp_path / "ctx", "log_path": tmp_path / "httpd.log",
        "build_args": {"REGISTRY": "127.0.0.1:5000"}, "labels": {"careen.run": "r1"},
    }
    fields.update(kwargs)
    return BuildRequest(**fields)  # type: ignore[arg-type]


def _logged_in(folder: Path) -> AuthContext:
    """An auth context a login wrote its file into."""
    folder.mkdir()
    auth = AuthContext(folder)
    auth.config_file.write_text('{"auths": {}}')
    return auth


def test_build_argv(tmp_path: Path) -> None:
    auth = _logged_in(tmp_path / "auth")
    builder = BuildahBuilder(auth=auth)
    assert builder.build_argv(_request(tmp_path), iidfile=tmp_path / "iid") == [
        "buildah", "--storage-driver", "vfs", "bud", "--isolation", "chroot",
        "--pull-always", "--no-cache", "--layers=false",
        "--authfile", str(tmp_path / "auth" / "config.json"),
        "--iidfile", str(tmp_path / "iid"),
        "-t", "127.0.0.1:5000/library/httpd:2.4",
        "--build-arg", "REGISTRY=127.0.0.1:5000",
        "--label", "careen.run=r1",
        "-f", str(tmp_path / "ctx" / "Dockerfile"), str(tmp_path / "ctx"),
    ]


def test_build_argv_cached_without_pull(tmp_path: Path) -> None:
    request = _request(tmp_path, pull=False, no_cache=False, build_args={}, labels={})
    assert BuildahBuilder(storage_driver="overlay").build_argv(request) == [
        "buildah", "--storage-driver", "overlay", "bud", "--isolation", "chroot",
        "-t", "127.0.0.1:5000/library/httpd:2.4",
        "-f", str(tmp_path / "ctx" / "Dockerfile"), str(tmp_path / "ctx"),
    ]


def test_build_argv_multi_platform_uses_a_manifest_list(tmp_path: Path) -> None:
    request = _request(tmp_path, platforms=("linux/amd64", "linux/arm64"), build_args={},
                       labels={})
    argv = BuildahBuilder().build_argv(request)
    assert argv[argv.index("--platform") + 1] == "linux/amd64,linux/arm64"
    assert argv[argv.index("--manifest") + 1] == "127.0.0.1:5000/library/httpd:2.4"
    assert "-t" not in argv


def test_push_argv_turns_tls_off_only_for_insecure_registries(tmp_path: Path) -> None:
    digestfile = tmp_path / "digest"
    secure = BuildahBuilder(insecure_registries={"127.0.0.1:6000"})
    assert secure.push_argv(_request(tmp_path), digestfile=digestfile) == [
        "buildah", "--storage-driver", "vfs", "push", "--digestfile", str(digestfile),
        "127.0.0.1:5000/library/httpd:2.4", "docker://127.0.0.1:5000/library/httpd:2.4",
    ]
    insecure = BuildahBuilder(insecure_registries={"127.0.0.1:5000"},
                              auth=_logged_in(tmp_path / "a"))
    assert insecure.push_argv(_request(tmp_path), digestfile=digestfile) == [
        "buildah", "--storage-driver", "vfs", "push", "--digestfile", str(digestfile),
        "--authfile", str(tmp_path / "a" / "config.json"), "--tls-verify=false",
        "127.0.0.1:5000/library/httpd:2.4", "docker://127.0.0.1:5000/library/httpd:2.4",
    ]


def test_push_argv_multi_platform_pushes_the_whole_list(tmp_path: Path) -> None:
    request = _request(tmp_path, platforms=("linux/amd64", "linux/arm64"))
    assert BuildahBuilder().push_argv(request, digestfile=tmp_path / "d") == [
        "buildah", "--storage-driver", "vfs", "manifest", "push", "--all",
        "--digestfile", str(tmp_path / "d"),
        "127.0.0.1:5000/library/httpd:2.4", "docker://127.0.0.1:5000/library/httpd:2.4",
    ]


def test_missing_buildah_raises_service_error(tmp_path: Path) -> None:
    builder = BuildahBuilder(buildah=str(tmp_path / "no-buildah"))
    with pytest.raises(ServiceError, match="not installed"):
        builder.build(_request(tmp_path))


def test_transient_push_failures_are_retried_then_reported(tmp_path: Path) -> None:
    fake = tmp_path / "buildah"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{tmp_path}/calls"\n'
        '[ "$1" = version ] && exit 0\n'
        "echo 'Error: writing blob: connection reset by peer'; exit 125\n"
    )
    fake.chmod(0o755)
    waits: list[float] = []
    builder = BuildahBuilder(buildah=str(fake), push_attempts=3, sleep=waits.append)
    result = builder.push(_request(tmp_path))
    assert not result.ok
    assert result.attempts == 3 and len(waits) == 2
    assert result.digest is None
    pushes = [c for c in (tmp_path / "calls").read_text().splitlines() if " push " in c]
    assert len(pushes) == 3


def _fake_buildah(tmp_path: Path) -> Path:
    """A ``buildah`` that records the storage root each call used, takes a moment, and
    writes the iid/digest files the builder reads."""
    script = tmp_path / "buildah"
    script.write_text(
        "#!/bin/sh\n"
        "root=shared\n"
        'prev=""\n'
        'for a in "$@"; do\n'
        '  case "$prev" in --root) root="$a";; --iidfile|--digestfile) out="$a";; esac\n'
        '  prev="$a"\n'
        "done\n"
        'case " $* " in *" version "*) exit 0;; esac\n'
        'image=$(echo "$*" | grep -o "library/a[0-9]" | head -n 1)\n'
        f'echo "$root $image start" >> {tmp_path}/calls\n'
        # Long enough that calls sharing a storage would overlap (four threads start at
        # once), short enough that four rounds of two slots stay quick.
        "sleep 0.1\n"
        f'echo "$root $image end" >> {tmp_path}/calls\n'
        'if [ -n "$out" ]; then printf sha256:%064d 1 > "$out"; fi\n'
    )
    script.chmod(0o755)
    return script


def test_parallel_steps_build_and_push_each_in_a_storage_of_their_own(tmp_path: Path) -> None:
    """buildah locks its storage for most of a build: steps at once get separate slots, and
    a step's push uses the storage it was built in."""
    import threading

    from careen.builders.buildah import storage_slots

    slots = storage_slots(2, tmp_path / "root", tmp_path / "run")
    builder = BuildahBuilder(buildah=str(_fake_buildah(tmp_path)), slots=slots)
    requests = [_request(tmp_path, image=ImageReference.parse(f"127.0.0.1:5000/library/a{n}:1"),
                         log_path=tmp_path / f"a{n}.log") for n in range(4)]
    def step(n: int) -> None:
        assert builder.build(requests[n]).ok
        assert builder.push(requests[n]).ok

    threads = [threading.Thread(target=step, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    calls = (tmp_path / "calls").read_text().split("\n")
    used = {line.split()[0] for line in calls if line}
    assert used == {str(slot.root) for slot in slots}
    # Never two calls in one storage at the same time.
    running: dict[str, int] = {}
    storage_of: dict[str, set[str]] = {}
    for line in filter(None, calls):
        root, image, phase = line.split()
        running[root] = running.get(root, 0) + (1 if phase == "start" else -1)
        assert running[root] <= 1
        storage_of.setdefault(image, set()).add(root)
    # Each image was built and pushed in one storage (the push finds what the build made).
    assert sorted(storage_of) == [f"library/a{n}" for n in range(4)]
    assert all(len(roots) == 1 for roots in storage_of.values())
    assert storage_slots(1, tmp_path, tmp_path) == ()
