"""Per-frame head outputs: what the heads give and what decoding and the audit read.

Convention: frame ``i`` describes the audio around ``i / frames_per_second`` seconds; every
array shares the store's frame rate, which travels with the data, never as a constant.
"""

from __future__ import annotations

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
