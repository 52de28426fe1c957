"""Sections from activations: boundaries on downbeats with a phrase prior, labels, energy.

:func:`decode_boundaries` chooses section starts among the grid's downbeats by dynamic
programming (boundary evidence against a cost for sections that are not whole phrases);
:func:`decode_sections` turns them into :class:`~edm.data.schema.Section` objects covering the
track, labelled by the section head and, given descriptors, with energy
(:mod:`edm.decode.energy`); :func:`section_confidence` says how sure the heads are of each.

Boundary evidence (:func:`boundary_evidence`) is an even blend of the boundary head's
activation and the arrangement change at each downbeat (:mod:`edm.decode.novelty`, over 1, 2
and 4 bars, of the levels and of the spectrum's shape): the head says where its training music
had sections, the change says where this track's loudness, density and instruments actually
move. Neither alone decides, so a head trained on
other music that stays silent does not leave a track as one section, and a change the head
confirms beats a ripple. The phrase prior is a cost, not a filter: strong evidence at a 4- or
12-bar line, or off the phrase grid, still makes a boundary.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, median_filter

from edm.data.schema import EnergyData, Section
from edm.decode.beats import BeatGrid, agreement
from edm.decode.energy import section_energy
from edm.decode.novelty import beat_novelties
from edm.heads.activations import Activations, span, to_frame

#: Cost of a section whose length in bars is not a whole phrase. A cost rather than a bonus:
#: a bonus for phrase lengths would pay for splitting a 16-bar section into 8 + 8 on no
#: evidence; a cost only decides between nearby candidates and keeps bogus splits unpaid.
_PHRASE_COST = {8: 0.0, 4: 0.02, 2: 0.06}
_OFF_PHRASE_COST = 0.1
#: Arrangement change (:func:`bar_change`): bars compared either side of a downbeat, one
#: novelty curve per width and view (levels, timbre: :mod:`edm.decode.novelty`), each taken
#: above its median over the :data:`_LOCAL_BARS` bars around (a riser or a filter sweep changes
#: every bar and is no boundary), scaled by its :data:`_CHANGE_PERCENTILE` percentile and
#: combined over the widths by geometric mean (a change must be sharp at 1 bar and lasting at
#: 4); the views are then blended, :data:`TIMBRE_SHARE` to the spectrum's shape;
#: :data:`NOVELTY_SHARE` is the change's share of the boundary evidence beside the boundary
#: head. Chosen on real tracks no net had seen (issue 15, ``benchmarks/bench_decode_cv.py``,
#: ``benchmarks/RESULTS.md``): the blend with the head, not the max of the two, three widths,
#: not one, and the timbre view beside the levels raised boundary F.
NOVELTY_BARS = (1, 2, 4)
NOVELTY_SHARE = 0.5
TIMBRE_SHARE = 0.5
_LOCAL_BARS = 9
_CHANGE_PERCENTILE = 90
#: Features are standardised per track, so an RMS change under about 0.4 standard deviations
#: is small whatever the track: the floor keeps a steady track's ripples from scaling up.
_MIN_CHANGE_SCALE = 0.4
#: Evidence a boundary must beat by default. The blend's change half is near 0 inside a
#: section, so its noise floor is about half the head's: the head alone (no descriptors)
#: needs more. Chosen on training-side real tracks, among them activations of a model fitted
#: without them (issue 15, ``benchmarks/RESULTS.md``).
THRESHOLD = {"blend": 0.15, "head": 0.25}
#: A boundary moves onto the next downbeat, on the 4-bar line, when that one holds at least
#: this share of its evidence (:func:`_after_fills`).
_FILL_SHARE = 0.5
#: The first section (track start to first boundary) is at least this many bars.
_MIN_FIRST_SECTION_BARS = 2
#: A section-head label below this mean probability is no label (None).
LABEL_MIN_PROBABILITY = 0.4


def _phrase_cost(bars: int) -> float:
    for length, cost in _PHRASE_COST.items():
        if bars % length == 0:
            return cost
    return _OFF_PHRASE_COST


def _view_change(
    descriptors: dict[str, np.ndarray], view: str, fps: float, downbeats: np.ndarray,
    n_frames: int,
) -> np.ndarray | None:
    """One view's change at each downbeat, 0–1 (see :data:`NOVELTY_BARS`); None without it."""
    curves = beat_novelties(descriptors, fps, downbeats, n_frames, widths=NOVELTY_BARS,
                            view=view)
    if curves is None:
        return None
    product = np.ones(len(downbeats))
    for change in curves:
        if not np.any(change > 0):
            return None
        change = np.maximum(change - median_filter(change, size=_LOCAL_BARS, mode="nearest"), 0)
        scale = max(float(np.percentile(change, _CHANGE_PERCENTILE)), _MIN_CHANGE_SCALE)
        product *= np.clip(change / scale, 0.0, 1.0)
    return product ** (1.0 / len(NOVELTY_BARS))


