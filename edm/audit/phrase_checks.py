"""Cues against Rekordbox's phrase analysis: two label sources that should agree.

A track imported from a USB export or ``master.db`` carries Rekordbox's phrases as sections
(:mod:`edm.data.rekordbox_library`); its DJ cues mark section starts too. Where a cue sits
within a bar of a phrase start but not on it, the cue has most likely slipped (a beat or a
bar: the phrase start is the suggested place). Where no phrase starts within
:data:`FAR_BARS` bars of a cue, one of the two is wrong (a stray cue, or a phrase Rekordbox
missed); that is reported with a low score, since many DJs cue inside phrases on purpose.
A phrase start without a cue is not a finding: cues mark only some boundaries.
"""

from __future__ import annotations

import numpy as np

from edm.audit.findings import Finding
from edm.data.schema import TrackAnnotation

#: A cue this close to a phrase start (s) agrees with it.
AGREE_S = 0.05
#: Cues within this many bars of a phrase start (but not on it) have slipped.
NEAR_BARS = 1.0
#: No phrase start within this many bars: the sources disagree.
FAR_BARS = 4.0
SCORE = {"cue_moved_beat": 0.6, "cue_moved_bar": 0.55, "cue_extra": 0.3}


def check_cues_against_phrases(track: TrackAnnotation) -> list[Finding]:
    """Findings for cues that Rekordbox's phrases contradict; [] without phrases or cues."""
    provenance = track.metadata.provenance
    if provenance.get("sections_complete") != "true" or not track.sections or not track.cues:
        return []
    starts = np.array([s.start_s for s in track.sections] + [track.sections[-1].end_s])
    beats = track.beats()
    beat = float(np.median(np.diff(beats))) if len(beats) > 1 else 0.5
    bar = 4 * beat
    name = track.track.path or track.track.title
    findings: list[Finding] = []
    seen: list[float] = []
    for cue in sorted(track.cues, key=lambda c: c.start_s):
        if any(abs(cue.start_s - t) < 0.005 for t in seen):
            continue  # a memory and a hot cue on one spot are one label
        seen.append(cue.start_s)
        nearest = float(starts[np.argmin(np.abs(starts - cue.start_s))])
        distance = abs(nearest - cue.start_s)
        if distance <= AGREE_S:
            continue
        if distance <= NEAR_BARS * bar + AGREE_S:
            kind = "cue_moved_beat" if distance <= 1.5 * beat else "cue_moved_bar"
            fix = {"move_to_s": round(nearest, 3)}
            detail = (f"cue at {cue.start_s:.2f} s, Rekordbox's phrase starts at {nearest:.2f} s "
                      f"({distance / beat:.1f} beats away)")
        elif distance > FAR_BARS * bar:
            kind, fix = "cue_extra", {"delete": True}
            detail = (f"cue at {cue.start_s:.2f} s, no Rekordbox phrase starts within "
                      f"{FAR_BARS:g} bars (nearest {nearest:.2f} s): the cue or the phrase "
                      "analysis is wrong")
        else:
            continue
        findings.append(Finding(track.track_id, cue.start_s, kind, SCORE[kind], fix,
                                source="phrases", track=name, detail=detail))
    return findings
