"""Apply accepted findings to annotations and write them as a new version.

The grid operations here are also what the grid checks use to build the corrected grid they
test the next hypothesis on, so a suggested fix and the applied fix can never disagree.

Versioning: fixing ``DIR/name.yaml`` moves the old file to ``DIR/.history/name.v<N>.yaml``
(``load_annotations`` reads only ``DIR/*.yaml``, so old versions never count twice), bumps
``metadata.version``, records what was changed in ``metadata.provenance`` and raises
``metadata.confidence`` (a person looked at the track). ``promote=True`` makes the track Tier 1.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edm.audit.findings import GRID_FIX_ORDER, Finding
from edm.data.schema import (
    Cue,
    Metadata,
    TempoSegment,
    Tier,
    TrackAnnotation,
    iter_annotation_files,
    load_annotation,
    save_annotation,
)

#: Confidence given to a track whose suspect labels a person accepted fixes for.
REVIEWED_CONFIDENCE = 0.9
HISTORY_DIR = ".history"


class FixError(ValueError):
    """A fix that cannot be applied; the message names the track and the fix."""


# ---------------------------------------------------------------------------------------------
# Grid operations (pure)


def shift_grid(grid: list[TempoSegment], shift_s: float) -> list[TempoSegment]:
    """Move every segment by ``shift_s``; a first beat pushed below 0 s moves on one beat.

    >>> shift_grid([TempoSegment(start_s=0.01, bpm=120.0)], -0.03)[0]
    TempoSegment(start_s=0.48, bpm=120.0, beats_per_bar=4, beat_in_bar=2)
    """
    shifted: list[TempoSegment] = []
    for segment in grid:
        start = segment.start_s + shift_s
        beat_in_bar = segment.beat_in_bar
        while start < 0:
            start += segment.beat_period_s
            beat_in_bar = beat_in_bar % segment.beats_per_bar + 1
        shifted.append(
            segment.model_copy(update={"start_s": round(start, 6), "beat_in_bar": beat_in_bar})
        )
    return shifted


def scale_tempo(
    grid: list[TempoSegment], factor: float, *, odd_beats: bool = False
) -> list[TempoSegment]:
    """Multiply every tempo by ``factor`` (2 or 0.5 for octave errors).

    Halving keeps every other beat: the even ones (the segment's first beat) unless
    ``odd_beats``. Beat numbers follow the kept beats; the downbeat check fixes them later.
    """
    scaled: list[TempoSegment] = []
    for segment in grid:
        start, beat_in_bar = segment.start_s, segment.beat_in_bar
        if factor < 1 and odd_beats:
            start += segment.beat_period_s
            beat_in_bar = beat_in_bar % segment.beats_per_bar + 1
        if factor > 1:
            beat_in_bar = (2 * (beat_in_bar - 1)) % segment.beats_per_bar + 1
        elif factor < 1:
            beat_in_bar = ((beat_in_bar - 1) // 2) % segment.beats_per_bar + 1
        scaled.append(
            segment.model_copy(
                update={
                    "start_s": round(start, 6),
                    "bpm": segment.bpm * factor,
                    "beat_in_bar": beat_in_bar,
                }
            )
        )
    return scaled


def rotate_downbeat(grid: list[TempoSegment], beat_shift: int) -> list[TempoSegment]:
    """Renumber beats: the beat numbered ``n`` becomes ``n + beat_shift`` (mod the bar).

    >>> rotate_downbeat([TempoSegment(start_s=0.0, bpm=120.0, beat_in_bar=2)], -1)[0].beat_in_bar
    1
    """
    return [
        s.model_copy(update={"beat_in_bar": (s.beat_in_bar - 1 + beat_shift) % s.beats_per_bar + 1})
        for s in grid
    ]


def split_tempo(
    grid: list[TempoSegment], at_s: float, bpm: float, beat_in_bar: int
) -> list[TempoSegment]:
    """Start a new tempo segment at ``at_s`` (a beat), dropping segments it replaces."""
    kept = [s for s in grid if s.start_s < at_s - 1e-3]
    beats_per_bar = kept[-1].beats_per_bar if kept else 4
    new = TempoSegment(
        start_s=round(at_s, 6), bpm=bpm, beats_per_bar=beats_per_bar, beat_in_bar=beat_in_bar
    )
    return [*kept, new]


def apply_grid_fix(grid: list[TempoSegment], kind: str, fix: dict[str, Any]) -> list[TempoSegment]:
    """Apply one grid finding's ``fix`` to ``grid``."""
    if kind == "tempo_octave":
        return scale_tempo(
            grid, float(fix["bpm_factor"]), odd_beats=bool(fix.get("odd_beats", False))
        )
    if kind == "grid_phase":
        return shift_grid(grid, float(fix["shift_s"]))
    if kind == "tempo_change_ignored":
        return split_tempo(
            grid, float(fix["split_at_s"]), float(fix["new_bpm"]), int(fix["beat_in_bar"])
        )
    if kind == "downbeat_shift":
        return rotate_downbeat(grid, int(fix["beat_shift"]))
    raise FixError(f"not a grid fix: {kind}")


# ---------------------------------------------------------------------------------------------
# Cue operations


def _find_cue(cues: list[Cue], time_s: float, tolerance_s: float = 0.002) -> int | None:
    distances = [abs(cue.start_s - time_s) for cue in cues]
    if not distances or min(distances) > tolerance_s:
        return None
    return distances.index(min(distances))


def apply_cue_fix(cues: list[Cue], finding: Finding) -> list[Cue]:
    """Move, delete or add one cue; the cue is found by ``finding.time_s``."""
    fix = finding.fix
    if "add_cue_s" in fix:
        return [
            *cues,
            Cue(start_s=round(float(fix["add_cue_s"]), 6), name=str(fix.get("name", ""))),
        ]
    index = _find_cue(cues, finding.time_s)
    if index is None:
        raise FixError(f"track {finding.track_id}: no cue at {finding.time_s:.3f} s to fix")
    cue = cues[index]
    if fix.get("delete"):
        return cues[:index] + cues[index + 1 :]
    if "move_to_s" in fix:
        target = round(float(fix["move_to_s"]), 6)
        end = None if cue.end_s is None else round(cue.end_s + target - cue.start_s, 6)
        return [
            *cues[:index],
            cue.model_copy(update={"start_s": target, "end_s": end}),
            *cues[index + 1 :],
        ]
    raise FixError(f"track {finding.track_id}: fix {fix} has no cue action")


def apply_fixes(
    annotation: TrackAnnotation,
    findings: Iterable[Finding],
    *,
    promote: bool = False,
    note: str = "edm label-audit",
) -> TrackAnnotation:
    """Return ``annotation`` with the findings' fixes applied and its metadata bumped.

    Grid fixes go in :data:`GRID_FIX_ORDER` (each one was estimated on the grid the earlier
    ones produce); cue fixes follow, on absolute times.
    """
    findings = [f for f in findings if f.track_id == annotation.track_id]
    if not findings:
        return annotation
    grid = list(annotation.grid)
    for kind in GRID_FIX_ORDER:
        for finding in (f for f in findings if f.kind == kind):
            grid = apply_grid_fix(grid, kind, finding.fix)
    cues = list(annotation.cues)
    # Deletes and moves address cues by their original time; do them before adding any.
    for finding in sorted(
        (f for f in findings if not f.is_grid), key=lambda f: "add_cue_s" in f.fix
    ):
        cues = apply_cue_fix(cues, finding)
    if annotation.end_s is not None and grid:
        # A cue moved by a grid shift could land a hair past the end; keep the file valid.
        cues = [cue for cue in cues if cue.start_s < annotation.end_s]
    old = annotation.metadata
    provenance = dict(old.provenance)
    provenance[f"audit_v{old.version + 1}"] = f"{note}: " + ", ".join(
        sorted(f"{f.kind}@{f.time_s:.2f}s" for f in findings)
    )
    metadata = Metadata(
        tier=Tier.VERIFIED if promote else old.tier,
        confidence=max(old.confidence, REVIEWED_CONFIDENCE),
        source=old.source,
        version=old.version + 1,
        provenance=provenance,
    )
    # Validate again (model_copy would not): cues sorted, grid increasing, times in range.
    data = {**annotation.model_dump(), "grid": grid, "cues": cues, "metadata": metadata}
    return TrackAnnotation.model_validate(data)


# ---------------------------------------------------------------------------------------------
# Reading accepted fixes and writing versions


def read_fixes_csv(path: str | Path) -> list[Finding]:
    """Rows of a report whose ``accept`` column is truthy (1/yes/true/y/x)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as stream:
            rows = list(csv.DictReader(stream))
    except OSError as error:
        raise FixError(f"{path}: cannot read ({error.strerror})") from error
    if rows and "accept" not in rows[0]:
        raise FixError(f"{path}: no 'accept' column; fill one in with 1 for fixes to apply")
    accepted: list[Finding] = []
    for number, row in enumerate(rows, start=2):
        if str(row.get("accept", "")).strip().lower() not in {"1", "yes", "true", "y", "x"}:
            continue
        try:
            accepted.append(Finding.from_row(row))
        except (KeyError, ValueError) as error:
            raise FixError(f"{path}:{number}: bad row ({error})") from error
    return accepted


@dataclass
class ApplySummary:
    """What :func:`apply_to_directory` changed."""

    tracks_changed: list[str] = field(default_factory=list)
    fixes_applied: int = 0
    problems: list[str] = field(default_factory=list)


def apply_to_directory(
    directory: str | Path,
    findings: Iterable[Finding],
    *,
    promote: bool = False,
    out_dir: str | Path | None = None,
) -> ApplySummary:
    """Apply fixes to the annotation files in ``directory``, one new version per track.

    With ``out_dir`` the new versions go there (the source folder is untouched); otherwise the
    file is replaced and its old version kept under ``.history/``. A bad fix is reported and
    skipped with the rest of that track's fixes; other tracks continue.
    """
    directory = Path(directory)
    by_track: dict[str, list[Finding]] = {}
    for finding in findings:
        by_track.setdefault(finding.track_id, []).append(finding)
    summary = ApplySummary()
    found: set[str] = set()
    for path in iter_annotation_files(directory):
        try:
            annotation = load_annotation(path)
        except ValueError as error:
            if by_track:
                summary.problems.append(str(error))
            continue
        track_findings = by_track.get(annotation.track_id)
        if not track_findings:
            if out_dir is not None:
                # The output folder is a complete annotation set, not just the changed tracks.
                save_annotation(annotation, Path(out_dir) / path.name)
            continue
        found.add(annotation.track_id)
        try:
            fixed = apply_fixes(annotation, track_findings, promote=promote)
        except (FixError, ValueError, KeyError) as error:
            summary.problems.append(f"{path}: fix not applied ({error})")
            continue
        if out_dir is None:
            history = directory / HISTORY_DIR
            history.mkdir(exist_ok=True)
            shutil.copy2(path, history / f"{path.stem}.v{annotation.metadata.version}.yaml")
            save_annotation(fixed, path)
        else:
            save_annotation(fixed, Path(out_dir) / path.name)
        summary.tracks_changed.append(annotation.track_id)
        summary.fixes_applied += len(track_findings)
    for track_id in sorted(set(by_track) - found):
        summary.problems.append(f"{directory}: no annotation for track {track_id}")
    return summary