def bar_change(
    descriptors: dict[str, np.ndarray] | None, fps: float, downbeats: np.ndarray, n_frames: int,
) -> np.ndarray | None:
    """Arrangement change at each downbeat, 0–1: for the levels and the timbre view of
    :func:`~edm.decode.novelty.beat_novelty`, the geometric mean over :data:`NOVELTY_BARS` of
    its change (that many bars either side) above its local median (:data:`_LOCAL_BARS`),
    scaled by its :data:`_CHANGE_PERCENTILE` percentile (at least :data:`_MIN_CHANGE_SCALE`)
    and clipped to 1; the views blended by :data:`TIMBRE_SHARE` (the levels alone for
    descriptors without band levels); None without descriptors."""
    levels = _view_change(descriptors or {}, "levels", fps, downbeats, n_frames)
    if levels is None:
        return None
    timbre = _view_change(descriptors or {}, "timbre", fps, downbeats, n_frames)
    if timbre is None:
        return levels
    return (1.0 - TIMBRE_SHARE) * levels + TIMBRE_SHARE * timbre


def _head_evidence(activations: Activations, grid: BeatGrid) -> np.ndarray:
    """The boundary head's strongest value within half a beat of each downbeat."""
    fps = activations.frames_per_second
    half_beat = max(1, to_frame(0.5 * grid.beat_period_s, fps))
    pooled = maximum_filter1d(np.asarray(activations.boundary, float), size=2 * half_beat + 1)
    return pooled[np.clip(to_frame(grid.downbeats, fps), 0, len(pooled) - 1)]


def _evidence(
    activations: Activations, grid: BeatGrid, descriptors: dict[str, np.ndarray] | None,
) -> tuple[np.ndarray, str]:
    """:func:`boundary_evidence` and which :data:`THRESHOLD` it takes: ``"blend"``, or
    ``"head"`` when there is no arrangement change to blend (no descriptors)."""
    head = _head_evidence(activations, grid)
    change = bar_change(descriptors, activations.frames_per_second, grid.downbeats,
                        activations.n_frames)
    if change is None:
        return head, "head"
    return (1.0 - NOVELTY_SHARE) * head + NOVELTY_SHARE * change, "blend"


