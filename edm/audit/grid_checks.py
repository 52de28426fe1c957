"""Beat-grid checks: compare a labelled grid with the model's beat and downbeat activations.

Each hypothesis is tested on the grid the earlier fixes give (see
:data:`edm.audit.findings.GRID_FIX_ORDER`): tempo octave, then phase, then an ignored tempo
change, then the downbeat. Every test reads the activation at grid-beat times (linear
interpolation between frames, so offsets finer than one frame still show when averaged over
hundreds of beats); none assumes a frame rate.

Scores are "probability the grid is wrong" in spirit: a logistic of the effect size (offset in
ms, activation ratio) times how clear the activation is, tuned on ``edm synth`` libraries.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from edm.audit.corrections import apply_grid_fix, shift_grid
from edm.audit.findings import Finding
from edm.data.schema import TempoSegment, TrackAnnotation, beat_grid
from edm.decode.peaks import pick_peaks
from edm.heads.activations import EVENT_TASKS, Activations, sample

#: A grid further than this from the beat activation is reported (the issue's threshold).
PHASE_TOLERANCE_S = 0.020
#: Tempo range an octave fix may suggest (EDM from downtempo to drum & bass).
MIN_BPM, MAX_BPM = 60.0, 200.0
#: Fewest tracks whose median phase offset is taken as the model's latency.
LATENCY_MIN_TRACKS = 10
#: Steps of the phase search: coarse across the beat, then fine around the best.
PHASE_COARSE_S = 0.008
PHASE_STEP_S = 0.001
#: Smallest accumulated drift (s) an ignored tempo change must cause before it is reported.
DRIFT_MIN_S = 0.060


@dataclass(frozen=True)
class GridCheck:
    """Findings, and the grid with every suggested fix applied and aligned to the beat
    activation (offsets under the reporting tolerance removed too): cue checks use it."""

    findings: list[Finding]
    corrected_grid: list[TempoSegment]


def _logistic(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def phase_curve(
    activation: np.ndarray,
    frames_per_second: float,
    beats: np.ndarray,
    period_s: float,
    shifts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Mean activation at ``beats + shift`` for each shift (default: across ±half a beat in
    :data:`PHASE_COARSE_S` steps): a cross-correlation of the grid's impulse train with the
    activation."""
    if shifts is None:
        shifts = np.arange(-period_s / 2, period_s / 2 + 1e-9, PHASE_COARSE_S)
    values = sample(activation, frames_per_second, beats[None, :] + shifts[:, None]).mean(axis=1)
    return shifts, values


def _median_period(grid: list[TempoSegment]) -> float:
    return float(np.median([s.beat_period_s for s in grid]))


def _phase(act: Activations, beats: np.ndarray, period_s: float) -> tuple[float, float, float]:
    """Best shift (coarse search, then :data:`PHASE_STEP_S` around the best), mean activation
    there, and at shift 0."""
    shifts, values = phase_curve(act.beat, act.frames_per_second, beats, period_s)
    coarse = float(shifts[int(np.argmax(values))])
    fine = np.arange(coarse - PHASE_COARSE_S, coarse + PHASE_COARSE_S + 1e-9, PHASE_STEP_S)
    fine = np.append(fine, 0.0)
    fine_shifts, fine_values = phase_curve(act.beat, act.frames_per_second, beats, period_s, fine)
    best = int(np.argmax(fine_values[:-1]))
    return float(fine_shifts[best]), float(fine_values[best]), float(fine_values[-1])


