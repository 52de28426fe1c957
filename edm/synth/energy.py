"""Per-section energy measured from the rendered mix, so the labels describe what is audible.

Bands: bass below 200 Hz (kick, sub, bass), mid 200 Hz – 2.5 kHz (chords, leads, snare body),
high above 2.5 kHz (hats, noise, air). Each band's value is the section's RMS level in that
band in dB re full scale on the fixed scale of :func:`edm.data.schema.energy_from_db` (−60 dB →
0, 0 dB → 1), the scale edm's analysis reports, so a quiet mix scores lower than a loud one;
``level_db`` is the whole mix's level. ``density`` (drum hits per beat)
comes from the score, ``brightness`` is the mean spectral centroid (Hz) and ``tension`` the
energy slope across the section relative to its mean level (positive in build-ups).
"""

from __future__ import annotations

import numpy as np

from edm.data.schema import EnergyData, energy_from_db, level_db

BANDS_HZ = {"bass": (20.0, 200.0), "mid": (200.0, 2500.0), "high": (2500.0, 20000.0)}
_FRAME = 4096


def band_powers(mono: np.ndarray, sample_rate: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Frame centre times (s) and per-frame power in each band (non-overlapping frames),
    scaled so that the whole spectrum's sums to the frame's mean square (Parseval)."""
    n_frames = len(mono) // _FRAME
    window = np.hanning(_FRAME)
    frames = mono[: n_frames * _FRAME].reshape(n_frames, _FRAME) * window
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2 * (2.0 / (_FRAME * np.sum(window**2)))
    freqs = np.fft.rfftfreq(_FRAME, 1.0 / sample_rate)
    bands = {
        name: power[:, (freqs >= low) & (freqs < high)].sum(axis=1)
        for name, (low, high) in BANDS_HZ.items()
    }
    bands["overall"] = power.sum(axis=1)
    centroid = (power * freqs).sum(axis=1) / np.maximum(power.sum(axis=1), 1e-12)
    bands["centroid_hz"] = centroid
    times = (np.arange(n_frames) + 0.5) * _FRAME / sample_rate
    return times, bands


def section_energy(
    audio: np.ndarray,
    sample_rate: int,
    bounds_s: list[tuple[float, float]],
    hits_per_beat: list[float],
) -> list[EnergyData]:
    """EnergyData for each ``(start_s, end_s)`` section of a ``(n, channels)`` mix."""
    mono = audio.mean(axis=1) if audio.ndim == 2 else audio
    times, bands = band_powers(mono.astype(np.float64), sample_rate)
    names = ("overall", "bass", "mid", "high")
    raw = {name: [] for name in names}
    extra: list[tuple[float, float]] = []
    for start, end in bounds_s:
        inside = (times >= start) & (times < end)
        if not inside.any():  # a section shorter than a frame: take the nearest frame
            nearest = np.searchsorted(times, (start + end) / 2)
            inside = np.zeros(len(times), bool)
            inside[int(np.clip(nearest, 0, len(times) - 1))] = True
        for name in names:
            raw[name].append(float(np.sqrt(bands[name][inside].mean())))
        loud = np.sqrt(bands["overall"][inside])
        slope = np.polyfit(np.arange(len(loud)), loud, 1)[0] * len(loud) if len(loud) > 2 else 0.0
        extra.append((float(bands["centroid_hz"][inside].mean()),
                      float(slope / max(loud.mean(), 1e-12))))
    db = {name: level_db(np.asarray(values)) for name, values in raw.items()}
    level = {name: energy_from_db(values) for name, values in db.items()}
    return [
        EnergyData(
            overall=round(float(level["overall"][i]), 4),
            bass=round(float(level["bass"][i]), 4),
            mid=round(float(level["mid"][i]), 4),
            high=round(float(level["high"][i]), 4),
            level_db=round(float(db["overall"][i]), 2),
            density=round(hits_per_beat[i], 3),
            brightness=round(extra[i][0], 1),
            tension=round(extra[i][1], 4),
        )
        for i in range(len(bounds_s))
    ]
