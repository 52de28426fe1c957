"""Annotations → per-frame training targets at the store's frame rate.

Conventions
-----------
- Frame ``i`` is at ``i / frames_per_second`` seconds; an event at ``t`` seconds lands on frame
  ``round(t * frames_per_second)``. The frame rate always comes from the store.
- Every task has a target array and a weight array of the same length. Weight 0 means "no
  information here" (the frame is left out of the loss), not "negative".

What each label source promises
-------------------------------
- **Beat grid** (beats, downbeats): DJ software draws the grid over the whole track, so a grid
  gives positives *and* negatives everywhere. A track without a grid has weight 0 throughout.
- **Cues** (boundaries): positive-unlabeled. A cue says "a section starts here"; a frame
  without a cue says nothing unless the track is Tier 1 (verified, complete). Unlabeled frames
  of Tier 2 tracks therefore get ``unlabeled_weight`` (small, not 0: most frames really are not
  boundaries, and a little weight keeps the head from calling everything a boundary).
- **Phrase analysis** (Rekordbox's ``PSSI`` phrases, imported as sections with
  ``provenance["sections_complete"] == "true"``): Rekordbox labels every phrase, so between the
  first phrase's start and the last one's end a frame without a boundary *is* a negative
  (weight 1, as for Tier 1); outside that span the cues stay positive-unlabeled.
- **Section function** comes from Tier 1 sections or from cue names ("Drop", "Break" …); a frame
  whose section function is unknown gets class ``-1`` (ignored).

>>> from edm.data.schema import TempoSegment, TrackIdentity, Cue
>>> ann = TrackAnnotation(track=TrackIdentity(duration_s=4.0),
...                       grid=[TempoSegment(start_s=0.0, bpm=120.0)],
...                       cues=[Cue(start_s=2.0, name="Drop")])
>>> t = make_targets(ann, n_frames=40, frames_per_second=10.0)
>>> np.flatnonzero(t.beat).tolist(), np.flatnonzero(t.downbeat).tolist()
([0, 5, 10, 15, 20, 25, 30, 35], [0, 20])
>>> np.flatnonzero(t.boundary).tolist()
[20]
>>> round(float(t.boundary_weight[0]), 3), float(t.boundary_weight[20])
(0.1, 1.0)
>>> int(t.section[19]), int(t.section[20])
(-1, 2)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from edm.data.schema import Tier, TrackAnnotation, beat_grid
from edm.heads.activations import to_frame

#: Section functions the heads can learn, in class-index order.
SECTION_LABELS: tuple[str, ...] = ("intro", "buildup", "drop", "breakdown", "outro")

# Cue names DJs type, mapped to a section function. Matched on whole words, case-insensitive.
_CUE_NAME_PATTERNS: tuple[tuple[str, str], ...] = (
    (r"intro|start", "intro"),
    (r"build(?:up|\s*up)?|riser|rise", "buildup"),
    (r"drop|main|chorus", "drop"),
    (r"break(?:down)?|bd|breakdown", "breakdown"),
    (r"outro|end|mix\s*out", "outro"),
)


def section_label_from_name(name: str | None) -> str | None:
    """Map a cue or section name to one of :data:`SECTION_LABELS`, or None.

    >>> [section_label_from_name(name) for name in ("Drop 2", "BREAK", "x")]
    ['drop', 'breakdown', None]
    """
    if not name:
        return None
    lowered = name.strip().lower()
    if lowered in SECTION_LABELS:
        return lowered
    for pattern, label in _CUE_NAME_PATTERNS:
        if re.search(rf"\b(?:{pattern})\b", lowered):
            return label
    return None


@dataclass(frozen=True)
class HeadTargets:
    """Per-frame targets and loss weights for one track (all arrays have ``n_frames`` rows)."""

    beat: np.ndarray
    beat_weight: np.ndarray
    downbeat: np.ndarray
    downbeat_weight: np.ndarray
    boundary: np.ndarray
    boundary_weight: np.ndarray
    section: np.ndarray  # int64 class index into SECTION_LABELS, -1 = unknown
    frames_per_second: float

    @property
    def n_frames(self) -> int:
        return len(self.beat)


def times_to_frames(times_s: np.ndarray, frames_per_second: float, n_frames: int) -> np.ndarray:
    """Frame indices of event times; events outside the track are dropped."""
    frames = np.atleast_1d(to_frame(np.asarray(times_s, dtype=float), frames_per_second))
    return np.unique(frames[(frames >= 0) & (frames < n_frames)])


def _events(times_s: np.ndarray, frames_per_second: float, n_frames: int) -> np.ndarray:
    target = np.zeros(n_frames, dtype=np.float32)
    target[times_to_frames(times_s, frames_per_second, n_frames)] = 1.0
    return target


def complete_boundary_span(annotation: TrackAnnotation) -> tuple[float, float] | None:
    """Where every boundary of the track is labelled: the span of its sections when they come
    from a complete source (Rekordbox phrases), else None (Tier 1 is complete everywhere).

    >>> from edm.data.schema import Metadata, Section, TrackIdentity
    >>> ann = TrackAnnotation(track=TrackIdentity(duration_s=60.0),
    ...     sections=[Section(start_s=2.0, end_s=18.0), Section(start_s=18.0, end_s=50.0)],
    ...     metadata=Metadata(provenance={"sections_complete": "true"}))
    >>> complete_boundary_span(ann)
    (2.0, 50.0)
    """
    if not annotation.sections or annotation.metadata.provenance.get(
            "sections_complete") != "true":
        return None
    return annotation.sections[0].start_s, annotation.sections[-1].end_s


def boundary_times(annotation: TrackAnnotation) -> np.ndarray:
    """Boundary positives: every cue start, plus every section start of annotated sections."""
    times = [cue.start_s for cue in annotation.cues]
    times += [section.start_s for section in annotation.sections]
    return np.unique(np.asarray(times, dtype=float))


def _section_classes(
    annotation: TrackAnnotation, frames_per_second: float, n_frames: int
) -> np.ndarray:
    classes = np.full(n_frames, -1, dtype=np.int64)
    spans: list[tuple[float, float, str | None]] = []
    if annotation.sections:
        spans = [
            (s.start_s, s.end_s, section_label_from_name(s.label)) for s in annotation.sections
        ]
    else:
        # A named cue labels the stretch up to the next cue (named or not): DJs name the cue
        # that starts a section, and the next cue starts the next one.
        starts = sorted(
            {cue.start_s: cue for cue in annotation.cues}.values(), key=lambda c: c.start_s
        )
        end_s = n_frames / frames_per_second
        for index, cue in enumerate(starts):
            stop = starts[index + 1].start_s if index + 1 < len(starts) else end_s
            spans.append((cue.start_s, stop, section_label_from_name(cue.name)))
    for start_s, end_s, label in spans:
        if label is None:
            continue
        first = max(int(to_frame(start_s, frames_per_second)), 0)
        last = min(int(to_frame(end_s, frames_per_second)), n_frames)
        classes[first:last] = SECTION_LABELS.index(label)
    return classes


def make_targets(
    annotation: TrackAnnotation,
    n_frames: int,
    frames_per_second: float,
    *,
    unlabeled_weight: float = 0.1,
) -> HeadTargets:
    """Build :class:`HeadTargets` for one track whose embeddings have ``n_frames`` frames.

    Parameters
    ----------
    annotation : TrackAnnotation
        Labels of the track; Tier 3 (unlabeled) tracks get all-zero weights.
    n_frames : int
        Number of embedding frames in the store.
    frames_per_second : float
        The store's frame rate for this backbone.
    unlabeled_weight : float, default=0.1
        Loss weight of boundary frames without a cue on tracks that are not Tier 1.
    """
    if n_frames <= 0:
        raise ValueError(f"track {annotation.track_id}: n_frames must be > 0, got {n_frames}")
    if frames_per_second <= 0:
        raise ValueError(f"frames_per_second must be > 0, got {frames_per_second}")
    zeros = np.zeros(n_frames, dtype=np.float32)
    tier = annotation.metadata.tier
    end_s = n_frames / frames_per_second

    if annotation.grid and tier != Tier.UNLABELED:
        times, numbers = beat_grid(annotation.grid, end_s)
        beat = _events(times, frames_per_second, n_frames)
        downbeat = _events(times[numbers == 1], frames_per_second, n_frames)
        grid_weight = np.ones(n_frames, dtype=np.float32)
    else:
        beat, downbeat, grid_weight = zeros.copy(), zeros.copy(), zeros.copy()

    positives = boundary_times(annotation)
    boundary = _events(positives, frames_per_second, n_frames)
    if tier == Tier.VERIFIED:
        boundary_weight = np.ones(n_frames, dtype=np.float32)
    elif tier == Tier.UNLABELED or len(positives) == 0:
        # No cue at all: nothing to learn about boundaries from this track.
        boundary_weight = zeros.copy()
    else:
        boundary_weight = np.where(boundary > 0, 1.0, unlabeled_weight).astype(np.float32)
        span = complete_boundary_span(annotation)
        if span is not None:
            first = max(int(to_frame(span[0], frames_per_second)), 0)
            last = min(int(to_frame(span[1], frames_per_second)) + 1, n_frames)
            boundary_weight[first:last] = 1.0

    if tier == Tier.UNLABELED:
        section = np.full(n_frames, -1, dtype=np.int64)
    else:
        section = _section_classes(annotation, frames_per_second, n_frames)
    return HeadTargets(
        beat=beat,
        beat_weight=grid_weight,
        downbeat=downbeat,
        downbeat_weight=grid_weight.copy(),
        boundary=boundary,
        boundary_weight=boundary_weight,
        section=section,
        frames_per_second=float(frames_per_second),
    )
