"""edm.synth libraries: files, JAMS truth, Rekordbox XML with the injected errors, CSV, CLI."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from edm.audio import content_hash, load_audio
from edm.cli import main
from edm.data.jams_io import load_truth
from edm.data.rekordbox import read_rekordbox_xml
from edm.data.schema import Section, TempoSegment, TrackAnnotation, TrackIdentity, beat_grid
from edm.synth import ERROR_KINDS, SynthError, dj_labels, make_library
from edm.synth.library import CSV_COLUMNS


@pytest.fixture(scope="module")
def clean_library(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    make_library(out, tracks=2, seed=3, minutes=0.25, noise="none",
                 genres=["techno", "drum_and_bass"])
    return out


@pytest.fixture(scope="module")
def noisy_library(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("noisy")
    make_library(out, tracks=3, seed=8, minutes=0.3, noise="heavy", audio_format="mp3")
    return out


def _read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def _truth_for(out: Path, audio_name: str) -> TrackAnnotation:
    return load_truth(out / "truth" / (Path(audio_name).stem + ".jams"))


def test_layout_and_truth_round_trip(clean_library: Path) -> None:
    audio = sorted((clean_library / "audio").iterdir())
    assert [p.name for p in audio] == ["synth-3-000-techno.wav", "synth-3-001-drum_and_bass.wav"]
    for path in audio:
        truth = _truth_for(clean_library, path.name)
        assert truth.track.content_hash == content_hash(path)
        assert truth.metadata.tier == 1
        assert truth.sections and all(s.energy is not None for s in truth.sections)
        decoded = load_audio(path, 44100)
        assert len(decoded) / 44100 == pytest.approx(truth.track.duration_s, abs=1e-3)


def test_mp3_decodes_to_the_truth_length(noisy_library: Path) -> None:
    """LAME's encoder delay and padding are trimmed on decode, so truth times still hold."""
    for path in sorted((noisy_library / "audio").glob("*.mp3")):
        truth = _truth_for(noisy_library, path.name)
        assert len(load_audio(path, 44100)) / 44100 == pytest.approx(truth.track.duration_s,
                                                                     abs=1e-3)


def test_same_library_whatever_the_workers(clean_library: Path, tmp_path: Path) -> None:
    make_library(tmp_path, tracks=2, seed=3, minutes=0.25, noise="none",
                 genres=["techno", "drum_and_bass"], workers=2)
    for path in sorted((clean_library / "audio").iterdir()):
        assert (tmp_path / "audio" / path.name).read_bytes() == path.read_bytes()


def test_noise_none_gives_exact_labels(clean_library: Path) -> None:
    library = read_rekordbox_xml(clean_library / "rekordbox.xml")
    assert not library.problems
    assert _read_csv(clean_library / "injected_errors.csv") == []
    for noisy in library.tracks:
        truth = _truth_for(clean_library, Path(noisy.track.path).name)
        # The XML may carry re-anchors (same grid, more TEMPO entries): compare the beats.
        ours, our_numbers = beat_grid(noisy.grid, truth.track.duration_s)
        true, true_numbers = beat_grid(truth.grid, truth.track.duration_s)
        np.testing.assert_allclose(ours, true, atol=1e-3)  # Rekordbox stores milliseconds
        np.testing.assert_array_equal(our_numbers, true_numbers)
        cue_times = np.array([cue.start_s for cue in noisy.cues])
        true_times = np.array([s.start_s for s in truth.sections])
        np.testing.assert_allclose(cue_times, true_times, atol=5e-4)


