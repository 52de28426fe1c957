"""Annotations to and from JAMS, the MIR standard format (``jams`` package).

Conventions
-----------
- ``beat``: one observation per beat of the grid up to the track's end; ``value`` is the beat
  number in the bar (1 = downbeat). The grid itself (:class:`TempoSegment` list) rides along in
  that annotation's ``sandbox["grid"]``, so reading back gives the exact segments, not a fit.
- ``tempo``: one observation per tempo segment (``time`` = segment start, ``value`` = bpm).
- ``segment_open``: one observation per section; ``value`` is the label, or ``"section"`` when
  the section has none. ``sandbox["energy"]`` is a list aligned with the observations (an
  :class:`EnergyData` dict or ``None``); ``sandbox["end_s"]`` keeps exact ends, because
  ``time + duration`` does not always round-trip a float.
- Everything JAMS has no namespace for (cues, key, tier, source, provenance, content hash …)
  lives in ``jam.sandbox["edm"]``. :func:`jams_to_annotation` is the exact inverse of
  :func:`annotation_to_jams`; for JAMS written by other tools it rebuilds a grid from the beats.
- ``confidence`` is a probability only where one exists: ``edm analyze`` gives each beat the
  beat head's probability at it and each section the boundary head's at its start (the first
  section, which starts with the track, has none); labels from DJ software or a synth plan
  carry ``null``, never a made-up 1.0. A ``tempo`` observation's confidence is the salience
  the namespace requires (a number): 1.0, the only tempo over its span.
- ``annotation_metadata`` says who made the labels: ``data_source`` is the annotation's
  source (``rekordbox-xml``, ``edm-synth``, ``edm-analyze`` …), ``annotation_tools`` the edm
  version; for an analysis ``annotator`` holds the model, its version and the backbone.

JAMS needs a duration; when the annotation has none, the file states the last annotated time
and ``sandbox["edm"]["track"]`` keeps ``duration_s`` absent so the inverse restores ``None``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jams
import numpy as np

from edm.data.schema import (
    AnnotationError,
    TempoSegment,
    TrackAnnotation,
    annotation_from_dict,
    annotation_to_dict,
    beat_grid,
)

_NO_LABEL = "section"
#: Event times (s) → one probability per time, or None when there is none to give.
ConfidenceAt = Callable[[np.ndarray], "np.ndarray | None"]
#: Two beats belong to one tempo segment while the grid predicts them within this (s).
_GRID_FIT_TOLERANCE_S = 0.005


def _last_time(annotation: TrackAnnotation) -> float:
    times = [0.0]
    times += [segment.start_s for segment in annotation.grid]
    times += [cue.end_s or cue.start_s for cue in annotation.cues]
    times += [section.end_s for section in annotation.sections]
    return max(times)


def _confidences(at: ConfidenceAt | None, times: list[float]) -> list[float | None]:
    values = at(np.asarray(times, dtype=float)) if at is not None and times else None
    if values is None:
        return [None] * len(times)
    return [round(float(v), 3) for v in values]


def _metadata(annotation: TrackAnnotation, annotator: Mapping[str, Any] | None,
              rules: str) -> jams.AnnotationMetadata:
    from edm import __version__

    annotator = dict(annotator or {})
    return jams.AnnotationMetadata(
        data_source=annotation.metadata.source, annotation_tools=f"edm {__version__}",
        version=str(annotator.get("model_version", "")), annotator=jams.Sandbox(**annotator),
        annotation_rules=rules,
    )


def annotation_to_jams(
    annotation: TrackAnnotation, *, confidence: Mapping[str, ConfidenceAt] | None = None,
    annotator: Mapping[str, Any] | None = None,
) -> jams.JAMS:
    """Convert an annotation to a :class:`jams.JAMS` object (see the module's Conventions).

    ``confidence`` maps ``"beat"`` / ``"boundary"`` to a function giving the probability at
    event times (beats; section starts); without one the observations carry ``None``.
    ``annotator`` (model, model_version, backbone …) goes into every annotation's
    ``annotation_metadata``.

    >>> from edm.data.schema import TrackIdentity
    >>> ann = TrackAnnotation(track=TrackIdentity(duration_s=4.0),
    ...                       grid=[TempoSegment(start_s=0.5, bpm=120.0)])
    >>> jam = annotation_to_jams(ann)
    >>> [obs.value for obs in jam.annotations.search(namespace="beat")[0].data]
    [4, 1, 2, 3, 4, 1, 2, 3]
    >>> jams_to_annotation(jam) == ann
    True
    >>> jam.annotations[0].data[0].confidence is None
    True
    """
    confidence = dict(confidence or {})
    rules = ("confidence: the head's probability at the event" if confidence
             else "confidence: none (labels without probabilities)")
    duration = annotation.track.duration_s
    jam = jams.JAMS()
    jam.file_metadata.duration = duration if duration is not None else _last_time(annotation)
    jam.file_metadata.title = annotation.track.title
    jam.file_metadata.artist = annotation.track.artist
    edm_data = annotation_to_dict(annotation)
    # Grid and sections live in their namespaces; keeping them twice would let the copies drift.
    edm_data.pop("grid", None)
    edm_data.pop("sections", None)
    jam.sandbox.edm = edm_data

    if annotation.grid:
        beats = jams.Annotation(namespace="beat", time=0.0, duration=jam.file_metadata.duration,
                                annotation_metadata=_metadata(annotation, annotator, rules))
        times, numbers = beat_grid(annotation.grid, jam.file_metadata.duration)
        beat_confidence = _confidences(confidence.get("beat"), times.tolist())
        for time, number, probability in zip(times.tolist(), numbers.tolist(), beat_confidence,
                                             strict=True):
            beats.append(time=time, duration=0.0, value=int(number), confidence=probability)
        beats.sandbox = jams.Sandbox(
            grid=[segment.model_dump(mode="json") for segment in annotation.grid]
        )
        jam.annotations.append(beats)

        tempo = jams.Annotation(namespace="tempo", time=0.0, duration=jam.file_metadata.duration,
                                annotation_metadata=_metadata(annotation, annotator, rules))
        for index, segment in enumerate(annotation.grid):
            stop = (
                annotation.grid[index + 1].start_s
                if index + 1 < len(annotation.grid)
                else max(jam.file_metadata.duration, segment.start_s)
            )
            tempo.append(
                time=segment.start_s, duration=stop - segment.start_s, value=segment.bpm,
                confidence=1.0,  # salience: one tempo at a time
            )
        jam.annotations.append(tempo)

    if annotation.sections:
        segments = jams.Annotation(
            namespace="segment_open", time=0.0, duration=jam.file_metadata.duration,
            annotation_metadata=_metadata(annotation, annotator, rules),
        )
        starts = [section.start_s for section in annotation.sections]
        # The first section starts with the track: that is no detected boundary.
        boundary_confidence = [None, *_confidences(confidence.get("boundary"), starts[1:])]
        for section, probability in zip(annotation.sections, boundary_confidence, strict=True):
            segments.append(
                time=section.start_s, duration=section.end_s - section.start_s,
                value=section.label or _NO_LABEL, confidence=probability,
            )
        # Observations are kept sorted by time; sections already are, so the lists stay aligned.
        segments.sandbox = jams.Sandbox(
            energy=[
                None if s.energy is None else s.energy.model_dump(mode="json", exclude_none=True)
                for s in annotation.sections
            ],
            end_s=[section.end_s for section in annotation.sections],
        )
        jam.annotations.append(segments)
    return jam


def _grid_from_beats(times: np.ndarray, numbers: list[Any]) -> list[TempoSegment]:
    """Fit constant-tempo segments to beat times written by another tool."""
    if len(times) < 2:
        return []
    counted = all(isinstance(n, int | float) and n >= 1 for n in numbers)
    beats_per_bar = int(max(numbers)) if counted else 4
    beats_per_bar = min(max(beats_per_bar, 1), 16)
    segments: list[TempoSegment] = []
    start = 0
    while start < len(times) - 1:
        period = times[start + 1] - times[start]
        stop = start + 1
        while stop + 1 < len(times) and abs(
            times[stop + 1] - (times[start] + (stop + 1 - start) * period)
        ) <= _GRID_FIT_TOLERANCE_S:
            stop += 1
        # Refit the period over the whole run: the first interval alone is noisy.
        if stop > start + 1:
            period = (times[stop] - times[start]) / (stop - start)
        beat_in_bar = int(numbers[start]) if counted else 1
        segments.append(
            TempoSegment(
                start_s=float(times[start]), bpm=float(60.0 / period),
                beats_per_bar=beats_per_bar, beat_in_bar=min(beat_in_bar, beats_per_bar),
            )
        )
        start = stop
    return segments


def _sandbox_get(sandbox: Any, name: str) -> Any:
    return getattr(sandbox, name, None) if sandbox is not None else None


def jams_to_annotation(jam_or_path: jams.JAMS | str | Path) -> TrackAnnotation:
    """Read a JAMS object or file back into a :class:`TrackAnnotation`.

    Exact inverse of :func:`annotation_to_jams`. For a JAMS from another tool the grid is
    fitted to its ``beat`` observations and sections come from ``segment_open``.
    Raises :class:`AnnotationError` naming the file when it cannot be read or validated.
    """
    source = str(jam_or_path) if not isinstance(jam_or_path, jams.JAMS) else "<jams>"
    if isinstance(jam_or_path, jams.JAMS):
        jam = jam_or_path
    else:
        try:
            jam = jams.load(str(jam_or_path), validate=False)
        except (OSError, ValueError, jams.JamsError) as error:
            raise AnnotationError(f"{source}: cannot read JAMS ({error})") from error

    edm_data = _sandbox_get(jam.sandbox, "edm")
    data: dict[str, Any] = dict(edm_data) if isinstance(edm_data, dict) else {}
    track = dict(data.get("track") or {})
    if not edm_data:
        duration = jam.file_metadata.duration
        track.update(
            title=jam.file_metadata.title or "", artist=jam.file_metadata.artist or "",
            duration_s=float(duration) if duration else None,
        )
        data.setdefault("metadata", {"source": "jams"})
    data["track"] = track

    beats = jam.annotations.search(namespace="beat")
    if beats:
        stored = _sandbox_get(beats[0].sandbox, "grid")
        if stored is not None:
            data["grid"] = stored
        else:
            observations = list(beats[0].data)
            times = np.array([obs.time for obs in observations], dtype=float)
            try:
                data["grid"] = _grid_from_beats(times, [obs.value for obs in observations])
            except ValueError as error:
                raise AnnotationError(f"{source}: beat annotation: {error}") from error

    segments = jam.annotations.search(namespace="segment_open")
    if segments:
        observations = list(segments[0].data)
        energy = _sandbox_get(segments[0].sandbox, "energy") or [None] * len(observations)
        ends = _sandbox_get(segments[0].sandbox, "end_s") or [
            obs.time + obs.duration for obs in observations
        ]
        data["sections"] = [
            {
                "start_s": obs.time, "end_s": end, "energy": rating,
                "label": None if obs.value == _NO_LABEL else obs.value,
            }
            for obs, end, rating in zip(observations, ends, energy, strict=False)
        ]
    return annotation_from_dict(data, source)


def load_truth(path: str | Path) -> TrackAnnotation:
    """Read ground truth from a ``.jams`` file (as ``edm synth`` writes it)."""
    return jams_to_annotation(Path(path))


def save_jams(
    annotation: TrackAnnotation, path: str | Path, *,
    confidence: Mapping[str, ConfidenceAt] | None = None,
    annotator: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``annotation`` as a JAMS file (arguments as :func:`annotation_to_jams`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    annotation_to_jams(annotation, confidence=confidence, annotator=annotator).save(str(path))
    return path
