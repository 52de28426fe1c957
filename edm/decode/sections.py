"""Sections from activations: boundaries on downbeats with a phrase prior, labels, energy.

:func:`decode_boundaries` chooses section starts among the grid's downbeats by dynamic
programming (boundary evidence against a cost for sections that are not whole phrases);
:func:`decode_sections` turns them into :class:`~edm.data.schema.Section` objects covering the
track, labelled by the section head and, given descriptors, with energy
(:mod:`edm.decode.energy`).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.ndimage import maximum_filter1d

from edm.data.schema import EnergyData, Section
from edm.decode.beats import BeatGrid
from edm.decode.energy import section_energy
from edm.heads.activations import Activations, span, to_frame

#: Cost of a section whose length in bars is not a whole phrase. A cost rather than a bonus:
#: a bonus for phrase lengths would pay for splitting a 16-bar section into 8 + 8 on no
#: evidence; a cost only decides between nearby candidates and keeps bogus splits unpaid.
_PHRASE_COST = {8: 0.0, 4: 0.05, 2: 0.12}
_OFF_PHRASE_COST = 0.2


def _phrase_cost(bars: int) -> float:
    for length, cost in _PHRASE_COST.items():
        if bars % length == 0:
            return cost
    return _OFF_PHRASE_COST


def decode_boundaries(
    activations: Activations, grid: BeatGrid, *, threshold: float = 0.25,
    min_section_bars: int = 4, max_section_bars: int = 64,
) -> np.ndarray:
    """Section boundary times (s) on downbeats, excluding 0 and the track end.

    Each downbeat gets the strongest boundary activation within half a beat of it; dynamic
    programming picks the set of downbeats that maximises ``sum(evidence - threshold)`` minus
    a cost for sections that are not whole phrases (multiples of 8 bars cost nothing, 4 bars
    a little, odd lengths most), with sections of ``min_section_bars`` to ``max_section_bars``
    bars; a longer stretch is split at its best-evidence downbeat.
    """
    fps = activations.frames_per_second
    downbeats = grid.downbeats
    if len(downbeats) < 2:
        return np.zeros(0)
    half_beat = max(1, to_frame(0.5 * grid.beat_period_s, fps))
    pooled = maximum_filter1d(np.asarray(activations.boundary, float), size=2 * half_beat + 1)
    evidence = pooled[np.clip(to_frame(downbeats, fps), 0, len(pooled) - 1)]
    # Heads fire where the audio stops; a "section" in the last two bars is the track's end.
    end_s = activations.n_frames / fps
    evidence[downbeats > end_s - 8 * grid.beat_period_s] = 0.0
    # Node j < n is downbeat j (node 0 = the track start, always chosen); node n = the end.
    n = len(downbeats)
    cost = np.array([_phrase_cost(bars) if bars else 0.0 for bars in range(max_section_bars + 1)])
    best = np.full(n + 1, -np.inf)
    back = np.zeros(n + 1, dtype=int)
    best[0] = 0.0
    for i in range(1, n + 1):
        if i < n:
            js = np.arange(max(0, i - max_section_bars), i - min_section_bars + 1)
            gain = evidence[i] - threshold
            # The last section may be cut short by the track end: no phrase cost for it.
            extra = -cost[i - js]
        else:
            js = np.arange(max(0, i - max_section_bars), i)
            gain, extra = 0.0, np.zeros(len(js))
        if len(js) == 0:
            continue
        scores = best[js] + extra + gain
        k = int(np.argmax(scores))
        best[i], back[i] = scores[k], js[k]
    chosen = []
    node = back[n]
    while node > 0:
        chosen.append(node)
        node = back[node]
    return np.asarray(sorted(downbeats[j] for j in chosen), dtype=float)


def _section_labels(
    activations: Activations, bounds_s: list[tuple[float, float]]
) -> list[str | None]:
    if activations.section is None or not activations.section_labels:
        return [None] * len(bounds_s)
    fps, n_frames = activations.frames_per_second, activations.n_frames
    labels: list[str | None] = []
    for start, end in bounds_s:
        probs = activations.section[span(start, end, fps, n_frames)]
        labels.append(
            activations.section_labels[int(np.argmax(probs.mean(axis=0)))] if len(probs) else None
        )
    return labels


def decode_sections(
    activations: Activations, grid: BeatGrid, *, descriptors: dict[str, np.ndarray] | None = None,
    duration_s: float | None = None, threshold: float = 0.25,
) -> list[Section]:
    """Sections covering the track: boundaries on downbeats, labels, energy from descriptors.

    ``descriptors`` (store/backbone per-frame ``rms``, ``bass``, ``mid``, ``high``, ``onset``,
    ``centroid_hz`` at the activations' frame rate) give the energy; without them sections
    carry no energy.
    """
    end_s = activations.n_frames / activations.frames_per_second
    if duration_s is not None:
        end_s = duration_s
    boundaries = decode_boundaries(activations, grid, threshold=threshold)
    edges = [0.0, *[float(b) for b in boundaries if 0.0 < b < end_s], end_s]
    bounds = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    labels = _section_labels(activations, bounds)
    energies: list[EnergyData | None] = [None] * len(bounds)
    if descriptors:
        energies = list(section_energy(descriptors, activations.frames_per_second, bounds,
                                       grid.beats))
    return [
        Section(start_s=round(a, 4), end_s=round(b, 4), label=label, energy=energy)
        for (a, b), label, energy in zip(bounds, labels, energies, strict=True)
    ]
