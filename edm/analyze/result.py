"""The result of analysing one track: :class:`Analysis`, its annotation and its JSON form.

An :class:`Analysis` is a decoded beat grid and sections plus where they came from (model,
backbone, file). :meth:`Analysis.to_annotation` turns it into the project's
:class:`~edm.data.schema.TrackAnnotation`, so every writer (:mod:`edm.analyze.writers`) reuses
the annotation writers in :mod:`edm.data` and what ``edm analyze`` writes is what
``edm data import`` reads back.

JSON format (``edm analyze --format json``), every time in seconds::

    {"format": "edm-analysis", "version": 2, "path": ..., "duration_s": ...,
     "model": ..., "model_version": ..., "backbone": ..., "edm_version": ...,
     "bpm": ..., "elapsed_s": ..., "beat_source": "heads" | "onsets (beat head silent)",
     "energy_source": "energy head" | "descriptors",
     "grid": [{"start_s", "bpm", "beats_per_bar", "beat_in_bar"}, ...],   # tempo segments
     "beats": [...], "downbeats": [...], "boundaries": [...],
     "beat_confidence": [...] | null, "downbeat_confidence": [...] | null,
     "boundary_confidence": [...] | null,
     "sections": [{"start_s", "end_s", "label", "energy": {"overall", "bass", ...}}, ...],
     "cues": [{"start_s", "kind", "name", "color", ...}, ...],
     "annotation": {<TrackAnnotation as JSON>}}

``beats`` and ``downbeats`` are the grid expanded to the track's end; ``boundaries`` are the
times where one section ends and the next begins (the track's start and end are not
boundaries). A ``*_confidence`` list is aligned with its events: the head's probability at
each one (:func:`Analysis.confidence_at`), ``null`` when the model did not give it (the beat
head fell silent and onsets found the beats). A section's ``confidence`` is
:class:`~edm.decode.sections.SectionConfidence`: its ``boundary`` is the evidence the decoder
chose the start on (the head blended with the arrangement change), not the head alone.
``annotation`` is what ``edm evaluate`` (``edm.evaluate.load_prediction``) and ``edm data`` read
back.

A section's ``energy`` (:class:`~edm.data.schema.EnergyData`) is absolute, comparable across
tracks: ``overall``/``bass``/``mid``/``high`` are the section's RMS level in dB re full scale
(whole signal / 20–150 Hz / 150–2500 Hz / 2.5–11 kHz) mapped −60 dB → 0, 0 dB → 1, and
``level_db`` is ``overall``'s level in dB; ``density`` is onsets per beat, ``brightness`` the
spectral centroid in Hz, ``tension`` how much ``overall`` rises across the section (same
scale), ``rating`` a human 1–10 rating.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edm.data.schema import (
    Cue,
    Metadata,
    Section,
    Tier,
    TrackAnnotation,
    TrackIdentity,
    annotation_to_dict,
)
from edm.decode import BeatGrid
from edm.decode.sections import SectionConfidence
from edm.decode.tempo import MATCH_TOLERANCE_S
from edm.heads.activations import Activations, peak_near

JSON_FORMAT_VERSION = 2
#: Times in the JSON are rounded to 0.1 ms, probabilities to 0.001.
_TIME_DECIMALS = 4
_CONFIDENCE_DECIMALS = 3

#: Memory cue colours by section label (Rekordbox's palette), so the waveform reads at a glance.
CUE_COLORS = {
    "intro": "#0000FF", "buildup": "#FFA500", "drop": "#FF0000", "breakdown": "#00E0FF",
    "outro": "#9900FF",
}
_DEFAULT_CUE_COLOR = "#00FF00"


def section_cues(sections: Sequence[Section]) -> list[Cue]:
    """One named memory cue at every section start ("Drop", "Breakdown" … or "Section 3")."""
    cues = []
    for number, section in enumerate(sections, start=1):
        name = section.label.capitalize() if section.label else f"Section {number}"
        color = CUE_COLORS.get(section.label or "", _DEFAULT_CUE_COLOR)
        cues.append(Cue(start_s=section.start_s, kind="memory", name=name, color=color))
    return cues


@dataclass(frozen=True)
class Analysis:
    """Beat grid, sections and cues of one track, with the model that produced them."""

    path: str
    duration_s: float
    grid: BeatGrid
    sections: list[Section]
    model: str
    backbone: str
    content_hash: str | None = None
    elapsed_s: float = 0.0
    #: The user's own annotation when the track came from a Rekordbox XML (title, artist,
    #: their cues); the grid and section cues are edm's.
    base: TrackAnnotation | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: Fingerprint of the heads (config and weights), so two runs name the exact same model.
    model_version: str = ""
    #: The heads' per-frame probabilities the grid and sections were decoded from; they give
    #: each beat, downbeat and boundary its confidence.
    activations: Activations | None = field(default=None, compare=False, repr=False)
    #: How sure the heads are of each section, from the same evidence the decoder used
    #: (:func:`~edm.decode.sections.section_confidence`); None when not decoded here.
    section_confidence: list[SectionConfidence] | None = field(default=None, compare=False,
                                                                repr=False)

    @property
    def bpm(self) -> float:
        return self.grid.bpm

    @property
    def cues(self) -> list[Cue]:
        return section_cues(self.sections)

    @property
    def boundaries(self) -> list[float]:
        """Times where one section ends and the next begins (not the track's start or end)."""
        return [section.start_s for section in self.sections[1:]]

    def confidence_at(self, task: str, times_s: Sequence[float] | np.ndarray) -> np.ndarray | None:
        """The ``task`` head's probability ("beat", "downbeat" or "boundary") at each time: its
        largest value within ±35 ms (the decoder's match tolerance); ``None`` without
        activations, and for beats the onset fallback found (no beat probability then)."""
        if self.activations is None:
            return None
        if task == "beat" and self.extra.get("beat_source", "heads") != "heads":
            return None
        values = getattr(self.activations, task)
        return peak_near(values, self.activations.frames_per_second, np.asarray(times_s, float),
                         MATCH_TOLERANCE_S)

    def to_annotation(self, *, keep_user_cues: bool = True) -> TrackAnnotation:
        """The analysis as an annotation (tier 3: machine labels, not verified)."""
        identity = TrackIdentity(
            path=self.path, content_hash=self.content_hash, duration_s=self.duration_s,
            title=Path(self.path).stem,
        )
        cues = list(self.cues)
        if self.base is not None:
            identity = self.base.track.model_copy(
                update={"path": self.path, "duration_s": self.duration_s,
                        "content_hash": self.content_hash or self.base.track.content_hash}
            )
            if keep_user_cues:
                ours = {(round(c.start_s, 3), c.kind) for c in cues}
                cues += [c for c in self.base.cues
                         if (round(c.start_s, 3), c.kind) not in ours]
        return TrackAnnotation(
            track=identity,
            grid=list(self.grid.segments),
            cues=cues,
            sections=list(self.sections),
            bpm=round(self.grid.bpm, 3),
            metadata=Metadata(
                tier=Tier.UNLABELED, confidence=0.5, source="edm-analyze",
                provenance={"model": self.model, "backbone": self.backbone},
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (see the module docstring for the fields)."""
        from edm import __version__

        annotation = self.to_annotation()
        events = {"beat": self.grid.beats, "downbeat": self.grid.downbeats,
                  "boundary": np.asarray(self.boundaries, float)}
        confidences = {f"{task}_confidence": _rounded(self.confidence_at(task, times),
                                                      _CONFIDENCE_DECIMALS)
                       for task, times in events.items()}
        section_sureness = self.section_confidence or [None] * len(self.sections)
        return {
            "format": "edm-analysis",
            "version": JSON_FORMAT_VERSION,
            "path": self.path,
            "duration_s": self.duration_s,
            "model": self.model,
            "model_version": self.model_version,
            "backbone": self.backbone,
            "edm_version": __version__,
            "bpm": round(self.bpm, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "beat_source": self.extra.get("beat_source", "heads"),
            "energy_source": self.extra.get("energy_source", "descriptors"),
            "grid": [segment.model_dump(mode="json") for segment in self.grid.segments],
            "beats": _rounded(self.grid.beats, _TIME_DECIMALS),
            "downbeats": _rounded(self.grid.downbeats, _TIME_DECIMALS),
            "boundaries": _rounded(events["boundary"], _TIME_DECIMALS),
            **confidences,
            "grid_confidence": {"beats": _number(self.grid.confidence),
                                "downbeats": _number(self.grid.downbeat_confidence)},
            "sections": [
                {"start_s": s.start_s, "end_s": s.end_s, "label": s.label,
                 "energy": None if s.energy is None else s.energy.model_dump(exclude_none=True),
                 "confidence": None if sure is None else {
                     "boundary": _number(sure.boundary), "label": _number(sure.label),
                     "beats": _number(sure.beats)}}
                for s, sure in zip(self.sections, section_sureness, strict=True)
            ],
            "cues": [cue.model_dump(mode="json", exclude_none=True) for cue in annotation.cues],
            "annotation": annotation_to_dict(annotation),
        }


def _number(value: float) -> float | None:
    """A finite confidence rounded for JSON; ``None`` (null) where it is unknown (nan)."""
    return None if not np.isfinite(value) else round(float(value), _CONFIDENCE_DECIMALS)


def _rounded(values: np.ndarray | None, decimals: int) -> list[float] | None:
    return None if values is None else np.round(np.asarray(values, float), decimals).tolist()
