"""The annotation schema: what edm knows about one track, one YAML file per track.

Conventions
-----------
- Every time is in seconds from the start of the decoded audio, and its field name says so
  (``start_s``, ``end_s``, ``duration_s``). Tempo is ``bpm``.
- A beat grid is a list of :class:`TempoSegment`; each one runs from its ``start_s`` to the
  next segment's start (the last one to the end of the track). The first segment also extends
  backwards to time 0, as the grid does in DJ software.
- ``beat_in_bar`` is 1-based, like Rekordbox's ``Battito``: 1 means a downbeat.
- Cues mark *some* section boundaries. Only ``tier == 1`` (verified) tracks promise that every
  boundary is annotated; see :class:`Tier`.

Examples
--------
>>> grid = [TempoSegment(start_s=0.5, bpm=120.0)]
>>> beat_times(grid, end_s=3.0).tolist()
[0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
>>> downbeat_times(grid, end_s=3.0).tolist()
[0.5, 2.5]
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterator
from enum import IntEnum
from itertools import pairwise
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SCHEMA_VERSION = 1

#: Times above this are almost certainly milliseconds passed as seconds (10 hours).
_PLAUSIBLE_MAX_S = 36_000.0

#: libyaml's C emitter and parser when installed: ~10x faster on a 10,000-track import.
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class AnnotationError(ValueError):
    """An annotation file that cannot be read; the message names the file and the field."""


class Tier(IntEnum):
    """How far a track's labels can be trusted.

    - ``VERIFIED`` (1): checked by a person; boundaries complete; used for validation.
    - ``DJ_SOFTWARE`` (2): labels as DJ software wrote them; noisy and incomplete.
    - ``UNLABELED`` (3): no usable labels; heads may pseudo-label it.
    """

    VERIFIED = 1
    DJ_SOFTWARE = 2
    UNLABELED = 3


def _check_time(value: float, field: str) -> float:
    if value < 0:
        raise ValueError(f"{field} must be >= 0 seconds, got {value}")
    if value > _PLAUSIBLE_MAX_S:
        raise ValueError(
            f"{field}={value} is over 10 hours; is it in milliseconds instead of seconds?"
        )
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TempoSegment(_Model):
    """One stretch of a beat grid at a constant tempo (a Rekordbox ``TEMPO`` entry)."""

    start_s: float = Field(description="First beat of the segment, in seconds.")
    bpm: float = Field(gt=0, le=1000)
    beats_per_bar: int = Field(default=4, ge=1, le=16)
    beat_in_bar: int = Field(
        default=1, ge=1, description="Beat number of the first beat; 1 = downbeat."
    )

    @field_validator("start_s")
    @classmethod
    def _start(cls, value: float) -> float:
        return _check_time(value, "start_s")

    @model_validator(mode="after")
    def _beat_in_range(self) -> TempoSegment:
        if self.beat_in_bar > self.beats_per_bar:
            raise ValueError(
                f"beat_in_bar={self.beat_in_bar} exceeds beats_per_bar={self.beats_per_bar}"
            )
        return self

    @property
    def beat_period_s(self) -> float:
        return 60.0 / self.bpm


class Cue(_Model):
    """A cue point or loop as DJ software stores it (a Rekordbox ``POSITION_MARK``)."""

    start_s: float
    end_s: float | None = Field(default=None, description="End of a loop; None for a cue.")
    kind: Literal["memory", "hot"] = "memory"
    slot: int | None = Field(default=None, ge=0, le=15, description="Hot cue slot (0 = A).")
    name: str = ""
    color: str | None = Field(default=None, description="'#RRGGBB' or None.")

    @field_validator("start_s", "end_s")
    @classmethod
    def _times(cls, value: float | None) -> float | None:
        return None if value is None else _check_time(value, "cue time")

    @field_validator("color")
    @classmethod
    def _color(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"#[0-9A-Fa-f]{6}", value):
            raise ValueError(f"color must look like '#RRGGBB', got {value!r}")
        return value

    @model_validator(mode="after")
    def _loop_order(self) -> Cue:
        if self.end_s is not None and self.end_s <= self.start_s:
            raise ValueError(f"loop end_s={self.end_s} is not after start_s={self.start_s}")
        if self.kind == "hot" and self.slot is None:
            raise ValueError("a hot cue needs a slot (0 = A … 7 = H)")
        return self

    @property
    def is_loop(self) -> bool:
        return self.end_s is not None


#: The energy scale's floor: a level this many dB below full scale (or quieter) is energy 0.
ENERGY_FLOOR_DB = -60.0


def level_db(rms: float | np.ndarray) -> float | np.ndarray:
    """RMS amplitude → level in dB re full scale, ``20·log10(rms)`` (a full-scale square wave
    is 0 dB, a full-scale sine −3.0 dB, as it reads −3.0 LUFS; digital silence −200 dB).

    >>> round(float(level_db(0.1)), 1), round(float(level_db(np.sqrt(0.5))), 2)
    (-20.0, -3.01)
    """
    return 20.0 * np.log10(np.maximum(rms, 1e-10))


def energy_from_db(db: float | np.ndarray) -> float | np.ndarray:
    """The fixed energy scale: a level in dB re full scale → [0, 1], linear in dB.

    :data:`ENERGY_FLOOR_DB` (−60 dB) and below → 0, 0 dB → 1: 0.1 of energy is 6 dB, so two
    sections 20 dB apart differ by 1/3 whatever the track, and a quiet master's loudest section
    scores below a loud master's. The one mapping behind :class:`EnergyData`'s band fields.

    >>> [round(float(energy_from_db(db)), 3) for db in (-80.0, -60.0, -20.0, -6.0, 0.0, 3.0)]
    [0.0, 0.0, 0.667, 0.9, 1.0, 1.0]
    """
    return np.clip(1.0 - np.asarray(db, dtype=float) / ENERGY_FLOOR_DB, 0.0, 1.0)


class EnergyData(_Model):
    """Energy of one section; measured values mean the same in every track.

    ``overall``/``bass``/``mid``/``high`` are on the fixed scale of :func:`energy_from_db`:
    the section's RMS level in dB re full scale (whole signal / 20–150 Hz / 150–2500 Hz /
    2.5–11 kHz), −60 dB → 0, 0 dB → 1, unweighted (not LUFS). ``level_db`` is ``overall``'s
    level itself. ``density`` is onsets per beat (1.0 = one onset a beat, a four-on-the-floor
    kick alone; 0 = no onsets), ``brightness`` the spectral centroid in Hz (not mapped to
    [0, 1]), ``tension`` how much ``overall`` rises from the section's start to its end, on
    the same scale (a line fitted to the energy of 0.5-s blocks; +0.2 is a 12 dB riser).
    ``rating`` is a human rating on a 1–10 scale (e.g. from an "Energy 7" comment);
    ``curve`` is an optional per-beat or per-bar energy curve.
    """

    overall: float | None = Field(default=None, description="RMS level, -60 dB -> 0, 0 dB -> 1.")
    bass: float | None = Field(default=None, description="20-150 Hz level on overall's scale.")
    mid: float | None = Field(default=None, description="150-2500 Hz level on overall's scale.")
    high: float | None = Field(default=None, description="2.5-11 kHz level on overall's scale.")
    level_db: float | None = Field(default=None, description="RMS level, dB re full scale.")
    density: float | None = Field(default=None, description="Onsets per beat.")
    brightness: float | None = Field(default=None, description="Spectral centroid, Hz.")
    tension: float | None = Field(
        default=None, description="Rise of overall across the section (end - start)."
    )
    rating: float | None = Field(default=None, ge=0, le=10)
    curve: list[float] | None = None


class Section(_Model):
    """A structural section: ``[start_s, end_s)`` with an optional function label."""

    start_s: float
    end_s: float
    label: str | None = Field(
        default=None, description="intro, buildup, drop, breakdown, outro, or None."
    )
    energy: EnergyData | None = None

    @field_validator("start_s", "end_s")
    @classmethod
    def _times(cls, value: float) -> float:
        return _check_time(value, "section time")

    @model_validator(mode="after")
    def _order(self) -> Section:
        if self.end_s <= self.start_s:
            raise ValueError(f"section end_s={self.end_s} is not after start_s={self.start_s}")
        return self


class TrackIdentity(_Model):
    """Which audio the labels belong to."""

    path: str | None = Field(default=None, description="Local audio path, if known.")
    content_hash: str | None = Field(default=None, description="Hash of the audio file bytes.")
    duration_s: float | None = Field(default=None, gt=0)
    title: str = ""
    artist: str = ""
    genre: str = ""
    source_id: str | None = Field(default=None, description="ID in the source (Rekordbox TrackID).")


class Metadata(_Model):
    """Trust and origin of the labels."""

    tier: Tier = Tier.DJ_SOFTWARE
    confidence: float = Field(default=0.5, ge=0.0, le=1.0)
    source: str = Field(
        default="manual", description="e.g. 'rekordbox-xml', 'edm-synth', 'edm-audit'."
    )
    version: int = Field(default=1, ge=1, description="Annotation version; audit fixes bump it.")
    provenance: dict[str, str] = Field(default_factory=dict)


class TrackAnnotation(_Model):
    """Everything edm knows about one track."""

    schema_version: int = SCHEMA_VERSION
    track: TrackIdentity
    grid: list[TempoSegment] = Field(default_factory=list)
    cues: list[Cue] = Field(default_factory=list)
    sections: list[Section] = Field(default_factory=list)
    key: str | None = None
    bpm: float | None = Field(
        default=None, gt=0, description="Average BPM as the source states it."
    )
    energy_rating: float | None = Field(default=None, ge=0, le=10, description="Track rating 1-10.")
    metadata: Metadata = Field(default_factory=Metadata)

    @field_validator("schema_version")
    @classmethod
    def _version(cls, value: int) -> int:
        if value > SCHEMA_VERSION:
            raise ValueError(f"schema_version {value} is newer than this edm ({SCHEMA_VERSION})")
        return value

    @field_validator("grid")
    @classmethod
    def _grid_increasing(cls, grid: list[TempoSegment]) -> list[TempoSegment]:
        for previous, segment in pairwise(grid):
            if segment.start_s <= previous.start_s:
                raise ValueError(
                    f"tempo segments must start in increasing order: {segment.start_s} s "
                    f"follows {previous.start_s} s"
                )
        return grid

    @field_validator("sections")
    @classmethod
    def _sections_ordered(cls, sections: list[Section]) -> list[Section]:
        for previous, section in pairwise(sections):
            if section.start_s < previous.end_s - 1e-6:
                raise ValueError(
                    f"sections overlap: one starts at {section.start_s} s before the previous "
                    f"ends at {previous.end_s} s"
                )
        return sections

    @field_validator("cues")
    @classmethod
    def _cues_sorted(cls, cues: list[Cue]) -> list[Cue]:
        # Cue order carries no meaning in DJ software; keep files diffable by sorting.
        return sorted(cues, key=lambda cue: (cue.start_s, cue.kind, cue.slot or -1))

    @property
    def track_id(self) -> str:
        """Stable key: the content hash when known, else the source ID or path."""
        return self.track.content_hash or self.track.source_id or self.track.path or "unknown"

    @property
    def end_s(self) -> float | None:
        return self.track.duration_s

    def beats(self) -> np.ndarray:
        """Beat times (s) of the grid up to the track's end; empty without grid or duration."""
        if not self.grid or self.end_s is None:
            return np.zeros(0)
        return beat_times(self.grid, self.end_s)

    def downbeats(self) -> np.ndarray:
        if not self.grid or self.end_s is None:
            return np.zeros(0)
        return downbeat_times(self.grid, self.end_s)


