"""Scores of head activations against truth: plain peak picking, then :mod:`edm.evaluate`.

This is the heads' own yardstick (training reports, the benchmark): events are decoded by
plain peak picking (:func:`edm.decode.peaks.pick_peaks`, settings in :data:`PEAK_DEFAULTS`),
not by the grid and phrase decoding of :mod:`edm.decode`, so the numbers show what the heads
learned. Every metric is :mod:`edm.evaluate`'s (mir_eval underneath):

- beat F / downbeat F: :func:`edm.evaluate.beat_f_measure` (±70 ms, first 5 s trimmed);
- boundary hit-rate F at 0.5 s and 3 s: :func:`edm.evaluate.boundary_hit_rate` (the track's
  start and end are not boundaries anyone needs to find).
"""

from __future__ import annotations

import warnings

import numpy as np

from edm.data.schema import TrackAnnotation
from edm.decode.peaks import pick_peaks
from edm.heads.activations import EVENT_TASKS, Activations
from edm.heads.targets import boundary_times

#: Peak-picking defaults per task: (threshold, minimum distance between peaks in seconds).
PEAK_DEFAULTS: dict[str, tuple[float, float]] = {
    "beat": (0.5, 0.2),
    "downbeat": (0.5, 1.0),
    "boundary": (0.5, 6.0),
}


def decode_events(
    activations: Activations, peaks: dict[str, tuple[float, float]] | None = None
) -> dict[str, np.ndarray]:
    """Beat, downbeat and boundary times (s) from activations by peak picking.

    >>> a = Activations(np.array([0, .2, .9, .3, 0, 0, .7, 0]), np.zeros(8), np.zeros(8), 2.0)
    >>> decode_events(a)["beat"].round(3).tolist()
    [1.019, 3.0]
    """
    settings = {**PEAK_DEFAULTS, **(peaks or {})}
    return {
        task: pick_peaks(getattr(activations, task), activations.frames_per_second,
                         height=settings[task][0], min_distance_s=settings[task][1]).times
        for task in EVENT_TASKS
    }


def score_track(
    truth: TrackAnnotation,
    activations: Activations,
    peaks: dict[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Beat F, downbeat F and boundary F at 0.5 s and 3 s of one track against its truth.

    Truth boundaries are the annotation's section starts and cue starts.
    """
    # Imported here: edm.evaluate loads mir_eval and scipy.stats, which training needs only
    # when it scores.
    from edm.evaluate import beat_f_measure, boundary_hit_rate

    duration_s = truth.track.duration_s or activations.n_frames / activations.frames_per_second
    events = decode_events(activations, peaks)
    reference_boundaries = boundary_times(truth)
    scores: dict[str, float] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty estimates: scored 0, as mir_eval
        if truth.grid:
            scores["beat_f"] = beat_f_measure(truth.beats(), events["beat"])
            scores["downbeat_f"] = beat_f_measure(truth.downbeats(), events["downbeat"])
        if len(reference_boundaries):
            for window_s, name in ((0.5, "boundary_f_0.5s"), (3.0, "boundary_f_3s")):
                scores[name] = boundary_hit_rate(reference_boundaries, events["boundary"],
                                                 duration_s, window_s=window_s)
    return scores
