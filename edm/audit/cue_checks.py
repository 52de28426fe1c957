"""Cue heuristics: where a DJ's cue sits relative to the beat grid.

DJs put cues on section starts, and EDM sections start on downbeats at phrase starts (4, 8, 16
or 32 bars from the first downbeat). A cue off the beat, off the downbeat or off the phrase is
suspect; so is one past the end of the track or a second cue within a beat of another.

The grid to check against is the corrected one from :func:`edm.audit.grid_checks.check_grid`
when activations exist: checking cues against a grid that is itself 40 ms late would flag every
cue of the track. With a boundary activation the suggested new place is the candidate (beat,
downbeat or phrase start near the cue) where the model sees a boundary, and the score moves
with how much more boundary there is there than at the cue.
"""

from __future__ import annotations

import numpy as np

from edm.audit.findings import Finding
from edm.data.schema import Cue, TempoSegment, TrackAnnotation, beat_grid
from edm.heads.activations import Activations, sample

#: A cue further than this from every beat of the labelled grid is off the grid; the labelled
#: grid itself may be up to 20 ms off (the grid check's tolerance), hence the margin.
BEAT_TOLERANCE_S = 0.025
#: The same against a grid aligned to the beat activation (sub-tolerance offsets removed).
ALIGNED_TOLERANCE_S = 0.015
#: A cue this close to a beat of the DJ's own grid was snapped to it: not an off-grid cue.
SNAPPED_S = 0.002
#: Cues closer than this are the same cue (Rekordbox often stores a memory and a hot cue there).
SAME_CUE_S = 0.005
#: Prior scores without model evidence: how often each symptom is a real error in DJ libraries.
BASE_SCORE = {
    "cue_past_end": 0.97,
    "cue_off_grid": 0.9,
    "cue_moved_beat": 0.85,
    "cue_moved_bar": 0.8,
    "cue_duplicate": 0.6,
    "cue_extra": 0.8,
}
#: Boundary activation below this near a misplaced cue: no section starts there at all.
QUIET = 0.25
#: A downbeat two bars off the 4-bar phrase grid is often a real section of odd length.
HALF_PHRASE_FACTOR = 0.4


def _boundary_at(act: Activations | None, times: np.ndarray) -> np.ndarray | None:
    """Boundary activation near each time (max over ±0.15 s: boundaries are broad)."""
    if act is None:
        return None
    spread = np.linspace(-0.15, 0.15, 7)
    return sample(act.boundary, act.frames_per_second, np.asarray(times)[:, None] + spread).max(
        axis=1
    )


def _choose(
    candidates: np.ndarray, cue_s: float, act: Activations | None
) -> tuple[float, float, bool]:
    """Best new place among candidates; a weight in [0.3, 1.3] for the score (> 1 when the
    model sees more boundary there than at the cue, < 1 when less); and whether the model sees
    no boundary anywhere near (then the cue is more likely an extra than a misplaced one)."""
    if candidates.size == 0:
        return cue_s, 1.0, False
    nearest = float(candidates[np.argmin(np.abs(candidates - cue_s))])
    strength = _boundary_at(act, np.append(candidates, cue_s))
    if strength is None:
        return nearest, 1.0, False
    at_candidates, at_cue = strength[:-1], float(strength[-1])
    best = int(np.argmax(at_candidates))
    target = float(candidates[best]) if at_candidates[best] > at_cue + 0.1 else nearest
    gain = float(at_candidates[best]) - at_cue
    return target, float(np.clip(1.0 + gain, 0.3, 1.3)), float(strength.max()) < QUIET


def check_cues(
    track: TrackAnnotation,
    grid: list[TempoSegment] | None = None,
    act: Activations | None = None,
    *,
    aligned: bool = False,
) -> list[Finding]:
    """Heuristic findings for every cue of ``track`` against ``grid`` (default: its own).

    ``aligned`` says ``grid`` was fitted to the beat activation (tighter beat tolerance).
    """
    grid = track.grid if grid is None else grid
    tolerance = ALIGNED_TOLERANCE_S if aligned else BEAT_TOLERANCE_S
    own_beats = track.beats() if aligned else np.zeros(0)
    end = track.end_s
    findings: list[Finding] = []
    name = track.track.path or track.track.title

    def add(
        cue: Cue, kind: str, fix: dict, detail: str, weight: float = 1.0, quiet: bool = False
    ) -> None:
        if quiet:
            kind, fix = "cue_extra", {"delete": True}
            detail += "; no boundary near it"
        score = float(np.clip(BASE_SCORE[kind] * weight, 0.0, 1.0))
        findings.append(
            Finding(
                track.track_id,
                cue.start_s,
                kind,
                round(score, 4),
                fix,
                source="cue",
                track=name,
                detail=detail,
            )
        )

    beats, numbers = beat_grid(grid, end) if grid and end else (np.zeros(0), np.zeros(0, int))
    downbeats = beats[numbers == 1]
    period = float(np.median(np.diff(beats))) if beats.size > 1 else 0.5
    previous: Cue | None = None
    for cue in sorted(track.cues, key=lambda c: c.start_s):
        t = cue.start_s
        if end is not None and t >= end:
            add(
                cue,
                "cue_past_end",
                {"delete": True},
                f"cue at {t:.2f} s, track ends at {end:.2f} s",
            )
            continue
        if (
            previous is not None
            and t - previous.start_s < period
            and (
                t - previous.start_s > SAME_CUE_S
                or (cue.kind, cue.slot) == (previous.kind, previous.slot)
            )
        ):
            add(
                cue,
                "cue_duplicate",
                {"delete": True},
                f"{(t - previous.start_s) * 1000:.0f} ms after the cue at {previous.start_s:.2f} s",
            )
            continue
        previous = cue
        if beats.size == 0:
            continue
        index = int(np.argmin(np.abs(beats - t)))
        offset = t - beats[index]
        nearby = downbeats[np.abs(downbeats - t) <= 4.5 * period]
        snapped = own_beats.size > 0 and float(np.min(np.abs(own_beats - t))) < SNAPPED_S
        if abs(offset) > tolerance and not snapped:
            # Off the beat: the fix is a nearby downbeat where the model sees a boundary, else
            # the nearest beat (the smallest change that puts it back on the grid).
            target, weight, quiet = _choose(nearby, t, act)
            if act is None or weight <= 1.0:
                target = float(beats[index])
            sharpness = min(1.0, (abs(offset) - tolerance) / 0.015 + 0.5)
            add(
                cue,
                "cue_off_grid",
                {"move_to_s": round(target, 4)},
                f"{offset * 1000:+.0f} ms from the nearest beat",
                sharpness * max(weight, 0.8),
                quiet,
            )
            continue
        if numbers[index] != 1:
            target, weight, quiet = _choose(nearby, t, act)
            add(
                cue,
                "cue_moved_beat",
                {"move_to_s": round(target, 4)},
                f"on beat {numbers[index]} of the bar, not a downbeat",
                weight,
                quiet,
            )
            continue
        bar = int(np.argmin(np.abs(downbeats - t)))
        if bar % 4:
            near_phrases = downbeats[::4][np.abs(downbeats[::4] - t) <= 8.5 * period]
            target, weight, quiet = _choose(near_phrases, t, act)
            factor = HALF_PHRASE_FACTOR if bar % 2 == 0 else 1.0
            add(
                cue,
                "cue_moved_bar",
                {"move_to_s": round(target, 4)},
                f"bar {bar + 1} from the first downbeat: not a 4-bar phrase start",
                weight * factor,
                quiet,
            )
    return findings
