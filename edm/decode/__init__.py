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
1. :mod:`edm.decode.tempo` — :func:`estimate_tempo`: autocorrelation of the beat activation
   and of kick/snare accents (:func:`accent_envelope`, from the band descriptors) proposes
   periods; each candidate (and its octaves) is scored by how well a regular grid explains
   both signals' peaks (precision × recall), weighted by an EDM tempo prior (log-normal
   around 140 BPM: 128 beats 64, 174 beats 58). A confident downbeat head adds a bar
   score (four beats must explain the downbeats: 180-BPM shuffles stop reading as 120)
   and then checks the octave.
2. :mod:`edm.decode.beats` — :func:`decode_beats`: windowed local tempo proposes tempo
   changes, kept only when they explain the evidence clearly better than one grid; each
   stretch gets a comb fit of phase and period (:class:`GridFit`) and, between a grid and
   the same grid half a beat later, the one on the kicks and snares; the bar phase comes
   from the downbeat activation and the arrangement changes (:mod:`edm.decode.novelty`).
   :attr:`BeatGrid.confidence` says how strongly the heads fire on the result.
3. :mod:`edm.decode.sections` — :func:`decode_sections`: boundary candidates on downbeats
   (boundary head blended with the arrangement change over 1, 2 and 4 bars), chosen by
   dynamic programming against a cost for sections that are not whole phrases; labels from the
   section head (None when it is unsure); :func:`section_confidence` per section.
4. :mod:`edm.decode.energy` — :func:`section_energy`: per-section energy from the
   descriptors; :func:`merge_energy` puts the energy head's predictions over it.
"""

from edm.decode.beats import BeatGrid, GridFit, agreement, decode_beats
from edm.decode.energy import merge_energy, section_energy
from edm.decode.novelty import beat_novelty
from edm.decode.peaks import Peaks, find_peaks, pick_peaks, refine
from edm.decode.sections import (
    SectionConfidence,
    decode_boundaries,
    decode_sections,
    section_confidence,
)
from edm.decode.tempo import (
    EDM_MAX_BPM,
    EDM_MIN_BPM,
    DecodeError,
    accent_envelope,
    estimate_tempo,
    tempo_prior,
)

__all__ = [
    "EDM_MAX_BPM",
    "EDM_MIN_BPM",
    "BeatGrid",
    "DecodeError",
    "GridFit",
    "Peaks",
    "SectionConfidence",
    "accent_envelope",
    "agreement",
    "beat_novelty",
    "decode_beats",
    "decode_boundaries",
    "decode_sections",
    "estimate_tempo",
    "find_peaks",
    "merge_energy",
    "pick_peaks",
    "refine",
    "section_confidence",
    "section_energy",
    "tempo_prior",
]
