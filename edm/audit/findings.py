"""One suspect label = one :class:`Finding`; every check returns a list of them.

Conventions
-----------
- ``kind`` names the suspected error. The kinds a synthetic library injects use the same
  strings as ``edm synth`` (``grid_phase``, ``downbeat_shift``, ``tempo_octave``,
  ``tempo_change_ignored``, ``cue_off_grid``, ``cue_moved_beat``, ``cue_moved_bar``,
  ``cue_missing``, ``cue_extra``), so a report can be scored against ``injected_errors.csv``;
  ``cue_past_end`` and ``cue_duplicate`` exist only here.
- ``score`` is read as "probability that this label is wrong", in [0, 1], whatever the source,
  so grid checks, cue heuristics and cleanlab share one ranking.
- ``fix`` is machine-readable and applied by :mod:`edm.audit.corrections`: ``shift_s``,
  ``bpm_factor``, ``beat_shift``/``new_beat_in_bar``, ``split_at_s``/``new_bpm``/``beat_in_bar``,
  ``move_to_s``, ``delete``, ``add_cue_s``. Cue findings carry the cue's own time in
  ``time_s``; track-level grid findings use the time where the problem starts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from edm.data.label_errors import CUE_ERRORS, FOUND_ONLY, GRID_ERRORS

GRID_KINDS = GRID_ERRORS
CUE_KINDS = CUE_ERRORS + FOUND_ONLY
KINDS = GRID_KINDS + CUE_KINDS

#: Grid fixes build on each other; they are applied (and estimated) in this order.
GRID_FIX_ORDER = ("tempo_octave", "grid_phase", "tempo_change_ignored", "downbeat_shift")

#: Two findings about the same cue closer than this are one finding.
_SAME_TIME_S = 0.005


@dataclass(frozen=True)
class Finding:
    """A suspect label, its score and a suggested fix."""

    track_id: str
    time_s: float
    kind: str
    score: float
    fix: dict[str, Any] = field(default_factory=dict)
    source: str = "heuristic"
    track: str = ""
    detail: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown finding kind {self.kind!r}; expected one of {KINDS}")
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"score must be in [0, 1], got {self.score}")

    @property
    def finding_id(self) -> str:
        """Stable id: the same label and kind give the same id across runs."""
        key = f"{self.track_id}|{self.kind}|{round(self.time_s, 3):.3f}"
        return hashlib.sha1(key.encode()).hexdigest()[:12]

    @property
    def is_grid(self) -> bool:
        return self.kind in GRID_KINDS

    def to_row(self) -> dict[str, Any]:
        """Flat row for CSV/JSON; ``fix`` becomes a JSON string so it survives a spreadsheet."""
        return {
            "id": self.finding_id,
            "track_id": self.track_id,
            "track": self.track,
            "time_s": round(self.time_s, 4),
            "kind": self.kind,
            "score": round(self.score, 4),
            "source": self.source,
            "fix": json.dumps(self.fix, sort_keys=True),
            "detail": self.detail,
        }

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> Finding:
        """Inverse of :meth:`to_row` (extra columns such as ``accept`` are ignored)."""
        fix = row.get("fix") or "{}"
        return cls(
            track_id=str(row["track_id"]),
            time_s=float(row["time_s"]),
            kind=str(row["kind"]),
            score=float(row["score"]),
            fix=json.loads(fix) if isinstance(fix, str) else dict(fix),
            source=str(row.get("source") or "heuristic"),
            track=str(row.get("track") or ""),
            detail=str(row.get("detail") or ""),
        )


def _merge_key(finding: Finding) -> tuple[str, str, float]:
    # Grid kinds are one per track; cue kinds are per cue time (to the nearest 5 ms).
    if finding.is_grid:
        return finding.track_id, finding.kind, 0.0
    return finding.track_id, "cue", round(finding.time_s / _SAME_TIME_S) * _SAME_TIME_S


def merge_findings(findings: Iterable[Finding]) -> list[Finding]:
    """Merge findings about the same label from several sources.

    Independent evidence combines as a noisy-OR (``1 - Π(1 - score)``): two sources at 0.6 give
    0.84. The kind and fix of the strongest finding win; sources are joined with ``+``.

    >>> a = Finding("t", 10.0, "cue_extra", 0.6, {"delete": True}, source="cleanlab")
    >>> b = Finding("t", 10.001, "cue_moved_beat", 0.6, {"move_to_s": 9.5}, source="cue")
    >>> merged = merge_findings([a, b])
    >>> len(merged), round(merged[0].score, 2), merged[0].source
    (1, 0.84, 'cleanlab+cue')
    """
    groups: dict[tuple[str, str, float], list[Finding]] = {}
    for finding in findings:
        groups.setdefault(_merge_key(finding), []).append(finding)
    merged: list[Finding] = []
    for group in groups.values():
        best = max(group, key=lambda f: f.score)
        if len(group) == 1:
            merged.append(best)
            continue
        keep = 1.0
        for finding in group:
            keep *= 1.0 - finding.score
        sources = "+".join(sorted({f.source for f in group}))
        details = "; ".join(dict.fromkeys(f.detail for f in group if f.detail))
        merged.append(replace(best, score=1.0 - keep, source=sources, detail=details))
    return merged


def rank_findings(findings: Iterable[Finding], top: int | None = None) -> list[Finding]:
    """Merge duplicates, then sort by score (highest first), ties by track and time."""
    ranked = sorted(merge_findings(findings), key=lambda f: (-f.score, f.track_id, f.time_s))
    return ranked if top is None else ranked[:top]
