"""JAMS conversion: exact round trip for what edm writes, a fitted grid for foreign files."""

from __future__ import annotations

from pathlib import Path

import jams
import numpy as np
import pytest

from edm.data.jams_io import annotation_to_jams, jams_to_annotation, load_truth, save_jams
from edm.data.schema import (
    AnnotationError,
    Cue,
    EnergyData,
    Metadata,
    Section,
    TempoSegment,
    TrackAnnotation,
    TrackIdentity,
    beat_grid,
)

# jams validates through an old jsonschema call; the warning is theirs, not ours.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:jsonschema.*")


def _truth() -> TrackAnnotation:
    bar = 4 * 60 / 126.0
    return TrackAnnotation(
        track=TrackIdentity(path="/x/a.wav", content_hash="ab" * 16, duration_s=181.37,
                            title="Synth 1", artist="edm", genre="techno"),
        grid=[TempoSegment(start_s=0.0371, bpm=126.0),
              TempoSegment(start_s=0.0371 + 32 * bar, bpm=128.0, beat_in_bar=1),
              TempoSegment(start_s=120.001, bpm=128.0, beats_per_bar=3, beat_in_bar=2)],
        cues=[Cue(start_s=0.0371), Cue(start_s=30.51, end_s=34.2, kind="hot", slot=1, name="Drop",
                                       color="#FF0000")],
        sections=[
            Section(start_s=0.0371, end_s=0.0371 + 16 * bar, label="intro",
                    energy=EnergyData(overall=0.2, bass=0.1, mid=0.3, high=0.25, curve=[0.1, 0.2])),
            Section(start_s=0.0371 + 16 * bar, end_s=0.0371 + 32 * bar, label=None),
            Section(start_s=0.0371 + 32 * bar, end_s=181.0, label="drop",
                    energy=EnergyData(overall=0.9, rating=8)),
        ],
        key="8A", bpm=127.0, energy_rating=7.5,
        metadata=Metadata(tier=1, confidence=1.0, source="edm-synth", provenance={"seed": "3"}),
    )


def test_round_trip_is_exact_through_a_file(tmp_path: Path) -> None:
    truth = _truth()
    path = save_jams(truth, tmp_path / "t.jams")
    assert load_truth(path) == truth
    assert jams_to_annotation(str(path)) == truth
    # Still a valid JAMS file for other tools.
    assert jams.load(str(path), validate=True).file_metadata.duration == 181.37


def test_namespaces_carry_the_labels() -> None:
    truth = _truth()
    jam = annotation_to_jams(truth)
    beats = jam.annotations.search(namespace="beat")[0]
    times, numbers = beat_grid(truth.grid, 181.37)
    assert len(beats.data) == len(times) > 300
    np.testing.assert_allclose([o.time for o in beats.data], times)
    assert [o.value for o in beats.data] == numbers.tolist()
    assert {o.value for o in beats.data} == {1, 2, 3, 4}
    tempo = jam.annotations.search(namespace="tempo")[0]
    assert [(o.time, o.value) for o in tempo.data] == [(s.start_s, s.bpm) for s in truth.grid]
    segments = jam.annotations.search(namespace="segment_open")[0]
    assert [o.value for o in segments.data] == ["intro", "section", "drop"]
    assert segments.sandbox.energy[1] is None and segments.sandbox.energy[2]["rating"] == 8
    assert jam.sandbox.edm["metadata"]["tier"] == 1
    assert jam.sandbox.edm["metadata"]["source"] == "edm-synth"


def test_annotation_without_duration_round_trips() -> None:
    ann = TrackAnnotation(track=TrackIdentity(title="x"), grid=[TempoSegment(start_s=1, bpm=90)],
                          cues=[Cue(start_s=12.0)])
    jam = annotation_to_jams(ann)
    assert jam.file_metadata.duration == 12.0
    assert jams_to_annotation(jam) == ann


def test_foreign_jams_gets_a_fitted_grid() -> None:
    jam = jams.JAMS()
    jam.file_metadata.duration = 30.0
    beats = jams.Annotation(namespace="beat", time=0, duration=30.0)
    first = 0.25 + 0.5 * np.arange(20)  # 120 BPM, starting on beat 3
    second = first[-1] + 60 / 126 + 60 / 126 * np.arange(20)
    for index, time in enumerate(np.concatenate([first, second])):
        beats.append(time=float(time), duration=0.0, value=(index + 2) % 4 + 1)
    jam.annotations.append(beats)
    segments = jams.Annotation(namespace="segment_open", time=0, duration=30.0)
    segments.append(time=0.25, duration=10.0, value="verse")
    jam.annotations.append(segments)
    ann = jams_to_annotation(jam)
    # Two segments whose expansion gives back exactly the beats and their numbers.
    assert [round(s.bpm, 6) for s in ann.grid] == [120.0, 126.0]
    times, numbers = beat_grid(ann.grid, second[-1] + 0.1)
    np.testing.assert_allclose(times, np.concatenate([first, second]), atol=1e-9)
    assert numbers.tolist() == [(i + 2) % 4 + 1 for i in range(40)]
    assert ann.sections == [Section(start_s=0.25, end_s=10.25, label="verse")]
    assert ann.metadata.source == "jams" and ann.track.duration_s == 30.0


def test_unreadable_jams_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jams"
    bad.write_text("{not json")
    with pytest.raises(AnnotationError, match=r"bad\.jams: cannot read JAMS"):
        load_truth(bad)
    with pytest.raises(AnnotationError, match=r"missing\.jams: cannot read JAMS"):
        load_truth(tmp_path / "missing.jams")
