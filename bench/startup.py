"""Start-up benchmark (issue 16): ``careen --version`` and ``careen --help`` against
``python -c "import httpx"``, from what users install.

    python -m bench.startup                        # bench/venv.py's `pip install .`, 20 runs each
    python -m bench.startup --venv /tmp/careen-venv --repeat 30
    python -m bench.startup --quick --importtime   # and the import list of `careen --help`

Careen is measured from a virtual environment made with ``pip install .`` alone (no extras,
not editable): ``--venv DIR`` reuses one (made there first when DIR does not exist), else
:func:`bench.venv.user_python`'s, made once per state of the sources. The output says which
venv it used and whether it is such a plain install (no test extras in it, Careen not installed
editable).

Each command runs ``--repeat`` times, the three interleaved (so a busy moment of a shared
machine weighs on all three alike); the median wall time of each is reported, and the ratio of
each of Careen's to the baseline's. Target: ``careen --version`` and ``careen --help`` at most
3x the wall time of ``python -c "import httpx"``.

``--importtime`` adds the top-level modules ``careen --help`` imports (``python -X
importtime``), with their cumulative import times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.common import (
    add_common_options,
    machine,
    median,
    print_table,
    repeat_of,
    say,
    write_outputs,
)
from bench.venv import user_python

REPO = Path(__file__).resolve().parents[1]
TARGET_RATIO = 3.0
#: Packages only the test extra installs: a plain `pip install .` venv holds none of them.
TEST_ONLY = ("pytest", "jsonschema", "hypothesis", "openapi-schema-validator", "mypy")


def make_venv(folder: Path, source: Path = REPO) -> None:
    """``python3 -m venv FOLDER`` and ``FOLDER/bin/pip install SOURCE`` (no extras)."""
    say(f"making a venv in {folder}: pip install {source}")
    subprocess.run([sys.executable, "-m", "venv", str(folder)], check=True)
    subprocess.run([str(folder / "bin" / "pip"), "install", "--quiet", str(source)],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def describe_venv(folder: Path) -> dict[str, Any]:
    """What the venv holds: Careen's version and how it is installed, the test-only packages
    present. ``plain``: a `pip install .` with no extras, not editable."""
    python = str(folder / "bin" / "python")
    probe = (
        "import importlib.metadata as m, json\n"
        "d = m.distribution('careen')\n"
        "url = d.read_text('direct_url.json')\n"
        "editable = bool(url and json.loads(url).get('dir_info', {}).get('editable'))\n"
        "names = {x.metadata['Name'].lower() for x in m.distributions()}\n"
        f"test_only = sorted(n for n in {list(TEST_ONLY)!r} if n in names)\n"
        "print(json.dumps({'version': d.version, 'editable': editable,"
        " 'test_only': test_only}))\n"
    )
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"path": str(folder), "plain": False,
                "problem": (done.stderr.strip().splitlines() or ["careen not installed"])[-1]}
    found: dict[str, Any] = json.loads(done.stdout)
    found["path"] = str(folder)
    found["plain"] = not found["editable"] and not found["test_only"]
    return found


#: The commands run as a user's would: byte-code caches used (pip writes them at install
#: time), whatever this shell says.
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def wall(argv: Sequence[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env=USER_ENV)
    return time.perf_counter() - started


def measure(folder: Path, repeat: int) -> dict[str, list[float]]:
    """Wall seconds of each command, ``repeat`` rounds of the three in turn (one untimed
    round first: the byte-code caches are written then, as on a user's first run)."""
    bin_ = folder / "bin"
    commands = {
        "python -c 'import httpx'": [str(bin_ / "python"), "-c", "import httpx"],
        "careen --version": [str(bin_ / "careen"), "--version"],
        "careen --help": [str(bin_ / "careen"), "--help"],
    }
    for argv in commands.values():
        wall(argv)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeat):
        for name, argv in commands.items():
            times[name].append(wall(argv))
    return times


def import_list(folder: Path) -> list[tuple[str, float]]:
    """Top-level modules ``careen --help`` imports and their cumulative import time (ms),
    slowest first (``python -X importtime``)."""
    done = subprocess.run([str(folder / "bin" / "python"), "-X", "importtime",
                           str(folder / "bin" / "careen"), "--help"],
                          capture_output=True, text=True, check=True, env=USER_ENV)
    found = []
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "cumulative" in line:
            continue
        _, cumulative, name = line[len("import time:"):].split("|")
        if not name.startswith(" ") or name.startswith("  "):
            continue  # not top-level (indented: imported by another module)
        found.append((name.strip(), int(cumulative) / 1000))
    return sorted(found, key=lambda item: -item[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.startup", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--venv", type=Path, metavar="DIR",
                        help="the venv to measure (made there with `pip install .` when "
                             "missing); default: bench/venv.py's")
    parser.add_argument("--importtime", action="store_true",
                        help="also list the modules `careen --help` imports")
    add_common_options(parser, default_repeat=20)
    args = parser.parse_args(argv)
    repeat = repeat_of(args, 20) if not args.quick or args.repeat else 5
    began = time.monotonic()
    if args.venv is None:
        folder = user_python().parent.parent  # bench/venv.py: made once per source state
    else:
        folder = args.venv
        if not (folder / "bin" / "python").exists():
            make_venv(folder)
    venv = describe_venv(folder)
    say(f"measuring {repeat} runs of each from {folder}")
    times = measure(folder, repeat)
    imports = import_list(folder) if args.importtime else []

    medians = {name: median(values) for name, values in times.items()}
    baseline_name = "python -c 'import httpx'"
    baseline = medians[baseline_name]
    rows = [(name, f"{value:.3f}", f"{value / baseline:.2f}x" if name != baseline_name
             else "1.00x (baseline)", f"{min(times[name]):.3f}", f"{max(times[name]):.3f}")
            for name, value in medians.items()]
    targets = [{
        "target": f"{name} <= {TARGET_RATIO:g}x import httpx",
        "value": f"{medians[name]:.3f} s", "baseline": f"{baseline:.3f} s",
        "threshold": f"{TARGET_RATIO * baseline:.3f} s",
        "met": medians[name] <= TARGET_RATIO * baseline,
        "note": f"{medians[name] / baseline:.2f}x",
    } for name in ("careen --version", "careen --help")]
    kind = ("a plain `pip install .` venv (no extras, not editable)" if venv.get("plain")
            else "NOT a plain `pip install .` venv: " + (
                venv.get("problem") or ("editable install" if venv.get("editable")
                                        else "test extras present: "
                                        + ", ".join(venv.get("test_only", [])))))
    report: dict[str, Any] = {
        "benchmark": "startup", "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(), "venv": venv, "venv_kind": kind, "repeat": repeat,
        "seconds": times, "median_seconds": medians,
        "ratios": {name: value / baseline for name, value in medians.items()},
        "targets": targets, "import_list": imports,
        "duration_seconds": time.monotonic() - began,
    }
    columns = ("Command", "Median wall (s)", "Ratio", "Min (s)", "Max (s)")
    print(f"venv: {folder} ({kind}); careen {venv.get('version', '?')}; "
          f"median of {repeat} runs each")
    print_table("Start-up", columns, rows, report)
    if imports:
        print("careen --help imports (top level, cumulative ms):")
        for name, ms in imports:
            print(f"  {ms:8.1f}  {name}")
    write_outputs(args, report, columns, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
