"""Procedural EDM tracks with exact ground truth, and a DJ library with known label errors.

- :func:`synthesize_track` renders one track and its tier-1 truth (:mod:`edm.synth.track`).
- :func:`make_library` writes a folder of tracks, JAMS truth, a Rekordbox XML with DJ-style
  label errors and a CSV of every injected error (:mod:`edm.synth.library`).
"""

from edm.synth.arrangement import GENRES
from edm.synth.library import LibrarySummary, SynthError, make_library
from edm.synth.noise import ERROR_KINDS, NOISE_LEVELS, InjectedError, dj_labels
from edm.synth.track import SynthTrack, synthesize_track

__all__ = [
    "ERROR_KINDS", "GENRES", "NOISE_LEVELS", "InjectedError", "LibrarySummary", "SynthError",
    "SynthTrack", "dj_labels", "make_library", "synthesize_track",
]
