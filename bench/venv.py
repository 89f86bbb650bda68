"""The Careen users run: a virtual environment made with ``pip install .`` (no extras, not
editable), which every benchmark measures instead of the development environment.

A development environment carries the test extras and whatever else was installed by hand
(sniffio, for one, which httpcore looks for on every request): figures taken there say how
fast Careen is for its developers, not for its users. The environment is made once per
source tree state (a hash of ``pyproject.toml`` and ``src/``) under ``~/.cache/careen-bench``
and reused while the sources do not change.

    python -m bench.venv            # make (or find) it and print its python
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import venv
from argparse import ArgumentParser, Namespace
from collections.abc import Sequence
from pathlib import Path

__all__ = ["REPO", "describe", "measured_install", "parse_in_user_install", "rerun_in_user_venv",
           "user_python"]

REPO = Path(__file__).resolve().parent.parent


def _source_key(repo: Path) -> str:
    digest = hashlib.sha256()
    files = [repo / "pyproject.toml", *sorted((repo / "src").rglob("*"))]
    for path in files:
        # The development install's egg-info and byte-code are not sources.
        if path.is_file() and not any(part == "__pycache__" or part.endswith(".egg-info")
                                      for part in path.parts):
            digest.update(str(path.relative_to(repo)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "careen-bench"


def user_python(repo: Path = REPO) -> Path:
    """The python of a venv holding ``pip install REPO`` alone; made if missing."""
    folder = _cache_root() / f"venv-{_source_key(repo)}"
    python = folder / "bin" / "python"
    marker = folder / ".installed"
    if marker.exists() and python.exists():
        return python
    print(f"bench: making a user's install: python -m venv {folder} && pip install {repo}",
          file=sys.stderr, flush=True)
    venv.EnvBuilder(with_pip=True, clear=True).create(folder)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    str(repo)], check=True)
    marker.write_text("pip install .\n", encoding="utf-8")
    return python


def describe(python: Path) -> str:
    """One line for a benchmark's output: which install it measured."""
    version = subprocess.run([str(python), "-c", "import careen; print(careen.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()
    return f"careen {version} from a plain 'pip install .' venv ({python.parent.parent})"


def _in_user_venv() -> bool:
    """Whether this interpreter is one of the venvs :func:`user_python` makes."""
    try:
        Path(sys.prefix).resolve().relative_to(_cache_root().resolve())
    except ValueError:
        return False
    return sys.prefix != sys.base_prefix


def parse_in_user_install(parser: ArgumentParser, argv: Sequence[str] | None,
                          module: str) -> Namespace | int:
    """Parse a benchmark's options (``--in-process`` added) and, unless ``--in-process``, run
    the benchmark again in a user's install: the re-run's exit code is returned then. In the
    process that measures, the options come back with ``install`` set to
    :func:`measured_install`, which is also printed."""
    parser.add_argument("--in-process", action="store_true",
                        help="measure this environment (the development one), not a plain "
                             "'pip install .' venv (default: a user's install, made once "
                             "under ~/.cache/careen-bench)")
    args = parser.parse_args(argv)
    if not args.in_process and (code := rerun_in_user_venv(module, argv)) is not None:
        return code
    args.install = measured_install()
    print(f"{time.strftime('%H:%M:%S')} measuring {args.install}", file=sys.stderr, flush=True)
    return args


def rerun_in_user_venv(module: str, argv: Sequence[str] | None) -> int | None:
    """Run ``python -m MODULE ARGV`` again with the python of a user's install and return
    its exit code; ``None`` when this process already runs there.

    The repository's top folder is put on the path for the ``bench`` package only: Careen
    itself lives under ``src/``, so ``import careen`` finds the venv's installed copy, never
    the working tree (nor an editable install of the development environment)."""
    if _in_user_venv():
        return None
    if os.environ.get("CAREEN_BENCH_RERUN"):
        raise SystemExit(f"bench: {sys.executable} was to be a user's venv under "
                         f"{_cache_root()}, and is not")
    python = user_python()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO)
    env["CAREEN_BENCH_RERUN"] = "1"
    args = list(sys.argv[1:] if argv is None else argv)
    return subprocess.run([str(python), "-m", module, *args], env=env, check=False).returncode


def measured_install() -> str:
    """One line for a benchmark's output and report: which Careen this process measures."""
    import careen

    if _in_user_venv():
        return f"careen {careen.__version__} from a plain 'pip install .' venv ({sys.prefix})"
    return (f"careen {careen.__version__} from this process's environment "
            f"({Path(careen.__file__).parent}; --in-process, not a user's install)")


if __name__ == "__main__":
    found = user_python()
    print(found)
    print(describe(found))
