"""Tempo from beat evidence: global tempo, grid fits and local tempo runs.

- :func:`accent_envelope` — kick/snare accents from the band descriptors: what a drummer
  counts on, unlike off-beat hats (high band only) or off-beat basses (low band only).
- :func:`estimate_tempo` — autocorrelation of the beat activation (and of the accents)
  proposes periods; each candidate and its octaves is scored by how well a regular grid
  explains the peaks (precision × recall; with accents, the geometric mean of both scores),
  weighted by an EDM tempo prior: a log-normal around 140 BPM, so 128 beats 64 and 174
  beats 58. A confident downbeat head (:func:`confident_bars`) adds a bar score — four
  beats must explain the downbeats — to every candidate, which settles 2:3 errors of
  shuffled grooves (120 for 180), and then checks the octave on its own.
- :func:`grid_fit` — best phase of a regular grid and its F-score against peaks.
- :func:`local_tempi` and :func:`tempo_runs` — windowed local tempo and the stretches of one
  tempo that become grid segments (:mod:`edm.decode.beats`).

Periods and phases are in frames (the activation's own unit); every knob is in seconds or BPM
and converted with the activation's frame rate.
"""

from __future__ import annotations

import numpy as np

from edm.decode.peaks import Peaks, find_peaks, pick_peaks, refine
from edm.heads.activations import Activations

#: Tempo range that EDM lives in (the onset fallback's floor, the audit's search range).
EDM_MIN_BPM = 70.0
EDM_MAX_BPM = 180.0
#: EDM tempo prior: log-normal over BPM, centred between house/techno and dubstep/trance
#: tempi and wide enough for drum & bass and hardcore (174 BPM: 0.90 of the peak, 190: 0.82),
#: while half tempi of house and techno (64, 70) get about a third of their double and a third
#: of 174 (58) a fifth: the evidence has to be clear to pick them. 87 against 174 is left to
#: the evidence (0.68). On real tracks the heads had not seen, the narrower prior before
#: (132 BPM, 0.5 octave: 0.64 at 180) read two 180/190-BPM projects at 2:3 (120, 127); this one
#: reads them right and raised tempo acc1 and boundary F@0.5 s on every set of fold nets
#: (``benchmarks/bench_decode_cv.py``; issue 15, ``benchmarks/RESULTS.md``).
PRIOR_CENTRE_BPM = 140.0
PRIOR_WIDTH_OCTAVES = 0.7
#: Search range for tempo candidates before the prior.
SEARCH_MIN_BPM = 50.0
SEARCH_MAX_BPM = 240.0
#: A beat peak this close to a grid position counts as explained (mir_eval's beat window is
#: ±70 ms; half of it keeps the score sharp enough to separate nearby tempi).
MATCH_TOLERANCE_S = 0.035
#: Local tempo windows: long enough for ~40 beats, short enough to see a tempo change.
WINDOW_S = 20.0
_HOP_S = 5.0
#: Two local tempi closer than this (relative) are the same tempo.
_SAME_TEMPO = 0.015
#: A tempo stretch must last this long to become its own grid segment.
_MIN_SEGMENT_S = 30.0
#: Beat peaks: at least this share of the activation's maximum, and a quarter beat at 240 BPM
#: apart.
_PEAK_SHARE = 0.2
_PEAK_DISTANCE_S = 0.0625
#: A downbeat peak at least this high is a confident one (the octave check counts them).
_CONFIDENT_DOWNBEAT = 0.5


class DecodeError(ValueError):
    """Activations that cannot be decoded (too short, silent)."""


def activation_peaks(activation: np.ndarray, fps: float) -> Peaks:
    """The peaks decoding fits grids to: at least 20 % of the maximum, 1/16 s apart."""
    top = float(np.max(activation, initial=0.0))
    if top <= 0:
        return Peaks(np.zeros(0), np.zeros(0), fps)
    return pick_peaks(activation, fps, height=_PEAK_SHARE * top, min_distance_s=_PEAK_DISTANCE_S)


def grid_fit(
    period: float, peak_frames: np.ndarray, peak_heights: np.ndarray, tolerance: float
) -> tuple[float, float]:
    """Best phase (frames) of a grid with ``period`` frames, and its F-score vs the peaks.

    Precision: share of grid positions with a peak within ``tolerance``; recall: share of
    peak mass within ``tolerance`` of the grid. Half tempo keeps precision and halves recall;
    double tempo keeps recall and halves precision; the F-score penalises both equally.
    """
    order = np.argsort(peak_frames, kind="stable")
    centres, scores = _grid_fits(period, np.asarray(peak_frames, float)[order],
                                 np.asarray(peak_heights, float)[order], tolerance,
                                 np.array([0]), np.array([len(peak_frames)]))
    return (float(centres[0]), float(scores[0])) if len(scores) else (0.0, 0.0)


