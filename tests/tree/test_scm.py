"""careen.tree.scm against real git: local bare repositories stand in for the remote."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from careen.errors import ExitCode, ServiceError, UsageError
from careen.events import RecordingObserver
from careen.tree.scm import (
    DIRTY_FILES_KEPT,
    TreeRevision,
    _parse_porcelain,
    _Scrubber,
    describe_tree,
    redact_url,
    require_clean,
    sync_tree,
)

pytestmark = pytest.mark.skipif(
    subprocess.run(["which", "git"], capture_output=True, check=False).returncode != 0,
    reason="git is not installed",
)

SECRET = "s3cr3t-T0ken"


def isolate_git(base: Path, monkeypatch: pytest.MonkeyPatch, git_template: Path) -> None:
    """No user or system git config, a fixed identity, and no repository above ``base``.
    Repositories are made from ``git_template``, an empty folder: no sample hooks (inert, but
    half the files each test copies from the templates below)."""
    home = base / "home"
    home.mkdir()
    monkeypatch.setenv("GIT_TEMPLATE_DIR", str(git_template))
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(home / ".gitconfig"))
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(base))
    for role in ("AUTHOR", "COMMITTER"):
        monkeypatch.setenv(f"GIT_{role}_NAME", "Careen Test")
        monkeypatch.setenv(f"GIT_{role}_EMAIL", "careen@example.invalid")


@pytest.fixture(scope="module")
def git_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("git-template")


@pytest.fixture(autouse=True)
def isolated_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, git_template: Path) -> None:
    isolate_git(tmp_path, monkeypatch, git_template)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                          check=True).stdout.strip()


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD")


@dataclass
class Upstream:
    """A bare repository (the "remote") and a working clone that pushes to it."""

    bare: Path
    author: Path

    @property
    def url(self) -> str:
        return self.bare.as_uri()

    def commit(self, path: str, content: str, *, branch: str = "main") -> str:
        if git(self.author, "symbolic-ref", "--short", "HEAD") != branch:
            git(self.author, "switch", "--quiet", branch)
        target = self.author / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
        git(self.author, "add", "--", path)
        git(self.author, "commit", "--quiet", "-m", f"change {path}")
        git(self.author, "push", "--quiet", "origin", branch)
        return head(self.author)


def make_upstream(base: Path) -> Upstream:
    bare = base / "remote.git"
    author = base / "author"
    subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(author)], check=True)
    git(author, "remote", "add", "origin", bare.as_uri())
    upstream = Upstream(bare, author)
    upstream.commit("jre/8u191/Dockerfile", "FROM debian:stretch\n")
    return upstream


@dataclass(frozen=True)
class Templates:
    """An upstream and a clone of it made by sync_tree, made once per module and copied for
    each test that needs them (making them runs git a dozen times)."""

    upstream: Upstream
    clone: Path


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory, git_template: Path) -> Templates:
    base = tmp_path_factory.mktemp("scm-templates")
    with pytest.MonkeyPatch.context() as monkeypatch:
        isolate_git(base, monkeypatch, git_template)
        upstream = make_upstream(base / "upstream")
        clone = base / "tree"
        sync_tree(clone, url=upstream.url, branch="main", observer=RecordingObserver())
    return Templates(upstream, clone)


@pytest.fixture
def upstream(tmp_path: Path, templates: Templates) -> Upstream:
    """A copy of the template upstream; its author pushes to the copy's bare repository."""
    shutil.copytree(templates.upstream.bare.parent, tmp_path / "upstream", symlinks=True)
    upstream = Upstream(tmp_path / "upstream" / "remote.git", tmp_path / "upstream" / "author")
    git(upstream.author, "remote", "set-url", "origin", upstream.url)
    return upstream


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder``: size and modification time."""
    return {str(path): (path.lstat().st_size, path.lstat().st_mtime_ns)
            for path in folder.rglob("*")}


@pytest.fixture
def remote(templates: Templates) -> Iterator[Upstream]:
    """The template upstream itself, not a copy: for a test that only clones from it or is
    refused before anything is written (cloning, ``ls-remote``, only read a remote). Checked
    unchanged afterwards."""
    before = snapshot(templates.upstream.bare.parent)
    yield templates.upstream
    assert snapshot(templates.upstream.bare.parent) == before, "the shared upstream changed"


@pytest.fixture
def clone(tmp_path: Path, upstream: Upstream, templates: Templates) -> Path:
    """A copy of the template clone, its remote the test's upstream (as a clone of it is)."""
    root = tmp_path / "tree"
    shutil.copytree(templates.clone, root, symlinks=True)
    git(root, "remote", "set-url", "origin", upstream.url)
    return root


