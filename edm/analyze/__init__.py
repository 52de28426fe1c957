"""Analysis of audio files: the layered pipeline, its result, the writers and the picture.

- :mod:`edm.analyze.pipeline`: ``embed`` → ``activations`` → ``decode`` → :func:`analyze`;
  :func:`analyze_many` for a batch, :func:`load_model` for a heads folder.
- :mod:`edm.analyze.result`: :class:`Analysis` (grid, sections, cues, provenance) and its JSON.
- :mod:`edm.analyze.writers`: JSON, JAMS, Rekordbox XML, cue CSV; :class:`AnalysisWriter`.
- :mod:`edm.analyze.plot`: a PNG a DJ reads at a glance (matplotlib imported only there).
"""

from edm.analyze.pipeline import (
    DEFAULT_MODEL_DIR,
    AnalyzeError,
    Embedded,
    Model,
    Outcome,
    activations,
    analyze,
    analyze_many,
    decode,
    embed,
    load_model,
    onset_fallback,
)
from edm.analyze.result import Analysis
from edm.analyze.writers import FORMATS, AnalysisWriter

__all__ = [
    "DEFAULT_MODEL_DIR",
    "FORMATS",
    "Analysis",
    "AnalysisWriter",
    "AnalyzeError",
    "Embedded",
    "Model",
    "Outcome",
    "activations",
    "analyze",
    "analyze_many",
    "decode",
    "embed",
    "load_model",
    "onset_fallback",
]
