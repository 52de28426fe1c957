"""Energy of decoded sections: measured from the descriptors, or predicted by the energy head.

- :func:`section_energy` — what the audio descriptors say, for every field of
  :class:`~edm.data.schema.EnergyData`, each meaning the same in every track:

  - ``overall``/``bass``/``mid``/``high``: the band levels of
    :func:`edm.heads.energy.section_levels` (the same definition the energy head is trained on
    when nobody rated a track): the section's RMS level in dB re full scale on the fixed scale
    of :func:`edm.data.schema.energy_from_db`, −60 dB → 0, 0 dB → 1; ``level_db`` is
    ``overall``'s level in dB;
  - ``density``: onsets per beat (:func:`onset_times` in the section / grid beats in it);
  - ``brightness``: the mean spectral centroid (``centroid_hz``) in Hz over the section's
    frames that are not digital silence; not mapped to [0, 1];
  - ``tension``: how much ``overall`` rises from the section's start to its end: the fitted
    line's end minus its start through the energy of 0.5-s blocks on the same scale
    (:func:`block_energy`; a riser from −30 to −18 dB scores +0.2; a steady drop about 0;
    a fade-out < 0).
- :func:`merge_energy` — the energy head's predictions over the measured figures: where heads
  carry an energy head, ``edm analyze`` reports its numbers for what it predicts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from edm.data.schema import EnergyData, energy_from_db, level_db
from edm.decode.peaks import find_peaks
from edm.heads.activations import span
from edm.heads.energy import section_db, section_levels


def rise(values: np.ndarray) -> float:
    """End minus start of the least-squares line through ``values`` (0 for fewer than two).

    >>> round(rise(np.array([0.2, 0.3, 0.4])), 3)
    0.2
    """
    if len(values) < 2:
        return 0.0
    x = np.linspace(0.0, 1.0, len(values))
    return float(np.polyfit(x, values, 1)[0])


#: Tension's line is fitted to the energy of blocks this long (RMS pooled over their frames),
#: so the dips between kicks neither hit the energy floor nor make it depend on the level.
TENSION_BLOCK_S = 0.5


def block_energy(rms: np.ndarray, frames_per_second: float) -> np.ndarray:
    """Energy (:func:`~edm.data.schema.energy_from_db`) of consecutive
    :data:`TENSION_BLOCK_S` blocks of per-frame RMS (a last partial block is dropped unless it
    is the only one)."""
    rms = np.asarray(rms, dtype=float)
    size = min(max(1, round(TENSION_BLOCK_S * frames_per_second)), max(len(rms), 1))
    power = np.square(rms[: len(rms) // size * size]).reshape(-1, size).mean(axis=1)
    return np.asarray(energy_from_db(level_db(np.sqrt(power))))


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
    overall_db = section_db(descriptors, bounds_s, frames_per_second).get("overall")
    onsets = onset_times(descriptors.get("onset"), frames_per_second)
    rms = descriptors.get("rms")
    centroid = descriptors.get("centroid_hz")
    n_frames = len(next(iter(descriptors.values()))) if descriptors else 0

    energies = []
    for i, (start, end) in enumerate(bounds_s):
        frames = span(start, end, frames_per_second, n_frames)
        n_beats = int(((beats >= start) & (beats < end)).sum())
        n_onsets = int(((onsets >= start) & (onsets < end)).sum())
        tension = None
        if rms is not None and len(rms):
            tension = round(rise(block_energy(rms[frames], frames_per_second)), 4)
        sounding = centroid[frames][centroid[frames] > 0] if centroid is not None else []
        fields = {name: round(float(values[i]), 4) for name, values in levels.items()
                  if np.isfinite(values[i])}
        energies.append(EnergyData(
            **fields,
            level_db=round(float(overall_db[i]), 2) if overall_db is not None else None,
            density=(round(n_onsets / n_beats, 4)
                     if n_beats and descriptors.get("onset") is not None else None),
            brightness=round(float(np.mean(sounding)), 1) if len(sounding) else None,
            tension=tension,
        ))
    return energies


def merge_energy(
    measured: Sequence[EnergyData | None], predicted: Sequence[EnergyData]
) -> list[EnergyData]:
    """Each section's predicted fields (those not None) over its measured ones.

    >>> merge_energy([EnergyData(overall=1.0, density=2.0)], [EnergyData(overall=0.4)])
    [EnergyData(overall=0.4, bass=None, mid=None, high=None, level_db=None, density=2.0, \
brightness=None, tension=None, rating=None, curve=None)]
    """
    merged = []
    for ours, theirs in zip(measured, predicted, strict=True):
        values = {k: v for k, v in theirs.model_dump().items() if v is not None}
        merged.append((ours or EnergyData()).model_copy(update=values))
    return merged
