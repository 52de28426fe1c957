"""Decode head activations into a beat grid, phrase-aligned sections and section energy.

Conventions
-----------
- Input: :class:`~edm.heads.activations.Activations` (probabilities per frame, frame ``i`` at
  ``i / frames_per_second`` seconds). The frame rate is read from the activations once and
  every knob below is in seconds or BPM, converted to frames in exactly one place.
- Output: seconds. :class:`BeatGrid` holds beats, downbeats, the main BPM and the grid as
  :class:`~edm.data.schema.TempoSegment` list (what Rekordbox stores); sections are
  :class:`~edm.data.schema.Section` objects with label and :class:`EnergyData`.

Stages
------
1. :func:`estimate_tempo` — autocorrelation proposes periods; each candidate (and its octaves)
   is scored by how well a regular grid explains the beat peaks (precision × recall), weighted
   by an EDM tempo prior (flat over 70–180 BPM). The downbeat activation then checks the
   octave: a bar must be four beats long.
2. :func:`decode_beats` — windowed local tempo finds tempo changes; each stretch gets a
   least-squares fit of phase and period to the beat peaks; the bar phase comes from the
   downbeat activation.
3. :func:`decode_sections` — boundary candidates on downbeats, chosen by dynamic programming
   that rewards boundary evidence and phrase lengths of 4/8/16/32 bars.
4. :func:`section_energy` — per-section energy figures from the store descriptors.

Examples
--------
>>> fps = 50.0
>>> t = np.arange(int(60 * fps)) / fps
>>> beats = np.arange(0.25, 60, 0.5)                    # 120 BPM
>>> act = lambda times: np.exp(-0.5 * ((t[:, None] - times[None]) * fps / 1.5) ** 2).max(1)
>>> grid = decode_beats(Activations(act(beats), act(beats[::4]), np.zeros_like(t), fps))
>>> round(grid.bpm, 2), round(float(grid.beats[1]), 2), round(float(grid.downbeats[0]), 2)
(120.0, 0.75, 0.25)
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d, map_coordinates, maximum_filter1d, spline_filter1d

from edm.data.schema import EnergyData, Section, TempoSegment, beat_grid
from edm.heads.activations import Activations

#: Tempo range that EDM lives in; candidates outside it are down-weighted, not forbidden.
EDM_MIN_BPM = 70.0
EDM_MAX_BPM = 180.0
#: Search range for tempo candidates before the prior.
_SEARCH_MIN_BPM = 50.0
_SEARCH_MAX_BPM = 240.0
#: A beat peak this close to a grid position counts as explained (mir_eval's beat window is
#: ±70 ms; half of it keeps the score sharp enough to separate nearby tempi).
_MATCH_TOLERANCE_S = 0.035
#: Local tempo windows: long enough for ~40 beats, short enough to see a tempo change.
_WINDOW_S = 20.0
_HOP_S = 5.0
#: Two local tempi closer than this (relative) are the same tempo.
_SAME_TEMPO = 0.015
#: A tempo stretch must last this long to become its own grid segment.
_MIN_SEGMENT_S = 30.0


class DecodeError(ValueError):
    """Activations that cannot be decoded (too short, silent)."""


@dataclass(frozen=True)
class BeatGrid:
    """A decoded beat grid; seconds throughout.

    ``segments`` is the grid as DJ software stores it (one :class:`TempoSegment` per tempo);
    ``beats``/``downbeats`` are its expansion up to the track end; ``bpm`` is the tempo of the
    longest segment.
    """

    beats: np.ndarray
    downbeats: np.ndarray
    bpm: float
    segments: list[TempoSegment] = field(default_factory=list)

    @property
    def beat_period_s(self) -> float:
        return 60.0 / self.bpm


# ---------------------------------------------------------------------------------------------
# Grid scoring


def find_peaks(x: np.ndarray, *, height: float | None = None, distance: int = 1) -> np.ndarray:
    """Indices of local maxima at least ``height`` high and ``distance`` frames apart (the
    higher peak wins), like ``scipy.signal.find_peaks``; numpy only, because importing
    ``scipy.signal`` pulls in ``scipy.stats`` and costs more than decoding a whole track.

    >>> find_peaks(np.array([0, 2, 1, 3, 0, 1, 0.5]), height=1.0, distance=2).tolist()
    [1, 3, 5]
    >>> find_peaks(np.array([0, 2, 1, 3, 0]), distance=3).tolist()
    [3]
    """
    x = np.asarray(x, dtype=float)
    if len(x) < 3:
        return np.zeros(0, dtype=int)
    # Plateaus count once, at their first sample (rising edge then non-rising).
    candidates = np.flatnonzero((x[1:-1] > x[:-2]) & (x[1:-1] >= x[2:])) + 1
    if height is not None:
        candidates = candidates[x[candidates] >= height]
    if distance <= 1 or len(candidates) < 2:
        return candidates
    keep = np.ones(len(candidates), dtype=bool)
    for i in np.argsort(-x[candidates], kind="stable"):
        if not keep[i]:
            continue
        # Suppress lower neighbours within ``distance`` of this peak.
        lo = np.searchsorted(candidates, candidates[i] - distance + 1)
        hi = np.searchsorted(candidates, candidates[i] + distance - 1, side="right")
        keep[lo:i] = False
        keep[i + 1 : hi] = False
    return candidates[keep]


def _peaks(activation: np.ndarray, fps: float) -> tuple[np.ndarray, np.ndarray]:
    """Peak frames and heights of an activation (peaks at least 1/4 beat at 240 BPM apart)."""
    if activation.max(initial=0.0) <= 0:
        return np.zeros(0, dtype=int), np.zeros(0)
    height = 0.2 * float(activation.max())
    frames = find_peaks(activation, height=height, distance=max(1, int(0.0625 * fps)))
    # Parabolic interpolation puts each peak between frames: the grid fit then reaches
    # sub-frame accuracy instead of inheriting a half-frame rounding bias.
    inner = (frames > 0) & (frames < len(activation) - 1)
    a = activation[frames[inner] - 1]
    b = activation[frames[inner]]
    c = activation[frames[inner] + 1]
    denom = a - 2 * b + c
    shift = np.where(denom < 0, 0.5 * (a - c) / np.where(denom < 0, denom, -1.0), 0.0)
    positions = frames.astype(float)
    positions[inner] += np.clip(shift, -0.5, 0.5)
    return positions, activation[frames]


def _grid_fit(
    period: float, peak_frames: np.ndarray, peak_heights: np.ndarray, tolerance: float,
    n_frames: int,
) -> tuple[float, float]:
    """Best phase (frames) of a grid with ``period`` frames, and its F-score vs the peaks.

    Precision: share of grid positions with a peak within ``tolerance``; recall: share of
    peak mass within ``tolerance`` of the grid. Half tempo keeps precision and halves recall;
    double tempo keeps recall and halves precision; the F-score penalises both equally.
    """
    if len(peak_frames) == 0:
        return 0.0, 0.0
    # Each peak votes for the phase it implies; the circular weighted histogram's best bin wins.
    phases = np.mod(peak_frames, period)
    n_bins = max(8, int(np.ceil(period / max(tolerance, 0.5))))
    bins = np.floor(phases / period * n_bins).astype(int) % n_bins
    votes = np.bincount(bins, weights=peak_heights, minlength=n_bins)
    votes = votes + np.roll(votes, 1) + np.roll(votes, -1)
    best = int(np.argmax(votes))
    centre = (best + 0.5) * period / n_bins
    near = np.abs((phases - centre + period / 2) % period - period / 2) <= 1.5 * period / n_bins
    if near.any():
        # Circular mean of the voting phases refines the bin centre.
        angles = phases[near] / period * 2 * np.pi
        mean = np.angle(np.sum(peak_heights[near] * np.exp(1j * angles)))
        centre = (mean % (2 * np.pi)) / (2 * np.pi) * period
    distance = np.abs((peak_frames - centre + period / 2) % period - period / 2)
    hit = distance <= tolerance
    recall = float(peak_heights[hit].sum() / peak_heights.sum())
    # Count grid positions inside the span the peaks cover (silence before/after is not a miss).
    first, last = peak_frames.min(), peak_frames.max()
    n_grid = max(1.0, np.floor((last - first) / period) + 1)
    hit_positions = len(np.unique(np.round((peak_frames[hit] - centre) / period)))
    precision = min(1.0, hit_positions / n_grid)
    score = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return centre, score


def _windowed_score(
    period: float, frames: np.ndarray, heights: np.ndarray, tolerance: float, fps: float
) -> float:
    """Mean grid F-score over ``_WINDOW_S`` windows, each with its own phase.

    Scoring windows rather than the whole track keeps a tempo change from ruining every
    candidate (a single grid fits only one side of the change).
    """
    window, hop = _WINDOW_S * fps, _WINDOW_S * fps / 2
    if len(frames) == 0:
        return 0.0
    first, last = float(frames.min()), float(frames.max())
    scores = []
    start = first
    while True:
        inside = (frames >= start) & (frames < start + window)
        if inside.sum() >= 4:
            scores.append(_grid_fit(period, frames[inside], heights[inside], tolerance, 0)[1])
        if start + window >= last:
            break
        start += hop
    return float(np.mean(scores)) if scores else 0.0


def _tempo_prior(bpm: float, min_bpm: float = EDM_MIN_BPM, max_bpm: float = EDM_MAX_BPM) -> float:
    """1 inside ``[min_bpm, max_bpm]``; falls off by a Gaussian of 1/4 octave outside it."""
    if min_bpm <= bpm <= max_bpm:
        return 1.0
    edge = min_bpm if bpm < min_bpm else max_bpm
    return float(np.exp(-0.5 * (np.log2(bpm / edge) / 0.25) ** 2))


def _autocorr_periods(activation: np.ndarray, fps: float, n: int = 4) -> list[float]:
    """The ``n`` strongest autocorrelation lags (frames, sub-frame) within the search range."""
    x = activation - activation.mean()
    size = 1 << int(np.ceil(np.log2(2 * len(x))))
    spectrum = np.fft.rfft(x, size)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[: len(x)]
    lo = max(2, int(np.floor(60.0 * fps / _SEARCH_MAX_BPM)))
    hi = min(len(ac) - 2, int(np.ceil(60.0 * fps / _SEARCH_MIN_BPM)))
    if hi <= lo:
        return []
    lags = find_peaks(ac[lo : hi + 1])
    lags = lags + lo
    lags = lags[np.argsort(ac[lags])[::-1][:n]]
    periods = []
    for lag in lags:
        # Parabolic interpolation gives the period to a fraction of a frame.
        a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
        denom = a - 2 * b + c
        periods.append(float(lag + (0.5 * (a - c) / denom if denom != 0 else 0.0)))
    return periods


def estimate_tempo(
    activations: Activations, *, min_bpm: float = EDM_MIN_BPM, max_bpm: float = EDM_MAX_BPM
) -> float:
    """Global tempo in BPM from the beat activation, octave-checked with the downbeats.

    Raises :class:`DecodeError` when the beat activation has no peaks (silence).
    """
    fps = activations.frames_per_second
    frames, heights = _peaks(activations.beat, fps)
    if len(frames) < 4:
        raise DecodeError("no beats found in the beat activation (silent or too short)")
    period = _best_period(activations.beat, frames, heights, fps, min_bpm, max_bpm)
    period = _octave_check_with_downbeats(activations.downbeat, period, fps)
    return 60.0 * fps / period


def _best_period(
    activation: np.ndarray, frames: np.ndarray, heights: np.ndarray, fps: float,
    min_bpm: float, max_bpm: float,
) -> float:
    tolerance = _MATCH_TOLERANCE_S * fps
    candidates: set[float] = set()
    for period in _autocorr_periods(activation, fps) or [60.0 * fps / 120.0]:
        for ratio in (0.5, 2.0 / 3.0, 1.0, 1.5, 2.0):
            candidates.add(period * ratio)

    scored = []
    for period in candidates:
        bpm = 60.0 * fps / period
        if not _SEARCH_MIN_BPM <= bpm <= _SEARCH_MAX_BPM:
            continue
        score = _windowed_score(period, frames, heights, tolerance, fps)
        scored.append((score * _tempo_prior(bpm, min_bpm, max_bpm), period))
    if not scored:
        raise DecodeError("no tempo candidate in the search range")
    return max(scored)[1]


def _octave_check_with_downbeats(downbeat: np.ndarray, period: float, fps: float) -> float:
    """Halve or double the beat period when the downbeats say a bar is not four beats.

    Only a clear downbeat verdict (25 % better than four beats per bar) changes the tempo.
    """
    frames, heights = _peaks(downbeat, fps)
    if len(frames) < 4:
        return period
    tolerance = _MATCH_TOLERANCE_S * fps * 2
    scores = {
        beats: _grid_fit(period * beats, frames, heights, tolerance, len(downbeat))[1]
        for beats in (2, 4, 8)
    }
    best = max(scores, key=lambda beats: scores[beats])
    if best != 4 and scores[best] > 1.25 * scores[4]:
        candidate = period * best / 4
        if _SEARCH_MIN_BPM <= 60.0 * fps / candidate <= _SEARCH_MAX_BPM:
            return candidate
    return period


# ---------------------------------------------------------------------------------------------
# Beat decoding


#: Coarse-to-fine period search around the tempo estimate: (relative half-width, steps).
#: The last stage resolves 4e-6 of the period: under 2 ms of drift over 1000 beats.
_PERIOD_STAGES = ((0.01, 41), (0.0006, 31), (0.00004, 21))
#: Phase resolution of the comb search, in frames.
_PHASE_STEP_FRAMES = 0.25


def _comb_fit(
    activation: np.ndarray, lo: float, hi: float, period: float
) -> tuple[float, float]:
    """Phase and period (frames) of the regular grid over ``[lo, hi)`` whose positions collect
    the most beat activation.

    A comb over the activation itself, not a fit through picked peaks: a weak or noisy head
    gives many spurious peaks that bias a regression, but noise is not periodic, so summing
    the activation at hundreds of grid positions still peaks at the true period and phase.
    """
    lo_i, hi_i = max(0, int(lo)), min(len(activation), int(np.ceil(hi)))
    # Cubic-spline sampling: linear interpolation is flat between two equal samples around a
    # peak that falls between frames, which leaves the period free to tilt by a frame over
    # the whole track; a spline has its maximum where the peak really is.
    coefficients = spline_filter1d(np.asarray(activation, float), order=3, mode="nearest")
    best_phase, best_period = float(lo_i), period
    for stage, (half_width, steps) in enumerate(_PERIOD_STAGES):
        best_score = -np.inf
        centre = best_phase
        for candidate in best_period * (1 + np.linspace(-half_width, half_width, steps)):
            count = int((hi_i - lo_i) / candidate) - 1
            if count < 2:
                continue
            # Every phase in the first stage; later stages only refine around the best one.
            phases = (lo_i + np.arange(0.0, candidate, 2 * _PHASE_STEP_FRAMES) if stage == 0
                      else centre + np.arange(-1.0, 1.0 + 1e-9, _PHASE_STEP_FRAMES / 2))
            positions = phases[:, None] + np.arange(count)[None, :] * candidate
            samples = map_coordinates(coefficients, positions.reshape(1, -1), order=3,
                                      mode="nearest", prefilter=False)
            scores = samples.reshape(positions.shape).mean(axis=1)
            k = int(np.argmax(scores))
            if scores[k] > best_score:
                best_score, best_phase, best_period = float(scores[k]), float(phases[k]), candidate
    return best_phase, best_period


def _local_tempi(
    activation: np.ndarray, fps: float, global_period: float
) -> tuple[np.ndarray, np.ndarray]:
    """Window centres (frames) and local periods, searched within ±35 % of the global period."""
    window, hop = int(_WINDOW_S * fps), int(_HOP_S * fps)
    tolerance = _MATCH_TOLERANCE_S * fps
    centres, periods, scores = [], [], []
    for start in range(0, max(1, len(activation) - window + 1), hop):
        chunk = activation[start : start + window]
        frames, heights = _peaks(chunk, fps)
        if len(frames) < 8:
            continue
        candidates = [p for p in _autocorr_periods(chunk, fps, n=6)
                      if 0.65 * global_period <= p <= 1.35 * global_period]
        candidates.append(global_period)
        scored = [(_grid_fit(p, frames, heights, tolerance, window)[1], p) for p in candidates]
        score, best = max(scored)
        centres.append(start + window / 2)
        periods.append(best)
        scores.append(score)
    centres_a, periods_a, scores_a = np.asarray(centres), np.asarray(periods), np.asarray(scores)
    # A window straddling a tempo change fits no single tempo well and reports an in-between
    # tempo; dropping poorly fitting windows keeps it from becoming a segment of its own.
    keep = scores_a >= 0.85 * np.median(scores_a) if len(scores_a) else scores_a.astype(bool)
    return centres_a[keep], periods_a[keep]


def _tempo_runs(centres: np.ndarray, periods: np.ndarray, fps: float) -> list[tuple[float, float]]:
    """Group consecutive windows of the same tempo: (first centre, last centre) frames each.

    Runs shorter than ``_MIN_SEGMENT_S`` are absorbed by their neighbours (a fill or a
    breakdown without drums is not a tempo change).
    """
    runs: list[list[int]] = []
    for i, period in enumerate(periods):
        if runs and abs(period / np.median(periods[runs[-1]]) - 1) < _SAME_TEMPO:
            runs[-1].append(i)
        else:
            runs.append([i])
    min_windows = max(2, round((_MIN_SEGMENT_S - _WINDOW_S) / _HOP_S) + 1)
    merged: list[list[int]] = []
    for run in runs:
        if (len(run) < min_windows and merged) or (merged and len(merged[-1]) < min_windows):
            merged[-1].extend(run)
        else:
            merged.append(list(run))
    # Merge neighbours that ended up at the same tempo after absorbing short runs.
    final: list[list[int]] = []
    for run in merged:
        if final and abs(np.median(periods[run]) / np.median(periods[final[-1]]) - 1) < _SAME_TEMPO:
            final[-1].extend(run)
        else:
            final.append(run)
    return [(float(centres[r[0]]), float(centres[r[-1]])) for r in final]


def _bar_phase(downbeat: np.ndarray, beat_frames: np.ndarray, beats_per_bar: int = 4) -> int:
    """Index (0..beats_per_bar-1) of the first beat that is a downbeat, by downbeat evidence."""
    if len(beat_frames) == 0:
        return 0
    idx = np.clip(np.round(beat_frames).astype(int), 0, len(downbeat) - 1)
    values = downbeat[idx]
    scores = [values[r::beats_per_bar].mean() if len(values[r::beats_per_bar]) else 0.0
              for r in range(beats_per_bar)]
    return int(np.argmax(scores))


def decode_beats(activations: Activations, *, beats_per_bar: int = 4) -> BeatGrid:
    """Beats, downbeats, BPM and tempo segments from activations.

    Raises :class:`DecodeError` for activations without beats (silence) or shorter than 4 s.
    """
    fps = activations.frames_per_second
    n_frames = activations.n_frames
    duration_s = n_frames / fps
    if duration_s < 4.0:
        raise DecodeError(f"audio too short to decode a beat grid ({duration_s:.1f} s < 4 s)")
    beat = np.asarray(activations.beat, dtype=float)
    # Max-filtering the downbeat activation over ±tolerance makes bar-phase voting robust to
    # a downbeat peak a frame or two off the beat peak.
    downbeat = maximum_filter1d(
        np.asarray(activations.downbeat, dtype=float),
        size=2 * max(1, round(_MATCH_TOLERANCE_S * fps)) + 1,
    )
    global_period = 60.0 * fps / estimate_tempo(activations)
    # A light blur (sigma = 10 ms) turns the comb's samples into soft hits without moving peaks.
    smooth_beat = gaussian_filter1d(beat, sigma=max(0.5, 0.01 * fps))
    frames, heights = _peaks(beat, fps)

    centres, periods = _local_tempi(beat, fps, global_period)
    runs = _tempo_runs(centres, periods, fps) if len(centres) else []
    if len(runs) <= 1:
        spans = [(0.0, float(n_frames))]
    else:
        # Each run owns the frames up to the midpoint of the gap to the next run; the exact
        # change point is refined below.
        cuts = [0.0] + [(a[1] + b[0]) / 2 for a, b in itertools.pairwise(runs)]
        spans = list(zip(cuts, [*cuts[1:], float(n_frames)], strict=True))

    fits: list[tuple[float, float, float, float]] = []  # (span start, span end, phase, period)
    for start, end in spans:
        inside = (frames >= start) & (frames < end)
        if inside.sum() < 4:
            continue
        local_period = global_period
        if len(spans) > 1:
            local_frames, local_heights = frames[inside], heights[inside]
            local_period = _best_period(
                beat[int(start) : int(end)], local_frames - int(start), local_heights, fps,
                60.0 * fps / (1.35 * global_period), 60.0 * fps / (0.65 * global_period),
            )
        phase, period = _comb_fit(smooth_beat, start, end, local_period)
        fits.append((start, end, phase, period))
    if not fits:
        raise DecodeError("no beats found in the beat activation (silent or too short)")

    segments = _segments_from_fits(fits, frames, downbeat, fps, n_frames, beats_per_bar)
    beats, numbers = beat_grid(segments, duration_s)
    longest = max(
        range(len(segments)),
        key=lambda i: (segments[i + 1].start_s if i + 1 < len(segments) else duration_s)
        - segments[i].start_s,
    )
    return BeatGrid(
        beats=beats, downbeats=beats[numbers == 1], bpm=segments[longest].bpm, segments=segments
    )


def _segments_from_fits(
    fits: list[tuple[float, float, float, float]], peak_frames: np.ndarray,
    downbeat: np.ndarray, fps: float, n_frames: int, beats_per_bar: int,
) -> list[TempoSegment]:
    """Turn per-stretch grid fits into TempoSegments with exact change points and bar phase."""
    starts: list[float] = []  # frame of each segment's first beat
    sorted_peaks = np.sort(peak_frames)
    sigma = 0.01 * fps

    def nearest(pos: np.ndarray) -> np.ndarray:
        """Distance (frames) from each position to the nearest beat peak."""
        i = np.clip(np.searchsorted(sorted_peaks, pos), 1, len(sorted_peaks) - 1)
        return np.minimum(np.abs(pos - sorted_peaks[i - 1]), np.abs(pos - sorted_peaks[i]))

    for i, (start, _, phase, period) in enumerate(fits):
        if i == 0:
            # The first segment's anchor is its first beat at or after time 0.
            first = phase - np.floor(phase / period) * period
            starts.append(first)
            continue
        prev_phase, prev_period = fits[i - 1][2], fits[i - 1][3]
        # Change point: among beats of the new grid around the nominal cut, pick the one that
        # maximises activation of old-grid beats before it plus new-grid beats from it on.
        # The nominal cut is only known to a window's width; search that far, score 8 beats.
        search = 0.75 * _WINDOW_S * fps
        zone = 8 * max(period, prev_period)
        k0 = np.ceil((start - search - phase) / period)
        cand = phase + np.arange(k0, k0 + int(2 * search / period) + 1) * period
        cand = cand[(cand > starts[-1] + prev_period) & (cand < n_frames)]
        if len(cand) == 0:
            continue

        # One fixed scoring window for every candidate, so all are judged on the same peaks.
        lo, hi = float(cand.min()) - zone, float(cand.max()) + zone

        def total(cut: float, prev_phase=prev_phase, prev_period=prev_period,
                  phase=phase, period=period, lo=lo, hi=hi) -> float:
            old = prev_phase + np.arange(np.ceil((lo - prev_phase) / prev_period),
                                         np.ceil((cut - prev_phase) / prev_period)) * prev_period
            # ``cut`` is itself a new-grid beat: round, since ceil of k + 1e-12 skips it.
            new = phase + np.arange(np.round((cut - phase) / period),
                                    np.floor((hi - phase) / period) + 1) * period
            # Each grid position scores by its distance to the nearest beat peak (sub-frame),
            # so a position between peaks adds nothing and the faster grid cannot win by count.
            pos = np.concatenate([old, new])
            return float(np.exp(-0.5 * (nearest(pos) / sigma) ** 2).sum())

        starts.append(float(max(cand, key=total)))

    segments: list[TempoSegment] = []
    for i, (first, fit) in enumerate(zip(starts, fits, strict=False)):
        period = fit[3]
        stop = starts[i + 1] if i + 1 < len(starts) else float(n_frames)
        count = max(1, int(np.ceil((stop - first) / period)))
        beat_frames = first + np.arange(count) * period
        # ``phase`` = index of the first downbeat, so the first beat is number 1 - phase (mod).
        phase = _bar_phase(downbeat, beat_frames, beats_per_bar)
        segments.append(
            TempoSegment(
                start_s=round(first / fps, 4),
                bpm=round(60.0 * fps / period, 3),
                beats_per_bar=beats_per_bar,
                beat_in_bar=int((-phase) % beats_per_bar + 1),
            )
        )
    return segments


# ---------------------------------------------------------------------------------------------
# Sections


#: Cost of a section whose length in bars is not a whole phrase. A cost rather than a bonus:
#: a bonus for phrase lengths would pay for splitting a 16-bar section into 8 + 8 on no
#: evidence; a cost only decides between nearby candidates and keeps bogus splits unpaid.
_PHRASE_COST = {8: 0.0, 4: 0.05, 2: 0.12}
_OFF_PHRASE_COST = 0.2


def _phrase_cost(bars: int) -> float:
    for length, cost in _PHRASE_COST.items():
        if bars % length == 0:
            return cost
    return _OFF_PHRASE_COST


def decode_boundaries(
    activations: Activations, grid: BeatGrid, *, threshold: float = 0.25,
    min_section_bars: int = 4, max_section_bars: int = 64,
) -> np.ndarray:
    """Section boundary times (s) on downbeats, excluding 0 and the track end.

    Each downbeat gets the strongest boundary activation within half a beat of it; dynamic
    programming picks the set of downbeats that maximises ``sum(evidence - threshold)`` minus
    a cost for sections that are not whole phrases (multiples of 8 bars cost nothing, 4 bars
    a little, odd lengths most), with sections of ``min_section_bars`` to ``max_section_bars``
    bars; a longer stretch is split at its best-evidence downbeat.
    """
    fps = activations.frames_per_second
    downbeats = grid.downbeats
    if len(downbeats) < 2:
        return np.zeros(0)
    half_beat = max(1, round(0.5 * grid.beat_period_s * fps))
    pooled = maximum_filter1d(np.asarray(activations.boundary, float), size=2 * half_beat + 1)
    idx = np.clip(np.round(downbeats * fps).astype(int), 0, len(pooled) - 1)
    evidence = pooled[idx]
    # Heads fire where the audio stops; a "section" in the last two bars is the track's end.
    end_s = activations.n_frames / fps
    evidence[downbeats > end_s - 8 * grid.beat_period_s] = 0.0
    # Node j < n is downbeat j (node 0 = the track start, always chosen); node n = the end.
    n = len(downbeats)
    cost = np.array([_phrase_cost(bars) if bars else 0.0 for bars in range(max_section_bars + 1)])
    best = np.full(n + 1, -np.inf)
    back = np.zeros(n + 1, dtype=int)
    best[0] = 0.0
    for i in range(1, n + 1):
        if i < n:
            js = np.arange(max(0, i - max_section_bars), i - min_section_bars + 1)
            gain = evidence[i] - threshold
            # The last section may be cut short by the track end: no phrase cost for it.
            extra = -cost[i - js]
        else:
            js = np.arange(max(0, i - max_section_bars), i)
            gain, extra = 0.0, np.zeros(len(js))
        if len(js) == 0:
            continue
        scores = best[js] + extra + gain
        k = int(np.argmax(scores))
        best[i], back[i] = scores[k], js[k]
    chosen = []
    node = back[n]
    while node > 0:
        chosen.append(node)
        node = back[node]
    return np.asarray(sorted(downbeats[j] for j in chosen), dtype=float)


def _linear_slope(values: np.ndarray) -> float:
    if len(values) < 2:
        return 0.0
    x = np.linspace(0.0, 1.0, len(values))
    return float(np.polyfit(x, values, 1)[0])


def section_energy(
    descriptors: dict[str, np.ndarray], frames_per_second: float,
    bounds_s: list[tuple[float, float]], grid: BeatGrid,
) -> list[EnergyData]:
    """Energy figures per section from per-frame descriptors.

    - ``overall``/``bass``/``mid``/``high``: mean ``rms``/band energy, divided by the track's
      loudest section, so 1.0 is the peak section of this track.
    - ``density``: onset peaks per beat; ``brightness``: mean ``centroid_hz``.
    - ``tension``: slope of ``overall`` energy across the section (end minus start of a line
      fitted to the per-frame energy, relative to the track's loudest section); risers are > 0.
    """
    def mean_in(name: str, start: float, end: float) -> float:
        values = descriptors.get(name)
        if values is None or len(values) == 0:
            return float("nan")
        a = int(start * frames_per_second)
        b = max(a + 1, int(end * frames_per_second))
        chunk = values[a:b]
        return float(chunk.mean()) if len(chunk) else float("nan")

    raw = {
        name: np.array([mean_in(name, s, e) for s, e in bounds_s])
        for name in ("rms", "bass", "mid", "high", "centroid_hz")
    }
    scale = {name: np.nanmax(raw[name]) if np.isfinite(raw[name]).any() else np.nan
             for name in ("rms", "bass", "mid", "high")}
    onset = descriptors.get("onset")
    onset_frames = np.zeros(0, dtype=int)
    if onset is not None and len(onset) and onset.max() > 0:
        # Adaptive threshold: flux above its 1-s moving median by half the track's spread, so
        # quiet hats in a breakdown count as onsets and a loud intro does not hide the rest.
        from scipy.ndimage import median_filter

        detail = onset - median_filter(onset, size=max(3, int(frames_per_second)) | 1)
        onset_frames = find_peaks(detail, height=0.5 * float(np.std(detail)),
                                     distance=max(1, int(0.05 * frames_per_second)))
    onset_times = onset_frames / frames_per_second
    rms = descriptors.get("rms")

    def rel(name: str, i: int) -> float | None:
        value, top = raw[name][i], scale[name]
        if not np.isfinite(value) or not np.isfinite(top) or top <= 0:
            return None
        return round(float(value / top), 4)

    energies = []
    for i, (start, end) in enumerate(bounds_s):
        n_beats = int(((grid.beats >= start) & (grid.beats < end)).sum())
        n_onsets = int(((onset_times >= start) & (onset_times < end)).sum())
        tension = None
        if rms is not None and np.isfinite(scale["rms"]) and scale["rms"] > 0:
            a, b = int(start * frames_per_second), int(end * frames_per_second)
            tension = round(_linear_slope(np.asarray(rms[a:b], float) / scale["rms"]), 4)
        centroid = raw["centroid_hz"][i]
        energies.append(
            EnergyData(
                overall=rel("rms", i), bass=rel("bass", i), mid=rel("mid", i), high=rel("high", i),
                density=round(n_onsets / n_beats, 4) if n_beats and onset is not None else None,
                brightness=round(float(centroid), 1) if np.isfinite(centroid) else None,
                tension=tension,
            )
        )
    return energies


def _section_labels(
    activations: Activations, bounds_s: list[tuple[float, float]]
) -> list[str | None]:
    if activations.section is None or not activations.section_labels:
        return [None] * len(bounds_s)
    fps = activations.frames_per_second
    labels: list[str | None] = []
    for start, end in bounds_s:
        a = int(start * fps)
        b = max(a + 1, int(end * fps))
        probs = activations.section[a:b]
        labels.append(
            activations.section_labels[int(np.argmax(probs.mean(axis=0)))] if len(probs) else None
        )
    return labels


def decode_sections(
    activations: Activations, grid: BeatGrid, *, descriptors: dict[str, np.ndarray] | None = None,
    duration_s: float | None = None, threshold: float = 0.25,
) -> list[Section]:
    """Sections covering the track: boundaries on downbeats, labels, energy from descriptors.

    ``descriptors`` (store/backbone per-frame ``rms``, ``bass``, ``mid``, ``high``, ``onset``,
    ``centroid_hz`` at the activations' frame rate) give the energy; without them sections
    carry no energy.
    """
    end_s = activations.n_frames / activations.frames_per_second
    if duration_s is not None:
        end_s = duration_s
    boundaries = decode_boundaries(activations, grid, threshold=threshold)
    edges = [0.0, *[float(b) for b in boundaries if 0.0 < b < end_s], end_s]
    bounds = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    labels = _section_labels(activations, bounds)
    energies: list[EnergyData | None] = [None] * len(bounds)
    if descriptors:
        energies = list(section_energy(descriptors, activations.frames_per_second, bounds, grid))
    return [
        Section(start_s=round(a, 4), end_s=round(b, 4), label=label, energy=energy)
        for (a, b), label, energy in zip(bounds, labels, energies, strict=True)
    ]