def _check_octave(
    track: TrackAnnotation, act: Activations, grid: list[TempoSegment]
) -> Finding | None:
    end = track.end_s or act.n_frames / act.frames_per_second
    beats, numbers = beat_grid(grid, end)
    if len(beats) < 16:
        return None
    period = _median_period(grid)
    shift, _, _ = _phase(act, beats, period)
    on = sample(act.beat, act.frames_per_second, beats + shift)
    mid = sample(act.beat, act.frames_per_second, beats + shift + period / 2)
    quarter = 0.5 * (
        sample(act.beat, act.frames_per_second, beats + shift + period / 4)
        + sample(act.beat, act.frames_per_second, beats + shift - period / 4)
    )
    # Parity counts from the segment's first beat, which is what halving keeps.
    odd_beat = (numbers - grid[0].beat_in_bar) % 2 == 1
    even, odd = float(on[~odd_beat].mean()), float(on[odd_beat].mean())
    strong = max(float(on.mean()), float(mid.mean()), 1e-6)
    clarity = min(1.0, strong / 0.15)
    # Ratios above the activation's own floor: a smeared activation is high everywhere, and
    # only peaks count. Half tempo: the midpoints between grid beats peak like the beats
    # (the floor is a quarter beat off). Double tempo: every other grid beat sits between the
    # real beats (the floor is the midpoint, a sixteenth of the real beat).
    floor_half = float(quarter.mean())
    half = (float(mid.mean()) - floor_half) / max(float(on.mean()) - floor_half, 1e-6)
    floor_double = min(float(mid.mean()), even, odd)
    double = (min(even, odd) - floor_double) / max(max(even, odd) - floor_double, 1e-6)
    if half > 0.45:
        score = _logistic((half - 0.45) / 0.08) * clarity
        fix = {"bpm_factor": 2.0, "new_bpm": round(grid[0].bpm * 2, 3)}
        detail = f"activation between grid beats is {half:.0%} of that on them: tempo is double"
    elif double < 0.45:
        score = _logistic((0.45 - double) / 0.08) * clarity
        fix = {
            "bpm_factor": 0.5,
            "new_bpm": round(grid[0].bpm / 2, 3),
            "odd_beats": bool(odd > even),
        }
        detail = f"every other grid beat has {double:.0%} of the activation: tempo is half"
    else:
        return None
    if not MIN_BPM <= fix["new_bpm"] <= MAX_BPM:
        return None  # DJ grids never run at 45 or 350 BPM; the activation is ambiguous there
    return Finding(
        track.track_id, 0.0, "tempo_octave", round(score, 4), fix, source="grid", detail=detail
    )


def _check_phase(
    track: TrackAnnotation,
    act: Activations,
    grid: list[TempoSegment],
    until_s: float,
    tolerance_s: float = PHASE_TOLERANCE_S,
) -> tuple[Finding | None, float]:
    """A finding when the grid is off by more than the tolerance, and the measured offset
    (the grid is aligned by it either way, so cue checks can use a tighter tolerance)."""
    end = min(track.end_s or np.inf, until_s, act.n_frames / act.frames_per_second)
    beats, _ = beat_grid(grid, end)
    if len(beats) < 8:
        return None, 0.0
    shift, best, at_zero = _phase(act, beats, _median_period(grid))
    if best < 0.05:
        return None, 0.0  # no beat activation to align to
    if abs(shift) <= tolerance_s:
        return None, shift
    contrast = (best - at_zero) / best
    clarity = min(1.0, best / 0.15) * (0.5 + 0.5 * min(1.0, contrast / 0.3))
    score = _logistic((abs(shift) - tolerance_s) / 0.004) * clarity
    finding = Finding(
        track.track_id,
        0.0,
        "grid_phase",
        round(score, 4),
        {"shift_s": round(shift, 4)},
        source="grid",
        detail=f"beat activation peaks {shift * 1000:+.0f} ms from the grid",
    )
    return finding, shift


def beat_peaks(act: Activations) -> np.ndarray:
    """Times of clear beat-activation peaks (at least 30 % of the 99th percentile, 0.15 s
    apart), refined between frames."""
    beat = act.beat
    if beat.size < 3 or beat.max() <= 0:
        return np.zeros(0)
    height = max(0.1, 0.3 * float(np.percentile(beat, 99)))
    return pick_peaks(beat, act.frames_per_second, height=height, min_distance_s=0.15).times


