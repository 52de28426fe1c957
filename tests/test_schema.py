"""The annotation schema: validation messages, grid expansion, YAML round trip."""

from pathlib import Path

import numpy as np
import pytest

from edm.data.schema import (
    AnnotationError,
    Cue,
    Section,
    TempoSegment,
    TrackAnnotation,
    TrackIdentity,
    beat_grid,
    load_annotation,
    load_annotations,
    save_annotation,
)


def _annotation() -> TrackAnnotation:
    return TrackAnnotation(
        track=TrackIdentity(path="a.wav", content_hash="abc123", duration_s=20.0, title="T"),
        grid=[TempoSegment(start_s=0.1, bpm=120.0), TempoSegment(start_s=8.1, bpm=128.0)],
        cues=[Cue(start_s=8.1, kind="hot", slot=0, name="Drop"), Cue(start_s=0.1)],
        sections=[Section(start_s=0.1, end_s=8.1, label="intro"), Section(start_s=8.1, end_s=20.0)],
    )


def test_grid_expands_across_tempo_change() -> None:
    times, numbers = beat_grid(_annotation().grid, end_s=20.0)
    assert times[0] == pytest.approx(0.1)
    assert np.allclose(np.diff(times[times < 8.0]), 0.5)
    assert np.allclose(np.diff(times[times > 8.1]), 60 / 128)
    assert numbers[np.isclose(times, 8.1)].tolist() == [1]
    assert times[-1] < 20.0


def test_unsorted_grid_is_rejected_with_field() -> None:
    data = _annotation().model_dump()
    data["grid"] = list(reversed(data["grid"]))
    with pytest.raises(ValueError, match="increasing order"):
        TrackAnnotation.model_validate(data)


def test_millisecond_times_get_a_hint() -> None:
    with pytest.raises(ValueError, match="milliseconds"):
        Cue(start_s=125_000.0)


def test_yaml_round_trip_and_error_names_file(tmp_path: Path) -> None:
    annotation = _annotation()
    path = save_annotation(annotation, tmp_path / "t.yaml")
    assert load_annotation(path) == annotation
    assert [c.start_s for c in load_annotation(path).cues] == [0.1, 8.1]
    bad = tmp_path / "bad.yaml"
    bad.write_text(path.read_text().replace("bpm: 128.0", "bpm: -1"))
    with pytest.raises(AnnotationError, match=r"bad\.yaml: field grid\.1\.bpm"):
        load_annotation(bad)
    good, errors = load_annotations(tmp_path)
    assert len(good) == 1 and len(errors) == 1
