"""Statistics and validation over an annotations folder (``edm data stats|validate``).

Validation findings are errors unless noted:

- ``schema``: the file does not load (the message names file and field);
- ``cue_off_grid``: a cue more than ``grid_tolerance_s`` (30 ms) from the nearest grid beat;
- ``cue_past_end``: a cue after the track's end (Rekordbox's ``TotalTime`` is whole seconds,
  so ``end_tolerance_s`` of slack);
- ``duplicate``: two files for the same audio (same content hash, or same path);
- ``missing_audio`` (warning): no path, or the file is not on this machine;
- ``no_grid`` (warning): a labelled track without a beat grid.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from edm.data.csv_io import nearest_beats
from edm.data.schema import (
    AnnotationError,
    TrackAnnotation,
    iter_annotation_files,
    load_annotation,
)

GRID_TOLERANCE_S = 0.030
END_TOLERANCE_S = 1.0


@dataclass(frozen=True)
class Finding:
    """One validation result; :meth:`line` is the one-line message."""

    file: str
    check: str
    message: str
    severity: Literal["error", "warning"] = "error"
    track: str = ""

    def line(self) -> str:
        where = f"{self.file}: {self.track}: " if self.track else f"{self.file}: "
        return where + self.message


@dataclass
class LoadedFolder:
    """Annotations of a folder with the file each came from, and the files that failed."""

    annotations: list[tuple[Path, TrackAnnotation]] = field(default_factory=list)
    errors: list[AnnotationError] = field(default_factory=list)


def load_folder(
    directory: str | Path, progress: Callable[[int, int], None] | None = None
) -> LoadedFolder:
    """Load every annotation file; bad files become errors rather than exceptions.

    ``progress(done, total)`` is called after each file.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise AnnotationError(f"{directory}: not a folder of annotations")
    folder = LoadedFolder()
    files = list(iter_annotation_files(directory))
    for done, path in enumerate(files, start=1):
        if progress is not None:
            progress(done, len(files))
        try:
            folder.annotations.append((path, load_annotation(path)))
        except AnnotationError as error:
            folder.errors.append(error)
    return folder


def _label(annotation: TrackAnnotation) -> str:
    name = " - ".join(p for p in (annotation.track.artist, annotation.track.title) if p)
    return name or annotation.track_id


def audio_present(annotation: TrackAnnotation) -> bool:
    return bool(annotation.track.path) and Path(annotation.track.path).is_file()


def _schema_finding(error: AnnotationError) -> Finding:
    # AnnotationError messages read "FILE: field …"; keep the two parts apart.
    file, _, message = str(error).partition(": ")
    return Finding(file, "schema", message or file)


def validate_folder(
    folder: LoadedFolder,
    *,
    grid_tolerance_s: float = GRID_TOLERANCE_S,
    end_tolerance_s: float = END_TOLERANCE_S,
) -> list[Finding]:
    """Check every annotation; see the module docstring for the checks."""
    findings = [_schema_finding(error) for error in folder.errors]
    by_hash: dict[str, list[Path]] = defaultdict(list)
    by_path: dict[str, list[Path]] = defaultdict(list)
    for file, annotation in folder.annotations:
        label = _label(annotation)

        def add(check: str, message: str, severity: Literal["error", "warning"] = "error",
                file: Path = file, label: str = label) -> None:
            findings.append(Finding(str(file), check, message, severity, label))

        duration = annotation.track.duration_s
        near = nearest_beats(annotation, [cue.start_s for cue in annotation.cues])
        for index, cue in enumerate(annotation.cues):
            if duration is not None and cue.start_s > duration + end_tolerance_s:
                add("cue_past_end", f"cue at {cue.start_s:.3f} s is past the end ({duration} s)")
            elif near is not None and abs(near[0][index]) > grid_tolerance_s:
                add(
                    "cue_off_grid",
                    f"{cue.kind} cue at {cue.start_s:.3f} s is {near[0][index] * 1000:+.0f} ms "
                    f"from the nearest beat (tolerance {grid_tolerance_s * 1000:.0f} ms)",
                )
        if not annotation.grid and annotation.cues:
            add("no_grid", "has cues but no beat grid", "warning")
        if not annotation.track.path:
            add("missing_audio", "no audio path", "warning")
        elif not audio_present(annotation):
            add("missing_audio", f"audio not found: {annotation.track.path}", "warning")
        if annotation.track.content_hash:
            by_hash[annotation.track.content_hash].append(file)
        if annotation.track.path:
            by_path[annotation.track.path].append(file)
    for kind, groups in (("content hash", by_hash), ("path", by_path)):
        for key, files in groups.items():
            for other in files[1:]:
                findings.append(Finding(
                    str(other), "duplicate",
                    f"same {kind} as {files[0].name} ({key[:40]})",
                ))
    return findings


def _bpm_bin(bpm: float) -> str:
    low = int(bpm // 10 * 10)
    return f"{low}-{low + 10}"


def folder_stats(folder: LoadedFolder) -> dict[str, Any]:
    """Summary figures of a folder, JSON-ready (see ``edm data stats --help``)."""
    annotations = [annotation for _, annotation in folder.annotations]
    cue_counts = [len(a.cues) for a in annotations]
    all_cues = [cue for a in annotations for cue in a.cues]
    bpms = [a.bpm or (a.grid[0].bpm if a.grid else None) for a in annotations]
    missing = [str(path) for path, a in folder.annotations if not audio_present(a)]
    histogram = Counter(min(count, 9) for count in cue_counts)
    return {
        "tracks": len(annotations),
        "unreadable_files": len(folder.errors),
        "by_tier": dict(sorted(Counter(str(int(a.metadata.tier)) for a in annotations).items())),
        "by_source": dict(Counter(a.metadata.source for a in annotations).most_common()),
        "cues": {
            "total": len(all_cues),
            "per_track_mean": round(sum(cue_counts) / len(annotations), 3) if annotations else 0,
            "tracks_without_cues": sum(1 for c in cue_counts if c == 0),
            "per_track_histogram": {
                ("9+" if k == 9 else str(k)): v for k, v in sorted(histogram.items())
            },
            "memory": sum(1 for c in all_cues if c.kind == "memory"),
            "hot": sum(1 for c in all_cues if c.kind == "hot"),
            "loops": sum(1 for c in all_cues if c.is_loop),
            "named": sum(1 for c in all_cues if c.name),
        },
        "grid": {
            "tracks_with_grid": sum(1 for a in annotations if a.grid),
            "tracks_with_tempo_change": sum(
                1 for a in annotations if len({round(s.bpm, 2) for s in a.grid}) > 1
            ),
        },
        "bpm_histogram": {
            _bpm_bin(low): count
            for low, count in sorted(Counter(b // 10 * 10 for b in bpms if b).items())
        },
        "keys": dict(Counter(a.key for a in annotations if a.key).most_common()),
        "missing_audio": len(missing),
        "missing_audio_files": missing,
    }


def findings_json(findings: list[Finding]) -> list[dict[str, str]]:
    return [asdict(finding) for finding in findings]
