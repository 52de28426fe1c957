"""cleanlab over out-of-fold probabilities: boundary (cue) and downbeat decisions.

Each track contributes *candidates*, binary decisions whose label comes from the annotation
and whose probability comes from the heads' out-of-fold (OOF) output, which never saw the
track's own labels:

- **boundaries**: every cue is a positive (p = boundary activation near it); every clear peak
  of the boundary activation with no cue near it is an unlabeled candidate (label 0); phrase
  starts with neither fill in the negatives so cleanlab can estimate per-class thresholds.
  A low-quality positive is a cue with no boundary under it (``cue_extra``, or a move to the
  peak next to it); a low-quality unlabeled peak is a ``cue_missing``.
- **downbeats**: every beat of the grid, labelled downbeat or not. When most of a track's
  labelled downbeats are issues, the bar is numbered wrong (``downbeat_shift``).

Cue labels are positive-unlabeled (a DJ cues *some* boundaries): a missing-cue score is scaled
by how completely that track's DJ cued the boundaries the model sees, so a sparsely cued
Tier 2 track does not flood the report with "missing" cues.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from cleanlab.filter import find_label_issues
from cleanlab.rank import get_label_quality_scores

from edm.audit.findings import Finding
from edm.audit.grid_checks import downbeat_rotation
from edm.data.schema import TempoSegment, Tier, TrackAnnotation, beat_grid
from edm.decode.peaks import pick_peaks
from edm.heads.activations import Activations, sample

#: A boundary activation peak this close to a cue is that cue's boundary (in bars).
MATCH_BARS = 1.5
#: Smallest boundary peak that counts as a candidate for a missing cue.
PEAK_HEIGHT = 0.3


@dataclass
class _Candidate:
    track_id: str
    time_s: float
    label: int
    probability: float
    role: str  # "cue", "peak" or "negative"
    target_s: float | None = None  # peak next to a cue: where the cue probably belongs
    moved_kind: str = "cue_moved_bar"  # what moving it to target_s would correct


def _nearest(values: np.ndarray, t: float) -> float:
    return float(values[np.argmin(np.abs(values - t))]) if values.size else t


def _boundary_candidates(
    track: TrackAnnotation, act: Activations, grid: list[TempoSegment]
) -> list[_Candidate]:
    end = min(track.end_s or np.inf, act.n_frames / act.frames_per_second)
    beats, numbers = beat_grid(grid, end) if grid else (np.zeros(0), np.zeros(0, int))
    downbeats = beats[numbers == 1]
    bar_s = 4 * float(np.median(np.diff(beats))) if beats.size > 1 else 2.0
    fps = act.frames_per_second
    peaks = pick_peaks(act.boundary, fps, height=PEAK_HEIGHT, min_distance_s=2 * bar_s)
    peak_times, peak_heights = peaks.times, peaks.heights
    cue_times = np.array([c.start_s for c in track.cues if c.start_s < end])
    out: list[_Candidate] = []
    spread = np.linspace(-0.25, 0.25, 11)
    for t in cue_times:
        if t < 2 * bar_s:
            continue  # the track's start is a boundary by definition; heads never learn it
        p = float(sample(act.boundary, fps, t + spread).max())
        near = np.abs(peak_times - t) <= 2.5 * bar_s
        target, moved_kind = None, "cue_moved_bar"
        if near.any():
            best = int(np.argmax(np.where(near, peak_heights, -1)))
            if abs(peak_times[best] - t) > 0.25 and peak_heights[best] > p + 0.2:
                target = _nearest(downbeats, float(peak_times[best]))
                moved_kind = "cue_moved_bar" if abs(target - t) >= 0.9 * bar_s else "cue_moved_beat"
        out.append(_Candidate(track.track_id, float(t), 1, p, "cue", target, moved_kind))
    covered = [c.target_s for c in out if c.target_s is not None]
    for t, h in zip(peak_times, peak_heights, strict=True):
        far_from_cues = cue_times.size == 0 or np.min(np.abs(cue_times - t)) > MATCH_BARS * bar_s
        is_target = any(abs(t - c) <= 0.5 * bar_s for c in covered)
        if far_from_cues and not is_target:
            out.append(
                _Candidate(track.track_id, _nearest(downbeats, float(t)), 0, float(h), "peak")
            )
    taken = np.concatenate([cue_times, peak_times])
    for t in downbeats[::4]:
        if taken.size == 0 or np.min(np.abs(taken - t)) > MATCH_BARS * bar_s:
            p = float(sample(act.boundary, fps, t + spread).max())
            out.append(_Candidate(track.track_id, float(t), 0, p, "negative"))
    return out


def _issues(labels: np.ndarray, probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's issue mask and self-confidence quality for binary decisions."""
    p = np.clip(probabilities, 1e-4, 1 - 1e-4)
    pred_probs = np.stack([1 - p, p], axis=1)
    if len(np.unique(labels)) < 2:
        # cleanlab needs both classes; with one, only the quality scores mean anything.
        return np.zeros(len(labels), bool), get_label_quality_scores(labels, pred_probs)
    mask = find_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", n_jobs=1)
    return mask, get_label_quality_scores(labels, pred_probs, method="self_confidence")


