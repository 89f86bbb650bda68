"""The Dockerfile tree under version control: bring it up to date, and say which commit it is.

The seed's Jenkins job checked the Dockerfiles out before building. Careen does it itself when
``[tree] git`` is set (:func:`sync_tree`), and in every case records the commit it builds from
(:func:`describe_tree`): it goes into each image's ``org.opencontainers.image.revision`` label
and into the run's state. A tree with uncommitted changes is refused (:func:`require_clean`)
unless the user says ``--allow-dirty``, because the label would then name a commit that did not
build the image.

How :func:`sync_tree` treats the root folder:

* missing or empty: ``git clone [--branch B] --single-branch -- URL ROOT``;
* a clone of the same URL: ``git fetch origin B`` then ``git merge --ff-only origin/B``. Never a
  reset: local commits are the user's work, so a clone that has diverged from upstream is an
  error that says so, and the user decides;
* a clone of another URL, or a folder that is not empty and not a clone: an error, never an
  overwrite.

Git runs through argument lists only, with ``GIT_TERMINAL_PROMPT=0``, no controlling terminal
(an ssh password prompt cannot hang a nightly job), ``LC_ALL=C`` (its messages are parsed) and
a timeout that ends git and every helper it started. A URL may carry credentials
(``https://user:token@host/...``) for git's sake; they are stripped from every message, error
and :class:`TreeRevision`.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from careen.errors import CareenError, ServiceError, UsageError
from careen.events import Observer

#: A clone or a fetch of a big tree over a slow link: generous, but a dead server must not
#: stall the nightly job forever.
NETWORK_TIMEOUT_SECONDS = 600.0
#: Commands that only read the local repository.
LOCAL_TIMEOUT_SECONDS = 60.0
#: How many uncommitted files a :class:`TreeRevision` keeps by name.
DIRTY_FILES_KEPT = 20
#: How many of them an error message names.
DIRTY_FILES_SHOWN = 5
REMOTE = "origin"

#: SHA-1 object names, and SHA-256 ones for repositories made with ``--object-format=sha256``.
_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
#: ``scheme://userinfo@`` anywhere in a text (a URL, or git's message quoting one).
_URL_USERINFO = re.compile(
    r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#'\" \t\r\n]*@)")
#: Variables that would point git at another repository than the one given with ``-C``.
_GIT_LOCATION_VARIABLES = frozenset({
    "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX",
})
#: A secret shorter than this is not searched for inside messages (it would match ordinary
#: words); it is still removed wherever it sits in a URL's userinfo.
_SHORTEST_SCRUBBED_SECRET = 4


def redact_url(url: str) -> str:
    """``url`` without the credentials of its userinfo (``https://u:t@h/x`` -> ``https://h/x``).

    scp-like addresses (``git@host:path``) are kept: their user name is an account, not a secret.
    """
    return _URL_USERINFO.sub(lambda match: match["scheme"], url)


@dataclass(frozen=True)
class TreeRevision:
    """Which commit a Dockerfile tree is at, and whether its files are that commit's."""

    #: The commit checked out (40 hex digits); None outside git or before the first commit.
    commit: str | None
    #: The branch checked out; None when HEAD is detached or outside git.
    branch: str | None
    #: Files under the root differ from the commit (untracked ones count, ignored ones do not).
    dirty: bool
    #: The first :data:`DIRTY_FILES_KEPT` of them, relative to the repository's top.
    dirty_files: tuple[str, ...]
    #: Where ``origin`` points, without credentials.
    remote_url: str | None
    is_git: bool
    #: How many files differ in all (``dirty_files`` may name only some of them).
    dirty_count: int = 0

    def __post_init__(self) -> None:
        if self.commit is not None and not _COMMIT.fullmatch(self.commit):
            raise ValueError(f"not a full commit name: {self.commit!r}")
        if self.remote_url is not None:
            # A revision goes into labels and state files: never let credentials in, whoever
            # builds it.
            object.__setattr__(self, "remote_url", redact_url(self.remote_url))
        if self.dirty_count < len(self.dirty_files):
            object.__setattr__(self, "dirty_count", len(self.dirty_files))

    @classmethod
    def not_git(cls) -> TreeRevision:
        return cls(commit=None, branch=None, dirty=False, dirty_files=(), remote_url=None,
                   is_git=False)

    @property
    def short_commit(self) -> str | None:
        return self.commit[:12] if self.commit else None

    def oci_labels(self) -> dict[str, str]:
        """The OCI annotations this revision gives every image built from the tree."""
        labels: dict[str, str] = {}
        if self.commit is not None:
            labels["org.opencontainers.image.revision"] = self.commit
        if self.remote_url is not None:
            labels["org.opencontainers.image.source"] = self.remote_url
        return labels


def describe_tree(root: Path, *, timeout: float = LOCAL_TIMEOUT_SECONDS) -> TreeRevision:
    """The revision of the tree at ``root``. Reads the local repository only (no network).

    A folder outside any git work tree (or a missing one) gives ``is_git=False``. A folder
    inside a larger repository describes that repository's commit; only changes under
    ``root`` count as dirty, since only they are built.
    """
    git = shutil.which("git")
    if not root.is_dir():
        return TreeRevision.not_git()
    if git is None:
        if _inside_git_work_tree(root):
            raise _git_missing()
        return TreeRevision.not_git()
    runner = _GitRunner(git, root=root, timeout=timeout, scrub=_Scrubber())
    top = runner.run("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        if "not a git repository" in top.stderr:
            return TreeRevision.not_git()
        raise UsageError(f"{root}: git cannot read this tree: {runner.last_line(top)}")
    head = runner.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    branch = runner.run("symbolic-ref", "--quiet", "--short", "HEAD")
    remote = runner.run("config", "--get", f"remote.{REMOTE}.url")
    status = runner.run("status", "--porcelain=v1", "-z", "--untracked-files=normal", "--", ".")
    if status.returncode != 0:
        raise UsageError(f"{root}: git status failed: {runner.last_line(status)}")
    changed = _parse_porcelain(status.stdout)
    return TreeRevision(
        commit=head.stdout.strip() if head.returncode == 0 else None,
        branch=branch.stdout.strip() if branch.returncode == 0 else None,
        dirty=bool(changed),
        dirty_files=tuple(changed[:DIRTY_FILES_KEPT]),
        remote_url=remote.stdout.strip() if remote.returncode == 0 else None,
        is_git=True,
        dirty_count=len(changed),
    )


def sync_tree(
    root: Path, *, url: str, branch: str | None, observer: Observer,
    timeout: float = NETWORK_TIMEOUT_SECONDS,
) -> TreeRevision:
    """Clone ``url`` into ``root``, or fast-forward the clone already there; describe the result.

    ``branch`` None means the remote's default branch for a new clone, and the branch checked
    out for an existing one. ``timeout`` bounds each git command (the clone, the fetch...).

    Raises :class:`UsageError` for a root that is not (or not a clone of) ``url``, a clone on
    another branch, a clone that cannot fast-forward, or a branch the remote does not have;
    :class:`ServiceError` when git is missing, the remote cannot be reached or refuses us, or a
    git command runs out of time.
    """
    scrub = _Scrubber(url)
    shown_url = redact_url(url)
    _check_url(url, shown_url)
    git = shutil.which("git")
    if git is None:
        raise _git_missing()
    runner = _GitRunner(git, root=root, timeout=timeout, scrub=scrub)
    if branch is not None:
        _check_branch(runner, branch)
    if root.exists() and not root.is_dir():
        raise UsageError(f"[tree] root {root} is a file, not a folder to clone {shown_url} into",
                         hint="set [tree] root to a folder")
    if not root.exists() or _is_empty(root):
        _clone(runner, url=url, shown_url=shown_url, branch=branch, observer=observer)
    else:
        _fast_forward(runner, url=url, shown_url=shown_url, branch=branch, observer=observer)
    revision = describe_tree(root, timeout=timeout)
    where = f"branch {revision.branch}" if revision.branch else "detached HEAD"
    observer.info(f"Dockerfile tree {root} at commit {revision.short_commit} ({where})")
    return revision


def require_clean(revision: TreeRevision, *, allow_dirty: bool) -> None:
    """Refuse a tree whose files are not its commit's, unless the user allowed it."""
    if not revision.dirty or allow_dirty:
        return
    shown = revision.dirty_files[:DIRTY_FILES_SHOWN]
    names = ", ".join(shown)
    more = revision.dirty_count - len(shown)
    if more > 0:
        names += f" and {more} more"
    at = f" at commit {revision.short_commit}" if revision.commit else ""
    raise UsageError(
        f"the Dockerfile tree{at} has uncommitted changes: {names}",
        hint="commit or remove them (git status shows them all), or pass --allow-dirty to "
             "build from them anyway; the images' revision label will then name a commit that "
             "did not build them",
    )


# -- the steps of sync_tree ------------------------------------------------------------------


def _clone(
    runner: _GitRunner, *, url: str, shown_url: str, branch: str | None, observer: Observer,
) -> None:
    root = runner.root
    which = f"branch {branch}" if branch else "default branch"
    observer.info(f"Cloning {shown_url} ({which}) into {root}")
    choice = ["--branch", branch] if branch else []
    result = runner.run("clone", "--single-branch", *choice, "--", url, str(root),
                        in_root=False, host=shown_url)
    if result.returncode != 0:
        raise _transfer_error(runner, result, action="clone", shown_url=shown_url, branch=branch)


def _fast_forward(
    runner: _GitRunner, *, url: str, shown_url: str, branch: str | None, observer: Observer,
) -> None:
    root = runner.root
    refuse_hint = ("empty or remove the folder so that Careen clones it, or point [tree] root "
                   "at another folder")
    top = runner.run("rev-parse", "--show-toplevel")
    if top.returncode != 0:
        if "not a git repository" in top.stderr:
            raise UsageError(
                f"[tree] root {root} is not empty and is not a git clone; Careen will not clone "
                f"{shown_url} over it", hint=refuse_hint)
        raise UsageError(f"{root}: git cannot read this tree: {runner.last_line(top)}")
    top_level = Path(top.stdout.strip())
    if top_level.resolve() != root.resolve():
        raise UsageError(
            f"[tree] root {root} is inside the git tree at {top_level}, not a clone of "
            f"{shown_url}", hint=refuse_hint)
    origin = runner.run("config", "--get", f"remote.{REMOTE}.url")
    if origin.returncode != 0:
        raise UsageError(f"[tree] root {root} is a git tree without an {REMOTE!r} remote, not a "
                         f"clone of {shown_url}", hint=refuse_hint)
    origin_url = origin.stdout.strip()
    if not _same_remote(origin_url, url):
        raise UsageError(
            f"[tree] root {root} is a clone of {redact_url(origin_url)}, not of {shown_url}",
            hint=f"{refuse_hint}, or set [tree] git to the clone's URL")
    if origin_url != url:
        # Same repository, other spelling or other credentials (a rotated token): fetch with
        # what the config says now.
        runner.check("remote", "set-url", "--", REMOTE, url)
    current = runner.run("symbolic-ref", "--quiet", "--short", "HEAD")
    checked_out = current.stdout.strip() if current.returncode == 0 else None
    if branch is None:
        if checked_out is None:
            raise UsageError(f"the clone at {root} has a detached HEAD: which branch to update?",
                             hint="set [tree] branch, or check a branch out in the clone")
        branch = checked_out
    elif checked_out != branch:
        raise UsageError(
            f"the clone at {root} has {checked_out or 'a detached HEAD'} checked out, but "
            f"[tree] branch is {branch!r}",
            hint=f"run 'git -C {root} switch {branch}' or remove the folder to clone it again")
    observer.info(f"Fetching {shown_url} (branch {branch}) into {root}")
    tracking = f"refs/remotes/{REMOTE}/{branch}"
    fetched = runner.run("fetch", "--", REMOTE, f"+refs/heads/{branch}:{tracking}",
                         host=shown_url)
    if fetched.returncode != 0:
        raise _transfer_error(runner, fetched, action="fetch", shown_url=shown_url,
                              branch=branch)
    local = runner.commit_of("HEAD")
    upstream = runner.commit_of(tracking)
    if upstream is None:
        raise ServiceError("git", shown_url, f"the fetch of branch {branch} gave no commit")
    if local == upstream:
        observer.info(f"{root} is up to date with {REMOTE}/{branch}")
        return
    if local is None or runner.is_ancestor(local, upstream):
        merged = runner.run("merge", "--ff-only", "--quiet", tracking)
        if merged.returncode != 0:
            raise UsageError(
                f"cannot fast-forward the clone at {root} to {REMOTE}/{branch}: "
                f"{runner.last_line(merged)}",
                hint="commit or remove the local changes in the way, then run again")
        observer.info(f"Fast-forwarded {root} from {(local or 'nothing')[:12]} to "
                      f"{upstream[:12]}")
        return
    if runner.is_ancestor(upstream, local):
        observer.warning(f"the clone at {root} has commits that {REMOTE}/{branch} does not have; "
                         f"building from {local[:12]}")
        return
    raise UsageError(
        f"the clone at {root} has diverged from {REMOTE}/{branch} ({shown_url}): local commit "
        f"{local[:12]}, upstream {upstream[:12]}; it cannot be fast-forwarded and Careen never "
        f"resets a clone",
        hint=f"push or drop the local commits (git -C {root} log {REMOTE}/{branch}..HEAD shows "
             f"them), or remove the folder to clone it again")


def _transfer_error(
    runner: _GitRunner, result: _GitResult, *, action: str, shown_url: str, branch: str | None,
) -> CareenError:
    if branch is not None and (
        re.search(r"Remote branch .* not found", result.stderr)
        or "couldn't find remote ref" in result.stderr
    ):
        return UsageError(f"{shown_url} has no branch {branch!r}",
                          hint="check [tree] branch (or leave it out for the default branch)")
    return ServiceError(
        "git", shown_url, f"{action} failed: {runner.last_line(result)}",
        hint="check the URL, the network and the credentials (a token in the URL, a git "
             "credential helper or an ssh key); git never prompts for a password here",
    )


def _check_url(url: str, shown_url: str) -> None:
    if not url.strip():
        raise UsageError("[tree] git is empty", hint="give the URL of the Dockerfile repository")
    if url != url.strip() or any(ord(char) < 32 or ord(char) == 127 for char in url):
        raise UsageError(f"[tree] git {shown_url!r} has spaces around it or control characters",
                         hint="give the URL alone")
    if url.startswith("-"):
        raise UsageError(f"[tree] git {shown_url!r} is not a URL (it starts with '-')")


def _check_branch(runner: _GitRunner, branch: str) -> None:
    valid = not branch.startswith("-") and runner.run(
        "check-ref-format", f"refs/heads/{branch}", in_root=False).returncode == 0
    if not valid:
        raise UsageError(f"[tree] branch {branch!r} is not a valid git branch name",
                         hint="give a branch name such as main")


def _same_remote(first: str, second: str) -> bool:
    return _comparable_url(first) == _comparable_url(second)


def _comparable_url(url: str) -> str:
    """What is left of a URL once spellings that name the same repository are made equal."""
    text = redact_url(url.strip())
    if text.startswith("file://"):
        text = text.removeprefix("file://")
    else:
        match = re.match(r"([A-Za-z][A-Za-z0-9+.-]*://)([^/]*)", text)
        if match:
            text = match[1].lower() + match[2].lower() + text[match.end():]
    text = text.rstrip("/")
    return text.removesuffix(".git").rstrip("/")


def _is_empty(folder: Path) -> bool:
    try:
        return next(folder.iterdir(), None) is None
    except OSError as error:
        raise UsageError(f"[tree] root {folder} cannot be read: {error.strerror}") from error


def _inside_git_work_tree(folder: Path) -> bool:
    return any((place / ".git").exists() for place in (folder.resolve(), *folder.resolve().parents))


def _git_missing() -> ServiceError:
    return ServiceError("git", "PATH", "the git command is not installed",
                        hint="install git (apt-get install git), or leave [tree] git unset")


def _parse_porcelain(output: str) -> list[str]:
    """Paths of ``git status --porcelain=v1 -z``: ``XY PATH\\0``, renames add ``\\0OLD``."""
    entries = output.split("\0")
    paths: list[str] = []
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        paths.append(entry[3:])
        if entry[0] in "RC":
            index += 1  # the rename's or copy's source path
    return paths


# -- running git -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _GitResult:
    returncode: int
    stdout: str
    stderr: str


class _Scrubber:
    """Removes the credentials of the URLs it was given from any text."""

    def __init__(self, *urls: str) -> None:
        secrets: set[str] = set()
        for url in urls:
            match = _URL_USERINFO.search(url)
            if match is None:
                continue
            userinfo = match["userinfo"][:-1]
            _user, colon, password = userinfo.partition(":")
            found = {userinfo, password} if colon else {userinfo}
            secrets |= found | {unquote(secret) for secret in found}
        self._secrets = sorted(
            (secret for secret in secrets if len(secret) >= _SHORTEST_SCRUBBED_SECRET),
            key=len, reverse=True)

    def __call__(self, text: str) -> str:
        text = redact_url(text)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text


class _GitRunner:
    """Runs ``git -C ROOT ...`` safely: no prompt, no terminal, a timeout, scrubbed messages."""

    def __init__(self, git: str, *, root: Path, timeout: float,
                 scrub: Callable[[str], str]) -> None:
        self.git = git
        self.root = root
        self.timeout = timeout
        self.scrub = scrub

    def run(self, *args: str, in_root: bool = True, host: str | None = None) -> _GitResult:
        """``git [-C ROOT] ARGS``; ``host`` names the remote in errors (default: the root)."""
        where = host if host is not None else str(self.root)
        argv = [self.git, *(["-C", str(self.root)] if in_root else []), *args]
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                env=_git_environment(),
                # A session of its own: no controlling terminal for ssh to ask a password on,
                # and one process group to end on a timeout (git's helpers included).
                start_new_session=True,
            )
        except FileNotFoundError as error:
            raise _git_missing() from error
        except OSError as error:
            raise ServiceError("git", where, f"git cannot start: {error.strerror}") from error
        try:
            stdout, stderr = process.communicate(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            _end(process)
            raise ServiceError(
                "git", where, f"git {args[0]} did not finish within {self.timeout:g} s",
                hint="check that the git server answers; a slow link needs a longer timeout",
            ) from None
        except BaseException:
            _end(process)
            raise
        return _GitResult(process.returncode, stdout.decode("utf-8", "replace"),
                          stderr.decode("utf-8", "replace"))

    def check(self, *args: str) -> _GitResult:
        result = self.run(*args)
        if result.returncode != 0:
            raise UsageError(f"{self.root}: git {args[0]} failed: {self.last_line(result)}")
        return result

    def commit_of(self, name: str) -> str | None:
        result = self.run("rev-parse", "--verify", "--quiet", f"{name}^{{commit}}")
        return result.stdout.strip() if result.returncode == 0 else None

    def is_ancestor(self, older: str, newer: str) -> bool:
        return self.run("merge-base", "--is-ancestor", older, newer).returncode == 0

    def last_line(self, result: _GitResult) -> str:
        """git's last word on a failure (its last non-empty stderr line), credentials removed."""
        lines = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        meaningful = [line for line in lines if not line.startswith("hint:")] or lines
        text = meaningful[-1] if meaningful else f"git ended with status {result.returncode}"
        return self.scrub(text)


def _git_environment() -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items()
                   if name not in _GIT_LOCATION_VARIABLES}
    environment.update({
        "GIT_TERMINAL_PROMPT": "0",  # git's own username/password prompt
        "GCM_INTERACTIVE": "never",  # Git Credential Manager's dialogs
        "LC_ALL": "C",  # messages are matched in English
        "LANGUAGE": "C",
    })
    return environment


def _end(process: subprocess.Popen[bytes]) -> None:
    """Kill git and everything it started (ssh, git-remote-https), then collect it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    try:
        process.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        # A helper that left the group still holds the pipes: do not wait for it.
        process.kill()
        process.wait()
