"""Beats from activations: a :class:`BeatGrid` of tempo segments, beats and downbeats.

:func:`decode_beats` finds the global tempo (:mod:`edm.decode.tempo`), splits the track where
the local tempo changes, fits each stretch with a comb over the beat evidence
(:class:`GridFit`: phase and period to a fraction of a frame), places each tempo change on the
beat that best joins the two grids, and reads the bar phase from the downbeat activation.

Beat evidence is the beat head's activation, joined by kick/snare accents when the band
descriptors are given (:func:`~edm.decode.tempo.accent_envelope`): the accents, the beat
head and the downbeat head vote between a grid and the same grid half a beat later (off-beat
hats and basses fool a head trained on other music; an off-beat kick part fools the accents),
and several tempo segments replace one grid only when they explain
the evidence clearly better (a breakdown or a fill is not a tempo change). How much the heads
agree with the decoded grid is the grid's ``confidence`` (:func:`agreement`).

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

from edm.data.schema import TempoSegment, beat_grid
from edm.decode.novelty import beat_novelty
from edm.decode.peaks import Peaks
from edm.decode.tempo import (
    MATCH_TOLERANCE_S,
    WINDOW_S,
    DecodeError,
    accent_envelope,
    activation_peaks,
    best_period,
    estimate_tempo,
    local_tempi,
    tempo_runs,
)
from edm.heads.activations import Activations, peak_near, to_frame

#: Several tempo segments must explain the beat evidence this much better (relative mean
#: activation at the grid's beats) than one grid at the global tempo.
_SEGMENT_GAIN = 0.08
#: Weight of each head (beat, downbeat) against the kick/snare accents when choosing between a
#: grid and the same grid half a beat later: an equal say, so the more decisive wins (clear
#: kicks still beat a head fooled by off-beat hats, ``tests/test_decode.py``). At 0.75, on real
#: tracks the heads had not seen, accents on the off-beat overruled a beat head that was right
#: (one track of 29 in two of three sets of fold nets) and never the other way round; the
#: downbeat head's vote (a downbeat is a beat) put the last such track of the development set
#: back on the beat (``benchmarks/bench_decode_cv.py``; issue 15, ``benchmarks/RESULTS.md``).
_HEAD_PHASE_WEIGHT = 1.0

#: Shorter activations hold too few beats for a grid.
MIN_DECODE_S = 4.0


@dataclass(frozen=True)
class BeatGrid:
    """A decoded beat grid; seconds throughout.

    ``segments`` is the grid as DJ software stores it (one :class:`TempoSegment` per tempo);
    ``beats``/``downbeats`` are its expansion up to the track end; ``bpm`` is the tempo of the
    longest segment. ``confidence`` / ``downbeat_confidence`` (0–1, nan when unknown) say how
    strongly the beat / downbeat head fire on the decoded beats / downbeats
    (:func:`agreement`); a grid found from accents where the head is silent scores low.
    """

    beats: np.ndarray
    downbeats: np.ndarray
    bpm: float
    segments: list[TempoSegment] = field(default_factory=list)
    confidence: float = float("nan")
    downbeat_confidence: float = float("nan")

    @property
    def beat_period_s(self) -> float:
        return 60.0 / self.bpm


@dataclass(frozen=True)
class GridFit:
    """A regular grid fitted to one stretch ``[start, end)`` of the track; frames throughout."""

    start: float
    end: float
    phase: float
    period: float


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


def _bar_phase(
    downbeat: np.ndarray, beat_frames: np.ndarray, beats_per_bar: int = 4,
    change: np.ndarray | None = None,
) -> int:
    """Index (0..beats_per_bar-1) of the first beat that is a downbeat.

    Votes of the downbeat activation at each bar position, plus (given ``change``, the
    arrangement novelty at each beat, :mod:`edm.decode.novelty`) the share of the changes that
    fall on each position: sections start on downbeats. A change votes with the square root of
    its height, so the bar phase is what most changes agree on, not what the largest few say (a
    fill or a pickup before a drop moves a big change off the downbeat): on real tracks the heads
    had not seen, the root raised downbeat F by 0.02-0.10 over the heights themselves, whose
    square (a say for the big changes only) lost 0.17 (``benchmarks/bench_decode_cv.py``).
    """
    if len(beat_frames) == 0:
        return 0
    values = downbeat[np.clip(np.round(beat_frames).astype(int), 0, len(downbeat) - 1)]
    scores = np.array([values[r::beats_per_bar].mean() if len(values[r::beats_per_bar]) else 0.0
                       for r in range(beats_per_bar)])
    if scores.sum() > 0:
        scores = scores / scores.sum()
    if change is not None and len(change) == len(beat_frames):
        # Each change peak (the largest within half a bar either side) votes with its height:
        # the novelty curve is a ramp around a change, its peak is the change's beat.
        half_bar = beats_per_bar // 2
        peak = change >= maximum_filter1d(change, size=2 * half_bar + 1, mode="nearest")
        strong = np.where(peak, np.maximum(change - np.median(change), 0.0), 0.0)
        votes = np.array([np.sqrt(strong[r::beats_per_bar]).sum()
                          for r in range(beats_per_bar)])
        if votes.sum() > 0:
            scores = scores + votes / votes.sum()
    return int(np.argmax(scores))


def agreement(activation: np.ndarray, times_s: np.ndarray, fps: float) -> float:
    """Mean of the activation's maximum within ±35 ms of each time: how strongly a head fires
    on decoded events (0 when it is silent there, near 1 when it fires on every one)."""
    times_s = np.asarray(times_s, float)
    frames = to_frame(times_s, fps)
    inside = times_s[(frames >= 0) & (frames < len(activation))]
    if len(inside) == 0:
        return float("nan")
    # At least one frame either side, however low the frame rate.
    return float(np.mean(peak_near(activation, fps, inside, max(MATCH_TOLERANCE_S, 1.0 / fps))))


def _blur(signal: np.ndarray, fps: float) -> np.ndarray:
    """A light blur (sigma = 10 ms): soft hits for the comb's samples, no peak moved."""
    return gaussian_filter1d(np.asarray(signal, float), sigma=max(0.5, 0.01 * fps))


