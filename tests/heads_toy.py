"""Toy embeddings with exact truth for the heads' tests (no audio, built in milliseconds).

Each toy track has a steady grid and a section change every 8 bars. Its embedding channels
carry what the spectral backbone carries, weakly and with noise: an onset pulse at every beat,
a smaller extra pulse on downbeats, a per-section timbre vector and a novelty bump at section
changes (plus spurious bumps, as real novelty has).
"""

from __future__ import annotations

import numpy as np

from edm.data.schema import (
    Cue,
    EnergyData,
    Metadata,
    Section,
    TempoSegment,
    Tier,
    TrackAnnotation,
    TrackIdentity,
    beat_grid,
)
from edm.heads.train import TrackData

FPS = 50.0
DIM = 12
LABELS = ("intro", "buildup", "drop", "breakdown", "outro")


def toy_track(
    seed: int,
    *,
    duration_s: float = 40.0,
    tier: Tier = Tier.DJ_SOFTWARE,
    phase_error_s: float = 0.0,
) -> tuple[TrackData, TrackAnnotation]:
    """(training track with labels, exact truth). ``phase_error_s`` shifts the labelled grid."""
    rng = np.random.default_rng(seed)
    bpm = float(rng.uniform(120, 132))
    start_s = float(rng.uniform(0.0, 0.45))
    bar_s = 4 * 60.0 / bpm
    bounds = [0.0] + [
        start_s + bar_s * k for k in range(4, 200, 4) if start_s + bar_s * k < duration_s - 4
    ]
    sections = []
    for index, first in enumerate(bounds):
        last = bounds[index + 1] if index + 1 < len(bounds) else duration_s
        level = float(rng.uniform(0.2, 1.0))
        sections.append(
            Section(
                start_s=first,
                end_s=last,
                label=LABELS[index % len(LABELS)],
                energy=EnergyData(overall=level, bass=level, mid=0.5, high=level**2),
            )
        )
    grid = [TempoSegment(start_s=start_s, bpm=bpm)]
    identity = TrackIdentity(
        duration_s=duration_s, content_hash=f"toy{seed:04d}", genre=f"g{seed % 2}"
    )
    truth = TrackAnnotation(
        track=identity,
        grid=grid,
        sections=sections,
        cues=[Cue(start_s=s.start_s, name=s.label.title() if s.label else "") for s in sections],
        metadata=Metadata(tier=Tier.VERIFIED, source="toy"),
    )
    n = int(duration_s * FPS)
    x = rng.normal(0.0, 0.35, (n, DIM)).astype(np.float32)
    times, numbers = beat_grid(grid, duration_s)
    decay = np.exp(-np.arange(4) / 1.5)
    for time_s, number in zip(times, numbers, strict=True):
        i = round(time_s * FPS)
        piece = slice(i, min(i + 4, n))
        x[piece, 0] += decay[: piece.stop - i]
        if number == 1:
            x[piece, 1] += 0.8 * decay[: piece.stop - i]
    rms = np.zeros(n, dtype=np.float32)
    for section in sections:
        first, last = int(section.start_s * FPS), int(section.end_s * FPS)
        x[first:last, 2:8] += rng.normal(0.0, 0.6, 6)
        x[first:last, 8] += section.energy.overall  # type: ignore[union-attr]
        rms[first:last] = section.energy.overall  # type: ignore[union-attr]
        bump = np.exp(-0.5 * ((np.arange(n) - first) / (0.3 * FPS)) ** 2)
        x[:, 9] += 1.5 * bump
    for fake in rng.uniform(0, duration_s, 2):
        x[:, 9] += 0.7 * np.exp(-0.5 * ((np.arange(n) - fake * FPS) / (0.3 * FPS)) ** 2)
    labelled_grid = [TempoSegment(start_s=max(start_s + phase_error_s, 0.0), bpm=bpm)]
    labels = truth.model_copy(
        update={
            "grid": labelled_grid,
            "sections": [],
            "metadata": Metadata(tier=tier, source="toy-labels"),
        }
    )
    descriptors = {"rms": rms, "bass": rms, "mid": np.full(n, 0.5, np.float32), "high": rms**2}
    track = TrackData(labels.track_id, x, FPS, labels, descriptors)
    return track, truth


def toy_set(
    seeds: range | list[int], **options: object
) -> tuple[list[TrackData], dict[str, TrackAnnotation]]:
    pairs = [toy_track(seed, **options) for seed in seeds]  # type: ignore[arg-type]
    return [p[0] for p in pairs], {p[1].track_id: p[1] for p in pairs}
