"""The one peak picker: local maxima of an activation, refined between frames.

Decoding, the heads' metrics and the audit all pick peaks here, so "a peak" means one thing:

- :func:`find_peaks` — indices of local maxima at least ``height`` high and ``distance``
  frames apart (the higher peak wins), like ``scipy.signal.find_peaks``; numpy only, because
  importing ``scipy.signal`` pulls in ``scipy.stats`` and costs more than decoding a track.
- :func:`refine` — a parabola through each peak and its two neighbours puts it between frames
  (a grid fit then reaches sub-frame accuracy instead of a half-frame rounding bias).
- :func:`pick_peaks` — both, in seconds: the :class:`Peaks` of an activation.

>>> x = np.array([0, 2, 1, 3, 0, 1, 0.5])
>>> find_peaks(x, height=1.0, distance=2).tolist()
[1, 3, 5]
>>> find_peaks(np.array([0, 2, 1, 3, 0]), distance=3).tolist()
[3]
>>> peaks = pick_peaks(np.array([0, .2, .9, .3, 0, 0, .7, 0]), 2.0, height=0.5,
...                    min_distance_s=1.0)
>>> peaks.times.round(3).tolist(), peaks.heights.tolist()
([1.019, 3.0], [0.9, 0.7])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def find_peaks(x: np.ndarray, *, height: float | None = None, distance: int = 1) -> np.ndarray:
    """Indices of local maxima at least ``height`` high and ``distance`` frames apart.

    A plateau counts once, at its first sample; of two peaks closer than ``distance`` frames
    the higher one stays.
    """
    x = np.asarray(x, dtype=float)
    if len(x) < 3:
        return np.zeros(0, dtype=int)
    # Plateaus count once, at their first sample (rising edge then non-rising).
    candidates = np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:])) + 1
    if height is not None:
        candidates = candidates[x[candidates] >= height]
    if distance <= 1 or len(candidates) < 2:
        return candidates
    # A candidate with no other within ``distance`` neither loses nor suppresses: only the
    # crowded ones need the greedy pass (most peaks of a beat activation are isolated).
    gaps = np.diff(candidates)
    crowded = np.zeros(len(candidates), dtype=bool)
    crowded[1:] |= gaps < distance
    crowded[:-1] |= gaps < distance
    keep = np.ones(len(candidates), dtype=bool)
    contested = candidates[crowded]
    kept = np.ones(len(contested), dtype=bool)
    for i in np.argsort(-x[contested], kind="stable"):
        if not kept[i]:
            continue
        # Suppress lower neighbours within ``distance`` of this peak.
        lo = np.searchsorted(contested, contested[i] - distance + 1)
        hi = np.searchsorted(contested, contested[i] + distance - 1, side="right")
        kept[lo:i] = False
        kept[i + 1 : hi] = False
    keep[crowded] = kept
    return candidates[keep]


def refine(x: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """Sub-frame positions of peaks at ``indices``: the vertex of the parabola through each
    peak and its neighbours (at most half a frame away; edge peaks stay on their frame)."""
    x = np.asarray(x, dtype=float)
    positions = np.asarray(indices, dtype=float).copy()
    inner = (indices > 0) & (indices < len(x) - 1)
    a, b, c = x[indices[inner] - 1], x[indices[inner]], x[indices[inner] + 1]
    curvature = a - 2 * b + c
    shift = np.where(curvature < 0, 0.5 * (a - c) / np.where(curvature < 0, curvature, -1.0), 0.0)
    positions[inner] += np.clip(shift, -0.5, 0.5)
    return positions


@dataclass(frozen=True)
class Peaks:
    """Peaks of one activation: sub-frame positions, heights and the frame rate."""

    frames: np.ndarray
    heights: np.ndarray
    frames_per_second: float

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def times(self) -> np.ndarray:
        """Peak times in seconds."""
        return self.frames / self.frames_per_second


def pick_peaks(
    activation: np.ndarray, frames_per_second: float, *, height: float | None = None,
    min_distance_s: float = 0.0,
) -> Peaks:
    """Peaks at least ``height`` high and ``min_distance_s`` apart, refined between frames.

    ``min_distance_s`` becomes ``max(1, round(min_distance_s * fps))`` frames.
    """
    activation = np.asarray(activation, dtype=float)
    distance = max(1, round(min_distance_s * frames_per_second))
    indices = find_peaks(activation, height=height, distance=distance)
    return Peaks(refine(activation, indices), activation[indices], float(frames_per_second))