def _grid_fits(
    period: float, frames: np.ndarray, heights: np.ndarray, tolerance: float,
    starts: np.ndarray, stops: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`grid_fit` of each window ``frames[start:stop]`` (sorted frames), all at once.

    Windows with no peaks are dropped. Scoring a candidate tempo fits ~30 windows of a
    6-minute track; one vectorised pass instead of a loop over windows is what keeps
    decoding a fraction of ``edm analyze``'s time.
    """
    counts = stops - starts
    keep = counts > 0
    starts, counts = starts[keep], counts[keep]
    n_windows = len(counts)
    if n_windows == 0:
        return np.zeros(0), np.zeros(0)
    # Each (window, peak) pair once, window after window.
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    window = np.repeat(np.arange(n_windows), counts)
    index = np.arange(counts.sum()) - np.repeat(offsets, counts) + np.repeat(starts, counts)
    f, h = frames[index], heights[index]
    # Each peak votes for the phase it implies; the circular weighted histogram's best bin wins.
    phases = np.mod(f, period)
    n_bins = max(8, int(np.ceil(period / max(tolerance, 0.5))))
    bins = np.floor(phases / period * n_bins).astype(int) % n_bins
    votes = np.bincount(window * n_bins + bins, weights=h,
                        minlength=n_windows * n_bins).reshape(n_windows, n_bins)
    votes = votes + np.roll(votes, 1, axis=1) + np.roll(votes, -1, axis=1)
    centre = (np.argmax(votes, axis=1) + 0.5) * period / n_bins
    near = (np.abs((phases - centre[window] + period / 2) % period - period / 2)
            <= 1.5 * period / n_bins)
    # Circular mean of the voting phases refines the bin centre.
    angles = phases / period * 2 * np.pi
    weight = np.where(near, h, 0.0)
    mean = np.arctan2(np.bincount(window, weight * np.sin(angles), n_windows),
                      np.bincount(window, weight * np.cos(angles), n_windows))
    centre = np.where(np.bincount(window, near, n_windows) > 0,
                      (mean % (2 * np.pi)) / (2 * np.pi) * period, centre)
    distance = np.abs((f - centre[window] + period / 2) % period - period / 2)
    hit = distance <= tolerance
    recall = np.bincount(window, np.where(hit, h, 0.0), n_windows) / np.bincount(window, h)
    # Count grid positions inside the span the peaks cover (silence before/after is not a miss).
    span_frames = f[offsets + counts - 1] - f[offsets]
    n_grid = np.maximum(1.0, np.floor(span_frames / period) + 1)
    position = np.round((f - centre[window]) / period).astype(np.int64)
    position -= position.min()
    keys = np.unique(window[hit] * (int(position.max()) + 1) + position[hit])
    hit_positions = np.bincount(keys // (int(position.max()) + 1), minlength=n_windows)
    precision = np.minimum(1.0, hit_positions / n_grid)
    total = precision + recall
    scores = np.where(total > 0, 2 * precision * recall / np.where(total > 0, total, 1.0), 0.0)
    return centre, scores


def _windowed_score(period: float, peaks: Peaks, tolerance: float) -> float:
    """Mean grid F-score over ``WINDOW_S`` windows (half overlapping), each with its own phase.

    Scoring windows rather than the whole track keeps a tempo change from ruining every
    candidate (a single grid fits only one side of the change).
    """
    frames, heights = peaks.frames, peaks.heights
    if len(frames) == 0:
        return 0.0
    window, hop = WINDOW_S * peaks.frames_per_second, WINDOW_S * peaks.frames_per_second / 2
    first, last = float(frames[0]), float(frames[-1])
    # Windows start every hop until one reaches the last peak.
    n_windows = max(1, int(np.ceil((last - first - window) / hop)) + 1)
    window_starts = first + hop * np.arange(n_windows)
    starts = np.searchsorted(frames, window_starts, side="left")
    stops = np.searchsorted(frames, window_starts + window, side="left")
    enough = stops - starts >= 4
    _, scores = _grid_fits(period, frames, heights, tolerance, starts[enough], stops[enough])
    return float(np.mean(scores)) if len(scores) else 0.0


def tempo_prior(bpm: float, min_bpm: float | None = None, max_bpm: float | None = None) -> float:
    """Log-normal EDM prior (:data:`PRIOR_CENTRE_BPM`, :data:`PRIOR_WIDTH_OCTAVES`).

    A caller's range (``min_bpm``/``max_bpm``, like a DJ program's BPM range setting) makes
    the prior flat inside it and falls off by a Gaussian of 1/4 octave outside it.

    >>> round(tempo_prior(64.0) / tempo_prior(128.0), 2), round(tempo_prior(174.0), 2)
    (0.28, 0.9)
    """
    if min_bpm is not None and max_bpm is not None:
        if min_bpm <= bpm <= max_bpm:
            return 1.0
        edge = min_bpm if bpm < min_bpm else max_bpm
        return float(np.exp(-0.5 * (np.log2(bpm / edge) / 0.25) ** 2))
    return float(np.exp(-0.5 * (np.log2(bpm / PRIOR_CENTRE_BPM) / PRIOR_WIDTH_OCTAVES) ** 2))


def accent_envelope(descriptors: dict[str, np.ndarray] | None, n_frames: int) -> np.ndarray | None:
    """Kick/snare accents per frame, in [0, 1]; None without band descriptors.

    The geometric mean of the rises of log bass (20–150 Hz) and log mid (150–2500 Hz)
    energy: a kick or a snare lifts both bands at once, an off-beat hat lifts neither and an
    off-beat bass note mostly one. Scaled by its 99th percentile.
    """
    if not descriptors or "bass" not in descriptors or "mid" not in descriptors:
        return None

    def rise(values: np.ndarray) -> np.ndarray:
        level = np.log1p(100.0 * np.asarray(values, float)[:n_frames])
        return np.maximum(np.diff(level, prepend=level[:1]), 0.0)

    accent = np.sqrt(rise(descriptors["bass"]) * rise(descriptors["mid"]))
    if len(accent) < n_frames:
        accent = np.pad(accent, (0, n_frames - len(accent)))
    top = float(np.percentile(accent, 99)) if len(accent) else 0.0
    if top <= 0:
        return None
    return np.clip(accent / top, 0.0, 1.0)


def _autocorr_periods(
    activation: np.ndarray, fps: float, n: int = 4, beats: int = 1
) -> list[float]:
    """The ``n`` strongest autocorrelation lags (frames, sub-frame) within the search range
    for a period of ``beats`` beats (4: bar lengths)."""
    x = activation - activation.mean()
    size = 1 << int(np.ceil(np.log2(2 * len(x))))
    spectrum = np.fft.rfft(x, size)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[: len(x)]
    lo = max(2, int(np.floor(beats * 60.0 * fps / SEARCH_MAX_BPM)))
    hi = min(len(ac) - 2, int(np.ceil(beats * 60.0 * fps / SEARCH_MIN_BPM)))
    if hi <= lo:
        return []
    lags = find_peaks(ac[lo : hi + 1])
    lags = lags + lo
    lags = lags[np.argsort(ac[lags])[::-1][:n]]
    # The parabola through each lag and its neighbours gives the period to a fraction of a frame.
    return [float(period) for period in refine(ac, lags)]


def estimate_tempo(
    activations: Activations, *, accent: np.ndarray | None = None,
    min_bpm: float | None = None, max_bpm: float | None = None,
) -> float:
    """Global tempo in BPM from the beat activation (and ``accent``, see
    :func:`accent_envelope`), checked against the bars of a confident downbeat head.

    Raises :class:`DecodeError` when neither has peaks (silence).
    """
    fps = activations.frames_per_second
    peaks = activation_peaks(activations.beat, fps)
    accent_peaks = activation_peaks(accent, fps) if accent is not None else None
    if len(peaks) < 4 and (accent_peaks is None or len(accent_peaks) < 4):
        raise DecodeError("no beats found in the beat activation (silent or too short)")
    if len(peaks) < 4:
        activation, peaks, accent, accent_peaks = accent, accent_peaks, None, None
    else:
        activation = activations.beat
    bars = confident_bars(activations.downbeat, fps)
    period = best_period(activation, peaks, min_bpm, max_bpm, accent=accent,
                         accent_peaks=accent_peaks, bars=bars)
    if bars is not None:
        period = _octave_check_with_downbeats(bars, period, fps)
    return 60.0 * fps / period


def confident_bars(downbeat: np.ndarray, fps: float) -> Peaks | None:
    """The downbeat head's peaks when it is confident enough to vote on the tempo: peaks of at
    least :data:`_CONFIDENT_DOWNBEAT` on a quarter of the bars the track would have at
    :data:`PRIOR_CENTRE_BPM` (and at least 4); None otherwise, so a head unsure of the bars
    cannot undo the tempo prior."""
    peaks = activation_peaks(downbeat, fps)
    confident = peaks.heights >= _CONFIDENT_DOWNBEAT
    n_bars = len(downbeat) / (4 * 60.0 * fps / PRIOR_CENTRE_BPM)
    if confident.sum() < max(4.0, 0.25 * n_bars):
        return None
    return peaks


def best_period(
    activation: np.ndarray, peaks: Peaks, min_bpm: float | None, max_bpm: float | None, *,
    accent: np.ndarray | None = None, accent_peaks: Peaks | None = None,
    bars: Peaks | None = None,
) -> float:
    """The period (frames) whose grid best explains ``peaks``, times the tempo prior.

    With ``accent_peaks`` (kick/snare) and ``bars`` (confident downbeat peaks) the score is
    the geometric mean of the beat score, the accent score and the bar score — how well a
    grid of four beats explains the downbeats. The bars settle what beat evidence alone
    cannot: a 180-BPM shuffle fits a 120-BPM beat grid almost as well (2:3), but its bars are
    1.33 s, not 2 s. Candidates: the strongest autocorrelation lags of each evidence (a
    quarter of the bar lags) and their 1/2, 2/3, 3/2 and 2 multiples.
    """
    fps = peaks.frames_per_second
    tolerance = MATCH_TOLERANCE_S * fps
    use_accent = accent is not None and accent_peaks is not None and len(accent_peaks) >= 4
    proposals = _autocorr_periods(activation, fps)
    if use_accent:
        proposals += _autocorr_periods(accent, fps, n=2)
    if bars is not None:
        bar_activation = np.zeros(len(activation))
        at = np.clip(np.round(bars.frames).astype(int), 0, len(activation) - 1)
        bar_activation[at] = bars.heights
        proposals += [lag / 4 for lag in _autocorr_periods(bar_activation, fps, n=2, beats=4)]
    candidates: set[float] = set()
    for period in proposals or [60.0 * fps / 120.0]:
        for ratio in (0.5, 2.0 / 3.0, 1.0, 1.5, 2.0):
            candidates.add(period * ratio)

    scored = []
    for period in candidates:
        bpm = 60.0 * fps / period
        if not SEARCH_MIN_BPM <= bpm <= SEARCH_MAX_BPM:
            continue
        scores = [_windowed_score(period, peaks, tolerance)]
        if use_accent:
            scores.append(_windowed_score(period, accent_peaks, tolerance))
        if bars is not None:
            scores.append(_windowed_score(4 * period, bars, 2 * tolerance))
        score = float(np.prod(scores) ** (1.0 / len(scores)))
        scored.append((score * tempo_prior(bpm, min_bpm, max_bpm), period))
    if not scored:
        raise DecodeError("no tempo candidate in the search range")
    return max(scored)[1]


def _octave_check_with_downbeats(bars: Peaks, period: float, fps: float) -> float:
    """Halve or double the beat period when the confident downbeats say a bar is not four
    beats: the bar score inside :func:`best_period` separates 2:3 and 3:4 errors, but
    averaged with the beat scores it is too weak to overturn the prior on an octave, so the
    downbeat grid alone decides the octave here (25 % better than four beats per bar)."""
    tolerance = MATCH_TOLERANCE_S * fps * 2
    scores = {
        beats: grid_fit(period * beats, bars.frames, bars.heights, tolerance)[1]
        for beats in (2, 4, 8)
    }
    best = max(scores, key=lambda beats: scores[beats])
    if best != 4 and scores[best] > 1.25 * scores[4]:
        candidate = period * best / 4
        if SEARCH_MIN_BPM <= 60.0 * fps / candidate <= SEARCH_MAX_BPM:
            return candidate
    return period


def local_tempi(
    activation: np.ndarray, fps: float, global_period: float
) -> tuple[np.ndarray, np.ndarray]:
    """Window centres (frames) and local periods, searched within ±35 % of the global period."""
    window, hop = int(WINDOW_S * fps), int(_HOP_S * fps)
    tolerance = MATCH_TOLERANCE_S * fps
    centres, periods, scores = [], [], []
    for start in range(0, max(1, len(activation) - window + 1), hop):
        chunk = activation[start : start + window]
        peaks = activation_peaks(chunk, fps)
        if len(peaks) < 8:
            continue
        candidates = [p for p in _autocorr_periods(chunk, fps, n=6)
                      if 0.65 * global_period <= p <= 1.35 * global_period]
        candidates.append(global_period)
        scored = [(grid_fit(p, peaks.frames, peaks.heights, tolerance)[1], p) for p in candidates]
        score, best = max(scored)
        centres.append(start + window / 2)
        periods.append(best)
        scores.append(score)
    centres_a, periods_a, scores_a = np.asarray(centres), np.asarray(periods), np.asarray(scores)
    # A window straddling a tempo change fits no single tempo well and reports an in-between
    # tempo; dropping poorly fitting windows keeps it from becoming a segment of its own.
    keep = scores_a >= 0.85 * np.median(scores_a) if len(scores_a) else scores_a.astype(bool)
    return centres_a[keep], periods_a[keep]


def tempo_runs(centres: np.ndarray, periods: np.ndarray) -> list[tuple[float, float]]:
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
    min_windows = max(2, round((_MIN_SEGMENT_S - WINDOW_S) / _HOP_S) + 1)
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


