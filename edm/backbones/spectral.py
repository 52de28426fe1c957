"""The ``spectral`` backbone: hand-made features at 50 fps, no weights, numpy/scipy only.

Each frame (``i / 50`` s, 20 ms hop, 46 ms Hann window at 22.05 kHz, the front end beat_this
uses) holds, in this order (:data:`FEATURE_NAMES`):

- ``mel_000 … mel_127``: log-compressed magnitude mel spectrogram, ``log1p(1000 * mel)``,
  30 Hz – 11 kHz. Timbre and harmony: what sections differ in.
- ``flux_0 … flux_7``: half-wave rectified first difference of the log-mel, averaged in eight
  groups of 16 bands (kick, bass, snare, hats each land in their own): the onsets beats are
  made of, per register, so a small TCN can tell a kick pattern from a hi-hat pattern.
- ``flux``: the same over all bands.
- ``rms_db``, ``bass_db``, ``mid_db``, ``high_db``: frame and band levels in dB / 80 (about
  -1 for silence, 0 for full scale); a drop is where the bass comes back.
- ``novelty_2s``, ``novelty_4s``, ``novelty_8s``: distance between the mean log-mel in the
  window before and the window after the frame (a checkerboard-kernel novelty); it peaks at
  section boundaries, at phrase scale, which a TCN's receptive field reaches only at high cost.

Absolute levels are kept (no per-track normalisation), so energy stays comparable between
tracks.

Examples
--------
>>> import numpy as np
>>> backbone = SpectralBackbone()
>>> backbone.frames_per_second, backbone.dim
(50.0, 144)
>>> backbone.embed(np.zeros(22050, dtype=np.float32)).shape
(51, 144)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from edm.backbones.base import BackboneDefaults
from edm.backbones.frames import (
    frame_count,
    hop_length,
    one_blas_thread,
    stft_magnitude_blocks,
)

if TYPE_CHECKING:
    from edm.backbones.descriptors import DescriptorFrames

N_MELS = 128
N_FLUX_GROUPS = 8
NOVELTY_SCALES_S = (2.0, 4.0, 8.0)
#: Band edges in Hz for the level features (and for :mod:`edm.backbones.descriptors`).
BANDS_HZ = {"bass": (20.0, 150.0), "mid": (150.0, 2500.0), "high": (2500.0, 11025.0)}
#: Levels are dB / DB_SCALE, so -80 dB (near silence) maps to -1.
DB_SCALE = 80.0

FEATURE_NAMES: tuple[str, ...] = (
    *(f"mel_{i:03d}" for i in range(N_MELS)),
    *(f"flux_{i}" for i in range(N_FLUX_GROUPS)),
    "flux",
    "rms_db",
    *(f"{band}_db" for band in BANDS_HZ),
    *(f"novelty_{scale:g}s" for scale in NOVELTY_SCALES_S),
)


def _hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + np.asarray(hz) / 700.0)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float,
                   f_max: float, *, area_normalised: bool = True) -> np.ndarray:
    """Triangular HTK-mel filters, ``(n_fft // 2 + 1, n_mels)``, area-normalised, or with a
    peak of 1 (overlapping triangles then sum to 1 across the range). Bands above the Nyquist
    frequency are all zeros."""
    bins_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_hz[:, None] - lower) / (centre - lower)
    falling = (upper - bins_hz[:, None]) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    if area_normalised:
        weights *= 2.0 / (upper - lower)  # equal area: wide high bands don't dominate
    return weights.astype(np.float32)


def band_bins(sample_rate: int, n_fft: int) -> dict[str, slice]:
    """The rfft bins of each band of :data:`BANDS_HZ`, as slices (bands are contiguous, and
    slicing a block is a view where a boolean mask would copy it)."""
    bins_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    return {name: slice(int(np.searchsorted(bins_hz, lo)), int(np.searchsorted(bins_hz, hi)))
            for name, (lo, hi) in BANDS_HZ.items()}


def _level_db(power_mean: np.ndarray) -> np.ndarray:
    return (10.0 * np.log10(power_mean + 1e-10) / DB_SCALE).astype(np.float32)


def novelty(features: np.ndarray, half_width: int) -> np.ndarray:
    """RMS distance between the mean of ``features`` over the ``half_width`` frames before
    each frame and over the ``half_width`` frames from it on (windows clipped at the ends)."""
    n = len(features)
    cumulative = np.zeros((n + 1, features.shape[1]), dtype=np.float64)
    np.cumsum(features, axis=0, out=cumulative[1:])
    index = np.arange(n)
    before_lo = np.maximum(index - half_width, 0)
    after_hi = np.minimum(index + half_width, n)
    before = (cumulative[index] - cumulative[before_lo]) / np.maximum(index - before_lo, 1)[:, None]
    after = (cumulative[after_hi] - cumulative[index]) / np.maximum(after_hi - index, 1)[:, None]
    distance = np.sqrt(np.mean((after - before) ** 2, axis=1))
    distance[0] = 0.0  # nothing before the first frame to differ from
    return distance.astype(np.float32)


class SpectralBackbone(BackboneDefaults):
    """Log-mel + onset + level + novelty features (see the module docstring)."""

    name = "spectral"
    #: Cheap and stateless: every decoding worker runs it whole.
    runs_in_workers = True
    sample_rate = 22050
    frames_per_second = 50.0
    n_fft = 1024
    f_min = 30.0
    f_max = 11000.0

    def __init__(self) -> None:
        self.hop = hop_length(self.sample_rate, self.frames_per_second)
        self._mel = mel_filterbank(self.sample_rate, self.n_fft, N_MELS, self.f_min, self.f_max)
        bands = band_bins(self.sample_rate, self.n_fft)
        self._band_bins = [bands[name] for name in BANDS_HZ]
        # Parseval with a Hann window (mean w² = 3/8), one-sided spectrum: the sum of
        # |X|² over rfft bins ≈ n_fft² · 3/8 · mean(x²) / 2, so this scale gives mean(x²).
        self._power_norm = 1.0 / (self.n_fft * self.n_fft * 0.375 / 2.0)

    @property
    def key(self) -> str:
        return self.name

    @property
    def dim(self) -> int:
        return len(FEATURE_NAMES)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return FEATURE_NAMES

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name, "key": self.key, "sample_rate": self.sample_rate,
            "frames_per_second": self.frames_per_second, "dim": self.dim, "n_fft": self.n_fft,
            "hop": self.hop, "n_mels": N_MELS, "f_min": self.f_min, "f_max": self.f_max,
            "checkpoint": None, "layers": None, "feature_names": list(FEATURE_NAMES),
        }

    def embed(self, audio: np.ndarray) -> np.ndarray:
        """Features for mono float32 audio at 22.05 kHz: ``(1 + len(audio) // 441, 144)``."""
        return self._run(audio, None)

    def embed_with_descriptors(self, audio: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """:meth:`embed` and :func:`~edm.backbones.descriptors.compute_descriptors` from one
        STFT (the descriptors use the same window and hop at this rate): half the FFT work."""
        from edm.backbones.descriptors import DescriptorFrames, descriptor_n_fft

        assert descriptor_n_fft(self.sample_rate) == self.n_fft
        frames = DescriptorFrames(self.sample_rate, self.n_fft, frame_count(len(audio), self.hop))
        return self._run(audio, frames), frames.out

    def _run(self, audio: np.ndarray, descriptors: DescriptorFrames | None) -> np.ndarray:
        with one_blas_thread():
            return self._features(audio, descriptors)

    def _features(self, audio: np.ndarray, descriptors: DescriptorFrames | None) -> np.ndarray:
        total = frame_count(len(audio), self.hop)
        out = np.empty((total, self.dim), dtype=np.float32)
        mel_end = N_MELS
        flux_end = mel_end + N_FLUX_GROUPS + 1
        previous = None
        for first, magnitude in stft_magnitude_blocks(audio, self.n_fft, self.hop):
            if descriptors is not None:
                descriptors.add(first, magnitude)
            rows = slice(first, first + len(magnitude))
            logmel = np.log1p(1000.0 * (magnitude @ self._mel))
            out[rows, :mel_end] = logmel
            # Onset flux needs the frame before the block: carry it across blocks.
            with_previous = logmel if previous is None else np.vstack([previous, logmel])
            diff = np.maximum(np.diff(with_previous, axis=0), 0.0)
            if previous is None:
                diff = np.vstack([np.zeros((1, N_MELS), np.float32), diff])
            previous = logmel[-1:]
            grouped = diff.reshape(len(diff), N_FLUX_GROUPS, -1).mean(axis=2)
            out[rows, mel_end:mel_end + N_FLUX_GROUPS] = grouped
            out[rows, flux_end - 1] = diff.mean(axis=1)
            power = np.square(magnitude) * self._power_norm
            out[rows, flux_end] = _level_db(power.sum(axis=1))
            for column, bins in enumerate(self._band_bins, start=flux_end + 1):
                out[rows, column] = _level_db(power[:, bins].sum(axis=1))
        level_end = flux_end + 1 + len(BANDS_HZ)
        # Novelty on 16 coarse bands: the distance is about spectral shape, not fine detail.
        coarse = out[:, :mel_end].reshape(total, 16, -1).mean(axis=2)
        for offset, scale_s in enumerate(NOVELTY_SCALES_S):
            width = max(1, round(scale_s * self.frames_per_second))
            out[:, level_end + offset] = novelty(coarse, width)
        return out
