"""Per-frame head outputs: what the heads give and what decoding and the audit read.

Convention: frame ``i`` describes the audio around ``i / frames_per_second`` seconds; every
array shares the store's frame rate, which travels with the data, never as a constant.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Activations:
    """Probabilities in [0, 1] per frame for beat, downbeat and boundary.

    ``section`` is optional: ``(frames, len(section_labels))`` class probabilities.

    >>> a = Activations(np.zeros(4), np.zeros(4), np.zeros(4), frames_per_second=2.0)
    >>> a.times().tolist()
    [0.0, 0.5, 1.0, 1.5]
    """

    beat: np.ndarray
    downbeat: np.ndarray
    boundary: np.ndarray
    frames_per_second: float
    section: np.ndarray | None = None
    section_labels: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        lengths = {len(self.beat), len(self.downbeat), len(self.boundary)}
        if len(lengths) != 1:
            raise ValueError(f"activation lengths differ: {sorted(lengths)}")
        if self.frames_per_second <= 0:
            raise ValueError(f"frames_per_second must be > 0, got {self.frames_per_second}")
        if self.section is not None and self.section.shape != (
            len(self.beat),
            len(self.section_labels),
        ):
            raise ValueError("section probabilities must be (frames, len(section_labels))")

    @property
    def n_frames(self) -> int:
        return len(self.beat)

    def times(self) -> np.ndarray:
        """Time in seconds of every frame."""
        return np.arange(self.n_frames) / self.frames_per_second


def average_probabilities(
    per_net: Sequence[Mapping[str, np.ndarray]],
    frames_per_second: float,
    section_labels: tuple[str, ...] = (),
) -> Activations:
    """Average the probabilities of several nets (an ensemble or co-teaching pair).

    Each mapping has ``beat``, ``downbeat`` and ``boundary`` arrays of shape ``(frames,)`` and
    optionally ``section`` of shape ``(frames, classes)``.

    >>> one = {"beat": np.ones(2), "downbeat": np.zeros(2), "boundary": np.zeros(2)}
    >>> two = {"beat": np.zeros(2), "downbeat": np.zeros(2), "boundary": np.ones(2)}
    >>> average_probabilities([one, two], 50.0).beat.tolist()
    [0.5, 0.5]
    """
    def mean(task: str) -> np.ndarray:
        return np.mean([probabilities[task] for probabilities in per_net], axis=0).astype(
            np.float32
        )

    has_section = all("section" in probabilities for probabilities in per_net)
    return Activations(
        beat=mean("beat"),
        downbeat=mean("downbeat"),
        boundary=mean("boundary"),
        frames_per_second=frames_per_second,
        section=mean("section") if has_section else None,
        section_labels=section_labels if has_section else (),
    )