def boundary_evidence(
    activations: Activations, grid: BeatGrid, descriptors: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Evidence for a section start at each downbeat, 0–1: the boundary head's strongest value
    within half a beat, blended with the arrangement change (:func:`bar_change`, share
    :data:`NOVELTY_SHARE`); the head alone without descriptors."""
    return _evidence(activations, grid, descriptors)[0]


def decode_boundaries(
    activations: Activations, grid: BeatGrid, *, threshold: float | None = None,
    min_section_bars: int = 4, max_section_bars: int = 64,
    descriptors: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """Section boundary times (s) on downbeats, excluding 0 and the track end.

    Each downbeat gets its :func:`boundary_evidence`; dynamic programming picks the set of
    downbeats that maximises ``sum(evidence - threshold)`` minus a cost for sections that are
    not whole phrases (multiples of 8 bars cost nothing, 4 bars a little, odd lengths most),
    with sections of ``min_section_bars`` to ``max_section_bars`` bars (the first one from
    :data:`_MIN_FIRST_SECTION_BARS`, free of phrase cost like the last); a longer stretch is
    split at its best-evidence downbeat. ``threshold`` defaults to :data:`THRESHOLD` for the
    evidence at hand (blend, or head alone without descriptors).
    """
    downbeats = grid.downbeats
    if len(downbeats) < 2:
        return np.zeros(0)
    evidence, kind = _evidence(activations, grid, descriptors)
    if threshold is None:
        threshold = THRESHOLD[kind]
    # Heads fire where the audio stops; a "section" in the last two bars is the track's end.
    end_s = activations.n_frames / activations.frames_per_second
    evidence[downbeats > end_s - 8 * grid.beat_period_s] = 0.0
    # Node j < n is downbeat j (node 0 = the track start, always chosen); node n = the end.
    n = len(downbeats)
    cost = np.array([_phrase_cost(bars) if bars else 0.0 for bars in range(max_section_bars + 1)])
    best = np.full(n + 1, -np.inf)
    back = np.zeros(n + 1, dtype=int)
    best[0] = 0.0
    for i in range(1, n + 1):
        if i < n:
            # The first section may be short (from _MIN_FIRST_SECTION_BARS) and costs
            # nothing: the grid's first downbeat is where the audio starts, often a pickup
            # or a few bars before the arrangement's first bar.
            js = np.arange(max(0, i - max_section_bars), i - min_section_bars + 1)
            if _MIN_FIRST_SECTION_BARS <= i < min_section_bars:
                js = np.zeros(1, dtype=int)
            gain = evidence[i] - threshold
            extra = np.where(js == 0, 0.0, -cost[i - js])
        else:
            # The last section may be cut short by the track end: no phrase cost for it.
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
    chosen = _after_fills(sorted(chosen), evidence, min_section_bars)
    return np.asarray([downbeats[j] for j in chosen], dtype=float)


def _after_fills(chosen: list[int], evidence: np.ndarray, min_section_bars: int) -> list[int]:
    """Boundaries (downbeat indices, sorted) moved off a one-bar fill onto the phrase line.

    A fill, a drum gap or a riser in a phrase's last bar changes the music a bar before the
    section does; the change at the section's own downbeat is then the second of two. Where
    a boundary sits one bar before the track's 4-bar line (the phase whose downbeats hold the
    most evidence) and the next downbeat, on the line, has at least :data:`_FILL_SHARE` of its
    evidence, the section starts there. On real tracks no net had seen, 1 decoded boundary in
    15 was one bar early; this moved 17 of those 45 and none of the 416 that were right (issue
    15, ``benchmarks/RESULTS.md``).
    """
    phase = int(np.argmax([evidence[p::4].sum() for p in range(4)]))
    out = list(chosen)
    for k, j in enumerate(out):
        stop = out[k + 1] if k + 1 < len(out) else len(evidence) + min_section_bars
        if ((j + 1 - phase) % 4 == 0 and j + 1 < len(evidence)
                and evidence[j + 1] >= _FILL_SHARE * evidence[j]
                and stop - (j + 1) >= min_section_bars):
            out[k] = j + 1
    return out


def _label_probabilities(
    activations: Activations, bounds_s: list[tuple[float, float]]
) -> list[np.ndarray | None]:
    """Mean section-head probabilities over each section; None without a section head."""
    if activations.section is None or not activations.section_labels:
        return [None] * len(bounds_s)
    fps, n_frames = activations.frames_per_second, activations.n_frames
    return [activations.section[span(start, end, fps, n_frames)].mean(axis=0)
            for start, end in bounds_s]


def _label(activations: Activations, probabilities: np.ndarray | None) -> str | None:
    """The section head's most probable label, or None when it gives no label
    :data:`LABEL_MIN_PROBABILITY` (an unsure head does not make every section an intro)."""
    if probabilities is None or not len(probabilities):
        return None
    best = int(np.argmax(probabilities))
    if probabilities[best] < LABEL_MIN_PROBABILITY:
        return None
    return activations.section_labels[best]


@dataclass(frozen=True)
class SectionConfidence:
    """How sure the heads are of one section, each 0–1 (nan where a head is missing).

    ``boundary``: the evidence for its start (:func:`boundary_evidence`; 1.0 for the track
    start); ``label``: the section head's mean probability of the label it got (of its best
    label when it gave none); ``beats``: how strongly the beat head fires on the grid's beats
    inside it (:func:`~edm.decode.beats.agreement`).
    """

    boundary: float
    label: float
    beats: float


def section_confidence(
    activations: Activations, grid: BeatGrid, sections: list[Section], *,
    descriptors: dict[str, np.ndarray] | None = None,
) -> list[SectionConfidence]:
    """One :class:`SectionConfidence` per section of :func:`decode_sections`."""
    fps = activations.frames_per_second
    evidence = boundary_evidence(activations, grid, descriptors) if len(grid.downbeats) else []
    bounds = [(s.start_s, s.end_s) for s in sections]
    out = []
    for index, ((start, end), probabilities) in enumerate(
        zip(bounds, _label_probabilities(activations, bounds), strict=True)
    ):
        if index == 0 or not len(evidence):
            boundary = 1.0 if index == 0 else float("nan")
        else:
            nearest = int(np.argmin(np.abs(grid.downbeats - start)))
            boundary = float(evidence[nearest])
        label = float(np.max(probabilities)) if probabilities is not None else float("nan")
        inside = grid.beats[(grid.beats >= start) & (grid.beats < end)]
        out.append(SectionConfidence(round(boundary, 3), round(label, 3),
                                     round(agreement(activations.beat, inside, fps), 3)))
    return out


def decode_sections(
    activations: Activations, grid: BeatGrid, *, descriptors: dict[str, np.ndarray] | None = None,
    duration_s: float | None = None, threshold: float | None = None,
) -> list[Section]:
    """Sections covering the track: boundaries on downbeats, labels, energy from descriptors.

    ``descriptors`` (store/backbone per-frame ``rms``, ``bass``, ``mid``, ``high``, ``onset``,
    ``centroid_hz`` at the activations' frame rate) give the energy; without them sections
    carry no energy.
    """
    end_s = activations.n_frames / activations.frames_per_second
    if duration_s is not None:
        end_s = duration_s
    boundaries = decode_boundaries(activations, grid, threshold=threshold,
                                   descriptors=descriptors)
    edges = [0.0, *[float(b) for b in boundaries if 0.0 < b < end_s], end_s]
    bounds = [(a, b) for a, b in itertools.pairwise(edges) if b > a]
    labels = [_label(activations, p) for p in _label_probabilities(activations, bounds)]
    energies: list[EnergyData | None] = [None] * len(bounds)
    if descriptors:
        energies = list(section_energy(descriptors, activations.frames_per_second, bounds,
                                       grid.beats))
    return [
        Section(start_s=round(a, 4), end_s=round(b, 4), label=label, energy=energy)
        for (a, b), label, energy in zip(bounds, labels, energies, strict=True)
    ]
