"""Applying audit fixes: corrected annotations, versions kept, CLI report → accept → apply."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

from edm.audit.corrections import (
    HISTORY_DIR,
    apply_fixes,
    apply_to_directory,
    read_fixes_csv,
)
from edm.audit.findings import Finding
from edm.audit.run import audit_library
from edm.audit.simulate import PLANTABLE_KINDS, activations_for, plant, truth_track
from edm.cli import main
from edm.data.rekordbox import read_rekordbox_xml
from edm.data.schema import (
    Tier,
    annotation_filename,
    load_annotation,
    load_annotations,
    save_annotation,
)


@pytest.mark.parametrize(
    "kind",
    PLANTABLE_KINDS,
)
def test_accepting_the_top_finding_restores_the_truth(kind):
    truth = truth_track("t1", duration_s=90.0, phrase_bars=8)
    noisy, _ = plant(truth, kind, np.random.default_rng(1))
    result = audit_library([noisy], {truth.track_id: activations_for(truth)})
    fixed = apply_fixes(noisy, result.findings[:1])
    np.testing.assert_allclose(fixed.beats(), truth.beats(), atol=0.004)
    np.testing.assert_allclose(fixed.downbeats(), truth.downbeats(), atol=0.004)
    np.testing.assert_allclose(
        [c.start_s for c in fixed.cues], [c.start_s for c in truth.cues], atol=0.004
    )
    assert fixed.metadata.version == 2
    assert fixed.metadata.confidence >= 0.9
    assert kind.split("_")[0] in fixed.metadata.provenance["audit_v2"]


def _library(tmp_path, n=4):
    folder = tmp_path / "annotations"
    truths = [truth_track(f"trk{i}", duration_s=60.0, phrase_bars=8) for i in range(n)]
    noisy, _ = plant(truths[0], "cue_moved_beat", np.random.default_rng(0))
    for annotation in [noisy, *truths[1:]]:
        save_annotation(annotation, folder / annotation_filename(annotation))
    return folder, truths, noisy


def test_apply_keeps_old_version_and_promotes(tmp_path):
    folder, truths, noisy = _library(tmp_path)
    moved = next(c.start_s for c in noisy.cues if c not in truths[0].cues)
    correct = next(c.start_s for c in truths[0].cues if c not in noisy.cues)
    finding = Finding(noisy.track_id, moved, "cue_moved_beat", 0.9, {"move_to_s": correct})
    summary = apply_to_directory(
        folder, [finding, Finding("nope", 1.0, "cue_extra", 0.9, {"delete": True})], promote=True
    )
    assert summary.tracks_changed == [noisy.track_id]
    assert summary.problems == [f"{folder}: no annotation for track nope"]
    path = folder / annotation_filename(noisy)
    fixed = load_annotation(path)
    assert fixed.metadata.tier == Tier.VERIFIED and fixed.metadata.version == 2
    assert [c.start_s for c in fixed.cues] == pytest.approx([c.start_s for c in truths[0].cues])
    old = load_annotation(folder / HISTORY_DIR / f"{path.stem}.v1.yaml")
    assert old == noisy
    annotations, errors = load_annotations(folder)
    assert len(annotations) == 4 and not errors  # history is not read as a fifth track


def test_fix_for_a_cue_that_is_not_there_is_reported(tmp_path):
    folder, _, noisy = _library(tmp_path, n=1)
    bad = Finding(noisy.track_id, 33.333, "cue_extra", 0.9, {"delete": True})
    summary = apply_to_directory(folder, [bad])
    assert summary.tracks_changed == []
    assert (
        "no cue at 33.333 s" in summary.problems[0]
        and annotation_filename(noisy) in summary.problems[0]
    )


def test_cli_report_then_apply_accepted_rows(tmp_path):
    folder, truths, noisy = _library(tmp_path)
    (folder / "broken.yaml").write_text("track: [unclosed\n")
    out = tmp_path / "reports" / "audit.csv"
    runner = CliRunner()
    result = runner.invoke(
        main, ["label-audit", "--annotations", str(folder), "--out", str(out), "--json"]
    )
    assert result.exit_code == 1  # the broken file is reported, the rest audited
    report = json.loads(result.stdout)
    assert "broken.yaml" in report["summary"]["problems"][0]
    assert report["findings"][0]["kind"] == "cue_moved_beat"
    assert report["findings"][0]["track_id"] == noisy.track_id
    (folder / "broken.yaml").unlink()
    with out.open() as stream:
        rows = list(csv.DictReader(stream))
    rows[0]["accept"] = "1"
    with out.open("w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    assert len(read_fixes_csv(out)) == 1
    result = runner.invoke(main, ["label-audit", "--annotations", str(folder), "--apply", str(out)])
    assert result.exit_code == 0, result.output
    fixed = load_annotation(folder / annotation_filename(noisy))
    assert [c.start_s for c in fixed.cues] == pytest.approx(
        [c.start_s for c in truths[0].cues], abs=1e-3
    )
    # A second audit finds nothing left to fix.
    result = runner.invoke(
        main, ["label-audit", "--annotations", str(folder), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0 and json.loads(result.stdout)["findings"] == []
    # The fix travels back to Rekordbox.
    xml = tmp_path / "fixed.xml"
    result = runner.invoke(
        main, ["data", "export", str(folder), "--format", "rekordbox", "--out", str(xml)]
    )
    assert result.exit_code == 0, result.output
    back = next(
        t
        for t in read_rekordbox_xml(xml, hash_audio=False).tracks
        if t.track.path and t.track.path.endswith(noisy.track.path)
    )
    assert [c.start_s for c in back.cues] == pytest.approx(
        [c.start_s for c in truths[0].cues], abs=1e-3
    )


def test_cli_accept_above_with_activations_and_plots(tmp_path):
    from edm.heads.artifacts import OOF_FILE, save_oof

    folder, truths, noisy = _library(tmp_path)
    # Out-of-fold probabilities as `edm fit-heads` stores them (simulated, not trained).
    (tmp_path / "models").mkdir()
    save_oof({t.track_id: activations_for(t) for t in truths}, tmp_path / "models" / OOF_FILE)
    out = tmp_path / "audit.csv"
    fixed_dir = tmp_path / "fixed"
    result = CliRunner().invoke(
        main,
        [
            "label-audit",
            "--annotations",
            str(folder),
            "--models",
            str(tmp_path / "models"),
            "--out",
            str(out),
            "--accept-above",
            "0.8",
            "--fixed-out",
            str(fixed_dir),
            "--plot",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["tracks_with_activations"] == 4 and summary["fixes_applied"] == 1
    assert len(list((tmp_path / "audit_plots").glob("*.png"))) == summary["findings"]
    annotations, _ = load_annotations(fixed_dir)
    assert len(annotations) == 4
    fixed = next(a for a in annotations if a.track_id == noisy.track_id)
    assert [c.start_s for c in fixed.cues] == pytest.approx(
        [c.start_s for c in truths[0].cues], abs=1e-3
    )
    assert load_annotation(folder / annotation_filename(noisy)) == noisy  # source untouched


def test_cli_rejects_apply_and_accept_above_together(tmp_path):
    folder, _, _ = _library(tmp_path, n=1)
    csv_path = tmp_path / "x.csv"
    csv_path.write_text("id\n")
    result = CliRunner().invoke(
        main,
        [
            "label-audit",
            "--annotations",
            str(folder),
            "--apply",
            str(csv_path),
            "--accept-above",
            "0.5",
        ],
    )
    assert result.exit_code == 2 and "either --apply or --accept-above" in result.output