# -- cloning ---------------------------------------------------------------------------------


def test_clone_into_a_missing_root(tmp_path: Path, remote: Upstream) -> None:
    root = tmp_path / "work" / "tree"
    observer = RecordingObserver()

    revision = sync_tree(root, url=remote.url, branch="main", observer=observer)

    assert (root / "jre" / "8u191" / "Dockerfile").read_text() == "FROM debian:stretch\n"
    assert revision == TreeRevision(commit=head(remote.author), branch="main", dirty=False,
                                    dirty_files=(), remote_url=remote.url, is_git=True)
    assert any(message.startswith("Cloning ") for message in observer.of_kind("info"))


def test_clone_into_an_empty_root_takes_the_default_branch(
    tmp_path: Path, remote: Upstream,
) -> None:
    root = tmp_path / "tree"
    root.mkdir()

    revision = sync_tree(root, url=remote.url, branch=None, observer=RecordingObserver())

    assert revision.branch == "main"
    assert revision.commit == head(remote.author)


def test_clone_of_a_named_branch_fetches_that_branch_only(
    tmp_path: Path, upstream: Upstream,
) -> None:
    git(upstream.author, "switch", "--quiet", "-c", "stable")
    stable = upstream.commit("jre/8u192/Dockerfile", "FROM debian:buster\n", branch="stable")
    root = tmp_path / "tree"

    revision = sync_tree(root, url=upstream.url, branch="stable", observer=RecordingObserver())

    assert (revision.commit, revision.branch) == (stable, "stable")
    assert git(root, "branch", "--remotes", "--format=%(refname:short)") == "origin/stable"


def test_a_branch_the_remote_lacks_is_a_usage_error(tmp_path: Path, remote: Upstream) -> None:
    root = tmp_path / "tree"

    with pytest.raises(UsageError, match="no branch 'nope'"):
        sync_tree(root, url=remote.url, branch="nope", observer=RecordingObserver())
    assert not root.exists()


@pytest.mark.parametrize("branch", ["-x", "a..b", "with space", "end.lock", ""])
def test_an_invalid_branch_name_is_refused_before_git_runs(
    tmp_path: Path, remote: Upstream, branch: str,
) -> None:
    with pytest.raises(UsageError, match="not a valid git branch name"):
        sync_tree(tmp_path / "tree", url=remote.url, branch=branch,
                  observer=RecordingObserver())
    assert not (tmp_path / "tree").exists()


@pytest.mark.parametrize("url", ["", "  ", "--upload-pack=touch /tmp/x", "file:///x\nmore"])
def test_a_bad_url_is_refused(tmp_path: Path, url: str) -> None:
    with pytest.raises(UsageError, match=r"\[tree\] git"):
        sync_tree(tmp_path / "tree", url=url, branch=None, observer=RecordingObserver())


def test_an_unreachable_local_remote_is_a_service_error(tmp_path: Path) -> None:
    missing = (tmp_path / "nowhere.git").as_uri()

    with pytest.raises(ServiceError) as caught:
        sync_tree(tmp_path / "tree", url=missing, branch=None, observer=RecordingObserver())
    assert caught.value.exit_code == ExitCode.UNREACHABLE
    assert "clone failed" in str(caught.value)


# -- updating a clone ------------------------------------------------------------------------


def test_a_new_upstream_commit_is_fast_forwarded(clone: Path, upstream: Upstream) -> None:
    before = head(clone)
    newer = upstream.commit("jre/8u201/Dockerfile", "FROM debian:buster\n")
    observer = RecordingObserver()

    revision = sync_tree(clone, url=upstream.url, branch="main", observer=observer)

    assert revision.commit == newer != before
    assert (clone / "jre" / "8u201" / "Dockerfile").exists()
    assert any("Fast-forwarded" in message for message in observer.of_kind("info"))


def test_an_up_to_date_clone_stays_as_it_is(clone: Path, upstream: Upstream) -> None:
    observer = RecordingObserver()

    revision = sync_tree(clone, url=upstream.url, branch=None, observer=observer)

    assert revision.commit == head(upstream.author)
    assert any("up to date" in message for message in observer.of_kind("info"))


@pytest.mark.parametrize("spelling", ["slash", "path"])
def test_another_spelling_of_the_same_url_is_the_same_remote(
    clone: Path, upstream: Upstream, spelling: str,
) -> None:
    newer = upstream.commit("a/1/Dockerfile", "FROM scratch\n")
    url = upstream.url + "/" if spelling == "slash" else str(upstream.bare)

    revision = sync_tree(clone, url=url, branch="main", observer=RecordingObserver())

    assert revision.commit == newer