def _blurred_spline(signal: np.ndarray, fps: float) -> np.ndarray:
    """Cubic-spline coefficients of the :func:`_blur` of ``signal``: what :func:`_comb_value`
    samples."""
    return spline_filter1d(_blur(signal, fps), order=3, mode="nearest")


def _comb_value(coefficients: np.ndarray, fits: list[GridFit]) -> float:
    """Mean spline-sampled evidence at the beats of ``fits`` (each within its own span)."""
    positions = [fit.phase + np.arange(np.ceil((fit.start - fit.phase) / fit.period),
                                       np.ceil((fit.end - fit.phase) / fit.period)) * fit.period
                 for fit in fits]
    flat = np.concatenate(positions)
    if len(flat) == 0:
        return 0.0
    return float(map_coordinates(coefficients, flat.reshape(1, -1), order=3, mode="nearest",
                                 prefilter=False).mean())


def _prefer_accents(fit: GridFit, accent: np.ndarray, heads: list[np.ndarray]) -> GridFit:
    """The fit or the same grid half a beat later, whichever puts its beats on kick/snare
    accents and on the peaks of the ``heads`` (the beat head's and the downbeat head's spline
    coefficients: a downbeat is a beat, so an off-beat grid has none on its beats)."""
    shifted = GridFit(fit.start, fit.end, fit.phase + fit.period / 2, fit.period)

    def share(signal: np.ndarray) -> float:
        on, off = _comb_value(signal, [fit]), _comb_value(signal, [shifted])
        total = on + off
        return 0.5 if total <= 0 else on / total

    votes = share(accent) + _HEAD_PHASE_WEIGHT * sum(share(head) for head in heads)
    return fit if votes >= 0.5 * (1 + _HEAD_PHASE_WEIGHT * len(heads)) else shifted


