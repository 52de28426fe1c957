"""Evaluation: metrics against hand-computed values; folders and the CLI on small files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edm.cli import main
from edm.data.jams_io import save_jams
from edm.data.schema import EnergyData, Section, TempoSegment, TrackAnnotation, TrackIdentity
from edm.evaluate import (
    beat_continuity,
    beat_tolerant_hit_rate,
    boundary_hit_rate,
    energy_spearman,
    evaluate_folder,
    evaluate_track,
    tempo_accuracy,
)


def annotation(
    bpm: float = 128.0, start_s: float = 0.5, beat_in_bar: int = 1,
    bounds: tuple[float, ...] = (30.5, 60.5, 90.5),
    energy: tuple[float, ...] = (0.3, 0.6, 1.0, 0.4),
    duration_s: float = 120.0,
) -> TrackAnnotation:
    edges = [0.0, *bounds, duration_s]
    sections = [
        Section(start_s=a, end_s=b, energy=EnergyData(overall=e))
        for a, b, e in zip(edges[:-1], edges[1:], energy, strict=True)
    ]
    return TrackAnnotation(
        track=TrackIdentity(duration_s=duration_s, title="t"),
        grid=[TempoSegment(start_s=start_s, bpm=bpm, beat_in_bar=beat_in_bar)],
        sections=sections,
    )


def test_perfect_prediction_scores_one() -> None:
    truth = annotation()
    scores = evaluate_track(truth, truth)
    assert scores.pop("beat_anti_phase") == 0.0
    assert all(value == pytest.approx(1.0) for value in scores.values()), scores


def test_each_error_hits_its_own_metric() -> None:
    truth = annotation()
    # Downbeat one beat late: beats perfect, downbeats all wrong.
    shifted = evaluate_track(truth, annotation(beat_in_bar=2))
    assert shifted["beat_f"] == pytest.approx(1.0) and shifted["downbeat_f"] == 0.0
    # Double tempo: half the estimated beats are wrong (F = 2/3), AMLt accepts the octave.
    double = evaluate_track(truth, annotation(bpm=256.0))
    assert double["beat_f"] == pytest.approx(2 / 3, abs=0.01)
    assert double["beat_cmlt"] == 0.0 and double["beat_amlt"] == pytest.approx(1.0, abs=0.02)
    assert double["tempo_acc1"] == 0.0 and double["tempo_acc2"] == 1.0
    assert double["beat_anti_phase"] == 0.0
    # Half a beat late: no beat within 70 ms, every beat on the off-beat: anti-phase.
    offbeat = evaluate_track(truth, annotation(start_s=0.5 + 30.0 / 128.0))
    assert offbeat["beat_f"] == 0.0 and offbeat["beat_amlt"] == pytest.approx(1.0, abs=0.02)
    assert offbeat["beat_anti_phase"] == 1.0
    # Boundaries 1 s late: miss at 0.5 s, hit at 3 s; half a beat (0.23 s) late hits at 1 beat.
    late = evaluate_track(truth, annotation(bounds=(31.5, 61.5, 91.5)))
    assert late["boundary_f_0.5s"] == 0.0 and late["boundary_f_3s"] == 1.0
    near = evaluate_track(truth, annotation(bounds=(30.73, 60.73, 90.73)))
    assert near["boundary_f_1beat"] == 1.0
    # Energy ranks reversed.
    flipped = evaluate_track(truth, annotation(energy=(1.0, 0.6, 0.3, 0.8)))
    assert flipped["energy_spearman"] == pytest.approx(-1.0)


def test_metric_functions_on_hand_checked_numbers() -> None:
    ref = np.arange(0.0, 60.0, 0.5)
    # Off-beat phase: CMLt 0, AMLt 1.
    scores = beat_continuity(ref, ref + 0.25)
    assert scores["beat_cmlt"] == 0.0 and scores["beat_amlt"] == pytest.approx(1.0, abs=0.02)
    assert tempo_accuracy(128.0, 131.0)["tempo_acc1"] == 1.0
    assert tempo_accuracy(128.0, 134.0)["tempo_acc1"] == 0.0
    # Two of three reference boundaries found, one false alarm: P = R = 2/3.
    f = boundary_hit_rate(np.array([10.0, 20.0, 30.0]), np.array([10.2, 20.1, 40.0]), 50.0,
                          window_s=0.5)
    assert f == pytest.approx(2 / 3)
    assert beat_tolerant_hit_rate(np.array([10.0]), np.array([10.4]), 20.0,
                                  beat_period_s=0.469) == 1.0
    assert math.isnan(energy_spearman(np.array([0.0, 10.0]), np.array([1.0, 2.0]),
                                      np.array([0.0]), np.array([1.0])))


def test_folder_and_cli_compare_two_prediction_sets(tmp_path: Path) -> None:
    truth_dir, good_dir, bad_dir = tmp_path / "truth", tmp_path / "good", tmp_path / "bad"
    good_dir.mkdir()
    bad_dir.mkdir()
    for name, bpm in (("a", 128.0), ("b", 140.0)):
        truth = annotation(bpm=bpm)
        save_jams(truth, truth_dir / f"{name}.jams")
        (good_dir / f"{name}.json").write_text(json.dumps(
            {"format": "edm-analysis", "annotation": truth.model_dump(mode="json")}))
    save_jams(annotation(bpm=64.0), bad_dir / "a.jams")
    (bad_dir / "b.json").write_text("{not json")

    report = evaluate_folder(truth_dir, good_dir)
    assert len(report.per_track) == 2 and report.mean["beat_f"] == pytest.approx(1.0)
    bad = evaluate_folder(truth_dir, bad_dir)
    assert bad.mean["tempo_acc1"] == 0.0 and bad.mean["tempo_acc2"] == 1.0
    assert len(bad.problems) == 1 and "b.json" in bad.problems[0]

    runner = CliRunner()
    ok = runner.invoke(main, ["evaluate", "--truth", str(truth_dir), "--pred", str(good_dir)])
    assert ok.exit_code == 0, ok.output
    assert "beat F" in ok.output and "1.000" in ok.output
    both = runner.invoke(main, ["evaluate", "--truth", str(truth_dir), "--pred", str(good_dir),
                                "--pred", str(bad_dir), "--json"])
    assert both.exit_code == 1
    data = json.loads(both.stdout)
    assert [r["tracks"] for r in data["reports"]] == [2, 1]
    assert data["reports"][1]["mean"]["tempo_acc1"] == 0.0