def boundary_findings(
    tracks: list[TrackAnnotation],
    activations: dict[str, Activations],
    grids: dict[str, list[TempoSegment]],
) -> list[Finding]:
    """cleanlab findings about cues (extra, misplaced, missing) across a library."""
    candidates: list[_Candidate] = []
    by_id = {t.track_id: t for t in tracks}
    for track in tracks:
        act = activations.get(track.track_id)
        if act is not None:
            candidates += _boundary_candidates(track, act, grids.get(track.track_id, track.grid))
    if not candidates:
        return []
    labels = np.array([c.label for c in candidates])
    mask, quality = _issues(labels, np.array([c.probability for c in candidates]))
    completeness = _completeness(candidates)
    absent = _absent_cue_weight(candidates, mask)
    findings: list[Finding] = []
    for candidate, issue, q in zip(candidates, mask, quality, strict=True):
        if not issue or candidate.role == "negative":
            continue
        track = by_id[candidate.track_id]
        name = track.track.path or track.track.title
        if candidate.role == "cue":
            if candidate.target_s is not None:
                kind = candidate.moved_kind
                fix: dict = {"move_to_s": round(candidate.target_s, 4)}
                detail = f"boundary activation peaks at {candidate.target_s:.2f} s, not here"
            else:
                kind, fix = "cue_extra", {"delete": True}
                detail = f"no boundary under this cue (p={candidate.probability:.2f})"
            # A misplaced cue has a peak next to it (direct evidence); a cue with nothing
            # under it is as likely a boundary the heads missed: weigh by how often they miss.
            score = (1.0 - float(q)) * (1.0 if candidate.target_s is not None else absent)
        else:
            kind, fix = "cue_missing", {"add_cue_s": round(candidate.time_s, 4)}
            weight = (
                1.0 if track.metadata.tier == Tier.VERIFIED else completeness[candidate.track_id]
            )
            score = (1.0 - float(q)) * weight
            detail = (
                f"boundary p={candidate.probability:.2f} with no cue; the DJ cued "
                f"{completeness[candidate.track_id]:.0%} of this track's boundaries"
            )
        findings.append(
            Finding(
                track.track_id,
                candidate.time_s,
                kind,
                round(score, 4),
                fix,
                source="cleanlab",
                track=name,
                detail=detail,
            )
        )
    return findings


def _absent_cue_weight(candidates: list[_Candidate], mask: np.ndarray) -> float:
    """P(cue is wrong | no boundary under it), by Bayes over the library: cleanlab's share of
    flagged cues is the error rate e; the heads' miss rate on cues is m. e / (e + m (1 - e))."""
    cue = np.array([c.role == "cue" for c in candidates])
    if not cue.any():
        return 1.0
    p = np.array([c.probability for c in candidates])[cue]
    error_rate = float(np.clip(mask[cue].mean(), 0.02, 0.5))
    miss_rate = float(np.mean(p < 0.5))
    return error_rate / (error_rate + miss_rate * (1.0 - error_rate))


def _completeness(candidates: list[_Candidate]) -> dict[str, float]:
    """Per track: share of clear boundaries (cued or not) that carry a cue."""
    cued: dict[str, int] = {}
    total: dict[str, int] = {}
    for c in candidates:
        if c.role == "cue" and c.probability >= PEAK_HEIGHT:
            cued[c.track_id] = cued.get(c.track_id, 0) + 1
        if c.role in ("cue", "peak") and (c.role == "peak" or c.probability >= PEAK_HEIGHT):
            total[c.track_id] = total.get(c.track_id, 0) + 1
    tracks = {c.track_id for c in candidates}
    return {t: cued.get(t, 0) / total[t] if total.get(t) else 0.0 for t in tracks}


def downbeat_findings(
    tracks: list[TrackAnnotation],
    activations: dict[str, Activations],
    grids: dict[str, list[TempoSegment]],
) -> list[Finding]:
    """cleanlab over every grid beat's downbeat label; a track whose labelled downbeats are
    mostly issues gets a ``downbeat_shift`` finding (fix: the best renumbering)."""
    rows: list[tuple[int, np.ndarray, np.ndarray]] = []
    kept: list[TrackAnnotation] = []
    for track in tracks:
        act = activations.get(track.track_id)
        if act is None or not track.grid or track.end_s is None:
            continue
        grid = grids.get(track.track_id, track.grid)
        end = min(track.end_s, act.n_frames / act.frames_per_second)
        beats, numbers = beat_grid(grid, end)
        if beats.size < 16:
            continue
        spread = np.array([-1, 0, 1]) / act.frames_per_second
        p = sample(act.downbeat, act.frames_per_second, beats[None, :] + spread[:, None]).max(
            axis=0
        )
        rows.append((len(kept), (numbers == 1).astype(int), p))
        kept.append(track)
    if not rows:
        return []
    labels = np.concatenate([r[1] for r in rows])
    mask, _ = _issues(labels, np.concatenate([r[2] for r in rows]))
    findings: list[Finding] = []
    start = 0
    for position, track_labels, _ in rows:
        track = kept[position]
        track_mask = mask[start : start + len(track_labels)]
        start += len(track_labels)
        flagged = float(track_mask[track_labels == 1].mean()) if track_labels.any() else 0.0
        if flagged < 0.5:
            continue
        act = activations[track.track_id]
        grid = grids.get(track.track_id, track.grid)
        shift, means = downbeat_rotation(
            act, grid, min(track.end_s or np.inf, act.n_frames / act.frames_per_second)
        )
        if shift == 0:
            continue
        # cleanlab flags every downbeat of a track the heads cannot read; only a clear other
        # bar phase makes that a numbering error.
        clear = min(1.0, (means[shift] - means[0]) / max(float(means[shift]), 1e-6) / 0.35)
        new_first = (grid[0].beat_in_bar - 1 + shift) % grid[0].beats_per_bar + 1
        findings.append(
            Finding(
                track.track_id,
                0.0,
                "downbeat_shift",
                round(min(1.0, (flagged - 0.3) / 0.6) * clear, 4),
                {"beat_shift": shift, "new_beat_in_bar": new_first},
                source="cleanlab",
                track=track.track.path or track.track.title,
                detail=f"cleanlab flags {flagged:.0%} of the grid's downbeats",
            )
        )
    return findings