# ---------------------------------------------------------------------------------------------
# Beat grid expansion


def beat_grid(grid: list[TempoSegment], end_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Expand a grid into beat times and beat numbers (1 = downbeat), up to ``end_s``.

    The first segment extends backwards to 0 s, as DJ software draws it.

    >>> times, numbers = beat_grid([TempoSegment(start_s=1.0, bpm=60.0, beat_in_bar=3)], 4.5)
    >>> times.tolist(), numbers.tolist()
    ([0.0, 1.0, 2.0, 3.0, 4.0], [2, 3, 4, 1, 2])
    """
    if not grid:
        return np.zeros(0), np.zeros(0, dtype=int)
    all_times: list[np.ndarray] = []
    all_numbers: list[np.ndarray] = []
    first = grid[0]
    n_before = int(np.floor(first.start_s / first.beat_period_s + 1e-9))
    if n_before > 0:
        offsets = np.arange(-n_before, 0)
        all_times.append(first.start_s + offsets * first.beat_period_s)
        all_numbers.append((first.beat_in_bar - 1 + offsets) % first.beats_per_bar + 1)
    for index, segment in enumerate(grid):
        stop = grid[index + 1].start_s if index + 1 < len(grid) else end_s
        # A beat closer than 1 ms to the next segment's start belongs to that segment.
        count = int(np.ceil((stop - segment.start_s - 1e-3) / segment.beat_period_s))
        count = max(count, 0)
        offsets = np.arange(count)
        all_times.append(segment.start_s + offsets * segment.beat_period_s)
        all_numbers.append((segment.beat_in_bar - 1 + offsets) % segment.beats_per_bar + 1)
    times = np.concatenate(all_times)
    numbers = np.concatenate(all_numbers).astype(int)
    keep = (times >= 0) & (times < end_s)
    return times[keep], numbers[keep]


def beat_times(grid: list[TempoSegment], end_s: float) -> np.ndarray:
    """Beat times in seconds; see :func:`beat_grid`."""
    return beat_grid(grid, end_s)[0]


def downbeat_times(grid: list[TempoSegment], end_s: float) -> np.ndarray:
    """Times of beats numbered 1; see :func:`beat_grid`."""
    times, numbers = beat_grid(grid, end_s)
    return times[numbers == 1]


# ---------------------------------------------------------------------------------------------
# One YAML file per track


def annotation_filename(annotation: TrackAnnotation) -> str:
    """A readable, unique file name: ``artist - title.<id8>.yaml`` with unsafe chars removed."""
    label = " - ".join(part for part in (annotation.track.artist, annotation.track.title) if part)
    label = re.sub(r"[^\w\- .]+", "_", label).strip(" ._")[:80] or "track"
    digest = re.sub(r"[^\w]", "", annotation.track_id)[:12] or "unknown"
    return f"{label}.{digest}.yaml"


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    location = ".".join(str(part) for part in first["loc"]) or "(root)"
    more = f" (+{error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"field {location}: {first['msg']}{more}"


def annotation_from_dict(data: Any, source: str | Path = "<dict>") -> TrackAnnotation:
    """Validate plain data into an annotation; errors name ``source`` and the field."""
    if not isinstance(data, dict):
        raise AnnotationError(f"{source}: expected a mapping at the top level")
    try:
        return TrackAnnotation.model_validate(data)
    except ValidationError as error:
        raise AnnotationError(f"{source}: {_describe(error)}") from error


def load_annotation(path: str | Path) -> TrackAnnotation:
    """Read one annotation YAML file.

    Raises :class:`AnnotationError` naming the file and the offending field.
    """
    path = Path(path)
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read ({error.strerror})") from error
    except yaml.YAMLError as error:
        raise AnnotationError(f"{path}: not valid YAML ({error})") from error
    return annotation_from_dict(data, path)


def annotation_to_dict(annotation: TrackAnnotation) -> dict[str, Any]:
    """Plain data with defaults left out, so files stay short and diffable."""
    return annotation.model_dump(mode="json", exclude_none=True, exclude_defaults=False)


def save_annotation(annotation: TrackAnnotation, path: str | Path) -> Path:
    """Write one annotation atomically (temp file + rename): a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.dump(
        annotation_to_dict(annotation), Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True
    )
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".yaml")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def iter_annotation_files(directory: str | Path) -> Iterator[Path]:
    """Annotation files in a folder, sorted, skipping hidden temp files."""
    yield from sorted(
        p for p in Path(directory).glob("*.yaml") if not p.name.startswith(".")
    )


def load_annotations(
    directory: str | Path,
) -> tuple[list[TrackAnnotation], list[AnnotationError]]:
    """Load every annotation in a folder; bad files are returned as errors, not raised."""
    annotations: list[TrackAnnotation] = []
    errors: list[AnnotationError] = []
    for path in iter_annotation_files(directory):
        try:
            annotations.append(load_annotation(path))
        except AnnotationError as error:
            errors.append(error)
    return annotations, errors
