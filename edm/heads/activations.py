"""Per-frame head outputs: what the heads give and what decoding and the audit read.

Convention: frame ``i`` describes the audio around ``i / frames_per_second`` seconds; every
array shares the store's frame rate, which travels with the data, never as a constant.

Times and frames meet in four helpers, with one rounding rule (nearest frame):

- :func:`to_frame`: seconds → frame index (``round(t * fps)``);
- :func:`span`: ``[start_s, end_s)`` → a slice of at least one frame inside the track;
- :func:`sample`: per-frame values at arbitrary times (linear between frames, 0 outside);
- :func:`peak_near`: the largest value within a window around each time (0 outside).

>>> to_frame(np.array([0.0, 0.26, 1.0]), 10.0).tolist()
[0, 3, 10]
>>> span(0.26, 0.5, 10.0, n_frames=8)
slice(3, 5, None)
>>> sample(np.array([0.0, 1.0, 0.0]), 10.0, np.array([0.05, 0.1, 5.0])).tolist()
[0.5, 1.0, 0.0]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: The per-frame event tasks every head predicts, in one order (targets, losses, files, metrics).
EVENT_TASKS: tuple[str, ...] = ("beat", "downbeat", "boundary")


def to_frame(time_s: float | np.ndarray, frames_per_second: float) -> int | np.ndarray:
    """Nearest frame index of a time (or times) in seconds; not clipped to the track."""
    frames = np.round(np.asarray(time_s, dtype=float) * frames_per_second).astype(np.int64)
    return int(frames) if frames.ndim == 0 else frames


def span(start_s: float, end_s: float, frames_per_second: float, n_frames: int) -> slice:
    """Frames of ``[start_s, end_s)``: nearest frames of both ends, clipped to the track,
    never empty (a section shorter than a frame still has its one frame)."""
    first = min(max(int(to_frame(start_s, frames_per_second)), 0), max(n_frames - 1, 0))
    last = min(max(int(to_frame(end_s, frames_per_second)), first + 1), n_frames)
    return slice(first, last)


def sample(values: np.ndarray, frames_per_second: float, times_s: np.ndarray) -> np.ndarray:
    """Per-frame ``values`` at arbitrary times: linear between frames, 0 outside the track.

    Offsets finer than a frame still show when averaged over many times (the audit's phase
    search relies on it).
    """
    frames = np.asarray(times_s, dtype=float) * frames_per_second
    # Index arithmetic instead of np.interp: the frame grid is regular, so no search is needed
    # (the audit's inner loop: every phase hypothesis samples every beat).
    padded = np.concatenate([[0.0], np.asarray(values, dtype=float), [0.0]])
    position = np.clip(frames + 1.0, 0.0, len(padded) - 1.0)
    index = np.minimum(position.astype(np.int64), len(padded) - 2)
    weight = position - index
    out = padded[index] * (1.0 - weight) + padded[index + 1] * weight
    return np.where((frames < 0) | (frames > len(values) - 1), 0.0, out)


def peak_near(
    values: np.ndarray, frames_per_second: float, times_s: np.ndarray, window_s: float
) -> np.ndarray:
    """The largest of the per-frame ``values`` within ±``window_s`` of each time; 0 for a time
    outside the track. How strongly a head fires at decoded events (a beat of a fitted grid
    rarely falls on the activation's peak frame).

    >>> peak_near(np.array([0.0, 0.2, 0.9, 0.1]), 10.0, np.array([0.0, 0.3, 1.0]), 0.1).tolist()
    [0.2, 0.9, 0.0]
    """
    from scipy.ndimage import maximum_filter1d

    values = np.asarray(values, dtype=float)
    frames = np.asarray(to_frame(np.asarray(times_s, dtype=float), frames_per_second))
    half = max(0, int(to_frame(window_s, frames_per_second)))
    if len(values) == 0:
        return np.zeros(frames.shape)
    pooled = maximum_filter1d(values, size=2 * half + 1, mode="constant", cval=0.0)
    inside = (frames >= 0) & (frames < len(values))
    return np.where(inside, pooled[np.clip(frames, 0, len(values) - 1)], 0.0)


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
        **{task: mean(task) for task in EVENT_TASKS},
        frames_per_second=frames_per_second,
        section=mean("section") if has_section else None,
        section_labels=section_labels if has_section else (),
    )
