"""Rekordbox's phrase analysis as labels: training targets, the label audit and evaluation
(issue 16, items 4-5)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from edm.audit.phrase_checks import check_cues_against_phrases
from edm.audit.run import audit_library
from edm.cli import main
from edm.data.jams_io import save_jams
from edm.data.rekordbox_library import read_usb_export
from edm.data.schema import (
    Cue,
    Metadata,
    Section,
    TempoSegment,
    TrackAnnotation,
    TrackIdentity,
    save_annotation,
)
from edm.heads.targets import SECTION_LABELS, make_targets

USB = Path(__file__).parent / "data" / "pyrekordbox" / "export"
FPS = 10.0


def _demo2() -> TrackAnnotation:
    return next(a for a in read_usb_export(USB, hash_audio=False).tracks
                if a.track.title == "Demo Track 2")


def test_phrase_boundaries_are_complete_labels_and_kinds_label_sections() -> None:
    demo = _demo2()  # 128 s, 11 phrases from 0.025 s to the last beat at 128.026 s
    n_frames = int(128 * FPS)
    targets = make_targets(demo, n_frames, FPS)
    starts = [s.start_s for s in demo.sections]
    assert np.flatnonzero(targets.boundary).tolist() == [round(t * FPS) for t in starts]
    # Every frame of the phrases' span is labelled: a frame without a phrase start is a
    # negative with full weight (cues alone would give it 0.1).
    assert (targets.boundary_weight == 1.0).all()
    as_cues = demo.model_copy(update={
        "sections": [], "cues": [Cue(start_s=t) for t in starts],
        "metadata": demo.metadata.model_copy(update={"provenance": {}}),
    })
    pu = make_targets(as_cues, n_frames, FPS)
    assert np.array_equal(pu.boundary, targets.boundary)
    assert np.allclose(sorted(set(pu.boundary_weight.tolist())), [0.1, 1.0])

    # Phrase kinds are section labels: Intro, Bridge, Outro known; verses unknown (-1).
    def label_at(t: float) -> str | None:
        index = int(targets.section[round(t * FPS)])
        return None if index < 0 else SECTION_LABELS[index]

    assert [label_at(t) for t in (5.0, 20.0, 70.0, 82.0, 100.0, 120.0)] == [
        "intro", None, "breakdown", "breakdown", None, "outro"]


def test_phrases_outside_their_span_leave_cues_positive_unlabeled() -> None:
    track = TrackAnnotation(
        track=TrackIdentity(duration_s=100.0), grid=[TempoSegment(start_s=0.0, bpm=120.0)],
        sections=[Section(start_s=20.0, end_s=40.0), Section(start_s=40.0, end_s=60.0)],
        cues=[Cue(start_s=80.0)],
        metadata=Metadata(provenance={"sections_complete": "true"}),
    )
    targets = make_targets(track, 1000, FPS)
    weight = targets.boundary_weight
    assert (weight[200:601] == 1.0).all() and np.allclose([weight[100], weight[700]], 0.1)
    assert weight[800] == 1.0 and targets.boundary[800] == 1.0


def _phrased_track(cues: list[Cue]) -> TrackAnnotation:
    # 120 BPM: a beat is 0.5 s, a bar 2 s; two 32-bar phrases.
    return TrackAnnotation(
        track=TrackIdentity(path="/m/phrased.mp3", duration_s=130.0, title="Phrased",
                            content_hash="c" * 32),
        grid=[TempoSegment(start_s=0.0, bpm=120.0)], cues=cues,
        sections=[Section(start_s=0.0, end_s=64.0, label="intro"),
                  Section(start_s=64.0, end_s=128.0, label="drop")],
        metadata=Metadata(source="rekordbox-xml+rekordbox-usb",
                          provenance={"sections_complete": "true"}),
    )


def test_label_audit_cross_checks_cues_against_phrases() -> None:
    track = _phrased_track([
        Cue(start_s=0.0), Cue(start_s=0.0, kind="hot", slot=0),  # agrees (one label)
        Cue(start_s=64.5, kind="hot", slot=1, name="Drop"),  # a beat late
        Cue(start_s=98.0),  # 17 bars from any phrase start: one source is wrong
        Cue(start_s=70.0),  # 3 bars in: a DJ's own cue inside a phrase, no finding
    ])
    found = check_cues_against_phrases(track)
    assert sorted((f.time_s, f.kind, f.fix.get("move_to_s"), f.score) for f in found) == [
        (64.5, "cue_moved_beat", 64.0, 0.6), (98.0, "cue_extra", None, 0.3)]
    assert all(f.source == "phrases" and "Rekordbox" in f.detail for f in found)
    # In the audit, the phrases' evidence joins the cue heuristics' (noisy-OR, one finding).
    result = audit_library([track], use_cleanlab=False)
    late = next(f for f in result.findings if f.time_s == 64.5)
    assert late.source == "cue+phrases" and late.score > 0.6
    assert {f.time_s for f in result.findings if "phrases" in f.source} == {64.5, 98.0}
    bar_late = _phrased_track([Cue(start_s=66.0)])
    (finding,) = [f for f in audit_library([bar_late], use_cleanlab=False).findings
                  if "phrases" in f.source]
    assert (finding.kind, finding.fix) == ("cue_moved_bar", {"move_to_s": 64.0})
    no_phrases = track.model_copy(update={"metadata": Metadata()})
    assert not [f for f in audit_library([no_phrases], use_cleanlab=False).findings
                if "phrases" in f.source]


def test_evaluate_scores_rekordbox_phrases_beside_predictions(tmp_path: Path) -> None:
    truth_dir, pred_dir, library = tmp_path / "truth", tmp_path / "pred", tmp_path / "library"
    grid = [TempoSegment(start_s=0.0, bpm=120.0)]

    def sections(starts: list[float]) -> list[Section]:
        ends = [*starts[1:], 120.0]
        return [Section(start_s=a, end_s=b) for a, b in zip(starts, ends, strict=True)]

    truth = TrackAnnotation(track=TrackIdentity(path="/audio/house.wav", duration_s=120.0),
                            grid=grid, sections=sections([0.0, 30.0, 60.0, 90.0]))
    save_jams(truth, truth_dir / "house.jams")
    edm = truth.model_copy(update={"sections": sections([0.0, 30.1, 60.2, 89.9])})
    save_annotation(edm, pred_dir / "house.yaml")
    # Rekordbox's phrases of the same audio, as `edm data import` of a USB stick names them.
    rekordbox = truth.model_copy(update={
        "track": truth.track.model_copy(update={"path": "/Volumes/USB/Contents/house.wav"}),
        "sections": sections([0.0, 30.2, 61.0, 90.0]),
        "metadata": Metadata(source="rekordbox-usb", provenance={"sections_complete": "true"}),
    })
    save_annotation(rekordbox, library / "Someone - House.1.yaml")
    result = CliRunner().invoke(main, ["evaluate", "--truth", str(truth_dir), "--pred",
                                       str(pred_dir), "--rekordbox", str(library), "--json"])
    assert result.exit_code == 0, result.output
    ours, theirs = json.loads(result.stdout)["reports"]
    assert theirs["name"].endswith("(Rekordbox phrases)") and theirs["tracks"] == 1
    assert ours["mean"]["boundary_f_0.5s"] == 1.0
    # Truth boundaries 30, 60, 90; Rekordbox 30.2, 61, 90: two of three within 0.5 s.
    assert theirs["mean"]["boundary_f_0.5s"] == round(2 / 3, 4)
    assert theirs["mean"]["boundary_f_3s"] == 1.0 and theirs["mean"]["beat_f"] == 1.0
    table = CliRunner().invoke(main, ["evaluate", "--truth", str(truth_dir), "--pred",
                                      str(pred_dir), "--rekordbox", str(library)])
    assert "Rekordbox phrases" in table.output and "0.667" in table.output
