"""Tempo from beat and bar evidence (edm.decode.tempo): the 2:3 error of shuffled grooves."""

from __future__ import annotations

import numpy as np
import pytest

from edm.decode import decode_beats
from edm.heads.activations import Activations

FPS = 50.0


def bumps(times: np.ndarray, n: int, heights: np.ndarray | float = 1.0) -> np.ndarray:
    """Gaussian peaks at ``times`` (1.2 frames wide), what a trained head outputs."""
    out = np.zeros(n)
    heights = np.broadcast_to(np.asarray(heights, float), np.shape(times))
    for k in range(-6, 7):
        index = np.clip(np.round(np.asarray(times) * FPS).astype(int) + k, 0, n - 1)
        out[index] = np.maximum(out[index], heights * np.exp(-0.5 * (k / 1.2) ** 2))
    return out


def shuffle(duration_s: float, *, bars: bool) -> Activations:
    """A 180-BPM shuffle: the beat head fires on every beat and, twice as strongly, on the
    swung hits halfway between the 120-BPM grid lines, so a 120-BPM grid explains the beat
    peaks better than the true one; the downbeats come every 4 beats of 180 BPM."""
    n = int(duration_s * FPS)
    rng = np.random.default_rng(0)
    beats = np.arange(0.2, duration_s - 0.5, 60.0 / 180.0)
    swung = np.arange(0.2, duration_s - 0.5, 0.5)
    hits = np.concatenate([beats, swung])
    heights = np.concatenate([np.full(len(beats), 0.5), np.full(len(swung), 1.0)])
    downbeat = (0.8 * bumps(beats[::4], n) if bars else np.zeros(n)) + rng.uniform(0, 0.1, n)
    return Activations(beat=bumps(hits, n, heights) + rng.uniform(0, 0.1, n), downbeat=downbeat,
                       boundary=np.zeros(n), frames_per_second=FPS)


def test_confident_bars_turn_a_2_to_3_error_into_the_true_tempo() -> None:
    # Beat evidence and prior alone: the groove reads as 120 BPM (two of three beats wrong).
    assert decode_beats(shuffle(120.0, bars=False)).bpm == pytest.approx(120.0, abs=0.5)
    # A confident downbeat head with bars of 1.33 s settles it: four beats a bar is 180 BPM.
    assert decode_beats(shuffle(120.0, bars=True)).bpm == pytest.approx(180.0, abs=0.5)
