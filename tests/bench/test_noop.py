from __future__ import annotations

import json
from pathlib import Path

from bench import noop


def test_noop_night_runs_at_a_toy_size(tmp_path: Path) -> None:
    out = tmp_path / "n.json"
    assert noop.main(["--in-process", "--size", "20", "--repeat", "1", "--workdir", str(tmp_path),
                      "--json", str(out)]) == 0
    case = json.loads(out.read_text())["case"]
    assert case["run"]["builds"] == 0 and case["run"]["pushes"] == 0
    assert case["run"]["planned"] == 0
    assert case["run"]["judged"] == case["inventory"]["images"] > 0


def test_the_run_environment_keeps_secrets_out_of_argv(tmp_path: Path) -> None:
    env = noop.careen_env("http://127.0.0.1:1", "admin", "s3cret", tmp_path)
    assert env["CAREEN_HARBOR_PASSWORD"] == "s3cret"
    assert env["CAREEN_TREE_ROOT"] == str(tmp_path)
