"""Augmentation for real audio: every step keeps the truth aligned (edm.synth.augment)."""

from __future__ import annotations

import numpy as np
import pytest

from edm.data.schema import Section, TempoSegment, TrackAnnotation, TrackIdentity
from edm.synth.augment import augment, mp3_round_trip, scale_annotation

SR = 44100


def clicks(times_s: np.ndarray, seconds: float) -> np.ndarray:
    """Stereo decaying 1.5 kHz blips at ``times_s``."""
    n = int(seconds * SR)
    out = np.zeros(n, np.float32)
    blip = (np.exp(-np.arange(2000) / 300) * np.sin(2 * np.pi * 1500 * np.arange(2000) / SR))
    for t in times_s:
        i = round(t * SR)
        out[i: i + 2000] += blip[: n - i].astype(np.float32)
    return np.stack([out, out], axis=1)


def onsets(audio: np.ndarray, threshold: float = 0.3) -> np.ndarray:
    """Times where the envelope first crosses ``threshold`` of its maximum, 50 ms apart."""
    env = np.abs(audio[:, 0])
    above = np.flatnonzero(env > threshold * env.max())
    starts = above[np.concatenate([[True], np.diff(above) > 0.05 * SR])]
    return starts / SR


def test_mp3_round_trip_keeps_every_onset_in_place() -> None:
    beats = np.arange(0.25, 9.5, 0.5)
    audio = clicks(beats, 10.0)
    for bitrate in (64, 128):
        decoded = mp3_round_trip(audio, SR, bitrate)
        assert decoded.shape == audio.shape
        np.testing.assert_allclose(onsets(decoded), onsets(audio), atol=0.001)
        assert not np.allclose(decoded, audio, atol=1e-3)  # it really went through the codec


def test_tempo_shift_moves_the_audio_and_the_truth_together() -> None:
    beats = np.arange(0.5, 19.0, 0.5)  # 120 BPM
    audio = clicks(beats, 20.0)
    truth = TrackAnnotation(
        track=TrackIdentity(duration_s=20.0), grid=[TempoSegment(start_s=0.5, bpm=120.0)],
        sections=[Section(start_s=0.0, end_s=8.5), Section(start_s=8.5, end_s=20.0)], bpm=120.0)
    shifted = augment(audio, SR, np.random.default_rng(3), steps=("tempo",))
    assert shifted.time_scale != 1.0 and 0.95 < shifted.time_scale < 1.05
    moved = scale_annotation(truth, shifted.time_scale)
    assert moved.bpm == pytest.approx(120.0 / shifted.time_scale)
    assert moved.sections[1].start_s == pytest.approx(8.5 * shifted.time_scale)
    assert moved.grid[0].start_s == pytest.approx(0.5 * shifted.time_scale)
    found = onsets(shifted.audio)
    assert len(found) >= len(beats) - 2
    grid_beats = moved.beats()
    nearest = np.abs(found[:, None] - grid_beats[None, :]).min(axis=1)
    assert nearest.max() < 0.012


def test_every_step_keeps_length_and_range_and_the_chain_is_seeded() -> None:
    audio = clicks(np.arange(0.25, 4.5, 0.25), 5.0)
    steps = ("gain", "tilt", "compress", "noise", "pitch", "mp3")
    first = augment(audio, SR, np.random.default_rng(7), steps=steps)
    again = augment(audio, SR, np.random.default_rng(7), steps=steps)
    np.testing.assert_array_equal(first.audio, again.audio)
    assert first.audio.shape == audio.shape and first.time_scale == 1.0
    assert np.abs(first.audio).max() <= 1.0
    assert not np.allclose(first.audio, audio, atol=1e-3)
    drawn = {augment(audio, SR, np.random.default_rng(s)).steps for s in range(8)}
    assert len(drawn) > 3  # random chains differ from call to call
