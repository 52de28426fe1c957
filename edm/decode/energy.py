"""Energy of decoded sections: measured from the descriptors, or predicted by the energy head.

- :func:`section_energy` — what the audio descriptors say, for every field of
  :class:`~edm.data.schema.EnergyData`: ``overall``/``bass``/``mid``/``high`` are the band
  levels of :func:`edm.heads.energy.section_levels` (the same definition the energy head is
  trained on when nobody rated a track: RMS over the section, 1.0 = the track's loudest
  section); ``density`` is onset peaks per beat, ``brightness`` the mean ``centroid_hz``,
  ``tension`` the slope of the section's RMS (relative to the loudest section; risers > 0).
- :func:`merge_energy` — the energy head's predictions over the measured figures: where heads
  carry an energy head, ``edm analyze`` reports its numbers for what it predicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edm.data.schema import EnergyData
from edm.decode.peaks import find_peaks
from edm.heads.activations import span
from edm.heads.energy import section_levels, section_rms


def _linear_slope(values: np.ndarray) -> float:
    if len(values) < 2:
        return 0.0
    x = np.linspace(0.0, 1.0, len(values))
    return float(np.polyfit(x, values, 1)[0])


def onset_times(onset: np.ndarray | None, frames_per_second: float) -> np.ndarray:
    """Onset times (s) from the onset-strength descriptor, with an adaptive threshold.

    Flux above its 1-s moving median by half the track's spread counts, so quiet hats in a
    breakdown count as onsets and a loud intro does not hide the rest.
    """
    if onset is None or not len(onset) or onset.max() <= 0:
        return np.zeros(0)
    from scipy.ndimage import median_filter

    detail = onset - median_filter(onset, size=max(3, int(frames_per_second)) | 1)
    frames = find_peaks(detail, height=0.5 * float(np.std(detail)),
                        distance=max(1, round(0.05 * frames_per_second)))
    return frames / frames_per_second


def section_energy(
    descriptors: dict[str, np.ndarray], frames_per_second: float,
    bounds_s: Sequence[tuple[float, float]], beats: np.ndarray,
) -> list[EnergyData]:
    """Energy figures per section ``(start_s, end_s)`` from per-frame descriptors."""
    levels = section_levels(descriptors, bounds_s, frames_per_second)
    onsets = onset_times(descriptors.get("onset"), frames_per_second)
    rms = descriptors.get("rms")
    centroid = descriptors.get("centroid_hz")
    n_frames = len(next(iter(descriptors.values()))) if descriptors else 0
    rms_scale = float(np.max(section_rms(rms, bounds_s, frames_per_second), initial=0.0)
                      ) if rms is not None and len(rms) else np.nan

    energies = []
    for i, (start, end) in enumerate(bounds_s):
        frames = span(start, end, frames_per_second, n_frames)
        n_beats = int(((beats >= start) & (beats < end)).sum())
        n_onsets = int(((onsets >= start) & (onsets < end)).sum())
        tension = None
        if rms is not None and np.isfinite(rms_scale) and rms_scale > 0:
            tension = round(_linear_slope(np.asarray(rms[frames], float) / rms_scale), 4)
        bright = float(np.mean(centroid[frames])) if centroid is not None else np.nan
        fields = {name: round(float(values[i]), 4) for name, values in levels.items()
                  if np.isfinite(values[i])}
        energies.append(EnergyData(
            **fields,
            density=(round(n_onsets / n_beats, 4)
                     if n_beats and descriptors.get("onset") is not None else None),
            brightness=round(bright, 1) if np.isfinite(bright) else None,
            tension=tension,
        ))
    return energies


def merge_energy(
    measured: Sequence[EnergyData | None], predicted: Sequence[EnergyData]
) -> list[EnergyData]:
    """Each section's predicted fields (those not None) over its measured ones.

    >>> merge_energy([EnergyData(overall=1.0, density=2.0)], [EnergyData(overall=0.4)])
    [EnergyData(overall=0.4, bass=None, mid=None, high=None, density=2.0, brightness=None, \
tension=None, rating=None, curve=None)]
    """
    merged = []
    for ours, theirs in zip(measured, predicted, strict=True):
        values = {k: v for k, v in theirs.model_dump().items() if v is not None}
        merged.append((ours or EnergyData()).model_copy(update=values))
    return merged
