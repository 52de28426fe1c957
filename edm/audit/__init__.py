"""Label audit: rank the beat-grid and cue labels most likely to be wrong, and fix them.

Three sources of findings share one score scale (probability the label is wrong):
:mod:`~edm.audit.grid_checks` (grid vs beat/downbeat activations),
:mod:`~edm.audit.cue_checks` (cue heuristics, optionally guided by the boundary activation)
and :mod:`~edm.audit.cleanlab_checks` (cleanlab over out-of-fold probabilities).
:func:`~edm.audit.run.audit_library` runs them all; :mod:`~edm.audit.corrections` applies
accepted fixes as new annotation versions; :mod:`~edm.audit.report` writes CSV/JSON/plots.
"""

from edm.audit.findings import CUE_KINDS, GRID_KINDS, KINDS, Finding, merge_findings, rank_findings

__all__ = ["CUE_KINDS", "GRID_KINDS", "KINDS", "Finding", "merge_findings", "rank_findings"]
