"""A flat CSV of cues: one row per cue, for spreadsheets and quick scripts.

Columns (:data:`CUE_COLUMNS`): ``track_id`` (content hash, else Rekordbox TrackID, else path),
``path``, ``artist``, ``title``, ``kind`` (memory/hot), ``slot`` (0 = A; empty for memory cues),
``start_s``, ``end_s`` (loops only), ``name``, ``color`` ('#RRGGBB' or empty),
``beat_in_bar`` (the grid's beat number at the cue, 1 = downbeat; empty without a grid) and
``grid_offset_ms`` (signed distance to the nearest grid beat).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edm.data.schema import TrackAnnotation, beat_grid

CUE_COLUMNS = (
    "track_id", "path", "artist", "title", "kind", "slot", "start_s", "end_s", "name", "color",
    "beat_in_bar", "grid_offset_ms",
)


def nearest_beats(
    annotation: TrackAnnotation, times_s: Sequence[float]
) -> tuple[np.ndarray, np.ndarray] | None:
    """Signed offsets (s) of ``times_s`` from their nearest grid beats, and those beats' numbers.

    ``None`` without a grid. The grid is expanded once, to the track's end or a bar past the
    last time when that is later (or the duration is unknown).

    >>> from edm.data.schema import TrackIdentity, TempoSegment
    >>> ann = TrackAnnotation(track=TrackIdentity(duration_s=10.0),
    ...                       grid=[TempoSegment(start_s=0.5, bpm=120.0)])
    >>> offsets, numbers = nearest_beats(ann, [0.52, 2.74])
    >>> offsets.round(3).tolist(), numbers.tolist()
    ([0.02, 0.24], [1, 1])
    """
    if not annotation.grid:
        return None
    times = np.asarray(times_s, dtype=float)
    longest_bar = 4 * max(s.beat_period_s for s in annotation.grid)
    end_s = max(annotation.track.duration_s or 0.0, float(times.max(initial=0.0)) + longest_bar)
    beats, numbers = beat_grid(annotation.grid, end_s)
    if len(beats) == 0 or len(times) == 0:
        return None
    after = np.clip(np.searchsorted(beats, times), 1, max(len(beats) - 1, 1))
    before = after - 1
    if len(beats) == 1:
        nearest = np.zeros(len(times), dtype=int)
    else:
        nearest = np.where(
            np.abs(times - beats[before]) <= np.abs(beats[after] - times), before, after
        )
    return times - beats[nearest], numbers[nearest]


def write_cue_csv(annotations: Iterable[TrackAnnotation], path: str | Path) -> int:
    """Write every cue of ``annotations`` to ``path``; returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=CUE_COLUMNS)
        writer.writeheader()
        for annotation in annotations:
            near = nearest_beats(annotation, [cue.start_s for cue in annotation.cues])
            for index, cue in enumerate(annotation.cues):
                writer.writerow({
                    "track_id": annotation.track_id, "path": annotation.track.path or "",
                    "artist": annotation.track.artist, "title": annotation.track.title,
                    "kind": cue.kind, "slot": "" if cue.slot is None else cue.slot,
                    "start_s": f"{cue.start_s:.3f}",
                    "end_s": "" if cue.end_s is None else f"{cue.end_s:.3f}",
                    "name": cue.name, "color": cue.color or "",
                    "beat_in_bar": "" if near is None else int(near[1][index]),
                    "grid_offset_ms": "" if near is None else f"{near[0][index] * 1000:.1f}",
                })
                rows += 1
    return rows
