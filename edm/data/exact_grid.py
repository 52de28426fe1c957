"""Exact beat times as a beat grid: the bridge from project/chart truth to the schema.

Readers of sources that state every beat (LMMS projects, rhythm-game charts) compute beat
times and bar positions exactly; :func:`grid_from_beats` packs them into the fewest
:class:`~edm.data.schema.TempoSegment` whose expansion (:func:`~edm.data.schema.beat_grid`)
gives back the same beats: a new segment starts wherever the beat period changes or the bar
count restarts.

>>> grid = grid_from_beats([0.0, 0.5, 1.0, 1.5, 1.75, 2.0], [1, 2, 3, 4, 1, 2], 4)
>>> [(s.start_s, s.bpm, s.beat_in_bar) for s in grid]
[(0.0, 120.0, 1), (1.5, 240.0, 4)]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edm.data.schema import TempoSegment

#: Period difference (s) under which two beat intervals count as one tempo.
SAME_PERIOD_S = 1e-6


def grid_from_beats(
    times: Sequence[float] | np.ndarray, numbers: Sequence[int] | np.ndarray,
    beats_per_bar: int | Sequence[int] | np.ndarray,
) -> list[TempoSegment]:
    """Tempo segments reproducing beats at ``times`` numbered ``numbers`` (1 = downbeat) in
    bars of ``beats_per_bar`` (one number, or one per beat where the metre changes).

    Beats before 0 s are dropped (the schema's first segment extends back to 0 anyway).
    """
    times = np.asarray(times, float)
    numbers = np.asarray(numbers, int)
    metre = np.broadcast_to(np.asarray(beats_per_bar, int), times.shape)
    keep = times >= 0
    times, numbers, metre = times[keep], numbers[keep], metre[keep]
    if len(times) < 2:
        raise ValueError("a beat grid needs at least two beats at or after 0 s")
    periods = np.diff(times)
    if np.any(periods <= 0):
        raise ValueError("beat times must increase")
    segments: list[TempoSegment] = []
    last_period = None
    for index, period in enumerate(periods):
        expected = numbers[index - 1] % metre[index - 1] + 1 if index else None
        if (last_period is not None and abs(period - last_period) < SAME_PERIOD_S
                and numbers[index] == expected and metre[index] == metre[index - 1]):
            continue
        segments.append(TempoSegment(
            start_s=round(float(times[index]), 9), bpm=round(60.0 / float(period), 9),
            beats_per_bar=int(metre[index]), beat_in_bar=int(numbers[index]),
        ))
        last_period = period
    return segments
