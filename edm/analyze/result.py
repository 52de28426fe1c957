"""The result of analysing one track: :class:`Analysis`, its annotation and its JSON form.

An :class:`Analysis` is a decoded beat grid and sections plus where they came from (model,
backbone, file). :meth:`Analysis.to_annotation` turns it into the project's
:class:`~edm.data.schema.TrackAnnotation`, so every writer (:mod:`edm.analyze.writers`) reuses
the annotation writers in :mod:`edm.data` and what ``edm analyze`` writes is what
``edm data import`` reads back.

JSON format (``edm analyze --format json``)::

    {"format": "edm-analysis", "version": 1, "path": ..., "model": ..., "backbone": ...,
     "bpm": ..., "elapsed_s": ..., "beat_source": "heads" | "onsets (beat head silent)",
     "energy_source": "energy head" | "descriptors", "annotation": {<TrackAnnotation as JSON>}}

``edm evaluate`` reads these files back (``edm.evaluate.load_prediction``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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

JSON_FORMAT_VERSION = 1

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

    @property
    def bpm(self) -> float:
        return self.grid.bpm

    @property
    def cues(self) -> list[Cue]:
        return section_cues(self.sections)

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
        return {
            "format": "edm-analysis",
            "version": JSON_FORMAT_VERSION,
            "path": self.path,
            "model": self.model,
            "backbone": self.backbone,
            "bpm": round(self.bpm, 3),
            "elapsed_s": round(self.elapsed_s, 3),
            "beat_source": self.extra.get("beat_source", "heads"),
            "energy_source": self.extra.get("energy_source", "descriptors"),
            "annotation": annotation_to_dict(self.to_annotation()),
        }
