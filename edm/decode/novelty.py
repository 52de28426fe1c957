"""Arrangement change from the descriptors: how much the music changes at each beat.

An arrangement change (a track enters, the drums drop out) changes loudness, band balance,
onset density and brightness together; within a section they repeat bar after bar. So the
distance between the mean descriptors of the ``width`` beats before and after a beat is
high where sections start and low inside them (Foote's novelty, on beat-synchronous
descriptors instead of a self-similarity kernel). Two views of the descriptors
(:func:`beat_features`): ``"levels"``, the loudness, band levels, onsets and brightness, and
``"timbre"``, the shape of the 32-band spectrum with its overall level taken out, which moves
where a lead, a pad or a bass line comes or goes at the same loudness. Decoding uses the
levels for the bar phase (downbeats are where changes happen, :mod:`edm.decode.beats`) and both
views, over 1, 2 and 4 bars, for half of the boundary evidence beside the boundary head
(:mod:`edm.decode.sections`).

>>> fps, n = 10.0, 400
>>> times = np.arange(0.0, 40.0, 0.5)
>>> level = np.where(np.arange(n) / fps < 20.0, 0.1, 0.5)
>>> d = {"rms": level, "bass": level, "mid": level, "high": level,
...      "onset": level, "centroid_hz": 1000 + 0 * level}
>>> change = beat_novelty(d, fps, times, n, width=4)
>>> float(times[int(np.argmax(change))])
20.0

A pad entering at 20 s, the loudness held: no level moves, the spectrum's shape does.

>>> d.update({name: np.full(n, 0.1) for name in BAND_NAMES})
>>> d["band_20"] = np.where(np.arange(n) / fps < 20.0, 0.1, 0.4)
>>> float(times[int(np.argmax(beat_novelty(d, fps, times, n, width=4, view="timbre")))])
20.0
"""

from __future__ import annotations

import numpy as np

from edm.backbones.descriptors import BAND_NAMES

#: The ``"levels"`` view, as log levels (``centroid_hz`` as log of hundreds of Hz).
_LEVELS = ("rms", "bass", "mid", "high", "onset")
#: The ``"timbre"`` view takes the logs of :data:`~edm.backbones.descriptors.BAND_NAMES`, less
#: their mean over the bands, floored here (-80 dB re full scale).
_BAND_FLOOR = 1e-4
#: Smallest spread a feature is standardised by (log units: about a 10 % level change).
_MIN_SPREAD = 0.1


def _frame_columns(descriptors: dict[str, np.ndarray], view: str, n_frames: int
                   ) -> np.ndarray | None:
    """Per-frame features of one view, ``(n_frames, n_features)``; None when missing."""
    if view not in ("levels", "timbre"):
        raise ValueError(f"view must be 'levels' or 'timbre', not {view!r}")
    names = (*_LEVELS, "centroid_hz") if view == "levels" else BAND_NAMES
    if not descriptors or any(name not in descriptors for name in names):
        return None
    if view == "timbre":
        # True logs: a quiet band's share of the shape counts as much as a loud one's, where
        # log1p(100 x) would be linear for them.
        logs = np.log(np.stack([np.asarray(descriptors[name], float)[:n_frames]
                                for name in BAND_NAMES], axis=1) + _BAND_FLOOR)
        return logs - logs.mean(axis=1, keepdims=True)
    columns = [np.log1p(100.0 * np.asarray(descriptors[name], float)[:n_frames])
               for name in _LEVELS]
    columns.append(np.log1p(np.asarray(descriptors["centroid_hz"], float)[:n_frames] / 100.0))
    return np.stack(columns, axis=1)


def beat_features(
    descriptors: dict[str, np.ndarray], fps: float, times_s: np.ndarray, n_frames: int, *,
    view: str = "levels",
) -> np.ndarray | None:
    """Means of one view of the descriptors (``"levels"`` or ``"timbre"``, see the module
    docstring) over each beat span ``[t_i, t_{i+1})``, standardised per track, one row per
    time; None when the view's descriptors are missing (a store written before the bands)."""
    stacked = _frame_columns(descriptors, view, n_frames)
    times_s = np.asarray(times_s, float)
    if stacked is None or len(times_s) < 2:
        return None
    edges = np.clip(np.round(np.append(times_s, n_frames / fps) * fps).astype(int), 0, n_frames)
    cumulative = np.vstack([np.zeros((1, stacked.shape[1])), np.cumsum(stacked, axis=0)])
    lo, hi = edges[:-1], np.maximum(edges[1:], edges[:-1] + 1)
    hi = np.minimum(hi, len(stacked))
    lo = np.minimum(lo, hi - 1)
    means = (cumulative[hi] - cumulative[lo]) / (hi - lo)[:, None]
    # A floor on the spread: a descriptor that hardly moves (frame-rounding ripples) must not
    # be blown up to the same weight as one that steps with the arrangement.
    return (means - means.mean(axis=0)) / np.maximum(means.std(axis=0), _MIN_SPREAD)


def beat_novelty(
    descriptors: dict[str, np.ndarray], fps: float, times_s: np.ndarray, n_frames: int, *,
    width: int = 8, view: str = "levels",
) -> np.ndarray | None:
    """Change at each time: RMS distance (over the view's standardised features) between the
    mean features of the ``width`` beats before and the ``width`` from it on (fewer at the
    track's ends; 0 at the first time)."""
    curves = beat_novelties(descriptors, fps, times_s, n_frames, widths=(width,), view=view)
    return None if curves is None else curves[0]


def beat_novelties(
    descriptors: dict[str, np.ndarray], fps: float, times_s: np.ndarray, n_frames: int, *,
    widths: tuple[int, ...], view: str = "levels",
) -> list[np.ndarray] | None:
    """:func:`beat_novelty` for each of ``widths``, the features computed once."""
    features = beat_features(descriptors, fps, times_s, n_frames, view=view)
    if features is None:
        return None
    cumulative = np.vstack([np.zeros((1, features.shape[1])), np.cumsum(features, axis=0)])
    count = len(features)
    index = np.arange(count)
    curves = []
    for width in widths:
        before_lo, after_hi = np.maximum(0, index - width), np.minimum(count, index + width)
        change = np.zeros(count)
        inner = (index > before_lo) & (after_hi > index)
        i = index[inner]
        before = (cumulative[i] - cumulative[before_lo[inner]]) / (i - before_lo[inner])[:, None]
        after = (cumulative[after_hi[inner]] - cumulative[i]) / (after_hi[inner] - i)[:, None]
        change[inner] = np.sqrt(np.mean((after - before) ** 2, axis=1))
        curves.append(change)
    return curves
