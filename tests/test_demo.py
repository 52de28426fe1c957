"""`edm demo --fast`: the whole loop runs from the CLI and its report holds real numbers."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from edm.cli import main
from edm.data.rekordbox import read_rekordbox_xml


def test_fast_demo_runs_every_step_and_scores_against_truth(tmp_path: Path) -> None:
    workspace = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", str(workspace), "--fast", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads((workspace / "reports" / "demo.json").read_text())
    steps = [step["name"] for step in report["steps"]]
    assert steps == ["synth", "import", "embed", "fit-heads", "label-audit", "analyze", "evaluate"]
    # The shipped default model finds the beat grid of unseen synthetic tracks.
    assert report["evaluation"]["default"]["beat_f"] > 0.9
    assert report["evaluation"]["fitted"]["beat_f"] is not None
    # The audit ran against the planted errors and found some of them.
    assert report["audit"]["injected"] > 0
    assert report["audit"]["findings"] > 0
    assert Path(report["plot"]).stat().st_size > 10_000
    written = read_rekordbox_xml(report["rekordbox_xml"], hash_audio=False)
    assert len(written.tracks) == 1 and written.tracks[0].grid
    assert len(written.tracks[0].cues) >= 1


def test_demo_rejects_a_library_too_small_to_fold(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["demo", str(tmp_path), "--tracks", "2"])
    assert result.exit_code == 2
    assert "at least 4" in result.output
