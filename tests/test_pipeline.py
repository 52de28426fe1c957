"""The dvc pipeline (dvc.yaml + params.yaml) reproduces the loop in a fresh workspace."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_dvc_repro_runs_the_loop_and_reports_metrics(tmp_path: Path) -> None:
    dvc = Path(sys.executable).parent / "dvc"
    if not dvc.exists():
        pytest.skip("dvc is not installed (pip install -e '.[test]')")
    shutil.copy(ROOT / "dvc.yaml", tmp_path / "dvc.yaml")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["synth"].update(tracks=4, minutes=0.75)
    params["held_out"].update(tracks=1)
    params["fit"].update(folds=2, epochs=3)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], tmp_path)
    _run([str(dvc), "init", "-q"], tmp_path)
    _run([str(dvc), "repro"], tmp_path)
    outputs = ("data/annotations", "data/store.zarr", "models/heads", "reports/audit.csv")
    for stage_output in outputs:
        assert (tmp_path / stage_output).exists(), stage_output
    evaluation = json.loads((tmp_path / "reports/evaluation.json").read_text())
    # A 3-epoch model is not meant to be good: this checks the plumbing, not the accuracy.
    assert 0.0 <= evaluation["reports/predictions"]["beat_f"] <= 1.0
    shown = _run([str(dvc), "metrics", "show", "--json"], tmp_path).stdout
    assert "beat_f" in shown
    # Nothing changed: a second repro runs no stage.
    again = _run([str(dvc), "repro"], tmp_path).stdout
    assert "didn't change" in again or "up to date" in again