def test_a_diverged_clone_is_refused_and_never_reset(clone: Path, upstream: Upstream) -> None:
    (clone / "local.txt").write_text("mine\n")
    git(clone, "add", "local.txt")
    git(clone, "commit", "--quiet", "-m", "local work")
    local = head(clone)
    upstream.commit("jre/8u201/Dockerfile", "FROM debian:buster\n")

    with pytest.raises(UsageError, match="diverged") as caught:
        sync_tree(clone, url=upstream.url, branch="main", observer=RecordingObserver())

    assert caught.value.hint is not None and "never resets" in str(caught.value)
    assert head(clone) == local
    assert (clone / "local.txt").read_text() == "mine\n"


def test_a_clone_ahead_of_upstream_is_kept_with_a_warning(
    clone: Path, upstream: Upstream,
) -> None:
    (clone / "local.txt").write_text("mine\n")
    git(clone, "add", "local.txt")
    git(clone, "commit", "--quiet", "-m", "local work")
    observer = RecordingObserver()

    revision = sync_tree(clone, url=upstream.url, branch="main", observer=observer)

    assert revision.commit == head(clone) != head(upstream.author)
    assert any("does not have" in message for message in observer.of_kind("warning"))


def test_local_changes_in_the_way_stop_the_fast_forward(clone: Path, upstream: Upstream) -> None:
    upstream.commit("jre/8u191/Dockerfile", "FROM debian:buster\n")
    (clone / "jre" / "8u191" / "Dockerfile").write_text("FROM local\n")

    with pytest.raises(UsageError, match="cannot fast-forward"):
        sync_tree(clone, url=upstream.url, branch="main", observer=RecordingObserver())
    assert (clone / "jre" / "8u191" / "Dockerfile").read_text() == "FROM local\n"


def test_a_clone_of_another_url_is_refused(
    tmp_path: Path, clone: Path, upstream: Upstream,
) -> None:
    other = make_upstream(tmp_path / "other")
    before = head(clone)

    with pytest.raises(UsageError, match="is a clone of") as caught:
        sync_tree(clone, url=other.url, branch="main", observer=RecordingObserver())

    assert upstream.url in str(caught.value) and other.url in str(caught.value)
    assert head(clone) == before


def test_a_clone_on_another_branch_is_refused(clone: Path, upstream: Upstream) -> None:
    with pytest.raises(UsageError, match="'stable'"):
        sync_tree(clone, url=upstream.url, branch="stable", observer=RecordingObserver())


def test_a_detached_clone_needs_a_branch(clone: Path, upstream: Upstream) -> None:
    git(clone, "switch", "--quiet", "--detach")

    with pytest.raises(UsageError, match="detached HEAD"):
        sync_tree(clone, url=upstream.url, branch=None, observer=RecordingObserver())


def test_a_folder_that_is_not_a_clone_is_never_overwritten(
    tmp_path: Path, remote: Upstream,
) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    (root / "notes.txt").write_text("keep me\n")

    with pytest.raises(UsageError, match="not a git clone"):
        sync_tree(root, url=remote.url, branch="main", observer=RecordingObserver())
    assert [path.name for path in root.iterdir()] == ["notes.txt"]


def test_a_subfolder_of_another_repository_is_not_a_clone(
    tmp_path: Path, upstream: Upstream,
) -> None:
    with pytest.raises(UsageError, match="inside the git tree"):
        sync_tree(upstream.author / "jre", url=upstream.url, branch="main",
                  observer=RecordingObserver())


def test_a_root_that_is_a_file_is_refused(tmp_path: Path, remote: Upstream) -> None:
    root = tmp_path / "tree"
    root.write_text("")

    with pytest.raises(UsageError, match="is a file"):
        sync_tree(root, url=remote.url, branch="main", observer=RecordingObserver())


def test_a_vanished_remote_is_a_service_error(clone: Path, upstream: Upstream) -> None:
    upstream.bare.rename(upstream.bare.with_name("moved.git"))

    with pytest.raises(ServiceError, match="fetch failed") as caught:
        sync_tree(clone, url=upstream.url, branch="main", observer=RecordingObserver())
    assert caught.value.exit_code == ExitCode.UNREACHABLE


