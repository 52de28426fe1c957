"""The kinds of label error, in one list: what ``edm synth`` plants in a DJ library and what
``edm label-audit`` reports (:mod:`edm.audit.findings`).

>>> "grid_phase" in PLANTED and "cue_duplicate" not in PLANTED
True
"""

from __future__ import annotations

#: Errors of a beat grid: shifted, bar counted from the wrong beat, half/double tempo, one
#: tempo where the music changes.
GRID_ERRORS: tuple[str, ...] = (
    "grid_phase", "downbeat_shift", "tempo_octave", "tempo_change_ignored",
)
#: Errors of cues against the true section starts.
CUE_ERRORS: tuple[str, ...] = (
    "cue_moved_beat", "cue_moved_bar", "cue_off_grid", "cue_missing", "cue_extra",
)
#: Cue problems the audit finds in real libraries that no synthetic library plants.
FOUND_ONLY: tuple[str, ...] = ("cue_past_end", "cue_duplicate")
#: Every kind a synthetic library can plant.
PLANTED: tuple[str, ...] = GRID_ERRORS + CUE_ERRORS
