"""A flat CSV of cues: one row per cue, for spreadsheets and quick scripts.

Columns (:data:`CUE_COLUMNS`): ``track_id`` (content hash, else Rekordbox TrackID, else path),
``path``, ``artist``, ``title``, ``kind`` (memory/hot), ``slot`` (0 = A; empty for memory cues),
``start_s``, ``end_s`` (loops only), ``name``, ``color`` ('#RRGGBB' or empty),
``beat_in_bar`` (the grid's beat number at the cue, 1 = downbeat; empty without a grid) and
``grid_offset_ms`` (signed distance to the nearest grid beat).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from edm.data.schema import TrackAnnotation, beat_grid

CUE_COLUMNS = (
    "track_id", "path", "artist", "title", "kind", "slot", "start_s", "end_s", "name", "color",
    "beat_in_bar", "grid_offset_ms",
)


def nearest_beat(
    annotation: TrackAnnotation, time_s: float
) -> tuple[float, int] | None:
    """Signed offset (s) from the grid beat nearest ``time_s`` and that beat's number.

    ``None`` without a grid. Without a duration the grid is expanded a bar past ``time_s``.
    """
    if not annotation.grid:
        return None
    end_s = annotation.track.duration_s or 0.0
    end_s = max(end_s, time_s + 4 * max(s.beat_period_s for s in annotation.grid))
    times, numbers = beat_grid(annotation.grid, end_s)
    if len(times) == 0:
        return None
    after = int(np.searchsorted(times, time_s))
    candidates = [i for i in (after - 1, after) if 0 <= i < len(times)]
    index = min(candidates, key=lambda i: abs(times[i] - time_s))
    return float(time_s - times[index]), int(numbers[index])


def write_cue_csv(annotations: Iterable[TrackAnnotation], path: str | Path) -> int:
    """Write every cue of ``annotations`` to ``path``; returns the number of rows."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", newline="", encoding="utf-8") as stream:
        writer = csv.DictWriter(stream, fieldnames=CUE_COLUMNS)
        writer.writeheader()
        for annotation in annotations:
            for cue in annotation.cues:
                near = nearest_beat(annotation, cue.start_s)
                writer.writerow({
                    "track_id": annotation.track_id, "path": annotation.track.path or "",
                    "artist": annotation.track.artist, "title": annotation.track.title,
                    "kind": cue.kind, "slot": "" if cue.slot is None else cue.slot,
                    "start_s": f"{cue.start_s:.3f}",
                    "end_s": "" if cue.end_s is None else f"{cue.end_s:.3f}",
                    "name": cue.name, "color": cue.color or "",
                    "beat_in_bar": "" if near is None else near[1],
                    "grid_offset_ms": "" if near is None else f"{near[0] * 1000:.1f}",
                })
                rows += 1
    return rows
