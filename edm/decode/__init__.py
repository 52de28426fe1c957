"""Decode head activations into a beat grid, phrase-aligned sections and section energy.

Conventions
-----------
- Input: :class:`~edm.heads.activations.Activations` (probabilities per frame, frame ``i`` at
  ``i / frames_per_second`` seconds). The frame rate is read from the activations once and
  every knob is in seconds or BPM, converted to frames by :func:`edm.heads.activations.to_frame`.
- Output: seconds. :class:`BeatGrid` holds beats, downbeats, the main BPM and the grid as
  :class:`~edm.data.schema.TempoSegment` list (what Rekordbox stores); sections are
  :class:`~edm.data.schema.Section` objects with label and :class:`EnergyData`.

Stages, one module each
-----------------------
0. :mod:`edm.decode.peaks` — the one peak picker (:func:`pick_peaks`, parabolic refinement),
   shared with the heads' metrics and the audit.
1. :mod:`edm.decode.tempo` — :func:`estimate_tempo`: autocorrelation proposes periods; each
   candidate (and its octaves) is scored by how well a regular grid explains the beat peaks
   (precision × recall), weighted by an EDM tempo prior (flat over 70–180 BPM). The downbeat
   activation then checks the octave: a bar must be four beats long.
2. :mod:`edm.decode.beats` — :func:`decode_beats`: windowed local tempo finds tempo changes;
   each stretch gets a comb fit of phase and period (:class:`GridFit`); the bar phase comes
   from the downbeat activation.
3. :mod:`edm.decode.sections` — :func:`decode_sections`: boundary candidates on downbeats,
   chosen by dynamic programming that rewards boundary evidence and phrase lengths of
   4/8/16/32 bars.
4. :mod:`edm.decode.energy` — :func:`section_energy`: per-section energy from the
   descriptors; :func:`merge_energy` puts the energy head's predictions over it.
"""

from edm.decode.beats import BeatGrid, GridFit, decode_beats
from edm.decode.energy import merge_energy, section_energy
from edm.decode.peaks import Peaks, find_peaks, pick_peaks, refine
from edm.decode.sections import decode_boundaries, decode_sections
from edm.decode.tempo import EDM_MAX_BPM, EDM_MIN_BPM, DecodeError, estimate_tempo

__all__ = [
    "EDM_MAX_BPM",
    "EDM_MIN_BPM",
    "BeatGrid",
    "DecodeError",
    "GridFit",
    "Peaks",
    "decode_beats",
    "decode_boundaries",
    "decode_sections",
    "estimate_tempo",
    "find_peaks",
    "merge_energy",
    "pick_peaks",
    "refine",
    "section_energy",
]