# -- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    f"https://user:{SECRET}@127.0.0.1:9/x.git",
    f"https://{SECRET}@127.0.0.1:9/x.git",
    "https://user:s3cr3t%2DT0ken@127.0.0.1:9/x.git",
])
def test_credentials_never_reach_errors_or_events(tmp_path: Path, url: str) -> None:
    observer = RecordingObserver()

    with pytest.raises(ServiceError) as caught:
        sync_tree(tmp_path / "tree", url=url, branch=None, observer=observer, timeout=30)

    error = caught.value
    shown = [str(error), repr(error), error.hint or "", error.host, *error.args,
             *(text for _, text in observer.events)]
    assert not [text for text in shown if SECRET in text or "s3cr3t" in text]
    assert error.exit_code == ExitCode.UNREACHABLE
    assert "https://127.0.0.1:9/x.git" in str(error)


def test_credentials_of_a_wrong_remote_stay_out_of_the_refusal(clone: Path) -> None:
    git(clone, "remote", "set-url", "origin", f"https://bot:{SECRET}@git.example.invalid/a.git")

    with pytest.raises(UsageError) as caught:
        sync_tree(clone, url=f"https://bot:{SECRET}@git.example.invalid/b.git", branch="main",
                  observer=RecordingObserver())

    assert SECRET not in str(caught.value) + (caught.value.hint or "")
    assert "https://git.example.invalid/a.git" in str(caught.value)


def test_the_revision_holds_the_remote_without_credentials(clone: Path) -> None:
    git(clone, "remote", "set-url", "origin", f"https://bot:{SECRET}@git.example.invalid/a.git")

    revision = describe_tree(clone)

    assert revision.remote_url == "https://git.example.invalid/a.git"
    assert SECRET not in repr(revision)


def test_a_revision_built_by_hand_drops_credentials_too() -> None:
    revision = TreeRevision(commit=None, branch=None, dirty=False, dirty_files=(),
                            remote_url=f"https://u:{SECRET}@h/x.git", is_git=True)
    assert revision.remote_url == "https://h/x.git"


@given(
    user=st.text(st.characters(codec="ascii", exclude_characters="/?#@:'\" \t\n\r\x0b\x0c"),
                 max_size=12),
    password=st.text(st.characters(codec="ascii", exclude_characters="/?#@'\" \t\n\r\x0b\x0c"),
                     min_size=4, max_size=24),
    path=st.sampled_from(["", "/", "/team/dockerfiles.git"]),
)
def test_redaction_removes_any_userinfo(user: str, password: str, path: str) -> None:
    url = f"https://{user}:{password}@git.example.com:8443{path}"
    assert redact_url(url) == f"https://git.example.com:8443{path}"
    message = f"fatal: unable to access '{url}': auth failed for {password}"
    assert password not in _Scrubber(url)(message).replace("git.example.com:8443", "")


def test_scp_like_addresses_keep_their_account() -> None:
    address = "git@github.com:acme/dockerfiles.git"
    assert redact_url(address) == address


# -- describing a tree, dirty trees ----------------------------------------------------------


def test_a_folder_outside_git_is_not_a_git_tree(tmp_path: Path) -> None:
    (tmp_path / "jre").mkdir()
    assert describe_tree(tmp_path / "jre") == TreeRevision.not_git()
    assert describe_tree(tmp_path / "missing").is_git is False


def test_a_repository_without_commits_has_no_commit(tmp_path: Path) -> None:
    subprocess.run(["git", "init", "--quiet", "-b", "main", str(tmp_path / "new")], check=True)

    revision = describe_tree(tmp_path / "new")

    assert (revision.is_git, revision.commit, revision.branch, revision.remote_url) == (
        True, None, "main", None)


def test_untracked_and_modified_files_are_dirty_ignored_ones_are_not(clone: Path) -> None:
    (clone / ".gitignore").write_text("*.log\n")
    (clone / "README").write_text("Dockerfiles\n")
    git(clone, "add", ".gitignore", "README")
    git(clone, "commit", "--quiet", "-m", "ignore logs")
    (clone / "build.log").write_text("noise\n")
    assert describe_tree(clone).dirty is False

    (clone / "jre" / "8u191" / "Dockerfile").write_text("FROM changed\n")
    (clone / "new file.txt").write_text("x\n")
    git(clone, "mv", "README", "README.md")
    revision = describe_tree(clone)

    assert revision.dirty is True
    assert sorted(revision.dirty_files) == ["README.md", "jre/8u191/Dockerfile", "new file.txt"]
    assert revision.dirty_count == 3