def test_injected_errors_are_in_the_xml(noisy_library: Path) -> None:
    rows = _read_csv(noisy_library / "injected_errors.csv")
    assert rows and list(rows[0]) == list(CSV_COLUMNS)
    assert {row["kind"] for row in rows} <= set(ERROR_KINDS)
    library = {Path(t.track.path).name: t for t in
               read_rekordbox_xml(noisy_library / "rekordbox.xml").tracks}
    for row in rows:
        noisy = library[row["track"]]
        assert row["content_hash"] == content_hash(noisy_library / "audio" / row["track"])
        cues = np.array([cue.start_s for cue in noisy.cues] or [-1.0])
        kind = row["kind"]
        if kind in ("cue_moved_beat", "cue_moved_bar", "cue_off_grid", "cue_extra"):
            assert np.min(np.abs(cues - float(row["noisy_value"]))) < 1e-3, row
        if kind in ("cue_moved_beat", "cue_moved_bar", "cue_off_grid", "cue_missing"):
            assert np.min(np.abs(cues - float(row["true_value"]))) > 1e-3, row
        if kind == "tempo_octave":
            assert noisy.grid[0].bpm == pytest.approx(float(row["noisy_value"]), abs=0.005)
        if kind == "downbeat_shift":
            assert noisy.grid[0].beat_in_bar == int(float(row["noisy_value"]))
        if kind == "grid_phase":
            assert noisy.grid[0].start_s == pytest.approx(float(row["noisy_value"]), abs=5e-4)
        if kind == "tempo_change_ignored":
            assert len({segment.bpm for segment in noisy.grid}) == 1


def _toy_truth(change: bool) -> TrackAnnotation:
    grid = [TempoSegment(start_s=0.2, bpm=128.0)]
    if change:
        grid.append(TempoSegment(start_s=60.2, bpm=132.0))
    bar = 4 * 60 / 128
    starts = [0.2 + 8 * bar * k for k in range(8)]
    sections = [Section(start_s=s, end_s=e, label="drop")
                for s, e in zip(starts, [*starts[1:], starts[-1] + 8 * bar], strict=True)]
    return TrackAnnotation(track=TrackIdentity(duration_s=starts[-1] + 8 * bar), grid=grid,
                           sections=sections)


@pytest.mark.parametrize(("level", "low", "high"), [("light", 0.1, 0.35), ("heavy", 0.45, 0.7)])
def test_noise_rates_per_level(level: str, low: float, high: float) -> None:
    """Over many toy tracks the missing-cue rate lands near the level's rate."""
    rng = np.random.default_rng(0)
    kinds: Counter[str] = Counter()
    cues = 0
    for index in range(200):
        noisy, errors = dj_labels(_toy_truth(change=index % 2 == 0), level, rng)
        kinds.update(error.kind for error in errors)
        cues += len(_toy_truth(False).sections)
        for error in errors:
            assert error.kind in ERROR_KINDS
        assert noisy.metadata.tier == 2 and noisy.sections == []
    assert low < kinds["cue_missing"] / cues < high
    assert kinds["tempo_change_ignored"] > 0 and kinds["grid_phase"] > 0
    with pytest.raises(ValueError, match="unknown noise level 'loud'"):
        dj_labels(_toy_truth(False), "loud", rng)


def test_cli_writes_library_that_imports_and_validates(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "lib"
    result = runner.invoke(main, ["synth", str(out), "--tracks", "2", "--seed", "5",
                                  "--minutes", "0.2", "--genres", "garage,dubstep",
                                  "--noise", "none", "--json"])
    assert result.exit_code == 0, result.output
    assert '"garage": 1' in result.output and '"dubstep": 1' in result.output
    result = runner.invoke(main, ["data", "import", str(out / "rekordbox.xml"), "--out",
                                  str(tmp_path / "ann")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["data", "validate", str(tmp_path / "ann")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "ann").glob("*.yaml"))) == 2


@pytest.mark.parametrize(("options", "message"), [
    ({"noise": "loud"}, "unknown noise level 'loud'"),
    ({"audio_format": "ogg"}, "unknown format 'ogg'"),
    ({"genres": ["house", "polka"]}, "unknown genre(s) polka"),
    ({"tracks": 0}, "need tracks >= 1"),
])
def test_bad_library_parameters_are_named(tmp_path: Path, options: dict, message: str) -> None:
    arguments = {"tracks": 1, "seed": 0, **options}
    with pytest.raises(SynthError, match=re.escape(message)):
        make_library(tmp_path, **arguments)
    assert not (tmp_path / "audio").exists()  # nothing written before the check


def test_cli_rejects_unknown_genre(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["synth", str(tmp_path), "--genres", "polka"])
    assert result.exit_code == 2
    assert "unknown genre(s) polka" in result.output
