"""Scores of head activations against truth, over mir_eval, with simple peak picking.

This is the heads' own yardstick (training reports, the benchmark): events are decoded by
plain peak picking, not by :mod:`edm.decode`, so the numbers show what the heads learned.

- beat F / downbeat F: :func:`mir_eval.beat.f_measure` (±70 ms) after
  :func:`mir_eval.beat.trim_beats` (first 5 s dropped, as mir_eval's beat evaluation does);
- boundary hit-rate F at 0.5 s and 3 s: :func:`mir_eval.segment.detection` with ``trim=True``
  (the track's start and end are not boundaries anyone needs to find).
"""

from __future__ import annotations

import warnings

import numpy as np

from edm.data.schema import TrackAnnotation
from edm.heads.activations import Activations
from edm.heads.targets import boundary_times

#: Peak-picking defaults per task: (threshold, minimum distance between peaks in seconds).
PEAK_DEFAULTS: dict[str, tuple[float, float]] = {
    "beat": (0.5, 0.2),
    "downbeat": (0.5, 1.0),
    "boundary": (0.5, 6.0),
}


def pick_peaks(
    probabilities: np.ndarray, frames_per_second: float, threshold: float, min_distance_s: float
) -> np.ndarray:
    """Times (s) of local maxima at least ``threshold`` high and ``min_distance_s`` apart.

    >>> pick_peaks(np.array([0, .2, .9, .3, 0, 0, .7, 0]), 2.0, 0.5, 1.0).tolist()
    [1.0, 3.0]
    """
    # Imported here: scipy.signal pulls in scipy.stats, which `edm analyze` never needs.
    from scipy.signal import find_peaks

    distance = max(1, round(min_distance_s * frames_per_second))
    peaks, _ = find_peaks(
        np.asarray(probabilities, dtype=float), height=threshold, distance=distance
    )
    return peaks / frames_per_second


def decode_events(
    activations: Activations, peaks: dict[str, tuple[float, float]] | None = None
) -> dict[str, np.ndarray]:
    """Beat, downbeat and boundary times from activations by peak picking."""
    settings = {**PEAK_DEFAULTS, **(peaks or {})}
    return {
        task: pick_peaks(getattr(activations, task), activations.frames_per_second, *settings[task])
        for task in ("beat", "downbeat", "boundary")
    }


def _intervals(boundaries: np.ndarray, duration_s: float) -> np.ndarray:
    inner = np.unique(boundaries[(boundaries > 0) & (boundaries < duration_s)])
    edges = np.concatenate([[0.0], inner, [duration_s]])
    return np.stack([edges[:-1], edges[1:]], axis=1)


def boundary_f(
    reference_s: np.ndarray, estimated_s: np.ndarray, duration_s: float, window_s: float
) -> float:
    """Hit-rate F-measure of boundaries within ``±window_s``, start and end of track excluded.

    >>> boundary_f(np.array([0., 30., 60.]), np.array([31., 90.]), 120.0, 3.0)
    0.5
    """
    import mir_eval  # here, not at module level: analysis imports this module, never scores

    reference = _intervals(np.asarray(reference_s, dtype=float), duration_s)
    estimated = _intervals(np.asarray(estimated_s, dtype=float), duration_s)
    if len(reference) < 2 and len(estimated) < 2:
        return 1.0  # neither side has an inner boundary: nothing to find, nothing invented
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, _, f = mir_eval.segment.detection(reference, estimated, window=window_s, trim=True)
    return float(f)


def beat_f(reference_s: np.ndarray, estimated_s: np.ndarray) -> float:
    """mir_eval beat F-measure (±70 ms) after trimming the first 5 s."""
    import mir_eval

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(
            mir_eval.beat.f_measure(
                mir_eval.beat.trim_beats(np.asarray(reference_s, dtype=float)),
                mir_eval.beat.trim_beats(np.asarray(estimated_s, dtype=float)),
            )
        )


def score_track(
    truth: TrackAnnotation,
    activations: Activations,
    peaks: dict[str, tuple[float, float]] | None = None,
) -> dict[str, float]:
    """Beat F, downbeat F and boundary F at 0.5 s and 3 s of one track against its truth.

    Truth boundaries are the annotation's section starts and cue starts.
    """
    duration_s = truth.track.duration_s or activations.n_frames / activations.frames_per_second
    events = decode_events(activations, peaks)
    reference_boundaries = boundary_times(truth)
    scores: dict[str, float] = {}
    if truth.grid:
        scores["beat_f"] = beat_f(truth.beats(), events["beat"])
        scores["downbeat_f"] = beat_f(truth.downbeats(), events["downbeat"])
    if len(reference_boundaries):
        scores["boundary_f_0.5s"] = boundary_f(
            reference_boundaries, events["boundary"], duration_s, 0.5
        )
        scores["boundary_f_3s"] = boundary_f(
            reference_boundaries, events["boundary"], duration_s, 3.0
        )
    return scores


def mean_scores(per_track: list[dict[str, float]]) -> dict[str, float]:
    """Mean of each score over the tracks that have it."""
    keys = sorted({key for scores in per_track for key in scores})
    return {
        key: float(np.mean([scores[key] for scores in per_track if key in scores])) for key in keys
    }
