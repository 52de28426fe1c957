"""DJ label noise: turn exact truth into what a DJ's Rekordbox library would show, and log it.

:func:`dj_labels` copies a tier-1 truth into a tier-2 annotation (grid + cues, no sections) and
injects the errors real libraries have, each with a rate per noise level (:data:`RATES`).
``none`` gives exact labels: the true grid and a cue on every section start. Every injected
error is returned as an :class:`InjectedError`, which :mod:`edm.synth.library` writes to
``injected_errors.csv``.

Error kinds, and what ``time_s`` / ``true_value`` / ``noisy_value`` hold for each:

==========================  =================================================================
``grid_phase``              whole grid shifted 10–40 ms; grid start; true / noisy start (s)
``downbeat_shift``          bar counted from the wrong beat; grid start; true / noisy beat
                            number (Rekordbox ``Battito``) at that time
``tempo_octave``            half or double tempo; grid start; true / noisy BPM
``tempo_change_ignored``    one BPM for the whole track; time of the change; true BPM after the
                            change / BPM the grid keeps
``cue_moved_beat``          a cue one beat early or late; true time; true / noisy time (s)
``cue_moved_bar``           a cue one bar early or late; true time; true / noisy time (s)
``cue_off_grid``            a cue 20–120 ms off; true time; true / noisy time (s)
``cue_missing``             no cue on a true boundary; true time; true time / empty
``cue_extra``               a cue in the middle of a phrase; its time; empty / its time
==========================  =================================================================

A third of the tracks also get Rekordbox-style re-anchors (extra TEMPO entries at the same BPM
that describe the same grid). Grid errors are independent of cue errors: cues are placed
relative to the *true* boundaries.
Which cues are hot cues and which carry a name ("Drop", "Break", …) is the DJ's style, drawn
per track, and is not an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edm.data.label_errors import PLANTED
from edm.data.schema import Cue, Metadata, TempoSegment, Tier, TrackAnnotation
from edm.synth.arrangement import CUE_NAMES

NOISE_LEVELS = ("none", "light", "default", "heavy")

#: The kinds injected (the one list: :mod:`edm.data.label_errors`).
ERROR_KINDS = PLANTED

#: Probability of each error: per track for grid errors and ``cue_extra``, per cue otherwise,
#: per tempo change for ``tempo_change_ignored``.
RATES: dict[str, dict[str, float]] = {
    "none": dict.fromkeys(ERROR_KINDS, 0.0),
    "light": {"grid_phase": 0.05, "downbeat_shift": 0.03, "tempo_octave": 0.02,
              "tempo_change_ignored": 0.3, "cue_moved_beat": 0.03, "cue_moved_bar": 0.03,
              "cue_off_grid": 0.03, "cue_missing": 0.2, "cue_extra": 0.05},
    "default": {"grid_phase": 0.1, "downbeat_shift": 0.08, "tempo_octave": 0.05,
                "tempo_change_ignored": 0.5, "cue_moved_beat": 0.06, "cue_moved_bar": 0.06,
                "cue_off_grid": 0.06, "cue_missing": 0.35, "cue_extra": 0.15},
    "heavy": {"grid_phase": 0.25, "downbeat_shift": 0.2, "tempo_octave": 0.12,
              "tempo_change_ignored": 0.8, "cue_moved_beat": 0.12, "cue_moved_bar": 0.12,
              "cue_off_grid": 0.12, "cue_missing": 0.55, "cue_extra": 0.35},
}


@dataclass(frozen=True)
class InjectedError:
    """One label error; see the module docstring for what the values mean per kind."""

    kind: str
    time_s: float
    true_value: float | None
    noisy_value: float | None


def _check_level(level: str) -> dict[str, float]:
    if level not in RATES:
        raise ValueError(f"unknown noise level {level!r}; choose from {', '.join(NOISE_LEVELS)}")
    return RATES[level]


def _noisy_grid(
    grid: list[TempoSegment], rates: dict[str, float], rng: np.random.Generator
) -> tuple[list[TempoSegment], list[InjectedError]]:
    errors: list[InjectedError] = []
    segments = list(grid)
    if len(segments) > 1 and rng.random() < rates["tempo_change_ignored"]:
        for ignored in segments[1:]:
            errors.append(InjectedError("tempo_change_ignored", ignored.start_s, ignored.bpm,
                                        segments[0].bpm))
        segments = segments[:1]
    if rng.random() < rates["tempo_octave"]:
        # Fast genres get halved (87 for 174); slower ones are doubled or halved.
        factor = 0.5 if segments[0].bpm >= 140 else float(rng.choice([0.5, 2.0]))
        errors.append(InjectedError("tempo_octave", segments[0].start_s, segments[0].bpm,
                                    segments[0].bpm * factor))
        segments = [s.model_copy(update={"bpm": s.bpm * factor}) for s in segments]
    if rng.random() < rates["downbeat_shift"]:
        # The software's bar starts ``shift`` beats after the true downbeat.
        shift = int(rng.integers(1, 4))
        shifted = []
        for segment in segments:
            number = (segment.beat_in_bar - 1 - shift) % segment.beats_per_bar + 1
            shifted.append(segment.model_copy(update={"beat_in_bar": number}))
        errors.append(InjectedError("downbeat_shift", segments[0].start_s,
                                    segments[0].beat_in_bar, shifted[0].beat_in_bar))
        segments = shifted
    if rng.random() < rates["grid_phase"]:
        offset = float(rng.uniform(0.010, 0.040)) * float(rng.choice([-1.0, 1.0]))
        if segments[0].start_s + offset < 0:
            offset = -offset
        errors.append(InjectedError("grid_phase", segments[0].start_s, segments[0].start_s,
                                    segments[0].start_s + offset))
        segments = [s.model_copy(update={"start_s": s.start_s + offset}) for s in segments]
    return segments, errors


def _reanchor(grid: list[TempoSegment], end_s: float,
              rng: np.random.Generator) -> list[TempoSegment]:
    """Extra TEMPO entries at the same BPM and the right beat number, as Rekordbox writes.

    Real exports often repeat the tempo with a new ``Battito`` a few times per track. The
    grid they describe is unchanged, so this is DJ-software style, not an error.
    """
    anchored: list[TempoSegment] = []
    for index, segment in enumerate(grid):
        anchored.append(segment)
        stop = grid[index + 1].start_s if index + 1 < len(grid) else end_s
        n_beats = int((stop - segment.start_s) / segment.beat_period_s)
        if n_beats < 24:
            continue
        picks = rng.choice(np.arange(8, n_beats - 8), size=int(rng.integers(1, 4)), replace=False)
        for beats in sorted(int(k) for k in picks):
            number = (segment.beat_in_bar - 1 + beats) % segment.beats_per_bar + 1
            anchored.append(segment.model_copy(update={
                "start_s": segment.start_s + beats * segment.beat_period_s,
                "beat_in_bar": number,
            }))
    return anchored


def _move(time_s: float, delta_s: float, end_s: float) -> float:
    """Move a cue by ``delta_s``, the other way if that leaves the track."""
    moved = time_s + delta_s
    return moved if 0.0 <= moved < end_s else time_s - delta_s


def dj_labels(
    truth: TrackAnnotation, level: str, rng: np.random.Generator
) -> tuple[TrackAnnotation, list[InjectedError]]:
    """The truth as a DJ's library would show it at noise ``level``, and the errors injected.

    >>> from edm.data.schema import Section, TrackIdentity
    >>> truth = TrackAnnotation(track=TrackIdentity(duration_s=30.0),
    ...     grid=[TempoSegment(start_s=0.1, bpm=120.0)],
    ...     sections=[Section(start_s=0.1, end_s=16.1, label="intro"),
    ...               Section(start_s=16.1, end_s=30.0, label="drop")])
    >>> noisy, errors = dj_labels(truth, "none", np.random.default_rng(0))
    >>> [cue.start_s for cue in noisy.cues], errors
    ([0.1, 16.1], [])
    """
    rates = _check_level(level)
    end_s = truth.track.duration_s or (truth.sections[-1].end_s if truth.sections else 0.0)
    grid, errors = _noisy_grid(truth.grid, rates, rng)
    if rng.random() < 0.3:
        grid = _reanchor(grid, end_s, rng)

    beat_s = truth.grid[0].beat_period_s if truth.grid else 0.5
    uses_hot_cues = rng.random() < 0.35
    names_cues = rng.random() < 0.3
    cues: list[Cue] = []
    for section in truth.sections:
        start = section.start_s
        if rng.random() < rates["cue_missing"]:
            errors.append(InjectedError("cue_missing", start, start, None))
            continue
        draw = rng.random()
        moves = (("cue_moved_beat", beat_s * float(rng.choice([-1, 1]))),
                 ("cue_moved_bar", 4 * beat_s * float(rng.choice([-1, 1]))),
                 ("cue_off_grid", float(rng.uniform(0.02, 0.12)) * float(rng.choice([-1, 1]))))
        time_s = start
        threshold = 0.0
        for kind, delta in moves:
            threshold += rates[kind]
            if draw < threshold:
                time_s = _move(start, delta, end_s)
                errors.append(InjectedError(kind, start, start, time_s))
                break
        cues.append(_styled_cue(time_s, section.label, uses_hot_cues, names_cues, len(cues)))

    if truth.sections and rng.random() < rates["cue_extra"]:
        section = truth.sections[int(rng.integers(len(truth.sections)))]
        # Half a phrase in (on a downbeat, but not a boundary): a cue someone set to loop from.
        bars = (section.end_s - section.start_s) / (4 * beat_s)
        time_s = section.start_s + 4 * beat_s * max(1, int(min(bars, 8) // 2))
        if time_s < section.end_s - beat_s:
            errors.append(InjectedError("cue_extra", time_s, None, time_s))
            cues.append(Cue(start_s=time_s, kind="memory"))

    noisy = truth.model_copy(update={
        "grid": grid,
        "cues": sorted(cues, key=lambda cue: cue.start_s),
        "sections": [],
        "bpm": grid[0].bpm if grid else truth.bpm,
        "metadata": Metadata(tier=Tier.DJ_SOFTWARE, confidence=0.5, source="edm-synth-dj",
                             provenance={**truth.metadata.provenance, "noise": level}),
    })
    return noisy, sorted(errors, key=lambda error: (error.time_s, error.kind))


def _styled_cue(time_s: float, label: str | None, hot: bool, named: bool, index: int) -> Cue:
    """A DJ's habits: hot cues on the main moments if they use them, names if they name."""
    name = CUE_NAMES.get(label or "", "") if named else ""
    if hot and label in ("drop", "breakdown", "buildup") and index < 8:
        return Cue(start_s=time_s, kind="hot", slot=index, name=name)
    return Cue(start_s=time_s, kind="memory", name=name)