def decode_beats(
    activations: Activations, *, descriptors: dict[str, np.ndarray] | None = None,
    beats_per_bar: int = 4,
) -> BeatGrid:
    """Beats, downbeats, BPM and tempo segments from activations (and, given the store's band
    descriptors, kick/snare accents).

    Raises :class:`DecodeError` for activations without beats (silence) or shorter than
    :data:`MIN_DECODE_S`.
    """
    fps = activations.frames_per_second
    n_frames = activations.n_frames
    duration_s = n_frames / fps
    if duration_s < MIN_DECODE_S:
        raise DecodeError(f"audio too short to decode a beat grid ({duration_s:.1f} s < "
                          f"{MIN_DECODE_S:g} s)")
    beat = np.asarray(activations.beat, dtype=float)
    accent = accent_envelope(descriptors, n_frames)
    evidence = beat if accent is None else 0.5 * (beat + accent)
    # Max-filtering the downbeat activation over ±tolerance makes bar-phase voting robust to
    # a downbeat peak a frame or two off the beat peak.
    downbeat = maximum_filter1d(
        np.asarray(activations.downbeat, dtype=float),
        size=2 * max(1, to_frame(MATCH_TOLERANCE_S, fps)) + 1,
    )
    global_period = 60.0 * fps / estimate_tempo(activations, accent=accent)
    smooth = _blur(evidence, fps)
    coefficients = spline_filter1d(smooth, order=3, mode="nearest")
    peaks = activation_peaks(evidence, fps)
    frames = peaks.frames

    centres, periods = local_tempi(evidence, fps, global_period)
    runs = tempo_runs(centres, periods) if len(centres) else []
    if len(runs) <= 1:
        spans = [(0.0, float(n_frames))]
    else:
        # Each run owns the frames up to the midpoint of the gap to the next run; the exact
        # change point is refined below.
        cuts = [0.0] + [(a[1] + b[0]) / 2 for a, b in itertools.pairwise(runs)]
        spans = list(zip(cuts, [*cuts[1:], float(n_frames)], strict=True))

    fits: list[GridFit] = []
    for start, end in spans:
        inside = (frames >= start) & (frames < end)
        if inside.sum() < 4:
            continue
        local_period = global_period
        if len(spans) > 1:
            local = Peaks(frames[inside] - int(start), peaks.heights[inside], fps)
            local_period = best_period(
                evidence[int(start) : int(end)], local,
                60.0 * fps / (1.35 * global_period), 60.0 * fps / (0.65 * global_period),
            )
        phase, period = _comb_fit(smooth, start, end, local_period)
        fits.append(GridFit(start, end, phase, period))
    if not fits:
        raise DecodeError("no beats found in the beat activation (silent or too short)")
    if len(fits) > 1:
        single = GridFit(0.0, float(n_frames), *_comb_fit(smooth, 0.0, n_frames, global_period))
        if _comb_value(coefficients, fits) < (1 + _SEGMENT_GAIN) * _comb_value(coefficients,
                                                                                [single]):
            fits = [single]
    if accent is not None:
        heads = [_blurred_spline(head, fps) for head in (beat, activations.downbeat)]
        fits = [_prefer_accents(fit, _blurred_spline(accent, fps), heads) for fit in fits]

    # Tempo changes are placed on the head's own peaks where it has them: accents include
    # syncopated kicks and snares that blur the join between two grids.
    head_peaks = activation_peaks(beat, fps).frames
    join_peaks = head_peaks if len(head_peaks) >= 0.5 * len(frames) else frames
    segments = _segments_from_fits(fits, join_peaks, downbeat, fps, n_frames, beats_per_bar,
                                   descriptors)
    beats, numbers = beat_grid(segments, duration_s)
    longest = max(
        range(len(segments)),
        key=lambda i: (segments[i + 1].start_s if i + 1 < len(segments) else duration_s)
        - segments[i].start_s,
    )
    downbeat_times = beats[numbers == 1]
    return BeatGrid(
        beats=beats, downbeats=downbeat_times, bpm=segments[longest].bpm, segments=segments,
        confidence=agreement(beat, beats, fps),
        downbeat_confidence=agreement(activations.downbeat, downbeat_times, fps),
    )


def _segments_from_fits(
    fits: list[GridFit], peak_frames: np.ndarray,
    downbeat: np.ndarray, fps: float, n_frames: int, beats_per_bar: int,
    descriptors: dict[str, np.ndarray] | None = None,
) -> list[TempoSegment]:
    """Turn per-stretch grid fits into TempoSegments with exact change points and bar phase
    (downbeat votes, and arrangement changes when ``descriptors`` are given)."""
    starts: list[float] = []  # frame of each segment's first beat
    sorted_peaks = np.sort(peak_frames)
    sigma = 0.01 * fps

    def nearest(pos: np.ndarray) -> np.ndarray:
        """Distance (frames) from each position to the nearest beat peak."""
        i = np.clip(np.searchsorted(sorted_peaks, pos), 1, len(sorted_peaks) - 1)
        return np.minimum(np.abs(pos - sorted_peaks[i - 1]), np.abs(pos - sorted_peaks[i]))

    for i, fit in enumerate(fits):
        start, phase, period = fit.start, fit.phase, fit.period
        if i == 0:
            # The first segment's anchor is its first beat at or after time 0.
            first = phase - np.floor(phase / period) * period
            starts.append(first)
            continue
        prev_phase, prev_period = fits[i - 1].phase, fits[i - 1].period
        # Change point: among beats of the new grid around the nominal cut, pick the one that
        # maximises activation of old-grid beats before it plus new-grid beats from it on.
        # The nominal cut is only known to a window's width; search that far, score 8 beats.
        search = 0.75 * WINDOW_S * fps
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
        period = fit.period
        stop = starts[i + 1] if i + 1 < len(starts) else float(n_frames)
        count = max(1, int(np.ceil((stop - first) / period)))
        beat_frames = first + np.arange(count) * period
        # ``phase`` = index of the first downbeat, so the first beat is number 1 - phase (mod).
        change = (beat_novelty(descriptors, fps, beat_frames / fps, n_frames,
                               width=2 * beats_per_bar) if descriptors else None)
        phase = _bar_phase(downbeat, beat_frames, beats_per_bar, change)
        segments.append(
            TempoSegment(
                start_s=round(first / fps, 4),
                bpm=round(60.0 * fps / period, 3),
                beats_per_bar=beats_per_bar,
                beat_in_bar=int((-phase) % beats_per_bar + 1),
            )
        )
    return segments


