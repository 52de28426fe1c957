"""edm.synth: the audio really carries its truth, the truth is exact, and the same seed repeats.

Tracks here are 15-40 s so the file runs in well under a minute on the 2-core dev box.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.signal
import scipy.stats

from edm.data.schema import ENERGY_FLOOR_DB, Tier, beat_grid
from edm.synth import GENRES, synthesize_track
from edm.synth.arrangement import LABELS, plan_arrangement
from edm.synth.energy import section_energy

SR = 44100


def onset_envelope(mono: np.ndarray, sample_rate: int, hop: int = 441) -> tuple[np.ndarray,
                                                                                np.ndarray]:
    """Spectral flux over 24 log-spaced bands (so the kick counts as much as the hats)."""
    n_fft = 2048
    n = 1 + (len(mono) - n_fft) // hop
    index = np.arange(n_fft)[None, :] + hop * np.arange(n)[:, None]
    spectrum = np.abs(np.fft.rfft(mono[index] * np.hanning(n_fft), axis=1))
    freqs = np.fft.rfftfreq(n_fft, 1 / sample_rate)
    edges = np.geomspace(30, 16000, 25)
    bands = np.stack([spectrum[:, (freqs >= lo) & (freqs < hi)].sum(axis=1)
                      for lo, hi in itertools.pairwise(edges)], axis=1)
    log_bands = np.log1p(1000 * bands / bands.max())
    flux = np.maximum(0.0, np.diff(log_bands, axis=0)).sum(axis=1)
    times = (np.arange(1, n) * hop + n_fft / 2) / sample_rate
    return times, flux


def envelope_at(times: np.ndarray, envelope: np.ndarray, query_s: np.ndarray) -> np.ndarray:
    """Envelope maximum within ±20 ms of each query time."""
    index = np.clip(np.searchsorted(times, query_s), 0, len(envelope) - 1)
    return np.array([envelope[max(0, i - 2): i + 3].max() for i in index])


@pytest.fixture(scope="module")
def tracks() -> dict[str, object]:
    return {genre: synthesize_track(11, genre=genre, minutes=0.4) for genre in GENRES}


@pytest.fixture(scope="module")
def long_track():
    """Long enough for the five-section form, with a tempo change and an off-phrase section."""
    return synthesize_track(5, genre="house", minutes=0.7, tempo_change=True, off_phrase=True)


def test_audio_format_and_loudness(tracks) -> None:
    for genre, track in tracks.items():
        assert track.audio.dtype == np.float32 and track.audio.shape[1] == 2, genre
        assert track.sample_rate == SR
        assert np.max(np.abs(track.audio)) <= 0.99
        rms_db = 20 * np.log10(np.sqrt(np.mean(track.audio**2)))
        assert -20 < rms_db < -6, (genre, rms_db)  # club masters, not whispers or square waves
        assert track.truth.track.duration_s == pytest.approx(len(track.audio) / SR)


def test_truth_is_tier1_with_phrases_on_downbeats(tracks, long_track) -> None:
    for track in [*tracks.values(), long_track]:
        truth = track.truth
        assert truth.metadata.tier == Tier.VERIFIED
        assert truth.track.genre in GENRES
        low, high = GENRES[truth.track.genre].bpm_range
        assert low <= truth.grid[0].bpm <= high
        downbeats = truth.downbeats()
        labels = [section.label for section in truth.sections]
        assert labels[0] == "intro" and labels[-1] == "outro" and "drop" in labels
        assert set(labels) <= set(LABELS)
        for section in truth.sections:
            assert np.min(np.abs(downbeats - section.start_s)) < 1e-6, section
            energy = section.energy
            assert energy is not None
            assert all(0 <= v <= 1 for v in (energy.overall, energy.bass, energy.mid, energy.high))
        # A cue on every section start, named the way DJs name them.
        assert [cue.start_s for cue in truth.cues] == [s.start_s for s in truth.sections]
        assert truth.sections[-1].end_s == pytest.approx(truth.track.duration_s)


def test_onsets_peak_on_beats_not_half_a_beat_off(tracks, long_track) -> None:
    for name, track in [*tracks.items(), ("tempo change", long_track)]:
        times, flux = onset_envelope(track.audio.mean(axis=1), SR)
        beats, _ = beat_grid(track.truth.grid, track.truth.track.duration_s)
        halves = (beats[:-1] + beats[1:]) / 2
        on_beat = envelope_at(times, flux, beats).mean()
        off_beat = envelope_at(times, flux, halves).mean()
        assert on_beat > 1.25 * off_beat, (name, on_beat, off_beat)


def test_band_energy_follows_labels(long_track) -> None:
    """Band RMS per section, measured here with Butterworth filters, ranks like the labels."""
    mono = long_track.audio.mean(axis=1).astype(np.float64)
    filters = {"bass": ("lowpass", 200.0), "high": ("highpass", 2500.0)}
    sections = long_track.truth.sections
    assert len(sections) >= 5
    for band, (kind, cutoff) in [*filters.items(), ("overall", (None, None))]:
        signal = mono
        if kind is not None:
            sos = scipy.signal.butter(4, cutoff, kind, fs=SR, output="sos")
            signal = scipy.signal.sosfilt(sos, mono)
        measured = [np.sqrt(np.mean(signal[int(s.start_s * SR): int(s.end_s * SR)] ** 2))
                    for s in sections]
        labelled = [getattr(s.energy, band) for s in sections]
        rho = scipy.stats.spearmanr(measured, labelled).statistic
        assert rho >= 0.8, (band, measured, labelled)


def test_energy_truth_is_the_mix_level_in_db_whatever_the_track(long_track) -> None:
    """Truth energy is absolute: the section's RMS in dB re full scale, not rescaled per track,
    so the same mix 20 dB quieter scores 20/60 lower in every section."""
    mono = long_track.audio.mean(axis=1).astype(np.float64)
    sections = long_track.truth.sections
    for section in sections:
        chunk = mono[int(section.start_s * SR): int(section.end_s * SR)]
        assert section.energy.level_db == pytest.approx(
            20 * np.log10(np.sqrt(np.mean(chunk**2))), abs=1.0)
    bounds = [(s.start_s, s.end_s) for s in sections]
    hits = [s.energy.density for s in sections]
    loud = section_energy(long_track.audio, SR, bounds, hits)
    quiet = section_energy(0.1 * long_track.audio, SR, bounds, hits)
    for a, b in zip(loud, quiet, strict=True):
        assert a.level_db - b.level_db == pytest.approx(20.0, abs=0.01)
        assert a.overall - b.overall == pytest.approx(20.0 / -ENERGY_FLOOR_DB, abs=1e-3)
    assert max(e.overall for e in quiet) < min(e.overall for e in loud if e.level_db > -30)


def test_sub_bass_only_in_drops_and_no_kick_in_breakdown(long_track) -> None:
    by_label = {s.label: s for s in long_track.truth.sections}
    drop, breakdown, buildup = by_label["drop"], by_label["breakdown"], by_label["buildup"]
    # Energy is linear in dB (-60 dB -> 0, 0 dB -> 1): the drop's bass is over 20 dB louder.
    assert (drop.energy.bass - breakdown.energy.bass) * -ENERGY_FLOOR_DB > 20.0
    assert drop.energy.overall > breakdown.energy.overall
    assert buildup.energy.tension > 0.3 > drop.energy.tension  # risers and rolls rise
    assert breakdown.energy.density == 0.0  # no drums at all


def test_tempo_change_and_off_phrase_section(long_track) -> None:
    grid = long_track.truth.grid
    assert len(grid) == 2 and grid[0].bpm != grid[1].bpm
    # The change sits on a section boundary; beats stay evenly spaced on each side.
    assert any(abs(s.start_s - grid[1].start_s) < 1e-9 for s in long_track.truth.sections)
    beats = long_track.truth.beats()
    before = np.diff(beats[beats < grid[1].start_s])
    after = np.diff(beats[beats >= grid[1].start_s])
    assert np.allclose(before, 60 / grid[0].bpm) and np.allclose(after, 60 / grid[1].bpm)
    bars = [s.n_bars for s in long_track.arrangement.sections]
    assert any(n % 4 for n in bars), bars  # one section is 2 bars off the phrase grid


def test_same_seed_same_audio_other_seed_other_audio() -> None:
    first = synthesize_track(21, genre="techno", minutes=0.25)
    again = synthesize_track(21, genre="techno", minutes=0.25)
    other = synthesize_track(22, genre="techno", minutes=0.25)
    assert first.audio.tobytes() == again.audio.tobytes()
    assert first.truth == again.truth
    assert len(other.audio) != len(first.audio) or not np.array_equal(other.audio, first.audio)


def test_phrase_plan_lengths_and_bad_arguments() -> None:
    plan = plan_arrangement(4, genre="trance", minutes=3.0)
    lengths = [s.n_bars for s in plan.sections]
    assert sum(lengths) == plan.n_bars
    assert 0.85 < plan.bar_to_seconds(plan.n_bars) / 180 < 1.15
    with pytest.raises(ValueError, match="unknown genre 'polka'"):
        plan_arrangement(1, genre="polka")
    with pytest.raises(ValueError, match="minutes must be > 0"):
        plan_arrangement(1, minutes=0)