def test_only_changes_under_the_root_count(upstream: Upstream) -> None:
    (upstream.author / "elsewhere.txt").write_text("x\n")
    revision = describe_tree(upstream.author / "jre")

    assert revision.is_git and revision.commit == head(upstream.author)
    assert revision.dirty is False


def test_many_dirty_files_are_counted_but_only_some_are_kept(clone: Path) -> None:
    for number in range(DIRTY_FILES_KEPT + 5):
        (clone / f"extra-{number:02}.txt").write_text("x\n")

    revision = describe_tree(clone)

    assert len(revision.dirty_files) == DIRTY_FILES_KEPT
    assert revision.dirty_count == DIRTY_FILES_KEPT + 5
    with pytest.raises(UsageError, match=f"and {DIRTY_FILES_KEPT} more") as caught:
        require_clean(revision, allow_dirty=False)
    assert "extra-00.txt" in str(caught.value)


def test_require_clean_refuses_a_dirty_tree_unless_allowed(clone: Path) -> None:
    require_clean(describe_tree(clone), allow_dirty=False)
    (clone / "jre" / "8u191" / "Dockerfile").write_text("FROM changed\n")
    dirty = describe_tree(clone)

    with pytest.raises(UsageError, match="uncommitted changes: jre/8u191/Dockerfile") as caught:
        require_clean(dirty, allow_dirty=False)
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.hint is not None and "--allow-dirty" in caught.value.hint
    require_clean(dirty, allow_dirty=True)


def test_require_clean_accepts_a_tree_outside_git() -> None:
    require_clean(TreeRevision.not_git(), allow_dirty=False)


def test_oci_labels_name_the_commit_and_source(clone: Path, upstream: Upstream) -> None:
    assert describe_tree(clone).oci_labels() == {
        "org.opencontainers.image.revision": head(upstream.author),
        "org.opencontainers.image.source": upstream.url,
    }


def test_a_revision_refuses_a_short_commit() -> None:
    with pytest.raises(ValueError, match="full commit"):
        TreeRevision(commit="abc123", branch=None, dirty=False, dirty_files=(), remote_url=None,
                     is_git=True)


_PATH = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20)


@given(st.lists(st.tuples(st.sampled_from([" M", "??", "A ", "R ", "C ", "MM"]), _PATH, _PATH),
                max_size=8))
def test_porcelain_output_gives_back_every_path(
    entries: list[tuple[str, str, str]],
) -> None:
    output = ""
    for code, path, source in entries:
        output += f"{code} {path}\0" + (f"{source}\0" if code[0] in "RC" else "")

    assert _parse_porcelain(output) == [path for _, path, _ in entries]


# -- git itself misbehaving ------------------------------------------------------------------


@pytest.fixture
def no_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_missing_git_is_a_service_error(tmp_path: Path, no_git: None) -> None:
    with pytest.raises(ServiceError, match="git") as caught:
        sync_tree(tmp_path / "tree", url="file:///x.git", branch=None,
                  observer=RecordingObserver())
    assert caught.value.exit_code == ExitCode.UNREACHABLE


def test_without_git_a_plain_folder_is_still_described(tmp_path: Path, no_git: None) -> None:
    (tmp_path / "plain").mkdir()
    assert describe_tree(tmp_path / "plain").is_git is False


def test_without_git_a_git_tree_cannot_be_described(tmp_path: Path, no_git: None) -> None:
    (tmp_path / "repo" / ".git").mkdir(parents=True)
    with pytest.raises(ServiceError, match="not installed"):
        describe_tree(tmp_path / "repo")


@pytest.fixture
def hanging_git(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A ``git`` that starts a helper and waits for it forever; yields the helper's pid file."""
    bin_dir = tmp_path / "hanging-bin"
    bin_dir.mkdir()
    pid_file = tmp_path / "helper.pid"
    script = bin_dir / "git"
    script.write_text(f"#!/bin/sh\nsleep 300 &\necho $! > '{pid_file}'\nwait\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield pid_file


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def test_a_hanging_git_is_ended_with_its_helpers(tmp_path: Path, hanging_git: Path) -> None:
    # 0.3 s leaves the fake git ample time to start its helper and write the pid file.
    with pytest.raises(ServiceError, match=r"did not finish within 0\.3 s") as caught:
        sync_tree(tmp_path / "tree", url=f"https://bot:{SECRET}@127.0.0.1:9/x.git",
                  branch=None, observer=RecordingObserver(), timeout=0.3)

    assert SECRET not in str(caught.value)
    helper = int(hanging_git.read_text())
    deadline = time.monotonic() + 10  # waits for the kernel to reap, not a speed check
    while _alive(helper) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(helper)
