"""Cheap per-frame audio descriptors stored beside every backbone's embeddings.

They are aligned with the embedding frames (same ``frames_per_second``, frame ``i`` centred
on ``i / fps``), so energy targets and the energy head can pool them per section whatever
backbone made the embeddings.

======================  ==========================================================
``rms``                 RMS amplitude of the frame (linear; a full-scale sine is 0.707)
``bass``/``mid``/``high``  RMS amplitude in 20–150 Hz / 150–2500 Hz / 2.5–11 kHz
``onset``               spectral flux: mean rise of log magnitude from the last frame
``centroid_hz``         spectral centroid (brightness), 0 in digital silence
``band_00`` … ``band_31``  RMS amplitude in 32 overlapping mel-spaced triangular bands,
                        30 Hz – 11 kHz (their powers add up to the frame's; 0 above
                        the Nyquist frequency of a slower rate): the
                        spectrum's shape, which changes where a section brings new
                        instruments at the same loudness (:mod:`edm.decode.novelty`)
======================  ==========================================================

Examples
--------
>>> import numpy as np
>>> sine = np.sin(2 * np.pi * 1000 * np.arange(24000) / 24000).astype(np.float32)
>>> d = compute_descriptors(sine, 24000, 75.0)
>>> sorted(SUMMARY_NAMES), len(d["rms"]), len(d) == len(DESCRIPTOR_NAMES)
(['bass', 'centroid_hz', 'high', 'mid', 'onset', 'rms'], 76, True)
>>> [round(float(d[name][40]), 3) for name in ("rms", "mid", "bass")]
[0.707, 0.707, 0.0]
>>> round(float(d["centroid_hz"][40]))
1000
>>> max(BAND_NAMES, key=lambda name: d[name][40])  # 1 kHz: the band of the sine
'band_09'
>>> round(float(np.sqrt(sum(d[name][40] ** 2 for name in BAND_NAMES))), 2)  # the rms
0.71
"""

from __future__ import annotations

import numpy as np

from edm.backbones.frames import (
    frame_count,
    hop_length,
    one_blas_thread,
    stft_magnitude_blocks,
)
from edm.backbones.spectral import band_bins, mel_filterbank

#: One number per frame for the whole spectrum: what energy is measured and predicted from.
SUMMARY_NAMES: tuple[str, ...] = ("rms", "bass", "mid", "high", "onset", "centroid_hz")
#: The spectrum's shape, coarse: 32 bands resolve a bass line, a pad and a lead apart (on real
#: tracks 32 found more boundaries than 16, ``benchmarks/RESULTS.md``).
N_BANDS = 32
BANDS_RANGE_HZ = (30.0, 11000.0)
BAND_NAMES: tuple[str, ...] = tuple(f"band_{i:02d}" for i in range(N_BANDS))
DESCRIPTOR_NAMES: tuple[str, ...] = SUMMARY_NAMES + BAND_NAMES


class DescriptorFrames:
    """Accumulates descriptors from STFT magnitude blocks, so a backbone that computes the
    same STFT (``spectral``) can fill both from one transform."""

    def __init__(self, sample_rate: int, n_fft: int, total_frames: int) -> None:
        self.out = {name: np.empty(total_frames, dtype=np.float32) for name in DESCRIPTOR_NAMES}
        self.bins_hz = np.fft.rfftfreq(n_fft, 1.0 / sample_rate).astype(np.float32)
        self.bands = band_bins(sample_rate, n_fft)
        # Peak-1 triangles: band powers add up to the frame's. The edges are fixed in Hz for
        # every rate, so a band means the same frequencies for every backbone; at a rate whose
        # Nyquist frequency is under 11 kHz the bands above it hold zeros.
        self.triangles = mel_filterbank(sample_rate, n_fft, N_BANDS, *BANDS_RANGE_HZ,
                                        area_normalised=False)
        self.power_norm = 1.0 / (n_fft * n_fft * 0.375 / 2.0)  # as SpectralBackbone: mean(x²)
        self.previous: np.ndarray | None = None

    def add(self, first: int, magnitude: np.ndarray) -> None:
        """Describe frames ``first … first + len(magnitude)``; blocks must come in order."""
        out = self.out
        rows = slice(first, first + len(magnitude))
        power = np.square(magnitude) * self.power_norm
        out["rms"][rows] = np.sqrt(power.sum(axis=1))
        for name, bins in self.bands.items():
            out[name][rows] = np.sqrt(power[:, bins].sum(axis=1))
        for name, level in zip(BAND_NAMES, np.sqrt(power @ self.triangles).T, strict=True):
            out[name][rows] = level
        total_magnitude = magnitude.sum(axis=1)
        out["centroid_hz"][rows] = np.divide(
            magnitude @ self.bins_hz, total_magnitude,
            out=np.zeros(len(magnitude), np.float32), where=total_magnitude > 0,
        )
        # log(1 + x), not log1p: numpy's float32 log has a SIMD loop and log1p none (5x the
        # time, a third of the descriptors'); they differ by float32 rounding (5e-7).
        log_magnitude = np.log(np.float32(1.0) + np.float32(1000.0) * magnitude)
        stacked = (log_magnitude if self.previous is None
                   else np.vstack([self.previous, log_magnitude]))
        flux = np.maximum(np.diff(stacked, axis=0), 0.0).mean(axis=1)
        out["onset"][rows] = flux if self.previous is not None else np.concatenate([[0.0], flux])
        self.previous = log_magnitude[-1:]


def descriptor_n_fft(sample_rate: int) -> int:
    """About a 46 ms window whatever the rate: long enough for 20 Hz-wide bass bins."""
    return 1 << int(np.ceil(np.log2(0.046 * sample_rate)))


def compute_descriptors(
    audio: np.ndarray, sample_rate: int, frames_per_second: float
) -> dict[str, np.ndarray]:
    """Descriptors of :data:`DESCRIPTOR_NAMES`, each ``(1 + len(audio) // hop,)`` float32."""
    hop = hop_length(sample_rate, frames_per_second)
    n_fft = descriptor_n_fft(sample_rate)
    frames = DescriptorFrames(sample_rate, n_fft, frame_count(len(audio), hop))
    with one_blas_thread():
        for first, magnitude in stft_magnitude_blocks(audio, n_fft, hop):
            frames.add(first, magnitude)
    return frames.out
