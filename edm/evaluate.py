"""Score predictions against ground truth: one function per metric, all over ``mir_eval``.

Conventions
-----------
- Times in seconds, increasing. Beat metrics follow MIREX: beats before 5 s are trimmed
  (``mir_eval.beat.trim_beats``) from reference and estimate alike.
- Segment metrics take boundary times (section starts after 0). The track start and end are
  not boundaries: counting them, as ``trim=False`` would, gives every method two free hits.
- Empty input scores 0.0 with a warning (mir_eval's convention), so one empty track never
  stops a batch; a metric that is undefined for a track (no energy in the truth) is ``nan``
  and left out of the mean.

Metrics
-------
- :func:`beat_f_measure` — F-measure, ±70 ms.
- :func:`beat_continuity` — CMLt and AMLt (correct metrical level / any metrical level).
- :func:`anti_phase` — 1 for a track whose beats sit on the off-beats (its mean over tracks is
  the share of tracks in anti-phase).
- :func:`downbeat_f_measure` — F-measure on downbeats, ±70 ms.
- :func:`tempo_accuracy` — Acc1 (within 4 %) and Acc2 (also at ×2, ×½, ×3, ×⅓).
- :func:`boundary_hit_rate` — boundary F-measure at a window in seconds (0.5 s and 3 s).
- :func:`beat_tolerant_hit_rate` — boundary F-measure within one reference beat.
- :func:`energy_spearman` — rank correlation of per-section overall energy.

Examples
--------
>>> ref = np.arange(0.0, 30.0, 0.5)
>>> round(beat_f_measure(ref, ref + 0.05), 3), round(beat_f_measure(ref, ref + 0.25), 3)
(1.0, 0.0)
>>> tempo_accuracy(128.0, 64.0)
{'tempo_acc1': 0.0, 'tempo_acc2': 1.0}
>>> boundary_hit_rate(np.array([30.0, 60.0]), np.array([30.4, 75.0]), 100.0, window_s=0.5)
0.5
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import mir_eval
import numpy as np
from scipy.stats import spearmanr

from edm.data.schema import AnnotationError, TrackAnnotation, annotation_from_dict, load_annotation

#: Metric names in report order; the keys of :func:`evaluate_track`'s result.
METRICS: tuple[str, ...] = (
    "beat_f",
    "beat_cmlt",
    "beat_amlt",
    "beat_anti_phase",
    "downbeat_f",
    "tempo_acc1",
    "tempo_acc2",
    "boundary_f_0.5s",
    "boundary_f_3s",
    "boundary_f_1beat",
    "energy_spearman",
)

PREDICTION_SUFFIXES = (".json", ".jams", ".yaml")


class EvaluateError(ValueError):
    """A truth or prediction file that cannot be read or matched."""


# ---------------------------------------------------------------------------------------------
# Metrics


def _beats(times: np.ndarray) -> np.ndarray:
    times = np.asarray(times, dtype=float)
    mir_eval.beat.validate(times, times)
    return mir_eval.beat.trim_beats(times)


def beat_f_measure(reference: np.ndarray, estimate: np.ndarray, *, window_s: float = 0.07) -> float:
    """Beat F-measure with a ±``window_s`` hit window (MIREX: 70 ms)."""
    return float(
        mir_eval.beat.f_measure(_beats(reference), _beats(estimate), f_measure_threshold=window_s)
    )


def beat_continuity(reference: np.ndarray, estimate: np.ndarray) -> dict[str, float]:
    """CMLt and AMLt: share of beats in correct continuous stretches (AMLt allows octaves
    and off-beat phase)."""
    _, cmlt, _, amlt = mir_eval.beat.continuity(_beats(reference), _beats(estimate))
    return {"beat_cmlt": float(cmlt), "beat_amlt": float(amlt)}


#: Anti-phase: hardly a beat within ±70 ms of a true one (F below this)...
ANTI_PHASE_MAX_F = 0.3
#: ...while the beats still follow the track at some metrical level (AMLt above this; AMLt
#: accepts the off-beat grid as well as double and half tempo).
ANTI_PHASE_MIN_AMLT = 0.8


def anti_phase(beat_f: float, amlt: float) -> float:
    """1.0 when a track's estimated beats are on the off-beats (F < :data:`ANTI_PHASE_MAX_F`
    with AMLt > :data:`ANTI_PHASE_MIN_AMLT`), else 0.0. A double- or half-tempo grid keeps F
    near 0.67 and is not anti-phase.

    >>> anti_phase(0.02, 0.95), anti_phase(0.67, 0.99), anti_phase(0.1, 0.2)
    (1.0, 0.0, 0.0)
    """
    return float(beat_f < ANTI_PHASE_MAX_F and amlt > ANTI_PHASE_MIN_AMLT)


def downbeat_f_measure(reference: np.ndarray, estimate: np.ndarray) -> float:
    """F-measure on downbeat times (±70 ms), the usual downbeat metric."""
    return beat_f_measure(reference, estimate)


def tempo_accuracy(reference_bpm: float, estimate_bpm: float, *, tolerance: float = 0.04
                   ) -> dict[str, float]:
    """Acc1: estimate within ``tolerance`` of the reference; Acc2: also at ×2, ×½, ×3, ×⅓."""
    if not (reference_bpm > 0 and estimate_bpm > 0):
        warnings.warn("tempo must be > 0 BPM; scoring 0", stacklevel=2)
        return {"tempo_acc1": 0.0, "tempo_acc2": 0.0}

    def close(factor: float) -> bool:
        return abs(estimate_bpm - factor * reference_bpm) <= tolerance * factor * reference_bpm

    return {
        "tempo_acc1": float(close(1.0)),
        "tempo_acc2": float(any(close(f) for f in (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0))),
    }


def _intervals(boundaries: np.ndarray, end_s: float) -> np.ndarray:
    edges = np.unique(np.concatenate([[0.0], np.asarray(boundaries, float), [end_s]]))
    edges = edges[(edges >= 0) & (edges <= end_s)]
    return np.stack([edges[:-1], edges[1:]], axis=1)


def boundary_hit_rate(
    reference: np.ndarray, estimate: np.ndarray, end_s: float, *, window_s: float
) -> float:
    """Boundary detection F-measure (``mir_eval.segment.detection``) at ``window_s`` seconds.

    ``reference``/``estimate`` are boundary times strictly inside ``(0, end_s)``; the track
    start and end are trimmed, not scored.
    """
    ref, est = _intervals(reference, end_s), _intervals(estimate, end_s)
    mir_eval.segment.validate_boundary(ref, est, trim=True)
    if len(ref) < 2 or len(est) < 2:
        return 0.0
    _, _, f = mir_eval.segment.detection(ref, est, window=window_s, trim=True)
    return float(f)


def beat_tolerant_hit_rate(
    reference: np.ndarray, estimate: np.ndarray, end_s: float, *, beat_period_s: float
) -> float:
    """Boundary F-measure where a hit is within one beat of the reference (DJ-relevant:
    a cue one beat off is audibly wrong, one within a beat is a grid-snap away)."""
    return boundary_hit_rate(reference, estimate, end_s, window_s=beat_period_s)


def energy_spearman(
    reference_times: np.ndarray, reference_energy: np.ndarray,
    estimate_times: np.ndarray, estimate_energy: np.ndarray,
) -> float:
    """Spearman correlation of section energy: each reference section (start, value) is paired
    with the estimated section that contains its midpoint. ``nan`` with < 3 sections or
    constant values (no ranking to compare)."""
    ref_starts = np.asarray(reference_times, float)
    ref_values = np.asarray(reference_energy, float)
    est_starts = np.asarray(estimate_times, float)
    est_values = np.asarray(estimate_energy, float)
    if len(ref_starts) < 3 or len(est_starts) == 0:
        return float("nan")
    ends = np.append(ref_starts[1:], ref_starts[-1] + 1.0)
    mids = (ref_starts + ends) / 2
    index = np.clip(np.searchsorted(est_starts, mids, side="right") - 1, 0, len(est_starts) - 1)
    paired = est_values[index]
    ok = np.isfinite(ref_values) & np.isfinite(paired)
    if ok.sum() < 3 or np.ptp(ref_values[ok]) == 0 or np.ptp(paired[ok]) == 0:
        return float("nan")
    return float(spearmanr(ref_values[ok], paired[ok]).statistic)


# ---------------------------------------------------------------------------------------------
# Track level


@dataclass(frozen=True)
class Events:
    """What a method predicts for one track, in seconds; ``None`` for what it does not predict.

    Peers that only output beats (madmom, librosa) fill ``beats`` and ``bpm`` and are scored
    on those; edm fills everything via :meth:`from_annotation`.
    """

    beats: np.ndarray | None = None
    downbeats: np.ndarray | None = None
    bpm: float | None = None
    boundaries: np.ndarray | None = None
    section_starts: np.ndarray | None = None
    section_energy: np.ndarray | None = None

    @classmethod
    def from_annotation(cls, annotation: TrackAnnotation) -> Events:
        sections = annotation.sections
        starts = np.array([s.start_s for s in sections], float)
        energy = np.array(
            [s.energy.overall if s.energy and s.energy.overall is not None else np.nan
             for s in sections], float,
        )
        return cls(
            beats=annotation.beats() if annotation.grid else None,
            downbeats=annotation.downbeats() if annotation.grid else None,
            bpm=main_bpm(annotation),
            # The first section's start is the track start (often the first downbeat, a few
            # hundred ms in), not a structural boundary.
            boundaries=starts[1:] if sections else None,
            section_starts=starts if sections else None,
            section_energy=energy if sections else None,
        )


def main_bpm(annotation: TrackAnnotation) -> float | None:
    """The stated BPM, else the tempo of the grid segment that lasts longest."""
    if annotation.bpm:
        return annotation.bpm
    grid = annotation.grid
    if not grid:
        return None
    end = annotation.end_s or grid[-1].start_s + 1.0
    lengths = [
        (grid[i + 1].start_s if i + 1 < len(grid) else end) - seg.start_s
        for i, seg in enumerate(grid)
    ]
    return grid[int(np.argmax(lengths))].bpm


def evaluate_events(truth: TrackAnnotation, pred: Events) -> dict[str, float]:
    """Every metric the prediction supports; others are ``nan``."""
    scores = dict.fromkeys(METRICS, float("nan"))
    ref = Events.from_annotation(truth)
    end_s = truth.end_s or float(max(np.max(ref.beats, initial=0.0), 1.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # empty-estimate warnings: scored as 0
        if ref.beats is not None and pred.beats is not None:
            scores["beat_f"] = beat_f_measure(ref.beats, pred.beats)
            scores.update(beat_continuity(ref.beats, pred.beats))
            scores["beat_anti_phase"] = anti_phase(scores["beat_f"], scores["beat_amlt"])
        if ref.downbeats is not None and pred.downbeats is not None:
            scores["downbeat_f"] = downbeat_f_measure(ref.downbeats, pred.downbeats)
        if ref.bpm and pred.bpm:
            scores.update(tempo_accuracy(ref.bpm, pred.bpm))
        if ref.boundaries is not None and pred.boundaries is not None and len(ref.boundaries):
            scores["boundary_f_0.5s"] = boundary_hit_rate(
                ref.boundaries, pred.boundaries, end_s, window_s=0.5)
            scores["boundary_f_3s"] = boundary_hit_rate(
                ref.boundaries, pred.boundaries, end_s, window_s=3.0)
            if ref.bpm:
                scores["boundary_f_1beat"] = beat_tolerant_hit_rate(
                    ref.boundaries, pred.boundaries, end_s, beat_period_s=60.0 / ref.bpm)
        if ref.section_energy is not None and pred.section_energy is not None:
            scores["energy_spearman"] = energy_spearman(
                ref.section_starts, ref.section_energy, pred.section_starts, pred.section_energy)
    return scores


def evaluate_track(truth: TrackAnnotation, pred: TrackAnnotation) -> dict[str, float]:
    """Named scores of one predicted annotation against its ground truth."""
    return evaluate_events(truth, Events.from_annotation(pred))


def mean_scores(per_track: Iterable[dict[str, float]]) -> dict[str, float]:
    """Mean of each score over the tracks that have it, ignoring ``nan`` (metric undefined for
    that track); :data:`METRICS` names first, in order, then any other score.

    >>> mean_scores([{"beat_f": 1.0}, {"beat_f": 0.5, "boundary_f_3s": float("nan")}])["beat_f"]
    0.75
    """
    rows = list(per_track)
    present = {key for row in rows for key in row}
    names = [*(m for m in METRICS if m in present), *sorted(present - set(METRICS))]
    out: dict[str, float] = {}
    for name in names:
        values = np.array([row.get(name, np.nan) for row in rows], float)
        out[name] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    return out


# ---------------------------------------------------------------------------------------------
# Folders


def load_prediction(path: str | Path) -> TrackAnnotation:
    """Read an edm prediction: analysis JSON (``edm analyze --format json``), JAMS or YAML."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".jams":
        from edm.data.jams_io import load_truth

        return load_truth(path)
    if suffix == ".yaml":
        return load_annotation(path)
    if suffix != ".json":
        raise EvaluateError(f"{path}: not a prediction file (expected .json, .jams or .yaml)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EvaluateError(f"{path}: cannot read JSON ({error})") from error
    if isinstance(data, dict) and "annotation" in data:
        data = data["annotation"]
    try:
        return annotation_from_dict(data, path)
    except AnnotationError as error:
        raise EvaluateError(str(error)) from error


def _index(directory: Path, suffixes: tuple[str, ...]) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if path.suffix.lower() in suffixes and not path.name.startswith("."):
            files.setdefault(path.stem, path)
    return files


@dataclass
class Report:
    """Scores of one prediction folder: per track, the mean, and problems (one line each)."""

    name: str
    per_track: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @property
    def mean(self) -> dict[str, float]:
        return {**dict.fromkeys(METRICS, float("nan")), **mean_scores(self.per_track.values())}

    def to_dict(self) -> dict:
        def clean(scores: dict[str, float]) -> dict[str, float | None]:
            return {k: (round(v, 4) if np.isfinite(v) else None) for k, v in scores.items()}

        return {
            "name": self.name,
            "tracks": len(self.per_track),
            "mean": clean(self.mean),
            "per_track": {k: clean(v) for k, v in self.per_track.items()},
            "missing": self.missing,
            "problems": self.problems,
        }


def evaluate_library(truth_dir: str | Path, ann_dir: str | Path) -> Report:
    """Score a DJ library's own labels (``edm data import`` of a USB export or master.db:
    Rekordbox's grid and phrase sections) against ``truth_dir/*.jams``, as a peer.

    Annotation files are named after the track, not the truth, so a truth file ``NAME.jams``
    is matched to the annotation whose audio has the stem ``NAME`` (or the same content hash).
    """
    truth_dir, ann_dir = Path(truth_dir), Path(ann_dir)
    for directory in (truth_dir, ann_dir):
        if not directory.is_dir():
            raise EvaluateError(f"{directory}: not a folder")
    from edm.data.jams_io import load_truth
    from edm.data.schema import load_annotations

    report = Report(name=f"{ann_dir} (Rekordbox phrases)")
    annotations, errors = load_annotations(ann_dir)
    report.problems += [str(error).splitlines()[0] for error in errors]
    by_key: dict[str, TrackAnnotation] = {}
    for annotation in annotations:
        if annotation.track.path:
            by_key.setdefault(Path(annotation.track.path.replace("\\", "/")).stem, annotation)
        if annotation.track.content_hash:
            by_key.setdefault(annotation.track.content_hash, annotation)
    truths = _index(truth_dir, (".jams",))
    if not truths:
        raise EvaluateError(f"{truth_dir}: no .jams truth files")
    for stem, truth_path in truths.items():
        try:
            truth = load_truth(truth_path)
        except (AnnotationError, ValueError) as error:
            report.problems.append(str(error).splitlines()[0])
            continue
        own = by_key.get(stem) or by_key.get(truth.track.content_hash or "")
        if own is None:
            report.missing.append(stem)
            continue
        report.per_track[stem] = evaluate_track(truth, own)
    return report


def evaluate_folder(truth_dir: str | Path, pred_dir: str | Path) -> Report:
    """Match ``truth_dir/*.jams`` to ``pred_dir/<same stem>.{json,jams,yaml}`` and score each.

    A file that cannot be read is reported in ``problems`` and skipped; truth without a
    prediction is listed in ``missing`` (it is not scored as zero, so say how many matched).
    """
    truth_dir, pred_dir = Path(truth_dir), Path(pred_dir)
    for directory in (truth_dir, pred_dir):
        if not directory.is_dir():
            raise EvaluateError(f"{directory}: not a folder")
    from edm.data.jams_io import load_truth

    report = Report(name=str(pred_dir))
    predictions = _index(pred_dir, PREDICTION_SUFFIXES)
    truths = _index(truth_dir, (".jams",))
    if not truths:
        raise EvaluateError(f"{truth_dir}: no .jams truth files")
    for stem, truth_path in truths.items():
        if stem not in predictions:
            report.missing.append(stem)
            continue
        try:
            truth = load_truth(truth_path)
            pred = load_prediction(predictions[stem])
            report.per_track[stem] = evaluate_track(truth, pred)
        except (EvaluateError, AnnotationError, ValueError) as error:
            report.problems.append(str(error).splitlines()[0])
    return report
