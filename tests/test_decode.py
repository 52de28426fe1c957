"""Decoding: activations synthesised from known grids and boundaries must decode back to them."""

from __future__ import annotations

import mir_eval
import numpy as np
import pytest

from edm.data.schema import TempoSegment, beat_grid
from edm.decode import DecodeError, decode_beats, decode_boundaries, decode_sections
from edm.heads.activations import Activations

FPS = 50.0


def bumps(times: np.ndarray, n: int, width_frames: float = 1.2) -> np.ndarray:
    """Gaussian peaks (height 1) at ``times``: what a trained head outputs around events."""
    out = np.zeros(n)
    idx = np.round(np.asarray(times) * FPS).astype(int)
    for k in range(-8, 9):
        j = np.clip(idx + k, 0, n - 1)
        out[j] = np.maximum(out[j], np.exp(-0.5 * (k / width_frames) ** 2))
    return out


def activations_for(
    grid: list[TempoSegment], duration_s: float, *, seed: int = 0, noise: float = 0.15,
    boundaries: np.ndarray | None = None,
) -> tuple[Activations, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = int(duration_s * FPS)
    beats, numbers = beat_grid(grid, duration_s)
    downbeats = beats[numbers == 1]
    boundary = rng.uniform(0, 0.2, n)
    if boundaries is not None:
        boundary = np.maximum(boundary, 0.8 * bumps(boundaries, n, width_frames=3))
    act = Activations(
        beat=0.8 * bumps(beats, n) + rng.uniform(0, noise, n),
        downbeat=0.8 * bumps(downbeats, n) + rng.uniform(0, noise, n),
        boundary=boundary,
        frames_per_second=FPS,
    )
    return act, beats, downbeats


@pytest.mark.parametrize(
    ("bpm", "start_s", "beat_in_bar"),
    [(128.0, 0.31, 3), (174.0, 0.1, 1), (72.0, 0.12, 2), (140.0, 1.7, 4), (100.0, 0.0, 1)],
)
def test_steady_grid_decodes_exactly(bpm: float, start_s: float, beat_in_bar: int) -> None:
    grid = [TempoSegment(start_s=start_s, bpm=bpm, beat_in_bar=beat_in_bar)]
    act, beats, downbeats = activations_for(grid, 150.0)
    decoded = decode_beats(act)
    assert decoded.bpm == pytest.approx(bpm, abs=0.02)
    assert len(decoded.segments) == 1
    assert mir_eval.beat.f_measure(beats, decoded.beats) == pytest.approx(1.0)
    assert mir_eval.beat.f_measure(downbeats, decoded.downbeats) == pytest.approx(1.0)
    # Sub-frame accuracy from the least-squares fit: well under one 20 ms frame.
    common = min(len(beats), len(decoded.beats))
    assert np.abs(decoded.beats[:common] - beats[:common]).max() < 0.01


def test_tempo_change_found_at_the_right_beat() -> None:
    grid = [TempoSegment(start_s=0.2, bpm=124.0), TempoSegment(start_s=93.2, bpm=130.0)]
    act, beats, downbeats = activations_for(grid, 220.0, seed=3)
    decoded = decode_beats(act)
    assert [round(s.bpm, 1) for s in decoded.segments] == [124.0, 130.0]
    assert decoded.segments[1].start_s == pytest.approx(93.2, abs=0.02)
    assert decoded.bpm == pytest.approx(130.0, abs=0.01)  # the longer segment
    assert mir_eval.beat.f_measure(beats, decoded.beats) > 0.99
    assert mir_eval.beat.f_measure(downbeats, decoded.downbeats) > 0.99


def test_downbeats_fix_the_tempo_octave() -> None:
    """A beat head that fires on every other beat (half tempo) is corrected by the bars."""
    grid = [TempoSegment(start_s=0.4, bpm=128.0)]
    act, beats, _downbeats = activations_for(grid, 120.0, seed=5)
    n = act.n_frames
    half = Activations(
        beat=0.8 * bumps(beats[::2], n) + 0.05, downbeat=act.downbeat, boundary=act.boundary,
        frames_per_second=FPS,
    )
    # Without downbeat evidence 64 BPM is outside the EDM prior, so the prior alone says 128;
    # at 75 BPM the prior is flat, so only the downbeats (one every 2 grid beats) can say 150.
    assert decode_beats(half).bpm == pytest.approx(128.0, abs=0.05)
    grid75 = [TempoSegment(start_s=0.4, bpm=150.0)]
    act75, beats75, _ = activations_for(grid75, 120.0, seed=6)
    half75 = Activations(
        beat=0.8 * bumps(beats75[::2], act75.n_frames) + 0.05, downbeat=act75.downbeat,
        boundary=act75.boundary, frames_per_second=FPS,
    )
    assert decode_beats(half75).bpm == pytest.approx(150.0, abs=0.05)


def test_silence_and_short_clips_raise() -> None:
    n = int(30 * FPS)
    silent = Activations(np.zeros(n), np.zeros(n), np.zeros(n), FPS)
    with pytest.raises(DecodeError, match="no beats"):
        decode_beats(silent)
    short = Activations(np.zeros(100), np.zeros(100), np.zeros(100), FPS)
    with pytest.raises(DecodeError, match="too short"):
        decode_beats(short)


def test_boundaries_land_on_phrase_downbeats() -> None:
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 240.0
    _, _, downbeats = activations_for(grid, duration)
    truth = downbeats[[16, 32, 48, 64, 96]]
    # Boundary peaks 120 ms late (a head's typical smear) still snap to the downbeat.
    act, _, _ = activations_for(grid, duration, boundaries=truth + 0.12)
    decoded = decode_beats(act)
    found = decode_boundaries(act, decoded)
    np.testing.assert_allclose(found, truth, atol=0.01)


def test_phrase_prior_picks_the_phrase_downbeat_over_a_neighbour() -> None:
    """Evidence split between bars 15 and 16 after a boundary goes to bar 16 (a phrase)."""
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    act, _, downbeats = activations_for(grid, 120.0, boundaries=None)
    n = act.n_frames
    boundary = np.maximum(act.boundary, 0.7 * bumps(downbeats[[15, 16]], n, width_frames=2))
    boundary = np.maximum(boundary, 0.9 * bumps(downbeats[[32]], n, width_frames=2))
    act = Activations(act.beat, act.downbeat, boundary, FPS)
    found = decode_boundaries(act, decode_beats(act))
    np.testing.assert_allclose(found, downbeats[[16, 32]], atol=0.01)


def test_sections_carry_energy_labels_and_cover_the_track() -> None:
    grid = [TempoSegment(start_s=0.5, bpm=128.0)]
    duration = 120.0
    _, _, downbeats = activations_for(grid, duration)
    truth = downbeats[[8, 24, 40]]
    act, beats, _ = activations_for(grid, duration, boundaries=truth)
    n = act.n_frames
    t = np.arange(n) / FPS
    labels = ("intro", "drop")
    in_drop = (t >= truth[1]) & (t < truth[2])
    section = np.stack([np.where(in_drop, 0.2, 0.8), np.where(in_drop, 0.8, 0.2)], axis=1)
    act = Activations(act.beat, act.downbeat, act.boundary, FPS, section, labels)
    # The drop is twice as loud; a riser (rising rms) fills the section before it; two
    # onsets per beat in the drop, one elsewhere.
    rms = np.where(in_drop, 1.0, 0.5)
    riser = (t >= truth[0]) & (t < truth[1])
    rms = np.where(riser, 0.2 + 0.3 * (t - truth[0]) / (truth[1] - truth[0]), rms)
    onset_times = np.concatenate([beats, beats[(beats >= truth[1]) & (beats < truth[2])] + 0.2])
    descriptors = {
        "rms": rms, "bass": rms, "mid": rms, "high": np.full(n, 0.3),
        "onset": bumps(onset_times, n), "centroid_hz": np.where(in_drop, 3000.0, 1500.0),
    }
    sections = decode_sections(act, decode_beats(act), descriptors=descriptors, duration_s=duration)
    assert [s.label for s in sections] == ["intro", "intro", "drop", "intro"]
    assert sections[0].start_s == 0.0 and sections[-1].end_s == duration
    drop, riser_section = sections[2].energy, sections[1].energy
    assert drop.overall == pytest.approx(1.0)
    assert sections[3].energy.overall == pytest.approx(0.5, abs=0.01)
    assert drop.density == pytest.approx(2.0, abs=0.05)
    assert sections[3].energy.density == pytest.approx(1.0, abs=0.05)
    assert drop.brightness == pytest.approx(3000.0, abs=20)
    assert riser_section.tension == pytest.approx(0.3, abs=0.02)
    assert drop.tension == pytest.approx(0.0, abs=0.01)
