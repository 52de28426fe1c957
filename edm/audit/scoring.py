"""Score an audit against the errors ``edm synth`` planted (``injected_errors.csv``).

Matching: a grid finding is right when its track has an injected grid error; a cue finding is
right when its track has an injected cue error within :data:`MATCH_S` of the finding's time
(the true or the noisy time). Precision@K is over the ranked findings (all, grid-only and
cue-only rankings); recall is per injected error kind.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edm.audit.findings import CUE_KINDS, GRID_KINDS, Finding

# Planted phase errors under the audit's tolerance are not findable; recall is also reported
# over the larger ones alone.
from edm.audit.grid_checks import PHASE_TOLERANCE_S

#: A cue finding within 50 ms of a planted cue error is a hit.
MATCH_S = 0.05


def read_injected(path: str | Path) -> list[dict[str, str]]:
    """Rows of an ``injected_errors.csv``."""
    with Path(path).open(newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def finding_matches(finding: Finding, error: dict[str, str]) -> bool:
    """Whether ``finding`` points at the planted ``error`` (see the module docstring)."""
    if finding.track_id != error["content_hash"]:
        return False
    if finding.kind in GRID_KINDS:
        return error["kind"] in GRID_KINDS
    if error["kind"] in GRID_KINDS:
        return False
    times = [float(v) for v in (error["time_s"], error["noisy_value"]) if v not in ("", None)]
    return any(abs(finding.time_s - t) <= MATCH_S for t in times)


def _precision(flags: Sequence[bool], k: int) -> float:
    return float(np.mean(flags[:k])) if flags[:k] else float("nan")


def score_findings(
    findings: Sequence[Finding], injected: Sequence[dict[str, str]]
) -> dict[str, Any]:
    """Precision@20/50/100 (all, exact kind, grid, cue) and recall per injected kind.

    ``recall`` maps each kind to ``(recall, number planted)``.
    """
    hits = [any(finding_matches(f, e) for e in injected) for f in findings]
    exact = [any(finding_matches(f, e) and f.kind == e["kind"] for e in injected) for f in findings]
    grid = [hit for f, hit in zip(findings, hits, strict=True) if f.kind in GRID_KINDS]
    cue = [hit for f, hit in zip(findings, hits, strict=True) if f.kind in CUE_KINDS]
    scores: dict[str, Any] = {"findings": len(findings), "injected": len(injected)}
    for k in (20, 50, 100):
        scores[f"P@{k}"] = _precision(hits, k)
        scores[f"P@{k} exact kind"] = _precision(exact, k)
        scores[f"grid P@{k}"] = _precision(grid, k)
        scores[f"cue P@{k}"] = _precision(cue, k)
    recall: dict[str, list[bool]] = defaultdict(list)
    for error in injected:
        found = any(finding_matches(f, error) for f in findings)
        recall[error["kind"]].append(found)
        if error["kind"] == "grid_phase" and error["noisy_value"]:
            offset = abs(float(error["noisy_value"]) - float(error["true_value"]))
            if offset > PHASE_TOLERANCE_S:
                recall["grid_phase >20 ms"].append(found)
    scores["recall"] = {kind: (float(np.mean(v)), len(v)) for kind, v in sorted(recall.items())}
    return scores