def _check_tempo_change(
    track: TrackAnnotation, act: Activations, grid: list[TempoSegment]
) -> Finding | None:
    """A grid that keeps one tempo where the music changes drifts off the beats after the
    change: inter-peak intervals divided by the grid period step away from 1."""
    peaks = beat_peaks(act)
    if len(peaks) < 24:
        return None
    starts = np.array([s.start_s for s in grid])
    periods = np.array([s.beat_period_s for s in grid])
    period_at = periods[np.clip(np.searchsorted(starts, peaks[:-1], side="right") - 1, 0, None)]
    ratio = np.diff(peaks) / period_at
    one_beat = np.abs(ratio - 1) < 0.15
    times, x = peaks[:-1][one_beat], np.log(ratio[one_beat])
    if len(x) < 24:
        return None
    # Peak-time jitter makes neighbouring intervals anti-correlated: a run of consecutive
    # intervals sums (telescopes) to last-minus-first peak, whose noise is one interval's. So a
    # tail's summed log-ratio has the spread of one interval per unbroken run of beats in it.
    spread = max(1.4826 * float(np.median(np.abs(x - np.median(x)))), 1e-3)
    run = np.concatenate([[0], np.cumsum(np.diff(np.flatnonzero(one_beat)) > 1)])
    tails = np.cumsum(x[::-1])[::-1]
    z = np.abs(tails) / (spread * np.sqrt(run[-1] - run + 1))
    # Where: the split with the largest between-part variance (a step in the mean log-ratio).
    n = len(x)
    split = np.arange(1, n)
    head_mean = np.cumsum(x)[:-1] / split
    tail_mean = tails[1:] / (n - split)
    between = split * (n - split) / n * (tail_mean - head_mean) ** 2
    between[:7] = 0
    between[-12:] = 0
    j = int(np.argmax(between)) + 1
    ratio_after = float(np.exp(tails[j] / (len(x) - j)))
    head = float(np.sum(x[:j]))
    head_z = abs(head) / (spread * np.sqrt(run[j - 1] + 1)) if j else 0.0
    tail_end = min(track.end_s or times[-1], times[-1])
    drift = abs(ratio_after - 1) * (tail_end - times[j])
    if z[j] < 6 or (head_z > 4 and abs(head / max(j, 1)) > 0.004) or drift < DRIFT_MIN_S:
        return None
    segment = grid[int(np.clip(np.searchsorted(starts, times[j], side="right") - 1, 0, None))]
    new_period = segment.beat_period_s * ratio_after
    # Fit the beats after the change as a line (beat index → time), then walk the start back
    # over beats that fit the new line but not the old grid (the change point is found late).
    after = peaks[peaks >= times[j]]
    for _ in range(2):
        k = np.round((after - after[0]) / new_period)
        new_period, anchor = (float(v) for v in np.polyfit(k, after, 1))
    old_times, old_numbers = beat_grid(grid, track.end_s or float(peaks[-1]) + 1)
    while anchor - new_period > 0:
        candidate = anchor - new_period
        near_peak = np.min(np.abs(peaks - candidate)) < 0.015
        near_old = np.min(np.abs(old_times - candidate)) < 0.015
        if not near_peak or near_old:
            break
        anchor = candidate
    nearest = int(np.argmin(np.abs(old_times - anchor)))
    score = _logistic((drift - DRIFT_MIN_S) / 0.02) * min(1.0, float(z[j]) / 12)
    fix = {
        "split_at_s": round(float(anchor), 4),
        "new_bpm": round(60.0 / new_period, 3),
        "beat_in_bar": int(old_numbers[nearest]),
    }
    return Finding(
        track.track_id,
        round(float(anchor), 3),
        "tempo_change_ignored",
        round(score, 4),
        fix,
        source="grid",
        detail=(
            f"beats drift {drift * 1000:.0f} ms after {anchor:.1f} s: "
            f"tempo {60 / new_period:.2f} BPM, grid {segment.bpm:.2f}"
        ),
    )


def downbeat_rotation(
    act: Activations, grid: list[TempoSegment], end_s: float
) -> tuple[int, np.ndarray]:
    """Renumbering (beat shift) that puts the most downbeat activation on beat 1, and the mean
    downbeat activation for each shift."""
    beats, numbers = beat_grid(grid, end_s)
    bar = grid[0].beats_per_bar
    if len(beats) < 2 * bar:
        return 0, np.zeros(bar)
    # Take the best of ±1 frame: a residual sub-frame phase error must not hide a downbeat.
    spread = np.array([-1, 0, 1]) / act.frames_per_second
    values = sample(act.downbeat, act.frames_per_second, beats[None, :] + spread[:, None]).max(
        axis=0
    )
    means = np.array([values[(numbers - 1 + r) % bar == 0].mean() for r in range(bar)])
    return int(np.argmax(means)), means


def _check_downbeat(
    track: TrackAnnotation, act: Activations, grid: list[TempoSegment]
) -> Finding | None:
    end = min(track.end_s or np.inf, act.n_frames / act.frames_per_second)
    shift, means = downbeat_rotation(act, grid, end)
    if shift == 0:
        return None
    best, current = float(means[shift]), float(means[0])
    contrast = (best - current) / max(best, 1e-6)
    score = _logistic((contrast - 0.35) / 0.08) * min(1.0, best / 0.15)
    new_first = (grid[0].beat_in_bar - 1 + shift) % grid[0].beats_per_bar + 1
    return Finding(
        track.track_id,
        0.0,
        "downbeat_shift",
        round(score, 4),
        {"beat_shift": shift, "new_beat_in_bar": new_first},
        source="grid",
        detail=f"downbeat activation is on grid beat {(1 - shift - 1) % len(means) + 1}"
        f" ({best:.2f} vs {current:.2f} on beat 1)",
    )


def check_grid(
    track: TrackAnnotation,
    act: Activations,
    *,
    latency_s: float = 0.0,
    phase_tolerance_s: float = PHASE_TOLERANCE_S,
) -> GridCheck:
    """All grid checks for one track; ``latency_s`` is the model's own offset (library median),
    ``phase_tolerance_s`` the smallest offset reported (see :func:`estimate_phase`).

    Returns the findings and the corrected, activation-aligned grid (see :class:`GridCheck`).
    """
    grid = list(track.grid)
    findings: list[Finding] = []
    if not grid:
        return GridCheck([], grid)

    def accept(finding: Finding | None) -> None:
        nonlocal grid
        if finding is not None:
            findings.append(finding)
            grid = apply_grid_fix(grid, finding.kind, finding.fix)

    if latency_s:
        act = delay(act, latency_s)
    accept(_check_octave(track, act, grid))
    change = _check_tempo_change(track, act, grid)
    # Phase is measured before any tempo change: after it the grid drifts by design.
    until = change.time_s if change else np.inf
    phase, shift = _check_phase(track, act, grid, until, max(PHASE_TOLERANCE_S, phase_tolerance_s))
    accept(phase)
    if phase is None and shift:
        grid = shift_grid(grid, shift)
    accept(change)
    accept(_check_downbeat(track, act, grid))
    name = track.track.path or track.track.title
    return GridCheck([replace(f, track=name) for f in findings], grid)


def delay(act: Activations, latency_s: float) -> Activations:
    """Activations moved ``latency_s`` earlier: undoes a model that fires late by that much."""
    times = act.times() + latency_s
    moved = {name: sample(getattr(act, name), act.frames_per_second, times)
             for name in EVENT_TASKS}
    return Activations(
        **moved,
        frames_per_second=act.frames_per_second,
        section=act.section,
        section_labels=act.section_labels,
    )


def estimate_phase(
    tracks: list[TrackAnnotation], activations: dict[str, Activations]
) -> tuple[float, float]:
    """The model's latency and phase precision over a library: the median offset between grids
    and beat activations, and the 75th percentile of the offsets' distance from it.

    Most grids are right, so the median is the model's own latency (subtracted, so a late model
    does not flag every track), and the spread is how far a right grid can look off (the phase
    check's tolerance grows with it, so an imprecise model does not flag right grids).
    """
    offsets = []
    for track in tracks:
        act = activations.get(track.track_id)
        if act is None or not track.grid or track.end_s is None:
            continue
        beats = track.beats()
        if len(beats) >= 8:
            offsets.append(_phase(act, beats, _median_period(track.grid))[0])
    # With few tracks a median could be one track's own error: trust the model then.
    if len(offsets) < LATENCY_MIN_TRACKS:
        return 0.0, 0.0
    latency = float(np.median(offsets))
    return latency, float(np.percentile(np.abs(np.array(offsets) - latency), 75))


def estimate_latency(tracks: list[TrackAnnotation], activations: dict[str, Activations]) -> float:
    """The model's latency alone; see :func:`estimate_phase`."""
    return estimate_phase(tracks, activations)[0]
